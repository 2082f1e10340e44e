//! Scoped attributes: the attributes whose values are `user@scope`, which a relying party
//! takes from an IdP only within the IdP's `shibmd:Scope`s (Shibboleth Metadata Profile,
//! Scope extension; Shibboleth SP's attribute map decodes them with its scoped decoder), or
//! not at all. One list for the whole workspace: the SASL server's check of asserted values
//! and the DAME conversion rules' check of generated ones agreed on fewer names (review S1:
//! eduPersonPrincipalNamePrior and the friendly names went through the SASL server unchecked).

/// The SAML names of the scoped attributes: eduPersonPrincipalName,
/// eduPersonScopedAffiliation, eduPersonUniqueId (eduPerson 2020), eduPersonPrincipalNamePrior
/// (which SPs use to link accounts), subject-id and pairwise-id (SAML V2.0 Subject Identifier
/// Attributes Profile §3.3, §3.4), and the SAML 1 names of the eduPerson ones (with
/// eduPersonTargetedID, scoped in SAML 1). Compared without ASCII case (a URN's scheme and
/// namespace are case-insensitive, RFC 8141 §3.1).
pub const SCOPED_ATTRIBUTES: [&str; 11] = [
    "urn:oid:1.3.6.1.4.1.5923.1.1.1.6",
    "urn:oid:1.3.6.1.4.1.5923.1.1.1.9",
    "urn:oid:1.3.6.1.4.1.5923.1.1.1.13",
    "urn:oid:1.3.6.1.4.1.5923.1.1.1.12",
    "urn:oasis:names:tc:SAML:attribute:subject-id",
    "urn:oasis:names:tc:SAML:attribute:pairwise-id",
    "urn:mace:dir:attribute-def:eduPersonPrincipalName",
    "urn:mace:dir:attribute-def:eduPersonScopedAffiliation",
    "urn:mace:dir:attribute-def:eduPersonUniqueId",
    "urn:mace:dir:attribute-def:eduPersonPrincipalNamePrior",
    "urn:mace:dir:attribute-def:eduPersonTargetedID",
];

/// The friendly (basic) names of [`SCOPED_ATTRIBUTES`]: SPs request them so, and IdPs send
/// them so (a SimpleSAMLphp IdP without a `name2oid` map names its attributes by their LDAP
/// names, in the basic NameFormat), as a `Name` or as a `FriendlyName`.
pub const SCOPED_FRIENDLY_NAMES: [&str; 7] = [
    "eduPersonPrincipalName",
    "eppn",
    "eduPersonScopedAffiliation",
    "eduPersonUniqueId",
    "eduPersonPrincipalNamePrior",
    "subject-id",
    "pairwise-id",
];

/// Whether `name` (a SAML name, a friendly name or a local name) is a scoped attribute's,
/// without ASCII case and XML white space around it.
#[must_use]
pub fn is_scoped_name(name: &str) -> bool {
    let name = crate::xml::cursor::xml_trim(name);
    SCOPED_ATTRIBUTES
        .iter()
        .chain(SCOPED_FRIENDLY_NAMES.iter())
        .any(|a| a.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_friendly_names_and_case() {
        assert!(is_scoped_name("urn:oid:1.3.6.1.4.1.5923.1.1.1.12"));
        assert!(is_scoped_name("URN:OID:1.3.6.1.4.1.5923.1.1.1.6"));
        assert!(is_scoped_name(" eduPersonPrincipalName\n"));
        assert!(is_scoped_name("EPPN"));
        assert!(!is_scoped_name("urn:oid:0.9.2342.19200300.100.1.3"));
        assert!(!is_scoped_name("mail"));
    }
}
