//! The services' listeners: plain TCP (behind a TLS-terminating proxy) or TLS terminated here
//! with the system's OpenSSL (through native-tls; TLS 1.2 at least), and the HTTP clients'
//! extra trust anchors. Both serve HTTP/1.1 with hyper within the `[http]` limits
//! ([`HttpLimits`]): connections in all and per client address (one beyond is closed at once,
//! before any handshake), a header read timeout (also for idle keep-alive connections), a
//! timeout over each whole request, its body included, and the same timeout on an answer the
//! client does not read. A TLS handshake runs in its own task
//! with a 10 s limit, so a slow or silent client never holds up the accept loop; at most 512
//! run at once.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_service::Service as _;

use crate::config::HttpLimits;
use crate::error::Error;
use crate::log;

const HANDSHAKE: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; a connection beyond it is closed at once.
const MAX_HANDSHAKES: usize = 512;

/// The TLS acceptor a service's `tls_certificate` and `tls_key` ask for (both or neither).
pub(crate) fn configured(
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<tokio_native_tls::TlsAcceptor>, Error> {
    crate::config::tls_pair(cert, key)?
        .map(|(c, k)| acceptor(c, k))
        .transpose()
}

/// A TLS acceptor from PEM files: the certificate (chain) and its private key.
fn acceptor(cert: &Path, key: &Path) -> Result<tokio_native_tls::TlsAcceptor, Error> {
    let read = |k: &str, p: &Path| {
        std::fs::read(p).map_err(|e| Error::config(k, format!("{}: {e}", p.display())))
    };
    let cert_pem = read("tls_certificate", cert)?;
    // native-tls wants PKCS#8: convert whatever PEM form the key is in.
    let key_pem =
        openssl::pkey::PKey::private_key_from_pem(&crate::config::read_secret("tls_key", key)?)
            .and_then(|k| k.private_key_to_pem_pkcs8())
            .map_err(|e| Error::config("tls_key", e.to_string()))?;
    let id = native_tls::Identity::from_pkcs8(&cert_pem, &key_pem)
        .map_err(|e| Error::config("tls_certificate", e.to_string()))?;
    let acc = native_tls::TlsAcceptor::builder(id)
        .min_protocol_version(Some(native_tls::Protocol::Tlsv12))
        .build()
        .map_err(|e| Error::config("tls_certificate", e.to_string()))?;
    Ok(acc.into())
}

/// Adds the certificates of the PEM file `ca` (when given) as trust anchors of `b`.
pub(crate) fn trust(
    mut b: reqwest::ClientBuilder,
    key: &str,
    ca: Option<&Path>,
) -> Result<reqwest::ClientBuilder, Error> {
    let Some(ca) = ca else { return Ok(b) };
    let pem =
        std::fs::read(ca).map_err(|e| Error::config(key, format!("{}: {e}", ca.display())))?;
    let certs =
        openssl::x509::X509::stack_from_pem(&pem).map_err(|e| Error::config(key, e.to_string()))?;
    if certs.is_empty() {
        return Err(Error::config(key, "no certificate in the file"));
    }
    for c in certs {
        let pem = c.to_pem().map_err(|e| Error::config(key, e.to_string()))?;
        let cert =
            reqwest::Certificate::from_pem(&pem).map_err(|e| Error::config(key, e.to_string()))?;
        b = b.add_root_certificate(cert);
    }
    Ok(b)
}

/// How many connections are open, in all and per client address ([`crate::source_key`]):
/// a connection is admitted only with room in both, and gives its room back when it closes.
struct Gate {
    total: Arc<Semaphore>,
    per_source: Mutex<HashMap<String, u32>>,
    per_source_max: u32,
    /// Trusted reverse proxies: their connections count against the total only.
    proxies: Arc<[ipnet::IpNet]>,
    /// When a refusal was last logged (Unix seconds), so a flood logs one line a second.
    logged: AtomicI64,
    refused: AtomicU64,
}

/// One admitted connection's room.
struct Admitted {
    gate: Arc<Gate>,
    /// The per-address count it holds (none for a trusted proxy).
    key: Option<String>,
    _total: OwnedSemaphorePermit,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let Some(key) = &self.key else { return };
        let mut m = self
            .gate
            .per_source
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(key);
            }
        }
    }
}

impl Gate {
    fn new(limits: &HttpLimits, proxies: Arc<[ipnet::IpNet]>) -> Self {
        Gate {
            proxies,
            total: Arc::new(Semaphore::new(limits.max_connections as usize)),
            per_source: Mutex::new(HashMap::new()),
            per_source_max: limits.max_connections_per_address,
            logged: AtomicI64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Room for a connection from `ip`, or why not.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, &'static str> {
        let total = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| "max_connections")?;
        if trusted(&self.proxies, ip) {
            return Ok(Admitted {
                gate: self.clone(),
                key: None,
                _total: total,
            });
        }
        let key = crate::source_key(ip);
        let mut m = self.per_source.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(key.clone()).or_insert(0);
        if *n >= self.per_source_max {
            return Err("max_connections_per_address");
        }
        *n += 1;
        drop(m);
        Ok(Admitted {
            gate: self.clone(),
            key: Some(key),
            _total: total,
        })
    }

