//! The identity provider's side, enough for tests, demos and brokers: check an incoming
//! [`AuthnRequest`] and issue a signed (optionally encrypted) `samlp:Response` with one
//! `saml:Assertion` for it (SAML Profiles §4.1.4.2).

use std::time::{Duration, SystemTime};

use openssl::pkey::{PKey, Public};

use super::authn_request::{AuthnRequest, NameIdPolicy, RequestedAuthnContext};
use super::xmlenc::{self, DataAlgorithm, KeyTransport};
use super::{
    AC_PASSWORD_PROTECTED_TRANSPORT, Attribute, BEARER, NAMEID_ENCRYPTED, NAMEID_UNSPECIFIED,
    NameId, ProtocolError, SAML_NS, SAMLP_NS, Status, StatusCode, new_id,
};
use crate::dsig::{self, Placement, SignOptions, SigningKey, Target};
use crate::error::Error;
use crate::time::format_datetime_exact;
use crate::xml::{escape_attr, escape_text};

/// Checks an AuthnRequest as an IdP receiving it at `sso_urls` at `now`: Destination, if present,
/// is one of them, and IssueInstant is not older than `max_age` nor later than `now` plus
/// `clock_skew` (SAML Profiles §4.1.4.1). For a request whose binding signature was verified,
/// use [`check_signed_request`]: a signed request must name its Destination.
pub fn check_request(
    req: &AuthnRequest,
    sso_urls: &[&str],
    now: SystemTime,
    max_age: Duration,
    clock_skew: Duration,
) -> Result<(), Error> {
    if let Some(d) = &req.destination
        && !sso_urls.contains(&d.as_str())
    {
        return Err(ProtocolError::DestinationMismatch { found: d.clone() }.into());
    }
    super::response::check_instant("AuthnRequest", req.issue_instant, now, max_age, clock_skew)
}

/// [`check_request`] for a request whose signature (the binding's or an enveloped one) was
/// verified: its Destination is required (SAML Bindings §3.4.5.2, §3.5.5.2), so that a request
/// an SP signed for one IdP cannot be presented to another that trusts the same SP (review B4).
pub fn check_signed_request(
    req: &AuthnRequest,
    sso_urls: &[&str],
    now: SystemTime,
    max_age: Duration,
    clock_skew: Duration,
) -> Result<(), Error> {
    if req.destination.is_none() {
        return Err(ProtocolError::DestinationMismatch {
            found: String::new(),
        }
        .into());
    }
    check_request(req, sso_urls, now, max_age, clock_skew)
}

/// Encrypting the assertion for the SP.
#[derive(Debug, Clone)]
pub struct Encryption {
    /// The SP's encryption key (from its metadata's `use="encryption"` certificate).
    pub recipient: PKey<Public>,
    /// Content algorithm (default AES-256-GCM).
    pub algorithm: DataAlgorithm,
    /// Key transport.
    pub transport: KeyTransport,
}

