//! Arbitrary bytes into saml-metadata's model builder (`parse_unverified`, the same code path
//! `load` runs on verified content) and into `split` with an untrusted key: errors are fine,
//! panics are not. Whatever parses must report consistent entity counts, and whatever the writer
//! accepts must read back to the same model (`parse(write(x)) == x`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use saml_metadata::load::parse_unverified;
use saml_metadata::model::Metadata;

fuzz_target!(|data: &[u8]| {
    let parsed = parse_unverified(data);
    if let Ok(md) = &parsed
        && let Ok(xml) = md.to_xml()
    {
        match parse_unverified(xml.as_bytes()) {
            Ok(again) => assert_eq!(&again, md, "round trip differs for {xml}"),
            Err(e) => panic!("written document does not parse: {e}\n{xml}"),
        }
    }
    match parsed {
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
