//! A small SAML 2.0 IdP over HTTP, built on saml-core's `ResponseBuilder`: one SSO endpoint
//! (`GET /sso`, HTTP-Redirect binding) answering with the HTTP-POST binding's auto-post form,
//! and its own metadata (`GET /metadata`). Used by the `saml_idp` example program and, from
//! the same source file, by the interop suite against Shibboleth SP and SimpleSAMLphp
//! (`interop/tests/common/mod.rs`).
//!
//! For each request it decodes the AuthnRequest, checks it (`check_request`: Destination, age),
//! finds the SP among the trusted metadata, verifies the query signature with the SP's
//! metadata keys when the request is signed (and requires one when the IdP's metadata says
//! `WantAuthnRequestsSigned` or the SP's says `AuthnRequestsSigned`), picks the ACS from the
//! SP's metadata, and returns a signed Response with a signed assertion for the one demo user,
//! encrypted to the SP's encryption key (AES-256-GCM, RSA-OAEP). There is no login page: every
//! request is answered for that user. Anything wrong with a request is answered with HTTP 400
//! and a one-line reason; nothing here panics on what a client sends.
//!
//! [`Case`] makes the next Response deliberately wrong in one way (the interop suite checks
//! that the SPs refuse it); a program leaves it at [`Case::Good`].

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use saml_core::bindings::{MessageKind, post, redirect};
use saml_core::dsig::SigningKey;
use saml_core::protocol::idp::{Encryption, ResponseBuilder, check_request, check_signed_request};
use saml_core::protocol::xmlenc::{DataAlgorithm, KeyTransport};
use saml_core::protocol::{
    Attribute, AuthnRequest, NAMEID_TRANSIENT, NameId, Status, new_id, openssl_random,
};
use saml_metadata::model::EntityDescriptor;
use saml_metadata::sso;

/// eduPersonPrincipalName.
pub(crate) const EPPN: &str = "urn:oid:1.3.6.1.4.1.5923.1.1.1.6";
/// eduPersonScopedAffiliation.
pub(crate) const AFFILIATION: &str = "urn:oid:1.3.6.1.4.1.5923.1.1.1.9";
/// displayName.
pub(crate) const DISPLAY_NAME: &str = "urn:oid:2.16.840.1.113730.3.1.241";
/// mail.
pub(crate) const MAIL: &str = "urn:oid:0.9.2342.19200300.100.1.3";
/// The audience of [`Case::WrongAudience`].
pub(crate) const OTHER_SP: &str = "https://other-sp.interop.test/sp";
/// The scope that [`Case::ForeignScope`] puts on the last affiliation value.
pub(crate) const FOREIGN_SCOPE: &str = "evil.example";

/// How many AuthnRequests [`Idp::requests`] keeps (the latest ones).
const KEEP_REQUESTS: usize = 16;
/// The largest request head read (request line and headers).
const MAX_HEAD: u64 = 16 * 1024;
/// Connections served at once; beyond this a new connection is closed unanswered.
pub(crate) const MAX_CONNECTIONS: usize = 256;

/// What the IdP puts in its next Response. Everything but `Good` is wrong on purpose.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Case {
    /// Signed Response, signed assertion encrypted with AES-256-GCM and RSA-OAEP.
    Good,
    /// The assertion signed, the Response not.
    AssertionOnlySigned,
    /// The Response signed, the assertion not.
    ResponseOnlySigned,
    /// The signed assertion in clear.
    NotEncrypted,
    /// Encrypted with AES-128-CBC.
    Aes128Cbc,
    /// Signed with the IdP's second key ([`Idp::ec_key`], ECDSA P-256 in the tests).
    Ecdsa,
    /// The last affiliation value scoped to [`FOREIGN_SCOPE`], outside the IdP's `shibmd:Scope`.
    ForeignScope,
    /// The audience is [`OTHER_SP`].
    WrongAudience,
    /// Issued 400 s ago for 60 s.
    Expired,
    /// Neither the Response nor the assertion signed.
    Unsigned,
    /// Signed by [`Idp::other_key`], not in the metadata.
    WrongKey,
    /// The Response unsigned, the assertion signed by a key not in the metadata.
    WrongKeyAssertion,
    /// Signed, in clear, then the eppn changed.
    Tampered,
}

