//! Arbitrary bytes into saml-metadata's model builder (`parse_unverified`, the same code path
//! `load` runs on verified content) and into `split` with an untrusted key: errors are fine,
//! panics are not. Whatever parses must report consistent entity counts, and whatever the writer
//! accepts must read back to the same model (`parse(write(x)) == x`).
//!
//! Then the input is signed over its root by the trusted test key and loaded three ways
//! (`load`, `load_lazy`, `split_report`): this gets arbitrary content, signatures nested in
//! it included, past the root signature into the nested-signature checks
//! (`saml_metadata::nested_signatures`). The three must agree on success and on which
//! entities they refuse, index and leave out as expired. `load` runs twice, on one thread and
//! with its entities modelled on several threads (`parallel_model`, forced by
//! `parallel_min_size = Some(0)`): the two must give the same model, or the same error; so
//! must `load_owned` (the model built after
//! verification, last child first, the document given back as it goes), on one thread and on
//! several. A selection of every entity (`selection::write_selection`) must read back as
//! `load`'s entities, a selection by a filter of what the groups declare must pick what the
//! eager model picks, and the lazy index must cut each entity as `split` does.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use saml_core::dsig::{self, SignOptions, SigningKey, TrustedKeys};
use saml_metadata::load::{self, Policy, parse_unverified};
use saml_metadata::model::Metadata;

fn fixture() -> &'static (SigningKey, TrustedKeys) {
    static F: OnceLock<(SigningKey, TrustedKeys)> = OnceLock::new();
    F.get_or_init(|| {
        let key = saml_fuzz::signing_key().expect("test key");
        let keys = saml_fuzz::trusted_keys(&key).expect("trusted keys");
        (key, keys)
    })
}

