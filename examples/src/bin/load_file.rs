//! Loads (verifies, parses and indexes) a metadata file with saml-metadata and prints the
//! number of indexed entities: `load_file CERT.pem FILE`. For profiling and peak-RSS runs.

use std::process::ExitCode;
use std::time::SystemTime;

use saml_core::dsig::TrustedKeys;
use saml_metadata::load::{self, Policy};

fn run(cert: &str, file: &str) -> Result<usize, Box<dyn std::error::Error>> {
    let keys = TrustedKeys::from_pem(&std::fs::read(cert)?)?;
    let doc = std::fs::read(file)?;
    Ok(load::load(&doc, &Policy::new(keys, SystemTime::now()))?.len())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [cert, file] = args.as_slice() else {
        eprintln!("usage: load_file CERT.pem FILE");
        return ExitCode::from(2);
    };
    match run(cert, file) {
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
