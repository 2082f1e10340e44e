//! Step 9: RFC 6595 (SAML20 SASL) between XMPP servers on loopback.

use crate::{Res, step};

/// Step 9: RFC 6595 between XMPP servers on loopback (testkit::xmpp_s2s).
pub(crate) fn run() -> Res<bool> {
    println!(
        "== 9. SAML20 SASL between XMPP servers (source -> d1, d2; one IdP; loopback TCP and HTTP)"
    );
    let reports = testkit::xmpp_s2s::run().map_err(|e| e.to_string())?;
    let mut all = true;
    for r in &reports {
        let ok = r.outcome.is_ok() && r.source_saw.starts_with("<success");
        all &= step(
            ok,
            &format!(
                "{}: {} authenticated as {}; source saw {}; {}",
                r.destination,
                "source.example",
                r.outcome
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_else(|e| format!("(failed: {e})")),
                r.source_saw,
                if r.idp_login {
                    "the IdP logged the agent in"
                } else {
                    "no new login: single sign-on from the IdP session"
                }
            ),
        );
    }
    all &= step(
        reports.len() == 2 && reports[0].idp_login && !reports[1].idp_login,
        "one login at the IdP served both destinations",
    );
    Ok(all)
}
