//! Reading one `ds:Signature` element under the strict profile of XMLDSIG.md rules 2, 3 and 8:
//! exactly one SignedInfo with one Reference, transforms {enveloped-signature, exc-c14n}, no
//! Object or Manifest, no comments, algorithms from the allowlist.

use std::ops::Range;

use base64::Engine as _;

use super::DSIG_NS;
use super::algorithms::{DigestAlgorithm, ENVELOPED_SIGNATURE, SignatureAlgorithm};
use crate::c14n::{self, EXC_C14N, EXC_C14N_WITH_COMMENTS};
use crate::error::{Error, SignatureError};
use crate::xml::{Event, NsDecl, Reader, StartElement};

/// What a `ds:Signature` says, once checked.
#[derive(Debug)]
pub(crate) struct ParsedSignature<'a> {
    pub(crate) signed_info: Range<usize>,
    pub(crate) signed_info_scope: Vec<NsDecl<'a>>,
    pub(crate) c14n: c14n::Options,
    pub(crate) algorithm: SignatureAlgorithm,
    pub(crate) reference_uri: String,
    pub(crate) reference_c14n: c14n::Options,
    pub(crate) digest: DigestAlgorithm,
    pub(crate) digest_value: Vec<u8>,
    pub(crate) signature_value: Vec<u8>,
    pub(crate) certificates: Vec<Vec<u8>>,
}

fn structure(msg: impl Into<String>) -> Error {
    SignatureError::Structure(msg.into()).into()
}

fn c14n_options(uri: &str) -> Result<c14n::Options, Error> {
    match uri {
        EXC_C14N => Ok(c14n::Options::default()),
        // A same-document reference (`""` or `#id`) yields a node-set without comments
        // (XML-DSig 1.1 §4.4.3.3), so the #WithComments variant outputs the same octets; so
        // does SignedInfo, which may not contain comments. xmlsec1 and Santuario agree (checked
        // with UK federation metadata that uses #WithComments and has 251 comments).
        EXC_C14N_WITH_COMMENTS => Ok(c14n::Options::default()),
        other => Err(SignatureError::Algorithm(format!("canonicalization {other}")).into()),
    }
}

fn decode_b64(text: &str, what: &str) -> Result<Vec<u8>, Error> {
    let clean: String = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '\t' | '\r' | '\n'))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean.as_bytes())
        .map_err(|e| SignatureError::Malformed(format!("{what}: {e}")).into())
}

fn algorithm_attr<'a>(s: &StartElement<'_, 'a>) -> Result<std::borrow::Cow<'a, str>, Error> {
    s.attribute("Algorithm")
        .map(|a| a.value())
        .ok_or_else(|| structure(format!("{} without Algorithm", s.name.local)))
}

/// Where we are inside the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Signature,
    SignedInfo,
    CanonicalizationMethod,
    SignatureMethod,
    Reference,
    Transforms,
    Transform,
    DigestMethod,
    DigestValue,
    SignatureValue,
    KeyInfo,
    X509Certificate,
    InclusiveNamespaces,
    Opaque,
}

