//! XEP-0027 interop with GnuPG (Debian's `gpg` 2.2), both directions: gpg-made detached
//! signatures (binary, text mode, clearsign-extracted; RSA and Ed25519 keys) verify with
//! xep0027; xep0027's verify with `gpg --verify`; gpg-encrypted messages (compressed, gpg's
//! defaults; also signed) decrypt with xep0027 and xep0027's decrypt with gpg, signature
//! included; SHA-1 signatures need the explicit legacy policy; wrong keys and tampering are
//! refused. The test fails (it does not skip) when gpg is missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::SystemTime;

use testkit::gnupg::{Gpg, KeyAlgo};
use xep0027::encrypted;
use xep0027::jid::Jid;
use xep0027::keys::{self, Identity, Keyring, Suite};
use xep0027::policy::Policy;
use xep0027::signed;
use xep0027::stanza::Stanza;
use xep0027::{Error, armor};

fn gpg() -> Gpg {
    Gpg::new().expect("GnuPG is required for the XEP-0027 interop tests: run scripts/setup.sh")
}

fn presence(from: &str, status: &str, sig: &str) -> Stanza {
    let mut p = Stanza::parse(&format!("<presence from='{from}'/>")).unwrap();
    p.set_status(status);
    p.element_mut()
        .push(xep0027::stanza::Element::new("x", xep0027::ns::SIGNED).with_text(sig));
    p
}

/// A message stanza with gpg's armored message in `jabber:x:encrypted`, stripped.
fn with_encrypted(xml: &str, armored: &str) -> Stanza {
    let mut m = Stanza::parse(xml).unwrap();
    m.element_mut().push(
        xep0027::stanza::Element::new("x", xep0027::ns::ENCRYPTED)
            .with_text(&armor::strip(armored).unwrap()),
    );
    m
}

fn now() -> SystemTime {
    SystemTime::now()
}

#[test]
fn gpg_signatures_verify_with_xep0027() {
    let g = gpg();
    let p = Policy::standard();
    for (algo, jid) in [
        (KeyAlgo::Rsa2048, "romeo@montague.example"),
        (KeyAlgo::Ed25519, "juliet@capulet.example"),
    ] {
        let fpr = g.gen_key(&format!("xmpp:{jid}"), algo).unwrap();
        let mut keyring = Keyring::from_bytes(&g.export(&fpr).unwrap()).unwrap();
        keyring.bind_user_ids(&Policy::standard(), now());
        let status = "Online – ☕ at the café";
        let armored = g
            .detach_sign(&fpr, status.as_bytes(), false, "SHA256")
            .unwrap();
        let stripped = armor::strip(&armored).unwrap();
        let v = signed::verify(
            &presence(&format!("{jid}/orchard"), status, &stripped),
            &keyring,
            &p,
            now(),
        )
        .unwrap();
        assert_eq!(v.signer.to_hex(), fpr, "{algo:?}");
        assert!(!v.normalized);

        // The shapes real clients send: one line, checksum glued on (Conversations), no
        // checksum at all.
        let lines: Vec<&str> = stripped.lines().collect();
        let (check, b64) = lines.split_last().unwrap();
        for shape in [
            b64.concat(),
            format!("{}{check}", b64.concat()),
            b64.join("\n"),
            format!("\n  {}\n  {check}\n", b64.join("\n  ")),
        ] {
            let _verified =
                signed::verify(&presence(jid, status, &shape), &keyring, &p, now()).unwrap();
        }

        // Tampered status, trailing newline (exact bytes are signed), another sender.
        assert!(matches!(
            signed::verify(&presence(jid, "Offline", &stripped), &keyring, &p, now()),
            Err(Error::BadSignature(_))
        ));
        assert!(
            signed::verify(
                &presence(jid, &format!("{status}\n"), &stripped),
                &keyring,
                &p,
                now()
            )
            .is_err()
        );
        assert!(matches!(
            signed::verify(
                &presence("mallory@evil.example", status, &stripped),
                &keyring,
                &p,
                now()
            ),
            Err(Error::UnknownSigner(_))
        ));

        // Text mode (line endings canonicalized by the signer).
        let text = "line one\nline two";
        let ts = armor::strip(
            &g.detach_sign(&fpr, text.as_bytes(), true, "SHA256")
                .unwrap(),
        )
        .unwrap();
        let _verified = signed::verify(&presence(jid, text, &ts), &keyring, &p, now()).unwrap();

        // Clearsign-based clients: the signature block of a clearsigned status, whose hash
        // ignores trailing whitespace; verified tolerantly and reported as such.
        let spaced = "Away  \nback soon ";
        let cs = g.clearsign(&fpr, spaced.as_bytes()).unwrap();
        let block = &cs[cs.find("-----BEGIN PGP SIGNATURE-----").unwrap()..];
        let v = signed::verify(
            &presence(jid, spaced, &armor::strip(block).unwrap()),
            &keyring,
            &p,
            now(),
        )
        .unwrap();
        assert!(v.normalized);
    }
}

