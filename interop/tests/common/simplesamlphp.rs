//! SimpleSAMLphp 1.19 (Debian `simplesamlphp`, PHP 8.2 with php-xml, php-mbstring and php-curl,
//! installed by `scripts/setup.sh`) on PHP's built-in server (`php -S 127.0.0.1:PORT -t
//! /usr/share/simplesamlphp/www`) with `SIMPLESAMLPHP_CONFIG_DIR` pointing at a private
//! configuration in a temporary directory (config.php, authsources.php with
//! `exampleauth:UserPass` user alice, metadata, keys, logs, PHP sessions).

use std::path::Path;
use std::process::{Child, Command, Stdio};

use saml_core::bindings::{redirect, url_encode};

use super::{Browser, Reply, form_action, form_field, free_port, wait_for_port};

/// SimpleSAMLphp on PHP's built-in server with a private configuration.
pub(crate) struct Ssp {
    pub(crate) dir: tempfile::TempDir,
    php: Child,
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
}

impl Ssp {
    /// Starts SimpleSAMLphp with `authsources` (PHP array entries), `sources` (entries of
    /// `metadata.sources`) and `files` written under the configuration directory first
    /// (`metadata/...`, `cert/...`). `{dir}` in any of them stands for that directory.
    pub(crate) fn start(
        saml20_idp: bool,
        authsources: &str,
        sources: &str,
        files: &[(&str, Vec<u8>)],
    ) -> Ssp {
        let php = testkit::peers::program("php");
        let www = Path::new("/usr/share/simplesamlphp/www");
        assert!(
            www.join("module.php").exists(),
            "SimpleSAMLphp is missing: it is installed by `bash scripts/setup.sh` (simplesamlphp)"
        );
        let modules = Command::new(&php).arg("-m").output().expect("php -m");
        let modules = String::from_utf8_lossy(&modules.stdout).to_lowercase();
        for m in ["dom", "simplexml", "mbstring", "openssl", "curl"] {
            assert!(
                modules.lines().any(|l| l.trim() == m),
                "PHP extension {m} is missing: `bash scripts/setup.sh` installs php-xml, php-mbstring and php-curl"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let d_s = d.display().to_string();
        for sub in [
            "config", "metadata", "cert", "log", "data", "tmp", "sessions",
        ] {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        for (name, content) in files {
            let text = String::from_utf8(content.clone())
                .map(|t| t.replace("{dir}", &d_s).into_bytes())
                .unwrap_or_else(|e| e.into_bytes());
            std::fs::write(d.join(name), text).unwrap();
        }
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let sources = sources.replace("{dir}", &d_s);
        let authsources = authsources.replace("{dir}", &d_s);
        std::fs::write(
            d.join("config/config.php"),
            format!(
                r#"<?php
$config = [
  'baseurlpath' => '{base}/',
  'certdir' => '{d_s}/cert/',
  'loggingdir' => '{d_s}/log/',
  'datadir' => '{d_s}/data/',
  'tempdir' => '{d_s}/tmp',
  'metadatadir' => '{d_s}/metadata/',
  'attributenamemapdir' => '/usr/share/simplesamlphp/attributemap/',
  'secretsalt' => 'interop-test-salt-{port}',
  'auth.adminpassword' => 'interop-admin-{port}',
  'technicalcontact_email' => 'root@localhost',
  'enable.saml20-idp' => {saml20_idp},
  'module.enable' => ['exampleauth' => true, 'core' => true, 'saml' => true],
  'logging.handler' => 'file',
  'logging.logfile' => 'simplesamlphp.log',
  'logging.level' => SimpleSAML\Logger::DEBUG,
  'store.type' => 'phpsession',
  'session.phpsession.savepath' => '{d_s}/sessions',
  'session.cookie.secure' => false,
  'session.cookie.samesite' => null,
  'language.cookie.secure' => false,
  'admin.checkforupdates' => false,
  'showerrors' => true,
  'errorreporting' => false,
  'metadata.sources' => [{sources}],
];
"#
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("config/authsources.php"),
            format!(
                r#"<?php
$config = [
  'admin' => ['core:AdminPassword'],
  'example-userpass' => [
    'exampleauth:UserPass',
    'alice:alice-password' => [
      'uid' => ['alice'],
      'eduPersonPrincipalName' => ['alice@example.org'],
      'eduPersonAffiliation' => ['member', 'staff'],
      'mail' => ['alice@example.org'],
    ],
  ],
{authsources}
];
"#
            ),
        )
        .unwrap();
        let out = d.join("log/php.out");
        let mut child = Command::new(php)
            .env("SIMPLESAMLPHP_CONFIG_DIR", d.join("config"))
            .arg("-S")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-t")
            .arg(www)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::from(
                std::fs::File::options().append(true).open(&out).unwrap(),
            ))
            .spawn()
            .expect("start php -S");
        wait_for_port(port, "php -S (SimpleSAMLphp)", &mut child, &out);
        Ssp {
            dir,
            php: child,
            base,
        }
    }

    /// SimpleSAMLphp's own log.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/simplesamlphp.log")).unwrap_or_default()
    }

    /// Its log and PHP's server output.
    pub(crate) fn logs(&self) -> String {
        format!(
            "--- simplesamlphp.log\n{}\n--- php -S\n{}",
            self.log(),
            std::fs::read_to_string(self.dir.path().join("log/php.out")).unwrap_or_default()
        )
    }
}

impl Drop for Ssp {
    fn drop(&mut self) {
        let _ = self.php.kill();
        let _ = self.php.wait();
    }
}

/// One login at SimpleSAMLphp's IdP: `query` to its SSO endpoint, the login form, alice's
/// password; returns the page SimpleSAMLphp answered the password with.
pub(crate) fn ssp_login(ssp: &Ssp, b: &mut Browser, sso_url: &str, query: &str) -> Reply {
    let login = b.follow(&redirect::url(sso_url, query));
    assert_eq!(login.status, 200, "{}\n{}", login.body, ssp.logs());
    let state = form_field(&login.body, "AuthState")
        .unwrap_or_else(|| panic!("no login form: {}\n{}", login.body, ssp.logs()));
    assert_eq!(form_action(&login.body), "?");
    let form = format!(
        "username=alice&password=alice-password&AuthState={}",
        url_encode(&state)
    );
    b.request(
        "POST",
        &format!("{}/module.php/core/loginuserpass.php?", ssp.base),
        Some(&form),
    )
}
