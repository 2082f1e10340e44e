//! What the service tests share: a free loopback port, and `dame-broker`/`dame-agent`
//! processes started from a configuration file (log beside it), killed when dropped.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A loopback port nobody listens on now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A service process, killed and reaped when dropped.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `bin --config cfg`, its stderr (the JSON log) in `cfg` with extension `log`.
pub(crate) fn spawn(bin: &str, cfg: &Path) -> Proc {
    let log = std::fs::File::create(cfg.with_extension("log")).unwrap();
    Proc(
        Command::new(bin)
            .arg("--config")
            .arg(cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}