    /// Logs a refused connection: at most one line a second, with the count since the last.
    fn refused(&self, peer: SocketAddr, why: &str) {
        let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if self.logged.swap(now, Ordering::Relaxed) != now {
            self.refused.store(0, Ordering::Relaxed);
            log(&[
                ("event", "connection-refused".into()),
                ("remote", peer.to_string()),
                ("limit", why.into()),
                ("refused", n.to_string()),
            ]);
        }
    }
}

/// What every connection's task needs.
#[derive(Clone)]
struct Conn {
    http: Arc<hyper::server::conn::http1::Builder>,
    router: Router,
    request_timeout: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
    proxies: Arc<[ipnet::IpNet]>,
}

/// Whether `ip` is one of the trusted proxies (an IPv4-mapped IPv6 address as its IPv4).
fn trusted(proxies: &[ipnet::IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    proxies.iter().any(|n| n.contains(&ip))
}

/// The client a request from `peer` is for: `peer` itself, unless it is a trusted proxy; then
/// the rightmost address of the `X-Forwarded-For` fields (all of them, in order) that is not a
/// trusted proxy, as each proxy appends the address it received the request from. Entries
/// left of it were written by the client or earlier hops nobody vouches for. When every entry
/// is a trusted proxy the leftmost is taken; without a usable entry, the proxy's own address.
fn client_of(
    proxies: &[ipnet::IpNet],
    peer: SocketAddr,
    headers: &axum::http::HeaderMap,
) -> SocketAddr {
    if proxies.is_empty() || !trusted(proxies, peer.ip()) {
        return peer;
    }
    let mut client = None;
    'fields: for field in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(text) = std::str::from_utf8(field.as_bytes()) else {
            break;
        };
        for entry in text.rsplit(',') {
            let entry = entry.trim();
            let Some(ip) = entry
                .parse::<IpAddr>()
                .ok()
                .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
            else {
                break 'fields;
            };
            let ip = ip.to_canonical();
            client = Some(ip);
            if !trusted(proxies, ip) {
                break 'fields;
            }
        }
    }
    client.map_or(peer, |ip| SocketAddr::new(ip, 0))
}

