//! Loads (verifies, parses and indexes) a metadata file with saml-metadata and prints the
//! number of indexed entities: `load_file [--lazy] CERT.pem FILE` (`--lazy`: index only, models
//! built on lookup). For profiling and peak-RSS runs.

use std::process::ExitCode;
use std::time::SystemTime;

use saml_core::dsig::TrustedKeys;
use saml_metadata::load::{self, Policy};

fn run(cert: &str, file: &str, lazy: bool) -> Result<usize, Box<dyn std::error::Error>> {
    let keys = TrustedKeys::from_pem(&std::fs::read(cert)?)?;
    let doc = std::fs::read(file)?;
    let policy = Policy::new(keys, SystemTime::now());
    if lazy {
        Ok(saml_metadata::lazy::load_lazy(&doc, &policy)?.len())
    } else {
        Ok(load::load(&doc, &policy)?.len())
    }
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let lazy = args.first().is_some_and(|a| a == "--lazy");
    if lazy {
        args.remove(0);
    }
    let [cert, file] = args.as_slice() else {
        eprintln!("usage: load_file [--lazy] CERT.pem FILE");
        return ExitCode::from(2);
    };
    match run(cert, file, lazy) {
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
