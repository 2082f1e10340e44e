#!/usr/bin/env bash
# Installs what the workspace needs on a fresh Debian machine with the Rust toolchain:
# OpenSSL headers, libxml2/libxmlsec1 and libclang (the `xmlsec` feature's bindgen build), the
# xmlsec1 CLI (interop peer and benchmark baseline), GNU time (peak RSS measurements), GNU SASL
# (gsasl CLI and libgsasl18: the SAML20 SASL interop peer), GnuPG (gpg: the XEP-0027 interop
# peer and benchmark baseline), Prosody (a real XMPP server carrying XEP-0027 stanzas),
# PostgreSQL (the DAME broker's shared store: the tests start private servers with initdb),
# Shibboleth SP 3 (libapache2-mod-shib and shibboleth-sp-utils: shibd and mdquery, the metadata
# consumer peer), SimpleSAMLphp 1.19 with the PHP extensions it needs and the Debian package does
# not pull in (php-xml for DOM/SimpleXML, php-mbstring, php-curl; run on PHP's built-in server);
# the packages' own configuration under /etc is never used by the tests; and a
# Python venv in .venv with pysaml2 and pyFF (independent SAML metadata peers for the interop
# tests). Idempotent: does nothing when everything is already installed.
set -euo pipefail

packages=(pkg-config libssl-dev libxml2-dev libxmlsec1-dev libclang-dev xmlsec1 time gsasl libgsasl18 gnupg prosody postgresql libapache2-mod-shib shibboleth-sp-utils simplesamlphp php-cli php-xml php-mbstring php-curl)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep "install ok installed" >/dev/null; then
    missing+=("$p")
  fi
done
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (stable) first" >&2; exit 1; }
command -v xmlsec1 >/dev/null || { echo "setup: xmlsec1 still missing" >&2; exit 1; }
command -v gpg >/dev/null || { echo "setup: gpg still missing" >&2; exit 1; }
command -v prosody >/dev/null || { echo "setup: prosody still missing" >&2; exit 1; }
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { echo "setup: PostgreSQL's initdb still missing" >&2; exit 1; }
command -v mdquery >/dev/null || { echo "setup: mdquery (shibboleth-sp-utils) still missing" >&2; exit 1; }
[ -f /usr/share/simplesamlphp/www/module.php ] || { echo "setup: SimpleSAMLphp still missing" >&2; exit 1; }
# grep reads all of php's output: with pipefail, an early exit of `grep -q` can kill php with SIGPIPE
# and fail the check although the extension is there (seen once in CI).
php -m | grep -x dom >/dev/null || { echo "setup: PHP's dom extension (php-xml) still missing" >&2; exit 1; }
# Python interop peers, pinned (PyPI): pysaml2's make_metadata and MetadataStore, pyFF's pipelines.
venv="$(cd "$(dirname "$0")/.." && pwd)/.venv"
if ! "$venv/bin/python" -c 'import saml2, pyff' 2>/dev/null; then
  echo "setup: creating $venv with pysaml2 and pyFF"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv python3-pip >/dev/null
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check pysaml2==7.5.5 pyff==3.0.0
fi
"$venv/bin/python" -c 'import saml2, pyff' || { echo "setup: pysaml2/pyFF missing in $venv" >&2; exit 1; }
echo "setup: ok ($(xmlsec1 --version | head -1), $(cargo --version))"
