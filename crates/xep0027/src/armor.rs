//! ASCII armor as XEP-0027 (§3, §4) carries it: the armored text with the `BEGIN` line, the
//! armor headers, the blank line and the `END` line removed; the base64 lines and the checksum
//! line (`=` and four base64 characters, e.g. `=njUN`) stay.
//!
//! Writing strips exactly that ([`strip`], [`encode`]). Reading ([`decode`]) is tolerant, the
//! way real clients send it: with or without the checksum line, everything on one line, the
//! checksum glued to the last base64 line (as Conversations sends it), bare base64 without a
//! checksum, or even a whole armored block with its `BEGIN`/`END` lines and headers. The text
//! is decoded here to the binary packets, so OpenPGP parsing never depends on the armor.
//!
//! The CRC-24 checksum is not checked: RFC 9580 §6.1 says an implementation MUST NOT reject
//! an OpenPGP object whose CRC-24 footer is present, missing, malformed or disagrees with the
//! data (integrity comes from the signatures and the encryption's MDC/AEAD, not from armor).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::{Error, Result};

/// The most armored text this crate decodes (4 MiB): a stanza is far smaller on every server
/// (ejabberd and Prosody default to 64-256 KiB), and this bounds the work for hostile input.
pub const MAX_ARMOR_LEN: usize = 4 * 1024 * 1024;

/// Strips the armor of `armored` (the output of `gpg --armor` or of sequoia's armor writer)
/// for an XEP-0027 element: the `-----BEGIN ...-----` line, header lines (`Key: value`), the
/// blank line after them and the `-----END ...-----` line are removed; the base64 lines and
/// the checksum line are kept, joined by `\n`. Blank lines and whitespace before the `BEGIN`
/// line are skipped (pretty-printed XML puts the block on a line of its own; review session
/// 26, X7).
pub fn strip(armored: &str) -> Result<String> {
    let mut lines = armored
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .skip_while(|l| l.trim().is_empty());
    match lines.next() {
        Some(first)
            if first.trim().starts_with("-----BEGIN ") && first.trim().ends_with("-----") => {}
        _ => return Err(Error::Armor("no -----BEGIN PGP ...----- line".into())),
    }
    let mut out: Vec<&str> = Vec::new();
    let mut in_headers = true;
    let mut ended = false;
    for line in lines {
        let t = line.trim();
        if t.starts_with("-----END ") {
            ended = true;
            break;
        }
        if in_headers {
            if t.is_empty() {
                in_headers = false;
                continue;
            }
            if t.contains(": ") {
                continue;
            }
            // No header block at all (a writer that omits the blank line).
            in_headers = false;
        }
        if !t.is_empty() {
            out.push(t);
        }
    }
    if !ended {
        return Err(Error::Armor("no -----END PGP ...----- line".into()));
    }
    if out.is_empty() {
        return Err(Error::Armor("armor without data".into()));
    }
    Ok(out.join("\n"))
}

/// Encodes binary OpenPGP data as stripped armor: base64 in lines of 64 characters, then the
/// CRC-24 checksum line, `=` and four base64 characters (RFC 4880 §6.1): exactly what [`strip`]
/// leaves of `gpg --armor`.
pub fn encode(binary: &[u8]) -> String {
    let b64 = STANDARD.encode(binary);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 8);
    for (i, chunk) in b64.as_bytes().chunks(64).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        // chunks of an ASCII string are ASCII.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
    }
    let crc = crc24(binary).to_be_bytes();
    out.push_str("\n=");
    out.push_str(&STANDARD.encode(&crc[1..]));
    out
}