impl Conn {
    /// Serves HTTP/1.1 on `io` (from `peer`) until the client closes, a limit closes it, or
    /// the service stops (then the request in progress finishes first).
    async fn run<I>(mut self, io: I, peer: SocketAddr)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (router, limit) = (self.router.clone(), self.request_timeout);
        let proxies = self.proxies.clone();
        let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let client = client_of(&proxies, peer, req.headers());
            req.extensions_mut().insert(ConnectInfo(client));
            // The whole request, its body included (extractors read it inside the router's
            // future), within the limit.
            let answer = router.clone().call(req);
            async move {
                Ok::<_, Infallible>(match tokio::time::timeout(limit, answer).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(never)) => match never {},
                    Err(_) => timed_out(),
                })
            }
        });
        let conn = self.http.serve_connection(
            hyper_util::rt::TokioIo::new(WriteDeadline::new(io, self.request_timeout)),
            svc,
        );
        tokio::pin!(conn);
        let mut stopping = false;
        loop {
            tokio::select! {
                _ = conn.as_mut() => break,
                _ = self.stop.wait_for(|s| *s), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// A connection's IO whose writes must make progress: a write or flush that has waited
/// `limit` for the client to read (its receive window full) fails with `TimedOut`, which
/// closes the connection. Without it a client that asks for a large answer, or pipelines many
/// requests, and never reads held its connection (and its share of `max_connections`) for as
/// long as it liked: the request timeout covers producing an answer, not sending it. Reads are
/// bounded by the header read timeout.
struct WriteDeadline<I> {
    io: I,
    limit: Duration,
    /// Armed when a write waits, disarmed by any progress.
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<I> WriteDeadline<I> {
    fn new(io: I, limit: Duration) -> Self {
        WriteDeadline {
            io,
            limit,
            stalled: None,
        }
    }

    /// After the inner write answered `r`: progress disarms the deadline, waiting arms it
    /// (once) and fails when it has passed.
    fn deadline<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        r: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        use std::future::Future as _;
        use std::task::Poll;
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client read nothing within the request timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteDeadline<I> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteDeadline<I> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = std::pin::Pin::new(&mut this.io).poll_write(cx, buf);
        this.deadline(cx, r)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = std::pin::Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.deadline(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = std::pin::Pin::new(&mut this.io).poll_flush(cx);
        this.deadline(cx, r)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = std::pin::Pin::new(&mut this.io).poll_shutdown(cx);
        this.deadline(cx, r)
    }
}

/// The answer to a request not read and answered within the request timeout; the connection
/// is closed after it.
fn timed_out() -> Response {
    let mut r = (StatusCode::REQUEST_TIMEOUT, "request timed out\n").into_response();
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Serves `router` on `listen` (TLS when `tls` is given) within `limits` until `shutdown`
/// resolves; in-flight requests finish first.
///
/// Each connection is admitted only within `max_connections` and
/// `max_connections_per_address` (else closed at once, before any TLS handshake); its
/// request headers must arrive within `header_read_timeout_s` (which also closes idle
/// keep-alive connections) and each whole request, body included, be answered within
/// `request_timeout_s`.
pub(crate) async fn serve(
    listen: SocketAddr,
    tls: Option<tokio_native_tls::TlsAcceptor>,
    limits: &HttpLimits,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let tcp = TcpListener::bind(listen).await.map_err(|e| Error::Io {
        what: format!("listen on {listen}"),
        source: e,
    })?;
    let proxies: Arc<[ipnet::IpNet]> = limits.proxies()?.into();
    let gate = Arc::new(Gate::new(limits, proxies.clone()));
    let acc = tls.map(Arc::new);
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_s));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let conn = Conn {
        http: Arc::new(http),
        router,
        request_timeout: Duration::from_secs(limits.request_timeout_s),
        stop: stop_rx,
        proxies,
    };
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            r = tcp.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    log(&[("event", "accept-error".into()), ("error", e.to_string())]);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let admitted = match gate.admit(peer.ip()) {
            Ok(a) => a,
            Err(why) => {
                drop(stream);
                gate.refused(peer, why);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = conn.clone();
        let Some(acc) = acc.clone() else {
            tokio::spawn(async move {
                let _room = admitted;
                conn.run(stream, peer).await;
            });
            continue;
        };
        let Ok(slot) = handshakes.clone().try_acquire_owned() else {
            log(&[
                ("event", "tls-handshakes-full".into()),
                ("remote", peer.to_string()),
            ]);
            continue;
        };
        tokio::spawn(async move {
            let _room = admitted;
            let handshake = tokio::time::timeout(HANDSHAKE, acc.accept(stream)).await;
            drop(slot);
            match handshake {
                Ok(Ok(tls)) => conn.run(tls, peer).await,
                Ok(Err(e)) => log(&[
                    ("event", "tls-handshake-failed".into()),
                    ("remote", peer.to_string()),
                    ("error", e.to_string()),
                ]),
                Err(_) => log(&[
                    ("event", "tls-handshake-timeout".into()),
                    ("remote", peer.to_string()),
                ]),
            }
        });
    }
    // Stop accepting; each connection finishes its request in progress, then closes.
    drop(tcp);
    drop(conn);
    let _ = stop_tx.send(true);
    stop_tx.closed().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::client_of;
    use axum::http::{HeaderMap, HeaderValue};
    use std::net::SocketAddr;

    fn client(proxies: &[&str], peer: &str, xff: &[&str]) -> String {
        let nets: Vec<ipnet::IpNet> = proxies.iter().map(|p| p.parse().unwrap()).collect();
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        let peer: SocketAddr = peer.parse().unwrap();
        client_of(&nets, peer, &h).ip().to_string()
    }

    /// The rightmost untrusted entry, across repeated fields; the peer when it is not a
    /// trusted proxy or nothing usable was forwarded.
    #[test]
    fn the_client_is_the_rightmost_address_no_trusted_proxy_vouches_beyond() {
        let p = ["10.0.0.1/32", "10.9.0.0/16"];
        assert_eq!(client(&p, "10.0.0.1:5", &["192.0.2.1"]), "192.0.2.1");
        assert_eq!(
            client(&p, "10.0.0.1:5", &["6.6.6.6, 192.0.2.1"]),
            "192.0.2.1"
        );
        assert_eq!(
            client(&p, "10.0.0.1:5", &["6.6.6.6", "192.0.2.1, 10.9.1.1"]),
            "192.0.2.1"
        );
        assert_eq!(
            client(&p, "10.0.0.1:5", &["[2001:db8::1]:443"]),
            "2001:db8::1"
        );
        assert_eq!(client(&p, "10.0.0.1:5", &["::ffff:192.0.2.9"]), "192.0.2.9");
        // Only proxies forwarded: the leftmost of them.
        assert_eq!(
            client(&p, "10.0.0.1:5", &["10.9.0.2, 10.9.0.3"]),
            "10.9.0.2"
        );
        // Garbage stops the walk: the last trusted hop, or the peer itself.
        assert_eq!(client(&p, "10.0.0.1:5", &["junk"]), "10.0.0.1");
        assert_eq!(client(&p, "10.0.0.1:5", &["192.0.2.1, junk"]), "10.0.0.1");
        assert_eq!(client(&p, "10.0.0.1:5", &["junk, 10.9.0.4"]), "10.9.0.4");
        assert_eq!(client(&p, "10.0.0.1:5", &[]), "10.0.0.1");
        // Not a proxy: its own address, whatever it sends.
        assert_eq!(client(&p, "192.0.2.50:5", &["198.51.100.1"]), "192.0.2.50");
        assert_eq!(client(&[], "10.0.0.1:5", &["198.51.100.1"]), "10.0.0.1");
    }
}
