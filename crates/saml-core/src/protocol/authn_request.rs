//! `samlp:AuthnRequest` (SAML Core §3.4.1): build, sign (for HTTP-POST; HTTP-Redirect signs the
//! query string, see [`crate::bindings::redirect`]), parse, and verify-and-parse.

use std::time::SystemTime;

use super::{NameId, ProtocolError, SAML_NS, SAMLP_NS};
use crate::dsig::{self, DSIG_NS, Placement, SignOptions, SigningKey, Target, TrustedKeys};
use crate::error::Error;
use crate::time::format_datetime_exact;
use crate::xml::cursor::{Cursor, Elem, xml_trim};
use crate::xml::{Limits, Reader, escape_attr, escape_text};

/// `samlp:NameIDPolicy` (§3.4.1.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NameIdPolicy {
    /// `Format`.
    pub format: Option<String>,
    /// `SPNameQualifier`.
    pub sp_name_qualifier: Option<String>,
    /// `AllowCreate`.
    pub allow_create: Option<bool>,
}

/// `samlp:RequestedAuthnContext` (§3.3.2.2.1): class references or declaration references.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestedAuthnContext {
    /// `Comparison` (`exact`, `minimum`, `maximum`, `better`); absent means exact. Another
    /// value is refused when parsed.
    pub comparison: Option<String>,
    /// `saml:AuthnContextClassRef` values.
    pub class_refs: Vec<String>,
    /// `saml:AuthnContextDeclRef` values (the schema allows these instead of class
    /// references; review B5-2: they were passed over, and a request of them asked for
    /// nothing).
    pub decl_refs: Vec<String>,
}

/// `samlp:Scoping` (§3.4.1.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scoping {
    /// `ProxyCount`.
    pub proxy_count: Option<u32>,
    /// `IDPList/IDPEntry@ProviderID` values.
    pub idp_list: Vec<String>,
    /// `RequesterID` values.
    pub requester_ids: Vec<String>,
}

/// An authentication request from an SP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthnRequest {
    /// `ID` (see [`super::new_id`]).
    pub id: String,
    /// `IssueInstant`.
    pub issue_instant: SystemTime,
    /// `Destination`: the IdP's SSO endpoint this is sent to.
    pub destination: Option<String>,
    /// `saml:Issuer`: the SP's entityID.
    pub issuer: String,
    /// `AssertionConsumerServiceURL`.
    pub acs_url: Option<String>,
    /// `AssertionConsumerServiceIndex`.
    pub acs_index: Option<u16>,
    /// `ProtocolBinding` for the response (usually HTTP-POST).
    pub protocol_binding: Option<String>,
    /// `ForceAuthn`.
    pub force_authn: Option<bool>,
    /// `IsPassive`.
    pub is_passive: Option<bool>,
    /// `ProviderName`.
    pub provider_name: Option<String>,
    /// `NameIDPolicy`.
    pub name_id_policy: Option<NameIdPolicy>,
    /// `RequestedAuthnContext`.
    pub requested_authn_context: Option<RequestedAuthnContext>,
    /// `Scoping`.
    pub scoping: Option<Scoping>,
    /// The NameID of `saml:Subject`: the principal the requester asks the assertion to be
    /// about. An IdP must authenticate that principal or answer with an error (SAML Core
    /// §3.4.1); [`super::idp::ResponseBuilder`] refuses to assert another one. A request
    /// whose Subject holds another identifier (`saml:BaseID`, `saml:EncryptedID`) is refused
    /// when parsed: it could not be honoured.
    pub subject: Option<NameId>,
}

impl AuthnRequest {
    /// A request from `issuer` (the SP's entityID) with `id`, issued at `now`; set the other
    /// fields as needed.
    #[must_use]
    pub fn new(id: String, issuer: &str, now: SystemTime) -> Self {
        AuthnRequest {
            id,
            issue_instant: now,
            destination: None,
            issuer: issuer.to_owned(),
            acs_url: None,
            acs_index: None,
            protocol_binding: None,
            force_authn: None,
            is_passive: None,
            provider_name: None,
            name_id_policy: None,
            requested_authn_context: None,
            scoping: None,
            subject: None,
        }
    }

