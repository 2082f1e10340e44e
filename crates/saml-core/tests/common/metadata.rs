//! Real-world metadata test data and pinned signers (see testdata/metadata/PROVENANCE.md at the repository root).
#![allow(dead_code)]

use base64::Engine as _;
use openssl::hash::MessageDigest;
use openssl::x509::X509;
use saml_core::dsig::{DSIG_NS, TrustedKeys};
use saml_core::xml::{Event, Limits, Reader, read_text};

pub(crate) fn data(name: &str) -> Vec<u8> {
    let p = format!(
        "{}/../../testdata/metadata/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// The first X509Certificate inside the root's ds:Signature, checked against a pinned
/// fingerprint: the pin is the trust decision, the document only carries the bytes.
pub(crate) fn pinned_signer(doc: &[u8], sha256: &str) -> TrustedKeys {
    let mut r = Reader::new(doc, Limits::default()).expect("reader");
    let mut in_sig = false;
    while let Some(ev) = r.next().expect("event") {
        match ev {
            Event::Start(s) if s.depth == 2 && s.is(DSIG_NS, "Signature") => in_sig = true,
            Event::Start(s) if in_sig && s.is(DSIG_NS, "X509Certificate") => {
                let text = read_text(&mut r).expect("text");
                let clean: String = text.split_whitespace().collect();
                let der = base64::engine::general_purpose::STANDARD
                    .decode(clean)
                    .expect("base64");
                let cert = X509::from_der(&der).expect("cert");
                let fp = cert.digest(MessageDigest::sha256()).expect("digest");
                let hex: Vec<String> = fp.iter().map(|b| format!("{b:02X}")).collect();
                assert_eq!(
                    hex.join(":"),
                    sha256,
                    "signer certificate is not the pinned one"
                );
                let mut keys = TrustedKeys::new();
                keys.add_certificate(&cert).expect("key");
                return keys;
            }
            _ => {}
        }
    }
    panic!("no signer certificate");
}

pub(crate) struct Case {
    pub(crate) file: &'static str,
    pub(crate) sha256: &'static str,
    pub(crate) legacy: bool,
}

pub(crate) const VERIFIABLE: &[Case] = &[
    Case {
        file: "wayf-edugain-2019-signed.xml",
        sha256: "9F:B4:49:52:7F:69:0B:54:81:23:85:B0:F1:67:4A:C6:61:C5:D9:3E:93:F2:97:60:AF:12:5E:FD:C7:A6:2E:13",
        legacy: false,
    },
    Case {
        file: "adfs-v2-signed.xml",
        sha256: "78:6C:EC:26:40:FD:3F:18:8B:B5:08:14:51:7E:11:40:30:55:00:B8:25:57:34:5F:41:BB:E4:9C:21:E8:A5:F9",
        legacy: false,
    },
    Case {
        file: "adfs-v4-signed.xml",
        sha256: "A8:A9:86:37:D4:51:36:76:8C:F8:12:76:CB:CC:CD:58:DB:BF:FB:2E:8C:75:77:1F:01:CB:16:DC:4D:2E:42:35",
        legacy: false,
    },
    Case {
        file: "microsoftonline-sp-signed.xml",
        sha256: "9E:F2:66:00:24:7A:85:28:8D:6A:4E:EF:BC:0E:23:A8:33:6A:4F:87:1B:44:66:12:D4:C5:65:E6:4E:FD:FC:68",
        legacy: true,
    },
    Case {
        file: "ukfederation-2006-signed.xml",
        sha256: "CD:16:6D:A1:19:E4:B6:76:F1:91:C1:C5:23:98:DA:B1:91:D0:8D:4F:5A:60:F1:05:61:17:3B:8A:63:FE:3E:0F",
        legacy: true,
    },
    Case {
        file: "switch-aaitest-2008-signed.xml",
        sha256: "D4:87:9F:9D:ED:21:44:5D:66:9B:FA:7D:79:94:F3:7D:AA:28:D4:D9:2D:EB:90:D4:1D:49:65:3D:90:F6:C3:A9",
        legacy: true,
    },
    Case {
        file: "switch-aaitest-2014-signed.xml",
        sha256: "D1:11:97:EE:9E:6C:68:81:6A:69:76:56:6B:19:F7:60:99:C2:2A:A8:3A:B6:8F:E3:5D:42:0D:0F:13:39:89:68",
        legacy: true,
    },
];
