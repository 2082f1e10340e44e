//! XEP-0027's stripped armor, read tolerantly: decoding any text never panics; what decodes
//! re-encodes to text that decodes to the same bytes and survives a full armor round trip; any
//! bytes encode to text that decodes back to them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xep0027::armor;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = armor::strip(text);
        if let Ok(bin) = armor::decode(text) {
            let enc = armor::encode(&bin);
            assert_eq!(armor::decode(&enc).ok().as_deref(), Some(bin.as_slice()));
            let full = format!(
                "-----BEGIN PGP MESSAGE-----\nComment: fuzz\n\n{enc}\n-----END PGP MESSAGE-----\n"
            );
            assert_eq!(armor::strip(&full).ok().as_deref(), Some(enc.as_str()));
        }
    }
    if !data.is_empty() {
        assert_eq!(
            armor::decode(&armor::encode(data)).ok().as_deref(),
            Some(data)
        );
    }
});