/// Decodes XEP-0027 element text to binary OpenPGP data, tolerantly (see the module docs).
pub fn decode(text: &str) -> Result<Vec<u8>> {
    if text.len() > MAX_ARMOR_LEN {
        return Err(Error::Armor(format!("longer than {MAX_ARMOR_LEN} bytes")));
    }
    let body = if text.contains("-----BEGIN ") {
        strip(text)?
    } else {
        text.to_owned()
    };
    // All base64 characters in order; whitespace (line breaks, spaces, tabs) is ignored.
    let mut b64: Vec<u8> = Vec::with_capacity(body.len());
    let mut tokens: Vec<&str> = body.split_ascii_whitespace().collect();
    // A separate checksum line: `=` and four base64 characters.
    if tokens.len() > 1 && is_checksum(tokens[tokens.len() - 1]) {
        tokens.pop();
    }
    for t in &tokens {
        b64.extend_from_slice(t.as_bytes());
    }
    // A checksum glued to the data: base64 data is a multiple of 4 long (padding included),
    // so the five extra characters of a glued checksum (`=` and four) leave a remainder of 1.
    if b64.len() % 4 == 1 && b64.len() >= 5 && is_checksum_bytes(&b64[b64.len() - 5..]) {
        b64.truncate(b64.len() - 5);
    }
    if b64.is_empty() {
        return Err(Error::Armor("no data".into()));
    }
    if let Some(bad) = b64
        .iter()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=')))
    {
        return Err(Error::Armor(format!(
            "character {:?} is not base64",
            char::from(*bad)
        )));
    }
    STANDARD
        .decode(&b64)
        .map_err(|e| Error::Armor(format!("bad base64: {e}")))
}

fn is_checksum(token: &str) -> bool {
    is_checksum_bytes(token.as_bytes())
}

fn is_checksum_bytes(t: &[u8]) -> bool {
    t.len() == 5
        && t[0] == b'='
        && t[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/'))
}

/// The armor checksum, CRC-24 of RFC 4880 §6.1 (generator 0x864CFB, init 0xB704CE): a
/// transport checksum, not a security mechanism.
fn crc24(data: &[u8]) -> u32 {
    const INIT: u32 = 0x00B7_04CE;
    const POLY: u32 = 0x0186_4CFB;
    let mut crc = INIT;
    for &b in data {
        crc ^= u32::from(b) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= POLY;
            }
        }
    }
    crc & 0x00FF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARMORED: &str = "-----BEGIN PGP SIGNATURE-----\nComment: test\n\niHUEABYKAB0WIQQ\nAAAA\n=njUN\n-----END PGP SIGNATURE-----\n";

    #[test]
    fn strip_removes_lines_and_headers_keeps_checksum() {
        assert_eq!(strip(ARMORED).unwrap(), "iHUEABYKAB0WIQQ\nAAAA\n=njUN");
        assert!(strip("iHUE").is_err());
        assert!(strip("-----BEGIN PGP SIGNATURE-----\n\nAAAA\n").is_err());
    }

    #[test]
    fn crc24_matches_rfc4880_and_gpg() {
        // gpg --armor of the bytes "hello" gives the checksum =Qu/c... computed independently:
        // the empty input has the init value.
        assert_eq!(crc24(b""), 0x00B7_04CE);
        let text = encode(b"\x01\x02\x03");
        assert!(text.ends_with(&format!(
            "={}",
            STANDARD.encode(&crc24(b"\x01\x02\x03").to_be_bytes()[1..])
        )));
    }

    #[test]
    fn decode_every_tolerated_shape() {
        let data: Vec<u8> = (0u8..=200).collect();
        let stripped = encode(&data);
        let lines: Vec<&str> = stripped.lines().collect();
        let (check, b64) = lines.split_last().unwrap();
        let one_line: String = b64.concat();
        let shapes = [
            stripped.clone(),
            b64.join("\n"),
            one_line.clone(),
            format!("{one_line}{check}"),
            format!("{one_line} {check}"),
            format!("  \r\n{}\r\n  ", stripped.replace('\n', "\r\n")),
            format!(
                "-----BEGIN PGP MESSAGE-----\nVersion: x\n\n{stripped}\n-----END PGP MESSAGE-----\n"
            ),
            // Review session 26, X7: a whole block after a line break and indentation, as
            // pretty-printed XML or a pasted gpg output carries it.
            format!(
                "\n  -----BEGIN PGP MESSAGE-----\nVersion: x\n\n{stripped}\n-----END PGP MESSAGE-----\n"
            ),
            format!(
                "\r\n\r\n\t-----BEGIN PGP MESSAGE-----\r\n\r\n{}\r\n-----END PGP MESSAGE-----",
                stripped.replace('\n', "\r\n")
            ),
        ];
        for s in &shapes {
            assert_eq!(decode(s).unwrap(), data, "{s}");
        }
    }

    #[test]
    fn decode_refuses_garbage() {
        for bad in [
            "",
            "   ",
            "****",
            "AAA",
            "AA=A",
            "=abcd",
            "-----BEGIN PGP MESSAGE-----\n",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }
}
