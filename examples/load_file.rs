//! Loads (verifies, parses and indexes) a metadata file with saml-metadata and prints the
//! number of indexed entities: `load_file [--lazy|--owned] CERT.pem FILE` (`--lazy`: index
//! only, models built on lookup; `--owned`: `load_owned`, the document handed over and given
//! back while the model is built). For profiling and peak-RSS runs.

use std::process::ExitCode;
use std::time::SystemTime;

use saml_core::dsig::TrustedKeys;
use saml_metadata::load::{self, Policy};

fn run(cert: &str, file: &str, how: &str) -> Result<usize, Box<dyn std::error::Error>> {
    let keys = TrustedKeys::from_pem(&std::fs::read(cert)?)?;
    let doc = std::fs::read(file)?;
    let policy = Policy::new(keys, SystemTime::now());
    Ok(match how {
        "--lazy" => saml_metadata::lazy::load_lazy(&doc, &policy)?.len(),
        "--owned" => load::load_owned(doc, &policy)?.len(),
        _ => load::load(&doc, &policy)?.len(),
    })
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let how = match args.first().map(String::as_str) {
        Some(flag @ ("--lazy" | "--owned")) => {
            let flag = flag.to_owned();
            args.remove(0);
            flag
        }
        _ => String::new(),
    };
    let [cert, file] = args.as_slice() else {
        eprintln!("usage: load_file [--lazy|--owned] CERT.pem FILE");
        return ExitCode::from(2);
    };
    match run(cert, file, &how) {
        Ok(n) => {
            println!("OK {n} entities");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
