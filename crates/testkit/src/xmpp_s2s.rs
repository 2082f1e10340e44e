//! The seed use case of RFC 6595, runnable on loopback: XMPP server-to-server authentication with
//! SAML20 and single sign-on across destinations.
//!
//! ```text
//!  source server ──TCP: <stream:stream> <auth mechanism='SAML20'> ──► destination 1 (XMPP + ACS)
//!        │        ◄── <challenge>redirect</challenge>    <response>=</response> ──►
//!  source's agent ──HTTP GET redirect (cookie jar)──► IdP ──login once, HTML form──► agent
//!        agent ──HTTP POST SAMLResponse──► destination 1's ACS ──► <success/> on the stream
//!  destination 2: same exchange; the IdP sees the agent's session cookie: no new login.
//! ```
//! Everything runs in one process on 127.0.0.1 with real sockets: XML stream headers and SASL
//! elements over TCP, the SAML HTTP-Redirect and HTTP-POST bindings over HTTP/1.1. The XMPP
//! framing here is deliberately small (both ends are ours); the SASL and SAML parts are the
//! library's.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use saml_core::bindings::{MessageKind, post, redirect, url_encode};
use saml_core::dsig::{SigningKey, TrustedKeys};
use saml_core::protocol::idp::{ResponseBuilder, check_request};
use saml_core::protocol::{
    AuthnRequest, MemoryReplayCache, NAMEID_PERSISTENT, NameId, openssl_random,
};
use sasl_saml20::client::{Client, RedirectPolicy, Step};
use sasl_saml20::resolver::{ResolvedIdp, StaticResolver};
use sasl_saml20::server::{Identity, Outcome, Server, ServerConfig};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const IDP_ENTITY: &str = "https://idp.cloud.example/idp";
const DOMAIN: &str = "cloud.example";
const SASL_NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

/// What one destination reported.
#[derive(Debug, Clone)]
pub struct Report {
    /// The destination's domain.
    pub destination: String,
    /// The SASL outcome on the destination (`Ok`: the authenticated identity, the name together
    /// with the IdP that asserted it, its scope checked against the IdP's by the server's
    /// default identity policy).
    pub outcome: Result<Identity, String>,
    /// What the source saw at the end of the stream (`<success/>` or a `<failure>`).
    pub source_saw: String,
    /// Whether the IdP had to log the user in (false: single sign-on from its session).
    pub idp_login: bool,
}

fn read_http(stream: &mut TcpStream) -> Res<(String, HashMap<String, String>, Vec<u8>)> {
    let mut r = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len.min(1 << 20)];
    r.read_exact(&mut body)?;
    Ok((line.trim_end().to_owned(), headers, body))
}

fn respond(stream: &mut TcpStream, status: &str, extra: &str, body: &str) -> Res<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    )?;
    Ok(())
}

/// The IdP: `GET /sso?SAMLRequest=…` → login (once per cookie) → auto-submit form to the ACS.
struct Idp {
    logins: Arc<Mutex<u32>>,
}

