//! `samlmd`: a SAML metadata tool for users and interop testers (stable command-line contract).
//!
//! ```text
//! samlmd verify --cert PEM [--cert PEM ...] [--legacy] [--now DATETIME] FILE
//!     exit 0, last stdout line `OK <N> entities`; exit 1 and a one-line reason on stderr
//! samlmd sign --key PEM --cert PEM [--alg rsa-sha256|rsa-sha512|ecdsa-sha256] IN OUT
//! samlmd lookup --cert PEM [--legacy] [--now DATETIME] FILE ENTITYID
//! samlmd split --cert PEM [--legacy] [--now DATETIME] [--key PEM --sign-cert PEM] FILE OUTDIR
//!     one file per entity, named by the {sha1} hex of its entityID, signed when --key is given
//! samlmd select --cert PEM [--legacy] [--now DATETIME] [--role idp|sp|aa] [--category URI]
//!        [--registrar URI] [--entity ENTITYID ...] [--name NAME] [--valid-days N]
//!        --key PEM --sign-cert PEM FILE OUT
//!     verify FILE, keep the entities matching every criterion given, write them as a new
//!     aggregate (validUntil now + N days, default 7) signed with --key
//! samlmd gen N OUT
//!     an eduGAIN-shaped unsigned aggregate of N entities
//! ```
//! Usage errors exit 2. `--now` takes an xs:dateTime (default: the system clock).

use std::path::Path;
use std::process::ExitCode;

use saml_examples::cli::{Failure, Res, fail, read};
use std::time::{Duration, SystemTime};

use openssl::hash::MessageDigest;
use openssl::x509::X509;
use saml_core::dsig::{
    self, SignOptions, SignatureAlgorithm, SigningKey, TrustedKeys, VerifyOptions,
};
use saml_metadata::filter::{Filter, RoleKind};
use saml_metadata::load::{self, Policy};
use saml_metadata::model::{EntitiesDescriptor, EntityDescriptor, Role};
use saml_metadata::time::parse_datetime;

/// Options shared by the reading commands.
#[derive(Default)]
struct Opts {
    certs: Vec<String>,
    legacy: bool,
    now: Option<SystemTime>,
    key: Option<String>,
    sign_cert: Option<String>,
    alg: Option<String>,
    role: Option<String>,
    category: Option<String>,
    registrar: Option<String>,
    entities: Vec<String>,
    name: Option<String>,
    valid_days: Option<u64>,
    positional: Vec<String>,
}

fn parse_opts(args: &[String]) -> Res<Opts> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| Failure::Usage(format!("{name} needs a value")))
        };
        match a.as_str() {
            "--cert" => o.certs.push(value("--cert")?),
            "--legacy" => o.legacy = true,
            "--now" => {
                let v = value("--now")?;
                o.now =
                    Some(parse_datetime(&v).ok_or_else(|| {
                        Failure::Usage(format!("--now {v:?} is not an xs:dateTime"))
                    })?);
            }
            "--key" => o.key = Some(value("--key")?),
            "--sign-cert" => o.sign_cert = Some(value("--sign-cert")?),
            "--alg" => o.alg = Some(value("--alg")?),
            "--role" => o.role = Some(value("--role")?),
            "--category" => o.category = Some(value("--category")?),
            "--registrar" => o.registrar = Some(value("--registrar")?),
            "--entity" => o.entities.push(value("--entity")?),
            "--name" => o.name = Some(value("--name")?),
            "--valid-days" => {
                let v = value("--valid-days")?;
                o.valid_days =
                    Some(v.parse().map_err(|_| {
                        Failure::Usage(format!("--valid-days {v:?} is not a number"))
                    })?);
            }
            s if s.starts_with("--") => return Err(Failure::Usage(format!("unknown option {s}"))),
            _ => o.positional.push(a.clone()),
        }
    }
    Ok(o)
}

fn policy(o: &Opts) -> Res<Policy> {
    if o.certs.is_empty() {
        return Err(Failure::Usage("at least one --cert is required".into()));
    }
    let mut keys = TrustedKeys::new();
    for c in &o.certs {
        keys.add_pem(&read(c)?)
            .map_err(|e| Failure::Failed(format!("{c}: {e}")))?;
    }
    let mut p = Policy::new(keys, o.now.unwrap_or_else(SystemTime::now));
    if o.legacy {
        p.verify = VerifyOptions::metadata().legacy();
    }
    Ok(p)
}

fn positional<const N: usize>(o: &Opts, what: &str) -> Res<[String; N]> {
    <[String; N]>::try_from(o.positional.clone())
        .map_err(|_| Failure::Usage(format!("expected {what}")))
}

