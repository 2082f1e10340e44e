//! XEP-0027 stanzas from the network: parsing (a stanza that parses writes back to one that
//! parses equal), then every receiving path with fixed keys at a fixed time: the
//! `jabber:x:signed` check, decryption, the signed envelope with its replay window, session-key
//! offers and sealed messages, room keys and room messages. Errors are fine; panics are not,
//! and a refused stanza must leave the replay window and the key stores as they were.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use saml_fuzz::xep0027_fixture::{ROOM, now, world};
use xep0027::envelope::{self, ReplayWindow};
use xep0027::jid::Jid;
use xep0027::keys::{Identity, Keyring};
use xep0027::policy::Policy;
use xep0027::room::Member;
use xep0027::session::Sessions;
use xep0027::stanza::Stanza;
use xep0027::{encrypted, signed};

#[allow(clippy::expect_used)]
fn fixture() -> &'static (Identity, Identity, Keyring) {
    static W: OnceLock<(Identity, Identity, Keyring)> = OnceLock::new();
    W.get_or_init(|| world().expect("fixture keys"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The replay window's saved state (review session 26, X4) is a parser too: what it
    // accepts saves again to a state a fresh window accepts; what it refuses changes nothing.
    let mut w = ReplayWindow::new(Duration::from_secs(300), 64);
    let before = w.state();
    match w.restore_state(text) {
        Ok(()) => {
            let saved = w.state();
            let mut again = ReplayWindow::new(Duration::from_secs(300), 64);
            assert!(
                again.restore_state(&saved).is_ok(),
                "a saved state must restore: {saved:?}"
            );
        }
        Err(_) => assert_eq!(w.state(), before, "a refused state changed the window"),
    }
    let Ok(s) = Stanza::parse(text) else { return };
    let again = Stanza::parse(&s.to_xml());
    assert_eq!(
        again.as_ref().ok(),
        Some(&s),
        "a written stanza must parse back equal"
    );
    let _ = s.status();
    let _ = s.body();

    let (alice, bob, keyring) = fixture();
    let policy = Policy::standard();
    let t = now();
    let _ = signed::verify(&s, keyring, &policy, t);
    let _ = encrypted::decrypt(&s, bob, keyring, &policy, t);

    let mut window = ReplayWindow::new(Duration::from_secs(300), 16);
    if envelope::check(&s, keyring, &policy, &mut window, t).is_err() {
        assert!(window.is_empty(), "a refused envelope recorded an id");
    }

    let mut sessions = Sessions::new(bob.jid(), Duration::from_secs(3600));
    let accepted = sessions.accept(&s, bob, keyring, &policy, t);
    let mut w2 = ReplayWindow::new(Duration::from_secs(300), 16);
    if sessions.open(&s, &mut w2, t).is_err() {
        assert!(w2.is_empty(), "a refused sealed message recorded an id");
    }
    if accepted.is_err() {
        assert!(
            sessions.current(alice.jid(), t).is_none(),
            "a refused offer stored a key"
        );
    }

    let Ok(room) = Jid::new(ROOM) else { return };
    let mut member = Member::new(&room, bob.jid(), alice.fingerprint());
    if member.accept_key(&s, bob, keyring, &policy, t).is_err() {
        assert!(member.epoch().is_none(), "a refused room key was stored");
    }
    let mut w3 = ReplayWindow::new(Duration::from_secs(300), 16);
    if member.open(&s, keyring, &policy, &mut w3, t).is_err() {
        assert!(w3.is_empty(), "a refused room message recorded an id");
    }
});
