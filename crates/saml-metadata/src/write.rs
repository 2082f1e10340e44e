//! Writing the model back to XML (SAML Metadata 2.0 §2, element order as in the schema), and
//! signing on write.
//!
//! The output is clean, namespaced XML: fixed, conventional prefixes (`md`, `ds`, `saml`,
//! `mdui`, `mdrpi`, `mdattr`, `shibmd`, `idpdisc`, `init`, `alg`, `remd`, `dame`), each declared
//! once on the root and only when used, two-space indentation, text and attribute values
//! escaped. Unknown extensions and foreign roles ([`RawXml`]) are written as they were read
//! (they are self-contained). For every value the parser produces, `parse(write(x)) == x`.
//!
//! Writing checks what the parser would refuse (an entity without a role, an Organization
//! without names, an SP without ACS names, an empty protocol list, a [`RawXml`] that does not
//! read back on its own...), so a written document always reads back.

use base64::Engine as _;
use saml_core::dsig::{self, DSIG_NS, SignOptions, SigningKey};
use saml_core::xml::{Event, Limits, Reader};
pub(crate) use saml_core::xml::{escape_attr, escape_text};

use crate::error::Error;
use crate::ext::*;
use crate::model::*;
use crate::ns::{MD_NS, REMD_NS, SAML_NS};
use crate::time::{format_datetime_exact, format_duration};

/// The prefixes the writer uses, with their namespaces.
const PREFIXES: [(&str, &str); 12] = [
    ("md", MD_NS),
    ("ds", DSIG_NS),
    ("saml", SAML_NS),
    ("mdui", MDUI_NS),
    ("mdrpi", MDRPI_NS),
    ("mdattr", MDATTR_NS),
    ("shibmd", SHIBMD_NS),
    ("idpdisc", IDPDISC_NS),
    ("init", INIT_NS),
    ("alg", ALG_NS),
    ("remd", REMD_NS),
    ("dame", DAME_NS),
];

#[derive(Clone, Copy)]
enum P {
    Md = 0,
    Ds,
    Saml,
    Mdui,
    Mdrpi,
    Mdattr,
    Shibmd,
    Idpdisc,
    Init,
    Alg,
    Remd,
    Dame,
}

impl P {
    fn prefix(self) -> &'static str {
        PREFIXES[self as usize].0
    }
}

fn refuse(element: &str, message: impl Into<String>) -> Error {
    Error::Unwritable {
        element: element.to_owned(),
        message: message.into(),
    }
}

/// The writer: an output buffer, the depth for indentation and the prefixes used.
struct W {
    out: String,
    depth: usize,
    used: [bool; PREFIXES.len()],
    /// Whether the open start tag is still unterminated (`<x a="b"`).
    open: bool,
}

impl W {
    fn new() -> Self {
        W {
            out: String::new(),
            depth: 0,
            used: [false; PREFIXES.len()],
            open: false,
        }
    }

    fn finish_tag(&mut self) {
        if self.open {
            self.out.push('>');
            self.open = false;
        }
    }

    fn indent(&mut self) {
        self.out.push('\n');
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
    }

    fn start(&mut self, p: P, local: &str) {
        self.finish_tag();
        if !self.out.is_empty() {
            self.indent();
        }
        self.used[p as usize] = true;
        self.out.push('<');
        self.out.push_str(p.prefix());
        self.out.push(':');
        self.out.push_str(local);
        self.open = true;
        self.depth += 1;
    }

    fn attr(&mut self, name: &str, value: &str) {
        self.out.push(' ');
        self.out.push_str(name);
        self.out.push_str("=\"");
        self.out.push_str(&escape_attr(value));
        self.out.push('"');
    }

    fn attr_p(&mut self, p: P, local: &str, value: &str) {
        self.used[p as usize] = true;
        self.attr(&format!("{}:{local}", p.prefix()), value);
    }

