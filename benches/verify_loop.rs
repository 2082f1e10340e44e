//! `dsig::verify` of one file, in one process, N times: the verification alone (file already
//! in memory, no process start, no page cache), for A/B comparisons of two builds on a noisy
//! machine where whole-process timings vary more than a change.
//!
//! ```sh
//! cargo run --release -p saml-benches --example verify_loop -- CERT.pem FILE.xml 15 [threads]
//! ```
//! Prints the least, median and largest milliseconds of the N runs; `threads` keeps the
//! default options (large documents use the helper threads), otherwise single-threaded;
//! `lazy` runs what `samlmd verify` runs in process (saml-metadata's `load_lazy`: the same
//! verification with the index observers, then the entity index), with threads; `refused` times
//! a verification that must fail (say, with a certificate that did not sign the file: what
//! refusing it costs), with threads, and prints the reason.

use std::process::ExitCode;
use std::time::Instant;

use saml_core::dsig::{self, TrustedKeys, VerifyOptions};
use saml_metadata::load::Policy;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [cert, file, runs, rest @ ..] = args.as_slice() else {
        eprintln!("usage: verify_loop CERT.pem FILE.xml RUNS [threads|lazy|refused]");
        return ExitCode::from(2);
    };
    let run = || -> Result<String, String> {
        let pem = std::fs::read(cert).map_err(|e| format!("{cert}: {e}"))?;
        let keys = TrustedKeys::from_pem(&pem).map_err(|e| format!("{cert}: {e}"))?;
        let doc = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
        let n: usize = runs
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("RUNS must be a positive number, not {runs:?}"))?;
        let mode = rest.first().map(String::as_str);
        let opts = match mode {
            Some("threads" | "lazy" | "refused") => VerifyOptions::metadata(),
            None => VerifyOptions::metadata().single_threaded(),
            Some(other) => return Err(format!("unknown mode {other:?} (threads, lazy, refused)")),
        };
        let policy = Policy::new(keys.clone(), std::time::SystemTime::now());
        let mut ms = Vec::with_capacity(n);
        let mut refusal = String::new();
        for _ in 0..n {
            let start = Instant::now();
            if mode == Some("lazy") {
                let agg = saml_metadata::lazy::load_lazy(&doc, &policy)
                    .map_err(|e| format!("{file}: {e}"))?;
                std::hint::black_box(agg.len());
            } else if mode == Some("refused") {
                // The reason is formatted after the clock stops.
                let Err(e) = dsig::verify(&doc, &keys, &opts) else {
                    return Err(format!(
                        "{file}: verified, but refused mode wants it refused"
                    ));
                };
                ms.push(start.elapsed().as_secs_f64() * 1e3);
                refusal = format!(", refused: {e}");
                continue;
            } else {
                let verified =
                    dsig::verify(&doc, &keys, &opts).map_err(|e| format!("{file}: {e}"))?;
                std::hint::black_box(&verified);
            }
            ms.push(start.elapsed().as_secs_f64() * 1e3);
        }
        ms.sort_by(f64::total_cmp);
        Ok(format!(
            "min {:.1} ms, median {:.1} ms, max {:.1} ms ({n} runs){refusal}",
            ms[0],
            ms[n / 2],
            ms[n - 1]
        ))
    };
    match run() {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("verify_loop: {e}");
            ExitCode::FAILURE
        }
    }
}
