//! Shibboleth SP 3.4 (Debian `libapache2-mod-shib`: Apache 2.4 + mod_shib + shibd, installed
//! by `scripts/setup.sh`) started on loopback from a private configuration in a temporary
//! directory: shibd in the foreground (`shibd -F -f -c <dir>/shibboleth2.xml`) with a private
//! `TCPListener` port; Apache in the foreground (`apache2 -DFOREGROUND -f <dir>/apache.conf`)
//! loading mod_shib with `ShibConfig <dir>/shibboleth2.xml` and protecting `/secure/` (a CGI
//! shell script printing REMOTE_USER, eppn, affiliation and Shib-Identity-Provider) with
//! `AuthType shibboleth`, `ShibRequestSetting requireSession true` and `Require valid-user`.
//! No file under /etc is written; the packages' `protocols.xml`, `attribute-policy.xml` and
//! error templates under /etc/shibboleth are read. Attributes: eppn and affiliation by OID
//! (scoped). Security policy: the package's default except MessageFlow `expires="600"`.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::signer::TestKey;

use super::{AFFILIATION, EPPN, free_port, set_mode, wait_for_port};

/// Shibboleth SP (shibd + Apache with mod_shib) running from a private configuration.
pub(crate) struct Sp {
    pub(crate) dir: tempfile::TempDir,
    shibd: Child,
    apache: Child,
    /// `http://127.0.0.1:PORT` (Apache).
    pub(crate) base: String,
    /// The SP's signing and encryption key (its `CredentialResolver`).
    pub(crate) key: TestKey,
}

impl Sp {
    /// Starts shibd and Apache for `entity_id`: `sso` is the `<SSO>` element of its
    /// `<Sessions>`, `metadata` its `<MetadataProvider>` elements; `{dir}` in either stands for
    /// the configuration directory (created first, mode 0755). `files` are written under that
    /// directory before the start.
    pub(crate) fn start(
        entity_id: &str,
        sso: &str,
        metadata: &str,
        files: &[(&str, Vec<u8>)],
    ) -> Sp {
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
        let host = entity_id.split('/').nth(2).unwrap_or("sp.interop.test");
        let sp_key = TestKey::rsa(host);
        let (key, cert) = sp_key.write_pem(d, "sp");
        for (name, content) in files {
            std::fs::write(d.join(name), content).unwrap();
        }
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
        let sso = sso.replace("{dir}", &d_s.to_string());
        let metadata = metadata.replace("{dir}", &d_s.to_string());
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
  <ApplicationDefaults entityID="{entity_id}" REMOTE_USER="eppn">
    <Sessions lifetime="28800" timeout="3600" relayState="ss:mem" checkAddress="false" handlerSSL="false" cookieProps="http" redirectLimit="exact">
      {sso}
      <Logout>Local</Logout>
      <Handler type="MetadataGenerator" Location="/Metadata" signing="false"/>
      <Handler type="Session" Location="/Session" showAttributeValues="true"/>
    </Sessions>
    <Errors supportContact="root@localhost" helpLocation="/about.html" styleSheet="/shibboleth-sp/main.css"/>
    {metadata}
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
            key: sp_key,
        }
    }

    pub(crate) fn shibd_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("shibd.log")).unwrap_or_default()
    }

    pub(crate) fn logs(&self) -> String {
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
