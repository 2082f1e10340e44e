//! Where the outside peers are: the one place that knows the Python venv, xmlsec1 and the
//! other programs `scripts/setup.sh` installs. Every lookup panics with the command that
//! installs the peer when it is missing: a test that needs a peer fails, it never skips.

use std::path::{Path, PathBuf};

/// The workspace's root directory (where `Cargo.toml`, `scripts/` and `testdata/` are).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .and_then(Path::parent)
        .unwrap_or(here)
        .to_path_buf()
}

/// The Python venv with pysaml2 and pyFF: `$FEDERATION_VENV`, else `.venv` at the workspace
/// root (made by `scripts/setup.sh`).
pub fn venv() -> PathBuf {
    std::env::var_os("FEDERATION_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv"))
}

/// A program of the venv (`python`, `pyff`, `pyffd`, ...); panics when it is missing.
pub fn venv_bin(tool: &str) -> PathBuf {
    let bin = venv().join("bin").join(tool);
    assert!(
        bin.exists(),
        "{} is missing: the Python interop peers (pysaml2, pyFF) are installed by \
         `bash scripts/setup.sh`",
        bin.display()
    );
    bin
}

/// The venv's Python (with pysaml2, pyFF and the gsasl bindings' helpers).
pub fn python() -> PathBuf {
    venv_bin("python")
}

/// A script of `scripts/interop/` (the Python sides of the interop tests).
pub fn interop_script(name: &str) -> PathBuf {
    workspace_root().join("scripts/interop").join(name)
}

/// The xmlsec1 binary: `$XMLSEC1` if set, else `/usr/bin/xmlsec1` (Debian's 1.2.x CLI); panics
/// when it is missing.
pub fn xmlsec1() -> PathBuf {
    let p = std::env::var_os("XMLSEC1")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/xmlsec1"));
    require(p, "xmlsec1")
}

/// A program on `PATH` (`gpg`, `gsasl`, `prosody`, ...); panics when it is missing.
pub fn program(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    match found {
        Some(p) => p,
        None => panic!("{name} is missing from PATH: it is installed by `bash scripts/setup.sh`"),
    }
}

fn require(p: PathBuf, what: &str) -> PathBuf {
    assert!(
        p.exists(),
        "{what} ({}) is missing: it is installed by `bash scripts/setup.sh`",
        p.display()
    );
    p
}
