//! Gives back the spare capacity of the model's vectors once an entity is read (issue 15: an
//! aggregate's eager model was 3.0x the document, 22 MB of it the unused room of `Vec`s grown
//! by pushing: a first push allocates four slots, and most lists hold one or two values of
//! 70 to 400 bytes). Shrinking is a `realloc` to a smaller size, done in place by the allocator
//! for all but the smallest blocks; nothing is copied element by element.
//!
//! Every `Vec` field of the model types is listed here: a field added to a type and not here
//! only costs memory, never correctness.

use crate::ext::{DiscoHints, Extensions, PublicationInfo, RegistrationInfo, UiInfo};
use crate::model::{
    Affiliation, AttributeConsumingService, AuthorityRole, ContactPerson, EntityDescriptor, IdpSso,
    KeyDescriptor, Organization, RequestedAttribute, Role, RoleCommon, SamlAttribute, SpSso,
};

/// A model value whose vectors can give back their spare capacity.
pub(crate) trait Compact {
    /// Shrinks every vector in `self` (nested values included) to its length.
    fn compact(&mut self);
}

/// Shrinks a list of plain values.
fn list<T>(v: &mut Vec<T>) {
    v.shrink_to_fit();
}

/// Shrinks a list and every value in it.
fn nested<T: Compact>(v: &mut Vec<T>) {
    v.shrink_to_fit();
    v.iter_mut().for_each(Compact::compact);
}

impl Compact for EntityDescriptor {
    fn compact(&mut self) {
        self.extensions.compact();
        nested(&mut self.roles);
        if let Some(a) = &mut self.affiliation {
            a.compact();
        }
        if let Some(o) = &mut self.organization {
            o.compact();
        }
        nested(&mut self.contacts);
        list(&mut self.additional_locations);
    }
}

impl Compact for Role {
    fn compact(&mut self) {
        match self {
            Role::Idp(r) => r.compact(),
            Role::Sp(r) => r.compact(),
            Role::AttributeAuthority(r) | Role::AuthnAuthority(r) | Role::Pdp(r) => r.compact(),
            Role::Other(_) => {}
        }
    }
}

impl Compact for RoleCommon {
    fn compact(&mut self) {
        list(&mut self.protocols);
        self.extensions.compact();
        nested(&mut self.keys);
        if let Some(o) = &mut self.organization {
            o.compact();
        }
        nested(&mut self.contacts);
        list(&mut self.artifact_resolution);
        list(&mut self.single_logout);
        list(&mut self.manage_name_id);
        list(&mut self.name_id_formats);
    }
}

impl Compact for IdpSso {
    fn compact(&mut self) {
        self.common.compact();
        list(&mut self.single_sign_on);
        list(&mut self.name_id_mapping);
        list(&mut self.assertion_id_request);
        list(&mut self.attribute_profiles);
        nested(&mut self.attributes);
    }
}

impl Compact for SpSso {
    fn compact(&mut self) {
        self.common.compact();
        list(&mut self.assertion_consumer);
        nested(&mut self.attribute_consuming);
    }
}

impl Compact for AuthorityRole {
    fn compact(&mut self) {
        self.common.compact();
        list(&mut self.services);
        list(&mut self.assertion_id_request);
        list(&mut self.attribute_profiles);
        nested(&mut self.attributes);
    }
}

impl Compact for KeyDescriptor {
    fn compact(&mut self) {
        list(&mut self.certificates);
        list(&mut self.key_names);
        list(&mut self.other_key_info);
        list(&mut self.encryption_methods);
    }
}

impl Compact for Organization {
    fn compact(&mut self) {
        list(&mut self.names);
        list(&mut self.display_names);
        list(&mut self.urls);
        if let Some(x) = &mut self.extensions {
            x.compact();
        }
    }
}

impl Compact for ContactPerson {
    fn compact(&mut self) {
        list(&mut self.emails);
        list(&mut self.phones);
        if let Some(x) = &mut self.extensions {
            x.compact();
        }
    }
}

impl Compact for SamlAttribute {
    fn compact(&mut self) {
        list(&mut self.values);
    }
}

impl Compact for RequestedAttribute {
    fn compact(&mut self) {
        self.attribute.compact();
    }
}

