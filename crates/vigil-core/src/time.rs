//! Event-time helpers: a fast RFC 3339 parser, calendar arithmetic and formatting.
//!
//! All event times in vigil are microseconds since the Unix epoch in UTC (Arrow
//! `Timestamp(Microsecond, "UTC")`). The parser sits on the decode hot path, so it works on
//! bytes, allocates nothing and never panics.

/// Microseconds in one second.
pub const MICROS_PER_SECOND: i64 = 1_000_000;
/// Microseconds in one day.
pub const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// A duration in microseconds, the unit of event time; saturates at `i64::MAX` (about 292,000
/// years), so a configured "forever" stays comparable instead of wrapping.
pub fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The wall clock now, in microseconds since the epoch (0 for a clock set before 1970).
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, micros)
}

/// Parses an RFC 3339 timestamp into microseconds since the epoch.
///
/// Accepts `YYYY-MM-DD` then `T`, `t` or a space, `HH:MM:SS`, an optional fraction of any
/// length after `.` or ISO 8601's `,` (Python's logging writes `12:00:00,123`; digits past
/// microseconds are truncated), and an offset `Z`, `z`, `±HH:MM`, `±HHMM` or `±HH`, or ` UTC`
/// and a numeric offset after a space (`2024-01-01 12:00:00 +0000`, as Ruby and Go's default
/// formats write). A timestamp without an offset is read as UTC. Returns `None` for anything
/// else, including out-of-range fields (month 13, February 30, hour 24).
pub fn parse_rfc3339_micros(s: &[u8]) -> Option<i64> {
    if s.len() < 19 {
        return None;
    }
    let minute_start = seconds_of_minute(s[..16].try_into().ok()?)?;
    let second = digits(&s[17..19])?;
    // 60 is a leap second; it is kept as one second past :59 rather than rejected.
    if s[16] != b':' || second > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut micros = 0i64;
    if let [b'.' | b',', tail @ ..] = rest {
        // Digits past the sixth are read and dropped.
        let (mut n, mut kept) = (0, 0);
        while let Some(d) = tail
            .get(n)
            .map(|b| b.wrapping_sub(b'0'))
            .filter(|d| *d <= 9)
        {
            if n < 6 {
                micros = micros * 10 + i64::from(d);
                kept += 1;
            }
            n += 1;
        }
        if n == 0 {
            return None;
        }
        micros *= POW10[6 - kept];
        rest = &tail[n..];
    }
    if let [b' ', b'+' | b'-' | b'U', ..] = rest {
        rest = &rest[1..];
    }
    let offset_seconds = match rest {
        [] | [b'Z'] | [b'z'] | [b'U', b'T', b'C'] => 0,
        [sign @ (b'+' | b'-'), tz @ ..] => {
            let (h, m) = match tz {
                [h1, h2] => (digits(&[*h1, *h2])?, 0),
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => {
                    (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?)
                }
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let off = i64::from(h * 3600 + m * 60);
            if *sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    let secs = minute_start + i64::from(second) - offset_seconds;
    Some(secs * MICROS_PER_SECOND + micros)
}

/// Seconds since the epoch at the start of a `YYYY-MM-DDTHH:MM` minute (`T`, `t` or a
/// space between date and time), validated. Consecutive records nearly always share their
/// minute, so the last one parsed on this thread is remembered and only compared: one
/// 16-byte comparison instead of the calendar arithmetic per record.
fn seconds_of_minute(prefix: &[u8; 16]) -> Option<i64> {
    use std::cell::Cell;
    thread_local! {
        static LAST: Cell<Option<([u8; 16], i64)>> = const { Cell::new(None) };
    }
    if let Some((p, secs)) = LAST.get()
        && p == *prefix
    {
        return Some(secs);
    }
    let days = days_of_date(prefix[..10].try_into().ok()?)?;
    let hour = digits(&prefix[11..13])?;
    let minute = digits(&prefix[14..16])?;
    if !matches!(prefix[10], b'T' | b't' | b' ') || prefix[13] != b':' {
        return None;
    }
    if hour > 23 || minute > 59 {
        return None;
    }
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60);
    LAST.set(Some((*prefix, secs)));
    Some(secs)
}

/// The day number of a `YYYY-MM-DD` date, validated.
fn days_of_date(date: &[u8; 10]) -> Option<i64> {
    let year = i64::from(digits(&date[0..4])?);
    let month = digits(&date[5..7])?;
    let day = digits(&date[8..10])?;
    if date[4] != b'-' || date[7] != b'-' {
        return None;
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

const POW10: [i64; 6] = [1, 10, 100, 1_000, 10_000, 100_000];

/// Below this an epoch number is seconds: as milliseconds it would be before 1973-03-03, a
/// time no telemetry is from, while `time.time()` and `date +%s` write seconds.
pub const EPOCH_SECONDS_BELOW: f64 = 1e11;

/// Microseconds since the epoch from an epoch number: seconds below [`EPOCH_SECONDS_BELOW`]
/// (either sign), milliseconds from it on; `None` if not representable or NaN.
pub fn micros_from_epoch(n: f64) -> Option<i64> {
    let per_unit = if n.abs() < EPOCH_SECONDS_BELOW {
        1e6
    } else {
        1e3
    };
    let us = (n * per_unit).round();
    // Beyond ±2^62 µs (±146 000 years) is not a timestamp anyone meant.
    if us.is_finite() && us.abs() < 4.6e18 {
        Some(us as i64)
    } else {
        None
    }
}

/// Parses a fixed-width run of ASCII digits.
#[inline]
fn digits(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + u32::from(d);
    }
    Some(v)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The calendar date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The UTC day number (Arrow `Date32`) of an event time.
#[inline]
pub fn date32_from_micros(micros: i64) -> i32 {
    micros.div_euclid(MICROS_PER_DAY) as i32
}

/// Appends `micros` as RFC 3339 in UTC with millisecond precision, e.g.
/// `2023-07-15T14:22:33.456Z`, or microsecond precision when the value has sub-millisecond
/// digits.
pub fn write_rfc3339(out: &mut String, micros: i64) {
    use std::fmt::Write;
    let days = micros.div_euclid(MICROS_PER_DAY);
    let in_day = micros.rem_euclid(MICROS_PER_DAY);
    let (y, mo, d) = civil_from_days(days);
    let secs = in_day / MICROS_PER_SECOND;
    let frac = in_day % MICROS_PER_SECOND;
    let (h, mi, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let _ = write!(out, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
    let _ = if frac % 1000 == 0 {
        write!(out, ".{:03}Z", frac / 1000)
    } else {
        write!(out, ".{frac:06}Z")
    };
}

/// [`write_rfc3339`] into a new string.
pub fn format_rfc3339(micros: i64) -> String {
    let mut s = String::with_capacity(27);
    write_rfc3339(&mut s, micros);
    s
}

/// `YYYY-MM-DD` of a `Date32` day number, as used in partition paths.
pub fn format_date(days: i32) -> String {
    let (y, m, d) = civil_from_days(i64::from(days));
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chrono_micros(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_micros()
    }

    #[test]
    fn parses_the_seed_format() {
        let s = "2023-07-15T14:22:33.456Z";
        assert_eq!(parse_rfc3339_micros(s.as_bytes()), Some(chrono_micros(s)));
    }

    #[test]
    fn epoch_numbers_are_seconds_or_milliseconds_by_their_size() {
        let t = chrono_micros("2025-06-02T09:00:00Z");
        // `date +%s`, Python's `time.time()`, then JavaScript's `Date.now()`.
        assert_eq!(micros_from_epoch(1_748_854_800.0), Some(t));
        assert_eq!(micros_from_epoch(1_748_854_800.25), Some(t + 250_000));
        assert_eq!(micros_from_epoch(1_748_854_800_000.0), Some(t));
        // Either side of the bound: seconds just below it (year 5138), milliseconds at it
        // (1973-03-03T09:46:40Z).
        let bound = chrono_micros("1973-03-03T09:46:40Z");
        assert_eq!(
            micros_from_epoch(99_999_999_999.0),
            Some(99_999_999_999_000_000)
        );
        assert_eq!(micros_from_epoch(1e11), Some(bound));
        assert_eq!(micros_from_epoch(0.0), Some(0));
        assert_eq!(micros_from_epoch(-86_400.0), Some(-86_400_000_000));
    }

    #[test]
    fn parses_offsets_and_long_fractions() {
        for s in [
            "2023-07-15T14:22:33+02:00",
            "2023-07-15T14:22:33.1-05:30",
            "2023-07-15t14:22:33.123456789z",
            "1969-12-31T23:59:59.999999Z",
            "2000-02-29T00:00:00Z",
        ] {
            let want = chrono_micros(s);
            assert_eq!(parse_rfc3339_micros(s.as_bytes()), Some(want), "{s}");
        }
        assert_eq!(
            parse_rfc3339_micros(b"2023-07-15T14:22:33+0200"),
            parse_rfc3339_micros(b"2023-07-15T14:22:33+02:00")
        );
        assert_eq!(
            parse_rfc3339_micros(b"2023-07-15 14:22:33"),
            parse_rfc3339_micros(b"2023-07-15T14:22:33Z")
        );
        // Python's logging (`,` before the fraction), Ruby's and Go's `String()` (a space
        // before the offset, or ` UTC`).
        let want = parse_rfc3339_micros(b"2023-07-15T12:22:33.123Z");
        for s in [
            "2023-07-15 12:22:33,123",
            "2023-07-15 14:22:33.123 +0200",
            "2023-07-15 12:22:33.123 UTC",
            "2023-07-15T12:22:33,123Z",
        ] {
            assert_eq!(parse_rfc3339_micros(s.as_bytes()), want, "{s}");
        }
    }

    #[test]
    fn rejects_invalid_dates_and_garbage() {
        for s in [
            "",
            "2023-07-15",
            "2023-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2023-07-15T24:00:00Z",
            "2023-07-15T14:22:33.Z",
            "2023-07-15T14:22:33+2",
            "2023-07-15T14:22:33Zjunk",
            "2023-07-15T14:22:33,Z",
            "2023-07-15T14:22:33 ",
            "2023-07-15T14:22:33 Z",
            "2023-07-15T14:22:33  +02:00",
            "2023-07-15T14:22:33 UTCX",
            "2023/07/15T14:22:33Z",
            "２０２３-07-15T14:22:33Z",
        ] {
            assert_eq!(parse_rfc3339_micros(s.as_bytes()), None, "{s:?}");
        }
    }

    #[test]
    fn a_remembered_minute_does_not_excuse_the_rest() {
        // The date, hour and minute of the previous call are remembered; the seconds, the
        // fraction and the offset are still checked, and a rejected minute is never remembered.
        let ok = "2023-07-15T14:22:33.456Z";
        assert_eq!(parse_rfc3339_micros(ok.as_bytes()), Some(chrono_micros(ok)));
        for bad in [
            "2023-07-15X14:22:33Z",
            "2023-07-15T25:22:33Z",
            "2023-07-15T14:22:33+99:00",
            "2023-07-15T14:22:61Z",
            "2023-07-15T14:22:3xZ",
            "2023-07-15T14:22-33Z",
            "2023-07-15T14:22:33.Z",
        ] {
            assert_eq!(parse_rfc3339_micros(bad.as_bytes()), None, "{bad}");
        }
        let next = "2023-07-15T23:59:59.999999+01:00";
        assert_eq!(
            parse_rfc3339_micros(next.as_bytes()),
            Some(chrono_micros(next))
        );
        assert_eq!(parse_rfc3339_micros(b"2023-02-29T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_micros(b"2023-02-29T00:00:00Z"), None);
        let other = "2024-02-29T00:00:00Z";
        assert_eq!(
            parse_rfc3339_micros(other.as_bytes()),
            Some(chrono_micros(other))
        );
    }

    #[test]
    fn formats_round_trip() {
        let s = "2023-07-15T14:22:33.456Z";
        assert_eq!(
            format_rfc3339(parse_rfc3339_micros(s.as_bytes()).unwrap()),
            s
        );
        assert_eq!(
            format_date(date32_from_micros(chrono_micros(s))),
            "2023-07-15"
        );
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999999Z");
    }

    proptest! {
        #[test]
        fn agrees_with_chrono(secs in -62_135_596_800i64..253_402_300_799, frac in 0u32..1_000_000,
                              off_min in -1439i32..1439) {
            let off = chrono::FixedOffset::east_opt(off_min * 60).unwrap();
            let t = chrono::DateTime::from_timestamp(secs, frac * 1000).unwrap().with_timezone(&off);
            let s = t.to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
            let parsed = parse_rfc3339_micros(s.as_bytes());
            // chrono may print years outside 0000..=9999 with a sign; those are not RFC 3339.
            if s.len() == 32 {
                prop_assert_eq!(parsed, Some(t.timestamp_micros()), "{}", s);
            }
        }

        #[test]
        fn never_panics(s in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse_rfc3339_micros(&s);
        }

        #[test]
        fn every_time_it_accepts_is_written_back_and_read_unchanged(
            s in "[0-9+-]{0,2}[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?([Zz]|[+-][0-9]{2}:[0-9]{2})",
        ) {
            if let Some(t) = parse_rfc3339_micros(s.as_bytes()) {
                prop_assert_eq!(parse_rfc3339_micros(format_rfc3339(t).as_bytes()), Some(t), "{}", s);
            }
        }

        #[test]
        fn any_epoch_number_is_a_time_or_refused(n in any::<f64>()) {
            if let Some(t) = micros_from_epoch(n) {
                prop_assert!(n.is_finite());
                let _ = format_rfc3339(t);
            }
        }

        #[test]
        fn civil_round_trips(days in -1_000_000i64..1_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
