//! A small SAML 2.0 IdP for trying an SP (Shibboleth SP, SimpleSAMLphp, ...) without a real
//! IdP: saml-core's `ResponseBuilder` behind one HTTP endpoint (`idp.rs`, the same source the
//! interop suite drives against Shibboleth SP and SimpleSAMLphp). There is no login page: every
//! AuthnRequest from a trusted SP is answered for one demo user, with eduPerson attributes by
//! OID (eppn, eduPersonScopedAffiliation, displayName, mail), in a signed Response with a
//! signed assertion encrypted to the SP's key. For tests and demos only.
//!
//! ```text
//! cargo run -p saml-examples --example saml_idp -- [OPTIONS] [SP-METADATA.xml ...]
//!   --listen ADDR           where to listen (default 127.0.0.1:8080)
//!   --base-url URL          the URL the browser reaches it at (default http://ADDR)
//!   --entity-id ID          the IdP's entityID (default <base-url>/idp)
//!   --key FILE --cert FILE  the signing key and certificate, PEM; created (a throw-away
//!                           RSA-2048 key, self-signed) when both files are missing. Without
//!                           them: a new throw-away key at each start
//!   --scope DOMAIN          the shibmd:Scope of the metadata (default example.org)
//!   --want-signed-requests  WantAuthnRequestsSigned="true" (unsigned requests refused)
//!   --metadata-out FILE     write the IdP's metadata there (default: print it on stdout)
//!   --eppn EPPN             the user (default alice@<scope>)
//!   --affiliation VALUE     eduPersonScopedAffiliation, repeatable (default member@<scope>,
//!                           staff@<scope>)
//!   --display-name NAME --mail ADDR   (default "Alice Example", the eppn)
//! ```
//!
//! Each SP-METADATA file holds an SP's EntityDescriptor (or an aggregate: every SP in it is
//! trusted). The files are taken as given, without a signature check: you chose them. The IdP
//! serves `GET /sso` (HTTP-Redirect binding in, the HTTP-POST form out) and `GET /metadata`,
//! and logs each request on stderr.
//!
//! Against a Shibboleth SP (say `https://sp.example.org/shibboleth`, for a first try on the
//! same machine as the browser):
//!
//! 1. fetch the SP's metadata: `curl -o sp.xml https://sp.example.org/Shibboleth.sso/Metadata`;
//! 2. `cargo run -p saml-examples --example saml_idp -- --key idp.key --cert idp.crt
//!    --metadata-out idp.xml sp.xml` (the entityID is then `http://127.0.0.1:8080/idp`);
//! 3. in the SP's `shibboleth2.xml`: `<SSO entityID="http://127.0.0.1:8080/idp">SAML2</SSO>` and
//!    `<MetadataProvider type="XML" validate="true" path="/path/to/idp.xml"/>` (or
//!    `url="http://127.0.0.1:8080/metadata" backingFilePath="idp.xml"`), then restart shibd;
//! 4. open a page protected by `AuthType shibboleth` + `Require valid-user`: the browser goes to
//!    the IdP, comes back with the auto-post form, and the page sees `eppn` and `affiliation`
//!    (the package's `attribute-map.xml` maps the OIDs) and `REMOTE_USER` (the eppn, first in
//!    the default `REMOTE_USER` list of `shibboleth2.xml`); `displayName` and `mail` only once
//!    their lines in that file's "Older LDAP-defined attributes" comment are uncommented. The
//!    package's attribute filter drops scoped values outside `--scope`.
//!
//! The same run, scripted and with the refused cases, is `interop/tests/shibboleth_sso.rs`.

#[allow(
    dead_code,
    reason = "the deliberately wrong cases and the request log are for the interop suite"
)]
mod idp;

use std::net::TcpListener;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use saml_core::dsig::SigningKey;
use saml_metadata::builder::RoleBuilder as _;
use saml_metadata::load;
use saml_metadata::model::{Binding, EntityDescriptor, IdpSso, Metadata};

use idp::{Idp, User};

/// The command line.
struct Options {
    listen: String,
    base_url: Option<String>,
    entity_id: Option<String>,
    key: Option<String>,
    cert: Option<String>,
    scope: String,
    want_signed: bool,
    metadata_out: Option<String>,
    eppn: Option<String>,
    affiliations: Vec<String>,
    display_name: String,
    mail: Option<String>,
    sp_metadata: Vec<String>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut o = Options {
        listen: "127.0.0.1:8080".into(),
        base_url: None,
        entity_id: None,
        key: None,
        cert: None,
        scope: "example.org".into(),
        want_signed: false,
        metadata_out: None,
        eppn: None,
        affiliations: Vec::new(),
        display_name: "Alice Example".into(),
        mail: None,
        sp_metadata: Vec::new(),
    };
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--listen" => o.listen = value()?,
            "--base-url" => o.base_url = Some(value()?.trim_end_matches('/').to_owned()),
            "--entity-id" => o.entity_id = Some(value()?),
            "--key" => o.key = Some(value()?),
            "--cert" => o.cert = Some(value()?),
            "--scope" => o.scope = value()?,
            "--want-signed-requests" => o.want_signed = true,
            "--metadata-out" => o.metadata_out = Some(value()?),
            "--eppn" => o.eppn = Some(value()?),
            "--affiliation" => o.affiliations.push(value()?),
            "--display-name" => o.display_name = value()?,
            "--mail" => o.mail = Some(value()?),
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => o.sp_metadata.push(a),
        }
    }
    if o.key.is_some() != o.cert.is_some() {
        return Err("--key and --cert go together".into());
    }
    Ok(o)
}

