//! `xep0027`: XEP-0027 stanzas from the command line, for users and interop testers (stable
//! contract). Stanzas are read from stdin and written to stdout; keys are OpenPGP files (binary
//! or armored), e.g. from `gpg --export` and `gpg --export-secret-keys`.
//!
//! ```text
//! xep0027 keygen --jid JID [--suite cv25519|p256|rsa3k] SECRET_OUT PUBLIC_OUT
//!     a new key with the User ID xmpp:JID (armored transferable secret key, public key)
//! xep0027 sign --key SECRET --jid JID [--text] [--envelope]
//!     add jabber:x:signed over the status/body (and a signed envelope: needs 'id')
//! xep0027 verify --keyring FILE (--pin JID=FPR ... | --trust-user-ids) [--from JID] [--legacy]
//!         [--now DATETIME] [--skew SECONDS]
//!     check the envelope (when present) and jabber:x:signed; `OK <fingerprint> <time>`
//! xep0027 encrypt --key SECRET --jid JID --to CERT [--to CERT ...] [--unsigned] [--envelope]
//!     encrypt the body to every --to and to oneself, signed inside unless --unsigned
//! xep0027 decrypt --key SECRET --jid JID --keyring FILE (--pin JID=FPR ... | --trust-user-ids)
//!         [--from JID] [--legacy] [--now DATETIME]
//!     print the body; `signed-by <fingerprint>` on stderr when it was signed
//! ```
//! Which key speaks for which JID: `--pin JID=FINGERPRINT` (repeatable) binds a certificate
//! of the keyring to a JID; `--trust-user-ids` binds each certificate to the JIDs of its
//! valid, self-signed `xmpp:` User IDs (for a keyring file you already trust). Without
//! either, no key speaks for anyone and every signature is refused.
//! `--from` stamps the sender as the receiving server would. `--now` takes an XEP-0082
//! DateTime (default: the system clock). Exit 0 on success, 1 with a one-line reason on
//! stderr when the stanza is refused, 2 on usage errors.

use std::io::Read as _;
use std::process::ExitCode;

use saml_examples::cli::{Failure, Res, fail, read};
use std::time::{Duration, SystemTime};

use xep0027::envelope::{self, NS_ENVELOPE, ReplayWindow};
use xep0027::jid::Jid;
use xep0027::keys::{self, Identity, Keyring, Suite};
use xep0027::policy::Policy;
use xep0027::stanza::Stanza;
use xep0027::{armor, encrypted, signed};

const USAGE: &str =
    "usage: xep0027 keygen|sign|verify|encrypt|decrypt [options] (see the source's doc comment)";

#[derive(Default)]
struct Opts {
    key: Option<String>,
    jid: Option<String>,
    keyring: Option<String>,
    pins: Vec<String>,
    trust_user_ids: bool,
    from: Option<String>,
    to: Vec<String>,
    suite: Option<String>,
    now: Option<SystemTime>,
    skew: Option<u64>,
    text: bool,
    envelope: bool,
    unsigned: bool,
    legacy: bool,
    files: Vec<String>,
}

fn parse_opts(args: &[String]) -> Res<Opts> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .cloned()
                .ok_or_else(|| Failure::Usage(format!("{a} needs a value")))
        };
        match a.as_str() {
            "--key" => o.key = Some(val()?),
            "--jid" => o.jid = Some(val()?),
            "--keyring" => o.keyring = Some(val()?),
            "--pin" => o.pins.push(val()?),
            "--trust-user-ids" => o.trust_user_ids = true,
            "--from" => o.from = Some(val()?),
            "--to" => o.to.push(val()?),
            "--suite" => o.suite = Some(val()?),
            "--now" => {
                o.now =
                    Some(xep0027::time::parse(&val()?).map_err(|e| Failure::Usage(e.to_string()))?)
            }
            "--skew" => {
                o.skew = Some(
                    val()?
                        .parse()
                        .map_err(|_| Failure::Usage("--skew takes seconds".into()))?,
                )
            }
            "--text" => o.text = true,
            "--envelope" => o.envelope = true,
            "--unsigned" => o.unsigned = true,
            "--legacy" => o.legacy = true,
            f if !f.starts_with("--") => o.files.push(f.to_owned()),
            other => return Err(Failure::Usage(format!("unknown option {other}"))),
        }
    }
    Ok(o)
}

fn need<'a>(v: &'a Option<String>, what: &str) -> Res<&'a str> {
    v.as_deref()
        .ok_or_else(|| Failure::Usage(format!("{what} is required")))
}

fn stdin_stanza(o: &Opts) -> Res<Stanza> {
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s).map_err(fail)?;
    let st = Stanza::parse(&s).map_err(fail)?;
    Ok(match &o.from {
        Some(f) => st.with_attr("from", f),
        None => st,
    })
}

fn identity(o: &Opts) -> Res<Identity> {
    let jid = Jid::new(need(&o.jid, "--jid")?).map_err(|e| Failure::Usage(e.to_string()))?;
    Identity::from_bytes(&jid, &read(need(&o.key, "--key")?)?).map_err(fail)
}

