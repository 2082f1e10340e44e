//! End-to-end demo (the README's main job): generate a key pair, sign a realistic SAML
//! metadata aggregate with saml-core, verify it, cross-check with the xmlsec1 CLI, show a
//! signature-wrapping attempt, a tampered document, a forged KeyInfo and a DOCTYPE trick being
//! rejected, then generate, sign, load (saml-metadata), filter and look up a 2,000-entity
//! aggregate, and publish a selection plus a hand-built entity as a new aggregate signed on
//! write by a second key (checked by xmlsec1); then a Web SSO exchange between an SP and an IdP
//! described by that metadata (signed Redirect request, encrypted and signed POST Response),
//! with a replay, a wrapped assertion and a tampered Response refused; SAML20 SASL between XMPP
//! servers; MDQ lookups from a loopback responder; and XEP-0027 between cloud modules (signed
//! presence checked by GnuPG too, an encrypted message, a refused replay, a session key, an
//! encrypted room with rotation on removal); and DAME, a first-use metadata exchange between
//! an IdP and an SP through a broker, in memory with real signatures.
//!
//! Usage: `demo [OUTDIR]` (default `target/demo`). Exit status 0 when every step behaved as
//! expected, 1 otherwise.
//!
//! One module per step: [`metadata`] (steps 1-7), [`web_sso`] (8), [`xmpp_sso`] (9), [`mdq`]
//! (10), [`modules`] (11), [`dame`] (12). The peers and generators come from the workspace's test kit.

mod dame;
mod mdq;
mod metadata;
mod modules;
mod web_sso;
mod xmpp_sso;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// A fresh RSA-2048 key and self-signed certificate (shared with the benches).
fn self_signed(cn: &str) -> Res<(PKey<Private>, X509)> {
    let (key_pem, cert_pem) = testkit::signer::rsa2048_self_signed(cn)?;
    Ok((
        PKey::private_key_from_pem(&key_pem)?,
        X509::from_pem(&cert_pem)?,
    ))
}

/// Whether the xmlsec1 CLI verifies the signature on the root of `file` with `cert`.
fn xmlsec1_verifies(cert: &Path, file: &Path, what: &str) -> bool {
    match Command::new("xmlsec1")
        .args([
            "--verify",
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:metadata:EntitiesDescriptor",
            "--pubkey-cert-pem",
        ])
        .arg(cert)
        .arg(file)
        .output()
    {
        Ok(o) => step(o.status.success(), what),
        Err(e) => step(
            false,
            &format!("xmlsec1 not runnable ({e}); run scripts/setup.sh"),
        ),
    }
}

fn step(ok: bool, what: &str) -> bool {
    println!("{} {what}", if ok { "[ok]  " } else { "[FAIL]" });
    ok
}

fn run(out: &Path) -> Res<bool> {
    std::fs::create_dir_all(out)?;
    let (mut all, published) = metadata::run(out)?;
    all &= web_sso::run(out)?;
    all &= xmpp_sso::run()?;
    all &= mdq::run(&published)?;
    all &= modules::step()?;
    all &= dame::run(out)?;
    Ok(all)
}

fn main() -> ExitCode {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/demo"));
    match run(&out) {
        Ok(true) => {
            println!(
                "\nDemo finished: every step behaved as expected. Files in {}",
                out.display()
            );
            ExitCode::SUCCESS
        }
        Ok(false) => {
            eprintln!("\nDemo finished with failures.");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}
