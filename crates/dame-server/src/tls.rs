//! The services' listeners: plain TCP (behind a TLS-terminating proxy) or TLS terminated here
//! with the system's OpenSSL (through native-tls; TLS 1.2 at least), and the HTTP clients'
//! extra trust anchors. A TLS handshake runs in its own task with a 10 s limit, so a slow or
//! silent client never holds up the accept loop; at most 512 run at once.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::serve::ListenerExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio_native_tls::TlsStream;

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
    let key_pem = openssl::pkey::PKey::private_key_from_pem(&read("tls_key", key)?)
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

/// Connections whose TLS handshake completed.
struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept loop ended (its listener failed): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

fn tls_listener(
    tcp: TcpListener,
    acc: tokio_native_tls::TlsAcceptor,
) -> std::io::Result<TlsListener> {
    let local = tcp.local_addr()?;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acc = std::sync::Arc::new(acc);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match tcp.accept().await {
                Ok(c) => c,
                Err(e) => {
                    log(&[("event", "accept-error".into()), ("error", e.to_string())]);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                log(&[
                    ("event", "tls-handshakes-full".into()),
                    ("remote", peer.to_string()),
                ]);
                continue;
            };
            let (acc, tx) = (acc.clone(), tx.clone());
            tokio::spawn(async move {
                let _slot = slot;
                match tokio::time::timeout(HANDSHAKE, acc.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send((tls, peer)).await;
                    }
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
    });
    Ok(TlsListener { rx, local })
}

/// Serves `router` on `listen` (TLS when `tls` is given) until `shutdown` resolves; in-flight
/// requests finish first.
pub(crate) async fn serve(
    listen: SocketAddr,
    tls: Option<tokio_native_tls::TlsAcceptor>,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let io = |what: String| move |e| Error::Io { what, source: e };
    let tcp = TcpListener::bind(listen)
        .await
        .map_err(io(format!("listen on {listen}")))?;
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        None => axum::serve(tcp, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(io("serve".into())),
        Some(acc) => {
            let l = tls_listener(tcp, acc).map_err(io(format!("listen on {listen}")))?;
            axum::serve(l.tap_io(|_| {}), app)
                .with_graceful_shutdown(shutdown)
                .await
                .map_err(io("serve".into()))
        }
    }
}
