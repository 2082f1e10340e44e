//! saml-core protocol: SP-side validation of a signed Response (Response and Assertion signed,
//! RSA-2048) and of an encrypted one (AES-256-GCM, RSA-OAEP), the IdP building and signing one,
//! and HTTP-Redirect decoding with its query signature; pysaml2 7.5.5 validating the same signed
//! Response in the same run (in-process loop, start-up excluded, through its xmlsec1 backend).

#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)] // a bench that cannot run must fail loudly

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use openssl::pkey::PKey;
use openssl::x509::X509;
use saml_core::bindings::{MessageKind, post, redirect};
use saml_core::dsig::{SigningKey, TrustedKeys};
use saml_core::protocol::idp::{Encryption, ResponseBuilder};
use saml_core::protocol::xmlenc::{DataAlgorithm, KeyTransport};
use saml_core::protocol::{
    Attribute, AuthnRequest, MemoryReplayCache, NAMEID_PERSISTENT, NameId, OutstandingRequests,
    ResponseValidator, openssl_random,
};
use saml_metadata::builder::RoleBuilder as _;
use saml_metadata::model::{Binding, EntityDescriptor, IdpSso};

const IDP: &str = "https://idp.rust.test/idp";
const SP: &str = "https://sp.pysaml2.test/sp";
const ACS: &str = "https://sp.pysaml2.test/acs";

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tmp");
    let pem = |name: &str| {
        let (k, cert) = testkit::signer::rsa2048_self_signed(name).expect("key");
        std::fs::write(dir.path().join(format!("{name}.key")), &k).expect("write");
        std::fs::write(dir.path().join(format!("{name}.crt")), &cert).expect("write");
        (k, cert)
    };
    let (idp_key_pem, idp_cert_pem) = pem("idp");
    let (sp_key_pem, sp_cert_pem) = pem("sp");
    let idp_key = SigningKey::from_pem(&idp_key_pem, Some(&idp_cert_pem)).expect("idp key");
    let sp_pkey = PKey::private_key_from_pem(&sp_key_pem).expect("sp key");
    let sp_pub = X509::from_pem(&sp_cert_pem)
        .expect("cert")
        .public_key()
        .expect("pub");
    let now = SystemTime::now();
    let req = AuthnRequest::new("_bench-request".into(), SP, now);
    let mut b =
        ResponseBuilder::for_request(&req, IDP, ACS, NameId::new("alice", NAMEID_PERSISTENT));
    b.attributes = vec![
        Attribute::uri(
            "urn:oid:0.9.2342.19200300.100.1.3",
            Some("mail"),
            &["alice@example.org"],
        ),
        Attribute::uri(
            "urn:oid:1.3.6.1.4.1.5923.1.1.1.6",
            Some("eduPersonPrincipalName"),
            &["alice@example.org"],
        ),
    ];
    let signed = b.build(&idp_key, now, &mut openssl_random).expect("build");
    let mut be = b.clone();
    be.sign_response = false;
    be.encryption = Some(Encryption {
        recipient: sp_pub,
        algorithm: DataAlgorithm::Aes256Gcm,
        transport: KeyTransport::RsaOaepMgf1p,
    });
    let encrypted = be
        .build(&idp_key, now, &mut openssl_random)
        .expect("build encrypted");
    let mut v = ResponseValidator::new(
        SP,
        ACS,
        IDP,
        TrustedKeys::from_pem(&idp_cert_pem).expect("trust"),
    );
    v.decryption_keys = vec![sp_pkey];
    let outstanding = || {
        let mut o = OutstandingRequests::new();
        o.insert(&req.id, IDP, now + Duration::from_secs(600), now);
        o
    };
    for doc in [&signed, &encrypted] {
        v.validate(doc, now, &mut outstanding(), &mut MemoryReplayCache::new())
            .unwrap_or_else(|e| panic!("validate: {e}"));
    }

    let mut g = c.benchmark_group("saml_response");
    g.bench_function("validate_signed", |bch| {
        bch.iter(|| {
            black_box(
                v.validate(
                    black_box(&signed),
                    now,
                    &mut outstanding(),
                    &mut MemoryReplayCache::new(),
                )
                .expect("valid"),
            )
        })
    });
    g.bench_function("validate_encrypted_aes256gcm", |bch| {
        bch.iter(|| {
            black_box(
                v.validate(
                    black_box(&encrypted),
                    now,
                    &mut outstanding(),
                    &mut MemoryReplayCache::new(),
                )
                .expect("valid"),
            )
        })
    });
    g.bench_function("idp_build_signed", |bch| {
        bch.iter(|| black_box(b.build(&idp_key, now, &mut openssl_random).expect("build")))
    });
    let sp_key = SigningKey::from_pem(&sp_key_pem, None).expect("sp signing key");
    let sp_trust = TrustedKeys::from_pem(&sp_cert_pem).expect("sp trust");
    let q = redirect::encode(
        MessageKind::Request,
        req.to_xml().as_bytes(),
        Some("state"),
        Some(&sp_key),
        None,
    )
    .expect("encode");
    g.bench_function("redirect_decode_verify_parse", |bch| {
        bch.iter(|| {
            let m =
                redirect::decode(black_box(&q), redirect::DEFAULT_MAX_INFLATED).expect("decode");
            m.verify(&sp_trust, false).expect("verify");
            black_box(AuthnRequest::parse(&m.xml).expect("parse"))
        })
    });
    g.finish();

    // pysaml2 as the SP validating the same signed Response, in its own process.
    let md = EntityDescriptor::builder(IDP)
        .idp(
            IdpSso::builder()
                .signing_certificate(
                    X509::from_pem(&idp_cert_pem)
                        .expect("c")
                        .to_der()
                        .expect("der"),
                )
                .sso(Binding::HttpRedirect, "https://idp.rust.test/sso"),
        )
        .build()
        .expect("md")
        .to_xml()
        .expect("xml");
    let md_path = dir.path().join("idp-metadata.xml");
    std::fs::write(&md_path, md).expect("write");
    let python = testkit::peers::python();
    let script = testkit::peers::interop_script("pysaml2_peer.py");
    let value = post::encode(&signed);
    let run = |n: u64| -> Duration {
        let o = Command::new(&python)
            .arg(&script)
            .args([
                "sp-bench",
                dir.path().to_str().expect("utf8"),
                md_path.to_str().expect("utf8"),
                &req.id,
                &value,
                &n.to_string(),
            ])
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}); run scripts/setup.sh",
                    python.display()
                )
            });
        let out = String::from_utf8_lossy(&o.stdout);
        let secs: f64 = out
            .lines()
            .find_map(|l| l.strip_prefix("SECONDS "))
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "pysaml2 sp-bench failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                )
            });
        Duration::from_secs_f64(secs)
    };
    run(1);
    let mut g = c.benchmark_group("saml_response");
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("pysaml2_validate_signed", |bch| bch.iter_custom(run));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
