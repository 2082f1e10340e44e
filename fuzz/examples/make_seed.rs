//! Prints seeds made with the fuzz test key, in `fuzz/`:
//! - `cargo run --example make_seed > seeds/verify/signed_metadata.xml`: the fixture document
//!   signed (the `verify` target);
//! - `cargo run --example make_seed redirect > seeds/redirect/signed_query.txt`: a signed
//!   HTTP-Redirect query carrying an AuthnRequest;
//! - `cargo run --example make_seed response > seeds/response/signed_response.xml`: a Response
//!   with signed Response and Assertion (the `response` target's fixture shape).

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use saml_core::bindings::{MessageKind, redirect};
use saml_core::dsig::{self, SignOptions, VerifyOptions};
use saml_core::protocol::idp::ResponseBuilder;
use saml_core::protocol::{NAMEID_PERSISTENT, NameId};
use saml_fuzz::{DOC, fuzz_request, signing_key, trusted_keys};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = signing_key()?;
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let req = fuzz_request();
    let out = match std::env::args().nth(1).as_deref() {
        Some("redirect") => redirect::encode(
            MessageKind::Request,
            req.to_xml().as_bytes(),
            Some("state"),
            Some(&key),
            None,
        )?
        .into_bytes(),
        Some("response") => {
            let b = ResponseBuilder::for_request(
                &req,
                "https://idp.example.org",
                "https://sp.example.org/acs",
                NameId::new("fuzz-subject", NAMEID_PERSISTENT),
            );
            b.build(&key, now, &mut saml_core::protocol::openssl_random)?
        }
        _ => {
            let signed = dsig::sign(DOC.as_bytes(), &key, &SignOptions::default())?;
            dsig::verify(&signed, &trusted_keys(&key)?, &VerifyOptions::metadata())?;
            signed
        }
    };
    std::io::stdout().write_all(&out)?;
    Ok(())
}