    fn attr_opt(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.attr(name, v);
        }
    }

    fn attr_bool(&mut self, name: &str, value: Option<bool>) {
        if let Some(v) = value {
            self.attr(name, if v { "true" } else { "false" });
        }
    }

    fn lang(&mut self, lang: &str) {
        self.attr("xml:lang", lang);
    }

    /// Closes the element: `/>` when nothing was written inside.
    fn end(&mut self, p: P, local: &str) {
        self.depth -= 1;
        if self.open {
            self.out.push_str("/>");
            self.open = false;
        } else {
            self.indent();
            self.out.push_str("</");
            self.out.push_str(p.prefix());
            self.out.push(':');
            self.out.push_str(local);
            self.out.push('>');
        }
    }

    /// Ends the start tag, writes `text` and the end tag.
    fn body(&mut self, p: P, local: &str, text: &str) {
        self.finish_tag();
        self.out.push_str(&escape_text(text));
        self.depth -= 1;
        self.out.push_str("</");
        self.out.push_str(p.prefix());
        self.out.push(':');
        self.out.push_str(local);
        self.out.push('>');
    }

    /// A whole element with text content.
    fn text_elem(&mut self, p: P, local: &str, text: &str) {
        self.start(p, local);
        self.body(p, local, text);
    }

    fn localized(&mut self, p: P, local: &str, l: &Localized<String>) {
        self.start(p, local);
        self.lang(&l.lang);
        self.body(p, local, &l.value);
    }

    /// Writes a kept element as it is, once [`check_raw`] has found that it reads back.
    fn raw(&mut self, r: &RawXml) -> Result<(), Error> {
        check_raw(r)?;
        self.finish_tag();
        self.indent();
        self.out.push_str(&r.xml);
        Ok(())
    }

    /// The namespace declarations of the prefixes used.
    fn declarations(&self) -> String {
        let mut s = String::new();
        for (i, (p, uri)) in PREFIXES.iter().enumerate() {
            if self.used[i] {
                s.push_str(&format!(" xmlns:{p}=\"{uri}\""));
            }
        }
        s
    }
}

impl Metadata {
    /// The document as XML (UTF-8, with an XML declaration).
    pub fn to_xml(&self) -> Result<String, Error> {
        match self {
            Metadata::Entity(e) => e.to_xml(),
            Metadata::Entities(g) => g.to_xml(),
        }
    }

    /// Writes the document and signs it (enveloped, exclusive c14n, over the root) with `key`.
    /// The root gets an `ID` for the Reference when it has none.
    pub fn sign(&self, key: &SigningKey, opts: &SignOptions) -> Result<Vec<u8>, Error> {
        match self {
            Metadata::Entity(e) => e.sign(key, opts),
            Metadata::Entities(g) => g.sign(key, opts),
        }
    }
}

/// A [`RawXml`] is written verbatim, so it must read on its own, with the same hardened reader
/// and default limits as the rest of the document, as one element named `r.name`: otherwise the
/// written document would not read back (issue 13 item 9; a `RawXml` that `parse` produced
/// always passes).
fn check_raw(r: &RawXml) -> Result<(), Error> {
    let name = format!("{{{}}}{}", r.name.0, r.name.1);
    let bad = |m: String| refuse(&name, m);
    let mut reader = Reader::new(r.xml.as_bytes(), Limits::default())
        .map_err(|e| bad(format!("kept element does not read back: {e}")))?;
    let mut first = true;
    while let Some(ev) = reader
        .next()
        .map_err(|e| bad(format!("kept element does not read back: {e}")))?
    {
        if first {
            first = false;
            let Event::Start(s) = &ev else {
                return Err(bad("kept element does not start with its start tag".into()));
            };
            if s.namespace != r.name.0 || s.name.local != r.name.1 {
                return Err(bad(format!(
                    "kept element reads as {{{}}}{}",
                    s.namespace, s.name.local
                )));
            }
        }
    }
    Ok(())
}

/// The written elements as a document: the XML declaration, the namespace declarations on the
/// root, a final newline. Done in the writer's buffer, which is then shrunk to its length: a
/// copy (`format!`) held the buffer, grown by doubling, and a second one growing beside it,
/// about four times the output at once (issue 15: the peak of `samlmd select`).
///
/// A value holding a character XML does not allow (a C0 control but TAB, LF and CR; U+FFFE,
/// U+FFFF), which no escape can carry, is refused: the document would not read back, ours
/// included (review W13).
fn document(w: W) -> Result<String, Error> {
    const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    let not_xml = |c: char| matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}');
    if let Some(c) = w.out.chars().find(|&c| not_xml(c)) {
        return Err(refuse(
            "(document)",
            format!("U+{:04X} is not an XML character", u32::from(c)),
        ));
    }
    let decls = w.declarations();
    let mut out = w.out;
    // The root's start tag begins the buffer: `<md:EntitiesDescriptor` or `<md:EntityDescriptor`.
    let at = out.find([' ', '>', '/']).unwrap_or(out.len());
    out.reserve_exact(XML_DECL.len() + decls.len() + 1);
    out.insert_str(at, &decls);
    out.insert_str(0, XML_DECL);
    out.push('\n');
    out.shrink_to_fit();
    Ok(out)
}