/// The one user every login is answered for.
#[derive(Clone, Debug)]
pub(crate) struct User {
    /// eduPersonPrincipalName, e.g. `alice@example.org`.
    pub(crate) eppn: String,
    /// eduPersonScopedAffiliation values, e.g. `member@example.org`.
    pub(crate) affiliations: Vec<String>,
    /// displayName, if any.
    pub(crate) display_name: Option<String>,
    /// mail, if any.
    pub(crate) mail: Option<String>,
}

impl User {
    /// The attributes of a Response: eduPerson (and displayName, mail) by OID, URI name format.
    fn attributes(&self, case: Case) -> Vec<Attribute> {
        let mut affiliations = self.affiliations.clone();
        if case == Case::ForeignScope
            && let Some(last) = affiliations.last_mut()
        {
            let value = last.split('@').next().unwrap_or_default();
            *last = format!("{value}@{FOREIGN_SCOPE}");
        }
        let mut out = vec![Attribute::uri(
            EPPN,
            Some("eduPersonPrincipalName"),
            &[&self.eppn],
        )];
        if !affiliations.is_empty() {
            let values: Vec<&str> = affiliations.iter().map(String::as_str).collect();
            out.push(Attribute::uri(
                AFFILIATION,
                Some("eduPersonScopedAffiliation"),
                &values,
            ));
        }
        if let Some(d) = &self.display_name {
            out.push(Attribute::uri(DISPLAY_NAME, Some("displayName"), &[d]));
        }
        if let Some(m) = &self.mail {
            out.push(Attribute::uri(MAIL, Some("mail"), &[m]));
        }
        out
    }
}

/// The IdP: its keys, its metadata, the SPs it trusts, the user, and the case to answer.
pub(crate) struct Idp {
    /// The signing key, whose certificate is in [`Idp::md`].
    pub(crate) key: SigningKey,
    /// A second signing key for [`Case::Ecdsa`] (the main key if there is none).
    pub(crate) ec_key: Option<SigningKey>,
    /// A key not in the metadata, for [`Case::WrongKey`] (the main key if there is none).
    pub(crate) other_key: Option<SigningKey>,
    /// The IdP's own metadata.
    pub(crate) md: EntityDescriptor,
    /// The SSO endpoint's URL, as in [`Idp::md`] (the Destination the requests must carry).
    pub(crate) sso_url: String,
    /// The user every login is answered for.
    pub(crate) user: User,
    /// The trusted SPs, by entityID.
    sps: Mutex<BTreeMap<String, EntityDescriptor>>,
    /// What the next Response is.
    pub(crate) case: Mutex<Case>,
    /// The latest AuthnRequests answered (at most 16).
    pub(crate) requests: Mutex<Vec<AuthnRequest>>,
    /// AuthnRequests that came signed (and were verified).
    pub(crate) signed_requests: AtomicUsize,
    /// Whether each request is logged on stderr (a program: yes; the tests: no).
    pub(crate) log: bool,
}

