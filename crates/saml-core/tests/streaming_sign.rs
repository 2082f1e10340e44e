//! `dsig::StreamingSigner`: a document signed piece by piece, never held whole, gets the
//! signature `dsig::sign` gives the whole document (byte for byte with RSA, whose signatures
//! are deterministic), verifies, and bad pieces are refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use saml_core::Error;
use saml_core::dsig::{
    self, Placement, SignOptions, SignatureAlgorithm, SigningKey, StreamingSigner, Target,
    TrustedKeys, VerifyOptions,
};

fn keys(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/data/xmldsig/keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("key file")
}

fn rsa() -> (SigningKey, TrustedKeys) {
    (
        SigningKey::from_pem(&keys("rsa-2048-key.pem"), Some(&keys("rsa-2048-cert.pem")))
            .expect("key"),
        TrustedKeys::from_pem(&keys("rsa-2048-cert.pem")).expect("cert"),
    )
}

const START: &str = "<md:EntitiesDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" \
     xmlns:unused=\"urn:unused\" ID=\"_sel\" Name=\"urn:x:sel\">";

/// Root content exercising what exclusive c14n changes: namespaces declared again below the
/// root (dropped or kept), a default namespace, attribute order and escaping, CRLF line ends,
/// character references, comments, an empty-element tag, a PrefixList-relevant prefix.
const PIECES: [&str; 5] = [
    "\r\n<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" \
     xmlns:mdui=\"urn:oasis:names:tc:SAML:metadata:ui\" entityID=\"https://a.example/&amp;x\" \
     ID='_a'><!-- a comment --><md:Extensions><mdui:UIInfo><mdui:DisplayName xml:lang=\"en\">\
     A &#x26; &lt;B&gt;</mdui:DisplayName></mdui:UIInfo></md:Extensions>\r\n\
     <md:SPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\" \
     WantAssertionsSigned='true'><md:AssertionConsumerService index=\"0\" \
     Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" \
     Location=\"https://a.example/acs?x=1&amp;y=&quot;2&quot;\"/></md:SPSSODescriptor>\
     </md:EntityDescriptor>",
    "\n",
    "<EntityDescriptor xmlns=\"urn:oasis:names:tc:SAML:2.0:metadata\" \
     entityID=\"https://b.example/\"><IDPSSODescriptor \
     protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">\
     <SingleSignOnService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect\" \
     Location=\"https://b.example/sso\"/></IDPSSODescriptor></EntityDescriptor>\n\
     <!-- between -->\n",
    "<md:EntityDescriptor entityID=\"https://c.example/\" xmlns:unused=\"urn:unused\" \
     xmlns:x=\"urn:x\"><md:Extensions><x:Thing x:attr=\"1\" b=\"2\" a=\"3\">\t text \
     </x:Thing></md:Extensions></md:EntityDescriptor>",
    "\n",
];

const END: &str = "</md:EntitiesDescriptor>";

fn streamed(start: &str, pieces: &[&str], key: &SigningKey, opts: &SignOptions) -> Vec<u8> {
    let mut s = StreamingSigner::new(start, key, opts).expect("signer");
    for p in pieces {
        s.content(p.as_bytes()).expect("piece");
    }
    let signature = s.finish().expect("finish");
    let mut out = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{start}{signature}");
    for p in pieces {
        out.push_str(p);
    }
    out.push_str(END);
    out.into_bytes()
}

fn whole(start: &str, pieces: &[&str]) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{start}{}{END}",
        pieces.concat()
    )
    .into_bytes()
}

#[test]
fn streamed_signature_is_the_whole_documents_signature() {
    let (key, trusted) = rsa();
    let opts = SignOptions::default();
    let expected = dsig::sign(&whole(START, &PIECES), &key, &opts).expect("sign");
    let got = streamed(START, &PIECES, &key, &opts);
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&expected)
    );
    dsig::verify(&got, &trusted, &VerifyOptions::metadata()).expect("verify");
    // The cut between pieces does not matter: one piece, or a piece per element.
    let one = [PIECES.concat()];
    let one: Vec<&str> = one.iter().map(String::as_str).collect();
    assert_eq!(streamed(START, &one, &key, &opts), expected);
}

