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

/// Largest key or certificate file read (PEM): 1 MiB.
const MAX_PEM: u64 = 1 << 20;

/// Reads a key or certificate file, at most [`MAX_PEM`] bytes; the error names it (review
/// W9: `--key /dev/zero` read until memory ran out).
pub(crate) fn read(path: &str) -> Res<Vec<u8>> {
    use std::io::Read;
    let failed = |e: std::io::Error| Failure::Failed(format!("{path}: {e}"));
    let mut out = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM + 1).read_to_end(&mut out))
        .map_err(failed)?;
    if out.len() as u64 > MAX_PEM {
        return Err(Failure::Failed(format!(
            "{path}: larger than {MAX_PEM} bytes: not a key or certificate file"
        )));
    }
    Ok(out)
}

/// Files at least this large are read into populated anonymous memory, by two threads (each
/// half into its own part of the buffer) unless single-threaded (issue 15: reading a 60 MiB
/// aggregate from the page cache took 35 ms on one core, most of it the kernel zeroing,
/// faulting in and copying fresh pages).
const LARGE_READ_MIN: u64 = 4 << 20;

/// A document read into memory: a `Vec` for small files and streams, an anonymous mapping for
/// large regular files.
pub(crate) enum Document {
    /// Read with `read_to_end`.
    Small(Vec<u8>),
    /// Read into anonymous memory whose pages were faulted in up front (see [`read_large`]).
    Large(memmap2::MmapMut),
}

impl std::ops::Deref for Document {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Document::Small(v) => v,
            Document::Large(m) => m,
        }
    }
}

/// Reads the metadata document a command verifies, never more than `max` bytes: a larger file
/// is refused before it is read (by its length, and by reading at most one byte past `max`
/// where no length is known, as from a pipe), with the message saml-core gives for its
/// document-size limit. A large regular file is read like [`read_large`] says, its halves on
/// two threads when `parallel`. The whole file is read (no mapping of the file itself: a mapped
/// file changed by another process after verification would change the verified bytes), and
/// a file whose length changes while it is read is refused rather than read half old, half new.
pub(crate) fn read_document(path: &str, parallel: bool, max: usize) -> Res<Document> {
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
    if len < LARGE_READ_MIN || !meta.is_file() {
        // Sized from the length where there is one (as `std::fs::read` does): no regrowth.
        let mut doc = Vec::with_capacity(usize::try_from(len.min(max as u64)).unwrap_or(0));
        file.take(max as u64 + 1)
            .read_to_end(&mut doc)
            .map_err(failed)?;
        if doc.len() > max {
            return Err(too_large());
        }
        return Ok(Document::Small(doc));
    }
    let size = usize::try_from(len).map_err(|_| too_large())?;
    read_large(&file, size, parallel)
        .map(Document::Large)
        .map_err(failed)
}

/// Reads `size` bytes of `file` from offset 0 into anonymous memory whose pages are populated
/// before the copy, and checks that the file ends there. Issue 15: a `Vec` of a 60 MiB aggregate
/// takes its 15,400 fresh pages one page fault each while the file is copied in (`std::fs::read`
/// 58 ms on a 2-vCPU VM, 40 % of it the faults); populated in one call (`MAP_POPULATE`) the
/// same read took 40-55 ms instead of 62-98 ms (BENCHMARKS.md, "seventh round"). When
/// `parallel`, each half is populated (`MADV_POPULATE_WRITE`) and read on its own thread: on
/// the host of the tenth round one `MAP_POPULATE` of the whole took 21 ms of the 29 ms read,
/// serially, and the halves populated in parallel made the whole process 2-5 % faster
/// (BENCHMARKS.md, "tenth round"). The pages and the peak RSS are the same; only the way they
/// are faulted in differs.
fn read_large(
    file: &std::fs::File,
    size: usize,
    parallel: bool,
) -> std::io::Result<memmap2::MmapMut> {
    use std::os::unix::fs::FileExt;
    let read = if parallel {
        let mut buf = memmap2::MmapOptions::new().len(size).map_anon()?;
        let mid = size / 2;
        populate_halves(&buf, mid);
        let (first, second) = buf.split_at_mut(mid);
        std::thread::scope(|s| {
            let other = s.spawn(|| file.read_exact_at(second, mid as u64));
            file.read_exact_at(first, 0)?;
            other
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("reading thread failed")))
        })
        .map(|()| buf)
    } else {
        let mut buf = memmap2::MmapOptions::new()
            .len(size)
            .populate()
            .map_anon()?;
        file.read_exact_at(&mut buf, 0).map(|()| buf)
    };
    let buf = read.map_err(|e| {
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

/// Faults in the pages of the two halves of `buf` (split at `mid`, rounded down to a page) on
/// two threads (`MADV_POPULATE_WRITE`, memmap2's safe `advise_range`; Linux 5.14 and later).
/// Where the kernel does not have it, nothing is populated and the pages are faulted in while
/// they are read, on the reading threads.
fn populate_halves(buf: &memmap2::MmapMut, mid: usize) {
    #[cfg(target_os = "linux")]
    {
        use memmap2::Advice::PopulateWrite;
        let at = mid / 4096 * 4096;
        let size = buf.len();
        // A populate holds the mmap lock for reading all along, and any mmap waits for it: the
        // other thread's own mappings at its start (its signal stack, its malloc arena) waited
        // for this thread's whole populate, so the two halves were populated one after the
        // other (strace, BENCHMARKS.md "eleventh round"). The other thread makes them first.
        let ready = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            let other = s.spawn(|| {
                drop(std::hint::black_box(Box::new(0u64)));
                ready.wait();
                buf.advise_range(PopulateWrite, at, size - at)
            });
            ready.wait();
            let _ = buf.advise_range(PopulateWrite, 0, at);
            let _ = other.join();
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (buf, mid);
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
        let data: Vec<u8> = (0..(LARGE_READ_MIN as usize + 12_345))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let p = path.to_str().unwrap();
        let max = data.len();
        for parallel in [true, false] {
            let doc = read_document(p, parallel, max).unwrap();
            assert!(matches!(doc, Document::Large(_)));
            assert_eq!(&doc[..], &data[..]);
        }
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
        for parallel in [true, false] {
            // Asked for fewer bytes than the file holds: it grew while it was read.
            let e = read_large(&f, data.len() - 1, parallel).unwrap_err();
            assert!(e.to_string().contains("longer"), "{e}");
            // Asked for more: it shrank.
            let e = read_large(&f, data.len() + 1, parallel).unwrap_err();
            assert!(e.to_string().contains("shorter"), "{e}");
        }
        // A small file is read into a Vec.
        std::fs::write(&path, b"<x/>").unwrap();
        let doc = read_document(p, true, max).unwrap();
        assert!(matches!(doc, Document::Small(_)));
        assert_eq!(&doc[..], b"<x/>");
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