/// The keyring of `--keyring` with the bindings of `--pin` and `--trust-user-ids`.
fn keyring(o: &Opts, p: &Policy, now: SystemTime) -> Res<Keyring> {
    let mut ring = Keyring::from_file(need(&o.keyring, "--keyring")?).map_err(fail)?;
    if o.pins.is_empty() && !o.trust_user_ids {
        return Err(Failure::Usage(
            "say which key speaks for which JID: --pin JID=FINGERPRINT or --trust-user-ids".into(),
        ));
    }
    for pin in &o.pins {
        let (jid, fpr) = pin
            .split_once('=')
            .ok_or_else(|| Failure::Usage(format!("--pin takes JID=FINGERPRINT, not {pin:?}")))?;
        let jid = Jid::new(jid).map_err(|e| Failure::Usage(e.to_string()))?;
        let fpr: xep0027::sequoia_openpgp::Fingerprint = fpr
            .parse()
            .map_err(|_| Failure::Usage(format!("--pin: bad fingerprint {fpr:?}")))?;
        ring.bind(&jid, &fpr).map_err(fail)?;
    }
    if o.trust_user_ids {
        ring.bind_user_ids(p, now);
    }
    Ok(ring)
}

fn policy(o: &Opts) -> Policy {
    if o.legacy {
        Policy::legacy_sha1_era()
    } else {
        Policy::standard()
    }
}

fn keygen(o: &Opts) -> Res<()> {
    let jid = Jid::new(need(&o.jid, "--jid")?).map_err(|e| Failure::Usage(e.to_string()))?;
    let suite = match o.suite.as_deref().unwrap_or("cv25519") {
        "cv25519" => Suite::Cv25519,
        "p256" => Suite::P256,
        "rsa3k" => Suite::Rsa3k,
        other => return Err(Failure::Usage(format!("unknown suite {other}"))),
    };
    let [secret_out, public_out] = o.files.as_slice() else {
        return Err(Failure::Usage("keygen needs SECRET_OUT PUBLIC_OUT".into()));
    };
    let id = Identity::generate(&jid, suite, o.now.unwrap_or_else(SystemTime::now), None)
        .map_err(fail)?;
    let wrap = |kind: &str, bin: &[u8]| {
        format!(
            "-----BEGIN PGP {kind}-----\n\n{}\n-----END PGP {kind}-----\n",
            armor::encode(bin)
        )
    };
    std::fs::write(
        secret_out,
        wrap("PRIVATE KEY BLOCK", &id.to_secret_bytes().map_err(fail)?),
    )
    .map_err(fail)?;
    std::fs::write(
        public_out,
        wrap(
            "PUBLIC KEY BLOCK",
            &keys::cert_to_bytes(&id.public_cert()).map_err(fail)?,
        ),
    )
    .map_err(fail)?;
    println!("{}", id.fingerprint());
    Ok(())
}

fn sign(o: &Opts) -> Res<()> {
    let me = identity(o)?;
    let now = o.now.unwrap_or_else(SystemTime::now);
    let p = policy(o);
    let mut st = stdin_stanza(o)?;
    let mode = if o.text {
        xep0027::openpgp::SigMode::Text
    } else {
        xep0027::openpgp::SigMode::Binary
    };
    signed::sign_with(&mut st, &me, mode, &p, now).map_err(fail)?;
    if o.envelope {
        envelope::seal(&mut st, &me, &p, now).map_err(fail)?;
    }
    println!("{st}");
    Ok(())
}

fn verify(o: &Opts) -> Res<()> {
    let now = o.now.unwrap_or_else(SystemTime::now);
    let p = policy(o);
    let ring = keyring(o, &p, now)?;
    let st = stdin_stanza(o)?;
    if st
        .element()
        .only_child("envelope", NS_ENVELOPE)
        .map_err(fail)?
        .is_some()
    {
        let mut w = ReplayWindow::new(Duration::from_secs(o.skew.unwrap_or(300)), 16);
        let c = envelope::check(&st, &ring, &p, &mut w, now).map_err(fail)?;
        eprintln!(
            "envelope from {} stamped {}",
            c.sender,
            xep0027::time::format(c.stamp)
        );
    }
    let v = signed::verify(&st, &ring, &p, now).map_err(fail)?;
    println!(
        "OK {} {}{}",
        v.signer,
        xep0027::time::format(v.created),
        if v.normalized {
            " (text, whitespace-normalized)"
        } else {
            ""
        }
    );
    Ok(())
}

fn encrypt(o: &Opts) -> Res<()> {
    let me = identity(o)?;
    let now = o.now.unwrap_or_else(SystemTime::now);
    let p = policy(o);
    if o.to.is_empty() {
        return Err(Failure::Usage("encrypt needs --to CERT".into()));
    }
    let mut certs = Vec::new();
    for f in &o.to {
        certs.push(keys::cert_from_bytes(&read(f)?).map_err(fail)?);
    }
    let refs: Vec<_> = certs.iter().collect();
    let mut st = stdin_stanza(o)?;
    encrypted::encrypt(&mut st, &me, &refs, !o.unsigned, &p, now).map_err(fail)?;
    if o.envelope {
        envelope::seal(&mut st, &me, &p, now).map_err(fail)?;
    }
    println!("{st}");
    Ok(())
}

fn decrypt(o: &Opts) -> Res<()> {
    let me = identity(o)?;
    let now = o.now.unwrap_or_else(SystemTime::now);
    let p = policy(o);
    let ring = keyring(o, &p, now)?;
    let st = stdin_stanza(o)?;
    let d = encrypted::decrypt(&st, &me, &ring, &p, now).map_err(fail)?;
    if let Some(v) = d.signature {
        eprintln!("signed-by {}", v.signer);
    }
    println!("{}", d.body);
    Ok(())
}

fn main() -> ExitCode {
    saml_examples::cli::main("xep0027", USAGE, |cmd, rest| {
        let o = parse_opts(rest)?;
        match cmd {
            "keygen" => keygen(&o),
            "sign" => sign(&o),
            "verify" => verify(&o),
            "encrypt" => encrypt(&o),
            "decrypt" => decrypt(&o),
            other => Err(Failure::Usage(format!("unknown command {other}"))),
        }
    })
}
