//! Verifies the enveloped root signature of a SAML metadata file with `saml_core::dsig::verify`
//! (`VerifyOptions::metadata()`), trusting only the certificates in `CERT.pem`.
//!
//! Usage: `verify_file CERT.pem FILE`. Prints `OK <canonical bytes digested>` and exits 0 when
//! the signature verifies; prints the error and exits 1 otherwise; exits 2 on a usage error.
//! Used by `benches/peak_rss.sh` to measure peak memory and wall time.

use std::process::ExitCode;

use saml_core::dsig::{self, TrustedKeys, VerifyOptions};

fn run(cert: &str, file: &str) -> Result<u64, Box<dyn std::error::Error>> {
    let pem = std::fs::read(cert).map_err(|e| format!("{cert}: {e}"))?;
    let keys = TrustedKeys::from_pem(&pem)?;
    let doc = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
    let verified = dsig::verify(&doc, &keys, &VerifyOptions::metadata())?;
    Ok(verified.canonical_len())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [cert, file] = args.as_slice() else {
        eprintln!("usage: verify_file CERT.pem FILE");
        return ExitCode::from(2);
    };
    match run(cert, file) {
        Ok(len) => {
            println!("OK {len}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
