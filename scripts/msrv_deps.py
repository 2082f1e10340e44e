"""Reads `cargo metadata` on stdin; fails when a package declares a rust-version above the
workspace's (the MSRV the README and Cargo.toml promise)."""
import json
import sys


def version(s):
    parts = [int(x) for x in s.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


meta = json.load(sys.stdin)
ours = {p["rust_version"] for p in meta["packages"] if p["id"] in meta["workspace_members"]}
if len(ours) != 1:
    sys.exit("expected one rust-version for the workspace, found %s" % sorted(map(str, ours)))
msrv = ours.pop()
bad = [
    "%s %s needs %s" % (p["name"], p["version"], p["rust_version"])
    for p in meta["packages"]
    if p.get("rust_version") and version(p["rust_version"]) > version(msrv)
]
if bad:
    sys.exit("dependencies above the MSRV %s: %s" % (msrv, ", ".join(bad)))
print("   %d packages, none above rust-version %s" % (len(meta["packages"]), msrv))
