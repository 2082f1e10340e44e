//! Arbitrary bytes into saml-metadata's model builder (`parse_unverified`, the same code path
//! `load` runs on verified content) and into `split` with an untrusted key: errors are fine,
//! panics are not. Whatever parses must report consistent entity counts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saml_metadata::load::parse_unverified;
use saml_metadata::model::Metadata;

fuzz_target!(|data: &[u8]| {
    match parse_unverified(data) {
        Ok(Metadata::Entities(g)) => {
            for e in g.entities() {
                assert!(!e.entity_id.is_empty());
                let _ = e.sha1_id();
                let _ = e.sp().and_then(|s| s.default_acs());
            }
        }
        Ok(Metadata::Entity(e)) => assert!(!e.entity_id.is_empty()),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