fn signed(xml: String, key: &SigningKey, opts: &SignOptions) -> Result<Vec<u8>, Error> {
    Ok(dsig::sign(xml.as_bytes(), key, opts)?)
}

impl EntitiesDescriptor {
    /// This aggregate as a standalone document.
    pub fn to_xml(&self) -> Result<String, Error> {
        let mut w = W::new();
        entities(&mut w, self)?;
        document(w)
    }

    /// Writes and signs this aggregate (see [`Metadata::sign`]).
    pub fn sign(&self, key: &SigningKey, opts: &SignOptions) -> Result<Vec<u8>, Error> {
        if self.id.is_some() {
            return signed(self.to_xml()?, key, opts);
        }
        let mut with_id = self.clone();
        with_id.id = Some(new_id(self.name.as_deref().unwrap_or("entities")));
        signed(with_id.to_xml()?, key, opts)
    }
}

impl EntityDescriptor {
    /// This entity as a standalone document.
    pub fn to_xml(&self) -> Result<String, Error> {
        let mut w = W::new();
        entity(&mut w, self)?;
        document(w)
    }

    /// Writes and signs this entity (see [`Metadata::sign`]).
    pub fn sign(&self, key: &SigningKey, opts: &SignOptions) -> Result<Vec<u8>, Error> {
        if self.id.is_some() {
            return signed(self.to_xml()?, key, opts);
        }
        let mut with_id = self.clone();
        with_id.id = Some(new_id(&self.entity_id));
        signed(with_id.to_xml()?, key, opts)
    }
}

/// A deterministic `xs:ID` for a document that has none: `_` and the SHA-1 of a seed.
fn new_id(seed: &str) -> String {
    format!("_{}", sha1_hex(seed))
}

fn common_attrs(
    w: &mut W,
    id: &Option<String>,
    valid_until: &Option<std::time::SystemTime>,
    cache: &Option<std::time::Duration>,
) {
    w.attr_opt("ID", id.as_deref());
    if let Some(t) = valid_until {
        w.attr("validUntil", &format_datetime_exact(*t));
    }
    if let Some(d) = cache {
        w.attr("cacheDuration", &format_duration(*d));
    }
}

fn entities(w: &mut W, g: &EntitiesDescriptor) -> Result<(), Error> {
    if g.children.is_empty() {
        return Err(refuse(
            "EntitiesDescriptor",
            "an EntitiesDescriptor needs at least one entity or group (SAML Metadata §2.3.1)",
        ));
    }
    w.start(P::Md, "EntitiesDescriptor");
    common_attrs(w, &g.id, &g.valid_until, &g.cache_duration);
    w.attr_opt("Name", g.name.as_deref());
    extensions(w, &g.extensions)?;
    for c in &g.children {
        match c {
            EntitiesChild::Entity(e) => entity(w, e)?,
            EntitiesChild::Group(g) => entities(w, g)?,
        }
    }
    w.end(P::Md, "EntitiesDescriptor");
    Ok(())
}

fn entity(w: &mut W, e: &EntityDescriptor) -> Result<(), Error> {
    if e.entity_id.is_empty() || e.entity_id.len() > 1024 {
        return Err(refuse(
            "EntityDescriptor",
            "entityID must have 1 to 1024 characters (SAML Metadata §2.3.2)",
        ));
    }
    if e.roles.is_empty() && e.affiliation.is_none() {
        return Err(refuse(
            "EntityDescriptor",
            format!(
                "{}: an EntityDescriptor needs at least one role or an AffiliationDescriptor",
                e.entity_id
            ),
        ));
    }
    w.start(P::Md, "EntityDescriptor");
    w.attr("entityID", &e.entity_id);
    common_attrs(w, &e.id, &e.valid_until, &e.cache_duration);
    extensions(w, &e.extensions)?;
    for r in &e.roles {
        role(w, r)?;
    }
    if let Some(a) = &e.affiliation {
        affiliation(w, a)?;
    }
    if let Some(o) = &e.organization {
        organization(w, o)?;
    }
    for c in &e.contacts {
        contact(w, c)?;
    }
    for l in &e.additional_locations {
        w.start(P::Md, "AdditionalMetadataLocation");
        w.attr("namespace", &l.namespace);
        w.body(P::Md, "AdditionalMetadataLocation", l.location.as_str());
    }
    w.end(P::Md, "EntityDescriptor");
    Ok(())
}

