//! Pieces shared by the Web SSO interop tests (`shibboleth_sso`, `shibboleth_proxy`,
//! `simplesamlphp`): our IdP as a loopback HTTP server built on saml-core (the source of the
//! `saml_idp` example, `examples/saml_idp/idp.rs`, with throw-away keys), a scripted browser
//! with a cookie jar, form scraping, shibd + Apache with mod_shib from a private configuration,
//! and process helpers. Each test uses a part of it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use saml_metadata::model::EntityDescriptor;
use testkit::signer::TestKey;

pub(crate) mod shibboleth_sp;
pub(crate) mod simplesamlphp;

/// A free loopback port (bound, then released for the peer to bind).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn wait_for_port(port: u16, what: &str, child: &mut Child, log: &Path) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{what} exited ({status}) before listening: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} did not listen on {port} within 30 s: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Our in-test IdP as the users of the `saml_idp` example program get it: the same source file.
#[path = "../../../examples/saml_idp/idp.rs"]
mod idp;
#[allow(unused_imports, reason = "each test uses a part")]
pub(crate) use idp::{AFFILIATION, Case, EPPN, Idp, OTHER_SP, User};

impl Idp {
    /// Our IdP `entity_id` on a loopback port: an RSA key, an ECDSA P-256 key and a third key
    /// (same subject, not in the metadata); `metadata(sso_url, rsa, ec)` builds its metadata.
    /// Answers for alice (eppn `alice@example.org`, affiliations `member@` and
    /// `staff@example.org`). Serves `GET /sso` until the process ends.
    pub(crate) fn start(
        entity_id: &str,
        metadata: impl FnOnce(&str, &TestKey, &TestKey) -> EntityDescriptor,
    ) -> Arc<Idp> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let sso_url = format!("http://{}/sso", listener.local_addr().unwrap());
        let host = entity_id
            .split("//")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or("idp.rust.test");
        let key = TestKey::rsa(host);
        // Same subject name, another key: not in the IdP's metadata.
        let other_key = TestKey::rsa(host);
        let ec_key = TestKey::ec(openssl::nid::Nid::X9_62_PRIME256V1, host);
        let md = metadata(&sso_url, &key, &ec_key);
        assert_eq!(md.entity_id, entity_id);
        let user = User {
            eppn: "alice@example.org".into(),
            affiliations: vec!["member@example.org".into(), "staff@example.org".into()],
            display_name: None,
            mail: None,
        };
        let mut idp = Idp::new(key.signing(), md, &sso_url, user);
        idp.ec_key = Some(ec_key.signing());
        idp.other_key = Some(other_key.signing());
        let idp = Arc::new(idp);
        idp.clone().serve(listener);
        idp
    }
}

/// One HTTP answer.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A scripted browser: HTTP/1.0 on loopback, one cookie jar (every host here is 127.0.0.1).
#[derive(Default)]
pub(crate) struct Browser {
    pub(crate) cookies: BTreeMap<String, String>,
    /// Headers sent with every request (a client forging what a proxy would set).
    pub(crate) extra_headers: Vec<(String, String)>,
}