fn verify(o: &Opts) -> Res<()> {
    let [file] = positional::<1>(o, "FILE")?;
    let agg = load::load(&read(&file)?, &policy(o)?).map_err(fail)?;
    println!("OK {} entities", agg.len() + agg.expired_entities().len());
    Ok(())
}

fn sign(o: &Opts) -> Res<()> {
    let [input, output] = positional::<2>(o, "IN OUT")?;
    let (Some(key), Some(cert)) = (&o.key, o.certs.first()) else {
        return Err(Failure::Usage("sign needs --key and --cert".into()));
    };
    let algorithm = match o.alg.as_deref() {
        None => None,
        Some("rsa-sha256") => Some(SignatureAlgorithm::RsaSha256),
        Some("rsa-sha512") => Some(SignatureAlgorithm::RsaSha512),
        Some("ecdsa-sha256") => Some(SignatureAlgorithm::EcdsaSha256),
        Some(other) => return Err(Failure::Usage(format!("unknown --alg {other}"))),
    };
    let signing = SigningKey::from_pem(&read(key)?, Some(&read(cert)?)).map_err(fail)?;
    let opts = SignOptions {
        algorithm,
        ..Default::default()
    };
    let signed = dsig::sign(&read(&input)?, &signing, &opts).map_err(fail)?;
    std::fs::write(&output, signed).map_err(|e| Failure::Failed(format!("{output}: {e}")))?;
    println!("OK signed {output}");
    Ok(())
}

fn describe(e: &EntityDescriptor) -> Vec<String> {
    let mut out = vec![
        format!("entityID: {}", e.entity_id),
        format!("sha1: {}", e.sha1_id()),
    ];
    if let Some(org) = &e.organization {
        for n in &org.display_names {
            out.push(format!("organization[{}]: {}", n.lang, n.value));
        }
    }
    for role in &e.roles {
        let (name, common, endpoints): (&str, _, Vec<String>) = match role {
            Role::Idp(i) => (
                "IDPSSODescriptor",
                Some(&i.common),
                i.single_sign_on
                    .iter()
                    .map(|s| format!("SingleSignOnService {} {}", s.binding.uri(), s.location))
                    .collect(),
            ),
            Role::Sp(s) => (
                "SPSSODescriptor",
                Some(&s.common),
                s.assertion_consumer
                    .iter()
                    .map(|a| {
                        format!(
                            "AssertionConsumerService[{}{}] {} {}",
                            a.index,
                            if a.is_default == Some(true) {
                                ",default"
                            } else {
                                ""
                            },
                            a.endpoint.binding.uri(),
                            a.endpoint.location
                        )
                    })
                    .collect(),
            ),
            Role::AttributeAuthority(a) => (
                "AttributeAuthorityDescriptor",
                Some(&a.common),
                a.services
                    .iter()
                    .map(|s| format!("AttributeService {} {}", s.binding.uri(), s.location))
                    .collect(),
            ),
            Role::AuthnAuthority(a) => (
                "AuthnAuthorityDescriptor",
                Some(&a.common),
                a.services
                    .iter()
                    .map(|s| format!("AuthnQueryService {} {}", s.binding.uri(), s.location))
                    .collect(),
            ),
            Role::Pdp(a) => (
                "PDPDescriptor",
                Some(&a.common),
                a.services
                    .iter()
                    .map(|s| format!("AuthzService {} {}", s.binding.uri(), s.location))
                    .collect(),
            ),
            Role::Other(raw) => (
                "other role",
                None,
                vec![format!("{{{}}}{}", raw.name.0, raw.name.1)],
            ),
            _ => ("role", None, Vec::new()),
        };
        out.push(format!("role: {name}"));
        if let Some(ui) = common.and_then(|c| c.extensions.ui_info.as_ref()) {
            for d in &ui.display_names {
                out.push(format!("  displayName[{}]: {}", d.lang, d.value));
            }
        }
        out.extend(endpoints.into_iter().map(|e| format!("  {e}")));
        for k in common.map(|c| c.keys.as_slice()).unwrap_or_default() {
            for der in &k.certificates {
                let fp = X509::from_der(der)
                    .and_then(|c| c.digest(MessageDigest::sha256()))
                    .map(|d| {
                        d.iter()
                            .map(|b| format!("{b:02X}"))
                            .collect::<Vec<_>>()
                            .join(":")
                    })
                    .unwrap_or_else(|_| "(not a certificate)".into());
                out.push(format!("  key {:?} sha256 {fp}", k.key_use));
            }
        }
    }
    out
}