fn role(w: &mut W, r: &Role) -> Result<(), Error> {
    match r {
        Role::Idp(i) => {
            w.start(P::Md, "IDPSSODescriptor");
            role_attrs(w, "IDPSSODescriptor", &i.common)?;
            w.attr_bool("WantAuthnRequestsSigned", i.want_authn_requests_signed);
            role_head(w, &i.common)?;
            sso_parts(w, &i.common);
            endpoints(w, "SingleSignOnService", &i.single_sign_on);
            endpoints(w, "NameIDMappingService", &i.name_id_mapping);
            endpoints(w, "AssertionIDRequestService", &i.assertion_id_request);
            for p in &i.attribute_profiles {
                w.text_elem(P::Md, "AttributeProfile", p);
            }
            for a in &i.attributes {
                attribute(w, P::Saml, "Attribute", a, None);
            }
            w.end(P::Md, "IDPSSODescriptor");
        }
        Role::Sp(s) => {
            w.start(P::Md, "SPSSODescriptor");
            role_attrs(w, "SPSSODescriptor", &s.common)?;
            w.attr_bool("AuthnRequestsSigned", s.authn_requests_signed);
            w.attr_bool("WantAssertionsSigned", s.want_assertions_signed);
            role_head(w, &s.common)?;
            sso_parts(w, &s.common);
            for a in &s.assertion_consumer {
                indexed(w, P::Md, "AssertionConsumerService", a);
            }
            for a in &s.attribute_consuming {
                attribute_consuming(w, a)?;
            }
            w.end(P::Md, "SPSSODescriptor");
        }
        Role::AttributeAuthority(a) => {
            authority(w, "AttributeAuthorityDescriptor", "AttributeService", a)?
        }
        Role::AuthnAuthority(a) => {
            authority(w, "AuthnAuthorityDescriptor", "AuthnQueryService", a)?
        }
        Role::Pdp(a) => authority(w, "PDPDescriptor", "AuthzService", a)?,
        Role::Other(raw) => w.raw(raw)?,
    }
    Ok(())
}

fn role_attrs(w: &mut W, element: &str, c: &RoleCommon) -> Result<(), Error> {
    if c.protocols.is_empty() || c.protocols.iter().any(|p| p.is_empty() || p.contains(' ')) {
        return Err(refuse(
            element,
            "protocolSupportEnumeration needs one or more URIs without spaces",
        ));
    }
    common_attrs(w, &c.id, &c.valid_until, &c.cache_duration);
    w.attr("protocolSupportEnumeration", &c.protocols.join(" "));
    w.attr_opt("errorURL", c.error_url.as_ref().map(Uri::as_str));
    Ok(())
}

/// Extensions, KeyDescriptor, Organization, ContactPerson (RoleDescriptorType).
fn role_head(w: &mut W, c: &RoleCommon) -> Result<(), Error> {
    extensions(w, &c.extensions)?;
    for k in &c.keys {
        key_descriptor(w, k)?;
    }
    if let Some(o) = &c.organization {
        organization(w, o)?;
    }
    for p in &c.contacts {
        contact(w, p)?;
    }
    Ok(())
}

/// ArtifactResolutionService, SingleLogoutService, ManageNameIDService, NameIDFormat
/// (SSODescriptorType).
fn sso_parts(w: &mut W, c: &RoleCommon) {
    for a in &c.artifact_resolution {
        indexed(w, P::Md, "ArtifactResolutionService", a);
    }
    endpoints(w, "SingleLogoutService", &c.single_logout);
    endpoints(w, "ManageNameIDService", &c.manage_name_id);
    for f in &c.name_id_formats {
        w.text_elem(P::Md, "NameIDFormat", f);
    }
}