fn start_idp(
    listener: TcpListener,
    key: SigningKey,
    known_acs: Vec<String>,
    user: String,
) -> Res<(Idp, JoinHandle<()>)> {
    let addr = listener.local_addr()?;
    let logins = Arc::new(Mutex::new(0u32));
    let counter = logins.clone();
    let sso = format!("http://{addr}/sso");
    let requests = known_acs.len();
    let handle = std::thread::spawn(move || {
        let mut sessions: HashMap<String, String> = HashMap::new(); // cookie -> user
        for conn in listener.incoming().take(requests) {
            let Ok(mut s) = conn else { continue };
            let r = (|| -> Res<()> {
                let (line, headers, _) = read_http(&mut s)?;
                let target = line.split(' ').nth(1).unwrap_or("");
                let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
                let m = redirect::decode(query, redirect::DEFAULT_MAX_INFLATED)?;
                let req = AuthnRequest::parse(&m.xml)?;
                let now = SystemTime::now();
                check_request(
                    &req,
                    &[sso.as_str()],
                    now,
                    Duration::from_secs(300),
                    Duration::from_secs(60),
                )?;
                let acs = req.acs_url.clone().unwrap_or_default();
                if !known_acs.contains(&acs) {
                    return respond(&mut s, "403 Forbidden", "", "unknown ACS");
                }
                let cookie = headers
                    .get("cookie")
                    .and_then(|c| c.strip_prefix("idp_session="))
                    .map(str::to_owned);
                let (user, set_cookie) = match cookie.as_ref().and_then(|c| sessions.get(c)) {
                    Some(u) => (u.clone(), String::new()),
                    None => {
                        // The demo's login page: the agent's user authenticates as alice.
                        if let Ok(mut n) = counter.lock() {
                            *n += 1;
                        }
                        let c = saml_core::protocol::new_id(&mut openssl_random);
                        sessions.insert(c.clone(), user.clone());
                        (user.clone(), format!("Set-Cookie: idp_session={c}\r\n"))
                    }
                };
                let resp = ResponseBuilder::for_request(
                    &req,
                    IDP_ENTITY,
                    &acs,
                    NameId::new(&user, NAMEID_PERSISTENT),
                )
                .build(&key, now, &mut openssl_random)?;
                let form =
                    post::form(&acs, MessageKind::Response, &resp, m.relay_state.as_deref())?;
                respond(&mut s, "200 OK", &set_cookie, &form)
            })();
            if let Err(e) = r {
                let _ = respond(&mut s, "400 Bad Request", "", &e.to_string());
            }
        }
    });
    Ok((Idp { logins }, handle))
}

/// The agent's browser: GET with its cookie jar, then POST the form it gets.
fn agent_follow(url: &str, jar: &mut Option<String>) -> Res<()> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("the demo IdP is on http://127.0.0.1")?;
    let (host, path) = rest.split_once('/').ok_or("bad url")?;
    let mut s = TcpStream::connect(host)?;
    let cookie = jar
        .as_ref()
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\n{cookie}Connection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    if let Some(c) = text.lines().find_map(|l| l.strip_prefix("Set-Cookie: ")) {
        *jar = Some(c.split(';').next().unwrap_or(c).to_owned());
    }
    let field = |name: &str| -> Option<String> {
        let at = text.find(&format!("name=\"{name}\" value=\""))? + name.len() + 15;
        Some(
            text[at..]
                .split('"')
                .next()?
                .replace("&amp;", "&")
                .replace("&quot;", "\""),
        )
    };
    let action = {
        let at = text
            .find("action=\"")
            .ok_or("no form in the IdP's answer")?
            + 8;
        text[at..]
            .split('"')
            .next()
            .unwrap_or("")
            .replace("&amp;", "&")
    };
    let saml = field("SAMLResponse").ok_or("no SAMLResponse in the form")?;
    let body = format!("SAMLResponse={}", url_encode(&saml));
    let rest = action.strip_prefix("http://").ok_or("bad ACS")?;
    let (host, path) = rest.split_once('/').ok_or("bad ACS")?;
    let mut s = TcpStream::connect(host)?;
    write!(
        s,
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    Ok(())
}

/// A destination: an XMPP s2s listener and an ACS listener sharing the SASL sessions.
struct Destination {
    domain: String,
    xmpp: SocketAddr,
}

type Pending = Arc<Mutex<HashMap<String, Sender<Vec<u8>>>>>;

