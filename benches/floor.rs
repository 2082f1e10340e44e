//! The floor under `samlmd verify` on one file (issue 15, "Proof"): how long the unavoidable
//! steps take on their own, best of RUNS (default 5) wall times, page cache warm.
//!
//! Usage: `floor FILE [RUNS]`
//!
//! Steps, each timed separately:
//! 1. `std::fs::read` of FILE (read once before timing, so the page cache is warm);
//! 2. `std::str::from_utf8` over the bytes;
//! 3. tokenizing with quick-xml (the workspace's version): a `quick_xml::Reader::from_str` loop
//!    over every event, nothing done with them;
//! 4. SHA-256 (`openssl::sha::sha256`) of the canonical bytes: exclusive c14n (no comments) of
//!    the root element minus its `ds:Signature` child, made once with saml-core's
//!    `c14n::Canonicalizer` over its `xml::Reader` before timing (that canonicalization is timed
//!    too, as a reference row, not part of the floor; the reader's 256 MiB document-size limit
//!    is lifted here so that the floor can be taken on larger files too);
//! 5. SHA-256 of the file bytes.
//!
//! Prints a Markdown table (best wall time, throughput over the file size) and whether the
//! SHA-256 of the canonical bytes equals the first `DigestValue` in FILE (it does for a root
//! signature with an exc-c14n, SHA-256 reference, as `benches/realworld_aggregate.py` makes).
//! Exit status: 0 on success, 1 when FILE cannot be read or is not well-formed, 2 on a usage error.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use saml_core::c14n::{Canonicalizer, Options};
use saml_core::xml::{Event, Limits, Reader};

const USAGE: &str = "usage: floor FILE [RUNS]";
const DS: &str = "http://www.w3.org/2000/09/xmldsig#";

/// Best wall time of `runs` calls of `f`, and the last result.
fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let r = black_box(f());
        best = best.min(t.elapsed());
        last = Some(r);
    }
    (best, last.unwrap_or_else(|| unreachable!("runs >= 1")))
}

fn tokenize(s: &str) -> Result<usize, quick_xml::Error> {
    let mut r = quick_xml::Reader::from_str(s);
    let mut n = 0usize;
    loop {
        match r.read_event()? {
            quick_xml::events::Event::Eof => return Ok(n),
            ev => {
                black_box(&ev);
                n += 1;
            }
        }
    }
}

/// Exclusive c14n (no comments) of the root element without its `ds:Signature` children, as
/// `saml_core::c14n::canonicalize_element` makes it, with no document-size limit.
fn canonical(doc: &[u8]) -> Result<Vec<u8>, saml_core::Error> {
    let mut limits = Limits::default();
    limits.max_document_size = usize::MAX;
    let mut reader = Reader::new(doc, limits)?;
    let mut c = Canonicalizer::new(Vec::new(), Options::default());
    let mut skip_depth: Option<usize> = None;
    let mut started = false;
    while let Some(ev) = reader.next()? {
        if let Some(d) = skip_depth {
            if matches!(&ev, Event::End(e) if e.depth == d) {
                skip_depth = None;
            }
            continue;
        }
        if let Event::Start(s) = &ev
            && s.depth == 2
            && s.namespace == DS
            && s.name.local == "Signature"
        {
            skip_depth = Some(s.depth);
            continue;
        }
        // Comments before the root are not part of the element's subtree.
        if c.is_complete() || (!started && !matches!(&ev, Event::Start(_))) {
            continue;
        }
        started = true;
        c.event(&ev)?;
    }
    Ok(c.finish()?.0)
}

/// The text of the first `DigestValue` element, if any.
fn first_digest_value(s: &str) -> Option<&str> {
    let start = s.find("DigestValue>")? + "DigestValue>".len();
    let end = start + s[start..].find('<')?;
    Some(s[start..end].trim())
}

fn run(file: &str, runs: usize) -> Result<(), String> {
    let warm = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
    let size = warm.len();
    drop(warm);
    let (t_read, bytes) = best_of(runs, || std::fs::read(file));
    let bytes = bytes.map_err(|e| format!("{file}: {e}"))?;
    let (t_utf8, text) = best_of(runs, || std::str::from_utf8(&bytes).map(str::len));
    text.map_err(|e| format!("{file}: not UTF-8: {e}"))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| e.to_string())?;
    let (t_tok, events) = best_of(runs, || tokenize(text));
    let events = events.map_err(|e| format!("{file}: quick-xml: {e}"))?;
    let (t_c14n, canonical) = best_of(runs, || canonical(&bytes));
    let canonical = canonical.map_err(|e| format!("{file}: c14n: {e}"))?;
    let (t_sha_c14n, digest) = best_of(runs, || openssl::sha::sha256(&canonical));
    let (t_sha_file, _) = best_of(runs, || openssl::sha::sha256(&bytes));
    let matches = first_digest_value(text)
        .map(|v| v == openssl::base64::encode_block(&digest))
        .map_or(
            "no DigestValue in the file",
            |m| if m { "yes" } else { "NO" },
        );

    let mib = |n: usize| n as f64 / f64::from(1 << 20);
    println!(
        "file: {file}, {size} bytes ({:.1} MiB), canonical (root minus its signature): {} bytes, \
         {events} quick-xml events; best of {runs}",
        mib(size),
        canonical.len()
    );
    println!("SHA-256 of the canonical bytes equals the file's first DigestValue: {matches}");
    println!();
    println!("| step | best wall (ms) | MiB/s of the file |");
    println!("|---|---:|---:|");
    let row = |name: &str, t: Duration| {
        let s = t.as_secs_f64();
        println!("| {name} | {:.1} | {:.0} |", s * 1e3, mib(size) / s);
    };
    row("(i) std::fs::read (page cache warm)", t_read);
    row("(ii) std::str::from_utf8", t_utf8);
    row(
        "(iii) quick-xml tokenize (Reader::from_str, all events)",
        t_tok,
    );
    row("(iv) SHA-256 of the canonical bytes", t_sha_c14n);
    row("(v) SHA-256 of the file bytes", t_sha_file);
    row(
        "floor (i)+(ii)+(iii)+(iv)",
        t_read + t_utf8 + t_tok + t_sha_c14n,
    );
    row(
        "reference, not floor: saml-core c14n of the root into a Vec",
        t_c14n,
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (file, runs) = match args.as_slice() {
        [f] => (f.clone(), 5),
        [f, r] => match r.parse::<usize>() {
            Ok(r) if r >= 1 => (f.clone(), r),
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&file, runs) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor: {e}");
            ExitCode::FAILURE
        }
    }
}
