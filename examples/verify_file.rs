//! Verifies the enveloped root signature of a SAML metadata file with `saml_core::dsig::verify`
//! (`VerifyOptions::metadata()`), trusting only the certificates in `CERT.pem`.
//!
//! Usage: `verify_file [--serial] CERT.pem FILE` (`--serial` keeps canonicalization and hashing
//! on the calling thread instead of the two-stage pipeline used for large documents). Prints `OK <canonical bytes digested>` and exits 0 when
//! the signature verifies; prints the error and exits 1 otherwise; exits 2 on a usage error.
//! Used by `benches/peak_rss.sh` to measure peak memory and wall time.

use std::process::ExitCode;

use saml_core::dsig::{self, TrustedKeys, VerifyOptions};

fn run(cert: &str, file: &str, serial: bool) -> Result<u64, Box<dyn std::error::Error>> {
    let pem = std::fs::read(cert).map_err(|e| format!("{cert}: {e}"))?;
    let keys = TrustedKeys::from_pem(&pem)?;
    let doc = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
    let opts = if serial {
        VerifyOptions::metadata().single_threaded()
    } else {
        VerifyOptions::metadata()
    };
    let verified = dsig::verify(&doc, &keys, &opts)?;
    Ok(verified.canonical_len())
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let serial = args.first().is_some_and(|a| a == "--serial");
    if serial {
        args.remove(0);
    }
    let [cert, file] = args.as_slice() else {
        eprintln!("usage: verify_file [--serial] CERT.pem FILE");
        return ExitCode::from(2);
    };
    match run(cert, file, serial) {
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