impl Browser {
    pub(crate) fn request(&mut self, method: &str, url: &str, form: Option<&str>) -> Reply {
        let rest = url.strip_prefix("http://").expect("http URL");
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut s = TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\n");
        for (k, v) in &self.extra_headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req.push_str(&format!("Cookie: {}\r\n", jar.join("; ")));
        }
        if let Some(f) = form {
            req.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{f}",
                f.len()
            ));
        } else {
            req.push_str("\r\n");
        }
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer from {url}: {raw}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        for (k, v) in &headers {
            if k.eq_ignore_ascii_case("set-cookie") {
                let pair = v.split(';').next().unwrap_or("");
                if let Some((n, val)) = pair.split_once('=') {
                    let gone = v.contains("expires=Mon, 01 Jan 2001")
                        || v.contains("01-Jan-1970")
                        || v.contains("01 Jan 1970")
                        || val.is_empty()
                        || val == "deleted";
                    if gone {
                        self.cookies.remove(n.trim());
                    } else {
                        self.cookies
                            .insert(n.trim().to_owned(), val.trim().to_owned());
                    }
                }
            }
        }
        Reply {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    pub(crate) fn get(&mut self, url: &str) -> Reply {
        self.request("GET", url, None)
    }

    /// Whether a cookie whose name starts with `prefix` is set.
    pub(crate) fn has_cookie(&self, prefix: &str) -> bool {
        self.cookies.keys().any(|k| k.starts_with(prefix))
    }

    /// GETs `url` and follows redirects (absolute or path-only `Location`), at most 10.
    pub(crate) fn follow(&mut self, url: &str) -> Reply {
        let mut url = url.to_owned();
        for _ in 0..10 {
            let r = self.get(&url);
            if !matches!(r.status, 301 | 302 | 303 | 307) {
                return r;
            }
            let to = r.header("Location").expect("Location").to_owned();
            url = if to.starts_with('/') {
                let host_end = url[7..].find('/').map_or(url.len(), |i| i + 7);
                format!("{}{to}", &url[..host_end])
            } else {
                to
            };
        }
        panic!("more than 10 redirects from {url}")
    }
}

/// The value of `name="…" value="…"` in our form page (values are HTML-escaped attributes).
pub(crate) fn form_field(page: &str, name: &str) -> Option<String> {
    let at = page.find(&format!("name=\"{name}\" value=\""))? + name.len() + 15;
    let v = &page[at..at + page[at..].find('"')?];
    Some(
        v.replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&#39;", "'")
            .replace("&amp;", "&"),
    )
}

pub(crate) fn form_action(page: &str) -> String {
    let at = page.find("action=\"").expect("form action") + 8;
    page[at..at + page[at..].find('"').unwrap()].replace("&amp;", "&")
}

pub(crate) fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Apache's modules directory, once mod_shib is known to be there.
pub(crate) fn apache_modules() -> PathBuf {
    let modules = PathBuf::from("/usr/lib/apache2/modules");
    assert!(
        modules.join("mod_shib.so").exists(),
        "mod_shib is missing: it is installed by `bash scripts/setup.sh` (libapache2-mod-shib)"
    );
    modules
}

/// The start of a private `apache.conf` for a server in `d` on `127.0.0.1:port`: prefork, the
/// authn/authz core, `modules` (names of `mod_<name>.so` with their module identifiers), mod_shib
/// with `ShibConfig <d>/shibboleth2.xml`.
pub(crate) fn apache_preamble(d: &Path, port: u16, modules: &[(&str, &str)]) -> String {
    let m = apache_modules();
    let (d, m) = (d.display(), m.display());
    let mut conf = format!(
        "ServerRoot {d}\n\
         ServerName 127.0.0.1:{port}\n\
         UseCanonicalName On\n\
         Listen 127.0.0.1:{port}\n\
         PidFile {d}/apache.pid\n\
         DefaultRuntimeDir {d}/run\n\
         ErrorLog {d}/apache-error.log\n\
         LogLevel info\n\
         User www-data\n\
         Group www-data\n\
         StartServers 1\n\
         MinSpareServers 1\n\
         MaxSpareServers 2\n\
         LoadModule mpm_prefork_module {m}/mod_mpm_prefork.so\n\
         LoadModule authz_core_module {m}/mod_authz_core.so\n\
         LoadModule authz_user_module {m}/mod_authz_user.so\n\
         LoadModule authn_core_module {m}/mod_authn_core.so\n"
    );
    for (file, id) in modules {
        conf.push_str(&format!("LoadModule {id} {m}/mod_{file}.so\n"));
    }
    conf.push_str(&format!(
        "LoadModule mod_shib {m}/mod_shib.so\nShibConfig {d}/shibboleth2.xml\n"
    ));
    conf
}