#[test]
fn prefix_lists_and_elliptic_curves() {
    let (key, trusted) = rsa();
    let mut opts = SignOptions::default();
    opts.inclusive_prefixes = Some("unused x".into());
    let expected = dsig::sign(&whole(START, &PIECES), &key, &opts).expect("sign");
    assert_eq!(streamed(START, &PIECES, &key, &opts), expected);

    let ec = SigningKey::from_pem(
        &keys("ec-prime256v1-key.pem"),
        Some(&keys("ec-prime256v1-cert.pem")),
    )
    .expect("ec key");
    let ec_trusted = TrustedKeys::from_pem(&keys("ec-prime256v1-cert.pem")).expect("ec cert");
    let got = streamed(START, &PIECES, &ec, &SignOptions::default());
    dsig::verify(&got, &ec_trusted, &VerifyOptions::metadata()).expect("ecdsa verifies");
    assert!(dsig::verify(&got, &trusted, &VerifyOptions::metadata()).is_err());
}

#[test]
fn a_root_without_id_is_referenced_as_the_document() {
    let (key, trusted) = rsa();
    let start = "<md:EntitiesDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\">";
    let got = streamed(start, &PIECES, &key, &SignOptions::default());
    assert!(String::from_utf8_lossy(&got).contains("<ds:Reference URI=\"\">"));
    assert_eq!(
        got,
        dsig::sign(&whole(start, &PIECES), &key, &SignOptions::default()).expect("sign")
    );
    dsig::verify(&got, &trusted, &VerifyOptions::metadata()).expect("verify");
}

#[test]
fn a_changed_piece_breaks_the_signature() {
    let (key, trusted) = rsa();
    let good =
        String::from_utf8(streamed(START, &PIECES, &key, &SignOptions::default())).expect("utf-8");
    let bad = good.replace("https://b.example/sso", "https://evil.example/sso");
    assert!(dsig::verify(bad.as_bytes(), &trusted, &VerifyOptions::metadata()).is_err());
}

fn refused(start: &str, piece: &str) -> Error {
    let (key, _) = rsa();
    let mut s = match StreamingSigner::new(start, &key, &SignOptions::default()) {
        Ok(s) => s,
        Err(e) => return e,
    };
    s.content(piece.as_bytes())
        .expect_err(&format!("{start:?} + {piece:?} accepted"))
}

#[test]
fn pieces_that_are_not_whole_content_are_refused() {
    // An element left open, one closed that the piece did not open, the root closed early,
    // a second root, a signature already there, a DOCTYPE.
    for piece in [
        "<md:EntityDescriptor entityID=\"x\">",
        "</md:EntityDescriptor>",
        "</md:EntitiesDescriptor><md:EntitiesDescriptor>",
        "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"/>",
        "<!DOCTYPE x>",
        "&undefined;",
        "<x:y/>",
    ] {
        refused(START, piece);
    }
    // Not a start tag of a root with content.
    for start in [
        "<md:EntitiesDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\"/>",
        "<md:EntitiesDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\"><x>",
        "md:EntitiesDescriptor>",
        "<>",
        "<a ID=\"&#x5f;x\">",
        "<?xml version=\"1.0\"?><a>",
    ] {
        refused(start, "\n");
    }
}

#[test]
fn only_the_root_first_and_no_sha1() {
    let (key, _) = rsa();
    let (mut by_id, mut after_issuer, mut sha1): (SignOptions, SignOptions, SignOptions) =
        Default::default();
    by_id.target = Target::Id("_a".into());
    after_issuer.placement = Placement::AfterIssuer;
    sha1.algorithm = Some(SignatureAlgorithm::RsaSha1);
    for opts in [by_id, after_issuer, sha1] {
        assert!(matches!(
            StreamingSigner::new(START, &key, &opts),
            Err(Error::Usage(_))
        ));
    }
}

