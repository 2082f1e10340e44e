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

/// Files at least this large are read by two threads, each half into its own part of the
/// buffer (issue 15: reading a 60 MiB aggregate from the page cache took 35 ms on one core,
/// most of it the kernel zeroing and copying fresh pages; the work splits evenly).
const PARALLEL_READ_MIN: u64 = 4 << 20;

/// Reads the metadata document a command verifies: like [`read`], on two threads when
/// `parallel` and the file is large, and never more than `max` bytes: a larger file is refused
/// before it is read (by its length, and by reading at most one byte past `max` where no
/// length is known, as from a pipe), with the message saml-core gives for its document-size
/// limit. The whole file is read (no memory map: a mapped file changed by another process after
/// verification would change the verified bytes), and a file whose length changes while it is
/// read is refused rather than read half old, half new.
pub(crate) fn read_document(path: &str, parallel: bool, max: usize) -> Res<Vec<u8>> {
    use std::io::Read;
    let failed = |e: std::io::Error| Failure::Failed(format!("{path}: {e}"));
    let too_large = || {
        Failure::Failed(format!(
            "{path}: document larger than {max} bytes (--max-size raises the limit)"
        ))
    };
    let file = std::fs::File::open(path).map_err(failed)?;
    let meta = file.metadata().map_err(failed)?;
    let len = meta.len();
    if meta.is_file() && len > max as u64 {
        return Err(too_large());
    }
    if !parallel || len < PARALLEL_READ_MIN || !meta.is_file() {
        // Sized from the length where there is one (as `std::fs::read` does): no regrowth.
        let mut doc = Vec::with_capacity(usize::try_from(len.min(max as u64)).unwrap_or(0));
        file.take(max as u64 + 1)
            .read_to_end(&mut doc)
            .map_err(failed)?;
        if doc.len() > max {
            return Err(too_large());
        }
        return Ok(doc);
    }
    let size = usize::try_from(len).map_err(|_| too_large())?;
    read_halves(&file, size).map_err(failed)
}

/// Reads `size` bytes of `file` from offset 0, the two halves on two threads, and checks that
/// the file ends there.
fn read_halves(file: &std::fs::File, size: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    // Zeroed allocation: fresh pages from the kernel, faulted in by whichever thread writes them.
    let mut buf = vec![0u8; size];
    let mid = size / 2;
    let (first, second) = buf.split_at_mut(mid);
    std::thread::scope(|s| {
        let other = s.spawn(|| file.read_exact_at(second, mid as u64));
        file.read_exact_at(first, 0)?;
        other
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("reading thread failed")))
    })
    .map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            std::io::Error::other("the file became shorter while it was read")
        } else {
            e
        }
    })?;
    let mut probe = [0u8; 1];
    if file.read_at(&mut probe, size as u64)? != 0 {
        return Err(std::io::Error::other(
            "the file became longer while it was read",
        ));
    }
    Ok(buf)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_file_read_by_two_threads_is_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.xml");
        // Odd length, so the halves differ in size; content varies with the offset.
        let data: Vec<u8> = (0..(PARALLEL_READ_MIN as usize + 12_345))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let p = path.to_str().unwrap();
        let max = data.len();
        assert_eq!(read_document(p, true, max).unwrap(), data);
        assert_eq!(read_document(p, false, max).unwrap(), data);
        // One byte over the limit: refused, on either path, naming the limit.
        for parallel in [true, false] {
            let Err(Failure::Failed(m)) = read_document(p, parallel, max - 1) else {
                panic!("a file over the limit was read");
            };
            assert!(
                m.contains(&format!("document larger than {} bytes", max - 1)),
                "{m}"
            );
        }
        let f = std::fs::File::open(&path).unwrap();
        // Asked for fewer bytes than the file holds: it grew while it was read.
        let e = read_halves(&f, data.len() - 1).unwrap_err();
        assert!(e.to_string().contains("longer"), "{e}");
        // Asked for more: it shrank.
        let e = read_halves(&f, data.len() + 1).unwrap_err();
        assert!(e.to_string().contains("shorter"), "{e}");
    }

    /// Where no length is known (a pipe), at most one byte past the limit is read.
    #[test]
    fn a_stream_is_read_up_to_the_limit() {
        let Err(Failure::Failed(m)) = read_document("/dev/zero", true, 4096) else {
            panic!("an endless stream was read");
        };
        assert!(m.contains("document larger than 4096 bytes"), "{m}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let Err(Failure::Failed(m)) = read_document("/nonexistent/agg.xml", true, 1 << 20) else {
            panic!("expected a failure");
        };
        assert!(m.starts_with("/nonexistent/agg.xml: "), "{m}");
    }
}
