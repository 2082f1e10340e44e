//! A driver for the `gpg` command (GnuPG 2.2, Debian's `gnupg`): the independent OpenPGP
//! implementation the XEP-0027 interop tests, the demo and the benches run against. Each
//! [`Gpg`] has its own throw-away home directory (keys never touch the user's keyring) and is
//! used non-interactively (`--batch`, loopback pinentry, empty passphrases). Results are read
//! from `--status-fd` lines, the machine interface gpg documents (doc/DETAILS).
//!
//! [`Gpg::new`] fails loudly when gpg is missing: tests that need the peer must not skip.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A gpg with its own home directory.
#[derive(Debug)]
pub struct Gpg {
    home: tempfile::TempDir,
}

/// Key algorithms for [`Gpg::gen_key`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgo {
    /// RSA-2048 primary (sign, certify) and RSA-2048 encryption subkey.
    Rsa2048,
    /// Ed25519 primary (sign, certify) and Cv25519 encryption subkey.
    Ed25519,
}

/// What `gpg --verify` / `--decrypt` reported.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// `VALIDSIG`: the fingerprint of the signing key's primary key, when a signature was good.
    pub valid_sig: Option<String>,
    /// `DECRYPTION_OKAY` was reported.
    pub decrypted: bool,
    /// The raw status lines.
    pub lines: Vec<String>,
}

/// The result of running gpg.
pub type Result<T> = std::result::Result<T, String>;

impl Gpg {
    /// A gpg with a fresh home directory. Fails when `gpg` is not installed.
    pub fn new() -> Result<Gpg> {
        let v = Command::new("gpg")
            .arg("--version")
            .output()
            .map_err(|e| format!("gpg is not installed (run scripts/setup.sh): {e}"))?;
        if !v.status.success() {
            return Err("gpg --version failed".into());
        }
        // A short path: gpg-agent's socket path must fit in sun_path.
        let home = tempfile::Builder::new()
            .prefix("gpg")
            .tempdir_in("/tmp")
            .map_err(|e| e.to_string())?;
        Ok(Gpg { home })
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("gpg");
        c.arg("--homedir").arg(self.home.path()).args([
            "--batch",
            "--no-tty",
            "--quiet",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--trust-model",
            "always",
            "--status-fd",
            "2",
        ]);
        c
    }

