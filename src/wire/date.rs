//! HTTP-date (RFC 9110 §5.6.7): formatting as IMF-fixdate and parsing of all three formats
//! a recipient must accept.
//!
//! Pure conversions between seconds since the Unix epoch and text; reading the clock is the
//! caller's business.

const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a civil date (inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A moment in UTC, split as calendars and logs write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CivilTime {
    /// The year.
    pub year: i64,
    /// 1 to 12.
    pub month: u32,
    /// 1 to 31.
    pub day: u32,
    /// 0 to 23.
    pub hour: u32,
    /// 0 to 59.
    pub minute: u32,
    /// 0 to 59.
    pub second: u32,
}

impl CivilTime {
    /// The UTC date and time of `unix_seconds`.
    pub fn of(unix_seconds: u64) -> Self {
        let (year, month, day) = civil_from_days((unix_seconds / 86_400) as i64);
        let secs = (unix_seconds % 86_400) as u32;
        CivilTime {
            year,
            month,
            day,
            hour: secs / 3600,
            minute: secs / 60 % 60,
            second: secs % 60,
        }
    }

    /// The month's English abbreviation: `Jan` .. `Dec`.
    pub fn month_name(&self) -> &'static str {
        let name: &'static [u8; 3] = MONTHS[self.month as usize - 1];
        std::str::from_utf8(name).expect("ASCII")
    }
}

/// Formats seconds since the epoch as IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn format_http_date(unix_seconds: u64) -> [u8; 29] {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    let two = |out: &mut [u8], v: u64| {
        out[0] = b'0' + (v / 10) as u8;
        out[1] = b'0' + (v % 10) as u8;
    };
    two(&mut out[5..7], u64::from(day));
    out[8..11].copy_from_slice(MONTHS[month as usize - 1]);
    let year = year.clamp(0, 9999) as u64;
    two(&mut out[12..14], year / 100);
    two(&mut out[14..16], year % 100);
    two(&mut out[17..19], secs / 3600);
    two(&mut out[20..22], secs / 60 % 60);
    two(&mut out[23..25], secs % 60);
    out
}

/// Parses an HTTP-date in any of its three formats (IMF-fixdate, RFC 850, asctime) into
/// seconds since the epoch. `None` for anything else, which callers treat as absent.
pub fn parse_http_date(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let mut parts = text.split_ascii_whitespace();
    let first = parts.next()?;
    let (day, month, year, time) = if first.ends_with(',') {
        let date = parts.next()?;
        if date.contains('-') {
            // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
            let mut dmy = date.split('-');
            let day = dmy.next()?;
            let month = dmy.next()?;
            let year: i64 = dmy.next()?.parse().ok()?;
            // RFC 9110 §5.6.7: a two-digit year more than 50 years ahead is in the past.
            let year = if year < 70 { 2000 + year } else { 1900 + year };
            (day, month, year, parts.next()?)
        } else {
            // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
            let month = parts.next()?;
            let year = parts.next()?.parse().ok()?;
            (date, month, year, parts.next()?)
        }
    } else {
        // asctime: Sun Nov  6 08:49:37 1994
        let month = parts.next()?;
        let day = parts.next()?;
        let time = parts.next()?;
        let year = parts.next()?.parse().ok()?;
        (day, month, year, time)
    };
    let day: u32 = day.parse().ok()?;
    let month = MONTHS.iter().position(|m| m[..] == *month.as_bytes())? as u32 + 1;
    let mut hms = time.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 || year < 1970 {
        return None;
    }
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_time_splits_a_moment() {
        let t = CivilTime::of(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second),
            (1994, 11, 6, 8, 49, 37)
        );
        assert_eq!(t.month_name(), "Nov");
    }

    #[test]
    fn formats_known_dates() {
        assert_eq!(&format_http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            &format_http_date(784_111_777),
            b"Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(
            &format_http_date(951_782_400),
            b"Tue, 29 Feb 2000 00:00:00 GMT"
        );
        assert_eq!(
            &format_http_date(4_102_444_799),
            b"Thu, 31 Dec 2099 23:59:59 GMT"
        );
    }

    #[test]
    fn parses_all_three_formats() {
        for text in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse_http_date(text.as_bytes()),
                Some(784_111_777),
                "{text}"
            );
        }
        assert_eq!(parse_http_date(b"yesterday"), None);
        assert_eq!(parse_http_date(b"Sun, 06 Foo 1994 08:49:37 GMT"), None);
        assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 25:49:37 GMT"), None);
    }

    #[test]
    fn format_and_parse_agree_over_a_long_range() {
        let mut t = 0u64;
        while t < 5_000_000_000 {
            assert_eq!(parse_http_date(&format_http_date(t)), Some(t), "{t}");
            t += 86_400 * 17 + 3_607;
        }
    }
}
