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

use testkit::signer::TestKey;

use super::{AFFILIATION, EPPN, ShibSp, apache_preamble, free_port, set_mode};

/// Shibboleth SP (shibd + Apache with mod_shib) running from a private configuration; the
/// processes are [`ShibSp`]'s (stopped when this is dropped).
pub(crate) struct Sp {
    processes: ShibSp,
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
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Apache's children run as www-data and read the configuration and the CGI script.
        set_mode(d, 0o755);
        let (shib_port, web_port) = (free_port(), free_port());
        let host = entity_id.split('/').nth(2).unwrap_or("sp.interop.test");
        let sp_key = TestKey::rsa(host);
        let (key, cert) = sp_key.write_pem(d, "sp");
        for (name, content) in files {
            std::fs::write(d.join(name), content).unwrap();
        }
        ShibSp::write_loggers(d);
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
        let script = d.join("cgi/env");
        std::fs::write(
            &script,
            "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"REMOTE_USER=$REMOTE_USER\"\necho \"eppn=$eppn\"\necho \"affiliation=$affiliation\"\necho \"Shib-Identity-Provider=$Shib_Identity_Provider\"\n",
        )
        .unwrap();
        set_mode(&script, 0o755);
        let mut conf = apache_preamble(
            d,
            web_port,
            &[("alias", "alias_module"), ("cgi", "cgi_module")],
        );
        conf.push_str(&format!(
            r#"ScriptAlias /secure/ {d_s}/cgi/
<Location /Shibboleth.sso>
  SetHandler shib
</Location>
<Location /secure>
  AuthType shibboleth
  ShibRequestSetting requireSession true
  Require valid-user
</Location>
"#
        ));
        std::fs::write(d.join("apache.conf"), conf).unwrap();
        let processes = ShibSp::start(dir, shib_port, web_port);
        Sp {
            base: processes.base.clone(),
            processes,
            key: sp_key,
        }
    }

    pub(crate) fn shibd_log(&self) -> String {
        self.processes.shibd_log()
    }

    pub(crate) fn logs(&self) -> String {
        self.processes.logs()
    }
}
