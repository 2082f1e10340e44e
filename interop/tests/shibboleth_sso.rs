//! Web SSO with a real Shibboleth SP 3.4 (Debian `libapache2-mod-shib`: Apache 2.4 + mod_shib +
//! shibd, installed by `scripts/setup.sh`) in front of our IdP built on saml-core, everything on
//! loopback and started by the test with its own configuration in a temporary directory (no
//! file under /etc is written, no system service is used; the packages' `protocols.xml`,
//! `attribute-policy.xml` and error templates under /etc/shibboleth are read).
//!
//! - shibd runs in the foreground (`shibd -F -f -c <dir>/shibboleth2.xml`) with a private
//!   `TCPListener` port; Apache in the foreground (`apache2 -DFOREGROUND -f <dir>/apache.conf`)
//!   loads mod_shib with `ShibConfig <dir>/shibboleth2.xml` and protects `/secure/` (a CGI
//!   shell script printing its environment) with `AuthType shibboleth`,
//!   `ShibRequestSetting requireSession true` and `Require valid-user`.
//! - Shibboleth's metadata provider reads our IdP's metadata written by saml-metadata (with a
//!   `shibmd:Scope`, checked by the package's attribute filter policy); our IdP reads the SP's
//!   metadata from Shibboleth's own `MetadataGenerator` handler (`/Shibboleth.sso/Metadata`)
//!   with `saml_metadata::load::parse_unverified`, and encrypts to the key found there.
//! - Our IdP is a loopback HTTP server: it decodes Shibboleth's HTTP-Redirect AuthnRequest,
//!   checks it, and answers with saml-core's auto-post form carrying a signed Response with a
//!   signed, encrypted (AES-256-GCM, RSA-OAEP) assertion with eduPerson attributes by OID.
//! - A scripted browser (hand-written HTTP/1.0 client with a cookie jar) follows the
//!   redirects and submits the form; the protected page shows REMOTE_USER (from eppn) and the
//!   mapped attributes.
//! - Shibboleth also accepts: only the assertion signed, only the Response signed, the assertion
//!   in clear (the SP has no setting that requires encryption), AES-128-CBC, an ECDSA P-256
//!   signature (the IdP's second key); an affiliation value outside the IdP's `shibmd:Scope`
//!   is dropped by the attribute filter, the others kept.
//! - Shibboleth refuses (no session cookie, the protected page redirects to the IdP again;
//!   shibd's log line is checked): the same Response posted again (replay), another audience,
//!   an expired assertion, an unsigned Response and assertion, a Response (or only the
//!   assertion) signed by a key not in the IdP's metadata, a signed Response whose eppn was
//!   changed afterwards. Its ACS answers 500 each time.
//!
//! The security policy is the package's default (`/etc/shibboleth/security-policy.xml`) except
//! MessageFlow `expires="600"` instead of 60, so that the expired-assertion case is refused for
//! the assertion's NotOnOrAfter and not for the Response's IssueInstant.
//!
//! Run time: shibd and Apache are up in about 1 s; the whole test takes 3-4 s (debug build,
//! 2 cores shared).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use saml_core::bindings::{MessageKind, post, redirect, url_encode};
use saml_core::protocol::idp::{Encryption, ResponseBuilder, check_request};
use saml_core::protocol::xmlenc::{DataAlgorithm, KeyTransport};
use saml_core::protocol::{Attribute, AuthnRequest, NAMEID_TRANSIENT, NameId, openssl_random};
use saml_metadata::builder::RoleBuilder as _;
use saml_metadata::load;
use saml_metadata::model::{Binding, EntityDescriptor, IdpSso, Metadata};
use saml_metadata::sso;
use testkit::signer::TestKey;

const SP_ENTITY: &str = "https://sp.interop.test/shibboleth";
const IDP_ENTITY: &str = "https://idp.rust.test/idp";
const EPPN: &str = "urn:oid:1.3.6.1.4.1.5923.1.1.1.6";
const AFFILIATION: &str = "urn:oid:1.3.6.1.4.1.5923.1.1.1.9";

