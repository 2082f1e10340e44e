//! The GSS-API form of SAML20 (RFC 6595 §4): mechanism OID 1.3.6.1.5.5.17; the tokens are the
//! SASL messages without the GS2 header, and the first context token carries the generic token
//! header of RFC 2743 §3.1: `0x60`, a DER length, the DER-encoded mechanism OID, the inner token.

use crate::error::Error;

/// The mechanism OID 1.3.6.1.5.5.17 as DER content octets.
pub const OID: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x11];

fn der_len(n: usize, out: &mut Vec<u8>) {
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Wraps the first context token: `0x60 len 0x06 0x06 <OID> inner`.
pub fn wrap_initial(inner: &[u8]) -> Vec<u8> {
    let mut body = vec![0x06, OID.len() as u8];
    body.extend_from_slice(OID);
    body.extend_from_slice(inner);
    let mut out = vec![0x60];
    der_len(body.len(), &mut out);
    out.extend(body);
    out
}

/// Unwraps a first context token, checking the header, the length and the OID.
pub fn unwrap_initial(token: &[u8]) -> Result<&[u8], Error> {
    let bad = |m: &str| Error::Malformed(format!("GSS-API token: {m}"));
    let rest = token
        .strip_prefix(&[0x60])
        .ok_or_else(|| bad("no 0x60 header"))?;
    let (&first, rest) = rest.split_first().ok_or_else(|| bad("no length"))?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(bad("bad length"));
        }
        let (lb, rest) = rest.split_at(n);
        if lb[0] == 0 {
            return Err(bad("non-minimal length"));
        }
        let len = lb.iter().fold(0usize, |a, b| (a << 8) | usize::from(*b));
        if len < 0x80 {
            return Err(bad("non-minimal length"));
        }
        (len, rest)
    };
    if rest.len() != len {
        return Err(bad("length does not match the token"));
    }
    let rest = rest
        .strip_prefix(&[0x06, OID.len() as u8])
        .ok_or_else(|| bad("no mechanism OID"))?;
    rest.strip_prefix(OID)
        .ok_or_else(|| bad("not the SAML20 mechanism OID 1.3.6.1.5.5.17"))
}

/// The GSS-API inner initial token: the SASL initial response without its GS2 header (the IdP
/// identifier only).
pub fn initial_inner(idp: &str) -> Result<Vec<u8>, Error> {
    Ok(crate::gs2::idp_identifier(idp)?.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        for n in [0usize, 5, 127, 128, 300, 70_000] {
            let inner = vec![b'x'; n];
            let t = wrap_initial(&inner);
            assert_eq!(unwrap_initial(&t).expect("unwrap"), inner.as_slice());
        }
        let t = wrap_initial(b"example.org");
        assert_eq!(
            &t[..10],
            &[0x60, 0x13, 0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x11]
        );
        assert!(unwrap_initial(&t[1..]).is_err());
        assert!(unwrap_initial(&t[..t.len() - 1]).is_err());
        let mut other = t.clone();
        other[9] = 0x12;
        assert!(unwrap_initial(&other).is_err());
        assert!(unwrap_initial(&[0x60, 0x81, 0x05, 0, 0, 0, 0, 0]).is_err());
        assert!(unwrap_initial(&[0x60, 0x80]).is_err());
        assert!(unwrap_initial(&[]).is_err());
        assert_eq!(
            initial_inner("Bücher.example").expect("idna"),
            b"xn--bcher-kva.example"
        );
    }
}
