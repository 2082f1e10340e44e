//! HTTP-Redirect and HTTP-POST bindings: round trips, query-string signatures over the exact
//! octets received, and every refusal (tampering, unsigned, SHA-1, RelayState length, DEFLATE
//! bombs and truncation, duplicate parameters, HTML escaping).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;

use base64::Engine as _;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use saml_core::Error;
use saml_core::bindings::{MessageKind, post, redirect, url_encode};
use saml_core::dsig::{SignatureAlgorithm, SigningKey, TrustedKeys};

const XML: &[u8] = br#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_a" Version="2.0" IssueInstant="2027-01-15T08:00:00Z"><saml:Issuer xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">https://sp.example.com</saml:Issuer></samlp:AuthnRequest>"#;

fn key() -> (SigningKey, TrustedKeys) {
    let k = SigningKey::new(PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(), None).unwrap();
    let mut t = TrustedKeys::new();
    t.add_public_key(k.public_key().unwrap(), "sp").unwrap();
    (k, t)
}

#[test]
fn redirect_round_trip_signed_and_unsigned() {
    let (k, t) = key();
    let q = redirect::encode(
        MessageKind::Request,
        XML,
        Some("state & more/+="),
        Some(&k),
        None,
    )
    .unwrap();
    assert!(
        q.starts_with("SAMLRequest=")
            && q.contains("&RelayState=state%20%26%20more%2F%2B%3D&SigAlg=")
    );
    let url = redirect::url("https://idp.example.org/sso?tenant=a", &q);
    assert!(url.starts_with("https://idp.example.org/sso?tenant=a&SAMLRequest="));
    let m = redirect::decode(
        &url[url.find('?').unwrap()..],
        redirect::DEFAULT_MAX_INFLATED,
    )
    .unwrap();
    assert_eq!(m.kind, MessageKind::Request);
    assert_eq!(m.xml, XML);
    assert_eq!(m.relay_state.as_deref(), Some("state & more/+="));
    assert_eq!(
        m.signature_algorithm(),
        Some("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")
    );
    assert_eq!(m.verify(&t, false).unwrap(), 0);
    // Another key fails; a changed RelayState fails; unsigned cannot verify.
    assert!(m.verify(&key().1, false).is_err());
    let changed = q.replace("RelayState=state", "RelayState=other");
    let m2 = redirect::decode(&changed, redirect::DEFAULT_MAX_INFLATED).unwrap();
    assert!(m2.verify(&t, false).is_err());
    let plain = redirect::encode(MessageKind::Response, XML, None, None, None).unwrap();
    let m3 = redirect::decode(&plain, redirect::DEFAULT_MAX_INFLATED).unwrap();
    assert_eq!(m3.kind, MessageKind::Response);
    assert!(!m3.is_signed());
    assert!(matches!(m3.verify(&t, false), Err(Error::Protocol(_))));
    // The signature covers the octets as received: a differently encoded but equal query fails
    // (the verifier must not re-encode).
    let lower = q.replacen("%2B", "%2b", 1);
    if lower != q {
        let m4 = redirect::decode(&lower, redirect::DEFAULT_MAX_INFLATED).unwrap();
        assert_eq!(m4.xml, XML);
        assert!(m4.verify(&t, false).is_err());
    }
    // SHA-1 is not used for signing, and is refused on verify unless legacy.
    assert!(
        redirect::encode(
            MessageKind::Request,
            XML,
            None,
            Some(&k),
            Some(SignatureAlgorithm::RsaSha1)
        )
        .is_err()
    );
    let sha1 = q.replace(
        &url_encode("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"),
        &url_encode("http://www.w3.org/2000/09/xmldsig#rsa-sha1"),
    );
    let m5 = redirect::decode(&sha1, redirect::DEFAULT_MAX_INFLATED).unwrap();
    assert!(matches!(m5.verify(&t, false), Err(Error::Signature(_))));
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn query(deflated: &[u8]) -> String {
    format!(
        "SAMLRequest={}",
        url_encode(&base64::engine::general_purpose::STANDARD.encode(deflated))
    )
}

#[test]
fn redirect_refusals() {
    let max = redirect::DEFAULT_MAX_INFLATED;
    let bomb = deflate(&vec![b'a'; 50 << 20]);
    assert!(bomb.len() < 100 << 10);
    let e = redirect::decode(&query(&bomb), max)
        .unwrap_err()
        .to_string();
    assert!(e.contains("exceeds"), "{e}");
    let ok = deflate(XML);
    // Limits smaller than the growth step (found by fuzzing: a panic in the buffer growth).
    for small in [0, 1, 100, XML.len() - 1] {
        assert!(redirect::decode(&query(&ok), small).is_err(), "{small}");
    }
    assert_eq!(redirect::decode(&query(&ok), XML.len()).unwrap().xml, XML);
    let e = redirect::decode(&query(&ok[..ok.len() / 2]), max)
        .unwrap_err()
        .to_string();
    assert!(e.contains("truncated") || e.contains("DEFLATE"), "{e}");
    let mut trailing = ok.clone();
    trailing.extend_from_slice(b"junk");
    assert!(redirect::decode(&query(&trailing), max).is_err());
    assert!(redirect::decode(&query(b"\xff\xff\xff"), max).is_err());
    assert!(redirect::decode("SAMLRequest=%%%", max).is_err());
    assert!(redirect::decode("SAMLRequest=@@@@", max).is_err());
    assert!(redirect::decode("RelayState=x", max).is_err());
    let q = query(&ok);
    assert!(redirect::decode(&format!("{q}&{q}"), max).is_err());
    assert!(redirect::decode(&format!("{q}&SAMLResponse=x"), max).is_err());
    assert!(redirect::decode(&format!("{q}&SigAlg=x"), max).is_err());
    assert!(redirect::decode(&format!("{q}&SAMLEncoding=urn%3Aother"), max).is_err());
    let long = "x".repeat(4097);
    assert!(redirect::decode(&format!("{q}&RelayState={long}"), max).is_err());
    assert!(redirect::encode(MessageKind::Request, XML, Some(&long), None, None).is_err());
    // Exactly 4096 bytes is fine (review of the twelfth round, F10: real SPs send more than
    // the 80 of SAML Bindings §3.4.3, which were refused), and so is a SimpleSAMLphp SP's
    // return URL, taken and echoed.
    let m = redirect::decode(&format!("{q}&RelayState={}", "y".repeat(4096)), max).unwrap();
    assert_eq!(m.relay_state.unwrap().len(), 4096);
    let ssp = "https://sp.example.org/simplesaml/module.php/core/authenticate.php?as=default-sp\
               &ReturnTo=https%3A%2F%2Fapp.example.org%2Fsome%2Fdeep%2Fpage%3Fwith%3Dquery%26and%3Dmore";
    assert!(ssp.len() > 80);
    let m = redirect::decode(&format!("{q}&RelayState={}", url_encode(ssp)), max).unwrap();
    assert_eq!(m.relay_state.as_deref(), Some(ssp));
    assert!(post::form("https://x", MessageKind::Response, XML, Some(ssp)).is_ok());
    // An unencoded '+' in the base64 (form decoding makes it a space) still decodes.
    let raw_plus = format!(
        "SAMLRequest={}",
        base64::engine::general_purpose::STANDARD.encode(&ok)
    );
    assert_eq!(redirect::decode(&raw_plus, max).unwrap().xml, XML);
}

#[test]
fn post_form_and_decoding() {
    let html = post::form(
        "https://sp.example.com/acs?x=1&y=\"2\"",
        MessageKind::Response,
        XML,
        Some("<script>alert(1)</script>"),
    )
    .unwrap();
    assert!(html.contains("action=\"https://sp.example.com/acs?x=1&amp;y=&quot;2&quot;\""));
    assert!(!html.contains("<script>alert"));
    assert!(html.contains("&lt;script&gt;"));
    assert!(html.contains("name=\"SAMLResponse\""));
    let value = post::encode(XML);
    let body = format!(
        "SAMLResponse={}&RelayState={}",
        url_encode(&value),
        url_encode("abc")
    );
    let m = post::decode_form(&body, post::DEFAULT_MAX_MESSAGE).unwrap();
    assert_eq!(
        (m.kind, m.xml.as_slice(), m.relay_state.as_deref()),
        (MessageKind::Response, XML, Some("abc"))
    );
    assert!(post::decode_form("RelayState=a", post::DEFAULT_MAX_MESSAGE).is_err());
    assert!(
        post::decode_form(&format!("{body}&SAMLRequest=x"), post::DEFAULT_MAX_MESSAGE).is_err()
    );
    assert!(post::decode(&value, 10).is_err());
    assert!(post::decode("!!!", 100).is_err());
    // Review B8: a message of the largest size, its base64 wrapped at 76 columns with CR LF
    // (as MIME writes it), is decoded; one byte more is refused.
    let big = vec![b'a'; 30_000];
    let plain = post::encode(&big);
    let wrapped: String = plain
        .as_bytes()
        .chunks(76)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n");
    assert_eq!(post::decode(&wrapped, big.len()).unwrap(), big);
    assert!(post::decode(&wrapped, big.len() - 1).is_err());
    assert!(
        post::form(
            "https://x",
            MessageKind::Request,
            XML,
            Some(&"r".repeat(4097))
        )
        .is_err()
    );
    // Sasl review I1: the action is an absolute http(s) URL, never a script.
    for bad in [
        "javascript:alert(1)",
        "JavaScript://%0aalert(1)",
        "data:text/html,x",
        "/relative/acs",
        "https://sp.example/acs\n",
    ] {
        assert!(
            post::form(bad, MessageKind::Response, XML, None).is_err(),
            "{bad:?}"
        );
    }
    assert!(
        post::form(
            "HTTP://127.0.0.1:8080/acs",
            MessageKind::Response,
            XML,
            None
        )
        .is_ok()
    );
}
