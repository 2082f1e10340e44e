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