/// Parses the `ds:Signature` subtree that `reader` yields (a fragment reader over exactly that
/// element).
pub(crate) fn parse<'a>(
    mut reader: Reader<'a>,
    allow_sha1: bool,
) -> Result<ParsedSignature<'a>, Error> {
    let mut stack: Vec<(Node, usize)> = Vec::new(); // (node, element children seen)
    let mut text = String::new();
    let mut signed_info: Option<(Range<usize>, Vec<NsDecl<'a>>)> = None;
    let mut si_start = 0usize;
    let mut c14n: Option<c14n::Options> = None;
    let mut algorithm = None;
    let mut reference_uri: Option<String> = None;
    let mut transforms: Vec<String> = Vec::new();
    let mut reference_c14n: Option<c14n::Options> = None;
    let mut digest = None;
    let mut digest_value = None;
    let mut signature_value = None;
    let mut certificates = Vec::new();
    let mut saw_transforms = false;

    while let Some(ev) = reader.next()? {
        match ev {
            Event::Comment(_) => return Err(SignatureError::CommentInSignature.into()),
            Event::Text(t) => {
                let collecting = matches!(
                    stack.last(),
                    Some((
                        Node::DigestValue | Node::SignatureValue | Node::X509Certificate,
                        _
                    ))
                );
                if collecting {
                    text.push_str(&t.value());
                } else if !t.is_whitespace() && !matches!(stack.last(), Some((Node::Opaque, _))) {
                    return Err(structure("text where only elements are allowed"));
                }
            }
            Event::Start(s) => {
                let in_ds = s.namespace == DSIG_NS;
                let local = s.name.local;
                let parent = stack.last_mut().map(|(n, c)| {
                    *c += 1;
                    (*n, *c)
                });
                let node = match parent {
                    None => {
                        if !(in_ds && local == "Signature") {
                            return Err(structure("not a ds:Signature"));
                        }
                        Node::Signature
                    }
                    Some((Node::Signature, i)) => match (in_ds, local, i) {
                        (true, "SignedInfo", 1) => {
                            si_start = s.span.start;
                            let own = s.namespace_decls.len();
                            signed_info = Some((0..0, s.scope[..s.scope.len() - own].to_vec()));
                            Node::SignedInfo
                        }
                        (true, "SignatureValue", 2) => Node::SignatureValue,
                        (true, "KeyInfo", 3) => Node::KeyInfo,
                        (true, "Object", _) => return Err(structure("ds:Object is not allowed")),
                        _ => {
                            return Err(structure(format!(
                                "unexpected <{}> in ds:Signature",
                                s.name.raw
                            )));
                        }
                    },
                    Some((Node::SignedInfo, i)) => match (in_ds, local, i) {
                        (true, "CanonicalizationMethod", 1) => {
                            c14n = Some(c14n_options(&algorithm_attr(&s)?)?);
                            Node::CanonicalizationMethod
                        }
                        (true, "SignatureMethod", 2) => {
                            algorithm = Some(SignatureAlgorithm::from_uri(
                                &algorithm_attr(&s)?,
                                allow_sha1,
                            )?);
                            Node::SignatureMethod
                        }
                        (true, "Reference", 3) => {
                            let uri = s
                                .attribute("URI")
                                .ok_or_else(|| SignatureError::ReferenceUri("(absent)".into()))?;
                            reference_uri = Some(uri.value().into_owned());
                            Node::Reference
                        }
                        (true, "Reference", _) => {
                            return Err(structure("more than one ds:Reference"));
                        }
                        (true, "SignedInfo", _) => return Err(structure("nested ds:SignedInfo")),
                        _ => {
                            return Err(structure(format!(
                                "unexpected <{}> in ds:SignedInfo",
                                s.name.raw
                            )));
                        }
                    },
                    Some((Node::Reference, i)) => match (in_ds, local, i) {
                        (true, "Transforms", 1) => {
                            saw_transforms = true;
                            Node::Transforms
                        }
                        (true, "DigestMethod", n) if n == 1 + usize::from(saw_transforms) => {
                            digest =
                                Some(DigestAlgorithm::from_uri(&algorithm_attr(&s)?, allow_sha1)?);
                            Node::DigestMethod
                        }
                        (true, "DigestValue", n) if n == 2 + usize::from(saw_transforms) => {
                            Node::DigestValue
                        }
                        _ => {
                            return Err(structure(format!(
                                "unexpected <{}> in ds:Reference",
                                s.name.raw
                            )));
                        }
                    },
                    Some((Node::Transforms, _)) if in_ds && local == "Transform" => {
                        let alg = algorithm_attr(&s)?.into_owned();
                        if alg != ENVELOPED_SIGNATURE {
                            reference_c14n = Some(c14n_options(&alg).map_err(|_| {
                                Error::from(SignatureError::Transforms(format!("transform {alg}")))
                            })?);
                        }
                        transforms.push(alg);
                        Node::Transform
                    }
                    Some((Node::Transform | Node::CanonicalizationMethod, 1))
                        if s.namespace == EXC_C14N && local == "InclusiveNamespaces" =>
                    {
                        let list = s
                            .attribute("PrefixList")
                            .map(|a| a.value().into_owned())
                            .unwrap_or_default();
                        let target = if matches!(parent, Some((Node::Transform, _))) {
                            reference_c14n.as_mut()
                        } else {
                            c14n.as_mut()
                        };
                        match target {
                            Some(o) => {
                                *o = std::mem::take(o).with_prefix_list(&list);
                                // Bounded so that no signer-chosen list makes c14n costly.
                                o.check_prefix_list()
                                    .map_err(|m| Error::from(SignatureError::Transforms(m)))?;
                            }
                            None => return Err(structure("InclusiveNamespaces outside exc-c14n")),
                        }
                        Node::InclusiveNamespaces
                    }
                    Some((Node::KeyInfo | Node::Opaque, _)) => {
                        if in_ds && local == "X509Certificate" {
                            Node::X509Certificate
                        } else if in_ds
                            && matches!(local, "Object" | "Manifest" | "Signature" | "SignedInfo")
                        {
                            return Err(structure(format!("<{}> inside ds:KeyInfo", s.name.raw)));
                        } else {
                            Node::Opaque
                        }
                    }
                    Some((p, _)) => {
                        return Err(structure(format!("unexpected <{}> in {p:?}", s.name.raw)));
                    }
                };
                text.clear();
                stack.push((node, 0));
            }
            Event::End(e) => {
                let Some((node, _)) = stack.pop() else { break };
                match node {
                    Node::SignedInfo => {
                        if let Some((r, _)) = signed_info.as_mut() {
                            *r = si_start..e.span.end;
                        }
                        if reference_uri.is_none() {
                            return Err(structure("ds:SignedInfo without ds:Reference"));
                        }
                    }
                    Node::DigestValue => digest_value = Some(decode_b64(&text, "DigestValue")?),
                    Node::SignatureValue => {
                        signature_value = Some(decode_b64(&text, "SignatureValue")?)
                    }
                    Node::X509Certificate => {
                        certificates.push(decode_b64(&text, "X509Certificate")?)
                    }
                    _ => {}
                }
                if stack.is_empty() {
                    break;
                }
            }
        }
    }

    if transforms.len() != 2 || transforms[0] != ENVELOPED_SIGNATURE || reference_c14n.is_none() {
        return Err(SignatureError::Transforms(format!(
            "expected [enveloped-signature, exc-c14n], found {transforms:?}"
        ))
        .into());
    }
    let (signed_info, signed_info_scope) =
        signed_info.ok_or_else(|| structure("no ds:SignedInfo"))?;
    Ok(ParsedSignature {
        signed_info,
        signed_info_scope,
        c14n: c14n.ok_or_else(|| structure("no ds:CanonicalizationMethod"))?,
        algorithm: algorithm.ok_or_else(|| structure("no ds:SignatureMethod"))?,
        reference_uri: reference_uri.ok_or_else(|| structure("no ds:Reference"))?,
        reference_c14n: reference_c14n.unwrap_or_default(),
        digest: digest.ok_or_else(|| structure("no ds:DigestMethod"))?,
        digest_value: digest_value.ok_or_else(|| structure("no ds:DigestValue"))?,
        signature_value: signature_value.ok_or_else(|| structure("no ds:SignatureValue"))?,
        certificates,
    })
}
