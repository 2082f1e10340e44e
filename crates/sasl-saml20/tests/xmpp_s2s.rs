//! RFC 6595's seed use case on loopback sockets: a source XMPP server authenticates to two
//! destinations with SAML20; its agent logs in at the IdP once, the second destination gets
//! single sign-on from the IdP session.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[test]
fn two_destinations_single_sign_on() {
    let reports = testkit::xmpp_s2s::run().unwrap();
    assert_eq!(reports.len(), 2);
    for r in &reports {
        let id = r.outcome.as_ref().unwrap();
        // The name comes with the IdP that asserted it, its scope checked against that IdP's.
        assert_eq!(id.idp(), "https://idp.cloud.example/idp", "{r:?}");
        assert_eq!(id.scoped_name(), Some("alice@cloud.example"), "{r:?}");
        assert!(r.source_saw.starts_with("<success"), "{r:?}");
    }
    assert!(
        reports[0].idp_login,
        "the first destination needs a login at the IdP"
    );
    assert!(!reports[1].idp_login, "the second one is single sign-on");
}

/// Issue 12 item 8: the cloud IdP asserting a user of another organisation is refused by both
/// destinations (default identity policy: the name's domain must be one of the IdP's scopes).
#[test]
fn an_idp_cannot_assert_another_organisations_user() {
    let reports = testkit::xmpp_s2s::run_as("alice@uni-a.example").unwrap();
    assert!(!reports.is_empty());
    for r in &reports {
        let e = r.outcome.as_ref().unwrap_err();
        assert!(e.contains("may not assert"), "{r:?}");
        assert!(r.source_saw.contains("not-authorized"), "{r:?}");
    }
}
