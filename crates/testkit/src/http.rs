//! A fault-injecting loopback HTTP server: each connection gets the next scripted answer, on
//! time, late, or cut short (the MDQ adapters' fault tests).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server does with one connection.
pub enum Act {
    /// Send these bytes at once.
    Send(Vec<u8>),
    /// Wait, then send.
    SlowThen(Duration, Vec<u8>),
    /// Send only the first `n` bytes, then close.
    Truncated(Vec<u8>, usize),
}

/// An HTTP/1.1 response with `Content-Length` and `Connection: close`.
pub fn http(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    )
    .into_bytes();
    for (k, v) in headers {
        out.extend(format!("{k}: {v}\r\n").into_bytes());
    }
    out.extend(b"\r\n");
    out.extend(body);
    out
}

/// A server answering each connection with the next action; returns its base URL and the
/// request heads it saw.
pub fn server(acts: Vec<Act>) -> (String, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/", l.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for act in acts {
            let Ok((mut s, _)) = l.accept() else { return };
            let log = log.clone();
            // One thread per connection, so that a slow answer does not hold up the next one.
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                log.lock().unwrap().push(head);
                match act {
                    Act::Send(b) => {
                        let _ = s.write_all(&b);
                    }
                    Act::SlowThen(d, b) => {
                        std::thread::sleep(d);
                        let _ = s.write_all(&b);
                    }
                    Act::Truncated(b, n) => {
                        let _ = s.write_all(&b[..n]);
                    }
                }
            });
        }
    });
    (base, seen)
}

/// [`server`] over TLS (OpenSSL), with a fresh self-signed certificate for `127.0.0.1`: returns
/// its base URL (`https://127.0.0.1:<port>/`), the request heads it saw, and the certificate
/// (DER) a client must trust.
pub fn tls_server(acts: Vec<Act>) -> (String, Arc<Mutex<Vec<String>>>, Vec<u8>) {
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::ssl::{SslAcceptor, SslMethod};
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509, X509NameBuilder};
    let key = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "127.0.0.1").unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    let san = SubjectAlternativeName::new()
        .ip("127.0.0.1")
        .build(&b.x509v3_context(None, None))
        .unwrap();
    b.append_extension(san).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    let cert = b.build();
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    acceptor.set_private_key(&key).unwrap();
    acceptor.set_certificate(&cert).unwrap();
    let acceptor = Arc::new(acceptor.build());
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("https://{}/", l.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for act in acts {
            let Ok((tcp, _)) = l.accept() else { return };
            let (log, acceptor) = (log.clone(), acceptor.clone());
            std::thread::spawn(move || {
                // A client that refuses the certificate ends the handshake: nothing more.
                let Ok(mut s) = acceptor.accept(tcp) else {
                    return;
                };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 16 << 10 {
                    match std::io::Read::read(&mut s, &mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let body = match act {
                    Act::Send(b) => b,
                    Act::SlowThen(d, b) => {
                        std::thread::sleep(d);
                        b
                    }
                    Act::Truncated(b, n) => b[..n].to_vec(),
                };
                let _ = s.write_all(&body);
                let _ = s.shutdown();
            });
        }
    });
    (base, seen, cert.to_der().unwrap())
}
