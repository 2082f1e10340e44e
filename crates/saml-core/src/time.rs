//! XML Schema `dateTime` (SAML Core §1.3.3: UTC, `Z` or offset) and `duration` values.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses an `xs:dateTime` such as `2026-11-22T10:00:00Z`, `2031-04-17T05:59:16.000Z` or
/// `2019-07-24T08:10:04+02:00`.
///
/// Strict: a four-digit year; seconds 00-59; the zone is required (SAML Core §1.3.3: time
/// values are UTC, so a value without a zone has no defined instant and is refused), either `Z`
/// or `+hh:mm` / `-hh:mm` with two digits each, hours at most 14, minutes at most 59, `14:00`
/// at most (XML Schema Part 2 §3.2.7.3). Only XML white space around the value is ignored (the
/// type collapses it), never other Unicode spaces.
pub fn parse_datetime(s: &str) -> Option<SystemTime> {
    let s = s.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 59
    {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let f = &frac[..digits.min(9)];
        nanos = f.parse::<u32>().ok()? * 10u32.pow(9 - f.len() as u32);
        rest = &frac[digits..];
    }
    let offset_secs: i64 = match rest.as_bytes() {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()) =>
        {
            let oh = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
            let om = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
            if oh > 14 || om > 59 || (oh == 14 && om > 0) {
                return None;
            }
            let sign = if *sign == b'+' { 1 } else { -1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86400 + h * 3600 + mi * 60 + se - offset_secs;
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(secs as u64, nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))
            .map(|t| t + Duration::from_nanos(u64::from(nanos)))
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 (H. Hinnant's civil-from-days inverse).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds (floored) and nanoseconds since the epoch, for times before it too.
fn epoch_parts(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            let d = e.duration();
            let secs = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (secs, 0),
                n => (secs - 1, 1_000_000_000 - n),
            }
        }
    }
}