/// A Shibboleth SP: shibd and Apache (with mod_shib) in the foreground, each in its own process
/// group, from `shibboleth2.xml` and `apache.conf` in a temporary directory; stopped on drop.
pub(crate) struct ShibSp {
    pub(crate) dir: tempfile::TempDir,
    shibd: Child,
    apache: Child,
    /// `http://127.0.0.1:<web port>`.
    pub(crate) base: String,
}

impl ShibSp {
    /// Writes file loggers (`shibd.logger`, `native.logger`: log4shib's console appender is
    /// buffered when stdout is a file) for `shibd.log` and `native.log` in `d`, readable by
    /// Apache's children (www-data).
    pub(crate) fn write_loggers(d: &Path) {
        set_mode(d, 0o755);
        std::fs::create_dir_all(d.join("run")).unwrap();
        for (logger, log) in [
            ("shibd.logger", "shibd.log"),
            ("native.logger", "native.log"),
        ] {
            std::fs::write(
                d.join(logger),
                format!(
                    "log4j.rootCategory=INFO, f\n\
                     log4j.appender.f=org.apache.log4j.FileAppender\n\
                     log4j.appender.f.fileName={}\n\
                     log4j.appender.f.layout=org.apache.log4j.PatternLayout\n\
                     log4j.appender.f.layout.ConversionPattern=%p %c: %m%n\n",
                    d.join(log).display()
                ),
            )
            .unwrap();
        }
    }

    /// Starts shibd (its `TCPListener` on `shib_port`) and Apache (on `web_port`) from `dir`'s
    /// `shibboleth2.xml` and `apache.conf`, and waits for both to listen.
    pub(crate) fn start(dir: tempfile::TempDir, shib_port: u16, web_port: u16) -> ShibSp {
        let d = dir.path();
        let spawn = |cmd: &mut Command, log: &Path, what: &str| {
            cmd.process_group(0)
                .stdout(std::fs::File::create(log).unwrap())
                .stderr(Stdio::from(
                    std::fs::File::options().append(true).open(log).unwrap(),
                ))
                .spawn()
                .unwrap_or_else(|e| panic!("start {what}: {e}"))
        };
        let shibd_log = d.join("shibd.out");
        let mut shibd = spawn(
            Command::new(testkit::peers::program("shibd"))
                .args(["-F", "-f", "-c"])
                .arg(d.join("shibboleth2.xml"))
                .arg("-p")
                .arg(d.join("shibd.pid")),
            &shibd_log,
            "shibd",
        );
        wait_for_port(shib_port, "shibd", &mut shibd, &shibd_log);
        // Its own process group: Apache's parent signals its whole process group when it stops
        // (prefork's killpg), which would take the test harness (and cargo) with it.
        let apache_log = d.join("apache.out");
        let mut apache = spawn(
            Command::new(testkit::peers::program("apache2"))
                .arg("-DFOREGROUND")
                .arg("-f")
                .arg(d.join("apache.conf")),
            &apache_log,
            "apache2",
        );
        wait_for_port(web_port, "apache2", &mut apache, &apache_log);
        ShibSp {
            dir,
            shibd,
            apache,
            base: format!("http://127.0.0.1:{web_port}"),
        }
    }

    pub(crate) fn shibd_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("shibd.log")).unwrap_or_default()
    }

    pub(crate) fn logs(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!(
            "--- shibd\n{}\n{}\n--- apache\n{}\n--- apache error log\n{}\n--- native.log\n{}",
            read("shibd.out"),
            self.shibd_log(),
            read("apache.out"),
            read("apache-error.log"),
            read("native.log")
        )
    }
}

impl Drop for ShibSp {
    fn drop(&mut self) {
        // SIGTERM, so that Apache stops its children and shibd removes its listener.
        for c in [&mut self.apache, &mut self.shibd] {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
        }
        for c in [&mut self.apache, &mut self.shibd] {
            let start = Instant::now();
            while c.try_wait().ok().flatten().is_none() {
                if start.elapsed() > Duration::from_secs(10) {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