#[test]
fn sha1_signatures_need_the_legacy_policy() {
    let g = gpg();
    let fpr = g
        .gen_key("xmpp:old@legacy.example", KeyAlgo::Rsa2048)
        .unwrap();
    let mut keyring = Keyring::from_bytes(&g.export(&fpr).unwrap()).unwrap();
    keyring.bind_user_ids(&Policy::standard(), now());
    let sig = armor::strip(&g.detach_sign(&fpr, b"Available", false, "SHA1").unwrap()).unwrap();
    let st = presence("old@legacy.example", "Available", &sig);
    assert!(matches!(
        signed::verify(&st, &keyring, &Policy::standard(), now()),
        Err(Error::BadSignature(_))
    ));
    let v = signed::verify(&st, &keyring, &Policy::legacy_sha1_era(), now()).unwrap();
    assert_eq!(v.signer.to_hex(), fpr);
}

#[test]
fn expired_gpg_keys_are_refused() {
    let g = gpg();
    let p = Policy::standard();
    let fpr = g
        .gen_key_expiring("xmpp:temp@example.org", KeyAlgo::Ed25519, "1d")
        .unwrap();
    let mut keyring = Keyring::from_bytes(&g.export(&fpr).unwrap()).unwrap();
    keyring.bind_user_ids(&Policy::standard(), now());
    let sig = armor::strip(
        &g.detach_sign(&fpr, b"short-lived", false, "SHA256")
            .unwrap(),
    )
    .unwrap();
    let st = presence("temp@example.org/x", "short-lived", &sig);
    let _verified = signed::verify(&st, &keyring, &p, now()).unwrap();
    let in_two_days = now() + std::time::Duration::from_secs(2 * 86_400);
    // Once the key has expired, nothing it signed verifies any more, not even what it signed
    // while valid: the signature's creation time is the signer's to choose, so a key whose
    // secret leaked after it expired could otherwise sign anything by backdating (XEP-0027
    // review F1). A stanza is verified when it arrives (an archive: with its arrival time).
    let e = signed::verify(&st, &keyring, &p, in_two_days).unwrap_err();
    assert!(e.to_string().contains("not valid now"), "{e}");
    let _verified = signed::verify(&st, &keyring, &p, now()).unwrap();
    // Nor can anything be encrypted to it then.
    let cert = keys::cert_from_bytes(&g.export(&fpr).unwrap()).unwrap();
    let r = xep0027::openpgp::Recipients::new(&[&cert], &p, in_two_days);
    assert!(
        matches!(r, Err(Error::Key(_))),
        "{:?}",
        r.map(|r| r.valid_until())
    );
    // And one's own expired key no longer signs.
    let me = Identity::generate(
        &Jid::new("t@example.org").unwrap(),
        Suite::Cv25519,
        now(),
        Some(std::time::Duration::from_secs(86_400)),
    )
    .unwrap();
    assert!(matches!(me.signer(&p, in_two_days), Err(Error::Key(_))));
    let mut s = Stanza::parse("<presence><status>x</status></presence>").unwrap();
    assert!(signed::sign(&mut s, &me, &p, in_two_days).is_err());
}

#[test]
fn xep0027_signatures_verify_with_gpg() {
    let g = gpg();
    let p = Policy::standard();
    for suite in [Suite::Cv25519, Suite::Rsa2k] {
        let me = Identity::generate(
            &Jid::new("module-a@cloud.example").unwrap(),
            suite,
            now(),
            None,
        )
        .unwrap();
        g.import(&keys::cert_to_bytes(&me.public_cert()).unwrap())
            .unwrap();
        let mut st = Stanza::parse("<presence><status>Ready for jobs</status></presence>").unwrap();
        signed::sign(&mut st, &me, &p, now()).unwrap();
        let x = st
            .element()
            .only_child("x", xep0027::ns::SIGNED)
            .unwrap()
            .unwrap()
            .text();
        let status = g
            .verify_detached(&Gpg::rearmor("SIGNATURE", &x), b"Ready for jobs")
            .unwrap();
        assert_eq!(
            status.valid_sig.as_deref(),
            Some(me.fingerprint().to_hex().as_str()),
            "{suite:?}"
        );
        assert!(
            g.verify_detached(&Gpg::rearmor("SIGNATURE", &x), b"Ready for jobs\n")
                .is_err()
        );
        // Message bodies too.
        let mut m =
            Stanza::parse("<message to='b@cloud.example'><body>job 42 done</body></message>")
                .unwrap();
        signed::sign(&mut m, &me, &p, now()).unwrap();
        let x = m
            .element()
            .only_child("x", xep0027::ns::SIGNED)
            .unwrap()
            .unwrap()
            .text();
        g.verify_detached(&Gpg::rearmor("SIGNATURE", &x), b"job 42 done")
            .unwrap();
    }
}