    /// Runs gpg with `args`, `stdin` as input; returns stdout and the status lines.
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Result<(Vec<u8>, Status)> {
        let mut child = self
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("gpg: {e}"))?;
        if let Some(mut i) = child.stdin.take() {
            i.write_all(stdin).map_err(|e| format!("gpg stdin: {e}"))?;
        }
        let out = child.wait_with_output().map_err(|e| format!("gpg: {e}"))?;
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let mut st = Status::default();
        for l in err.lines() {
            if let Some(rest) = l.strip_prefix("[GNUPG:] ") {
                if let Some(v) = rest.strip_prefix("VALIDSIG ") {
                    // VALIDSIG <fpr> <date> ... <primary-fpr> (the 10th field).
                    let f: Vec<&str> = v.split(' ').collect();
                    st.valid_sig = f.get(9).or(f.first()).map(|s| s.to_string());
                }
                if rest.starts_with("DECRYPTION_OKAY") {
                    st.decrypted = true;
                }
                st.lines.push(rest.to_owned());
            }
        }
        if !out.status.success() {
            return Err(format!("gpg {args:?} failed ({}): {err}", out.status));
        }
        Ok((out.stdout, st))
    }

    /// Generates a key without passphrase for `uid`; returns its fingerprint.
    pub fn gen_key(&self, uid: &str, algo: KeyAlgo) -> Result<String> {
        self.gen_key_expiring(uid, algo, "never")
    }

    /// [`Gpg::gen_key`] with an expiry (`never`, `1d`, `2y`...).
    pub fn gen_key_expiring(&self, uid: &str, algo: KeyAlgo, expire: &str) -> Result<String> {
        let (primary, sub) = match algo {
            KeyAlgo::Rsa2048 => ("rsa2048", "rsa2048"),
            KeyAlgo::Ed25519 => ("ed25519", "cv25519"),
        };
        self.run(
            &["--quick-generate-key", uid, primary, "sign,cert", expire],
            b"",
        )?;
        let fpr = self.fingerprint(uid)?;
        self.run(&["--quick-add-key", &fpr, sub, "encr", expire], b"")?;
        Ok(fpr)
    }

    /// The primary fingerprint of the key with this User ID.
    pub fn fingerprint(&self, uid: &str) -> Result<String> {
        let (out, _) = self.run(&["--with-colons", "--list-keys", &format!("={uid}")], b"")?;
        String::from_utf8_lossy(&out)
            .lines()
            .find_map(|l| {
                l.strip_prefix("fpr:")
                    .map(|r| r.trim_matches(':').to_owned())
            })
            .ok_or_else(|| format!("no key for {uid}"))
    }

    /// `gpg --export` (binary) of one key.
    pub fn export(&self, fpr: &str) -> Result<Vec<u8>> {
        Ok(self.run(&["--export", fpr], b"")?.0)
    }

    /// `gpg --export-secret-keys` (binary) of one key.
    pub fn export_secret(&self, fpr: &str) -> Result<Vec<u8>> {
        Ok(self.run(&["--export-secret-keys", fpr], b"")?.0)
    }

    /// `gpg --import` of keys (public or secret, binary or armored).
    pub fn import(&self, keys: &[u8]) -> Result<()> {
        self.run(&["--import"], keys).map(|_| ())
    }

    /// An armored detached signature of `data` by `fpr` (`--textmode` when `text`; `digest`
    /// such as "SHA256" or "SHA1").
    pub fn detach_sign(&self, fpr: &str, data: &[u8], text: bool, digest: &str) -> Result<String> {
        let mut args = vec![
            "--armor",
            "--local-user",
            fpr,
            "--digest-algo",
            digest,
            "--detach-sign",
        ];
        if text {
            args.insert(0, "--textmode");
        }
        let (out, _) = self.run(&args, data)?;
        String::from_utf8(out).map_err(|e| e.to_string())
    }

    /// A clearsigned document of `text` by `fpr` (what clearsign-based clients start from).
    pub fn clearsign(&self, fpr: &str, text: &[u8]) -> Result<String> {
        let (out, _) = self.run(&["--armor", "--local-user", fpr, "--clearsign"], text)?;
        String::from_utf8(out).map_err(|e| e.to_string())
    }

    fn temp_file(&self, name: &str, data: &[u8]) -> Result<PathBuf> {
        let p = self.home.path().join(name);
        std::fs::write(&p, data).map_err(|e| e.to_string())?;
        Ok(p)
    }

    /// `gpg --verify sig data`: `Ok` with the status when a signature is good.
    pub fn verify_detached(&self, armored_sig: &str, data: &[u8]) -> Result<Status> {
        let sig = self.temp_file("sig.asc", armored_sig.as_bytes())?;
        let dat = self.temp_file("data", data)?;
        let (_, st) = self.run(
            &["--verify", &sig.to_string_lossy(), &dat.to_string_lossy()],
            b"",
        )?;
        if st.valid_sig.is_none() {
            return Err(format!("no valid signature: {:?}", st.lines));
        }
        Ok(st)
    }

    /// `gpg --armor --encrypt` to `recipients` (gpg's defaults: compressed), signed by `signer`.
    pub fn encrypt(
        &self,
        recipients: &[&str],
        data: &[u8],
        signer: Option<&str>,
    ) -> Result<String> {
        let mut args = vec!["--armor"];
        for r in recipients {
            args.push("--recipient");
            args.push(r);
        }
        if let Some(s) = signer {
            args.extend(["--local-user", s, "--sign"]);
        }
        args.push("--encrypt");
        let (out, _) = self.run(&args, data)?;
        String::from_utf8(out).map_err(|e| e.to_string())
    }

    /// `gpg --decrypt` of an armored message: the plaintext and the status.
    pub fn decrypt(&self, armored: &str) -> Result<(Vec<u8>, Status)> {
        self.run(&["--decrypt"], armored.as_bytes())
    }

    /// Rebuilds armor from XEP-0027 element text (`kind` is `SIGNATURE` or `MESSAGE`), the way
    /// a classic client hands it back to gpg.
    pub fn rearmor(kind: &str, stripped: &str) -> String {
        let lines: Vec<&str> = stripped.split_whitespace().collect();
        format!(
            "-----BEGIN PGP {kind}-----\n\n{}\n-----END PGP {kind}-----\n",
            lines.join("\n")
        )
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--kill", "all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
