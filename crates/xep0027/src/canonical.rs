//! The unambiguous byte strings this crate signs and authenticates: a label line, then each
//! field as `<decimal length>:<bytes>\n`. Two different field lists never give the same bytes,
//! whatever the fields contain (JIDs, ids and text may hold any character).

use std::time::SystemTime;

use sequoia_openpgp::Cert;

use crate::keys::Identity;
use crate::openpgp::{self, Verified};
use crate::policy::Policy;
use crate::{Error, Result, armor};

/// Encodes `fields` under `label`.
pub(crate) fn encode(label: &str, fields: &[&[u8]]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(label.len() + 1 + fields.iter().map(|f| f.len() + 12).sum::<usize>());
    out.extend_from_slice(label.as_bytes());
    out.push(b'\n');
    for f in fields {
        out.extend_from_slice(f.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(f);
        out.push(b'\n');
    }
    out
}

/// Decodes exactly `n` fields under `label`.
pub(crate) fn decode<'a>(label: &str, data: &'a [u8], n: usize) -> Result<Vec<&'a [u8]>> {
    let bad = |why: &str| Error::OpenPgp(format!("bad {label} record: {why}"));
    let rest = data
        .strip_prefix(label.as_bytes())
        .and_then(|r| r.strip_prefix(b"\n"))
        .ok_or_else(|| bad("wrong label"))?;
    let mut rest = rest;
    let mut fields = Vec::with_capacity(n);
    for _ in 0..n {
        let colon = rest
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| bad("no length"))?;
        let len_s = std::str::from_utf8(&rest[..colon]).map_err(|_| bad("length"))?;
        if len_s.is_empty()
            || len_s.len() > 9
            || !len_s.bytes().all(|b| b.is_ascii_digit())
            || (len_s.len() > 1 && len_s.starts_with('0'))
        {
            return Err(bad("length"));
        }
        let len: usize = len_s.parse().map_err(|_| bad("length"))?;
        let start = colon + 1;
        let end = start
            .checked_add(len)
            .filter(|&e| e < rest.len())
            .ok_or_else(|| bad("truncated"))?;
        if rest[end] != b'\n' {
            return Err(bad("field not terminated"));
        }
        fields.push(&rest[start..end]);
        rest = &rest[end + 1..];
    }
    if !rest.is_empty() {
        return Err(bad("trailing data"));
    }
    Ok(fields)
}

/// A field as UTF-8.
pub(crate) fn text<'a>(label: &str, field: &'a [u8]) -> Result<&'a str> {
    std::str::from_utf8(field)
        .map_err(|_| Error::OpenPgp(format!("bad {label} record: field is not UTF-8")))
}

/// A key record (session key offer, room key) as carried: `fields` under `label`, encrypted
/// to `to` and signed by `me` inside one OpenPGP message; the stripped armor.
pub(crate) fn seal_record(
    label: &str,
    fields: &[&[u8]],
    to: &[&Cert],
    me: &Identity,
    policy: &Policy,
    now: SystemTime,
) -> Result<String> {
    let recipients = openpgp::Recipients::new(to, policy, now)?;
    let ct = openpgp::encrypt_for(
        &encode(label, fields),
        &recipients,
        Some(me.signer(policy, now)?),
        now,
        openpgp::Purpose::Record,
    )?;
    Ok(armor::encode(&ct))
}

/// A key record, decrypted and with its signature checked.
pub(crate) struct Record {
    plaintext: Vec<u8>,
    /// The signature; always one of the expected signers'.
    pub(crate) signer: Verified,
}

impl Record {
    /// Decrypts the record in `text` with `me`; it must be signed by one of `signers`
    /// (`what` names the record in errors).
    pub(crate) fn open(
        text: &str,
        what: &str,
        me: &Identity,
        signers: &[Cert],
        policy: &Policy,
        now: SystemTime,
    ) -> Result<Record> {
        let d = openpgp::decrypt_for(
            &armor::decode(text)?,
            me,
            signers,
            policy,
            now,
            openpgp::Purpose::Record,
        )?;
        let signer = d
            .signature
            .ok_or_else(|| Error::BadSignature(format!("{what} must be signed by its sender")))?;
        Ok(Record {
            plaintext: d.plaintext,
            signer,
        })
    }

    /// The record's `n` fields under `label`.
    pub(crate) fn fields(&self, label: &str, n: usize) -> Result<Vec<&[u8]>> {
        decode(label, &self.plaintext, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_no_ambiguity() {
        let a = encode("l", &[b"a\n1:b", b""]);
        let b = encode("l", &[b"a", b"b"]);
        assert_ne!(a, b);
        assert_eq!(decode("l", &a, 2).unwrap(), vec![&b"a\n1:b"[..], b""]);
        assert!(decode("l", &a, 1).is_err());
        assert!(decode("l", &a, 3).is_err());
        assert!(decode("m", &a, 2).is_err());
        for bad in [
            &b"l\n01:a\n"[..],
            b"l\n2:a\n",
            b"l\n1:ab",
            b"l\n:a\n",
            b"l\n1:a\nx",
        ] {
            assert!(decode("l", bad, 1).is_err(), "{bad:?}");
        }
    }
}