    /// The request as XML (no XML declaration; what the bindings encode).
    #[must_use]
    pub fn to_xml(&self) -> String {
        let mut s = String::with_capacity(1024);
        s.push_str(&format!(
            "<samlp:AuthnRequest xmlns:samlp=\"{SAMLP_NS}\" xmlns:saml=\"{SAML_NS}\" ID=\"{}\" Version=\"2.0\" IssueInstant=\"{}\"",
            escape_attr(&self.id),
            format_datetime_exact(self.issue_instant)
        ));
        let mut attr = |name: &str, v: Option<String>| {
            if let Some(v) = v {
                s.push_str(&format!(" {name}=\"{}\"", escape_attr(&v)));
            }
        };
        attr("Destination", self.destination.clone());
        attr("AssertionConsumerServiceURL", self.acs_url.clone());
        attr(
            "AssertionConsumerServiceIndex",
            self.acs_index.map(|i| i.to_string()),
        );
        attr("ProtocolBinding", self.protocol_binding.clone());
        attr("ForceAuthn", self.force_authn.map(|b| b.to_string()));
        attr("IsPassive", self.is_passive.map(|b| b.to_string()));
        attr("ProviderName", self.provider_name.clone());
        s.push('>');
        s.push_str(&format!(
            "<saml:Issuer>{}</saml:Issuer>",
            escape_text(&self.issuer)
        ));
        if let Some(n) = &self.subject {
            s.push_str("<saml:Subject><saml:NameID");
            for (name, v) in [
                ("Format", &n.format),
                ("NameQualifier", &n.name_qualifier),
                ("SPNameQualifier", &n.sp_name_qualifier),
            ] {
                if let Some(v) = v {
                    s.push_str(&format!(" {name}=\"{}\"", escape_attr(v)));
                }
            }
            s.push_str(&format!(
                ">{}</saml:NameID></saml:Subject>",
                escape_text(&n.value)
            ));
        }
        if let Some(p) = &self.name_id_policy {
            s.push_str("<samlp:NameIDPolicy");
            if let Some(f) = &p.format {
                s.push_str(&format!(" Format=\"{}\"", escape_attr(f)));
            }
            if let Some(q) = &p.sp_name_qualifier {
                s.push_str(&format!(" SPNameQualifier=\"{}\"", escape_attr(q)));
            }
            if let Some(a) = p.allow_create {
                s.push_str(&format!(" AllowCreate=\"{a}\""));
            }
            s.push_str("/>");
        }
        if let Some(c) = &self.requested_authn_context {
            s.push_str("<samlp:RequestedAuthnContext");
            if let Some(cmp) = &c.comparison {
                s.push_str(&format!(" Comparison=\"{}\"", escape_attr(cmp)));
            }
            s.push('>');
            for r in &c.class_refs {
                s.push_str(&format!(
                    "<saml:AuthnContextClassRef>{}</saml:AuthnContextClassRef>",
                    escape_text(r)
                ));
            }
            for r in &c.decl_refs {
                s.push_str(&format!(
                    "<saml:AuthnContextDeclRef>{}</saml:AuthnContextDeclRef>",
                    escape_text(r)
                ));
            }
            s.push_str("</samlp:RequestedAuthnContext>");
        }
        if let Some(sc) = &self.scoping {
            s.push_str("<samlp:Scoping");
            if let Some(n) = sc.proxy_count {
                s.push_str(&format!(" ProxyCount=\"{n}\""));
            }
            s.push('>');
            if !sc.idp_list.is_empty() {
                s.push_str("<samlp:IDPList>");
                for p in &sc.idp_list {
                    s.push_str(&format!(
                        "<samlp:IDPEntry ProviderID=\"{}\"/>",
                        escape_attr(p)
                    ));
                }
                s.push_str("</samlp:IDPList>");
            }
            for r in &sc.requester_ids {
                s.push_str(&format!(
                    "<samlp:RequesterID>{}</samlp:RequesterID>",
                    escape_text(r)
                ));
            }
            s.push_str("</samlp:Scoping>");
        }
        s.push_str("</samlp:AuthnRequest>");
        s
    }

    /// The request with an enveloped signature after `saml:Issuer` (HTTP-POST binding).
    pub fn sign(&self, key: &SigningKey) -> Result<Vec<u8>, Error> {
        dsig::sign(
            self.to_xml().as_bytes(),
            key,
            &SignOptions {
                target: Target::Id(self.id.clone()),
                placement: Placement::AfterIssuer,
                ..SignOptions::default()
            },
        )
    }

    /// Parses a request without checking any signature: for the HTTP-Redirect binding, whose
    /// signature covers the query string (verify it first with
    /// [`crate::bindings::redirect::RedirectMessage::verify`]), or for an IdP that accepts
    /// unsigned requests. An enveloped `ds:Signature`, if present, is ignored here.
    pub fn parse(xml: &[u8]) -> Result<AuthnRequest, Error> {
        Self::read(Cursor::unverified(Reader::new(xml, Limits::default())?))
    }

