//! A minimal XMPP client over plain TCP (RFC 6120): stream header, SASL PLAIN, resource
//! binding, then stanzas in and out. Enough to carry XEP-0027 stanzas through a real XMPP
//! server (Prosody in the interop test), never meant as a general client: no TLS (loopback
//! only), no stream management, one stanza at a time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine as _;
use quick_xml::events::Event;
use quick_xml::reader::Reader;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// A connected, authenticated, bound client.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The full JID the server bound.
    pub jid: String,
}

impl Client {
    /// Connects to `addr`, opens a stream to `domain`, authenticates `user` with SASL PLAIN
    /// and binds `resource`.
    pub fn connect(
        addr: &str,
        domain: &str,
        user: &str,
        password: &str,
        resource: &str,
    ) -> Res<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut c = Client {
            stream,
            buf: Vec::new(),
            jid: String::new(),
        };
        c.open(domain)?;
        let features = c.next_element()?;
        if !features.contains("PLAIN") {
            return Err(format!("server offers no PLAIN: {features}").into());
        }
        let creds =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        c.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>"
        ))?;
        let outcome = c.next_element()?;
        if !outcome.starts_with("<success") {
            return Err(format!("SASL failed: {outcome}").into());
        }
        c.open(domain)?;
        let _features = c.next_element()?;
        c.send(&format!("<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"))?;
        let bound = c.next_element()?;
        let jid = bound
            .split("<jid>")
            .nth(1)
            .and_then(|r| r.split("</jid>").next())
            .ok_or_else(|| format!("no bound JID: {bound}"))?;
        c.jid = jid.to_owned();
        Ok(c)
    }

    fn open(&mut self, domain: &str) -> Res<()> {
        self.send(&format!("<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"))?;
        // Consume the server's stream header, up to the '>' that closes <stream:stream ...>.
        loop {
            let text = String::from_utf8_lossy(&self.buf).into_owned();
            if let Some(start) = text.find("<stream:stream")
                && let Some(end) = text[start..].find('>')
            {
                self.buf.drain(..start + end + 1);
                return Ok(());
            }
            self.fill()?;
        }
    }

    fn fill(&mut self) -> Res<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err("the server closed the stream".into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Sends raw XML (one stanza or a stream element).
    pub fn send(&mut self, xml: &str) -> Res<()> {
        self.stream.write_all(xml.as_bytes())?;
        Ok(())
    }

    /// The next top-level element the server sends, as text.
    pub fn next_element(&mut self) -> Res<String> {
        loop {
            if let Some(len) = complete_element(&self.buf) {
                let el: Vec<u8> = self.buf.drain(..len).collect();
                let s = String::from_utf8(el)?;
                let trimmed = s.trim();
                if trimmed.is_empty() {
                    continue;
                }
                return Ok(trimmed.to_owned());
            }
            self.fill()?;
        }
    }

    /// The next `<message/>` or `<presence/>` whose text contains `needle` (others skipped:
    /// presence echoes and broadcasts, MUC subject and history messages).
    pub fn next_stanza_matching(&mut self, needle: &str) -> Res<String> {
        loop {
            let el = self.next_stanza()?;
            if el.contains(needle) {
                return Ok(el);
            }
        }
    }

    /// The next `<message/>` or `<presence/>` (other stanzas, such as iq results, skipped).
    pub fn next_stanza(&mut self) -> Res<String> {
        loop {
            let el = self.next_element()?;
            if el.starts_with("<message") || el.starts_with("<presence") {
                return Ok(el);
            }
        }
    }
}

/// The length of the first complete element at the start of `buf` (leading whitespace
/// included), if it is all there.
fn complete_element(buf: &[u8]) -> Option<usize> {
    let text = match std::str::from_utf8(buf) {
        Ok(t) => t,
        Err(e) => std::str::from_utf8(&buf[..e.valid_up_to()]).ok()?,
    };
    let mut r = Reader::from_str(text);
    r.config_mut().check_end_names = false;
    let mut depth = 0usize;
    loop {
        match r.read_event() {
            Ok(Event::Start(_)) => depth += 1,
            Ok(Event::Empty(_)) if depth == 0 => return Some(r.buffer_position() as usize),
            Ok(Event::End(_)) => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(r.buffer_position() as usize);
                }
            }
            Ok(Event::Eof) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// A Prosody server of its own on loopback: a temporary configuration and data directory,
/// one virtual host and a MUC component, users registered with `prosodyctl`. Killed on drop.
#[derive(Debug)]
pub struct Prosody {
    child: std::process::Child,
    dir: tempfile::TempDir,
    /// `127.0.0.1:<port>` of its c2s listener.
    pub addr: String,
}

impl Prosody {
    /// Starts Prosody for `domain` with the MUC service `muc`, registering `users` (name,
    /// password). Fails when prosody is not installed.
    pub fn start(domain: &str, muc: &str, users: &[(&str, &str)]) -> Res<Prosody> {
        let dir = tempfile::Builder::new().prefix("prosody").tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let d = dir.path().display();
        let cfg = format!(
            r#"pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
run_as_root = true
log = {{ info = "{d}/prosody.log" }}
certificates = "{d}"
c2s_ports = {{ {port} }}
c2s_interfaces = {{ "127.0.0.1" }}
s2s_ports = {{ }}
component_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
storage = "internal"
modules_enabled = {{ "roster", "saslauth", "disco", "ping" }}
modules_disabled = {{ "s2s", "tls" }}
VirtualHost "{domain}"
Component "{muc}" "muc"
    muc_room_locking = false
    restrict_room_creation = false
"#
        );
        std::fs::create_dir_all(dir.path().join("data"))?;
        let cfg_path = dir.path().join("prosody.cfg.lua");
        std::fs::write(&cfg_path, cfg)?;
        for (user, pass) in users {
            let st = std::process::Command::new("prosodyctl")
                .arg("--config")
                .arg(&cfg_path)
                .args(["register", user, domain, pass])
                .output()
                .map_err(|e| format!("prosodyctl is not installed (run scripts/setup.sh): {e}"))?;
            if !st.status.success() {
                return Err(format!(
                    "prosodyctl register {user}: {}",
                    String::from_utf8_lossy(&st.stderr)
                )
                .into());
            }
        }
        let child = std::process::Command::new("prosody")
            .arg("--config")
            .arg(&cfg_path)
            .arg("-F")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("prosody is not installed (run scripts/setup.sh): {e}"))?;
        let addr = format!("127.0.0.1:{port}");
        let mut p = Prosody { child, dir, addr };
        for _ in 0..100 {
            if TcpStream::connect(&p.addr).is_ok() {
                return Ok(p);
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                let log =
                    std::fs::read_to_string(p.dir.path().join("prosody.log")).unwrap_or_default();
                return Err(format!("prosody exited ({status}): {log}").into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("prosody did not start listening".into())
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
