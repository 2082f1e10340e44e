//! Every XML namespace the crate reads or writes, in one place. The constants are also
//! re-exported where they were first defined (`xml::XML_NS`, `dsig::DSIG_NS`,
//! `protocol::SAML_NS`, ...); new code should name them here.

/// The namespace bound to the `xml` prefix (Namespaces in XML 1.0 §3).
pub const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";
/// The namespace of `xmlns` attributes (never bindable).
pub const XMLNS_NS: &str = "http://www.w3.org/2000/xmlns/";
/// XML Signature (XMLDSIG §4).
pub const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
/// XML Encryption 1.0.
pub const XENC_NS: &str = "http://www.w3.org/2001/04/xmlenc#";
/// XML Encryption 1.1.
pub const XENC11_NS: &str = "http://www.w3.org/2009/xmlenc11#";
/// SAML 2.0 assertions (SAML Core §2).
pub const SAML_NS: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
/// SAML 2.0 protocol (SAML Core §3).
pub const SAMLP_NS: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
/// SAML 2.0 metadata (SAML Metadata §2).
pub const MD_NS: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
