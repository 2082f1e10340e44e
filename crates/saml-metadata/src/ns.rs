//! Every XML namespace the crate reads or writes, in one place (saml-core's [`saml_core::ns`]
//! holds the XML, XML-DSig and SAML core ones). The constants are also re-exported where they
//! were first defined (`ext::MDUI_NS`, ...); new code should name them here.

/// `urn:oasis:names:tc:SAML:2.0:metadata`
pub const MD_NS: &str = saml_core::ns::MD_NS;
/// `urn:oasis:names:tc:SAML:2.0:assertion`
pub const SAML_NS: &str = saml_core::ns::SAML_NS;
/// `http://refeds.org/metadata` (REFEDS security contact's `remd:contactType`)
pub const REMD_NS: &str = "http://refeds.org/metadata";
/// `http://www.w3.org/2001/XMLSchema-instance`
pub const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// `urn:oasis:names:tc:SAML:metadata:ui`
pub const MDUI_NS: &str = "urn:oasis:names:tc:SAML:metadata:ui";
/// `urn:oasis:names:tc:SAML:metadata:rpi`
pub const MDRPI_NS: &str = "urn:oasis:names:tc:SAML:metadata:rpi";
/// `urn:oasis:names:tc:SAML:metadata:attribute`
pub const MDATTR_NS: &str = "urn:oasis:names:tc:SAML:metadata:attribute";
/// `urn:mace:shibboleth:metadata:1.0`
pub const SHIBMD_NS: &str = "urn:mace:shibboleth:metadata:1.0";
/// `urn:oasis:names:tc:SAML:profiles:SSO:idp-discovery-protocol`
pub const IDPDISC_NS: &str = "urn:oasis:names:tc:SAML:profiles:SSO:idp-discovery-protocol";
/// `urn:oasis:names:tc:SAML:profiles:SSO:request-init`
pub const INIT_NS: &str = "urn:oasis:names:tc:SAML:profiles:SSO:request-init";
/// `urn:oasis:names:tc:SAML:metadata:algsupport`
pub const ALG_NS: &str = "urn:oasis:names:tc:SAML:metadata:algsupport";
/// `urn:geant:dame` (draft-poehn-dame-06)
pub const DAME_NS: &str = "urn:geant:dame";
/// `urn:geant:lrz.de` (draft-poehn-dame-02's TTPMetadataSyncLocation)
pub const DAME_OLD_NS: &str = "urn:geant:lrz.de";