fn start_destination(
    domain: &str,
    xmpp: TcpListener,
    acs: TcpListener,
    idp_sso: &str,
    idp_keys: TrustedKeys,
) -> Res<(Destination, JoinHandle<Result<Identity, String>>)> {
    let xmpp_addr = xmpp.local_addr()?;
    let acs_url = format!("http://{}/acs", acs.local_addr()?);
    let mut resolver = StaticResolver::new();
    resolver.insert(
        DOMAIN,
        ResolvedIdp {
            entity_id: IDP_ENTITY.into(),
            sso_url: idp_sso.into(),
            keys: idp_keys,
            scopes: Vec::new(),
            wants_signed_requests: false,
        },
    )?;
    let cfg = Arc::new(ServerConfig::new(
        &format!("xmpp:{domain}"),
        &acs_url,
        Arc::new(resolver),
    ));
    let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
    // The ACS: route each Response to the session whose request ID it answers. The entry
    // stays until the session ends: a Response posted by someone else for that request does
    // not take the genuine one's place (sasl-saml20 server docs, "Who may end a session").
    let p = pending.clone();
    std::thread::spawn(move || {
        for conn in acs.incoming() {
            let Ok(mut s) = conn else { continue };
            let r = (|| -> Res<()> {
                let (_, _, body) = read_http(&mut s)?;
                let form =
                    post::decode_form(std::str::from_utf8(&body)?, post::DEFAULT_MAX_MESSAGE)?;
                let text = String::from_utf8_lossy(&form.xml).into_owned();
                let irt = text
                    .split("InResponseTo=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or("")
                    .to_owned();
                let tx = p
                    .lock()
                    .map_err(|_| "lock")?
                    .get(&irt)
                    .cloned()
                    .ok_or("no session for this Response")?;
                tx.send(form.xml)?;
                respond(&mut s, "200 OK", "", "received; you may close this window")
            })();
            if let Err(e) = r {
                let _ = respond(&mut s, "400 Bad Request", "", &e.to_string());
            }
        }
    });
    let dom = domain.to_owned();
    let handle = std::thread::spawn(move || -> Result<Identity, String> {
        let serve = || -> Res<Outcome> {
            let (mut s, _) = xmpp.accept()?;
            s.set_read_timeout(Some(Duration::from_secs(20)))?;
            read_until(&mut s, ">")?; // the source's stream header
            write!(
                s,
                "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='{dom}' id='s2s-1' version='1.0'><stream:features><mechanisms xmlns='{SASL_NS}'><mechanism>SAML20</mechanism></mechanisms></stream:features>"
            )?;
            let auth = read_until(&mut s, "</auth>")?;
            if !auth.contains("mechanism='SAML20'") {
                return Err("the source did not choose SAML20".into());
            }
            let initial = B64.decode(element_text(&auth, "auth"))?;
            let mut session = Server::new(cfg.clone());
            let now = SystemTime::now();
            let (tx, rx) = channel();
            let challenge = match session.start(Some(&initial), now, &mut openssl_random) {
                Ok(c) => c,
                Err(e) => {
                    write!(
                        s,
                        "<failure xmlns='{SASL_NS}'><{}/></failure>",
                        e.xmpp_condition()
                    )?;
                    return Err(e.into());
                }
            };
            if let Some(id) = session.request_id() {
                pending
                    .lock()
                    .map_err(|_| "lock")?
                    .insert(id.to_owned(), tx);
            }
            write!(
                s,
                "<challenge xmlns='{SASL_NS}'>{}</challenge>",
                B64.encode(&challenge)
            )?;
            let response = read_until(&mut s, "</response>")?;
            session.handle_response(
                &B64.decode(element_text(&response, "response"))?,
                SystemTime::now(),
                &mut openssl_random,
            )?;
            let mut replay = MemoryReplayCache::new();
            let decided = loop {
                let xml = rx.recv_timeout(Duration::from_secs(20))?;
                match session.handle_saml_response(&xml, SystemTime::now(), &mut replay) {
                    // Anyone's post: wait for the next one for this request.
                    Err(_) if session.awaits_saml_response() => {}
                    decided => break decided,
                }
            };
            if let Some(id) = session.request_id() {
                pending.lock().map_err(|_| "lock")?.remove(id);
            }
            match decided {
                Ok(o) => {
                    write!(s, "<success xmlns='{SASL_NS}'/>")?;
                    Ok(o)
                }
                Err(e) => {
                    write!(
                        s,
                        "<failure xmlns='{SASL_NS}'><{}/></failure>",
                        e.xmpp_condition()
                    )?;
                    Err(e.into())
                }
            }
        };
        // The identity, never the bare name: the IdP that asserted it comes with it.
        serve().map(|o| o.identity).map_err(|e| e.to_string())
    });
    Ok((
        Destination {
            domain: domain.to_owned(),
            xmpp: xmpp_addr,
        },
        handle,
    ))
}

/// The text content of the last `<name ...>text</name>` element in `buf`.
fn element_text<'b>(buf: &'b str, name: &str) -> &'b str {
    let Some(open) = buf.rfind(&format!("<{name}")) else {
        return "";
    };
    let el = &buf[open..];
    let start = el.find('>').map(|i| i + 1).unwrap_or(0);
    let end = el.rfind("</").unwrap_or(el.len());
    el.get(start..end).unwrap_or("").trim()
}

