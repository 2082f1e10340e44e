//! The commands (see the crate documentation for the contract).

use std::io::{Read, Write};

use crate::exit::{Failure, Res, Tool, fail, read};
use std::time::{Duration, SystemTime};

use xep0027::envelope::{self, ReplayWindow};
use xep0027::jid::Jid;
use xep0027::keys::{self, Identity, Keyring, Suite};
use xep0027::ns;
use xep0027::policy::Policy;
use xep0027::stanza::Stanza;
use xep0027::{armor, encrypted, signed};

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
    require_envelope: bool,
    unsigned: bool,
    allow_unsigned: bool,
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
            "--require-envelope" => o.require_envelope = true,
            "--unsigned" => o.unsigned = true,
            "--allow-unsigned" => o.allow_unsigned = true,
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

/// Where a command reads its stanza and writes its results.
struct Io<'a> {
    input: &'a mut dyn Read,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
}

impl Io<'_> {
    fn say(&mut self, text: std::fmt::Arguments<'_>) -> Res<()> {
        writeln!(self.out, "{text}").map_err(|e| Failure::Failed(format!("stdout: {e}")))
    }

    fn note(&mut self, text: std::fmt::Arguments<'_>) -> Res<()> {
        writeln!(self.err, "{text}").map_err(|e| Failure::Failed(format!("stderr: {e}")))
    }
}