/// What goes into a Response; see [`ResponseBuilder::for_request`].
#[derive(Debug, Clone)]
pub struct ResponseBuilder {
    /// The IdP's entityID.
    pub idp_entity_id: String,
    /// The audience: the SP's entityID.
    pub sp_entity_id: String,
    /// Where the Response goes (Destination and Recipient).
    pub acs_url: String,
    /// The request answered (`None` for an unsolicited Response).
    pub in_response_to: Option<String>,
    /// The subject.
    pub name_id: NameId,
    /// Attributes released.
    pub attributes: Vec<Attribute>,
    /// AuthnContextClassRef.
    pub authn_context_class: String,
    /// When the user authenticated (default: `now` of [`ResponseBuilder::build`], right for
    /// a login made for this request; an IdP answering from an existing session sets the
    /// session's instant, which [`ResponseBuilder::fresh_authn_since`] then checks).
    pub authn_instant: Option<SystemTime>,
    /// SessionIndex (default: a new ID).
    pub session_index: Option<String>,
    /// How long the assertion is valid (default 5 minutes).
    pub lifetime: Duration,
    /// Sign the Assertion (default true).
    pub sign_assertion: bool,
    /// Sign the Response (default true).
    pub sign_response: bool,
    /// Encrypt the assertion.
    pub encryption: Option<Encryption>,
    /// The status; anything but Success yields a Response without an assertion.
    pub status: Status,
    /// The subject the request asked for (its `saml:Subject`, set by
    /// [`ResponseBuilder::for_request`]): a successful Response about another `name_id` is
    /// refused by [`ResponseBuilder::build`] with [`ProtocolError::SubjectMismatch`]; answer
    /// with an error status instead (SAML Core §3.4.1).
    pub requested_subject: Option<NameId>,
    /// The request's `NameIDPolicy` (set by [`ResponseBuilder::for_request`]): a successful
    /// Response whose NameID has another format than the one it asks for (`unspecified` and an
    /// absent Format ask for none; `encrypted`, an `EncryptedID`, is not made here), or
    /// another `SPNameQualifier` than the one it names, is refused by
    /// [`ResponseBuilder::build`] with [`ProtocolError::NameIdPolicyUnmet`] (SAML Core
    /// §3.4.1.1). `AllowCreate` is the IdP's to honour.
    pub requested_name_id_policy: Option<NameIdPolicy>,
    /// The request's `RequestedAuthnContext` (set by [`ResponseBuilder::for_request`]): a
    /// successful Response whose `authn_context_class` does not meet it is refused with
    /// [`ProtocolError::AuthnContextUnmet`] (SAML Core §3.3.2.2.1). With `exact`, `minimum`
    /// or `maximum` the class must be one of those listed; `better`, and declaration
    /// references, are never met here: the ordering of classes is the IdP's own. An IdP that
    /// judges the request by its own ordering sets this to `None` once it has.
    pub requested_authn_context: Option<RequestedAuthnContext>,
    /// For a request with `ForceAuthn="true"`, the instant the authentication must follow:
    /// [`ResponseBuilder::for_request`] sets the request's IssueInstant less
    /// [`FORCE_AUTHN_SKEW`] (the SP's clock); an IdP sets when it received the request (its
    /// own clock), which is tighter. A successful Response whose `authn_instant` is earlier is
    /// refused with [`ProtocolError::StaleAuthentication`] (SAML Core §3.4.1: the IdP must
    /// authenticate the presenter again, not answer from a session). `IsPassive` is the
    /// caller's: a builder cannot tell whether the user was asked.
    pub fresh_authn_since: Option<SystemTime>,
}

/// How much earlier than a `ForceAuthn` request's IssueInstant (the SP's clock) a new
/// authentication may be dated (the IdP's clock) and still count as made for it.
pub const FORCE_AUTHN_SKEW: Duration = Duration::from_secs(180);

/// Whether `asserted` is the principal `requested` names: the same value, and the same
/// format and qualifiers where the request gives them.
fn same_subject(requested: &NameId, asserted: &NameId) -> bool {
    let given = |r: &Option<String>, a: &Option<String>| r.is_none() || r == a;
    requested.value == asserted.value
        && given(&requested.format, &asserted.format)
        && given(&requested.name_qualifier, &asserted.name_qualifier)
        && given(&requested.sp_name_qualifier, &asserted.sp_name_qualifier)
}

impl ResponseBuilder {
    /// A Response answering `req` from `idp_entity_id` to the ACS at `acs_url` about
    /// `name_id`, for the audience `req.issuer`.
    ///
    /// The request's Issuer and ACS URL are the SP's claims: before building, verify the
    /// request's signature with that SP's metadata keys (or accept it unsigned only from SPs
    /// your policy allows), and take `acs_url` from that SP's metadata,
    /// `saml_metadata::sso::acs_for(&sp, &req)`, which accepts the URL the request names only
    /// when the metadata lists it. An ACS URL taken from the request as written sends the
    /// SP's assertion to whoever wrote the request (SAML Profiles §4.1.4.1).
    #[must_use]
    pub fn for_request(
        req: &AuthnRequest,
        idp_entity_id: &str,
        acs_url: &str,
        name_id: NameId,
    ) -> Self {
        ResponseBuilder {
            idp_entity_id: idp_entity_id.to_owned(),
            sp_entity_id: req.issuer.clone(),
            acs_url: acs_url.to_owned(),
            in_response_to: Some(req.id.clone()),
            name_id,
            attributes: Vec::new(),
            authn_context_class: AC_PASSWORD_PROTECTED_TRANSPORT.to_owned(),
            authn_instant: None,
            session_index: None,
            lifetime: Duration::from_secs(300),
            sign_assertion: true,
            sign_response: true,
            encryption: None,
            status: Status::success(),
            requested_subject: req.subject.clone(),
            requested_name_id_policy: req.name_id_policy.clone(),
            requested_authn_context: req.requested_authn_context.clone(),
            fresh_authn_since: (req.force_authn == Some(true)).then(|| {
                req.issue_instant
                    .checked_sub(FORCE_AUTHN_SKEW)
                    .unwrap_or(req.issue_instant)
            }),
        }
    }