fn read_until(s: &mut TcpStream, needle: &str) -> Res<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&buf).contains(needle) {
        if s.read(&mut byte)? == 0 {
            return Err(format!("stream closed before {needle}").into());
        }
        buf.push(byte[0]);
        if buf.len() > 64 << 10 {
            return Err("element too large".into());
        }
    }
    Ok(String::from_utf8(buf)?)
}

/// The source server's side of one s2s connection.
fn source_connect(dest: &Destination, jar: &mut Option<String>) -> Res<String> {
    let mut s = TcpStream::connect(dest.xmpp)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        s,
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='source.example' to='{}' version='1.0'>",
        dest.domain
    )?;
    let features = read_until(&mut s, "</stream:features>")?;
    if !features.contains("<mechanism>SAML20</mechanism>") {
        return Err("SAML20 not offered".into());
    }
    // Loopback demo only: the IdP runs on http://127.0.0.1.
    let mut client =
        Client::new(None, DOMAIN)?.with_policy(RedirectPolicy::default().with_require_https(false));
    write!(
        s,
        "<auth xmlns='{SASL_NS}' mechanism='SAML20'>{}</auth>",
        B64.encode(client.initial_response()?)
    )?;
    let challenge = read_until(&mut s, "</challenge>")?;
    let Step::OpenUrl { url, respond } =
        client.handle_challenge(&B64.decode(element_text(&challenge, "challenge"))?)?
    else {
        return Err("unexpected step".into());
    };
    write!(
        s,
        "<response xmlns='{SASL_NS}'>{}</response>",
        B64.encode(respond)
    )?;
    agent_follow(&url, jar)?;
    let end = read_until(&mut s, "/>")?;
    let ok = end.contains("<success");
    client.outcome(ok)?;
    Ok(end.trim().to_owned())
}

/// Runs the whole scenario: one IdP, two destinations, one source whose agent logs in once.
pub fn run() -> Res<Vec<Report>> {
    run_as("alice@cloud.example")
}

/// [`run`] with the IdP's user named `user`. A scoped name outside the IdP's domain
/// (`cloud.example`) is refused by the destinations' default identity policy: the cloud IdP
/// cannot speak for another organisation's users.
pub fn run_as(user: &str) -> Res<Vec<Report>> {
    let key = SigningKey::new(PKey::from_rsa(Rsa::generate(2048)?)?, None)?;
    let mut keys = TrustedKeys::new();
    keys.add_public_key(key.public_key()?, "cloud IdP")?;
    // Every listener first, so that each party knows the others' addresses (their "metadata").
    let idp_listener = TcpListener::bind("127.0.0.1:0")?;
    let idp_sso = format!("http://{}/sso", idp_listener.local_addr()?);
    let mut listeners = Vec::new();
    for domain in ["d1.example", "d2.example"] {
        listeners.push((
            domain,
            TcpListener::bind("127.0.0.1:0")?,
            TcpListener::bind("127.0.0.1:0")?,
        ));
    }
    let mut acs_urls = Vec::new();
    for (_, _, acs) in &listeners {
        acs_urls.push(format!("http://{}/acs", acs.local_addr()?));
    }
    let (idp, idp_thread) = start_idp(idp_listener, key, acs_urls, user.to_owned())?;
    let mut dests = Vec::new();
    for (domain, xmpp, acs) in listeners {
        dests.push(start_destination(
            domain,
            xmpp,
            acs,
            &idp_sso,
            keys.clone(),
        )?);
    }
    let mut jar = None;
    let mut reports = Vec::new();
    for (d, h) in dests {
        let before = *idp.logins.lock().map_err(|_| "lock")?;
        let saw = source_connect(&d, &mut jar).unwrap_or_else(|e| format!("error: {e}"));
        let outcome = h.join().map_err(|_| "destination thread panicked")?;
        let after = *idp.logins.lock().map_err(|_| "lock")?;
        reports.push(Report {
            destination: d.domain.clone(),
            outcome,
            source_saw: saw,
            idp_login: after > before,
        });
    }
    // The IdP thread ends after one request per destination; after a failure it may still wait
    // for one, so it is left to end with the process rather than joined.
    drop(idp_thread);
    Ok(reports)
}
