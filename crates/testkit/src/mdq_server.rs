//! A small MDQ responder on loopback for the demo, the benches and tests: it serves per-entity
//! signed documents (e.g. `saml_metadata::split` output, re-signed) at `/entities/{id}`, by
//! entityID or `{sha1}`, with ETag, Cache-Control and HTTP/1.1 keep-alive (HTTP/1.0 and
//! `Connection: close` get the connection closed after the answer); unknown entities get 404
//! with a max-age. Not a production server: one thread per connection, no TLS.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use saml_core::bindings::url_decode;
use saml_metadata::model::sha1_hex;

/// A running responder.
#[derive(Debug)]
pub struct MdqServer {
    /// Its base URL (`http://127.0.0.1:PORT/`).
    pub base: String,
    /// Requests answered so far.
    pub requests: Arc<AtomicUsize>,
    /// Its address.
    pub addr: SocketAddr,
}

/// Starts serving `docs` (`{sha1}` hex of the entityID -> signed document).
pub fn serve(docs: HashMap<String, Vec<u8>>) -> std::io::Result<MdqServer> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let docs = Arc::new(docs);
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { continue };
            let docs = docs.clone();
            let count = count.clone();
            std::thread::spawn(move || {
                let Ok(rs) = s.try_clone() else { return };
                let mut r = BufReader::new(rs);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    // HTTP/1.1 keeps the connection unless the client says `close`; HTTP/1.0
                    // closes it unless the client says `keep-alive` (PHP's stream wrapper
                    // sends HTTP/1.0 and reads to the end of the stream).
                    let mut keep = line.trim_end().ends_with("HTTP/1.1");
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = h.split_once(':')
                            && name.trim().eq_ignore_ascii_case("connection")
                        {
                            match value.trim().to_ascii_lowercase().as_str() {
                                "close" => keep = false,
                                "keep-alive" => keep = true,
                                _ => {}
                            }
                        }
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    let path = line.split(' ').nth(1).unwrap_or("");
                    let key = path.strip_prefix("/entities/").map(|seg| {
                        match seg
                            .strip_prefix("%7Bsha1%7D")
                            .or_else(|| seg.strip_prefix("{sha1}"))
                        {
                            Some(hex) => hex.to_ascii_lowercase(),
                            None => sha1_hex(&url_decode(seg).unwrap_or_default()),
                        }
                    });
                    let reply = match key.as_ref().and_then(|k| docs.get(k).map(|d| (k, d))) {
                        Some((k, d)) => {
                            let mut out = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/samlmetadata+xml\r\nETag: \"{}\"\r\nCache-Control: max-age=3600\r\nContent-Length: {}\r\n\r\n",
                                &k[..16],
                                d.len()
                            )
                            .into_bytes();
                            out.extend_from_slice(d);
                            out
                        }
                        None => b"HTTP/1.1 404 Not Found\r\nCache-Control: max-age=600\r\nContent-Length: 0\r\n\r\n".to_vec(),
                    };
                    if s.write_all(&reply).is_err() {
                        return;
                    }
                    if !keep {
                        return;
                    }
                }
            });
        }
    });
    Ok(MdqServer {
        base: format!("http://{addr}/"),
        requests,
        addr,
    })
}