/// A free loopback port (bound, then released for the peer to bind).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str, child: &mut Child, log: &Path) {
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

/// What our IdP puts in its next Response.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Case {
    /// Signed Response, signed assertion encrypted with AES-256-GCM and RSA-OAEP.
    Good,
    /// The assertion signed, the Response not.
    AssertionOnlySigned,
    /// The Response signed, the assertion not.
    ResponseOnlySigned,
    /// The signed assertion in clear.
    NotEncrypted,
    /// Encrypted with AES-128-CBC.
    Aes128Cbc,
    /// Signed with the IdP's second key, ECDSA P-256.
    Ecdsa,
    /// One affiliation value outside the IdP's `shibmd:Scope`.
    ForeignScope,
    WrongAudience,
    Expired,
    Unsigned,
    WrongKey,
    /// The Response unsigned, the assertion signed by a key not in the metadata.
    WrongKeyAssertion,
    /// Signed, in clear, then eppn changed.
    Tampered,
}

/// Our IdP: its key, its metadata, the SP's metadata (once fetched) and the case to answer.
struct Idp {
    key: TestKey,
    ec_key: TestKey,
    other_key: TestKey,
    md: EntityDescriptor,
    sso_url: String,
    sp_md: Mutex<Option<EntityDescriptor>>,
    case: Mutex<Case>,
    requests: Mutex<Vec<AuthnRequest>>,
}

impl Idp {
    /// Answers `GET /sso?<query>`: the auto-post form page, or an error text.
    fn answer(&self, query: &str) -> Result<String, String> {
        let m =
            redirect::decode(query, redirect::DEFAULT_MAX_INFLATED).map_err(|e| e.to_string())?;
        let req = AuthnRequest::parse(&m.xml).map_err(|e| e.to_string())?;
        let now = SystemTime::now();
        check_request(
            &req,
            &[&self.sso_url],
            now,
            Duration::from_secs(60),
            Duration::from_secs(30),
        )
        .map_err(|e| e.to_string())?;
        let sp_md = self.sp_md.lock().unwrap().clone().ok_or("no SP metadata")?;
        if req.issuer != sp_md.entity_id {
            return Err(format!("unknown SP {}", req.issuer));
        }
        let acs = sso::acs_for(&sp_md, &req).map_err(|e| e.to_string())?;
        self.requests.lock().unwrap().push(req.clone());
        let mut b = ResponseBuilder::for_request(
            &req,
            &self.md.entity_id,
            &acs,
            NameId::new("t-7f3a9c21", NAMEID_TRANSIENT),
        );
        let case = *self.case.lock().unwrap();
        let staff = if case == Case::ForeignScope {
            "staff@evil.example"
        } else {
            "staff@example.org"
        };
        b.attributes = vec![
            Attribute::uri(EPPN, Some("eduPersonPrincipalName"), &["alice@example.org"]),
            Attribute::uri(
                AFFILIATION,
                Some("eduPersonScopedAffiliation"),
                &["member@example.org", staff],
            ),
        ];
        b.encryption = Some(Encryption {
            recipient: sso::sp_encryption_key(&sp_md)
                .map_err(|e| e.to_string())?
                .ok_or("no encryption key in the SP's metadata")?,
            algorithm: DataAlgorithm::Aes256Gcm,
            transport: KeyTransport::RsaOaepMgf1p,
        });
        let mut key = self.key.signing();
        let mut at = now;
        match case {
            Case::Good | Case::ForeignScope => {}
            Case::AssertionOnlySigned => b.sign_response = false,
            Case::ResponseOnlySigned => b.sign_assertion = false,
            Case::NotEncrypted | Case::Tampered => b.encryption = None,
            Case::Aes128Cbc => {
                if let Some(e) = &mut b.encryption {
                    e.algorithm = DataAlgorithm::Aes128Cbc;
                }
            }
            Case::Ecdsa => key = self.ec_key.signing(),
            Case::WrongAudience => {
                b.sp_entity_id = "https://other-sp.interop.test/shibboleth".into()
            }
            Case::Expired => {
                // Issued 400 s ago for 60 s: NotOnOrAfter 340 s in the past (skew 180 s).
                at = now - Duration::from_secs(400);
                b.lifetime = Duration::from_secs(60);
            }
            Case::Unsigned => {
                b.sign_assertion = false;
                b.sign_response = false;
            }
            Case::WrongKey => key = self.other_key.signing(),
            Case::WrongKeyAssertion => {
                b.sign_response = false;
                key = self.other_key.signing();
            }
        }
        let mut xml = b
            .build(&key, at, &mut openssl_random)
            .map_err(|e| e.to_string())?;
        if case == Case::Tampered {
            xml = String::from_utf8(xml)
                .unwrap()
                .replace("alice@example.org", "mallory@example.org")
                .into_bytes();
        }
        post::form(&acs, MessageKind::Response, &xml, m.relay_state.as_deref())
            .map_err(|e| e.to_string())
    }

