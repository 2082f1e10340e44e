//! The broker's metadata service core: each MDQ answer the draft and real clients need.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use dame_protocol::mdq_service::{DocumentSource, MdqRequest, MdqService, SignedDocument};
use saml_metadata::model::sha1_hex;

const SP: &str = "https://sp.example.org/shibboleth";

struct Store(HashMap<String, SignedDocument>);

impl DocumentSource for Store {
    fn by_sha1(&self, h: &str) -> Option<SignedDocument> {
        self.0.get(h).cloned()
    }
}

fn store() -> Store {
    let doc = SignedDocument {
        xml: b"<md:EntityDescriptor/>".as_slice().into(),
        etag: "v1".into(),
    };
    Store(HashMap::from([(sha1_hex(SP), doc)]))
}

fn get(path: &str) -> MdqRequest<'_> {
    MdqRequest {
        method: "GET",
        path,
        accept: None,
        if_none_match: None,
    }
}

fn header<'a>(a: &'a dame_protocol::mdq_service::MdqAnswer, name: &str) -> Option<&'a str> {
    a.headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn found_by_entity_id_and_by_sha1() {
    let s = MdqService::new("/metadataservice");
    let enc = saml_core::bindings::url_encode(SP);
    for path in [
        format!("/metadataservice/entities/{enc}"),
        format!("/metadataservice/entities/%7Bsha1%7D{}", sha1_hex(SP)),
        format!(
            "/metadataservice/entities/{{sha1}}{}",
            sha1_hex(SP).to_uppercase()
        ),
    ] {
        let a = s.answer(&get(&path), &store());
        assert_eq!(a.status, 200, "{path}");
        assert_eq!(
            header(&a, "Content-Type"),
            Some("application/samlmetadata+xml")
        );
        assert_eq!(header(&a, "ETag"), Some("\"v1\""));
        assert_eq!(header(&a, "Cache-Control"), Some("max-age=3600"));
        assert_eq!(&*a.body, b"<md:EntityDescriptor/>");
    }
    let mut head =
        get("/metadataservice/entities/%7Bsha1%7D0000000000000000000000000000000000000000");
    head.method = "HEAD";
    assert_eq!(s.answer(&head, &store()).status, 404);
}

#[test]
fn conditional_not_found_not_acceptable_and_bad_requests() {
    let s = MdqService::new("/");
    let path = format!("/entities/{}", saml_core::bindings::url_encode(SP));
    let mut r = get(&path);
    r.if_none_match = Some("\"v0\", \"v1\"");
    let a = s.answer(&r, &store());
    assert_eq!((a.status, a.body.len()), (304, 0));
    assert_eq!(header(&a, "ETag"), Some("\"v1\""));
    r.if_none_match = Some("\"v0\"");
    assert_eq!(s.answer(&r, &store()).status, 200);

    let unknown = s.answer(&get("/entities/https%3A%2F%2Fnobody.example%2F"), &store());
    assert_eq!(unknown.status, 404);
    assert_eq!(header(&unknown, "Cache-Control"), Some("max-age=60"));

    let mut json = get(&path);
    json.accept = Some("application/json");
    assert_eq!(s.answer(&json, &store()).status, 406);
    json.accept = Some("application/json, application/samlmetadata+xml;q=0.9");
    assert_eq!(s.answer(&json, &store()).status, 200);
    json.accept = Some("application/samlmetadata+xml;q=0");
    assert_eq!(s.answer(&json, &store()).status, 406);

    let mut post = get(&path);
    post.method = "POST";
    let a = s.answer(&post, &store());
    assert_eq!(a.status, 405);
    assert_eq!(header(&a, "Allow"), Some("GET, HEAD"));

    assert_eq!(s.answer(&get("/entities/a/b"), &store()).status, 400);
    assert_eq!(
        s.answer(&get("/entities/%7Bsha1%7Dxyz"), &store()).status,
        400
    );
    assert_eq!(s.answer(&get("/entities/%ZZ"), &store()).status, 400);
    assert_eq!(s.answer(&get("/other/x"), &store()).status, 404);
    // No aggregate offered.
    assert_eq!(s.answer(&get("/entities"), &store()).status, 404);
}

/// An answer shares the source's document instead of copying it: a source behind a lock (the
/// broker's registry) is held for a reference count, not for a copy of up to the upload limit,
/// however many clients ask at once (broker review, M4 "same class").
#[test]
fn answers_share_the_document_instead_of_copying_it() {
    let s = MdqService::new("/");
    let source = store();
    let path = format!("/entities/{}", saml_core::bindings::url_encode(SP));
    let a = s.answer(&get(&path), &source);
    let b = s.answer(&get(&path), &source);
    assert_eq!(a.status, 200);
    assert!(std::sync::Arc::ptr_eq(&a.body, &b.body));
    assert!(std::sync::Arc::ptr_eq(
        &a.body,
        &source.0[&sha1_hex(SP)].xml
    ));
}

/// A path segment is percent-decoded as RFC 3986 says (sasl review M1): `+` is itself, as the
/// MDQ draft's examples, Shibboleth and mdq-client write it, so an entityID with a `+` is
/// found; a client that form-encodes a space as `+` still finds an entityID with a space when
/// none with the `+` exists. The `{sha1}` form is recognised with its braces encoded in either
/// case (I2); `%` without two hex digits is a bad request.
#[test]
fn path_segments_are_percent_decoded_and_plus_is_itself() {
    let doc = |xml: &str| SignedDocument {
        xml: xml.as_bytes().into(),
        etag: "v".into(),
    };
    let plus = "https://sp.example/a+b";
    let space = "https://sp.example/a b";
    let s = MdqService::new("/");
    let path = |id: &str| format!("/entities/{}", mdq_client::url::encode_segment(id).unwrap());
    // Both registered: each is found by its own name, and `a+b` written literally is `a+b`.
    let both = Store(HashMap::from([
        (sha1_hex(plus), doc("plus")),
        (sha1_hex(space), doc("space")),
    ]));
    assert_eq!(&*s.answer(&get(&path(plus)), &both).body, b"plus");
    assert_eq!(
        &*s.answer(&get("/entities/https:%2F%2Fsp.example%2Fa+b"), &both)
            .body,
        b"plus"
    );
    assert_eq!(&*s.answer(&get(&path(space)), &both).body, b"space");
    // Only the one with a space: a form-encoded request still finds it.
    let spaced = Store(HashMap::from([(sha1_hex(space), doc("space"))]));
    assert_eq!(
        &*s.answer(&get("/entities/https:%2F%2Fsp.example%2Fa+b"), &spaced)
            .body,
        b"space"
    );
    // The {sha1} form with mixed-case escapes.
    let h = sha1_hex(plus);
    for p in [
        format!("/entities/%7Bsha1%7d{h}"),
        format!("/entities/%7bsha1%7D{h}"),
    ] {
        assert_eq!(&*s.answer(&get(&p), &both).body, b"plus", "{p}");
    }
    for bad in ["/entities/a%2", "/entities/a%+fb", "/entities/%zz"] {
        assert_eq!(s.answer(&get(bad), &both).status, 400, "{bad}");
    }
}