    /// Verifies the enveloped signature (HTTP-POST binding) with `keys` (the SP's signing keys
    /// from its metadata) and parses the signed content. Returns the request and the index of
    /// the key that verified.
    pub fn verify_and_parse(
        xml: &[u8],
        keys: &TrustedKeys,
        legacy: bool,
    ) -> Result<(AuthnRequest, usize), Error> {
        let id = Self::parse(xml)?.id;
        let mut opts = dsig::VerifyOptions::protocol(id);
        if legacy {
            opts = opts.legacy();
        }
        let v = dsig::verify(xml, keys, &opts)?;
        if v.signed_range().start != root_start(xml)? {
            return Err(ProtocolError::Wrapped.into());
        }
        Ok((Self::read(Cursor::verified(&v)?)?, v.key_index()))
    }

    fn read(mut c: Cursor<'_>) -> Result<AuthnRequest, Error> {
        let root = c
            .next_child("(document)")?
            .ok_or(ProtocolError::Malformed {
                element: "(document)".into(),
                offset: 0,
                message: "no root element".into(),
            })?;
        if !root.is(SAMLP_NS, "AuthnRequest") {
            return Err(root.invalid("the root is not samlp:AuthnRequest").into());
        }
        super::check_version(&root)?;
        // Bounded and written plainly (review B1).
        let id = super::message_id(&root)?;
        let mut req = AuthnRequest {
            id,
            issue_instant: root.required_time("IssueInstant")?,
            destination: root.string("Destination"),
            issuer: String::new(),
            acs_url: root.string("AssertionConsumerServiceURL"),
            acs_index: root.u16_attr("AssertionConsumerServiceIndex")?,
            protocol_binding: root.string("ProtocolBinding"),
            force_authn: root.bool_attr("ForceAuthn")?,
            is_passive: root.bool_attr("IsPassive")?,
            provider_name: root.string("ProviderName"),
            name_id_policy: None,
            requested_authn_context: None,
            scoping: None,
            subject: None,
        };
        if req.acs_url.is_some() && req.acs_index.is_some() {
            return Err(root.invalid(
                "AssertionConsumerServiceURL and AssertionConsumerServiceIndex are mutually exclusive (§3.4.1)",
            ).into());
        }
        // The schema's sequence (SAML Core §3.2.1 RequestAbstractType, §3.4.1): each child at
        // most once, in this order. A second Issuer, read last-wins here and first-wins by
        // other implementations, would let a request name one issuer to a client that checks
        // it and another to the IdP (sasl review C2).
        const ORDER: [(&str, &str); 8] = [
            (SAML_NS, "Issuer"),
            (DSIG_NS, "Signature"),
            (SAMLP_NS, "Extensions"),
            (SAML_NS, "Subject"),
            (SAMLP_NS, "NameIDPolicy"),
            (SAML_NS, "Conditions"),
            (SAMLP_NS, "RequestedAuthnContext"),
            (SAMLP_NS, "Scoping"),
        ];
        let mut next = 0;
        while let Some(ch) = c.next_child("AuthnRequest")? {
            match ORDER
                .iter()
                .position(|&(ns, local)| ch.ns == ns && ch.local == local)
            {
                Some(i) if i >= next => next = i + 1,
                Some(_) => {
                    return Err(ch
                        .invalid(
                            "repeated or out of the schema's order in samlp:AuthnRequest \
                             (SAML Core §3.2.1, §3.4.1)",
                        )
                        .into());
                }
                None => {}
            }
            match (ch.ns, ch.local) {
                (SAML_NS, "Issuer") => {
                    // Profiles §4.1.4.1: the entity format or none (review B7).
                    super::response::entity_format(&ch)?;
                    req.issuer = c.text()?
                }
                (DSIG_NS, "Signature") | (SAMLP_NS, "Extensions") => c.skip(&ch)?,
                // Read, not skipped: an IdP that ignored it would assert whoever logged in
                // for a request about someone else (SAML Core §3.4.1).
                (SAML_NS, "Subject") => req.subject = subject(&mut c)?,
                (SAML_NS, "Conditions") => c.skip(&ch)?,
                (SAMLP_NS, "NameIDPolicy") => {
                    req.name_id_policy = Some(NameIdPolicy {
                        format: ch.string("Format"),
                        sp_name_qualifier: ch.string("SPNameQualifier"),
                        allow_create: ch.bool_attr("AllowCreate")?,
                    });
                    c.skip(&ch)?;
                }
                (SAMLP_NS, "RequestedAuthnContext") => {
                    let comparison = ch.string("Comparison");
                    if comparison
                        .as_deref()
                        .is_some_and(|v| !matches!(v, "exact" | "minimum" | "maximum" | "better"))
                    {
                        return Err(ch
                            .invalid("Comparison is not exact, minimum, maximum or better")
                            .into());
                    }
                    let mut r = RequestedAuthnContext {
                        comparison,
                        ..RequestedAuthnContext::default()
                    };
                    while let Some(x) = c.next_child("RequestedAuthnContext")? {
                        if x.is(SAML_NS, "AuthnContextClassRef") {
                            r.class_refs.push(c.collapsed()?);
                        } else if x.is(SAML_NS, "AuthnContextDeclRef") {
                            r.decl_refs.push(c.collapsed()?);
                        } else {
                            c.skip(&x)?;
                        }
                    }
                    if r.class_refs.is_empty() && r.decl_refs.is_empty() {
                        return Err(ch
                            .invalid("RequestedAuthnContext names no class and no declaration")
                            .into());
                    }
                    req.requested_authn_context = Some(r);
                }
                (SAMLP_NS, "Scoping") => req.scoping = Some(scoping(&mut c, &ch)?),
                _ => {
                    return Err(ch
                        .invalid("unexpected element in samlp:AuthnRequest")
                        .into());
                }
            }
        }
        if req.issuer.is_empty() {
            return Err(root
                .invalid("missing saml:Issuer (the Web SSO profile requires it)")
                .into());
        }
        Ok(req)
    }
}

