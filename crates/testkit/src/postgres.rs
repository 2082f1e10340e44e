//! A private PostgreSQL server for tests and load runs: `initdb` in a directory of the caller,
//! a free loopback port, trust authentication, stopped (immediately) when dropped. Debian's
//! server programs live in `/usr/lib/postgresql/<version>/bin` (package `postgresql`, installed
//! by `scripts/setup.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A private PostgreSQL server: `initdb` in a temporary directory, a free loopback port,
/// stopped when dropped. As root, the server runs as the `postgres` user (PostgreSQL refuses
/// root). Fails loudly when the server binaries are missing.
pub struct Postgres {
    data: PathBuf,
    /// Its loopback port.
    pub port: u16,
    as_postgres: bool,
}

/// A PostgreSQL server program (`initdb`, `pg_ctl`, `psql`) of the newest installed version.
pub fn pg_bin(name: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL's {name} not found under /usr/lib/postgresql/*/bin: run scripts/setup.sh \
             (Debian package postgresql)"
        )
    })
}

impl Postgres {
    /// Starts a server whose files live under `dir`.
    pub fn start(dir: &Path) -> Postgres {
        let uid = Command::new("id").arg("-u").output().unwrap().stdout;
        let as_postgres = String::from_utf8_lossy(&uid).trim() == "0";
        let data = dir.join("pg");
        std::fs::create_dir_all(&data).unwrap();
        if as_postgres {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&data)
                .status()
                .unwrap();
            assert!(ok.success(), "chown to the postgres user");
        }
        let pg = Postgres {
            data,
            port: std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
            as_postgres,
        };
        let out = pg
            .run(&pg_bin("initdb"))
            .args(["-U", "dame", "-A", "trust", "-E", "UTF8", "--no-sync", "-D"])
            .arg(pg.data.join("db"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = pg
            .run(&pg_bin("pg_ctl"))
            .arg("-D")
            .arg(pg.data.join("db"))
            .arg("-l")
            .arg(pg.data.join("server.log"))
            .arg("-o")
            .arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
                pg.port,
                pg.data.display()
            ))
            .args(["-w", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {} {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(pg.data.join("server.log")).unwrap_or_default()
        );
        pg
    }

    fn run(&self, bin: &Path) -> Command {
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin);
            c
        } else {
            Command::new(bin)
        }
    }

    /// Its URL: database `postgres`, user `dame`, no password (trust on loopback).
    pub fn url(&self) -> String {
        format!("postgres://dame@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .run(&pg_bin("pg_ctl"))
            .arg("-D")
            .arg(self.data.join("db"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
