//! XEP-0027 stanzas through a real XMPP server (Prosody 0.12, Debian's `prosody`): the server
//! stamps `from`, keeps the `jabber:x:signed`, `jabber:x:encrypted` and extension elements
//! intact, and its MUC reflects room messages from `room@service/nick`, which is what the
//! envelope and room checks rely on. Signed directed presence, an encrypted message and its
//! replay, a session key, and an encrypted room with three occupants. Fails (does not skip)
//! when prosody is missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime};

use testkit::xmpp_client::{Client, Prosody};
use xep0027::envelope::{self, ReplayWindow};
use xep0027::jid::Jid;
use xep0027::keys::{Identity, Keyring, Suite};
use xep0027::policy::Policy;
use xep0027::room::{Member, Moderator};
use xep0027::session::Sessions;
use xep0027::stanza::Stanza;
use xep0027::symmetric::OsRandom;
use xep0027::{Error, encrypted, signed};

const DOMAIN: &str = "cloud.example";
const MUC: &str = "rooms.cloud.example";

#[test]
fn xep0027_through_prosody() {
    let names = ["scheduler", "worker", "auditor"];
    let server = Prosody::start(
        DOMAIN,
        MUC,
        &[
            ("scheduler", "pw-s"),
            ("worker", "pw-w"),
            ("auditor", "pw-a"),
        ],
    )
    .expect("Prosody is required for this test: run scripts/setup.sh");
    let now = SystemTime::now();
    let policy = Policy::standard();
    let ids: Vec<Identity> = names
        .iter()
        .map(|n| {
            Identity::generate(
                &Jid::new(&format!("{n}@{DOMAIN}")).unwrap(),
                Suite::Cv25519,
                now,
                None,
            )
            .unwrap()
        })
        .collect();
    let mut pki = Keyring::new();
    for i in &ids {
        pki.insert_pinned(i.jid(), i.public_cert());
    }
    let pw = ["pw-s", "pw-w", "pw-a"];
    let mut clients: Vec<Client> = names
        .iter()
        .zip(pw)
        .map(|(n, p)| Client::connect(&server.addr, DOMAIN, n, p, "module").unwrap())
        .collect();
    assert_eq!(clients[0].jid, "scheduler@cloud.example/module");
    for c in clients.iter_mut() {
        c.send("<presence/>").unwrap(); // available: directed presence and messages reach it
    }
    let mut worker_window = ReplayWindow::default();

    // Signed directed presence, with an envelope.
    let mut p = Stanza::parse(
        "<presence to='worker@cloud.example' id='pres-1'><status>ready</status></presence>",
    )
    .unwrap();
    signed::sign(&mut p, &ids[0], &policy, now).unwrap();
    envelope::seal(&mut p, &ids[0], &policy, now).unwrap();
    clients[0].send(&p.to_xml()).unwrap();
    let got = Stanza::parse(&clients[1].next_stanza_matching("pres-1").unwrap()).unwrap();
    assert_eq!(
        got.from(),
        Some("scheduler@cloud.example/module"),
        "the server stamped the sender"
    );
    let _checked = envelope::check(&got, &pki, &policy, &mut worker_window, now).unwrap();
    assert_eq!(
        signed::verify(&got, &pki, &policy, now).unwrap().signer,
        ids[0].fingerprint()
    );

    // An encrypted, signed message; then the same stanza again.
    let mut m = Stanza::parse("<message to='worker@cloud.example/module' id='job-1' type='chat'><body>run job 1</body></message>").unwrap();
    encrypted::encrypt(
        &mut m,
        &ids[0],
        &[&ids[1].public_cert()],
        true,
        &policy,
        now,
    )
    .unwrap();
    envelope::seal(&mut m, &ids[0], &policy, now).unwrap();
    clients[0].send(&m.to_xml()).unwrap();
    clients[0].send(&m.to_xml()).unwrap();
    let first = Stanza::parse(&clients[1].next_stanza_matching("job-1").unwrap()).unwrap();
    let _checked = envelope::check(&first, &pki, &policy, &mut worker_window, now).unwrap();
    assert_eq!(
        encrypted::decrypt(&first, &ids[1], &pki, &policy, now)
            .unwrap()
            .body,
        "run job 1"
    );
    let again = Stanza::parse(&clients[1].next_stanza_matching("job-1").unwrap()).unwrap();
    assert!(matches!(
        envelope::check(&again, &pki, &policy, &mut worker_window, now),
        Err(Error::Replay(_))
    ));

    // A session key, then sealed messages.
    let mut sa = Sessions::new(ids[0].jid(), Duration::from_secs(3600));
    let mut sb = Sessions::new(ids[1].jid(), Duration::from_secs(3600));
    let offer = sa
        .offer(
            &ids[0],
            ids[1].jid(),
            &ids[1].public_cert(),
            &mut OsRandom,
            &policy,
            now,
        )
        .unwrap();
    clients[0].send(&offer.to_xml()).unwrap();
    sb.accept(
        &Stanza::parse(&clients[1].next_stanza_matching("session:0").unwrap()).unwrap(),
        &ids[1],
        &pki,
        &policy,
        now,
    )
    .unwrap();
    for i in 0..5 {
        let mut s = Stanza::parse(&format!("<message to='worker@cloud.example/module' id='s{i}' type='chat'><body>tick {i}</body></message>")).unwrap();
        sa.seal(&mut s, &mut OsRandom, now).unwrap();
        clients[0].send(&s.to_xml()).unwrap();
        let got =
            Stanza::parse(&clients[1].next_stanza_matching(&format!("'s{i}'")).unwrap()).unwrap();
        assert_eq!(
            sb.open(&got, &mut worker_window, now).unwrap(),
            format!("tick {i}")
        );
    }

    // An encrypted room: everyone joins, the scheduler distributes the key.
    let room = Jid::new(&format!("ops@{MUC}")).unwrap();
    for (c, n) in clients.iter_mut().zip(names) {
        c.send(&format!(
            "<presence to='ops@{MUC}/{n}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        ))
        .unwrap();
    }
    // Each occupant sees the presences of those already in and its own (status 110).
    for (i, c) in clients.iter_mut().enumerate() {
        let mut own = false;
        while !own {
            let st = c.next_stanza().unwrap();
            own = st.starts_with("<presence")
                && st.contains(&format!("from='ops@{MUC}/{}'", names[i]))
                || st.contains(&format!("from=\"ops@{MUC}/{}\"", names[i]));
        }
    }
    let mut rng = OsRandom;
    let mut moderator = Moderator::new(&room, Duration::from_secs(3600), &mut rng, now).unwrap();
    for i in &ids {
        moderator
            .add_member(i.jid(), i.public_cert(), &policy, now)
            .unwrap();
    }
    let mut members: Vec<Member> = ids
        .iter()
        .map(|i| Member::new(&room, i.jid(), ids[0].fingerprint()))
        .collect();
    for d in moderator
        .distribute(&ids[0], &mut rng, &policy, now)
        .unwrap()
        .stanzas
    {
        let to = d.to().unwrap().to_owned();
        let k = ids.iter().position(|i| i.jid().bare() == to).unwrap();
        clients[0]
            .send(&d.clone().with_attr("to", &format!("{to}/module")).to_xml())
            .unwrap();
        let got = Stanza::parse(&clients[k].next_stanza_matching("room-key").unwrap()).unwrap();
        assert_eq!(
            members[k]
                .accept_key(&got, &ids[k], &pki, &policy, now)
                .unwrap(),
            1
        );
    }
    let mut post =
        Stanza::parse("<message id='room-1'><body>deploying build 311</body></message>").unwrap();
    members[1]
        .seal(&mut post, &ids[1], &mut rng, &policy, now)
        .unwrap();
    clients[1].send(&post.to_xml()).unwrap();
    for k in [0usize, 2] {
        let got = Stanza::parse(&clients[k].next_stanza_matching("<sealed").unwrap()).unwrap();
        assert_eq!(
            got.from(),
            Some("ops@rooms.cloud.example/worker"),
            "reflected by the MUC"
        );
        let mut w = ReplayWindow::default();
        let opened = members[k].open(&got, &pki, &policy, &mut w, now).unwrap();
        assert_eq!(
            (opened.sender.bare(), opened.body.as_str()),
            ("worker@cloud.example", "deploying build 311")
        );
    }
}