fn signed_paths(data: &[u8]) {
    let (key, keys) = fixture();
    let Ok(signed) = dsig::sign(data, key, &SignOptions::default()) else {
        return;
    };
    let policy = Policy::new(
        keys.clone(),
        UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    );
    let refused = |r: &[saml_metadata::nested_signatures::RefusedEntity]| {
        let mut v: Vec<String> = r.iter().map(|r| r.entity_id.clone()).collect();
        v.sort();
        v
    };
    let eager_one = {
        let mut p = policy.clone();
        p.verify = p.verify.single_threaded();
        load::load(&signed, &p)
    };
    let eager_many = {
        let mut p = policy.clone();
        p.verify.parallel_min_size = Some(0);
        load::load(&signed, &p)
    };
    match (&eager_one, &eager_many) {
        (Ok(a), Ok(b)) => assert_eq!(a.metadata(), b.metadata(), "threaded model differs"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "threaded error differs"),
        (a, b) => panic!(
            "one thread: {:?}, threads: {:?}",
            a.as_ref().map(|_| ()),
            b.as_ref().map(|_| ())
        ),
    }
    // `load_owned` (the model built after verification, last child first, the document
    // given back as it goes) on one thread and on several: the same model or the same error.
    for threads in [false, true] {
        let mut p = policy.clone();
        if threads {
            p.verify.parallel_min_size = Some(0);
        } else {
            p.verify = p.verify.single_threaded();
        }
        match (&eager_one, &load::load_owned(signed.clone(), &p)) {
            (Ok(a), Ok(b)) => assert_eq!(a.metadata(), b.metadata(), "load_owned's model differs"),
            (Err(a), Err(b)) => {
                assert_eq!(a.to_string(), b.to_string(), "load_owned's error differs")
            }
            (a, b) => panic!(
                "load: {:?}, load_owned: {:?}",
                a.as_ref().map(|_| ()),
                b.as_ref().map(|_| ())
            ),
        }
    }
    // A selection of every entity, written from the verified bytes and signed as it streams
    // (`selection::write_selection`), reads back as the entities `load` indexed, in order and
    // modelled the same; an aggregate with none is refused before anything is written.
    if let (Ok(agg), Ok(lazy)) = (
        &eager_one,
        &saml_metadata::lazy::load_lazy(&signed, &policy),
    ) {
        let mut out = Vec::new();
        let opts = saml_metadata::selection::SelectOptions::new("urn:fuzz", None);
        let all = saml_metadata::filter::Filter::predicate(|_| true);
        match saml_metadata::selection::write_selection(lazy, &all, key, &opts, &mut out) {
            Ok(ids) => {
                // Each entity carries the validUntil that applied to it in the source (its
                // groups' and the root's too).
                let want: Vec<_> = agg
                    .entities()
                    .map(|e| {
                        let mut e = e.clone();
                        e.valid_until = agg.valid_until(&e.entity_id);
                        e
                    })
                    .collect();
                assert_eq!(ids.len(), want.len(), "selection's entities differ");
                let back = load::load(&out, &policy).expect("the selection does not load");
                let got: Vec<_> = back.entities().cloned().collect();
                assert_eq!(got, want, "the selection reads back differently");
            }
            Err(e) => {
                // No entity, or one whose model is invalid (`load` left it out; a selection
                // models every entity it judges).
                let unmodelled = agg.refused_entities().iter().any(|r| r.invalid_model);
                assert!(agg.is_empty() || unmodelled, "selection refused: {e}");
                assert!(out.is_empty(), "written before the error");
            }
        }
    }
    // A filter that reads the groups (what `samlmd select --category` runs): the lazy
    // selection, which models each group's Extensions once for its entities, picks what the
    // eager model picks.
    if let (Ok(agg), Ok(lazy)) = (
        &eager_one,
        &saml_metadata::lazy::load_lazy(&signed, &policy),
    ) {
        use saml_metadata::filter::Filter;
        let f = Filter::category("urn:fuzz")
            .not()
            .or(Filter::registration_authority("urn:fuzz"));
        let opts = saml_metadata::selection::SelectOptions::new("urn:fuzz", None);
        if let Ok(ids) =
            saml_metadata::selection::write_selection(lazy, &f, key, &opts, &mut Vec::new())
        {
            let want: Vec<&str> = agg.select(&f).map(|e| e.entity_id.as_str()).collect();
            assert_eq!(ids, want, "a filter of the groups selects differently");
        }
    }
    // The lazy index cuts each entity on request as split cuts them all (`samlmd split`).
    if let (Ok(lazy), Ok(split)) = (
        saml_metadata::lazy::load_lazy(&signed, &policy),
        saml_metadata::split::split_report(&signed, &policy),
    ) {
        for d in &split.documents {
            if lazy.contains(&d.entity_id) {
                let cut = lazy
                    .entity_document(&d.entity_id)
                    .expect("the indexed entity cuts");
                assert_eq!(cut.as_ref(), Some(d), "lazy and split cut differently");
            }
        }
    }
    // The three index the same entities, in document order, and leave out the same expired
    // ones (an EntityDescriptor inside md:Extensions is no entity; a group's validUntil
    // applies to what it contains).
    // `load` also leaves out the entities whose model is invalid (`invalid_model`), which
    // the index and split, modelling none, keep.
    if let Ok(agg) = &eager_one {
        let unmodelled: std::collections::HashSet<&str> = agg
            .refused_entities()
            .iter()
            .filter(|r| r.invalid_model)
            .map(|r| r.entity_id.as_str())
            .collect();
        let want: Vec<&str> = agg.entities().map(|e| e.entity_id.as_str()).collect();
        if let Ok(lazy) = saml_metadata::lazy::load_lazy(&signed, &policy) {
            let got: Vec<&str> = lazy
                .entity_ids()
                .filter(|id| !unmodelled.contains(id))
                .collect();
            assert_eq!(got, want, "load_lazy's entities");
            // Modelling every indexed entity names the ones `load` left out (`samlmd verify
            // --models`), on one thread and on two.
            // An entity the index left out for a signature of its own is named as such
            // already (`load` may name it for its model first).
            let signature_refused = |id: &str| {
                lazy.refused_entities()
                    .iter()
                    .any(|r| r.entity_id == id && !r.invalid_model)
            };
            let mut want_invalid: Vec<&str> = agg
                .refused_entities()
                .iter()
                .filter(|r| r.invalid_model && !signature_refused(&r.entity_id))
                .map(|r| r.entity_id.as_str())
                .collect();
            want_invalid.sort_unstable();
            for threads in [1, 2] {
                let found = lazy
                    .invalid_models(threads)
                    .expect("load modelled the same entities");
                let mut got: Vec<&str> = found.iter().map(|r| r.entity_id.as_str()).collect();
                got.sort_unstable();
                assert_eq!(got, want_invalid, "invalid_models on {threads} threads");
            }
            let expired: Vec<&String> = lazy
                .expired_entities()
                .iter()
                .filter(|id| !unmodelled.contains(id.as_str()))
                .collect();
            let want_expired: Vec<&String> = agg.expired_entities().iter().collect();
            assert_eq!(expired, want_expired, "load_lazy's expired");
        }
        if let Ok(split) = saml_metadata::split::split_report(&signed, &policy) {
            let got: Vec<&str> = split
                .documents
                .iter()
                .map(|d| d.entity_id.as_str())
                .filter(|id| !unmodelled.contains(id))
                .collect();
            assert_eq!(got, want, "split's entities");
            let expired: Vec<&String> = split
                .expired
                .iter()
                .filter(|id| !unmodelled.contains(id.as_str()))
                .collect();
            let want_expired: Vec<&String> = agg.expired_entities().iter().collect();
            assert_eq!(expired, want_expired, "split's expired");
        }
    }
    let eager = eager_one.map(|a| {
        let signed_only: Vec<_> = a
            .refused_entities()
            .iter()
            .filter(|r| !r.invalid_model)
            .cloned()
            .collect();
        refused(&signed_only)
    });
    let lazy =
        saml_metadata::lazy::load_lazy(&signed, &policy).map(|a| refused(a.refused_entities()));
    let split = saml_metadata::split::split_report(&signed, &policy).map(|s| refused(&s.refused));
    if let (Ok(a), Ok(b)) = (&lazy, &split) {
        assert_eq!(a, b, "load_lazy and split refuse different entities");
    }
    if let (Ok(a), Ok(b)) = (&eager, &lazy) {
        assert_eq!(a, b, "load and load_lazy refuse different entities");
    }
    if eager.is_ok() {
        // What the model accepts, the index accepts (the lazy path checks less of the model).
        assert!(
            lazy.is_ok(),
            "load accepts what load_lazy refuses: {lazy:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    signed_paths(data);
    let parsed = parse_unverified(data);
    if let Ok(md) = &parsed
        && let Ok(xml) = md.to_xml()
    {
        match parse_unverified(xml.as_bytes()) {
            Ok(again) => assert_eq!(&again, md, "round trip differs for {xml}"),
            Err(e) => panic!("written document does not parse: {e}\n{xml}"),
        }
    }
    match parsed {
        Ok(Metadata::Entities(g)) => {
            for e in g.entities() {
                assert!(!e.entity_id.is_empty());
                let _ = e.sha1_id();
                let _ = e.sp().and_then(|s| s.default_acs());
            }
        }
        Ok(Metadata::Entity(e)) => assert!(!e.entity_id.is_empty()),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
