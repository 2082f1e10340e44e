//! The commands (see the crate documentation for the contract).

use std::io::Write;
use std::path::Path;

use crate::exit::{Document, Failure, Res, Tool, fail, read, read_document};
use std::time::{Duration, SystemTime};

use openssl::hash::MessageDigest;
use openssl::x509::X509;
use saml_core::dsig::{
    self, SignOptions, SignatureAlgorithm, SigningKey, TrustedKeys, VerifyOptions,
};
use saml_metadata::filter::{Filter, RoleKind};
use saml_metadata::load::Policy;
use saml_metadata::model::{EntityDescriptor, Role};
use saml_metadata::nested_signatures::RefusedEntity;
use saml_metadata::selection::{SelectOptions, write_selection_report};
use saml_metadata::time::parse_datetime;
use serde_json::{Map, Value, json};

/// Options shared by the reading commands.
#[derive(Default)]
struct Opts {
    certs: Vec<String>,
    legacy: bool,
    single_threaded: bool,
    max_size: Option<usize>,
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
    keep_stale: bool,
    models: bool,
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
            "--single-threaded" => o.single_threaded = true,
            "--keep-stale" => o.keep_stale = true,
            "--models" => o.models = true,
            "--max-size" => {
                let v = value("--max-size")?;
                o.max_size = Some(parse_size(&v).ok_or_else(|| {
                    Failure::Usage(format!(
                        "--max-size {v:?}: expected a size in MiB (e.g. 512), at most 4096"
                    ))
                })?);
            }
            "--now" => {
                let v = value("--now")?;
                // Before 9990: a validUntil written from it (`--valid-days`, at most 3650)
                // stays within the four-digit years every reader takes (review W12: year
                // 10000 was written, and our own reader refused it).
                let last = parse_datetime("9990-01-01T00:00:00Z");
                o.now = Some(
                    parse_datetime(&v)
                        .filter(|t| last.is_some_and(|l| *t < l))
                        .ok_or_else(|| {
                            Failure::Usage(format!(
                                "--now {v:?} is not an xs:dateTime before the year 9990"
                            ))
                        })?,
                );
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
                // At most ten years: a larger number overflowed the time (a panic).
                o.valid_days = Some(
                    v.parse()
                        .ok()
                        .filter(|d| (1..=3650).contains(d))
                        .ok_or_else(|| {
                            Failure::Usage(format!(
                                "--valid-days {v:?}: a number of days, 1 to 3650"
                            ))
                        })?,
                );
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
    if o.single_threaded {
        p.verify = p.verify.single_threaded();
    }
    p.verify.limits.max_document_size = max_size(o);
    Ok(p)
}

/// The document-size limit: `--max-size`, or saml-core's default.
fn max_size(o: &Opts) -> usize {
    o.max_size
        .unwrap_or_else(|| saml_core::xml::Limits::default().max_document_size)
}

/// The metadata document a command verifies, read under the document-size limit.
fn document(o: &Opts, file: &str) -> Res<Document> {
    read_document(file, !o.single_threaded, max_size(o))
}

/// `--max-size`: a whole number of MiB, 1 to 4096 (saml-core's default limit is 256 MiB).
fn parse_size(v: &str) -> Option<usize> {
    let mib: usize = v.strip_suffix("MiB").unwrap_or(v).trim().parse().ok()?;
    (1..=4096).contains(&mib).then_some(mib << 20)
}

fn positional<const N: usize>(o: &Opts, what: &str) -> Res<[String; N]> {
    <[String; N]>::try_from(o.positional.clone())
        .map_err(|_| Failure::Usage(format!("expected {what}")))
}

/// Writes one JSON value as one line to stdout; a closed pipe is a failure, not a panic.
/// serde escapes the C0 controls only: DEL, the C1 controls (U+009B is a one-character CSI)
/// and the bidirectional controls a metadata string may hold are escaped here too (`\u` and
/// four hex digits, the same JSON value), so that no terminal acts on them (review W11).
fn say_json(out: &mut dyn Write, value: &Value) -> Res<()> {
    let line = escaped(value.to_string(), |c| format!("\\u{:04x}", u32::from(c)));
    writeln!(out, "{line}").map_err(|e| Failure::Failed(format!("stdout: {e}")))
}

/// `text` with each [`unsafe_char`] written as `escape` has it.
fn escaped(text: String, escape: impl Fn(char) -> String) -> String {
    if !text.chars().any(unsafe_char) {
        return text;
    }
    text.chars()
        .map(|c| {
            if unsafe_char(c) {
                escape(c)
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A character a terminal may act on or that reorders what is shown: the controls (C0, DEL,
/// C1) and the bidirectional marks, embeddings, overrides and isolates, and the line and
/// paragraph separators.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Writes one line of text. Metadata strings are the signer's, not the operator's: a control
/// character or a bidirectional override in a DisplayName could start a line of its own (a
/// key fingerprint the entity does not have) or reorder what is shown, so they are written
/// escaped (`\u{a}`) (metadata review I1; U+061C, U+2028 and U+2029 too: review W11). JSON
/// output has none raw either ([`say_json`]).
fn say(out: &mut dyn Write, text: std::fmt::Arguments<'_>) -> Res<()> {
    let line = escaped(text.to_string(), |c| c.escape_unicode().to_string());
    writeln!(out, "{line}").map_err(|e| Failure::Failed(format!("stdout: {e}")))
}

fn verify(o: &Opts, out: &mut dyn Write) -> Res<()> {
    let [file] = positional::<1>(o, "FILE")?;
    // One verification pass and an index (entityIDs unique, validUntil read): no entity model
    // is built just to count (issue 15).
    let doc = document(o, &file)?;
    let agg = saml_metadata::lazy::load_lazy(&doc, &policy(o)?).map_err(fail)?;
    // `--models`: every entity modelled as `load` models it, those it would leave out named
    // and not counted (they were counted as verified).
    let mut refused = agg.refused_entities().to_vec();
    let invalid = if o.models {
        agg.invalid_models(threads(o)).map_err(fail)?
    } else {
        Vec::new()
    };
    let n = (agg.len() + agg.expired_entities().len()).saturating_sub(invalid.len());
    refused.extend(invalid);
    // In document order, as `load` names them.
    refused.sort_by_key(|r| r.offset);
    if o.json {
        let refused = refused_json(&refused);
        say_json(out, &json!({ "entities": n, "refused": refused }))
    } else {
        say_refused(out, &refused)?;
        say(out, format_args!("OK {n} entities"))
    }
}

/// Entities left out because a signature of their own failed (saml-metadata's
/// `nested_signatures`), or because they could not be modelled, cut or signed
/// (`invalid_model`), as JSON.
fn refused_json(refused: &[RefusedEntity]) -> serde_json::Value {
    refused
        .iter()
        .map(|r| {
            json!({
                "entityID": r.entity_id,
                "offset": r.offset,
                "reason": r.reason,
                "invalid": r.invalid_model,
            })
        })
        .collect()
}

/// Threads for work spread over the cores: one with `--single-threaded`, else the cores, at
/// most eight.
fn threads(o: &Opts) -> usize {
    if o.single_threaded {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
    }
}

/// One line per entity left out because a signature of its own failed, or because its
/// metadata is invalid (an eager load, `verify --models`).
fn say_refused(out: &mut dyn Write, refused: &[RefusedEntity]) -> Res<()> {
    for r in refused {
        if r.invalid_model {
            say(
                out,
                format_args!(
                    "refused {}: its metadata (byte {}) is invalid: {}",
                    r.entity_id, r.offset, r.reason
                ),
            )?;
        } else {
            say(
                out,
                format_args!(
                    "refused {}: its own signature (byte {}) does not verify: {}",
                    r.entity_id, r.offset, r.reason
                ),
            )?;
        }
    }
    Ok(())
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
    // The document under the document-size limit, as every command reads one (review W9: it
    // was read whole whatever its size, /dev/zero until memory ran out).
    let doc = document(o, &input)?;
    let signed = dsig::sign(&doc, &signing, &opts).map_err(fail)?;
    write_replacing(&output, |f| {
        f.write_all(&signed)
            .map_err(|e| Failure::Failed(format!("{output}: {e}")))
    })?;
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
    let doc = document(o, &file)?;
    let agg = saml_metadata::lazy::load_lazy(&doc, &policy(o)?).map_err(fail)?;
    // An entityID, or a `{sha1}` identifier (MDQ's form). An argument that is both (an
    // entityID written `{sha1}<hex>` or as 40 hex digits, and the hash of another entity's ID)
    // is refused as ambiguous: the exact match used to win, so such an entity was shown for
    // the other (metadata review I5).
    let exact = agg.get(&entity_id).map_err(fail)?;
    let hashed = agg.get_by_sha1(&entity_id).map_err(fail)?;
    let e = match (exact, hashed) {
        (Some(a), Some(b)) if a.entity_id != b.entity_id => {
            return Err(Failure::Failed(format!(
                "{entity_id:?} is both the entityID of one entity and the {{sha1}} of another \
                 ({:?}): ambiguous; look the other up by its entityID, this one by its own \
                 {{sha1}} ({})",
                b.entity_id,
                a.sha1_id()
            )));
        }
        (Some(e), _) | (None, Some(e)) => e,
        (None, None) => return Err(Failure::Failed(format!("no entity {entity_id:?}"))),
    };
    let (lines, value) = describe(e);
    if o.json {
        return say_json(out, &value);
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
    // One verification; each entity modelled only to be filtered, the chosen ones copied from
    // the verified bytes and signed while they stream to the file (issue 15: the peak is the
    // document, not the document, every model and the output twice).
    let doc = document(o, &file)?;
    let agg = saml_metadata::lazy::load_lazy(&doc, &policy).map_err(fail)?;
    // Each --entity asked for must be there to be selected (review W14: a typo left it out
    // of the selection without a word).
    let missing: Vec<&str> = o
        .entities
        .iter()
        .map(String::as_str)
        .filter(|id| !agg.contains(id))
        .collect();
    if !missing.is_empty() {
        return Err(Failure::Failed(format!(
            "--entity not among the verified, unexpired entities of {file}: {}",
            missing.join(", ")
        )));
    }
    let days = o.valid_days.unwrap_or(7);
    let mut opts = SelectOptions::new(
        o.name.as_deref().unwrap_or("urn:samlmd:selection"),
        Some(policy.now + Duration::from_secs(days * 86400)),
    );
    opts.single_threaded = o.single_threaded;
    let selected = write_replacing(&output, |file| {
        write_selection_report(
            &agg,
            &filter,
            &signer,
            &opts,
            std::io::BufWriter::with_capacity(1 << 16, file),
        )
        .map_err(|e| match e {
            saml_metadata::Error::Unwritable { .. } => Failure::Failed("no entity matches".into()),
            e => fail(e),
        })
    })?;
    let ids = selected.entities;
    // Left out: for a signature of their own (the index), for an invalid model (the filter).
    let mut refused = agg.refused_entities().to_vec();
    refused.extend(selected.refused);
    refused.sort_by_key(|r| r.offset);
    if o.json {
        let list: Vec<Value> = ids.iter().map(|id| written_json(id, &output)).collect();
        return say_json(
            out,
            &json!({ "entities": list, "refused": refused_json(&refused) }),
        );
    }
    say_refused(out, &refused)?;
    say(out, format_args!("OK {} entities", ids.len()))
}

/// Writes `output` through `write`: into a new file beside it (never through a link or over
/// a file), synced, then renamed over it, so that a failure or a kill leaves no partial
/// document under the output's name and a reader never sees one (select; sign and gen too:
/// review W9, they wrote in place, through whatever OUT was). The file gets the permissions a
/// plainly created one gets (the umask applies), not a temporary file's owner-only ones: the
/// output is usually published.
fn write_replacing<T>(output: &str, write: impl FnOnce(&mut std::fs::File) -> Res<T>) -> Res<T> {
    let target = Path::new(output);
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let io = |e: std::io::Error| Failure::Failed(format!("{output}: {e}"));
    let mut builder = tempfile::Builder::new();
    builder.prefix(".samlmd-");
    #[cfg(unix)]
    builder
        .permissions(<std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o666));
    let mut tmp = builder.tempfile_in(dir).map_err(io)?;
    let out = write(tmp.as_file_mut())?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(target).map_err(|e| io(e.error))?;
    sync_dir(dir)?;
    Ok(out)
}

/// An entity written to `file`, as JSON (split, select).
fn written_json(entity_id: &str, file: &str) -> Value {
    json!({
        "entityID": entity_id,
        "sha1": saml_metadata::model::sha1_hex(entity_id),
        "file": file,
    })
}

fn split(o: &Opts, out: &mut dyn Write) -> Res<()> {
    let [file, outdir] = positional::<2>(o, "FILE OUTDIR")?;
    let signer = signer(o)?;
    // One verification and an index; each entity is cut from the verified bytes when its file
    // is written, so no more than one entity per thread is in memory beside the document
    // (issue 15: every entity's document was held at once, 2.8x the file).
    // Re-signed cuts are asserted by the operator's key: at most --valid-days (default 7, as
    // `select`) unless the source's validity ends earlier (a source without validUntil gave
    // documents valid for ever). Unsigned cuts carry the source's validity as it is.
    if signer.is_none() && o.valid_days.is_some() {
        return Err(Failure::Usage(
            "split: --valid-days applies to files re-signed with --key".into(),
        ));
    }
    let policy = policy(o)?;
    let not_after = signer.as_ref().map(|_| {
        let days = o.valid_days.unwrap_or(7);
        policy.now + Duration::from_secs(days * 86400)
    });
    let doc = document(o, &file)?;
    let agg = saml_metadata::lazy::load_lazy(&doc, &policy).map_err(fail)?;
    let ids: Vec<&str> = agg.entity_ids().collect();
    std::fs::create_dir_all(&outdir).map_err(|e| Failure::Failed(format!("{outdir}: {e}")))?;
    let path_of = |entity_id: &str| {
        Path::new(&outdir).join(format!("{}.xml", saml_metadata::model::sha1_hex(entity_id)))
    };
    // Every file is written under a new name of its own first (create_new: never through a
    // link or over a file), and only once all are written are they renamed into place, then
    // the files of entities no longer published removed: a failure before the renames leaves
    // OUTDIR as it was, a reader never sees a half-written file, and an entity that left the
    // aggregate (or was refused, or expired) does not stay behind, still signed (metadata
    // review M3, L1). The new names carry the process and a random tag (a container's
    // processes all have one PID: review W5), and those a killed run left behind are removed
    // once they are an hour old.
    remove_abandoned(Path::new(&outdir));
    let tag = {
        let mut raw = [0u8; 6];
        openssl::rand::rand_bytes(&mut raw).map_err(fail)?;
        raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let pending_of = |entity_id: &str| {
        Path::new(&outdir).join(format!(
            ".{}.xml.new-{}-{tag}",
            saml_metadata::model::sha1_hex(entity_id),
            std::process::id()
        ))
    };
    // An entity that cannot be cut or signed (an empty-element EntityDescriptor, say) is left
    // out and named, not the end of the whole split (review W6: nothing was published for the
    // other ten thousand).
    let refuse = |entity_id: &str, why: String| {
        Ok(Some(RefusedEntity::invalid_model(
            entity_id.to_owned(),
            agg.offset_of(entity_id).unwrap_or_default(),
            why,
        )))
    };
    let write_one = |entity_id: &&str| -> Res<Option<RefusedEntity>> {
        let d = match agg.entity_document_until(entity_id, not_after) {
            Ok(Some(d)) => d,
            Ok(None) => return Err(Failure::Failed(format!("{entity_id}: not in the index"))),
            Err(e) => return refuse(entity_id, e.to_string()),
        };
        let name = pending_of(&d.entity_id);
        let bytes = match &signer {
            Some(k) => match dsig::sign(d.xml.as_bytes(), k, &SignOptions::default()) {
                Ok(b) => b,
                Err(e) => return refuse(entity_id, format!("cannot be signed: {e}")),
            },
            None => d.xml.into_bytes(),
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&name)
            .map_err(|e| Failure::Failed(format!("{}: {e}", name.display())))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| Failure::Failed(format!("{}: {e}", name.display())))?;
        Ok(None)
    };
    let discard_pending = || {
        for id in &ids {
            let _ = std::fs::remove_file(pending_of(id));
        }
    };
    // Signing each entity is most of the work (an RSA-2048 signature per file): spread over
    // the cores unless --single-threaded; the files are the same either way.
    let threads = threads(o);
    let chunk = ids.len().div_ceil(threads).max(1);
    let written: Res<Vec<RefusedEntity>> = std::thread::scope(|sc| {
        let parts: Vec<_> = ids
            .chunks(chunk)
            .map(|part| {
                sc.spawn(|| {
                    part.iter()
                        .map(write_one)
                        .filter_map(Result::transpose)
                        .collect::<Res<Vec<_>>>()
                })
            })
            .collect();
        let mut refused = Vec::new();
        for h in parts {
            refused
                .extend(h.join().unwrap_or_else(|_| {
                    Err(Failure::Failed("a signing thread panicked".into()))
                })?);
        }
        Ok(refused)
    });
    let unwritten = match written {
        Ok(r) => r,
        Err(e) => {
            discard_pending();
            return Err(e);
        }
    };
    let left_out: std::collections::HashSet<&str> =
        unwritten.iter().map(|r| r.entity_id.as_str()).collect();
    let written: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| !left_out.contains(id))
        .collect();
    for id in &written {
        let (from, to) = (pending_of(id), path_of(id));
        if let Err(e) = std::fs::rename(&from, &to) {
            discard_pending();
            return Err(Failure::Failed(format!("{}: {e}", to.display())));
        }
    }
    sync_dir(Path::new(&outdir))?;
    let current: std::collections::HashSet<String> = written
        .iter()
        .map(|id| format!("{}.xml", saml_metadata::model::sha1_hex(id)))
        .collect();
    let manifest = manifest_of(Path::new(&outdir), &split_source(&agg, &file));
    let (removed, listed) = if o.keep_stale {
        // What is kept stays this source's, to be removed by a later split without the flag.
        let mut listed = current.clone();
        listed.extend(
            read_manifest(&manifest)?
                .into_iter()
                .filter(|n| Path::new(&outdir).join(n).exists()),
        );
        (Vec::new(), listed)
    } else {
        let removed = remove_stale(Path::new(&outdir), &manifest, &current)?;
        (removed, current)
    };
    write_manifest(&manifest, &listed)?;
    let mut refused = agg.refused_entities().to_vec();
    refused.extend(unwritten);
    refused.sort_by_key(|r| r.offset);
    if o.json {
        let list: Vec<Value> = written
            .iter()
            .map(|id| written_json(id, &path_of(id).display().to_string()))
            .collect();
        let refused = refused_json(&refused);
        return say_json(
            out,
            &json!({
                "entities": list,
                "refused": refused,
                "expired": agg.expired_entities(),
                "removed": removed,
            }),
        );
    }
    say_refused(out, &refused)?;
    for id in agg.expired_entities() {
        say(
            out,
            format_args!("expired {id}: its validUntil has passed, left out"),
        )?;
    }
    for f in &removed {
        say(
            out,
            format_args!("removed {f}: its entity is no longer published"),
        )?;
    }
    say(out, format_args!("OK {} entities", written.len()))
}

/// Removes the new files (`.<sha1>.xml.new-*`) an earlier split killed before its renames left
/// in `dir`, once they are an hour old (a split running now is younger). Best effort.
fn remove_abandoned(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pending = name
            .strip_prefix('.')
            .and_then(|n| n.split_once(".xml.new-"))
            .is_some_and(|(sha, _)| is_entity_file(&format!("{sha}.xml")));
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < hour_ago);
        if pending && old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Syncs the directory `dir`, so that the renames into it survive a crash (review W10).
fn sync_dir(dir: &Path) -> Res<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Failure::Failed(format!("{}: {e}", dir.display())))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// What identifies the source a split comes from, across runs: the root group's `Name`, or
/// the root entity's entityID; for a group without a Name, the file's absolute path.
fn split_source(agg: &saml_metadata::lazy::LazyAggregate<'_>, file: &str) -> String {
    let mut events = agg.verified().events().ok();
    let named = events.as_mut().and_then(|ev| {
        ev.advance().ok()?;
        let Some(saml_core::xml::Event::Start(root)) = ev.current() else {
            return None;
        };
        let key = match root.name.local {
            "EntitiesDescriptor" => "Name",
            _ => "entityID",
        };
        root.attributes
            .iter()
            .find(|a| a.namespace.is_empty() && a.name.local == key)
            .map(|a| format!("{}={}", root.name.local, a.value()))
    });
    named.unwrap_or_else(|| {
        let path = std::fs::canonicalize(file).unwrap_or_else(|_| Path::new(file).to_owned());
        format!("file={}", path.display())
    })
}

/// The manifest of the files a split of `source` wrote into `dir`:
/// `.samlmd-split-<SHA-1 of the source>.list`, one file name per line.
fn manifest_of(dir: &Path, source: &str) -> std::path::PathBuf {
    dir.join(format!(
        ".samlmd-split-{}.list",
        saml_metadata::model::sha1_hex(source)
    ))
}

/// Largest manifest read (a million entity files' names).
const MAX_MANIFEST: u64 = 48 << 20;

/// The entity file names a manifest lists (none for a missing one).
fn read_manifest(path: &Path) -> Res<Vec<String>> {
    use std::io::Read;
    let failed = |e: std::io::Error| Failure::Failed(format!("{}: {e}", path.display()));
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(failed(e)),
    };
    let mut text = String::new();
    f.take(MAX_MANIFEST)
        .read_to_string(&mut text)
        .map_err(failed)?;
    Ok(text
        .lines()
        .filter(|n| is_entity_file(n))
        .map(str::to_owned)
        .collect())
}

/// Writes the manifest of `current` (a new file renamed into place).
fn write_manifest(path: &Path, current: &std::collections::HashSet<String>) -> Res<()> {
    let mut names: Vec<&str> = current.iter().map(String::as_str).collect();
    names.sort_unstable();
    let mut text = names.join("\n");
    text.push('\n');
    let tmp = path.with_extension(format!("list.new-{}", std::process::id()));
    let failed = |p: &Path, e: std::io::Error| Failure::Failed(format!("{}: {e}", p.display()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| failed(&tmp, e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| failed(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| failed(path, e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Whether `name` is an entity file's (`<40 hex digits>.xml`).
fn is_entity_file(name: &str) -> bool {
    name.len() == 44
        && name.ends_with(".xml")
        && name[..40]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Removes the entity files the previous split of this source wrote (its `manifest`) that are
/// not in `current` and that no other source's manifest in `dir` lists; returns their names,
/// sorted. Files another source wrote, or that no split of this version wrote, are never
/// touched (review W4: every `<sha1>.xml` not just written was removed, so a second source
/// split into the same directory, or a second one-entity document, removed the first's).
fn remove_stale(
    dir: &Path,
    manifest: &Path,
    current: &std::collections::HashSet<String>,
) -> Res<Vec<String>> {
    let previous = read_manifest(manifest)?;
    if previous.iter().all(|n| current.contains(n)) {
        return Ok(Vec::new());
    }
    let mut others = std::collections::HashSet::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| Failure::Failed(format!("{}: {e}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| Failure::Failed(format!("{}: {e}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".samlmd-split-") && name.ends_with(".list") && entry.path() != manifest
        {
            others.extend(read_manifest(&entry.path())?);
        }
    }
    let mut removed = Vec::new();
    for name in previous {
        if current.contains(&name) || others.contains(&name) {
            continue;
        }
        let path = dir.join(&name);
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(name),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Failure::Failed(format!("{}: {e}", path.display()))),
        }
    }
    removed.sort();
    Ok(removed)
}

/// Most entities `gen` writes.
const MAX_GENERATED: usize = 1_000_000;

fn generate(o: &Opts, out: &mut dyn Write) -> Res<()> {
    let [n, file] = positional::<2>(o, "N OUT")?;
    // At most a million entities (6.7 GB of XML): a larger N overflowed the size estimate, a
    // panic (review W9).
    let n: usize = n
        .parse()
        .ok()
        .filter(|n| (1..=MAX_GENERATED).contains(n))
        .ok_or_else(|| {
            Failure::Usage(format!("N={n:?} is not a number from 1 to {MAX_GENERATED}"))
        })?;
    let xml = crate::aggregate::generate(n, 1);
    write_replacing(&file, |f| {
        f.write_all(xml.as_bytes())
            .map_err(|e| Failure::Failed(format!("{file}: {e}")))
    })?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn single_threaded_flag_keeps_verification_on_the_calling_thread() {
        let dir = tempfile::tempdir().unwrap();
        let (_, cert_pem) = testkit::signer::rsa2048_self_signed("samlmd cli test").unwrap();
        let cert = dir.path().join("c.pem");
        std::fs::write(&cert, cert_pem).unwrap();
        let cert = cert.to_str().unwrap().to_owned();
        let args = |extra: &[&str]| -> Vec<String> {
            let mut v = vec!["--cert".to_owned(), cert.clone()];
            v.extend(extra.iter().map(|s| (*s).to_owned()));
            v.push("file.xml".to_owned());
            v
        };
        let default = policy(&parse_opts(&args(&[])).unwrap()).unwrap();
        assert!(default.verify.parallel_min_size.is_some());
        let single = policy(&parse_opts(&args(&["--single-threaded"])).unwrap()).unwrap();
        assert_eq!(single.verify.parallel_min_size, None);
        // Combines with --legacy in either order.
        for extra in [
            ["--legacy", "--single-threaded"],
            ["--single-threaded", "--legacy"],
        ] {
            let p = policy(&parse_opts(&args(&extra)).unwrap()).unwrap();
            assert_eq!(p.verify.parallel_min_size, None);
            assert!(p.verify.allow_sha1);
        }
    }
}
