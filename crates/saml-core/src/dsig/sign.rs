//! Creating an enveloped signature (XML-DSig 1.1 §3.1) with exclusive c14n over one element,
//! placed where the SAML schemas want it.

use base64::Engine as _;
use openssl::hash::Hasher;

use super::algorithms::{DigestAlgorithm, ENVELOPED_SIGNATURE, SignatureAlgorithm};
use super::keys::SigningKey;
use super::pipeline::DigestSink;
use super::{DSIG_NS, Placement, SAML_ASSERTION_NS, Target};
use crate::c14n::{self, Canonicalizer, EXC_C14N};
use crate::error::{Error, SignatureError};
use crate::xml::{Event, Limits, Reader};

/// How to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignOptions {
    /// The element to sign.
    pub target: Target,
    /// Where to put the ds:Signature: first child (metadata) or after saml:Issuer (protocol
    /// messages). [`Placement::Anywhere`] means first child.
    pub placement: Placement,
    /// Signature algorithm; `None` picks the key's natural one (RSA-SHA256, ECDSA by curve).
    pub algorithm: Option<SignatureAlgorithm>,
    /// Digest algorithm. Default SHA-256.
    pub digest: DigestAlgorithm,
    /// InclusiveNamespaces PrefixList for the reference's exc-c14n transform, if any: at most
    /// [`c14n::MAX_INCLUSIVE_PREFIXES`] distinct prefixes (verifiers here refuse more).
    pub inclusive_prefixes: Option<String>,
    /// Put the signer's certificate in KeyInfo (when the key has one). Default true.
    pub include_certificate: bool,
    /// The unprefixed attribute holding the target's ID (for the Reference URI). Default `ID`.
    /// A target whose ID is written with a character reference is refused, as `verify` would.
    pub id_attribute: String,
    /// Reader limits for the input.
    pub limits: Limits,
}

impl Default for SignOptions {
    fn default() -> Self {
        SignOptions {
            target: Target::Root,
            placement: Placement::FirstChild,
            algorithm: None,
            digest: DigestAlgorithm::Sha256,
            inclusive_prefixes: None,
            include_certificate: true,
            id_attribute: "ID".into(),
            limits: Limits::default(),
        }
    }
}