/// The signing key: from `--key`/`--cert`, created there when both are missing, or a
/// throw-away one.
fn signing_key(o: &Options, host: &str) -> Result<(SigningKey, Vec<u8>), String> {
    let (key_pem, cert_pem) = match (&o.key, &o.cert) {
        (Some(k), Some(c)) if !Path::new(k).exists() && !Path::new(c).exists() => {
            let (key, cert) =
                testkit::signer::rsa2048_self_signed(host).map_err(|e| e.to_string())?;
            std::fs::write(k, &key).map_err(|e| format!("{k}: {e}"))?;
            std::fs::write(c, &cert).map_err(|e| format!("{c}: {e}"))?;
            eprintln!("created a throw-away key {k} and its self-signed certificate {c}");
            (key, cert)
        }
        (Some(k), Some(c)) => (
            std::fs::read(k).map_err(|e| format!("{k}: {e}"))?,
            std::fs::read(c).map_err(|e| format!("{c}: {e}"))?,
        ),
        _ => {
            eprintln!("a throw-away key for this run only (--key/--cert keep one)");
            testkit::signer::rsa2048_self_signed(host).map_err(|e| e.to_string())?
        }
    };
    let key = SigningKey::from_pem(&key_pem, Some(&cert_pem)).map_err(|e| e.to_string())?;
    let der = openssl::x509::X509::from_pem(&cert_pem)
        .and_then(|c| c.to_der())
        .map_err(|e| e.to_string())?;
    Ok((key, der))
}

/// The SPs in a metadata file: its EntityDescriptor, or every SP of an aggregate.
fn sps_in(file: &str) -> Result<Vec<EntityDescriptor>, String> {
    let doc = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
    let sps: Vec<EntityDescriptor> =
        match load::parse_unverified(&doc).map_err(|e| format!("{file}: {e}"))? {
            Metadata::Entity(e) => vec![*e],
            Metadata::Entities(g) => g.entities().into_iter().cloned().collect(),
        };
    let sps: Vec<EntityDescriptor> = sps.into_iter().filter(|e| e.sp().is_some()).collect();
    if sps.is_empty() {
        return Err(format!("{file}: no SP (SPSSODescriptor) in it"));
    }
    Ok(sps)
}

fn run(o: Options) -> Result<(), String> {
    let listener = TcpListener::bind(&o.listen).map_err(|e| format!("{}: {e}", o.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let base = o
        .base_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let entity_id = o.entity_id.clone().unwrap_or_else(|| format!("{base}/idp"));
    let sso_url = format!("{base}/sso");
    let host = base
        .split("//")
        .nth(1)
        .and_then(|r| r.split(['/', ':']).next())
        .unwrap_or("idp.example.org");
    let (key, cert_der) = signing_key(&o, host)?;
    let md = EntityDescriptor::builder(&entity_id)
        .idp(
            IdpSso::builder()
                .signing_certificate(cert_der)
                .scope(&o.scope, false)
                .want_authn_requests_signed(o.want_signed)
                .sso(Binding::HttpRedirect, &sso_url),
        )
        .build()
        .map_err(|e| e.to_string())?;
    let xml = md.to_xml().map_err(|e| e.to_string())?;
    let eppn = o
        .eppn
        .clone()
        .unwrap_or_else(|| format!("alice@{}", o.scope));
    let affiliations = if o.affiliations.is_empty() {
        vec![format!("member@{}", o.scope), format!("staff@{}", o.scope)]
    } else {
        o.affiliations.clone()
    };
    let user = User {
        mail: Some(o.mail.clone().unwrap_or_else(|| eppn.clone())),
        eppn,
        affiliations,
        display_name: Some(o.display_name.clone()),
    };
    let mut idp = Idp::new(key, md, &sso_url, user);
    idp.log = true;
    for file in &o.sp_metadata {
        for sp in sps_in(file)? {
            idp.trust_sp(sp)?;
        }
    }
    match &o.metadata_out {
        Some(f) => {
            std::fs::write(f, &xml).map_err(|e| format!("{f}: {e}"))?;
            eprintln!("the IdP's metadata is in {f}");
        }
        None => println!("{xml}"),
    }
    let trusted = idp.trusted_sps();
    eprintln!(
        "IdP {entity_id}: SSO {sso_url}, metadata {base}/metadata, listening on {addr}; user {}; \
         {} trusted SP(s){}{}",
        idp.user.eppn,
        trusted.len(),
        if trusted.is_empty() { "" } else { ": " },
        trusted.join(", ")
    );
    Arc::new(idp).serve(listener);
    loop {
        std::thread::park();
    }
}

fn main() -> ExitCode {
    let o = match parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            const USAGE: &str = "usage: saml_idp [--listen ADDR] [--base-url URL] \
                [--entity-id ID] [--key FILE --cert FILE] [--scope DOMAIN] \
                [--want-signed-requests] [--metadata-out FILE] [--eppn EPPN] \
                [--affiliation VALUE]... [--display-name NAME] [--mail ADDR] \
                [SP-METADATA.xml]...";
            // `--help`: the usage on stdout, success.
            if e.is_empty() {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            eprintln!("saml_idp: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(o) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("saml_idp: {e}");
            ExitCode::FAILURE
        }
    }
}
