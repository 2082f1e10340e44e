//! `action=authenticate` (draft-poehn-dame-06 §4): the SP's AuthnRequest1 in the HTTP-Redirect
//! binding, sent to the broker with the chosen IdP:
//!
//! ```text
//! GET /DAME?action=authenticate&idpEntityID=<IdP>&SAMLRequest=..&RelayState=..&SigAlg=..&Signature=..
//! ```
//! The query signature covers the Redirect binding's octets (`SAMLRequest`, `RelayState`,
//! `SigAlg`); the broker verifies it with the SP's registered signing keys and checks that the
//! AuthnRequest's Issuer is that SP, then stores it until the exchange is done.
//!
//! `idpEntityID` is outside those octets, so the SP names the IdP inside its request too:
//! `samlp:Scoping/samlp:IDPList` with that one IdP (SAML Core §3.4.1.2), and a `Destination`
//! that is the IdP's HTTP-Redirect SSO endpoint ([`AuthenticateRequest::url`] sets both). The
//! broker refuses a signed AuthnRequest1 that names another IdP: otherwise a user could re-aim
//! the SP's signed request at an IdP of their own, and the SP's agent would integrate an IdP
//! the SP never asked for (broker review H1). The `Destination` is required on a signed
//! request (SAML Bindings §3.4.5.2): the broker replays the request to that endpoint once the
//! exchange is done, and a Shibboleth IdP (OpenSAML) refuses a signed request without one
//! ("intended destination (required by binding) was not present"; review B2). The SP learns
//! the endpoint from the broker's MDQ service, which publishes every registered IdP.

use saml_core::bindings::MessageKind;
use saml_core::bindings::redirect::{self, RedirectMessage};
use saml_core::dsig::SigningKey;
use saml_core::protocol::AuthnRequest;
use saml_metadata::model::EntityDescriptor;

use crate::error::{Error, Refusal};
use crate::query::{Query, append, write};

const WHAT: &str = "authenticate request";

/// Largest inflated AuthnRequest accepted (64 KiB).
pub const MAX_AUTHN_REQUEST: usize = 64 << 10;

/// A decoded, not yet verified `action=authenticate` request.
#[derive(Debug, Clone)]
#[must_use]
pub struct AuthenticateRequest {
    /// The IdP the user chose (`idpEntityID`).
    pub idp_entity_id: String,
    message: RedirectMessage,
}

/// An AuthnRequest1 whose signature verified with the SP's metadata keys.
#[derive(Debug, Clone)]
#[must_use]
pub struct VerifiedAuthnRequest {
    /// The IdP the user chose.
    pub idp_entity_id: String,
    /// The SP's AuthnRequest.
    pub request: AuthnRequest,
    /// Its RelayState.
    pub relay_state: Option<String>,
    /// Whether it was signed (always, unless the broker's policy for this SP admits unsigned
    /// requests).
    pub signed: bool,
}

impl AuthenticateRequest {
    /// Parses the query string; the AuthnRequest is inflated (at most 64 KiB) but not verified.
    pub fn parse(query: &str) -> Result<Self, Error> {
        let q = Query::parse(WHAT, query)?;
        match q.required(WHAT, "action")?.as_str() {
            "authenticate" => {}
            other => return Err(Error::malformed(WHAT, format!("action {other:?}"))),
        }
        let idp_entity_id = q.required(WHAT, "idpEntityID")?;
        let message = redirect::decode(query, MAX_AUTHN_REQUEST)?;
        if message.kind != MessageKind::Request {
            return Err(Error::malformed(WHAT, "a SAMLResponse, not a SAMLRequest"));
        }
        Ok(AuthenticateRequest {
            idp_entity_id,
            message,
        })
    }

    /// The SP's entityID as its AuthnRequest names it (unverified: to find its metadata).
    pub fn issuer(&self) -> Result<String, Error> {
        Ok(AuthnRequest::parse(&self.message.xml)?.issuer)
    }

    /// Verifies the query signature with `sp`'s signing keys (`sp` is the registered metadata
    /// of the requesting SP) and that the AuthnRequest's Issuer is `sp`. An unsigned request is
    /// refused unless `allow_unsigned` (a per-SP policy; the draft says SHOULD be signed), and
    /// always when `sp`'s metadata says `AuthnRequestsSigned="true"`.
    pub fn verify(
        self,
        sp: &EntityDescriptor,
        allow_unsigned: bool,
    ) -> Result<VerifiedAuthnRequest, Error> {
        let signed = self.message.is_signed();
        if signed {
            let keys = saml_metadata::sso::sp_signing_keys(sp)?;
            if self.message.verify(&keys, false).is_err() {
                return Err(Refusal::BadSignature.into());
            }
        } else if !allow_unsigned
            // An SP whose metadata says it signs its requests is not spoken for unsigned,
            // whatever its policy (review B6: anyone could start flows in its name).
            || sp.sp().and_then(|r| r.authn_requests_signed) == Some(true)
        {
            return Err(Refusal::Unsigned.into());
        }
        let request = AuthnRequest::parse(&self.message.xml)?;
        if request.issuer != sp.entity_id {
            return Err(Refusal::IssuerMismatch.into());
        }
        // The IdP the signed request names, if any, must be the one asked for; one that names
        // none must carry a Destination (which the broker matches to the IdP's endpoints).
        if let Some(list) = request.scoping.as_ref().map(|s| &s.idp_list)
            && !list.is_empty()
            && list.as_slice() != [self.idp_entity_id.as_str()]
        {
            return Err(Refusal::WrongFlow.into());
        }
        // A signed request names where it goes (SAML Bindings §3.4.5.2); the broker matches it
        // to the IdP's HTTP-Redirect SSO endpoint, where it replays the request.
        if signed && request.destination.is_none() {
            return Err(Refusal::WrongFlow.into());
        }
        Ok(VerifiedAuthnRequest {
            idp_entity_id: self.idp_entity_id,
            request,
            relay_state: self.message.relay_state,
            signed,
        })
    }

    /// The SP side: the URL of the broker's DAME endpoint carrying `request` for `idp`, signed
    /// with the SP's key. The request's `Scoping/IDPList` is set to `idp` alone (kept
    /// otherwise), so that the signature covers which IdP the SP asked for, and its
    /// `Destination` to `idp_sso`, the IdP's HTTP-Redirect SSO endpoint (from the IdP's
    /// metadata, which the broker's MDQ service publishes: `saml_metadata::sso::sso_location`),
    /// where the broker replays it.
    pub fn url(
        broker_endpoint: &str,
        idp: &str,
        idp_sso: &str,
        request: &AuthnRequest,
        relay_state: Option<&str>,
        sp_key: &SigningKey,
    ) -> Result<String, Error> {
        let mut request = request.clone();
        request.destination = Some(idp_sso.to_owned());
        let mut scoping = request.scoping.take().unwrap_or_default();
        scoping.idp_list = vec![idp.to_owned()];
        request.scoping = Some(scoping);
        let saml = redirect::encode(
            MessageKind::Request,
            request.to_xml().as_bytes(),
            relay_state,
            Some(sp_key),
            None,
        )?;
        let head = write(&[("action", "authenticate"), ("idpEntityID", idp)]);
        Ok(append(broker_endpoint, &format!("{head}&{saml}")))
    }
}