impl Compact for AttributeConsumingService {
    fn compact(&mut self) {
        list(&mut self.names);
        list(&mut self.descriptions);
        nested(&mut self.requested);
    }
}

impl Compact for Affiliation {
    fn compact(&mut self) {
        list(&mut self.members);
        nested(&mut self.keys);
        self.extensions.compact();
    }
}

impl Compact for Extensions {
    fn compact(&mut self) {
        if !self.present {
            return;
        }
        if let Some(u) = &mut self.ui_info {
            u.compact();
        }
        if let Some(d) = &mut self.disco_hints {
            d.compact();
        }
        if let Some(r) = &mut self.registration {
            r.compact();
        }
        if let Some(p) = &mut self.publication {
            p.compact();
        }
        nested(&mut self.entity_attributes);
        list(&mut self.scopes);
        list(&mut self.discovery_responses);
        list(&mut self.request_initiators);
        list(&mut self.digest_methods);
        list(&mut self.signing_methods);
        list(&mut self.dame_sync_locations);
        list(&mut self.unknown);
    }
}

impl Compact for UiInfo {
    fn compact(&mut self) {
        list(&mut self.display_names);
        list(&mut self.descriptions);
        list(&mut self.keywords);
        for k in &mut self.keywords {
            list(&mut k.value);
        }
        list(&mut self.logos);
        list(&mut self.information_urls);
        list(&mut self.privacy_urls);
    }
}

impl Compact for DiscoHints {
    fn compact(&mut self) {
        list(&mut self.ip_hints);
        list(&mut self.domain_hints);
        list(&mut self.geolocation_hints);
    }
}

impl Compact for RegistrationInfo {
    fn compact(&mut self) {
        list(&mut self.policies);
    }
}

impl Compact for PublicationInfo {
    fn compact(&mut self) {
        list(&mut self.usage_policies);
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{Metadata, Role};

    /// An entity read from a document holds no spare room in its lists (each had grown to
    /// four slots or more while being read).
    #[test]
    fn lists_of_a_read_entity_have_no_spare_capacity() {
        let xml = r#"<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata"
            xmlns:mdui="urn:oasis:names:tc:SAML:metadata:ui"
            xmlns:mdattr="urn:oasis:names:tc:SAML:metadata:attribute"
            xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"
            entityID="https://idp.example.org/idp">
          <Extensions><mdattr:EntityAttributes>
            <saml:Attribute Name="http://macedir.org/entity-category">
              <saml:AttributeValue>a:1</saml:AttributeValue>
              <saml:AttributeValue>a:2</saml:AttributeValue>
            </saml:Attribute></mdattr:EntityAttributes></Extensions>
          <IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
            <Extensions><mdui:UIInfo>
              <mdui:DisplayName xml:lang="en">IdP</mdui:DisplayName>
              <mdui:DisplayName xml:lang="de">IdP</mdui:DisplayName>
            </mdui:UIInfo></Extensions>
            <NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:transient</NameIDFormat>
            <SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
                Location="https://idp.example.org/sso"/>
          </IDPSSODescriptor>
          <ContactPerson contactType="technical"><EmailAddress>mailto:a@example.org</EmailAddress></ContactPerson>
        </EntityDescriptor>"#;
        let Ok(Metadata::Entity(e)) = crate::load::parse_unverified(xml.as_bytes()) else {
            panic!("the entity did not parse");
        };
        assert_eq!(e.roles.capacity(), e.roles.len());
        assert_eq!(e.contacts.capacity(), 1);
        assert_eq!(e.contacts[0].emails.capacity(), 1);
        let attrs = &e.extensions.entity_attributes;
        assert_eq!((attrs.len(), attrs.capacity()), (1, 1));
        assert_eq!((attrs[0].values.len(), attrs[0].values.capacity()), (2, 2));
        let Role::Idp(idp) = &e.roles[0] else {
            panic!("no IdP role");
        };
        assert_eq!(idp.single_sign_on.capacity(), 1);
        assert_eq!(idp.common.name_id_formats.capacity(), 1);
        let ui = idp.common.extensions.ui_info.as_ref().expect("UIInfo");
        assert_eq!(ui.display_names.capacity(), 2);
    }
}