fn authority(w: &mut W, element: &str, service: &str, a: &AuthorityRole) -> Result<(), Error> {
    w.start(P::Md, element);
    role_attrs(w, element, &a.common)?;
    role_head(w, &a.common)?;
    let c = &a.common;
    // Not in these roles' schema, but kept if a document had them.
    for x in &c.artifact_resolution {
        indexed(w, P::Md, "ArtifactResolutionService", x);
    }
    endpoints(w, "SingleLogoutService", &c.single_logout);
    endpoints(w, "ManageNameIDService", &c.manage_name_id);
    endpoints(w, service, &a.services);
    endpoints(w, "AssertionIDRequestService", &a.assertion_id_request);
    for f in &c.name_id_formats {
        w.text_elem(P::Md, "NameIDFormat", f);
    }
    for p in &a.attribute_profiles {
        w.text_elem(P::Md, "AttributeProfile", p);
    }
    for x in &a.attributes {
        attribute(w, P::Saml, "Attribute", x, None);
    }
    w.end(P::Md, element);
    Ok(())
}

fn endpoint_attrs(w: &mut W, e: &Endpoint) {
    w.attr("Binding", e.binding.uri());
    w.attr("Location", e.location.as_str());
    w.attr_opt(
        "ResponseLocation",
        e.response_location.as_ref().map(Uri::as_str),
    );
}

fn endpoints(w: &mut W, local: &str, list: &[Endpoint]) {
    for e in list {
        endpoint(w, P::Md, local, e);
    }
}

fn endpoint(w: &mut W, p: P, local: &str, e: &Endpoint) {
    w.start(p, local);
    endpoint_attrs(w, e);
    w.end(p, local);
}

fn indexed(w: &mut W, p: P, local: &str, e: &IndexedEndpoint) {
    w.start(p, local);
    endpoint_attrs(w, &e.endpoint);
    w.attr("index", &e.index.to_string());
    w.attr_bool("isDefault", e.is_default);
    w.end(p, local);
}

fn key_descriptor(w: &mut W, k: &KeyDescriptor) -> Result<(), Error> {
    if k.certificates.is_empty() && k.key_names.is_empty() && k.other_key_info.is_empty() {
        // `ds:KeyInfo` needs a child (its schema), and a KeyDescriptor without a key names
        // none: never published as `<ds:KeyInfo/>` (review W2).
        return Err(refuse("KeyDescriptor", "a KeyDescriptor without a key"));
    }
    w.start(P::Md, "KeyDescriptor");
    match k.key_use {
        KeyUse::Signing => w.attr("use", "signing"),
        KeyUse::Encryption => w.attr("use", "encryption"),
        KeyUse::Both => {}
    }
    w.start(P::Ds, "KeyInfo");
    for n in &k.key_names {
        w.text_elem(P::Ds, "KeyName", n);
    }
    if !k.certificates.is_empty() {
        w.start(P::Ds, "X509Data");
        for der in &k.certificates {
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            w.text_elem(P::Ds, "X509Certificate", &b64);
        }
        w.end(P::Ds, "X509Data");
    }
    for r in &k.other_key_info {
        w.raw(r)?;
    }
    w.end(P::Ds, "KeyInfo");
    for m in &k.encryption_methods {
        w.start(P::Md, "EncryptionMethod");
        w.attr("Algorithm", &m.algorithm);
        for r in &m.content {
            w.raw(r)?;
        }
        w.end(P::Md, "EncryptionMethod");
    }
    w.end(P::Md, "KeyDescriptor");
    Ok(())
}

fn organization(w: &mut W, o: &Organization) -> Result<(), Error> {
    if o.names.is_empty() || o.display_names.is_empty() || o.urls.is_empty() {
        return Err(refuse(
            "Organization",
            "an Organization needs OrganizationName, OrganizationDisplayName and OrganizationURL",
        ));
    }
    w.start(P::Md, "Organization");
    if let Some(x) = &o.extensions {
        extensions(w, x)?;
    }
    for n in &o.names {
        w.localized(P::Md, "OrganizationName", n);
    }
    for n in &o.display_names {
        w.localized(P::Md, "OrganizationDisplayName", n);
    }
    for n in &o.urls {
        w.localized(P::Md, "OrganizationURL", n);
    }
    w.end(P::Md, "Organization");
    Ok(())
}