/// Formats a time as `YYYY-MM-DDThh:mm:ssZ` (whole seconds, UTC).
#[must_use]
pub fn format_datetime(t: SystemTime) -> String {
    let secs = epoch_parts(t).0;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Formats a time as `xs:dateTime` in UTC, with a fraction of a second only when there is one
/// (`2026-11-22T10:00:00Z`, `2031-04-17T05:59:16.25Z`): what the metadata writer emits, so that
/// a parsed instant is written back exactly.
#[must_use]
pub fn format_datetime_exact(t: SystemTime) -> String {
    let whole = format_datetime(t);
    let nanos = epoch_parts(t).1;
    if nanos == 0 {
        return whole;
    }
    let frac = format!("{nanos:09}");
    format!(
        "{}.{}Z",
        &whole[..whole.len() - 1],
        frac.trim_end_matches('0')
    )
}

/// Formats a duration as `xs:duration` with days, hours, minutes and seconds (`P7D`, `PT6H`,
/// `P1DT12H30M`, `PT0.5S`, `PT0S`); [`parse_duration`] reads it back to the same value.
#[must_use]
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (days, rem) = (secs / 86400, secs % 86400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let nanos = d.subsec_nanos();
    let mut out = String::from("P");
    if days > 0 {
        out.push_str(&format!("{days}D"));
    }
    if h > 0 || m > 0 || s > 0 || nanos > 0 || days == 0 {
        out.push('T');
        if h > 0 {
            out.push_str(&format!("{h}H"));
        }
        if m > 0 {
            out.push_str(&format!("{m}M"));
        }
        if nanos > 0 {
            let frac = format!("{nanos:09}");
            out.push_str(&format!("{s}.{}S", frac.trim_end_matches('0')));
        } else if s > 0 || (h == 0 && m == 0) {
            out.push_str(&format!("{s}S"));
        }
    }
    out
}

/// Parses an `xs:duration` such as `PT6H`, `P7D`, `PT30M`, `P1DT12H`, `PT1.5S`. Years and
/// months count as 365 and 30 days (metadata cacheDuration values use days and smaller units).
/// Negative durations are refused.
#[must_use]
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let mut rest = s.strip_prefix('P')?;
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut in_time = false;
    let mut any = false;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('T') {
            if in_time || r.is_empty() {
                return None;
            }
            in_time = true;
            rest = r;
            continue;
        }
        let n = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        if n == 0 {
            return None;
        }
        let v: f64 = rest[..n].parse().ok()?;
        let unit = rest.as_bytes().get(n)?;
        let secs = match (in_time, unit) {
            (false, b'Y') => 365.0 * 86400.0,
            (false, b'M') => 30.0 * 86400.0,
            (false, b'D') => 86400.0,
            (true, b'H') => 3600.0,
            (true, b'M') => 60.0,
            (true, b'S') => 1.0,
            _ => return None,
        };
        total += v * secs;
        any = true;
        rest = &rest[n + 1..];
    }
    if !any || !total.is_finite() || total > 1e12 {
        return None;
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes() {
        let t = parse_datetime("2026-11-22T10:00:00Z").expect("valid");
        assert_eq!(format_datetime(t), "2026-11-22T10:00:00Z");
        assert_eq!(
            t.duration_since(UNIX_EPOCH).expect("after").as_secs(),
            1_795_341_600
        );
        let f = parse_datetime("2031-04-17T05:59:16.000Z").expect("fraction");
        assert_eq!(format_datetime(f), "2031-04-17T05:59:16Z");
        let o = parse_datetime("2019-07-24T10:10:04+02:00").expect("offset");
        assert_eq!(format_datetime(o), "2019-07-24T08:10:04Z");
        assert_eq!(
            parse_datetime("2024-02-29T00:00:00Z")
                .map(format_datetime)
                .as_deref(),
            Some("2024-02-29T00:00:00Z")
        );
        for bad in [
            "2023-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "yesterday",
            "2026-11-22 10:00:00Z",
            "2026-11-22T10:00:00X",
            "2026-11-22T10:00:00.",
        ] {
            assert!(parse_datetime(bad).is_none(), "{bad}");
        }
    }

    /// Issue 13 item 8: out-of-range and malformed zones, a missing zone, a leap second and
    /// Unicode spaces around the value were accepted.
    #[test]
    fn datetimes_are_strict() {
        for bad in [
            "2026-11-22T10:00:00+99:99",
            "2026-11-22T10:00:00++1:00",
            "2026-11-22T10:00:00+-1:00",
            "2026-11-22T10:00:00-+1:00",
            "2026-11-22T10:00:00+15:00",
            "2026-11-22T10:00:00+14:30",
            "2026-11-22T10:00:00+01:60",
            "2026-11-22T10:00:00+0100",
            "2026-11-22T10:00:00+1:00",
            "2026-11-22T10:00:00",
            "2026-11-22T10:00:00.5",
            "2026-11-22T10:00:60Z",
            "\u{a0}2026-11-22T10:00:00Z",
            "2026-11-22T10:00:00Z\u{3000}",
            "2026-11-22T10:00:00Zz",
        ] {
            assert!(parse_datetime(bad).is_none(), "{bad:?}");
        }
        let utc = parse_datetime("2026-11-22T10:00:00Z");
        assert!(utc.is_some());
        for same in [
            "2026-11-22T11:00:00+01:00",
            "2026-11-22T00:00:00-10:00",
            "2026-11-23T00:00:00+14:00",
            " 2026-11-22T10:00:00Z\n",
        ] {
            assert_eq!(parse_datetime(same), utc, "{same:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("PT6H"), Some(Duration::from_secs(6 * 3600)));
        assert_eq!(
            parse_duration("P1DT12H"),
            Some(Duration::from_secs(36 * 3600))
        );
        assert_eq!(parse_duration("PT30M"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("PT1.5S"), Some(Duration::from_millis(1500)));
        for secs in [
            0,
            1,
            59,
            60,
            3600,
            86400,
            86400 * 7,
            36 * 3600 + 1830,
            8 * 3600,
        ] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse_duration(&format_duration(d)), Some(d), "{secs}");
        }
        assert_eq!(format_duration(Duration::from_secs(6 * 3600)), "PT6H");
        assert_eq!(format_duration(Duration::from_secs(7 * 86400)), "P7D");
        assert_eq!(format_duration(Duration::ZERO), "PT0S");
        assert_eq!(format_duration(Duration::from_millis(1500)), "PT1.5S");
        let t = parse_datetime("2031-04-17T05:59:16.25Z").expect("fraction");
        assert_eq!(format_datetime_exact(t), "2031-04-17T05:59:16.25Z");
        assert_eq!(parse_datetime(&format_datetime_exact(t)), Some(t));
        // Before the epoch (found by fuzzing the writer).
        for v in [
            "1969-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "1900-02-28T12:30:00.5Z",
        ] {
            let t = parse_datetime(v).expect("valid");
            assert_eq!(format_datetime_exact(t), v);
        }
        for bad in ["", "P", "PT", "6H", "-PT6H", "PT6D", "P1H", "PTH", "P1Y2"] {
            assert!(parse_duration(bad).is_none(), "{bad}");
        }
    }
}
