//! A second signature engine: libxmlsec1 through the `xmlsec` crate (OpenSSL backend), behind
//! the `xmlsec` feature.
//!
//! It is never the only check: libxmlsec1 reports "valid" for an evil root wrapping a signed
//! aggregate, and for an evil entity inside `ds:Signature/ds:Object` (XMLDSIG.md). So
//! [`verify_with_xmlsec`] first runs every structural rule of [`super::verify`] on our own reader
//! (hardening, position, single Reference to the target, transforms, algorithm allowlist, unique
//! IDs) and only then asks libxmlsec1 for the digest and signature-value verdict on exactly that
//! `ds:Signature` node, once per configured key (KeyInfo only checked afterwards, as in our
//! engine: its certificates must hold the key that verified). The result is the same
//! [`Verified`] handle over our own parse, so callers still read only the signed content.
//!
//! This module uses only the safe API of the `xmlsec` and `libxml` crates; the crate keeps
//! `#![forbid(unsafe_code)]`.

use openssl::pkey::Id;
use xmlsec::{XmlSecKey, XmlSecKeyFormat, XmlSecSignatureContext, XmlXPathContext};

use super::verify::{Crypto, Verified, VerifyOptions, check};
use super::{DSIG_NS, Target, TrustedKeys};
use crate::error::{Error, SignatureError};

fn engine(e: impl std::fmt::Display) -> Error {
    Error::XmlSec(e.to_string())
}

/// Verifies like [`super::verify`], with libxmlsec1 doing the cryptographic checks.
pub fn verify_with_xmlsec<'a>(
    doc: &'a [u8],
    keys: &TrustedKeys,
    opts: &VerifyOptions,
) -> Result<Verified<'a>, Error> {
    let mut verified = check(doc, keys, opts, Crypto::StructureOnly, &mut |_| {})?;

    let libdoc = libxml::parser::Parser::default()
        .parse_string(doc)
        .map_err(|e| engine(format!("libxml2 could not parse the document: {e:?}")))?;
    for name in &opts.id_attributes {
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(Error::Usage(format!(
                "unsupported ID attribute name {name:?}"
            )));
        }
        // Registers ID attributes; fails only when no element carries one, which is fine.
        let _ = xmlsec::XmlSecDocumentExt::specify_idattr(
            &libdoc,
            &format!("//*[@{name}]"),
            name,
            None,
        );
    }
    let expr = match &opts.target {
        Target::Root => "/*/ds:Signature".to_owned(),
        Target::Id(id) => {
            if id.contains(['\'', '"']) {
                return Err(SignatureError::TargetNotFound(format!("ID {id:?}")).into());
            }
            let attrs = opts
                .id_attributes
                .iter()
                .map(|n| format!("@{n}='{id}'"))
                .collect::<Vec<_>>()
                .join(" or ");
            format!("//*[{attrs}]/ds:Signature")
        }
    };
    let xpath = XmlXPathContext::new(&libdoc).map_err(|_| engine("no XPath context"))?;
    xpath
        .register_namespace("ds", DSIG_NS)
        .map_err(|_| engine("XPath namespace"))?;
    let nodes = xpath
        .evaluate(&expr)
        .map_err(|_| engine(format!("XPath {expr}")))?
        .get_nodes_as_vec();
    let [node] = nodes.as_slice() else {
        // Our structural pass found exactly one; libxml2 disagreeing is a parser differential.
        return Err(engine(format!(
            "libxml2 found {} ds:Signature nodes for the target",
            nodes.len()
        )));
    };

    for (i, k) in keys.keys().iter().enumerate() {
        let pkey = k.public_key();
        if pkey.id() == Id::RSA && pkey.bits() < opts.min_rsa_bits {
            continue;
        }
        let pem = pkey.public_key_to_pem()?;
        let key = XmlSecKey::from_memory(&pem, XmlSecKeyFormat::Pem, None).map_err(engine)?;
        let mut ctx = XmlSecSignatureContext::new();
        ctx.insert_key(key);
        // libxmlsec1 fails the whole call when the key does not fit the algorithm; that is
        // "not this key", like a wrong signature value.
        if let Ok(true) = ctx.verify_node(node) {
            // The same KeyInfo rule as our engine (`TrustedKeys::verify`).
            if !super::keys::key_info_allows(&verified.key_info_certs, pkey) {
                return Err(SignatureError::KeyInfoMismatch.into());
            }
            verified.key_info_certs = Vec::new();
            verified.set_key_index(i);
            return Ok(verified);
        }
    }
    Err(SignatureError::NotTrusted.into())
}