    /// Whether the Response asserts what the request asked for (see the `requested_*` and
    /// `fresh_authn_since` fields); the refusal's [`ProtocolError::answer_status`] is the
    /// error status to answer with.
    fn check_requested(&self, now: SystemTime) -> Result<(), ProtocolError> {
        if let Some(requested) = &self.requested_subject
            && !same_subject(requested, &self.name_id)
        {
            return Err(ProtocolError::SubjectMismatch {
                requested: requested.value.clone(),
                asserted: self.name_id.value.clone(),
            });
        }
        if let Some(p) = &self.requested_name_id_policy {
            let asserted = self.name_id.format.as_deref();
            if let Some(f) = p.format.as_deref().filter(|f| *f != NAMEID_UNSPECIFIED)
                && (f == NAMEID_ENCRYPTED || asserted != Some(f))
            {
                return Err(ProtocolError::NameIdPolicyUnmet(format!(
                    "Format {f}, not {}",
                    asserted.unwrap_or("(none)")
                )));
            }
            if let (Some(q), Some(a)) = (&p.sp_name_qualifier, &self.name_id.sp_name_qualifier)
                && q != a
            {
                return Err(ProtocolError::NameIdPolicyUnmet(format!(
                    "SPNameQualifier {q}, not {a}"
                )));
            }
        }
        if let Some(c) = &self.requested_authn_context {
            let comparison = c.comparison.as_deref().unwrap_or("exact");
            let met = match comparison {
                "exact" | "minimum" | "maximum" => c.class_refs.contains(&self.authn_context_class),
                _ => false,
            };
            if !met {
                return Err(ProtocolError::AuthnContextUnmet {
                    comparison: comparison.to_owned(),
                    requested: c.class_refs.iter().chain(&c.decl_refs).cloned().collect(),
                    asserted: self.authn_context_class.clone(),
                });
            }
        }
        let instant = self.authn_instant.unwrap_or(now);
        if let Some(since) = self.fresh_authn_since
            && instant < since
        {
            return Err(ProtocolError::StaleAuthentication {
                requested: format_datetime_exact(since),
                authenticated: format_datetime_exact(instant),
            });
        }
        Ok(())
    }

    /// The assertion XML (unsigned), with its own namespace declarations.
    fn assertion(&self, id: &str, session: &str, now: SystemTime) -> String {
        // A lifetime whose sum does not fit saturates (a configuration value; never a panic).
        let until = now
            .checked_add(self.lifetime)
            .or_else(|| now.checked_add(Duration::from_secs(u64::from(u32::MAX))))
            .unwrap_or(now);
        let until = format_datetime_exact(until);
        let now_s = format_datetime_exact(now);
        let irt = self
            .in_response_to
            .as_ref()
            .map(|r| format!(" InResponseTo=\"{}\"", escape_attr(r)))
            .unwrap_or_default();
        let n = &self.name_id;
        let mut name_attrs = String::new();
        for (k, v) in [
            ("Format", &n.format),
            ("NameQualifier", &n.name_qualifier),
            ("SPNameQualifier", &n.sp_name_qualifier),
        ] {
            if let Some(v) = v {
                name_attrs.push_str(&format!(" {k}=\"{}\"", escape_attr(v)));
            }
        }
        let mut attrs = String::new();
        if !self.attributes.is_empty() {
            attrs.push_str("<saml:AttributeStatement>");
            for a in &self.attributes {
                attrs.push_str(&format!(
                    "<saml:Attribute Name=\"{}\"",
                    escape_attr(&a.name)
                ));
                if let Some(f) = &a.name_format {
                    attrs.push_str(&format!(" NameFormat=\"{}\"", escape_attr(f)));
                }
                if let Some(f) = &a.friendly_name {
                    attrs.push_str(&format!(" FriendlyName=\"{}\"", escape_attr(f)));
                }
                attrs.push('>');
                for v in &a.values {
                    attrs.push_str(&format!(
                        "<saml:AttributeValue xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"xs:string\">{}</saml:AttributeValue>",
                        escape_text(v)
                    ));
                }
                attrs.push_str("</saml:Attribute>");
            }
            attrs.push_str("</saml:AttributeStatement>");
        }
        format!(
            "<saml:Assertion xmlns:saml=\"{SAML_NS}\" ID=\"{id}\" Version=\"2.0\" IssueInstant=\"{now_s}\"><saml:Issuer>{issuer}</saml:Issuer><saml:Subject><saml:NameID{name_attrs}>{name}</saml:NameID><saml:SubjectConfirmation Method=\"{BEARER}\"><saml:SubjectConfirmationData NotOnOrAfter=\"{until}\" Recipient=\"{acs}\"{irt}/></saml:SubjectConfirmation></saml:Subject><saml:Conditions NotBefore=\"{now_s}\" NotOnOrAfter=\"{until}\"><saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction></saml:Conditions><saml:AuthnStatement AuthnInstant=\"{authn}\" SessionIndex=\"{session}\"><saml:AuthnContext><saml:AuthnContextClassRef>{class}</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>{attrs}</saml:Assertion>",
            issuer = escape_text(&self.idp_entity_id),
            name = escape_text(&n.value),
            acs = escape_attr(&self.acs_url),
            audience = escape_text(&self.sp_entity_id),
            authn = format_datetime_exact(self.authn_instant.unwrap_or(now)),
            session = escape_attr(session),
            class = escape_text(&self.authn_context_class),
        )
    }