#[test]
fn gpg_encrypted_messages_decrypt_with_xep0027() {
    let g = gpg();
    let p = Policy::standard();
    let gfpr = g
        .gen_key("xmpp:gajim@client.example", KeyAlgo::Rsa2048)
        .unwrap();
    let me = Identity::generate(
        &Jid::new("module-b@cloud.example").unwrap(),
        Suite::Cv25519,
        now(),
        None,
    )
    .unwrap();
    g.import(&keys::cert_to_bytes(&me.public_cert()).unwrap())
        .unwrap();
    let mut keyring = Keyring::from_bytes(&g.export(&gfpr).unwrap()).unwrap();
    keyring.bind_user_ids(&Policy::standard(), now());
    let body = "Meet at 10:00 — bring the 🔑. ".repeat(40);

    // gpg's defaults: to the peer and to itself, compressed.
    let armored = g
        .encrypt(&[&me.fingerprint().to_hex(), &gfpr], body.as_bytes(), None)
        .unwrap();
    let (listing, _) = g.run(&["--list-packets"], armored.as_bytes()).unwrap();
    assert!(
        String::from_utf8_lossy(&listing).contains("compressed packet"),
        "gpg compressed the message"
    );
    let m = with_encrypted(
        "<message from='gajim@client.example/pc' to='module-b@cloud.example'><body>This message is encrypted.</body></message>",
        &armored,
    );
    let d = encrypted::decrypt(&m, &me, &keyring, &p, now()).unwrap();
    assert_eq!(d.body, body);
    assert!(d.signature.is_none());

    // Signed and encrypted by gpg: the signature comes with it.
    let armored = g
        .encrypt(&[&me.fingerprint().to_hex()], body.as_bytes(), Some(&gfpr))
        .unwrap();
    let m2 = with_encrypted("<message from='gajim@client.example/pc'/>", &armored);
    let d = encrypted::decrypt(&m2, &me, &keyring, &p, now()).unwrap();
    assert_eq!(d.signature.unwrap().signer.to_hex(), gfpr);
    // The same message claimed by another sender: its signer is not that sender's key.
    let spoofed = m2.clone().with_attr("from", "other@client.example");
    assert!(matches!(
        encrypted::decrypt(&spoofed, &me, &keyring, &p, now()),
        Err(Error::UnknownSigner(_))
    ));
    // A compression bomb: 5 MiB of zeros compress to a few KiB; decryption stops at the
    // plaintext limit instead of filling memory, with the one opaque decryption error (the
    // limit is found inside the encryption container: no oracle).
    let bomb = g
        .encrypt(
            &[&me.fingerprint().to_hex()],
            &vec![0u8; 5 * 1024 * 1024],
            None,
        )
        .unwrap();
    assert!(
        bomb.len() < 64 * 1024,
        "gpg compressed it ({} bytes)",
        bomb.len()
    );
    let mb = with_encrypted("<message from='gajim@client.example/pc'/>", &bomb);
    assert!(matches!(
        encrypted::decrypt(&mb, &me, &keyring, &p, now()),
        Err(Error::Decrypt)
    ));
    // Encrypted to someone else only.
    let armored = g.encrypt(&[&gfpr], b"not for you", None).unwrap();
    let m3 = with_encrypted("<message from='gajim@client.example/pc'/>", &armored);
    assert!(matches!(
        encrypted::decrypt(&m3, &me, &keyring, &p, now()),
        Err(Error::Decrypt)
    ));
}

