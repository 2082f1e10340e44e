//! Bench inputs and the reference verifiers' runs: generated eduGAIN-shaped aggregates (signed ones cached on disk with their
//! RSA-2048 signing key and certificate) and the xmlsec1 CLI as the reference verifier.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{aggregate, peers, signer};
use openssl::hash::{MessageDigest, hash};
use saml_core::dsig::{self, SignOptions, SigningKey};

/// `urn:oasis:names:tc:SAML:2.0:metadata:EntitiesDescriptor`, the node xmlsec1 is told carries
/// the `ID` attribute.
pub const ENTITIES_DESCRIPTOR_NODE: &str =
    "urn:oasis:names:tc:SAML:2.0:metadata:EntitiesDescriptor";

/// Where generated bench inputs are cached: `$SAML_BENCH_DATA`, else `bench-data` in the cargo
/// target directory (`$CARGO_TARGET_DIR` or the workspace's `target`).
pub fn data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SAML_BENCH_DATA") {
        return PathBuf::from(d);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| peers::workspace_root().join("target"));
    target.join("bench-data")
}

/// A signed aggregate on disk and the key material that signed it.
#[derive(Debug, Clone)]
pub struct SignedAggregate {
    /// The signed document.
    pub xml: PathBuf,
    /// The signer's private key (PKCS#8 PEM).
    pub key_pem: PathBuf,
    /// The signer's self-signed certificate (PEM); the only key the verifiers trust.
    pub cert_pem: PathBuf,
    /// Number of entities.
    pub entities: usize,
}

fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

/// Returns a cached signed aggregate of `n` entities from `seed`, creating what is missing:
/// an RSA-2048 key with a self-signed certificate (`signer.key.pem`, `signer.cert.pem`, made once
/// per data directory) and the aggregate signed with `saml_core::dsig::sign` (the file name
/// carries the entity count, seed, generator version and the certificate's fingerprint, so a
/// stale file is never reused).
pub fn signed_aggregate(n: usize, seed: u64) -> Result<SignedAggregate, Box<dyn Error>> {
    let dir = data_dir();
    std::fs::create_dir_all(&dir)?;
    let key_pem = dir.join("signer.key.pem");
    let cert_pem = dir.join("signer.cert.pem");
    if !key_pem.exists() || !cert_pem.exists() {
        let (key, cert) = signer::rsa2048_self_signed("saml-benches aggregate signer")?;
        write_atomically(&key_pem, &key)?;
        write_atomically(&cert_pem, &cert)?;
    }
    let key_bytes = std::fs::read(&key_pem)?;
    let cert_bytes = std::fs::read(&cert_pem)?;
    let fp = hash(MessageDigest::sha256(), &cert_bytes)?;
    let fp: String = fp.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let xml = dir.join(format!(
        "aggregate-{n}-s{seed}-g{}-{fp}.signed.xml",
        aggregate::GENERATOR_VERSION
    ));
    if !xml.exists() {
        let doc = aggregate::generate(n, seed);
        let key = SigningKey::from_pem(&key_bytes, Some(&cert_bytes))?;
        let signed = dsig::sign(doc.as_bytes(), &key, &SignOptions::default())?;
        write_atomically(&xml, &signed)?;
    }
    Ok(SignedAggregate {
        xml,
        key_pem,
        cert_pem,
        entities: n,
    })
}

/// Runs `xmlsec1 --verify --id-attr:ID <EntitiesDescriptor> --pubkey-cert-pem CERT FILE`; an
/// error when xmlsec1 cannot be run or does not report a valid signature (with its stderr).
pub fn xmlsec1_verify(cert_pem: &Path, file: &Path) -> Result<(), String> {
    let bin = peers::xmlsec1();
    let out = Command::new(&bin)
        .arg("--verify")
        .arg("--id-attr:ID")
        .arg(ENTITIES_DESCRIPTOR_NODE)
        .arg("--pubkey-cert-pem")
        .arg(cert_pem)
        .arg(file)
        .output()
        .map_err(|e| {
            format!(
                "cannot run {} ({e}); install Debian's xmlsec1 (apt-get install xmlsec1) or set XMLSEC1",
                bin.display()
            )
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} --verify failed ({}): {}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Runs a pyFF pipeline that loads `file`, checking its signature with `cert_pem`, and selects
/// every entity (pyFF's load: parse, verify with xmlsec, index). An error when pyFF cannot be run
/// or fails. `pipeline` is where the YAML is written.
pub fn pyff_load(cert_pem: &Path, file: &Path, pipeline: &Path) -> Result<(), String> {
    let yaml = format!(
        "- load:\n  - {} verify {}\n- select\n",
        file.display(),
        cert_pem.display()
    );
    std::fs::write(pipeline, yaml).map_err(|e| format!("{}: {e}", pipeline.display()))?;
    let bin = peers::venv_bin("pyff");
    let out = Command::new(&bin)
        .arg("--loglevel=ERROR")
        .arg(pipeline)
        .output()
        .map_err(|e| format!("cannot run {} ({e}); run scripts/setup.sh", bin.display()))?;
    if out.status.success() && out.stderr.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "pyff failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