/// Locks `m`, also after a thread panicked holding it (the data here stays consistent).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Idp {
    /// An IdP with `key` (its certificate must be in `md`'s IDPSSODescriptor) whose SSO
    /// endpoint is `sso_url`, answering for `user`, trusting no SP yet.
    pub(crate) fn new(key: SigningKey, md: EntityDescriptor, sso_url: &str, user: User) -> Idp {
        Idp {
            key,
            ec_key: None,
            other_key: None,
            md,
            sso_url: sso_url.to_owned(),
            user,
            sps: Mutex::new(BTreeMap::new()),
            case: Mutex::new(Case::Good),
            requests: Mutex::new(Vec::new()),
            signed_requests: AtomicUsize::new(0),
            log: false,
        }
    }

    /// Trusts the SP described by `md` (replacing an earlier one with the same entityID).
    /// Refused without an SPSSODescriptor.
    pub(crate) fn trust_sp(&self, md: EntityDescriptor) -> Result<(), String> {
        if md.sp().is_none() {
            return Err(format!("{}: no SPSSODescriptor", md.entity_id));
        }
        lock(&self.sps).insert(md.entity_id.clone(), md);
        Ok(())
    }

    /// The entityIDs of the trusted SPs.
    pub(crate) fn trusted_sps(&self) -> Vec<String> {
        lock(&self.sps).keys().cloned().collect()
    }

    /// Answers `GET /sso?<query>`: the auto-post form page, or why the request is refused.
    pub(crate) fn answer(&self, query: &str) -> Result<String, String> {
        let m =
            redirect::decode(query, redirect::DEFAULT_MAX_INFLATED).map_err(|e| e.to_string())?;
        let req = AuthnRequest::parse(&m.xml).map_err(|e| e.to_string())?;
        let now = SystemTime::now();
        check_request(
            &req,
            &[&self.sso_url],
            now,
            Duration::from_secs(60),
            Duration::from_secs(30),
        )
        .map_err(|e| e.to_string())?;
        let sp_md = lock(&self.sps)
            .get(&req.issuer)
            .cloned()
            .ok_or_else(|| format!("unknown SP {}", req.issuer))?;
        let want_signed = self
            .md
            .idp()
            .is_some_and(|i| i.want_authn_requests_signed == Some(true))
            || sp_md
                .sp()
                .is_some_and(|s| s.authn_requests_signed == Some(true));
        if m.is_signed() {
            // A signed query (the SP's metadata says AuthnRequestsSigned, or we asked for it
            // with WantAuthnRequestsSigned): verified with the SP's metadata keys.
            let keys = sso::sp_signing_keys(&sp_md).map_err(|e| e.to_string())?;
            m.verify(&keys, false).map_err(|e| e.to_string())?;
            // Signed: its Destination is required (SAML Bindings §3.4.5.2).
            check_signed_request(
                &req,
                &[&self.sso_url],
                now,
                Duration::from_secs(60),
                Duration::from_secs(30),
            )
            .map_err(|e| e.to_string())?;
            self.signed_requests.fetch_add(1, Ordering::Relaxed);
        } else if want_signed {
            return Err(format!(
                "unsigned AuthnRequest from {}: the metadata requires a signed one",
                req.issuer
            ));
        }
        let acs = sso::acs_for(&sp_md, &req).map_err(|e| e.to_string())?;
        {
            let mut requests = lock(&self.requests);
            if requests.len() >= KEEP_REQUESTS {
                requests.remove(0);
            }
            requests.push(req.clone());
        }
        let case = *lock(&self.case);
        let mut b = ResponseBuilder::for_request(
            &req,
            &self.md.entity_id,
            &acs,
            NameId::new(&new_id(&mut openssl_random), NAMEID_TRANSIENT),
        );
        b.attributes = self.user.attributes(case);
        b.encryption = Some(Encryption {
            recipient: sso::sp_encryption_key(&sp_md)
                .map_err(|e| e.to_string())?
                .ok_or("no encryption key in the SP's metadata")?,
            algorithm: DataAlgorithm::Aes256Gcm,
            transport: KeyTransport::RsaOaepMgf1p,
        });
        let mut key = &self.key;
        let other_key = self.other_key.as_ref().unwrap_or(&self.key);
        let mut at = now;
        match case {
            Case::Good | Case::ForeignScope => {}
            Case::AssertionOnlySigned => b.sign_response = false,
            Case::ResponseOnlySigned => b.sign_assertion = false,
            Case::NotEncrypted | Case::Tampered => b.encryption = None,
            Case::Aes128Cbc => {
                if let Some(e) = &mut b.encryption {
                    e.algorithm = DataAlgorithm::Aes128Cbc;
                }
            }
            Case::Ecdsa => key = self.ec_key.as_ref().unwrap_or(&self.key),
            Case::WrongAudience => b.sp_entity_id = OTHER_SP.into(),
            Case::Expired => {
                // Issued 400 s ago for 60 s: NotOnOrAfter 340 s in the past (skew 180 s).
                at = now - Duration::from_secs(400);
                b.lifetime = Duration::from_secs(60);
            }
            Case::Unsigned => {
                b.sign_assertion = false;
                b.sign_response = false;
            }
            Case::WrongKey => key = other_key,
            Case::WrongKeyAssertion => {
                b.sign_response = false;
                key = other_key;
            }
        }
        // SAML Core §3.4.1: a request is answered with what it asks for (a subject, a NameID
        // format, an authentication context, a new authentication) or with an error status.
        // The one demo user gets a new transient NameID per answer, by password, when the
        // request arrives: a ForceAuthn request's authentication must follow its arrival.
        if b.fresh_authn_since.is_some() {
            b.fresh_authn_since = Some(at);
        }
        let mut xml = match b.build(key, at, &mut openssl_random) {
            Err(saml_core::Error::Protocol(refused)) if refused.answer_status().is_some() => {
                b.status = refused.answer_status().unwrap_or_else(Status::success);
                // The details (who is logged in, when) stay here: the error Response goes to
                // the SP through the browser.
                b.status.message = Some("this IdP cannot answer the request as asked".into());
                if self.log {
                    eprintln!("refused {} ({}): {refused}", req.issuer, req.id);
                }
                b.build(key, at, &mut openssl_random)
            }
            built => built,
        }
        .map_err(|e| e.to_string())?;
        if case == Case::Tampered {
            let eppn = &self.user.eppn;
            let forged = format!("mallory@{}", eppn.rsplit('@').next().unwrap_or_default());
            xml = String::from_utf8(xml)
                .map_err(|e| e.to_string())?
                .replace(eppn.as_str(), &forged)
                .into_bytes();
        }
        let page = post::form(&acs, MessageKind::Response, &xml, m.relay_state.as_deref())
            .map_err(|e| e.to_string())?;
        if self.log {
            eprintln!(
                "answered {} ({}) for {} with {case:?}: to {acs}",
                req.issuer, req.id, self.user.eppn
            );
        }
        Ok(page)
    }

    /// Answers one request target: `/sso?…`, `/metadata`, or 404. `(status line, content
    /// type, body)`.
    pub(crate) fn route(&self, target: &str) -> (&'static str, &'static str, String) {
        const TEXT: &str = "text/plain; charset=utf-8";
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        match path {
            "/sso" if query.is_empty() => ("400 Bad Request", TEXT, "no SAMLRequest".to_owned()),
            "/sso" => match self.answer(query) {
                Ok(page) => ("200 OK", "text/html; charset=utf-8", page),
                Err(e) => ("400 Bad Request", TEXT, e),
            },
            "/metadata" => match self.md.to_xml() {
                Ok(xml) => ("200 OK", "application/samlmetadata+xml", xml),
                Err(e) => ("500 Internal Server Error", TEXT, e.to_string()),
            },
            _ => ("404 Not Found", TEXT, "not found".to_owned()),
        }
    }

    /// Serves `listener` on a thread (one more thread per connection, at most
    /// [`MAX_CONNECTIONS`] at once: beyond that a connection is closed unanswered) until the
    /// process ends.
    pub(crate) fn serve(self: Arc<Self>, listener: TcpListener) {
        let open = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(s) = s else { continue };
                if open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                    open.fetch_sub(1, Ordering::AcqRel);
                    continue; // dropped: closed
                }
                let (idp, open) = (self.clone(), open.clone());
                std::thread::spawn(move || {
                    idp.connection(s);
                    open.fetch_sub(1, Ordering::AcqRel);
                });
            }
        });
    }

    /// One HTTP/1.x request on `s`, answered and closed.
    fn connection(&self, mut s: std::net::TcpStream) {
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        let Ok(read) = s.try_clone() else { return };
        let mut r = BufReader::new(read.take(MAX_HEAD));
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut complete = false;
        loop {
            let mut h = String::new();
            match r.read_line(&mut h) {
                Ok(0) | Err(_) => break,
                Ok(_) if h == "\r\n" || h == "\n" => {
                    complete = true;
                    break;
                }
                Ok(_) => {}
            }
        }
        let mut parts = line.split(' ');
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (status, content_type, body) = if !complete {
            (
                "400 Bad Request",
                "text/plain",
                "incomplete or too large request head".to_owned(),
            )
        } else if method != "GET" {
            (
                "405 Method Not Allowed",
                "text/plain",
                "GET only".to_owned(),
            )
        } else {
            self.route(target)
        };
        if self.log && !status.starts_with("200") {
            let path = target.split('?').next().unwrap_or_default();
            eprintln!("{method} {path}: {status}: {body}");
        }
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(head.as_bytes());
        let _ = s.write_all(body.as_bytes());
    }
}
