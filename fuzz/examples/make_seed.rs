//! Prints the fuzz fixture document signed with the fuzz test key (a seed for the `verify`
//! target): `cargo run --example make_seed > seeds/verify/signed_metadata.xml` in `fuzz/`.

use saml_core::dsig::{self, SignOptions, VerifyOptions};
use saml_fuzz::{DOC, signing_key, trusted_keys};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = signing_key()?;
    let signed = dsig::sign(DOC.as_bytes(), &key, &SignOptions::default())?;
    dsig::verify(&signed, &trusted_keys(&key)?, &VerifyOptions::metadata())?;
    use std::io::Write;
    std::io::stdout().write_all(&signed)?;
    Ok(())
}
