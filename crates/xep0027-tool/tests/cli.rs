//! The `xep0027` command-line contract: keygen, sign (with an envelope), verify, encrypt and
//! decrypt through stdin/stdout; exit codes 0/1/2 with one-line reasons, `--help` and
//! `--version` (GnuPG keys with the tool: `interop/tests/gnupg.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn x27(args: &[&str], stdin: &str) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xep0027"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run xep0027");
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn keygen_sign_verify_encrypt_decrypt() {
    let dir = tempfile::tempdir().unwrap();
    let f = |n: &str| dir.path().join(n);
    for who in ["alice", "bob"] {
        let o = x27(
            &[
                "keygen",
                "--jid",
                &format!("{who}@example.org"),
                p(&f(&format!("{who}.sec"))),
                p(&f(&format!("{who}.pub"))),
            ],
            "",
        );
        assert!(o.status.success(), "{o:?}");
        assert_eq!(out(&o).trim().len(), 40, "a v4 fingerprint");
    }
    let ring = f("ring.pgp");
    let mut all = std::fs::read(f("alice.pub")).unwrap();
    all.extend(std::fs::read(f("bob.pub")).unwrap());
    std::fs::write(&ring, all).unwrap();

    let o = x27(
        &[
            "sign",
            "--key",
            p(&f("alice.sec")),
            "--jid",
            "alice@example.org",
            "--envelope",
        ],
        "<presence id='p1'><status>Online</status></presence>",
    );
    assert!(o.status.success(), "{o:?}");
    let signed = out(&o);
    assert!(signed.contains("jabber:x:signed") && signed.contains("envelope"));
    let o = x27(
        &[
            "verify",
            "--keyring",
            p(&ring),
            "--trust-user-ids",
            "--from",
            "alice@example.org/cli",
        ],
        &signed,
    );
    assert!(o.status.success(), "{o:?}");
    assert!(out(&o).starts_with("OK "), "{}", out(&o));
    // Claimed by bob: refused, one line, exit 1.
    let o = x27(
        &[
            "verify",
            "--keyring",
            p(&ring),
            "--trust-user-ids",
            "--from",
            "bob@example.org/cli",
        ],
        &signed,
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&o.stderr).trim().lines().count(), 1);
    // Stale (an hour later).
    let o = x27(
        &[
            "verify",
            "--keyring",
            p(&ring),
            "--trust-user-ids",
            "--from",
            "alice@example.org/cli",
            "--now",
            &xep0027::time::format(
                std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
            ),
        ],
        &signed,
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");

    let o = x27(
        &[
            "encrypt",
            "--key",
            p(&f("alice.sec")),
            "--jid",
            "alice@example.org",
            "--to",
            p(&f("bob.pub")),
            "--envelope",
        ],
        "<message to='bob@example.org' id='m1'><body>secret plans</body></message>",
    );
    assert!(o.status.success(), "{o:?}");
    let enc = out(&o);
    assert!(!enc.contains("secret plans"));
    let o = x27(
        &[
            "decrypt",
            "--key",
            p(&f("bob.sec")),
            "--jid",
            "bob@example.org",
            "--keyring",
            p(&ring),
            "--trust-user-ids",
            "--from",
            "alice@example.org/cli",
        ],
        &enc,
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(out(&o).trim(), "secret plans");
    assert!(String::from_utf8_lossy(&o.stderr).starts_with("signed-by "));

    // Usage errors and malformed input.
    assert_eq!(x27(&["frobnicate"], "").status.code(), Some(2));
    assert_eq!(x27(&["verify"], "").status.code(), Some(2));
    // A keyring alone says nothing about who is who: a usage error.
    assert_eq!(
        x27(&["verify", "--keyring", p(&ring)], &signed)
            .status
            .code(),
        Some(2)
    );
    // Pinned by fingerprint instead of trusting the User IDs.
    let alice_fpr = xep0027::keys::cert_from_bytes(&std::fs::read(f("alice.pub")).unwrap())
        .unwrap()
        .fingerprint()
        .to_hex();
    let o = x27(
        &[
            "verify",
            "--keyring",
            p(&ring),
            "--pin",
            &format!("alice@example.org={alice_fpr}"),
            "--from",
            "alice@example.org/cli",
        ],
        &signed,
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        x27(
            &["verify", "--keyring", p(&ring), "--trust-user-ids"],
            "<iq/>"
        )
        .status
        .code(),
        Some(1)
    );
}

#[test]
fn help_and_version() {
    let h = x27(&["--help"], "");
    assert_eq!(h.status.code(), Some(0));
    for cmd in [
        "keygen", "sign", "verify", "encrypt", "decrypt", "--pin", "EXAMPLES",
    ] {
        assert!(out(&h).contains(cmd), "--help lacks {cmd}");
    }
    let v = x27(&["--version"], "");
    assert_eq!(v.status.code(), Some(0));
    assert_eq!(
        out(&v).trim(),
        format!("xep0027 {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(x27(&[], "").status.code(), Some(2));
}

/// Review finding 5: `decrypt` exited 0 for an unsigned message (anyone can encrypt to a
/// public key) although it asks who speaks for whom, and ignored the envelope that
/// `encrypt --envelope` wrote.
#[test]
fn decrypt_refuses_unsigned_input_unless_allowed_and_checks_the_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let f = |n: &str| dir.path().join(n);
    for who in ["alice", "bob"] {
        let o = x27(
            &[
                "keygen",
                "--jid",
                &format!("{who}@example.org"),
                p(&f(&format!("{who}.sec"))),
                p(&f(&format!("{who}.pub"))),
            ],
            "",
        );
        assert!(o.status.success(), "{o:?}");
    }
    let ring = f("ring.pgp");
    let mut all = std::fs::read(f("alice.pub")).unwrap();
    all.extend(std::fs::read(f("bob.pub")).unwrap());
    std::fs::write(&ring, all).unwrap();
    let path = |n: &str| f(n).to_str().unwrap().to_owned();
    let (alice_sec, bob_pub, bob_sec, ring) = (
        path("alice.sec"),
        path("bob.pub"),
        path("bob.sec"),
        p(&ring).to_owned(),
    );
    let encrypt = |extra: &[&str], stanza: &str| {
        let mut args = vec![
            "encrypt",
            "--key",
            &alice_sec,
            "--jid",
            "alice@example.org",
            "--to",
            &bob_pub,
        ];
        args.extend_from_slice(extra);
        let o = x27(&args, stanza);
        assert!(o.status.success(), "{o:?}");
        out(&o)
    };
    let decrypt = |extra: &[&str], input: &str| {
        let mut args = vec![
            "decrypt",
            "--key",
            &bob_sec,
            "--jid",
            "bob@example.org",
            "--keyring",
            &ring,
            "--trust-user-ids",
            "--from",
            "alice@example.org/cli",
        ];
        args.extend_from_slice(extra);
        x27(&args, input)
    };
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // Unsigned: refused (exit 1, one line saying why), unless --allow-unsigned.
    let unsigned = encrypt(
        &["--unsigned"],
        "<message to='bob@example.org' id='m1'><body>from anyone</body></message>",
    );
    let o = decrypt(&[], &unsigned);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(out(&o).is_empty(), "no body printed: {o:?}");
    assert!(stderr(&o).contains("unsigned"), "{}", stderr(&o));
    assert_eq!(stderr(&o).trim().lines().count(), 1);
    let o = decrypt(&["--allow-unsigned"], &unsigned);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(out(&o).trim(), "from anyone");
    assert!(stderr(&o).contains("unsigned"), "{}", stderr(&o));

    // With an envelope: checked. Delivered from another sender: refused.
    let enveloped = encrypt(
        &["--envelope"],
        "<message to='bob@example.org' id='m2'><body>plans</body></message>",
    );
    let o = decrypt(&[], &enveloped);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(out(&o).trim(), "plans");
    assert!(
        stderr(&o).contains("envelope from alice@example.org"),
        "{}",
        stderr(&o)
    );
    let mut args = vec![
        "decrypt",
        "--key",
        &bob_sec,
        "--jid",
        "bob@example.org",
        "--keyring",
        &ring,
        "--trust-user-ids",
        "--from",
        "bob@example.org/cli",
    ];
    let o = x27(&args, &enveloped);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    // Stale (an hour later).
    let later =
        xep0027::time::format(std::time::SystemTime::now() + std::time::Duration::from_secs(3600));
    args[9] = "alice@example.org/cli";
    args.extend(["--now", &later]);
    let o = x27(&args, &enveloped);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    // --help names the flag.
    assert!(out(&x27(&["--help"], "")).contains("--allow-unsigned"));
}

/// Finding (XEP-0027 review F2): `keygen` wrote the unprotected secret key with `fs::write`:
/// world-readable under the usual umask, over an existing key, and through a symlink planted
/// where it was to go. It is now a new file, readable by its owner only.
#[cfg(unix)]
#[test]
fn keygen_writes_the_secret_key_privately_and_never_over_a_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let f = |n: &str| dir.path().join(n);
    let keygen =
        |sec: &Path, publ: &Path| x27(&["keygen", "--jid", "a@example.org", p(sec), p(publ)], "");
    let o = keygen(&f("a.sec"), &f("a.pub"));
    assert!(o.status.success(), "{o:?}");
    let mode = std::fs::metadata(f("a.sec")).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    // Over an existing key: refused, the key unchanged.
    let before = std::fs::read(f("a.sec")).unwrap();
    let o = keygen(&f("a.sec"), &f("b.pub"));
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(std::fs::read(f("a.sec")).unwrap(), before);
    // Through a planted link: refused, nothing written where it points.
    std::os::unix::fs::symlink(f("victim"), f("b.sec")).unwrap();
    let o = keygen(&f("b.sec"), &f("b.pub"));
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(!f("victim").exists());
    // One file for both: a usage error.
    let o = keygen(&f("c.key"), &f("c.key"));
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(!f("c.key").exists());
    // Review of the eighth round, I3: one file under two names, refused before anything is
    // written (the public key overwrote the new secret key), nothing left behind; the public
    // key not written through a planted link, nor over an existing file.
    let o = keygen(&f("d.key"), &dir.path().join(".").join("d.key"));
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(!f("d.key").exists());
    std::os::unix::fs::symlink(f("victim2"), f("e.pub")).unwrap();
    let o = keygen(&f("e.sec"), &f("e.pub"));
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(!f("victim2").exists() && !f("e.sec").exists());
    std::fs::write(f("kept.pub"), b"kept").unwrap();
    let o = keygen(&f("f.sec"), &f("kept.pub"));
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(std::fs::read(f("kept.pub")).unwrap(), b"kept");
}

/// Finding (XEP-0027 review F9): stdin was read whole before the stanza size limit applied,
/// so endless input (`cat /dev/zero | xep0027 verify ...`) grew memory without bound. It is
/// read up to the limit and refused there.
#[test]
fn stdin_is_read_up_to_the_stanza_limit_only() {
    /// Endless input that counts what was read, and fails the test past 8 MiB.
    struct Endless(usize);
    impl std::io::Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            assert!(self.0 < 8 << 20, "read {} bytes of endless input", self.0);
            buf.fill(b'a');
            self.0 += buf.len();
            Ok(buf.len())
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let (sec, publ) = (dir.path().join("a.sec"), dir.path().join("a.pub"));
    let o = x27(&["keygen", "--jid", "a@example.org", p(&sec), p(&publ)], "");
    assert!(o.status.success(), "{o:?}");
    let args: Vec<String> = ["verify", "--keyring", p(&publ), "--trust-user-ids"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut input = Endless(0);
    let code = xep0027_tool::run(&args, &mut input, &mut out, &mut err);
    assert_ne!(code, 0, "{}", String::from_utf8_lossy(&err));
    let err = String::from_utf8_lossy(&err);
    assert!(err.contains("longer than"), "{err}");
    assert!(input.0 <= 5 << 20, "{} bytes read", input.0);
}

/// Finding (XEP-0027 review F10): `--pin` and `--trust-user-ids` together were accepted, so a
/// keyring certificate whose User ID claims a pinned JID spoke for it beside the pinned key.
/// They exclude each other (a usage error).
#[test]
fn pins_and_user_id_bindings_exclude_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let (sec, publ) = (dir.path().join("a.sec"), dir.path().join("a.pub"));
    let o = x27(&["keygen", "--jid", "a@example.org", p(&sec), p(&publ)], "");
    assert!(o.status.success(), "{o:?}");
    let fpr = out(&o).trim().to_owned();
    let o = x27(
        &[
            "verify",
            "--keyring",
            p(&publ),
            "--pin",
            &format!("a@example.org={fpr}"),
            "--trust-user-ids",
        ],
        "<presence/>",
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("exclude"),
        "{o:?}"
    );
}

/// Finding (XEP-0027 review F8): with the envelope removed, an old signed stanza still
/// verified (exit 0); the only trace was a missing stderr note. `--require-envelope` refuses
/// it.
#[test]
fn verify_can_require_the_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let (sec, publ) = (dir.path().join("a.sec"), dir.path().join("a.pub"));
    let o = x27(&["keygen", "--jid", "a@example.org", p(&sec), p(&publ)], "");
    assert!(o.status.success(), "{o:?}");
    let o = x27(
        &[
            "sign",
            "--key",
            p(&sec),
            "--jid",
            "a@example.org",
            "--envelope",
        ],
        "<presence id='p1'><status>Online</status></presence>",
    );
    assert!(o.status.success(), "{o:?}");
    let signed = out(&o);
    let (start, end) = (
        signed.find("<envelope").expect("an envelope"),
        signed.find("</envelope>").expect("its end") + "</envelope>".len(),
    );
    let stripped = format!("{}{}", &signed[..start], &signed[end..]);
    assert!(!stripped.contains("envelope"), "{stripped}");
    let verify = |extra: &[&str], stanza: &str| {
        let mut args = vec![
            "verify",
            "--keyring",
            p(&publ),
            "--trust-user-ids",
            "--from",
            "a@example.org/r",
        ];
        args.extend_from_slice(extra);
        x27(&args, stanza)
    };
    // Without the flag the stripped stanza still verifies (what the flag is for).
    assert!(verify(&[], &stripped).status.success());
    let o = verify(&["--require-envelope"], &stripped);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no signed envelope"),
        "{o:?}"
    );
    // With its envelope it passes.
    let o = verify(&["--require-envelope"], &signed);
    assert!(o.status.success(), "{o:?}");
}