#[test]
fn xep0027_encrypted_messages_decrypt_with_gpg() {
    let g = gpg();
    let p = Policy::standard();
    for algo in [KeyAlgo::Ed25519, KeyAlgo::Rsa2048] {
        let gfpr = g
            .gen_key(&format!("xmpp:peer-{algo:?}@client.example"), algo)
            .unwrap();
        let peer = keys::cert_from_bytes(&g.export(&gfpr).unwrap()).unwrap();
        let me = Identity::generate(
            &Jid::new("module-c@cloud.example").unwrap(),
            Suite::Cv25519,
            now(),
            None,
        )
        .unwrap();
        g.import(&keys::cert_to_bytes(&me.public_cert()).unwrap())
            .unwrap();
        let mut m = Stanza::parse("<message to='peer@client.example' id='1'><body>rotate the TLS keys at 02:00 ✔</body></message>").unwrap();
        encrypted::encrypt(&mut m, &me, &[&peer], true, &p, now()).unwrap();
        let x = m
            .element()
            .only_child("x", xep0027::ns::ENCRYPTED)
            .unwrap()
            .unwrap()
            .text();
        let (plain, st) = g.decrypt(&Gpg::rearmor("MESSAGE", &x)).unwrap();
        assert_eq!(
            String::from_utf8(plain).unwrap(),
            "rotate the TLS keys at 02:00 ✔"
        );
        assert!(st.decrypted);
        assert_eq!(
            st.valid_sig.as_deref(),
            Some(me.fingerprint().to_hex().as_str()),
            "gpg checked our signature"
        );
    }
}

#[test]
fn keyring_files_and_explicit_bindings() {
    let g = gpg();
    let p = Policy::standard();
    let a = g.gen_key("xmpp:a@example.org", KeyAlgo::Ed25519).unwrap();
    let b = g
        .gen_key("Bea Example <b@example.org>", KeyAlgo::Ed25519)
        .unwrap();
    let (all, _) = g.run(&["--armor", "--export"], b"").unwrap();
    let path = g.home().join("ring.asc");
    std::fs::write(&path, &all).unwrap();
    let mut ring = Keyring::from_file(&path).unwrap();
    assert_eq!(ring.len(), 2);
    // The keyring file is trusted here: its valid xmpp: User IDs bind (a's only).
    assert_eq!(ring.bind_user_ids(&p, now()).len(), 1);
    let sig = armor::strip(&g.detach_sign(&b, b"hi", false, "SHA256").unwrap()).unwrap();
    let st = presence("b@example.org/x", "hi", &sig);
    // Bea's User ID is not an xmpp: URI: not bound until the administrator says so.
    assert!(matches!(
        signed::verify(&st, &ring, &p, now()),
        Err(Error::UnknownSigner(_))
    ));
    let bf: xep0027::sequoia_openpgp::Fingerprint = b.parse().unwrap();
    ring.bind(&Jid::new("b@example.org").unwrap(), &bf).unwrap();
    let _verified = signed::verify(&st, &ring, &p, now()).unwrap();
    // a's key is bound to a@ only.
    let sig = armor::strip(&g.detach_sign(&a, b"hi", false, "SHA256").unwrap()).unwrap();
    let _verified =
        signed::verify(&presence("a@example.org/x", "hi", &sig), &ring, &p, now()).unwrap();
    assert!(signed::verify(&presence("b@example.org/x", "hi", &sig), &ring, &p, now()).is_err());
    // gpg's secret key export is an identity we can use.
    let me = Identity::from_bytes(
        &Jid::new("a@example.org").unwrap(),
        &g.export_secret(&a).unwrap(),
    )
    .unwrap();
    let mut mine = Stanza::parse("<presence><status>x</status></presence>").unwrap();
    signed::sign(&mut mine, &me, &p, now()).unwrap();
    let _verified =
        signed::verify(&mine.with_attr("from", "a@example.org/y"), &ring, &p, now()).unwrap();
}

#[test]
fn gpg_keys_in_the_xep0027_tool_and_gpg_verifies_what_it_signs() {
    let g = Gpg::new().expect("GnuPG is required: run scripts/setup.sh");
    let fpr = g
        .gen_key("xmpp:module@cloud.example", KeyAlgo::Ed25519)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sec = dir.path().join("k.sec");
    std::fs::write(&sec, g.export_secret(&fpr).unwrap()).unwrap();
    // The `xep0027` tool (in process: `xep0027_tool::run` is what its binary calls).
    let args: Vec<String> = [
        "sign",
        "--key",
        sec.to_str().unwrap(),
        "--jid",
        "module@cloud.example",
    ]
    .map(String::from)
    .to_vec();
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let code = xep0027_tool::run(
        &args,
        &mut &b"<presence><status>from the CLI</status></presence>"[..],
        &mut stdout,
        &mut stderr,
    );
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&stderr));
    let st = xep0027::stanza::Stanza::parse(&String::from_utf8(stdout).unwrap()).unwrap();
    let x = st
        .element()
        .only_child("x", xep0027::ns::SIGNED)
        .unwrap()
        .unwrap()
        .text();
    let status = g
        .verify_detached(&Gpg::rearmor("SIGNATURE", &x), b"from the CLI")
        .unwrap();
    assert_eq!(status.valid_sig.as_deref(), Some(fpr.as_str()));
}
