//! What the command-line tools (`samlmd`, `xep0027`) share: the failure kinds and the exit-code
//! contract (0 success, 1 with a one-line reason on stderr, 2 for usage errors with the usage).

use std::process::ExitCode;

/// Why a command did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// The command line is wrong (exit 2, usage printed).
    Usage(String),
    /// The input was refused or an operation failed (exit 1).
    Failed(String),
}

/// A command's result.
pub type Res<T> = Result<T, Failure>;

/// Any error as a [`Failure::Failed`].
pub fn fail(e: impl std::fmt::Display) -> Failure {
    Failure::Failed(e.to_string())
}

/// Reads a file; the error names it.
pub fn read(path: &str) -> Res<Vec<u8>> {
    std::fs::read(path).map_err(|e| Failure::Failed(format!("{path}: {e}")))
}

/// Runs `dispatch(command, rest)` on the process arguments and maps the outcome to the exit
/// code, printing reasons as `tool: reason` on one line.
pub fn main(
    tool: &str,
    usage: &str,
    dispatch: impl FnOnce(&str, &[String]) -> Res<()>,
) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    match dispatch(cmd, rest) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("{tool}: {m}\n{usage}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(m)) => {
            eprintln!("{tool}: {}", m.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