/// Review session 26, X3: `sign | encrypt` left a `jabber:x:signed` signature over the
/// plaintext body next to the ciphertext (anyone with alice's public key could confirm a
/// guessed body). `encrypt` now refuses such a stanza, exit 1, one line naming the reason.
#[test]
fn encrypt_refuses_a_signed_stanza() {
    let dir = tempfile::tempdir().unwrap();
    let f = |n: &str| dir.path().join(n);
    for who in ["alice", "bob"] {
        let o = x27(
            &[
                "keygen",
                "--jid",
                &format!("{who}@example.org"),
                p(&f(&format!("{who}.sec"))),
                p(&f(&format!("{who}.pub"))),
            ],
            "",
        );
        assert!(o.status.success(), "{o:?}");
    }
    let o = x27(
        &[
            "sign",
            "--key",
            p(&f("alice.sec")),
            "--jid",
            "alice@example.org",
        ],
        "<message to='bob@example.org' id='m1'><body>approve</body></message>",
    );
    assert!(o.status.success(), "{o:?}");
    let signed = out(&o);
    assert!(signed.contains("jabber:x:signed"), "{signed}");
    let o = x27(
        &[
            "encrypt",
            "--key",
            p(&f("alice.sec")),
            "--jid",
            "alice@example.org",
            "--to",
            p(&f("bob.pub")),
        ],
        &signed,
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(out(&o).is_empty(), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("plaintext"), "{err}");
    assert_eq!(err.trim().lines().count(), 1);
}

/// Review session 26, X8: a passphrase-protected secret key (what `gpg --export-secret-keys`
/// of an ordinary key gives) was accepted, then `decrypt` said only "decryption failed" and
/// `sign` "no usable unencrypted signing key". It is refused up front, saying why.
#[test]
fn a_passphrase_protected_secret_key_is_refused_saying_so() {
    use xep0027::sequoia_openpgp::Cert;
    use xep0027::sequoia_openpgp::crypto::Password;
    use xep0027::sequoia_openpgp::packet::Packet;
    use xep0027::sequoia_openpgp::parse::Parse as _;
    use xep0027::sequoia_openpgp::serialize::SerializeInto as _;
    let dir = tempfile::tempdir().unwrap();
    let f = |n: &str| dir.path().join(n);
    for who in ["alice", "bob"] {
        let o = x27(
            &[
                "keygen",
                "--jid",
                &format!("{who}@example.org"),
                p(&f(&format!("{who}.sec"))),
                p(&f(&format!("{who}.pub"))),
            ],
            "",
        );
        assert!(o.status.success(), "{o:?}");
    }
    // bob's key, every secret protected with a passphrase.
    let cert = Cert::from_bytes(&std::fs::read(f("bob.sec")).unwrap()).unwrap();
    let pw = Password::from("correct horse");
    let mut protected: Vec<Packet> = Vec::new();
    for k in cert.keys().secret() {
        let key = k.key().clone().encrypt_secret(&pw).unwrap();
        protected.push(if k.key().fingerprint() == cert.fingerprint() {
            key.role_into_primary().into()
        } else {
            key.role_into_subordinate().into()
        });
    }
    let (cert, _) = cert.insert_packets(protected).unwrap();
    assert!(
        cert.keys()
            .secret()
            .all(|k| k.key().secret().is_encrypted())
    );
    std::fs::write(
        f("bob-protected.sec"),
        cert.as_tsk().armored().to_vec().unwrap(),
    )
    .unwrap();

    let o = x27(
        &[
            "encrypt",
            "--key",
            p(&f("alice.sec")),
            "--jid",
            "alice@example.org",
            "--to",
            p(&f("bob.pub")),
        ],
        "<message to='bob@example.org' id='m1'><body>hi</body></message>",
    );
    assert!(o.status.success(), "{o:?}");
    let encrypted = out(&o);
    let o = x27(
        &[
            "decrypt",
            "--key",
            p(&f("bob-protected.sec")),
            "--jid",
            "bob@example.org",
            "--keyring",
            p(&f("alice.pub")),
            "--trust-user-ids",
            "--from",
            "alice@example.org/cli",
        ],
        &encrypted,
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("passphrase"), "{err}");
    let o = x27(
        &[
            "sign",
            "--key",
            p(&f("bob-protected.sec")),
            "--jid",
            "bob@example.org",
        ],
        "<presence><status>on</status></presence>",
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("passphrase"));
}