    /// Builds the Response at `now`, signing with `key` as configured; `random` supplies IDs and
    /// encryption keys. A successful Response that does not assert what the request asked
    /// for (its Subject, NameIDPolicy format, exact RequestedAuthnContext, or a new
    /// authentication for ForceAuthn) is refused: build the error Response that
    /// [`ProtocolError::answer_status`] names instead.
    pub fn build(
        &self,
        key: &SigningKey,
        now: SystemTime,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<Vec<u8>, Error> {
        if self.name_id.format.as_deref() == Some(NAMEID_ENCRYPTED) {
            // A request's word for "an EncryptedID", never a NameID's format (§3.4.1.1, §8.3.9).
            return Err(Error::Usage(
                "a NameID's Format cannot be the encrypted format (an EncryptedID is not made here)"
                    .into(),
            ));
        }
        if self.status.code == StatusCode::Success {
            self.check_requested(now)?;
        }
        let response_id = new_id(random);
        let mut inner = String::new();
        if self.status.code == StatusCode::Success {
            let assertion_id = new_id(random);
            let session = self.session_index.clone().unwrap_or_else(|| new_id(random));
            let xml = self.assertion(&assertion_id, &session, now);
            let xml = if self.sign_assertion {
                String::from_utf8(dsig::sign(
                    xml.as_bytes(),
                    key,
                    &SignOptions {
                        target: Target::Id(assertion_id),
                        placement: Placement::AfterIssuer,
                        ..SignOptions::default()
                    },
                )?)
                .map_err(|_| Error::Usage("signed assertion is not UTF-8".into()))?
            } else {
                xml
            };
            inner = match &self.encryption {
                Some(e) => xmlenc::encrypt(
                    xml.as_bytes(),
                    &e.recipient,
                    e.algorithm,
                    e.transport,
                    random,
                )?,
                None => xml,
            };
        }
        let irt = self
            .in_response_to
            .as_ref()
            .map(|r| format!(" InResponseTo=\"{}\"", escape_attr(r)))
            .unwrap_or_default();
        let mut status = format!(
            "<samlp:Status><samlp:StatusCode Value=\"{}\"",
            escape_attr(&self.status.code.uri())
        );
        match &self.status.second {
            Some(s) => status.push_str(&format!(
                "><samlp:StatusCode Value=\"{}\"/></samlp:StatusCode>",
                escape_attr(&s.uri())
            )),
            None => status.push_str("/>"),
        }
        if let Some(m) = &self.status.message {
            status.push_str(&format!(
                "<samlp:StatusMessage>{}</samlp:StatusMessage>",
                escape_text(m)
            ));
        }
        status.push_str("</samlp:Status>");
        let response = format!(
            "<samlp:Response xmlns:samlp=\"{SAMLP_NS}\" xmlns:saml=\"{SAML_NS}\" ID=\"{response_id}\" Version=\"2.0\" IssueInstant=\"{}\" Destination=\"{}\"{irt}><saml:Issuer>{}</saml:Issuer>{status}{inner}</samlp:Response>",
            format_datetime_exact(now),
            escape_attr(&self.acs_url),
            escape_text(&self.idp_entity_id),
        );
        if self.sign_response {
            dsig::sign(
                response.as_bytes(),
                key,
                &SignOptions {
                    target: Target::Id(response_id),
                    placement: Placement::AfterIssuer,
                    ..SignOptions::default()
                },
            )
        } else {
            Ok(response.into_bytes())
        }
    }
}