/// Dsig review M2: the canonicalizer bounds the namespace nodes it renders by twice the rest of
/// the canonical form plus `c14n::NAMESPACE_ALLOWANCE`. A document signed in pieces is held to
/// the one allowance the whole document has, not to one per piece: the pieces that together
/// render more than it are refused as `dsig::sign` refuses the whole.
#[test]
fn pieces_share_the_whole_documents_namespace_allowance() {
    let (key, _) = rsa();
    let long = format!("urn:x:{}", "a".repeat(60_000));
    let start = format!("<r xmlns:p=\"{long}\" ID=\"_r\">");
    let piece = "<p:e/>";
    let n = 40;
    let whole = format!("{start}{}</r>", piece.repeat(n));
    let e = dsig::sign(whole.as_bytes(), &key, &SignOptions::default()).unwrap_err();
    assert!(
        matches!(&e, Error::C14n(m) if m.contains("namespace")),
        "{e:?}"
    );
    let mut s = StreamingSigner::new(&start, &key, &SignOptions::default()).unwrap();
    let refused = (0..n).find_map(|_| s.content(piece.as_bytes()).err());
    assert!(
        matches!(&refused, Some(Error::C14n(m)) if m.contains("namespace")),
        "{refused:?}"
    );
    // Within the allowance, pieces and whole sign alike.
    let few = 4;
    let whole = format!("{start}{}</r>", piece.repeat(few));
    dsig::sign(whole.as_bytes(), &key, &SignOptions::default()).unwrap();
    let mut s = StreamingSigner::new(&start, &key, &SignOptions::default()).unwrap();
    for _ in 0..few {
        s.content(piece.as_bytes()).unwrap();
    }
    s.finish().unwrap();
}

/// Review W3: `sign` and the streaming signer looked at the target's ID only, so a document
/// repeating an ID (two entities, or an entity and the root) was signed, then failed every
/// verification (ours: `DuplicateId`; others resolve `#ID` to whichever element they
/// registered). Both refuse it as `verify` does, and an ID written with a character
/// reference anywhere, not only on the target.
#[test]
fn a_repeated_id_is_never_signed() {
    let (key, _) = rsa();
    let opts = SignOptions::default();
    let dup = |e: Result<Vec<u8>, Error>| {
        matches!(
            e,
            Err(Error::Signature(saml_core::SignatureError::DuplicateId(ref id))) if id == "_a"
        )
    };
    assert!(dup(dsig::sign(
        b"<r ID=\"_a\"><c ID=\"_a\"/></r>",
        &key,
        &opts
    )));
    assert!(dup(dsig::sign(
        b"<r><c ID=\"_a\"/><d><e ID=\"_a\"/></d></r>",
        &key,
        &opts
    )));
    assert!(matches!(
        dsig::sign(b"<r><c ID=\"_&#x61;\"/></r>", &key, &opts),
        Err(Error::Signature(saml_core::SignatureError::InvalidId(_)))
    ));
    assert!(dsig::sign(b"<r ID=\"_a\"><c ID=\"_b\"/></r>", &key, &opts).is_ok());
    // Streamed: against the root's ID, across pieces, within one piece.
    let start = "<r ID=\"_a\">";
    let piece_err = |pieces: &[&str]| {
        let mut s = StreamingSigner::new(start, &key, &opts).unwrap();
        pieces.iter().try_for_each(|p| s.content(p.as_bytes()))
    };
    let dup_streamed = |r: Result<(), Error>, id: &str| matches!(r, Err(Error::Signature(saml_core::SignatureError::DuplicateId(ref d))) if d == id);
    assert!(dup_streamed(piece_err(&["<c ID=\"_a\"/>"]), "_a"));
    assert!(dup_streamed(
        piece_err(&["<c ID=\"_b\"/>", "<d ID=\"_b\"/>"]),
        "_b"
    ));
    assert!(dup_streamed(
        piece_err(&["<c ID=\"_b\"><d ID=\"_b\"/></c>"]),
        "_b"
    ));
    assert!(piece_err(&["<c ID=\"_b\"/>", "<d ID=\"_c\"/>"]).is_ok());
}
