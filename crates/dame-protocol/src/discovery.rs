//! The SAML IdP Discovery Protocol (sstc-saml-idp-discovery §2.4) as DAME's broker runs it:
//! the SP sends the user with `entityID`, `return`, `returnIDParam`, `policy`, `isPassive`; the
//! broker answers by redirecting to `return` with the chosen IdP. `return` must be one of the
//! SP's `idpdisc:DiscoveryResponse` endpoints in its registered metadata (§2.4.1: no open
//! redirect), compared as the URL up to its query string.

use saml_metadata::model::EntityDescriptor;

use crate::error::{Error, Refusal};
use crate::query::{Query, append, write};

/// The only `policy` value the profile defines (and the default).
pub const POLICY_SINGLE: &str = "urn:oasis:names:tc:SAML:profiles:SSO:idp-discoveryprotocol:single";

const WHAT: &str = "discovery request";

/// A discovery request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[must_use]
pub struct DiscoveryRequest {
    /// The requesting SP (`entityID`, required).
    pub entity_id: String,
    /// Where to send the answer (`return`); absent: the SP's default DiscoveryResponse.
    pub return_url: Option<String>,
    /// The parameter name carrying the IdP in the answer (`returnIDParam`, default `entityID`).
    pub return_id_param: String,
    /// Answer without user interaction (`isPassive=true`).
    pub is_passive: bool,
}

impl DiscoveryRequest {
    /// A request from `sp` answered at `return_url`.
    pub fn new(sp: &str, return_url: Option<&str>) -> Self {
        DiscoveryRequest {
            entity_id: sp.to_owned(),
            return_url: return_url.map(str::to_owned),
            return_id_param: "entityID".into(),
            is_passive: false,
        }
    }

    /// Parses the query string of the discovery request.
    pub fn parse(query: &str) -> Result<Self, Error> {
        let q = Query::parse(WHAT, query)?;
        let entity_id = q.required(WHAT, "entityID")?;
        let return_url = q.get(WHAT, "return")?;
        let return_id_param = q
            .get(WHAT, "returnIDParam")?
            .unwrap_or_else(|| "entityID".into());
        if return_id_param.is_empty()
            || return_id_param.len() > 64
            || !return_id_param
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            return Err(Error::malformed(
                WHAT,
                format!("returnIDParam {return_id_param:?} is not a parameter name"),
            ));
        }
        if let Some(p) = q.get(WHAT, "policy")?
            && p != POLICY_SINGLE
        {
            return Err(Error::malformed(WHAT, format!("unsupported policy {p:?}")));
        }
        let is_passive = match q.get(WHAT, "isPassive")?.as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(Error::malformed(
                    WHAT,
                    format!("isPassive={other:?} is neither true nor false"),
                ));
            }
        };
        Ok(DiscoveryRequest {
            entity_id,
            return_url,
            return_id_param,
            is_passive,
        })
    }

    /// The query string (without `?`).
    #[must_use]
    pub fn to_query(&self) -> String {
        let mut pairs = vec![("entityID", self.entity_id.as_str())];
        if let Some(r) = &self.return_url {
            pairs.push(("return", r));
        }
        if self.return_id_param != "entityID" {
            pairs.push(("returnIDParam", &self.return_id_param));
        }
        if self.is_passive {
            pairs.push(("isPassive", "true"));
        }
        write(&pairs)
    }

    /// Where the answer goes: `return` when it is one of `sp`'s DiscoveryResponse endpoints,
    /// else the default endpoint when `return` is absent. `sp` must be the registered metadata
    /// of [`entity_id`](Self::entity_id).
    pub fn return_to(&self, sp: &EntityDescriptor) -> Result<String, Error> {
        if sp.entity_id != self.entity_id {
            return Err(Refusal::UnknownEntity.into());
        }
        let endpoints: Vec<_> = sp
            .sp()
            .map(|s| s.common.extensions.discovery_responses.iter().collect())
            .unwrap_or_default();
        match &self.return_url {
            Some(r) => {
                if endpoints
                    .iter()
                    .any(|e| matches_endpoint(r, e.endpoint.location.as_str()))
                {
                    Ok(r.clone())
                } else {
                    Err(Refusal::ReturnNotRegistered.into())
                }
            }
            None => endpoints
                .iter()
                .min_by_key(|e| (e.is_default != Some(true), e.index))
                .map(|e| e.endpoint.location.as_str().to_owned())
                .ok_or_else(|| Refusal::ReturnNotRegistered.into()),
        }
    }

    /// The URL that answers this request: `return` (checked by [`Self::return_to`]) with the
    /// chosen IdP in `returnIDParam`, or without it when no IdP was chosen (a passive request
    /// that cannot be answered).
    pub fn answer(&self, sp: &EntityDescriptor, idp: Option<&str>) -> Result<String, Error> {
        let base = self.return_to(sp)?;
        Ok(match idp {
            Some(idp) => append(&base, &write(&[(self.return_id_param.as_str(), idp)])),
            None => base,
        })
    }
}

/// Whether `url` is `location`, or `location` followed by a query (`?` when the location has
/// none, `&` when it has one): the URL up to its query string must be the registered one.
fn matches_endpoint(url: &str, location: &str) -> bool {
    match url.strip_prefix(location) {
        Some("") => true,
        Some(rest) => {
            let sep = if location.contains('?') { '&' } else { '?' };
            rest.starts_with(sep) && !rest.contains('#')
        }
        None => false,
    }
}