fn contact(w: &mut W, c: &ContactPerson) -> Result<(), Error> {
    w.start(P::Md, "ContactPerson");
    w.attr(
        "contactType",
        match c.contact_type {
            ContactType::Technical => "technical",
            ContactType::Support => "support",
            ContactType::Administrative => "administrative",
            ContactType::Billing => "billing",
            ContactType::Other => "other",
        },
    );
    if let Some(t) = &c.refeds_type {
        w.attr_p(P::Remd, "contactType", t);
    }
    if let Some(x) = &c.extensions {
        extensions(w, x)?;
    }
    if let Some(v) = &c.company {
        w.text_elem(P::Md, "Company", v);
    }
    if let Some(v) = &c.given_name {
        w.text_elem(P::Md, "GivenName", v);
    }
    if let Some(v) = &c.sur_name {
        w.text_elem(P::Md, "SurName", v);
    }
    for v in &c.emails {
        w.text_elem(P::Md, "EmailAddress", v);
    }
    for v in &c.phones {
        w.text_elem(P::Md, "TelephoneNumber", v);
    }
    w.end(P::Md, "ContactPerson");
    Ok(())
}

fn attribute(w: &mut W, p: P, local: &str, a: &SamlAttribute, required: Option<bool>) {
    w.start(p, local);
    w.attr("Name", &a.name);
    w.attr_opt("NameFormat", a.name_format.as_deref());
    w.attr_opt("FriendlyName", a.friendly_name.as_deref());
    if required == Some(true) {
        w.attr("isRequired", "true");
    }
    for v in &a.values {
        w.text_elem(P::Saml, "AttributeValue", v);
    }
    w.end(p, local);
}

fn attribute_consuming(w: &mut W, s: &AttributeConsumingService) -> Result<(), Error> {
    if s.names.is_empty() {
        return Err(refuse(
            "AttributeConsumingService",
            "an AttributeConsumingService needs a ServiceName",
        ));
    }
    w.start(P::Md, "AttributeConsumingService");
    w.attr("index", &s.index.to_string());
    w.attr_bool("isDefault", s.is_default);
    for n in &s.names {
        w.localized(P::Md, "ServiceName", n);
    }
    for n in &s.descriptions {
        w.localized(P::Md, "ServiceDescription", n);
    }
    for r in &s.requested {
        attribute(
            w,
            P::Md,
            "RequestedAttribute",
            &r.attribute,
            Some(r.is_required),
        );
    }
    w.end(P::Md, "AttributeConsumingService");
    Ok(())
}

fn affiliation(w: &mut W, a: &Affiliation) -> Result<(), Error> {
    if a.members.is_empty() {
        return Err(refuse(
            "AffiliationDescriptor",
            "an AffiliationDescriptor needs members",
        ));
    }
    w.start(P::Md, "AffiliationDescriptor");
    w.attr("affiliationOwnerID", &a.owner);
    extensions(w, &a.extensions)?;
    for m in &a.members {
        w.text_elem(P::Md, "AffiliateMember", m);
    }
    for k in &a.keys {
        key_descriptor(w, k)?;
    }
    w.end(P::Md, "AffiliationDescriptor");
    Ok(())
}

impl Extensions {
    /// Whether there is nothing to write (no typed extension and no unknown one).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ui_info.is_none()
            && self.disco_hints.is_none()
            && self.registration.is_none()
            && self.publication.is_none()
            && self.entity_attributes.is_empty()
            && self.scopes.is_empty()
            && self.discovery_responses.is_empty()
            && self.request_initiators.is_empty()
            && self.digest_methods.is_empty()
            && self.signing_methods.is_empty()
            && self.dame_sync_locations.is_empty()
            && self.unknown.is_empty()
    }
}

