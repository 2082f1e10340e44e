//! XEP-0082 timestamps (`CCYY-MM-DDThh:mm:ss[.sss]TZD`): what the signed envelope, key records
//! and room keys carry. Time is always an input ([`SystemTime`]); nothing here reads the clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Error, Result};

/// How far ahead of the receiver's clock a sender's may be: signatures, signed stamps and
/// key records made up to this long after `now` are accepted (five minutes, XEP-0285's skew).
/// [`crate::envelope::ReplayWindow`] has its own, configurable skew for envelope stamps.
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Formats `t` as an XEP-0082 DateTime in UTC with milliseconds: `2026-12-01T11:05:00.123Z`.
/// Times before 1970 are not used by this crate and are written as the epoch.
pub fn format(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, dd) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Parses an XEP-0082 DateTime: `CCYY-MM-DDThh:mm:ss`, optional fraction, then `Z` or
/// `±hh:mm`. Years before 1970 are refused (no use here).
pub fn parse(s: &str) -> Result<SystemTime> {
    let bad = || Error::Stanza(format!("bad XEP-0082 DateTime {s:?}"));
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64> {
        let part = &b[r];
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        Ok(part
            .iter()
            .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
    };
    let (y, mo, d, h, mi, sec) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if y < 1970
        || !(1..=12).contains(&mo)
        || d < 1
        || d > days_in_month(y, mo)
        || h > 23
        || mi > 59
        || sec > 59
    {
        return Err(bad());
    }
    let mut i = 19;
    let mut nanos: u32 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return Err(bad());
        }
        for _ in digits..9 {
            nanos *= 10;
        }
    }
    let offset: i64 = match &b[i..] {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let _ = (h1, h2, m1, m2);
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return Err(bad()),
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    if secs < 0 {
        return Err(bad());
    }
    Ok(UNIX_EPOCH + Duration::new(secs as u64, nanos))
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian calendar).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_xep0082_examples() {
        let t = UNIX_EPOCH + Duration::from_millis(1_796_123_456_789);
        assert_eq!(parse(&format(t)).unwrap(), t);
        // XEP-0082 §3.2 examples.
        let a = parse("1969-07-21T02:56:15Z");
        assert!(a.is_err(), "before 1970 is refused");
        let b = parse("2002-09-10T23:08:25.123-06:00").unwrap();
        assert_eq!(format(b), "2002-09-11T05:08:25.123Z");
        assert_eq!(
            parse("2002-09-11T05:08:25Z").unwrap() + Duration::from_millis(123),
            b
        );
        for bad in [
            "2002-09-10",
            "2002-02-30T00:00:00Z",
            "2002-09-10T23:08:25",
            "2002-09-10T23:08:25.Z",
            "2002-09-10T23:08:25+6:00",
            "2002-09-10t23:08:25Z",
            "2002-09-10T24:00:00Z",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