/// The identifier of an AuthnRequest's `saml:Subject` (SAML Core §2.4.1, §3.4.1): one
/// `saml:NameID` at most; `saml:SubjectConfirmation` children are passed over; a `BaseID` or
/// `EncryptedID` is refused (this library could not check the principal against it).
fn subject(c: &mut Cursor<'_>) -> Result<Option<NameId>, Error> {
    let mut out = None;
    while let Some(ch) = c.next_child("Subject")? {
        match (ch.ns, ch.local) {
            (SAML_NS, "NameID") if out.is_some() => {
                return Err(ch.invalid("a second saml:NameID in saml:Subject").into());
            }
            (SAML_NS, "NameID") => out = Some(super::response::name_id(c, &ch)?),
            (SAML_NS, "SubjectConfirmation") => c.skip(&ch)?,
            (SAML_NS, "BaseID" | "EncryptedID") => {
                return Err(ch
                    .invalid(
                        "a requested subject other than a saml:NameID is not supported \
                         (the IdP could not honour it)",
                    )
                    .into());
            }
            _ => return Err(ch.invalid("unexpected element in saml:Subject").into()),
        }
    }
    Ok(out)
}

fn scoping(c: &mut Cursor<'_>, e: &Elem<'_>) -> Result<Scoping, Error> {
    let proxy_count = e
        .attr("ProxyCount")
        .map(|v| {
            xml_trim(v)
                .parse()
                .map_err(|_| e.invalid(format!("ProxyCount={v:?} is not a number")))
        })
        .transpose()?;
    let mut s = Scoping {
        proxy_count,
        ..Default::default()
    };
    let mut seen_list_or_requester = false;
    while let Some(ch) = c.next_child("Scoping")? {
        match (ch.ns, ch.local) {
            // IDPList?, RequesterID* (§3.4.1.2): a second list, or one after a RequesterID,
            // is refused rather than merged.
            (SAMLP_NS, "IDPList") if seen_list_or_requester => {
                return Err(ch
                    .invalid("a second or misplaced samlp:IDPList in samlp:Scoping (§3.4.1.2)")
                    .into());
            }
            (SAMLP_NS, "IDPList") => {
                seen_list_or_requester = true;
                while let Some(x) = c.next_child("IDPList")? {
                    if x.is(SAMLP_NS, "IDPEntry") {
                        s.idp_list.push(x.required("ProviderID")?.to_owned());
                    }
                    c.skip(&x)?;
                }
            }
            (SAMLP_NS, "RequesterID") => {
                seen_list_or_requester = true;
                s.requester_ids.push(c.collapsed()?);
            }
            _ => c.skip(&ch)?,
        }
    }
    Ok(s)
}

/// Byte offset of the document's root start tag.
pub(crate) fn root_start(xml: &[u8]) -> Result<usize, Error> {
    let mut r = Reader::new(xml, Limits::default())?;
    while let Some(ev) = r.next()? {
        if let crate::xml::Event::Start(s) = ev {
            return Ok(s.span.start);
        }
    }
    Err(Error::Usage("no root element".into()))
}