fn stdin_stanza(o: &Opts, io: &mut Io<'_>) -> Res<Stanza> {
    // At most what a stanza may be, and one byte to tell that more came: endless input
    // (`/dev/zero`) is refused at the limit, not read into memory (XEP-0027 review F9).
    let max = xep0027::stanza::Limits::default().max_len;
    let mut s = String::new();
    io.input
        .take(max as u64 + 1)
        .read_to_string(&mut s)
        .map_err(fail)?;
    if s.len() > max {
        return Err(fail(format!(
            "the stanza on stdin is longer than {max} bytes"
        )));
    }
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
    // One or the other: with both, a certificate's User ID claiming a pinned JID would speak
    // for it beside the pinned key (XEP-0027 review F10).
    if !o.pins.is_empty() && o.trust_user_ids {
        return Err(Failure::Usage(
            "--pin and --trust-user-ids exclude each other".into(),
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

fn keygen(o: &Opts, io: &mut Io<'_>) -> Res<()> {
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
    if secret_out == public_out {
        return Err(Failure::Usage(
            "SECRET_OUT and PUBLIC_OUT must be two files".into(),
        ));
    }
    // The secret key is not protected by a passphrase: readable by its owner only, written to a
    // new file (never over an existing key, never through a link planted there).
    let mut new_file = std::fs::OpenOptions::new();
    new_file.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        new_file.mode(0o600);
    }
    let secret = wrap("PRIVATE KEY BLOCK", &id.to_secret_bytes().map_err(fail)?);
    let public = wrap(
        "PUBLIC KEY BLOCK",
        &keys::cert_to_bytes(&id.public_cert()).map_err(fail)?,
    );
    // Both files new, both opened before either is written: the public one is never written
    // through a link planted at its name nor over an existing file, and two names of one
    // file (`k.sec` and `./k.sec`) fail at the second open, before the secret is written
    // (review of the eighth round, I3: the public key overwrote the new secret key).
    let mut public_file = std::fs::OpenOptions::new();
    public_file.write(true).create_new(true);
    let opened = |o: &std::fs::OpenOptions, path: &str| {
        o.open(path)
            .map_err(|e| Failure::Failed(format!("{path}: {e} (keygen writes new files only)")))
    };
    let mut sf = opened(&new_file, secret_out)?;
    let mut pf = match opened(&public_file, public_out) {
        Ok(f) => f,
        Err(e) => {
            // The secret file was created empty just now: not left behind.
            drop(sf);
            let _ = std::fs::remove_file(secret_out);
            return Err(e);
        }
    };
    let written = {
        use std::io::Write as _;
        sf.write_all(secret.as_bytes())
            .and_then(|()| sf.sync_all())
            .and_then(|()| pf.write_all(public.as_bytes()))
            .and_then(|()| pf.sync_all())
    };
    if let Err(e) = written {
        // Both files were created by this call: a half-written pair is not left behind
        // (second review of the eighth round, N8).
        drop((sf, pf));
        let _ = std::fs::remove_file(secret_out);
        let _ = std::fs::remove_file(public_out);
        return Err(fail(e));
    }
    io.say(format_args!("{}", id.fingerprint()))
}

fn sign(o: &Opts, io: &mut Io<'_>) -> Res<()> {
    let me = identity(o)?;
    let now = o.now.unwrap_or_else(SystemTime::now);
    let p = policy(o);
    let mut st = stdin_stanza(o, io)?;
    let mode = if o.text {
        xep0027::openpgp::SigMode::Text
    } else {
        xep0027::openpgp::SigMode::Binary
    };
    signed::sign_with(&mut st, &me, mode, &p, now).map_err(fail)?;
    if o.envelope {
        envelope::seal(&mut st, &me, &p, now).map_err(fail)?;
    }
    io.say(format_args!("{st}"))
}

fn verify(o: &Opts, io: &mut Io<'_>) -> Res<()> {
    let now = o.now.unwrap_or_else(SystemTime::now);
    let p = policy(o);
    let ring = keyring(o, &p, now)?;
    let st = stdin_stanza(o, io)?;
    if let Some(note) = check_envelope(&st, &ring, &p, o)? {
        io.note(format_args!("{note}"))?;
    }
    let v = signed::verify(&st, &ring, &p, now).map_err(fail)?;
    io.say(format_args!(
        "OK {} {}{}",
        v.signer,
        xep0027::time::format(v.created),
        if v.normalized {
            " (text, whitespace-normalized)"
        } else {
            ""
        }
    ))
}

fn encrypt(o: &Opts, io: &mut Io<'_>) -> Res<()> {
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
    let mut st = stdin_stanza(o, io)?;
    encrypted::encrypt(&mut st, &me, &refs, !o.unsigned, &p, now).map_err(fail)?;
    if o.envelope {
        envelope::seal(&mut st, &me, &p, now).map_err(fail)?;
    }
    io.say(format_args!("{st}"))
}

/// Checks the envelope, when the stanza has one (signature of a key bound to the sender,
/// from/to/id/type/payload bound, stamp within the skew); returns the note to print. With
/// `--require-envelope` a stanza without one is refused: otherwise an old signed stanza with
/// its envelope stripped would still verify (XEP-0027 review F8).
fn check_envelope(st: &Stanza, ring: &Keyring, p: &Policy, o: &Opts) -> Res<Option<String>> {
    if st
        .element()
        .only_child("envelope", ns::ENVELOPE)
        .map_err(fail)?
        .is_some()
    {
        let now = o.now.unwrap_or_else(SystemTime::now);
        let mut w = ReplayWindow::new(Duration::from_secs(o.skew.unwrap_or(300)), 16);
        let c = envelope::check(st, ring, p, &mut w, now).map_err(fail)?;
        return Ok(Some(format!(
            "envelope from {} stamped {}",
            c.sender,
            xep0027::time::format(c.stamp)
        )));
    }
    if o.require_envelope {
        return Err(Failure::Failed(
            "no signed envelope (--require-envelope): nothing binds this stanza to its \
             recipient, id and time"
                .into(),
        ));
    }
    Ok(None)
}

fn decrypt(o: &Opts, io: &mut Io<'_>) -> Res<()> {
    let me = identity(o)?;
    let now = o.now.unwrap_or_else(SystemTime::now);
    let p = policy(o);
    let ring = keyring(o, &p, now)?;
    let st = stdin_stanza(o, io)?;
    let envelope_note = check_envelope(&st, &ring, &p, o)?;
    let d = encrypted::decrypt(&st, &me, &ring, &p, now).map_err(fail)?;
    match d.signature {
        Some(v) => io.note(format_args!("signed-by {}", v.signer))?,
        // Anyone can encrypt to a public key: without a signature inside, nothing says who
        // wrote it.
        None if o.allow_unsigned => io.note(format_args!("unsigned (allowed)"))?,
        None => {
            return Err(Failure::Failed(
                "the message is unsigned: anyone could have written it (--allow-unsigned to \
                 read it anyway)"
                    .into(),
            ));
        }
    }
    if let Some(note) = envelope_note {
        io.note(format_args!("{note}"))?;
    }
    io.say(format_args!("{}", d.body))
}

const TOOL: Tool = Tool {
    name: "xep0027",
    usage: "usage: xep0027 keygen|sign|verify|encrypt|decrypt [options] (xep0027 --help)",
    help: include_str!("help.txt"),
};

/// Runs one `xep0027` command line (`args` without the program name): the stanza is read from
/// `input`, results are written to `out`, reasons and notes to `err`; returns the exit code (0,
/// 1 or 2; see the crate documentation).
pub fn run(args: &[String], input: &mut dyn Read, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    crate::exit::run(&TOOL, args, out, err, |cmd, rest, out, err| {
        let o = parse_opts(rest)?;
        let io = &mut Io { input, out, err };
        match cmd {
            "keygen" => keygen(&o, io),
            "sign" => sign(&o, io),
            "verify" => verify(&o, io),
            "encrypt" => encrypt(&o, io),
            "decrypt" => decrypt(&o, io),
            other => Err(Failure::Usage(format!("unknown command {other}"))),
        }
    })
}
