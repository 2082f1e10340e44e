//! Relationships: every IdP-SP pair the broker has connected (a bilateral federation, in the
//! GÉANT-TrustBroker papers' terms). The broker records a pair when both sides confirmed the
//! exchange; when an entity's metadata changes it plans a re-download trigger to each of its
//! peers ([`crate::broker::Broker::update_entity`]); and it can publish an entity's peers as one
//! signed aggregate, a dynamic virtual federation ([`Relationships::federation`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use saml_core::dsig::SignOptions;
use saml_metadata::model::{EntitiesDescriptor, EntityDescriptor};

use crate::error::Error;
use crate::registry::Registry;

/// Most pairs remembered (bounded memory; a new pair beyond it is not recorded, which only
/// means no re-download trigger for it later).
pub const MAX_PAIRS: usize = 1_000_000;

/// The established IdP-SP pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Relationships {
    /// (IdP, SP) -> when established.
    pairs: BTreeMap<(String, String), SystemTime>,
}

impl Relationships {
    /// No pairs.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of pairs.
    #[must_use]
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there is none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Records the pair at `now`; whether it is new.
    pub fn record(&mut self, idp: &str, sp: &str, now: SystemTime) -> bool {
        let k = (idp.to_owned(), sp.to_owned());
        if self.pairs.contains_key(&k) {
            return false;
        }
        if self.pairs.len() >= MAX_PAIRS {
            return false;
        }
        self.pairs.insert(k, now);
        true
    }

    /// Whether `idp` and `sp` have exchanged metadata.
    #[must_use]
    pub fn contains(&self, idp: &str, sp: &str) -> bool {
        self.pairs.contains_key(&(idp.to_owned(), sp.to_owned()))
    }

    /// When the pair was established.
    #[must_use]
    pub fn since(&self, idp: &str, sp: &str) -> Option<SystemTime> {
        self.pairs.get(&(idp.to_owned(), sp.to_owned())).copied()
    }

    /// Every peer of `entity` (its SPs if it is an IdP, its IdPs if an SP), sorted.
    #[must_use]
    pub fn peers_of(&self, entity: &str) -> Vec<String> {
        let mut out = BTreeSet::new();
        for (idp, sp) in self.pairs.keys() {
            if idp == entity {
                out.insert(sp.clone());
            }
            if sp == entity {
                out.insert(idp.clone());
            }
        }
        out.into_iter().collect()
    }

    /// Forgets the pair (after a rollback or on request); whether it was there.
    pub fn remove(&mut self, idp: &str, sp: &str) -> bool {
        self.pairs
            .remove(&(idp.to_owned(), sp.to_owned()))
            .is_some()
    }

    /// Forgets every pair of `entity` (it was deleted); how many.
    pub fn remove_entity(&mut self, entity: &str) -> usize {
        let before = self.pairs.len();
        self.pairs.retain(|(i, s), _| i != entity && s != entity);
        before - self.pairs.len()
    }

    /// `entity` and its registered peers as one aggregate named `name`, valid until
    /// `valid_until`, signed with the registry's key: the virtual federation of that entity.
    /// Peers no longer registered are left out.
    pub fn federation(
        &self,
        entity: &str,
        registry: &Registry,
        name: &str,
        valid_until: SystemTime,
    ) -> Result<Vec<u8>, Error> {
        let mut members: Vec<EntityDescriptor> = Vec::new();
        for id in std::iter::once(entity.to_owned()).chain(self.peers_of(entity)) {
            if let Some(r) = registry.get(&id) {
                members.push((*r.entity).clone());
            }
        }
        let agg = EntitiesDescriptor::combine(name, members, Some(valid_until))?;
        Ok(agg.sign(registry.key(), &SignOptions::default())?)
    }
}