    /// Serves `GET /sso` on `listener` until the process ends.
    fn serve(self: Arc<Self>, listener: TcpListener) {
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { return };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap_or(0);
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let target = line.split(' ').nth(1).unwrap_or("");
                let (status, body) = match target.strip_prefix("/sso?") {
                    Some(q) => match self.answer(q) {
                        Ok(page) => ("200 OK", page),
                        Err(e) => ("400 Bad Request", e),
                    },
                    None => ("404 Not Found", "not found".to_owned()),
                };
                let _ = s.write_all(&testkit::http::http(
                    status,
                    &[("Content-Type", "text/html; charset=utf-8")],
                    body.as_bytes(),
                ));
            }
        });
    }
}

/// One HTTP answer.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A scripted browser: HTTP/1.0 on loopback, one cookie jar (every host here is 127.0.0.1).
#[derive(Default)]
struct Browser {
    cookies: BTreeMap<String, String>,
}

impl Browser {
    fn request(&mut self, method: &str, url: &str, form: Option<&str>) -> Reply {
        let rest = url.strip_prefix("http://").expect("http URL");
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut s = TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\n");
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
                    if v.contains("expires=Mon, 01 Jan 2001") || val.is_empty() {
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

    fn get(&mut self, url: &str) -> Reply {
        self.request("GET", url, None)
    }

    fn has_session(&self) -> bool {
        self.cookies.keys().any(|k| k.starts_with("_shibsession_"))
    }
}

/// The value of `name="…" value="…"` in our form page (values are HTML-escaped attributes).
fn form_field(page: &str, name: &str) -> Option<String> {
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

fn form_action(page: &str) -> String {
    let at = page.find("action=\"").expect("form action") + 8;
    page[at..at + page[at..].find('"').unwrap()].replace("&amp;", "&")
}

/// Shibboleth SP (shibd + Apache with mod_shib) running from a private configuration.
struct Sp {
    dir: tempfile::TempDir,
    shibd: Child,
    apache: Child,
    base: String,
}

impl Sp {
    fn start(idp_md: &[u8]) -> Sp {
        let shibd_bin = testkit::peers::program("shibd");
        let apache_bin = testkit::peers::program("apache2");
        let modules = Path::new("/usr/lib/apache2/modules");
        assert!(
            modules.join("mod_shib.so").exists(),
            "mod_shib is missing: it is installed by `bash scripts/setup.sh` (libapache2-mod-shib)"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Apache's children run as www-data and read the configuration and the CGI script.
        set_mode(d, 0o755);
        let (shib_port, web_port) = (free_port(), free_port());
        let base = format!("http://127.0.0.1:{web_port}");
        let sp_key = TestKey::rsa("sp.interop.test");
        let (key, cert) = sp_key.write_pem(d, "sp");
        std::fs::write(d.join("idp-metadata.xml"), idp_md).unwrap();
        // File appenders: log4shib's console appender is buffered when stdout is a file.
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
        std::fs::write(
            d.join("attribute-map.xml"),
            format!(
                r#"<Attributes xmlns="urn:mace:shibboleth:2.0:attribute-map" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <Attribute name="{EPPN}" id="eppn"><AttributeDecoder xsi:type="ScopedAttributeDecoder"/></Attribute>
  <Attribute name="{AFFILIATION}" id="affiliation"><AttributeDecoder xsi:type="ScopedAttributeDecoder" caseSensitive="false"/></Attribute>
</Attributes>
"#
            ),
        )
        .unwrap();
        let d_s = d.display();
        std::fs::write(
            d.join("shibboleth2.xml"),
            format!(
                r#"<SPConfig xmlns="urn:mace:shibboleth:3.0:native:sp:config" clockSkew="180">
  <OutOfProcess logger="{d_s}/shibd.logger"/>
  <InProcess logger="{d_s}/native.logger"/>
  <TCPListener address="127.0.0.1" port="{shib_port}" acl="127.0.0.1"/>
  <StorageService type="Memory" id="mem" cleanupInterval="900"/>
  <SessionCache type="StorageService" StorageService="mem" cacheAssertions="false" cacheAllowance="900" inprocTimeout="900" cleanupInterval="900"/>
  <ReplayCache StorageService="mem"/>
  <ApplicationDefaults entityID="{SP_ENTITY}" REMOTE_USER="eppn">
    <Sessions lifetime="28800" timeout="3600" relayState="ss:mem" checkAddress="false" handlerSSL="false" cookieProps="http" redirectLimit="exact">
      <SSO entityID="{IDP_ENTITY}">SAML2</SSO>
      <Logout>Local</Logout>
      <Handler type="MetadataGenerator" Location="/Metadata" signing="false"/>
      <Handler type="Session" Location="/Session" showAttributeValues="true"/>
    </Sessions>
    <Errors supportContact="root@localhost" helpLocation="/about.html" styleSheet="/shibboleth-sp/main.css"/>
    <MetadataProvider type="XML" validate="true" path="{d_s}/idp-metadata.xml"/>
    <AttributeExtractor type="XML" validate="true" reloadChanges="false" path="{d_s}/attribute-map.xml"/>
    <AttributeFilter type="XML" validate="true" path="/etc/shibboleth/attribute-policy.xml"/>
    <CredentialResolver type="File" key="{key}" certificate="{cert}"/>
  </ApplicationDefaults>
  <SecurityPolicyProvider type="XML" validate="true">
    <SecurityPolicies>
      <Policy id="default" validate="false">
        <PolicyRule type="MessageFlow" checkReplay="true" expires="600"/>
        <PolicyRule type="Conditions">
          <PolicyRule type="Audience"/>
        </PolicyRule>
        <PolicyRule type="ClientCertAuth" errorFatal="true"/>
        <PolicyRule type="XMLSigning" errorFatal="true"/>
        <PolicyRule type="SimpleSigning" errorFatal="true"/>
      </Policy>
      <ExcludedAlgorithms excludeDefaults="true"/>
    </SecurityPolicies>
  </SecurityPolicyProvider>
  <ProtocolProvider type="XML" validate="true" reloadChanges="false" path="/etc/shibboleth/protocols.xml"/>
</SPConfig>
"#,
                key = key.display(),
                cert = cert.display(),
            ),
        )
        .unwrap();
        std::fs::create_dir(d.join("cgi")).unwrap();
        std::fs::create_dir(d.join("run")).unwrap();
        let script = d.join("cgi/env");
        std::fs::write(
            &script,
            "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"REMOTE_USER=$REMOTE_USER\"\necho \"eppn=$eppn\"\necho \"affiliation=$affiliation\"\necho \"Shib-Identity-Provider=$Shib_Identity_Provider\"\n",
        )
        .unwrap();
        set_mode(&script, 0o755);
        let m = modules.display();
        std::fs::write(
            d.join("apache.conf"),
            format!(
                r#"ServerRoot {d_s}
ServerName 127.0.0.1:{web_port}
UseCanonicalName On
Listen 127.0.0.1:{web_port}
PidFile {d_s}/apache.pid
DefaultRuntimeDir {d_s}/run
ErrorLog {d_s}/apache-error.log
LogLevel info
User www-data
Group www-data
LoadModule mpm_prefork_module {m}/mod_mpm_prefork.so
LoadModule authz_core_module {m}/mod_authz_core.so
LoadModule authz_user_module {m}/mod_authz_user.so
LoadModule authn_core_module {m}/mod_authn_core.so
LoadModule alias_module {m}/mod_alias.so
LoadModule cgi_module {m}/mod_cgi.so
LoadModule mod_shib {m}/mod_shib.so
ShibConfig {d_s}/shibboleth2.xml
StartServers 1
MinSpareServers 1
MaxSpareServers 2
ScriptAlias /secure/ {d_s}/cgi/
<Location /Shibboleth.sso>
  SetHandler shib
</Location>
<Location /secure>
  AuthType shibboleth
  ShibRequestSetting requireSession true
  Require valid-user
</Location>
"#
            ),
        )
        .unwrap();

        let shibd_log = d.join("shibd.out");
        let mut shibd = Command::new(shibd_bin)
            .process_group(0)
            .args(["-F", "-f", "-c"])
            .arg(d.join("shibboleth2.xml"))
            .arg("-p")
            .arg(d.join("shibd.pid"))
            .stdout(std::fs::File::create(&shibd_log).unwrap())
            .stderr(Stdio::from(
                std::fs::File::options()
                    .append(true)
                    .open(&shibd_log)
                    .unwrap(),
            ))
            .spawn()
            .expect("start shibd");
        wait_for_port(shib_port, "shibd", &mut shibd, &shibd_log);
        let apache_log = d.join("apache.out");
        // Its own process group: Apache's parent signals its whole process group when it stops
        // (prefork's killpg), which would take the test harness (and cargo) with it.
        let mut apache = Command::new(apache_bin)
            .process_group(0)
            .arg("-DFOREGROUND")
            .arg("-f")
            .arg(d.join("apache.conf"))
            .stdout(std::fs::File::create(&apache_log).unwrap())
            .stderr(Stdio::from(
                std::fs::File::options()
                    .append(true)
                    .open(&apache_log)
                    .unwrap(),
            ))
            .spawn()
            .expect("start apache2");
        wait_for_port(web_port, "apache2", &mut apache, &apache_log);
        Sp {
            dir,
            shibd,
            apache,
            base,
        }
    }

    fn shibd_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("shibd.log")).unwrap_or_default()
    }

    fn logs(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!(
            "--- shibd\n{}\n{}\n--- apache error log\n{}\n--- native.log\n{}",
            read("shibd.out"),
            self.shibd_log(),
            read("apache-error.log"),
            read("native.log")
        )
    }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Drop for Sp {
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

/// One login through the browser: protected page -> Shibboleth's redirect to our IdP -> our
/// form -> POST to Shibboleth's ACS. Returns the ACS's reply, the form body posted and the
/// Response it carried.
fn login(sp: &Sp, idp: &Idp, browser: &mut Browser) -> (Reply, String, Vec<u8>) {
    let first = browser.get(&format!("{}/secure/env", sp.base));
    assert_eq!(
        first.status, 302,
        "protected page without a session: {}",
        first.body
    );
    let to_idp = first.header("Location").unwrap().to_owned();
    assert!(
        to_idp.starts_with(&format!("{}?SAMLRequest=", idp.sso_url)),
        "{to_idp}"
    );
    let page = browser.get(&to_idp);
    assert_eq!(page.status, 200, "our IdP refused: {}", page.body);
    let action = form_action(&page.body);
    assert_eq!(action, format!("{}/Shibboleth.sso/SAML2/POST", sp.base));
    let response = form_field(&page.body, "SAMLResponse").expect("SAMLResponse");
    let relay = form_field(&page.body, "RelayState").expect("RelayState");
    let body = format!(
        "SAMLResponse={}&RelayState={}",
        url_encode(&response),
        url_encode(&relay)
    );
    let xml = post::decode(&response, post::DEFAULT_MAX_MESSAGE).unwrap();
    (browser.request("POST", &action, Some(&body)), body, xml)
}

/// After an accepted login: follows the ACS's redirect back to the protected page and returns
/// what the page printed.
fn protected_page(sp: &Sp, b: &mut Browser, acs: &Reply) -> String {
    assert_eq!(acs.status, 302, "ACS refused: {}\n{}", acs.body, sp.logs());
    assert!(b.has_session(), "{:?}", b.cookies);
    let back = acs.header("Location").unwrap().to_owned();
    assert_eq!(back, format!("{}/secure/env", sp.base));
    let page = b.get(&back);
    assert_eq!(page.status, 200, "{}\n{}", page.body, sp.logs());
    assert!(
        page.body.contains("REMOTE_USER=alice@example.org\n"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("eppn=alice@example.org\n"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(&format!("Shib-Identity-Provider={IDP_ENTITY}\n")),
        "{}",
        page.body
    );
    page.body
}

#[test]
fn shibboleth_sp_web_sso_with_our_idp() {
    let t0 = Instant::now();
    let idp_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let sso_url = format!("http://{}/sso", idp_listener.local_addr().unwrap());
    let key = TestKey::rsa("idp.rust.test");
    // Same subject name, another key: not in the IdP's metadata.
    let other_key = TestKey::rsa("idp.rust.test");
    let ec_key = TestKey::ec(openssl::nid::Nid::X9_62_PRIME256V1, "idp.rust.test");
    let md = EntityDescriptor::builder(IDP_ENTITY)
        .idp(
            IdpSso::builder()
                .signing_certificate(key.cert_der())
                .signing_certificate(ec_key.cert_der())
                .scope("example.org", false)
                .sso(Binding::HttpRedirect, &sso_url),
        )
        .build()
        .unwrap();
    let sp = Sp::start(md.to_xml().unwrap().as_bytes());
    let idp = Arc::new(Idp {
        key,
        ec_key,
        other_key,
        md,
        sso_url,
        sp_md: Mutex::new(None),
        case: Mutex::new(Case::Good),
        requests: Mutex::new(Vec::new()),
    });
    idp.clone().serve(idp_listener);
    let started = t0.elapsed();

    // Shibboleth's generated SP metadata, read by saml-metadata: the ACS and the encryption key.
    let mut b = Browser::default();
    let got = b.get(&format!("{}/Shibboleth.sso/Metadata", sp.base));
    assert_eq!(got.status, 200, "{}\n{}", got.body, sp.logs());
    let Metadata::Entity(sp_md) = load::parse_unverified(got.body.as_bytes()).unwrap() else {
        panic!("not an EntityDescriptor: {}", got.body)
    };
    assert_eq!(sp_md.entity_id, SP_ENTITY);
    assert!(sso::sp_encryption_key(&sp_md).unwrap().is_some());
    *idp.sp_md.lock().unwrap() = Some(*sp_md);

    // The good case: the Response carried an EncryptedAssertion only.
    let mut b = Browser::default();
    let (acs, posted, xml) = login(&sp, &idp, &mut b);
    let xml = String::from_utf8(xml).unwrap();
    assert!(xml.contains("EncryptedAssertion") && !xml.contains("<saml:Assertion"));
    let page = protected_page(&sp, &mut b, &acs);
    assert!(
        page.contains("affiliation=member@example.org;staff@example.org\n"),
        "{page}"
    );
    // The request Shibboleth sent: its own entityID, the ACS of its metadata.
    let req = idp.requests.lock().unwrap().last().cloned().unwrap();
    assert_eq!(req.issuer, SP_ENTITY);
    assert_eq!(
        req.acs_url.as_deref(),
        Some(format!("{}/Shibboleth.sso/SAML2/POST", sp.base).as_str())
    );

    // The same Response posted again, from another browser: refused as a replay.
    let before = sp.shibd_log().len();
    let mut thief = Browser::default();
    let again = thief.request(
        "POST",
        &format!("{}/Shibboleth.sso/SAML2/POST", sp.base),
        Some(&posted),
    );
    let log = sp.shibd_log()[before..].to_owned();
    assert_ne!(again.status, 302, "replay accepted: {}\n{log}", again.body);
    assert!(!thief.has_session());
    assert!(log.to_lowercase().contains("replay"), "{log}");

    // Accepted variants, with the affiliation values Shibboleth kept.
    for (case, affiliation) in [
        (
            Case::AssertionOnlySigned,
            "member@example.org;staff@example.org",
        ),
        (
            Case::ResponseOnlySigned,
            "member@example.org;staff@example.org",
        ),
        (Case::NotEncrypted, "member@example.org;staff@example.org"),
        (Case::Aes128Cbc, "member@example.org;staff@example.org"),
        (Case::Ecdsa, "member@example.org;staff@example.org"),
        // The package's attribute filter policy drops the value outside the IdP's Scope.
        (Case::ForeignScope, "member@example.org"),
    ] {
        *idp.case.lock().unwrap() = case;
        let mut b = Browser::default();
        let (acs, _, _) = login(&sp, &idp, &mut b);
        let page = protected_page(&sp, &mut b, &acs);
        assert!(
            page.contains(&format!("affiliation={affiliation}\n")),
            "{case:?}: {page}"
        );
    }
    let good = t0.elapsed();

    // Each refused: no session, the protected page is not shown (another redirect to the IdP).
    let cases = [
        (Case::WrongAudience, "audience"),
        (Case::Expired, "no longer valid"),
        (Case::Unsigned, "unable to establish security"),
        (Case::WrongKey, "signature"),
        (Case::WrongKeyAssertion, "signature"),
        (Case::Tampered, "signature"),
    ];
    let mut seen = Vec::new();
    for (case, word) in cases {
        *idp.case.lock().unwrap() = case;
        let before = sp.shibd_log().len();
        let mut b = Browser::default();
        let (acs, _, _) = login(&sp, &idp, &mut b);
        let log = sp.shibd_log()[before..].to_owned();
        assert_ne!(acs.status, 302, "{case:?} accepted: {}\n{log}", acs.body);
        assert!(!b.has_session(), "{case:?}: {:?}", b.cookies);
        let again = b.get(&format!("{}/secure/env", sp.base));
        assert_eq!(
            again.status, 302,
            "{case:?}: protected page shown: {}",
            again.body
        );
        assert!(
            log.to_lowercase().contains(word),
            "{case:?}: shibd did not say {word:?}: {log}"
        );
        let reason = log
            .lines()
            .filter(|l| l.starts_with("ERROR") || l.starts_with("WARN"))
            .collect::<Vec<_>>()
            .join(" | ");
        seen.push(format!("{case:?}: HTTP {} ({reason})", acs.status));
    }
    eprintln!(
        "Shibboleth SP up in {started:?}; good login, replay and accepted variants done at {good:?}; all at {:?}\n{}",
        t0.elapsed(),
        seen.join("\n")
    );
}
