//! The commands (see the crate documentation for the contract).

use std::io::Write;
use std::path::Path;

use crate::exit::{Failure, Res, Tool, fail, read};
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
use serde_json::{Map, Value, json};

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
    json: bool,
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
            "--format" => {
                o.json = match value("--format")?.as_str() {
                    "json" => true,
                    "text" => false,
                    other => {
                        return Err(Failure::Usage(format!(
                            "--format {other:?}: expected text or json"
                        )));
                    }
                }
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

/// Writes to stdout; a closed pipe is a failure, not a panic.
fn say(out: &mut dyn Write, text: std::fmt::Arguments<'_>) -> Res<()> {
    writeln!(out, "{text}").map_err(|e| Failure::Failed(format!("stdout: {e}")))
}

fn verify(o: &Opts, out: &mut dyn Write) -> Res<()> {
    let [file] = positional::<1>(o, "FILE")?;
    // One verification pass and an index (entityIDs unique, validUntil read): no entity model
    // is built just to count (issue 15).
    let doc = read(&file)?;
    let agg = saml_metadata::lazy::load_lazy(&doc, &policy(o)?).map_err(fail)?;
    let n = agg.len() + agg.expired_entities().len();
    if o.json {
        say(out, format_args!("{}", json!({ "entities": n })))
    } else {
        say(out, format_args!("OK {n} entities"))
    }
}

fn sign(o: &Opts, out: &mut dyn Write) -> Res<()> {
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
    let opts = {
        let mut o = SignOptions::default();
        o.algorithm = algorithm;
        o
    };
    let signed = dsig::sign(&read(&input)?, &signing, &opts).map_err(fail)?;
    std::fs::write(&output, signed).map_err(|e| Failure::Failed(format!("{output}: {e}")))?;
    say(out, format_args!("OK signed {output}"))
}

/// An entity as `samlmd lookup` prints it: text lines and the same as JSON.
fn describe(e: &EntityDescriptor) -> (Vec<String>, Value) {
    let mut out = vec![
        format!("entityID: {}", e.entity_id),
        format!("sha1: {}", e.sha1_id()),
    ];
    let mut organization = Map::new();
    if let Some(org) = &e.organization {
        for n in &org.display_names {
            out.push(format!("organization[{}]: {}", n.lang, n.value));
            organization.insert(n.lang.to_string(), Value::from(n.value.as_str()));
        }
    }
    let mut roles = Vec::new();
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
        let mut display_names = Map::new();
        if let Some(ui) = common.and_then(|c| c.extensions.ui_info.as_ref()) {
            for d in &ui.display_names {
                out.push(format!("  displayName[{}]: {}", d.lang, d.value));
                display_names.insert(d.lang.to_string(), Value::from(d.value.as_str()));
            }
        }
        out.extend(endpoints.iter().map(|e| format!("  {e}")));
        let mut keys = Vec::new();
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
                keys.push(json!({ "use": format!("{:?}", k.key_use), "sha256": fp }));
            }
        }
        roles.push(json!({
            "role": name,
            "displayNames": display_names,
            "endpoints": endpoints,
            "keys": keys,
        }));
    }
    let value = json!({
        "entityID": e.entity_id,
        "sha1": e.sha1_id(),
        "organization": organization,
        "roles": roles,
    });
    (out, value)
}

fn lookup(o: &Opts, out: &mut dyn Write) -> Res<()> {
    let [file, entity_id] = positional::<2>(o, "FILE ENTITYID")?;
    // One verification pass; only the entity asked for is modelled (issue 15).
    let doc = read(&file)?;
    let agg = saml_metadata::lazy::load_lazy(&doc, &policy(o)?).map_err(fail)?;
    let e = match agg.get(&entity_id).map_err(fail)? {
        Some(e) => e,
        None => agg
            .get_by_sha1(&entity_id)
            .map_err(fail)?
            .ok_or_else(|| Failure::Failed(format!("no entity {entity_id:?}")))?,
    };
    let (lines, value) = describe(e);
    if o.json {
        return say(out, format_args!("{value}"));
    }
    for line in lines {
        say(out, format_args!("{line}"))?;
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

fn select(o: &Opts, out: &mut dyn Write) -> Res<()> {
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
    let selection = EntitiesDescriptor::combine(
        o.name.as_deref().unwrap_or("urn:samlmd:selection"),
        agg.select(&filter).cloned(),
        Some(policy.now + Duration::from_secs(days * 86400)),
    )
    .map_err(fail)?;
    let count = selection.children.len();
    if count == 0 {
        return Err(Failure::Failed("no entity matches".into()));
    }
    let signed = selection
        .sign(&signer, &SignOptions::default())
        .map_err(fail)?;
    std::fs::write(&output, signed).map_err(|e| Failure::Failed(format!("{output}: {e}")))?;
    if o.json {
        let list: Vec<Value> = selection
            .entities()
            .into_iter()
            .map(|e| json!({ "entityID": e.entity_id, "sha1": e.sha1_id(), "file": output }))
            .collect();
        return say(out, format_args!("{}", json!({ "entities": list })));
    }
    say(out, format_args!("OK {count} entities"))
}

fn split(o: &Opts, out: &mut dyn Write) -> Res<()> {
    let [file, outdir] = positional::<2>(o, "FILE OUTDIR")?;
    let signer = signer(o)?;
    let docs = saml_metadata::split::split(&read(&file)?, &policy(o)?).map_err(fail)?;
    std::fs::create_dir_all(&outdir).map_err(|e| Failure::Failed(format!("{outdir}: {e}")))?;
    let mut list = Vec::with_capacity(docs.len());
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
        if o.json {
            list.push(json!({
                "entityID": d.entity_id,
                "sha1": saml_metadata::model::sha1_hex(&d.entity_id),
                "file": name.display().to_string(),
            }));
        }
    }
    if o.json {
        return say(out, format_args!("{}", json!({ "entities": list })));
    }
    say(out, format_args!("OK {} entities", docs.len()))
}

fn generate(o: &Opts, out: &mut dyn Write) -> Res<()> {
    let [n, file] = positional::<2>(o, "N OUT")?;
    let n: usize = n
        .parse()
        .map_err(|_| Failure::Usage(format!("N={n:?} is not a number")))?;
    let xml = crate::aggregate::generate(n, 1);
    std::fs::write(&file, xml).map_err(|e| Failure::Failed(format!("{file}: {e}")))?;
    say(out, format_args!("OK {n} entities"))
}

const TOOL: Tool = Tool {
    name: "samlmd",
    usage: "usage: samlmd verify|sign|lookup|split|select|gen [options] ... (samlmd --help)",
    help: include_str!("help.txt"),
};

/// Runs one `samlmd` command line (`args` without the program name), writing what the command
/// prints to `out` and reasons to `err`; returns the exit code (0, 1 or 2; see the crate
/// documentation).
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    crate::exit::run(&TOOL, args, out, err, |cmd, rest, out, _err| {
        let o = parse_opts(rest)?;
        match cmd {
            "verify" => verify(&o, out),
            "sign" => sign(&o, out),
            "lookup" => lookup(&o, out),
            "split" => split(&o, out),
            "select" => select(&o, out),
            "gen" => generate(&o, out),
            other => Err(Failure::Usage(format!("unknown command {other}"))),
        }
    })
}