/// `md:Extensions`, written when it was present or has content. Order: the typed extensions
/// (mdrpi, mdattr, shibmd, mdui, idpdisc, init, alg, DAME), then the unknown ones.
fn extensions(w: &mut W, x: &Extensions) -> Result<(), Error> {
    if !x.present && x.is_empty() {
        return Ok(());
    }
    w.start(P::Md, "Extensions");
    if let Some(r) = &x.registration {
        w.start(P::Mdrpi, "RegistrationInfo");
        w.attr("registrationAuthority", &r.authority);
        if let Some(t) = r.instant {
            w.attr("registrationInstant", &format_datetime_exact(t));
        }
        for p in &r.policies {
            w.localized(P::Mdrpi, "RegistrationPolicy", p);
        }
        w.end(P::Mdrpi, "RegistrationInfo");
    }
    if let Some(p) = &x.publication {
        w.start(P::Mdrpi, "PublicationInfo");
        w.attr("publisher", &p.publisher);
        if let Some(t) = p.creation_instant {
            w.attr("creationInstant", &format_datetime_exact(t));
        }
        w.attr_opt("publicationId", p.publication_id.as_deref());
        for u in &p.usage_policies {
            w.localized(P::Mdrpi, "UsagePolicy", u);
        }
        w.end(P::Mdrpi, "PublicationInfo");
    }
    if !x.entity_attributes.is_empty() {
        w.start(P::Mdattr, "EntityAttributes");
        for a in &x.entity_attributes {
            attribute(w, P::Saml, "Attribute", a, None);
        }
        w.end(P::Mdattr, "EntityAttributes");
    }
    for s in &x.scopes {
        w.start(P::Shibmd, "Scope");
        w.attr("regexp", if s.regexp { "true" } else { "false" });
        w.body(P::Shibmd, "Scope", &s.value);
    }
    if let Some(u) = &x.ui_info {
        ui_info(w, u);
    }
    if let Some(d) = &x.disco_hints {
        w.start(P::Mdui, "DiscoHints");
        for v in &d.ip_hints {
            w.text_elem(P::Mdui, "IPHint", v);
        }
        for v in &d.domain_hints {
            w.text_elem(P::Mdui, "DomainHint", v);
        }
        for v in &d.geolocation_hints {
            w.text_elem(P::Mdui, "GeolocationHint", v);
        }
        w.end(P::Mdui, "DiscoHints");
    }
    for d in &x.discovery_responses {
        indexed(w, P::Idpdisc, "DiscoveryResponse", d);
    }
    for r in &x.request_initiators {
        endpoint(w, P::Init, "RequestInitiator", r);
    }
    for (local, list) in [
        ("DigestMethod", &x.digest_methods),
        ("SigningMethod", &x.signing_methods),
    ] {
        for a in list {
            w.start(P::Alg, local);
            w.attr("Algorithm", &a.algorithm);
            if let Some(n) = a.min_key_size {
                w.attr("MinKeySize", &n.to_string());
            }
            if let Some(n) = a.max_key_size {
                w.attr("MaxKeySize", &n.to_string());
            }
            w.end(P::Alg, local);
        }
    }
    if !x.dame_sync_locations.is_empty() {
        w.start(P::Dame, "DAMEInfo");
        for l in &x.dame_sync_locations {
            w.text_elem(P::Dame, "MetadataSyncLocation", l);
        }
        w.end(P::Dame, "DAMEInfo");
    }
    for r in &x.unknown {
        w.raw(r)?;
    }
    w.end(P::Md, "Extensions");
    Ok(())
}

fn ui_info(w: &mut W, u: &UiInfo) {
    w.start(P::Mdui, "UIInfo");
    for v in &u.display_names {
        w.localized(P::Mdui, "DisplayName", v);
    }
    for v in &u.descriptions {
        w.localized(P::Mdui, "Description", v);
    }
    for k in &u.keywords {
        let joined = k.value.join(" ");
        w.localized(
            P::Mdui,
            "Keywords",
            &Localized {
                lang: k.lang.clone(),
                value: joined,
            },
        );
    }
    for l in &u.logos {
        w.start(P::Mdui, "Logo");
        w.attr("height", &l.height.to_string());
        w.attr("width", &l.width.to_string());
        if let Some(lang) = &l.lang {
            w.lang(lang);
        }
        w.body(P::Mdui, "Logo", &l.url);
    }
    for v in &u.information_urls {
        w.localized(P::Mdui, "InformationURL", v);
    }
    for v in &u.privacy_urls {
        w.localized(P::Mdui, "PrivacyStatementURL", v);
    }
    w.end(P::Mdui, "UIInfo");
}
