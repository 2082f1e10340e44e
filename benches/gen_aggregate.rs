//! Writes an eduGAIN-shaped SAML metadata aggregate (see `testkit::aggregate`).
//!
//! Usage: `gen_aggregate N OUT [--sign KEY.pem CERT.pem] [--seed S]`
//!
//! `N` entities (IdPs and SPs alternating, about 6.5 KB each) are written to `OUT`; with `--sign`
//! the aggregate is signed with `saml_core::dsig::sign` (enveloped, exc-c14n, RSA-SHA256 for an
//! RSA key) and the certificate goes into KeyInfo. Exit status: 0 on success, 1 when generating,
//! signing or writing fails, 2 on a usage error.

use std::process::ExitCode;
use std::time::Instant;

use saml_core::dsig::{self, SignOptions, SigningKey};
use samlmd::aggregate;

const USAGE: &str = "usage: gen_aggregate N OUT [--sign KEY.pem CERT.pem] [--seed S]";

struct Args {
    n: usize,
    out: String,
    sign: Option<(String, String)>,
    seed: u64,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut positional = Vec::new();
    let mut sign = None;
    let mut seed = 1u64;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--sign" => {
                let (Some(k), Some(c)) = (args.next(), args.next()) else {
                    return Err("--sign needs KEY.pem and CERT.pem".into());
                };
                sign = Some((k, c));
            }
            "--seed" => {
                let s = args.next().ok_or("--seed needs a value")?;
                seed = s.parse().map_err(|_| format!("bad seed {s:?}"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ => positional.push(a),
        }
    }
    let [n, out] = <[String; 2]>::try_from(positional)
        .map_err(|p| format!("expected N and OUT, got {} arguments", p.len()))?;
    let n = n
        .parse()
        .map_err(|_| format!("N must be a number, got {n:?}"))?;
    Ok(Args { n, out, sign, seed })
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let t = Instant::now();
    let doc = aggregate::generate(args.n, args.seed);
    let gen_time = t.elapsed();
    let bytes = match &args.sign {
        None => doc.into_bytes(),
        Some((key, cert)) => {
            let key_pem = std::fs::read(key).map_err(|e| format!("{key}: {e}"))?;
            let cert_pem = std::fs::read(cert).map_err(|e| format!("{cert}: {e}"))?;
            let key = SigningKey::from_pem(&key_pem, Some(&cert_pem))?;
            let t = Instant::now();
            let signed = dsig::sign(doc.as_bytes(), &key, &SignOptions::default())?;
            eprintln!("signed in {:.3} s", t.elapsed().as_secs_f64());
            signed
        }
    };
    std::fs::write(&args.out, &bytes).map_err(|e| format!("{}: {e}", args.out))?;
    eprintln!(
        "{}: {} entities, {} bytes ({:.1} bytes/entity), generated in {:.3} s{}",
        args.out,
        args.n,
        bytes.len(),
        bytes.len() as f64 / args.n.max(1) as f64,
        gen_time.as_secs_f64(),
        if args.sign.is_some() {
            ", signed"
        } else {
            ", unsigned"
        }
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("gen_aggregate: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_aggregate: {e}");
            ExitCode::FAILURE
        }
    }
}
