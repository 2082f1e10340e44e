//! The exit-code contract: 0 success, 1 with a one-line reason on stderr, 2 for usage errors
//! with the usage; `--help` and `--version` print to stdout and exit 0.

use std::io::Write;

/// Why a command did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The command line is wrong (exit 2, usage printed).
    Usage(String),
    /// The input was refused or an operation failed (exit 1).
    Failed(String),
}

/// A command's result.
pub(crate) type Res<T> = Result<T, Failure>;

/// Any error as a [`Failure::Failed`].
pub(crate) fn fail(e: impl std::fmt::Display) -> Failure {
    Failure::Failed(e.to_string())
}

/// Reads a file; the error names it.
pub(crate) fn read(path: &str) -> Res<Vec<u8>> {
    std::fs::read(path).map_err(|e| Failure::Failed(format!("{path}: {e}")))
}

/// What the tool says about itself.
pub(crate) struct Tool {
    pub(crate) name: &'static str,
    pub(crate) usage: &'static str,
    pub(crate) help: &'static str,
}

/// Runs `dispatch(command, rest)` on `args` (without the program name) and maps the outcome
/// to the exit code, printing reasons as `tool: reason` on one line of `err`.
pub(crate) fn run(
    tool: &Tool,
    args: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
    dispatch: impl FnOnce(&str, &[String], &mut dyn Write, &mut dyn Write) -> Res<()>,
) -> u8 {
    let Some((cmd, rest)) = args.split_first() else {
        let _ = writeln!(err, "{}", tool.usage);
        return 2;
    };
    match cmd.as_str() {
        "--help" | "-h" | "help" => {
            let _ = write!(out, "{}", tool.help);
            return 0;
        }
        "--version" | "-V" => {
            let _ = writeln!(out, "{} {}", tool.name, env!("CARGO_PKG_VERSION"));
            return 0;
        }
        _ => {}
    }
    match dispatch(cmd, rest, out, err) {
        Ok(()) => 0,
        Err(Failure::Usage(m)) => {
            let _ = writeln!(err, "{}: {m}\n{}", tool.name, tool.usage);
            2
        }
        Err(Failure::Failed(m)) => {
            let _ = writeln!(err, "{}: {}", tool.name, m.replace('\n', " "));
            1
        }
    }
}