fn lookup(o: &Opts) -> Res<()> {
    let [file, entity_id] = positional::<2>(o, "FILE ENTITYID")?;
    let agg = load::load(&read(&file)?, &policy(o)?).map_err(fail)?;
    let e = agg
        .get(&entity_id)
        .or_else(|| agg.get_by_sha1(&entity_id))
        .ok_or_else(|| Failure::Failed(format!("no entity {entity_id:?}")))?;
    for line in describe(e) {
        println!("{line}");
    }
    Ok(())
}

/// The re-signing key of `split` and `select` (`--key` with `--sign-cert`).
fn signer(o: &Opts) -> Res<Option<SigningKey>> {
    match (&o.key, &o.sign_cert) {
        (Some(k), Some(c)) => Ok(Some(
            SigningKey::from_pem(&read(k)?, Some(&read(c)?)).map_err(fail)?,
        )),
        (None, None) => Ok(None),
        _ => Err(Failure::Usage("--key and --sign-cert go together".into())),
    }
}

fn select(o: &Opts) -> Res<()> {
    let [file, output] = positional::<2>(o, "FILE OUT")?;
    let Some(signer) = signer(o)? else {
        return Err(Failure::Usage("select needs --key and --sign-cert".into()));
    };
    let mut filter = Filter::predicate(|_| true);
    if let Some(r) = &o.role {
        filter = filter.and(Filter::role(match r.as_str() {
            "idp" => RoleKind::Idp,
            "sp" => RoleKind::Sp,
            "aa" => RoleKind::AttributeAuthority,
            other => return Err(Failure::Usage(format!("unknown --role {other}"))),
        }));
    }
    if let Some(c) = &o.category {
        filter = filter.and(Filter::category(c));
    }
    if let Some(r) = &o.registrar {
        filter = filter.and(Filter::registration_authority(r));
    }
    if !o.entities.is_empty() {
        filter = filter.and(Filter::allow(o.entities.iter().cloned()));
    }
    let policy = policy(o)?;
    let agg = load::load(&read(&file)?, &policy).map_err(fail)?;
    let days = o.valid_days.unwrap_or(7);
    let out = EntitiesDescriptor::combine(
        o.name.as_deref().unwrap_or("urn:samlmd:selection"),
        agg.select(&filter).cloned(),
        Some(policy.now + Duration::from_secs(days * 86400)),
    )
    .map_err(fail)?;
    let count = out.children.len();
    if count == 0 {
        return Err(Failure::Failed("no entity matches".into()));
    }
    let signed = out.sign(&signer, &SignOptions::default()).map_err(fail)?;
    std::fs::write(&output, signed).map_err(|e| Failure::Failed(format!("{output}: {e}")))?;
    println!("OK {count} entities");
    Ok(())
}

fn split(o: &Opts) -> Res<()> {
    let [file, outdir] = positional::<2>(o, "FILE OUTDIR")?;
    let signer = signer(o)?;
    let docs = saml_metadata::split::split(&read(&file)?, &policy(o)?).map_err(fail)?;
    std::fs::create_dir_all(&outdir).map_err(|e| Failure::Failed(format!("{outdir}: {e}")))?;
    for d in &docs {
        let name = Path::new(&outdir).join(format!(
            "{}.xml",
            saml_metadata::model::sha1_hex(&d.entity_id)
        ));
        let bytes = match &signer {
            Some(k) => dsig::sign(d.xml.as_bytes(), k, &SignOptions::default()).map_err(fail)?,
            None => d.xml.clone().into_bytes(),
        };
        std::fs::write(&name, bytes)
            .map_err(|e| Failure::Failed(format!("{}: {e}", name.display())))?;
    }
    println!("OK {} entities", docs.len());
    Ok(())
}

fn generate(o: &Opts) -> Res<()> {
    let [n, out] = positional::<2>(o, "N OUT")?;
    let n: usize = n
        .parse()
        .map_err(|_| Failure::Usage(format!("N={n:?} is not a number")))?;
    let xml = saml_examples::aggregate::generate(n, 1);
    std::fs::write(&out, xml).map_err(|e| Failure::Failed(format!("{out}: {e}")))?;
    println!("OK {n} entities");
    Ok(())
}

const USAGE: &str = "usage: samlmd verify|sign|lookup|split|select|gen ... (see the crate docs)";

fn main() -> ExitCode {
    saml_examples::cli::main("samlmd", USAGE, |cmd, rest| {
        let o = parse_opts(rest)?;
        match cmd {
            "verify" => verify(&o),
            "sign" => sign(&o),
            "lookup" => lookup(&o),
            "split" => split(&o),
            "select" => select(&o),
            "gen" => generate(&o),
            other => Err(Failure::Usage(format!("unknown command {other}"))),
        }
    })
}