/// Signs `doc`: returns the document with an enveloped `ds:Signature` inserted into the target
/// element. The Reference URI is `#ID` when the target has an ID, `""` otherwise (root only).
pub fn sign(doc: &[u8], key: &SigningKey, opts: &SignOptions) -> Result<Vec<u8>, Error> {
    let algorithm = opts.algorithm.unwrap_or_else(|| key.default_algorithm());
    if matches!(
        algorithm,
        SignatureAlgorithm::RsaSha1 | SignatureAlgorithm::EcdsaSha1
    ) || opts.digest == DigestAlgorithm::Sha1
    {
        return Err(Error::Usage("SHA-1 is not used for new signatures".into()));
    }
    let mut c14n_opts = c14n::Options::default();
    if let Some(list) = &opts.inclusive_prefixes {
        c14n_opts = c14n_opts.with_prefix_list(list);
        c14n_opts.check_prefix_list().map_err(Error::Usage)?;
    }

    let mut reader = Reader::new(doc, opts.limits)?;
    let mut canon: Option<Canonicalizer<'_, DigestSink>> = None;
    let mut target_depth = 0usize;
    let mut id: Option<String> = None;
    let mut insert_at: Option<usize> = None;
    let mut children = 0usize;
    let mut first_is_issuer = false;
    let mut digest: Option<Vec<u8>> = None;
    while let Some(ev) = reader.next()? {
        if let Some(c) = canon.as_mut() {
            match &ev {
                Event::Start(s) if s.depth == target_depth + 1 => {
                    children += 1;
                    if s.is(DSIG_NS, "Signature") {
                        return Err(Error::Usage("the element is already signed".into()));
                    }
                    first_is_issuer |= children == 1 && s.is(SAML_ASSERTION_NS, "Issuer");
                }
                // SAML Core §5.3 schemas: the Signature follows saml:Issuer when there is one.
                Event::End(e)
                    if e.depth == target_depth + 1
                        && children == 1
                        && first_is_issuer
                        && opts.placement == Placement::AfterIssuer =>
                {
                    insert_at = Some(e.span.end);
                }
                _ => {}
            }
            c.event(&ev)?;
            if c.is_complete()
                && let Some(c) = canon.take()
            {
                let (mut sink, _) = c.finish()?;
                digest = Some(sink.0.finish()?.to_vec());
            }
            continue;
        }
        if digest.is_some() {
            continue;
        }
        if let Event::Start(s) = &ev {
            let id_attr = s.attribute(&opts.id_attribute);
            let sid = id_attr.map(|a| a.value().into_owned());
            let hit = match &opts.target {
                Target::Root => s.depth == 1,
                Target::Id(want) => sid.as_deref() == Some(want.as_str()),
            };
            if hit {
                // `verify` refuses such IDs (issue 13 item 6); never sign what cannot verify.
                if let Some(a) = id_attr
                    && !super::verify::is_plain_id(a.raw_value)
                {
                    return Err(SignatureError::InvalidId(a.raw_value.to_owned()).into());
                }
                if s.empty {
                    return Err(Error::Usage("cannot sign an empty-element tag".into()));
                }
                if matches!(opts.target, Target::Root) && sid.is_none() && s.depth != 1 {
                    return Err(Error::Usage("a non-root element needs an ID".into()));
                }
                target_depth = s.depth;
                id = sid;
                insert_at = Some(s.span.end);
                let hasher = Hasher::new(opts.digest.message_digest())?;
                let mut c = Canonicalizer::new(DigestSink(hasher), c14n_opts.clone());
                c.event(&ev)?;
                canon = Some(c);
            }
        }
    }
    let (Some(digest), Some(at)) = (digest, insert_at) else {
        return Err(Error::Usage("the element to sign was not found".into()));
    };
    let uri = id.map(|i| format!("#{i}")).unwrap_or_default();
    let b64 = base64::engine::general_purpose::STANDARD;

    let prefix_list = opts
        .inclusive_prefixes
        .as_ref()
        .map(|l| {
            format!(
                "<ec:InclusiveNamespaces xmlns:ec=\"{EXC_C14N}\" PrefixList=\"{}\"/>",
                crate::xml::escape_attr(l)
            )
        })
        .unwrap_or_default();
    let signed_info = format!(
        "<ds:SignedInfo><ds:CanonicalizationMethod Algorithm=\"{EXC_C14N}\"/>\
         <ds:SignatureMethod Algorithm=\"{}\"/>\
         <ds:Reference URI=\"{}\"><ds:Transforms>\
         <ds:Transform Algorithm=\"{ENVELOPED_SIGNATURE}\"/>\
         <ds:Transform Algorithm=\"{EXC_C14N}\">{prefix_list}</ds:Transform></ds:Transforms>\
         <ds:DigestMethod Algorithm=\"{}\"/><ds:DigestValue>{}</ds:DigestValue>\
         </ds:Reference></ds:SignedInfo>",
        algorithm.uri(),
        crate::xml::escape_attr(&uri),
        opts.digest.uri(),
        b64.encode(&digest),
    );
    // Exclusive c14n of SignedInfo depends only on the namespaces it uses (ds), which the
    // Signature element declares, so canonicalizing it standalone gives the signed octets.
    let standalone = format!("<ds:Signature xmlns:ds=\"{DSIG_NS}\">{signed_info}</ds:Signature>");
    let si_c14n = c14n::canonicalize_element(
        standalone.as_bytes(),
        c14n::Options::default(),
        |s| s.is(DSIG_NS, "SignedInfo"),
        |_| false,
    )?;
    let value = key.sign(algorithm, &si_c14n)?;
    let key_info = match (opts.include_certificate, key.certificate()) {
        (true, Some(cert)) => format!(
            "<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>",
            b64.encode(cert.to_der()?)
        ),
        _ => String::new(),
    };
    let signature = format!(
        "<ds:Signature xmlns:ds=\"{DSIG_NS}\">{signed_info}<ds:SignatureValue>{}</ds:SignatureValue>{key_info}</ds:Signature>",
        b64.encode(&value)
    );
    let mut out = Vec::with_capacity(doc.len() + signature.len());
    out.extend_from_slice(&doc[..at]);
    out.extend_from_slice(signature.as_bytes());
    out.extend_from_slice(&doc[at..]);
    Ok(out)
}
