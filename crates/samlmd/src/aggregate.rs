//! A deterministic generator of eduGAIN-shaped SAML metadata aggregates.
//!
//! [`generate`] produces an unsigned `md:EntitiesDescriptor` with the root attributes and
//! namespace declarations of a real inter-federation aggregate, a `mdrpi:PublicationInfo`, and
//! `n` entities alternating identity providers and service providers with the extensions
//! federations publish (mdrpi, mdattr entity categories, mdui, shibmd:Scope, DiscoHints,
//! idpdisc, init, alg, REFEDS security contacts). Entities average about 6.5 KB, so 10,000
//! entities make about 65 MB, the size of eduGAIN's aggregate. The output depends only on
//! `n` and `seed`.
//!
//! The X509Certificate values are pseudo-random base64 of a certificate's length (about
//! 1.1 KB of DER, wrapped at 64 columns); they are never parsed as certificates.

use std::fmt::Write as _;

/// Changes whenever [`generate`]'s output changes, so that cached files can be told apart.
pub const GENERATOR_VERSION: u32 = 1;

/// The `ID` attribute of the generated root element.
pub const ROOT_ID: &str = "_edugain-bench-aggregate";

/// `write!` into a `String` (which cannot fail).
macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

/// A tiny xorshift64* generator: deterministic, dependency-free, good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Self {
        let mut s = seed ^ 0x9E37_79B9_7F4A_7C15;
        if s == 0 {
            s = 0x2545_F491_4F6C_DD1D;
        }
        let mut r = Rng(s);
        for _ in 0..4 {
            r.next_u64();
        }
        r
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 11) % n as u64) as usize
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// One element of a non-empty slice.
    pub fn pick<'s, T>(&mut self, items: &'s [T]) -> &'s T {
        &items[self.below(items.len())]
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            B64[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            B64[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

use saml_core::xml::escape_text as esc;

const NS: &[(&str, &str)] = &[
    ("md", "urn:oasis:names:tc:SAML:2.0:metadata"),
    ("ds", "http://www.w3.org/2000/09/xmldsig#"),
    ("mdui", "urn:oasis:names:tc:SAML:metadata:ui"),
    ("mdrpi", "urn:oasis:names:tc:SAML:metadata:rpi"),
    ("mdattr", "urn:oasis:names:tc:SAML:metadata:attribute"),
    ("saml", "urn:oasis:names:tc:SAML:2.0:assertion"),
    ("shibmd", "urn:mace:shibboleth:metadata:1.0"),
    (
        "idpdisc",
        "urn:oasis:names:tc:SAML:profiles:SSO:idp-discovery-protocol",
    ),
    ("init", "urn:oasis:names:tc:SAML:profiles:SSO:request-init"),
    ("alg", "urn:oasis:names:tc:SAML:metadata:algsupport"),
    ("remd", "http://refeds.org/metadata"),
    ("xsi", "http://www.w3.org/2001/XMLSchema-instance"),
];

/// Federations: (registration authority, country TLD, second language).
const FEDERATIONS: &[(&str, &str, &str)] = &[
    ("https://www.aai.dfn.de", "de", "de"),
    ("http://federation.renater.fr/", "fr", "fr"),
    ("http://www.swamid.se/", "se", "sv"),
    ("http://rr.aai.switch.ch/", "ch", "de"),
    ("https://incommon.org", "edu", "es"),
    ("http://ukfederation.org.uk", "uk", "cy"),
    ("https://www.idem.garr.it", "it", "it"),
    ("http://www.surfconext.nl/", "nl", "nl"),
    ("http://www.csc.fi/haka", "fi", "fi"),
    ("https://www.eduid.cz/", "cz", "cs"),
    ("https://aai.pionier.net.pl", "pl", "pl"),
    ("https://www.grnet.gr/aai", "gr", "el"),
    ("https://taat.edu.ee", "ee", "et"),
    ("https://www.gakunin.jp", "jp", "ja"),
    ("https://www.rediris.es/sir", "es", "es"),
    ("http://eduid.hu", "hu", "hu"),
];

/// Organization names in English and (by second language) in the local language; several
/// carry non-ASCII characters or an ampersand.
const NAMES: &[(&str, &str)] = &[
    ("University of Zurich", "Universität Zürich"),
    ("University of Geneva", "Université de Genève"),
    ("University of Tartu", "Tartu Ülikool"),
    ("Lodz University of Technology", "Politechnika Łódzka"),
    (
        "National and Kapodistrian University of Athens",
        "Εθνικό και Καποδιστριακό Πανεπιστήμιο Αθηνών",
    ),
    ("The University of Tokyo", "東京大学"),
    ("Charles University", "Univerzita Karlova"),
    (
        "Royal Institute of Technology",
        "Kungliga Tekniska högskolan",
    ),
    ("University of Helsinki", "Helsingin yliopisto"),
    ("Eötvös Loránd University", "Eötvös Loránd Tudományegyetem"),
    (
        "Institute of Science & Technology",
        "Institut für Wissenschaft & Technik",
    ),
    (
        "Delft University of Technology",
        "Technische Universiteit Delft",
    ),
    (
        "University of Bologna",
        "Alma Mater Studiorum – Università di Bologna",
    ),
    (
        "Complutense University of Madrid",
        "Universidad Complutense de Madrid",
    ),
    ("Library Consortium", "Bibliothèques universitaires réunies"),
    ("Research Data Services", "Forschungsdaten-Dienste"),
    ("Aberystwyth University", "Prifysgol Aberystwyth"),
    (
        "Research & Education Network",
        "Réseau de recherche et d'éducation",
    ),
];

const WORDS: &[&str] = &[
    "alpha", "nord", "sud", "campus", "tech", "science", "library", "med", "arts", "poly", "data",
    "lab", "grid", "cloud", "wiki", "journal", "learn", "portal", "archive", "vo",
];

const SP_SERVICES: &[&str] = &[
    "Journal access",
    "Wiki",
    "Learning management system",
    "Research data repository",
    "Video conferencing",
    "Grid portal",
    "Collaborative editor",
    "Publisher platform",
];

const GIVEN: &[&str] = &[
    "Anna", "Jörg", "Zoë", "Mikael", "Łukasz", "Eleni", "Haruto", "Maria", "Pieter", "Aino",
    "Tomáš", "Siân", "Chiara", "José", "Ádám", "Kadri",
];
const SURNAMES: &[&str] = &[
    "Müller",
    "Dupont",
    "Lindqvist",
    "Kowalski",
    "Papadopoulou",
    "Tanaka",
    "Rossi",
    "de Vries",
    "Virtanen",
    "Novák",
    "Jones",
    "García",
    "Nagy",
    "Tamm",
    "Smith",
    "Brown",
];

const CATEGORIES: &[&str] = &[
    "http://refeds.org/category/research-and-scholarship",
    "https://refeds.org/category/code-of-conduct/v2",
    "http://www.geant.net/uri/dataprotection-code-of-conduct/v1",
    "https://refeds.org/category/personalized",
    "https://refeds.org/category/pseudonymous",
    "https://refeds.org/category/anonymous",
];

const REQUESTED: &[(&str, &str)] = &[
    ("eduPersonPrincipalName", "urn:oid:1.3.6.1.4.1.5923.1.1.1.6"),
    ("mail", "urn:oid:0.9.2342.19200300.100.1.3"),
    ("displayName", "urn:oid:2.16.840.1.113730.3.1.241"),
    (
        "eduPersonScopedAffiliation",
        "urn:oid:1.3.6.1.4.1.5923.1.1.1.9",
    ),
    ("eduPersonEntitlement", "urn:oid:1.3.6.1.4.1.5923.1.1.1.7"),
    ("schacHomeOrganization", "urn:oid:1.3.6.1.4.1.25178.1.2.9"),
    ("eduPersonAssurance", "urn:oid:1.3.6.1.4.1.5923.1.1.1.11"),
    ("givenName", "urn:oid:2.5.4.42"),
    ("sn", "urn:oid:2.5.4.4"),
];

const SAML2_PROTO: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const URI_FORMAT: &str = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri";
const B_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
const B_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
const B_ARTIFACT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact";
const B_SOAP: &str = "urn:oasis:names:tc:SAML:2.0:bindings:SOAP";
const B_SIMPLESIGN: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST-SimpleSign";

/// An ISO 8601 instant between 2008 and 2025.
fn instant(rng: &mut Rng) -> String {
    format!(
        "{}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        rng.range(2008, 2025),
        rng.range(1, 12),
        rng.range(1, 28),
        rng.below(24),
        rng.below(60),
        rng.below(60)
    )
}

/// A certificate-sized base64 block (about 1.1 KB of DER with an X.509-like header),
/// wrapped at 64 columns, each line on its own.
fn certificate(rng: &mut Rng, out: &mut String) {
    let len = rng.range(1000, 1150);
    let mut der = Vec::with_capacity(len);
    let inner = len - 4;
    let tbs = inner - 4 - 15 - 261;
    der.extend_from_slice(&[0x30, 0x82, (inner >> 8) as u8, inner as u8]);
    der.extend_from_slice(&[0x30, 0x82, (tbs >> 8) as u8, tbs as u8]);
    der.extend_from_slice(&[0xa0, 0x03, 0x02, 0x01, 0x02, 0x02, 0x14]);
    while der.len() < len {
        der.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    der.truncate(len);
    let b64 = base64(&der);
    out.push('\n');
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
}

fn key_descriptor(rng: &mut Rng, out: &mut String, ind: &str, usage: Option<&str>) {
    match usage {
        Some(u) => w!(out, "{ind}<md:KeyDescriptor use=\"{u}\">\n"),
        None => w!(out, "{ind}<md:KeyDescriptor>\n"),
    }
    w!(
        out,
        "{ind}\t<ds:KeyInfo>\n{ind}\t\t<ds:X509Data>\n{ind}\t\t\t<ds:X509Certificate>"
    );
    certificate(rng, out);
    w!(
        out,
        "{ind}\t\t\t</ds:X509Certificate>\n{ind}\t\t</ds:X509Data>\n{ind}\t</ds:KeyInfo>\n"
    );
    if usage == Some("encryption") && rng.chance(50) {
        w!(
            out,
            "{ind}\t<md:EncryptionMethod Algorithm=\"http://www.w3.org/2009/xmlenc11#aes128-gcm\"/>\n"
        );
    }
    w!(out, "{ind}</md:KeyDescriptor>\n");
}

struct Entity<'a> {
    idx: usize,
    host: String,
    domain: String,
    fed: &'a (&'a str, &'a str, &'a str),
    name: &'a (&'a str, &'a str),
}

fn entity_extensions(rng: &mut Rng, out: &mut String, e: &Entity<'_>, idp: bool) {
    let (authority, _, lang) = *e.fed;
    w!(out, "\t\t<md:Extensions>\n");
    w!(
        out,
        "\t\t\t<mdrpi:RegistrationInfo registrationAuthority=\"{authority}\" registrationInstant=\"{}\">\n",
        instant(rng)
    );
    w!(
        out,
        "\t\t\t\t<mdrpi:RegistrationPolicy xml:lang=\"en\">{}/metadata/rps-en.html</mdrpi:RegistrationPolicy>\n",
        authority.trim_end_matches('/')
    );
    if rng.chance(25) {
        w!(
            out,
            "\t\t\t\t<mdrpi:RegistrationPolicy xml:lang=\"{lang}\">{}/metadata/rps-{lang}.html</mdrpi:RegistrationPolicy>\n",
            authority.trim_end_matches('/')
        );
    }
    w!(out, "\t\t\t</mdrpi:RegistrationInfo>\n");
    w!(out, "\t\t\t<mdattr:EntityAttributes>\n");
    let (cat_name, cats) = if idp {
        ("http://macedir.org/entity-category-support", 2)
    } else {
        ("http://macedir.org/entity-category", 1)
    };
    w!(
        out,
        "\t\t\t\t<saml:Attribute Name=\"{cat_name}\" NameFormat=\"{URI_FORMAT}\">\n"
    );
    let first = rng.below(CATEGORIES.len());
    for k in 0..cats + rng.below(2) {
        w!(
            out,
            "\t\t\t\t\t<saml:AttributeValue>{}</saml:AttributeValue>\n",
            CATEGORIES[(first + k) % CATEGORIES.len()]
        );
    }
    w!(out, "\t\t\t\t</saml:Attribute>\n");
    if rng.chance(35) {
        w!(
            out,
            "\t\t\t\t<saml:Attribute Name=\"urn:oasis:names:tc:SAML:attribute:assurance-certification\" NameFormat=\"{URI_FORMAT}\">\n\t\t\t\t\t<saml:AttributeValue>https://refeds.org/sirtfi</saml:AttributeValue>\n\t\t\t\t</saml:Attribute>\n"
        );
    }
    if idp && rng.chance(15) {
        w!(
            out,
            "\t\t\t\t<saml:Attribute Name=\"http://macedir.org/entity-category\" NameFormat=\"{URI_FORMAT}\">\n\t\t\t\t\t<saml:AttributeValue>http://refeds.org/category/hide-from-discovery</saml:AttributeValue>\n\t\t\t\t</saml:Attribute>\n"
        );
    }
    w!(out, "\t\t\t</mdattr:EntityAttributes>\n");
    if rng.chance(20) {
        w!(
            out,
            "\t\t\t<alg:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/>\n\t\t\t<alg:SigningMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256\" MinKeySize=\"2048\"/>\n"
        );
    }
    w!(out, "\t\t</md:Extensions>\n");
}

fn ui_info(rng: &mut Rng, out: &mut String, e: &Entity<'_>, display: (&str, &str), idp: bool) {
    let lang = e.fed.2;
    let i = e.idx;
    w!(out, "\t\t\t\t<mdui:UIInfo>\n");
    w!(
        out,
        "\t\t\t\t\t<mdui:DisplayName xml:lang=\"en\">{}</mdui:DisplayName>\n",
        esc(display.0)
    );
    w!(
        out,
        "\t\t\t\t\t<mdui:DisplayName xml:lang=\"{lang}\">{}</mdui:DisplayName>\n",
        esc(display.1)
    );
    w!(
        out,
        "\t\t\t\t\t<mdui:Description xml:lang=\"en\">{} login for staff &amp; students</mdui:Description>\n",
        esc(e.name.0)
    );
    if idp {
        w!(
            out,
            "\t\t\t\t\t<mdui:Description xml:lang=\"{lang}\">{} ({i})</mdui:Description>\n",
            esc(display.1)
        );
    }
    if rng.chance(70) {
        w!(
            out,
            "\t\t\t\t\t<mdui:InformationURL xml:lang=\"en\">https://www.{}/about/login</mdui:InformationURL>\n",
            e.domain
        );
    }
    w!(
        out,
        "\t\t\t\t\t<mdui:PrivacyStatementURL xml:lang=\"en\">https://www.{}/privacy/{}.html</mdui:PrivacyStatementURL>\n",
        e.domain,
        e.host
    );
    if idp || rng.chance(50) {
        w!(
            out,
            "\t\t\t\t\t<mdui:Logo height=\"{h}\" width=\"{h}\">https://www.{}/static/img/logo-{h}x{h}.png</mdui:Logo>\n",
            e.domain,
            h = [16, 60, 80, 120][rng.below(4)]
        );
    }
    w!(out, "\t\t\t\t</mdui:UIInfo>\n");
}

fn organization_and_contacts(rng: &mut Rng, out: &mut String, e: &Entity<'_>) {
    let lang = e.fed.2;
    let (en, local) = *e.name;
    w!(out, "\t\t<md:Organization>\n");
    w!(
        out,
        "\t\t\t<md:OrganizationName xml:lang=\"en\">{}</md:OrganizationName>\n",
        esc(en)
    );
    w!(
        out,
        "\t\t\t<md:OrganizationName xml:lang=\"{lang}\">{}</md:OrganizationName>\n",
        esc(local)
    );
    w!(
        out,
        "\t\t\t<md:OrganizationDisplayName xml:lang=\"en\">{}</md:OrganizationDisplayName>\n",
        esc(en)
    );
    let local_too = rng.chance(20);
    if local_too {
        w!(
            out,
            "\t\t\t<md:OrganizationDisplayName xml:lang=\"{lang}\">{}</md:OrganizationDisplayName>\n",
            esc(local)
        );
    }
    w!(
        out,
        "\t\t\t<md:OrganizationURL xml:lang=\"en\">https://www.{}/</md:OrganizationURL>\n",
        e.domain
    );
    if local_too {
        w!(
            out,
            "\t\t\t<md:OrganizationURL xml:lang=\"{lang}\">https://www.{}/{lang}/</md:OrganizationURL>\n",
            e.domain
        );
    }
    w!(out, "\t\t</md:Organization>\n");
    for kind in ["technical", "support"] {
        let given = rng.pick(GIVEN);
        let sur = rng.pick(SURNAMES);
        w!(out, "\t\t<md:ContactPerson contactType=\"{kind}\">\n");
        w!(out, "\t\t\t<md:GivenName>{given}</md:GivenName>\n");
        if kind == "technical" || rng.chance(50) {
            w!(out, "\t\t\t<md:SurName>{}</md:SurName>\n", esc(sur));
        }
        w!(
            out,
            "\t\t\t<md:EmailAddress>mailto:{}@{}</md:EmailAddress>\n",
            &kind[..4],
            e.domain
        );
        if rng.chance(15) {
            w!(
                out,
                "\t\t\t<md:TelephoneNumber>+{}</md:TelephoneNumber>\n",
                10_000_000_000u64 + rng.next_u64() % 89_999_999_999
            );
        }
        w!(out, "\t\t</md:ContactPerson>\n");
    }
    w!(
        out,
        "\t\t<md:ContactPerson contactType=\"other\" remd:contactType=\"http://refeds.org/metadata/contactType/security\">\n\t\t\t<md:GivenName>Security Team</md:GivenName>\n\t\t\t<md:EmailAddress>mailto:cert@{}</md:EmailAddress>\n\t\t</md:ContactPerson>\n",
        e.domain
    );
}

fn idp(rng: &mut Rng, out: &mut String, e: &Entity<'_>) {
    let host = format!("{}.{}", e.host, e.domain);
    w!(
        out,
        "\t<md:EntityDescriptor entityID=\"https://{host}/idp/shibboleth\">\n"
    );
    entity_extensions(rng, out, e, true);
    w!(
        out,
        "\t\t<md:IDPSSODescriptor protocolSupportEnumeration=\"{SAML2_PROTO} urn:oasis:names:tc:SAML:1.1:protocol urn:mace:shibboleth:1.0\">\n"
    );
    w!(out, "\t\t\t<md:Extensions>\n");
    w!(
        out,
        "\t\t\t\t<shibmd:Scope regexp=\"false\">{}</shibmd:Scope>\n",
        e.domain
    );
    if rng.chance(30) {
        w!(
            out,
            "\t\t\t\t<shibmd:Scope regexp=\"true\">^.+\\.{}$</shibmd:Scope>\n",
            e.domain.replace('.', "\\.")
        );
    }
    ui_info(rng, out, e, *e.name, true);
    w!(out, "\t\t\t\t<mdui:DiscoHints>\n");
    w!(
        out,
        "\t\t\t\t\t<mdui:IPHint>{}.{}.0.0/16</mdui:IPHint>\n",
        rng.range(1, 223),
        rng.below(256)
    );
    if rng.chance(30) {
        w!(
            out,
            "\t\t\t\t\t<mdui:IPHint>2001:db8:{:x}::/48</mdui:IPHint>\n",
            rng.below(65536)
        );
    }
    w!(
        out,
        "\t\t\t\t\t<mdui:DomainHint>{}</mdui:DomainHint>\n",
        e.domain
    );
    w!(out, "\t\t\t\t</mdui:DiscoHints>\n");
    w!(out, "\t\t\t</md:Extensions>\n");
    key_descriptor(rng, out, "\t\t\t", Some("signing"));
    key_descriptor(rng, out, "\t\t\t", Some("encryption"));
    w!(
        out,
        "\t\t\t<md:ArtifactResolutionService Binding=\"{B_SOAP}\" Location=\"https://{host}:8443/idp/profile/SAML2/SOAP/ArtifactResolution\" index=\"1\"/>\n"
    );
    w!(
        out,
        "\t\t\t<md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:transient</md:NameIDFormat>\n"
    );
    let sso: &[(&str, &str)] = if rng.chance(25) {
        &[
            (B_REDIRECT, "Redirect"),
            (B_POST, "POST"),
            (B_SIMPLESIGN, "POST-SimpleSign"),
        ]
    } else {
        &[(B_REDIRECT, "Redirect"), (B_POST, "POST")]
    };
    for &(b, p) in sso {
        w!(
            out,
            "\t\t\t<md:SingleSignOnService Binding=\"{b}\" Location=\"https://{host}/idp/profile/SAML2/{p}/SSO\"/>\n"
        );
    }
    w!(out, "\t\t</md:IDPSSODescriptor>\n");
    organization_and_contacts(rng, out, e);
    w!(out, "\t</md:EntityDescriptor>\n");
}

fn sp(rng: &mut Rng, out: &mut String, e: &Entity<'_>) {
    let host = format!("{}.{}", e.host, e.domain);
    let service = *rng.pick(SP_SERVICES);
    w!(
        out,
        "\t<md:EntityDescriptor entityID=\"https://{host}/shibboleth\">\n"
    );
    entity_extensions(rng, out, e, false);
    w!(
        out,
        "\t\t<md:SPSSODescriptor protocolSupportEnumeration=\"{SAML2_PROTO} urn:oasis:names:tc:SAML:1.1:protocol\" AuthnRequestsSigned=\"{}\" WantAssertionsSigned=\"true\">\n",
        rng.chance(50)
    );
    w!(out, "\t\t\t<md:Extensions>\n");
    w!(
        out,
        "\t\t\t\t<idpdisc:DiscoveryResponse Binding=\"urn:oasis:names:tc:SAML:profiles:SSO:idp-discovery-protocol\" Location=\"https://{host}/Shibboleth.sso/Login\" index=\"1\"/>\n"
    );
    if rng.chance(50) {
        w!(
            out,
            "\t\t\t\t<init:RequestInitiator Binding=\"urn:oasis:names:tc:SAML:profiles:SSO:request-init\" Location=\"https://{host}/Shibboleth.sso/Login\"/>\n"
        );
    }
    let display = (
        format!("{service} – {}", e.name.0),
        format!("{service} ({})", e.name.1),
    );
    ui_info(rng, out, e, (&display.0, &display.1), false);
    w!(out, "\t\t\t</md:Extensions>\n");
    if rng.chance(15) {
        key_descriptor(rng, out, "\t\t\t", Some("signing"));
        key_descriptor(rng, out, "\t\t\t", Some("encryption"));
    } else {
        key_descriptor(rng, out, "\t\t\t", None);
    }
    if rng.chance(30) {
        w!(
            out,
            "\t\t\t<md:SingleLogoutService Binding=\"{B_REDIRECT}\" Location=\"https://{host}/Shibboleth.sso/SLO/Redirect\"/>\n"
        );
    }
    if rng.chance(40) {
        w!(
            out,
            "\t\t\t<md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>\n"
        );
    }
    let default = rng.range(1, 3);
    for (k, (b, p)) in [
        (B_POST, "SAML2/POST"),
        (B_ARTIFACT, "SAML2/Artifact"),
        (B_SIMPLESIGN, "SAML2/POST-SimpleSign"),
    ]
    .into_iter()
    .enumerate()
    {
        let idx = k + 1;
        let d = if idx == default {
            " isDefault=\"true\""
        } else {
            ""
        };
        w!(
            out,
            "\t\t\t<md:AssertionConsumerService Binding=\"{b}\" Location=\"https://{host}/Shibboleth.sso/{p}\" index=\"{idx}\"{d}/>\n"
        );
    }
    w!(out, "\t\t\t<md:AttributeConsumingService index=\"1\">\n");
    w!(
        out,
        "\t\t\t\t<md:ServiceName xml:lang=\"en\">{}</md:ServiceName>\n",
        esc(&display.0)
    );

    let first = rng.below(REQUESTED.len());
    for k in 0..rng.range(2, 4) {
        let (friendly, oid) = REQUESTED[(first + k) % REQUESTED.len()];
        w!(
            out,
            "\t\t\t\t<md:RequestedAttribute FriendlyName=\"{friendly}\" Name=\"{oid}\" NameFormat=\"{URI_FORMAT}\" isRequired=\"{}\"/>\n",
            k == 0
        );
    }
    w!(out, "\t\t\t</md:AttributeConsumingService>\n");
    w!(out, "\t\t</md:SPSSODescriptor>\n");
    organization_and_contacts(rng, out, e);
    w!(out, "\t</md:EntityDescriptor>\n");
}

/// An unsigned eduGAIN-shaped aggregate of `n` entities (IdPs at even positions, SPs at odd
/// ones), deterministic in `n` and `seed`. The root carries `ID` [`ROOT_ID`].
pub fn generate(n: usize, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let mut out = String::with_capacity(n * 6700 + 4096);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<md:EntitiesDescriptor");
    for (p, uri) in NS {
        w!(out, " xmlns:{p}=\"{uri}\"");
    }
    let published = format!(
        "{}-{:02}-{:02}T{:02}:00:00Z",
        2026,
        rng.range(1, 12),
        rng.range(1, 28),
        rng.below(24)
    );
    w!(
        out,
        " Name=\"urn:mace:example.org:edugain-bench\" ID=\"{ROOT_ID}\" validUntil=\"2030-01-01T00:00:00Z\" cacheDuration=\"PT6H\" xsi:schemaLocation=\"urn:oasis:names:tc:SAML:2.0:metadata saml-schema-metadata-2.0.xsd\">\n"
    );
    w!(out, "\t<md:Extensions>\n");
    w!(
        out,
        "\t\t<mdrpi:PublicationInfo creationInstant=\"{published}\" publicationId=\"bench-{seed}-{n}\" publisher=\"http://edugain.org/\">\n"
    );
    w!(
        out,
        "\t\t\t<mdrpi:UsagePolicy xml:lang=\"en\">http://www.edugain.org/policy/metadata-tou_1_0.txt</mdrpi:UsagePolicy>\n"
    );
    w!(out, "\t\t</mdrpi:PublicationInfo>\n");
    w!(out, "\t</md:Extensions>\n");
    for idx in 0..n {
        let fed = rng.pick(FEDERATIONS);
        let name = rng.pick(NAMES);
        let word = rng.pick(WORDS);
        let entity = Entity {
            idx,
            host: if idx % 2 == 0 {
                "idp".to_owned()
            } else {
                format!("sp-{}", rng.pick(WORDS))
            },
            domain: format!("{word}{idx}.{}", fed.1),
            fed,
            name,
        };
        if idx % 2 == 0 {
            idp(&mut rng, &mut out, &entity);
        } else {
            sp(&mut rng, &mut out, &entity);
        }
    }
    out.push_str("</md:EntitiesDescriptor>\n");
    out
}
