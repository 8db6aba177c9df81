//! Time as a value. The core never reads a clock: adapters pass [`Timestamp`]s in.

use std::fmt;

/// Microseconds since the Unix epoch, as supplied by the adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// A timestamp from microseconds since the Unix epoch.
    pub const fn from_unix_micros(micros: u64) -> Self {
        Self(micros)
    }

    /// A timestamp from (possibly fractional) milliseconds since the epoch, as
    /// JavaScript's `Date.now()` gives them. Negative or non-finite input is
    /// clamped to the epoch.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    pub fn from_unix_millis_f64(millis: f64) -> Self {
        if millis.is_finite() && millis > 0.0 {
            Self((millis * 1000.0) as u64)
        } else {
            Self(0)
        }
    }

    pub const fn as_unix_micros(self) -> u64 {
        self.0
    }

    /// Whole seconds since the epoch, as JWT claims and SQL columns hold them.
    pub fn as_unix_secs(self) -> i64 {
        i64::try_from(self.0 / 1_000_000).unwrap_or(i64::MAX)
    }

    /// Milliseconds elapsed from `earlier` to `self`; zero when the clock went
    /// backwards (the platform's clock is not guaranteed monotonic).
    pub fn millis_since(self, earlier: Self) -> f64 {
        self.0.saturating_sub(earlier.0) as f64 / 1000.0
    }

    /// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-26T05:02:58.123Z`.
    pub fn to_rfc3339(self) -> String {
        self.to_string()
    }

    /// Reads an RFC 3339 time (`Z` or a `±hh:mm` offset, optional
    /// fraction of any length), as envelopes and Alertmanager carry it;
    /// `None` for anything else or before 1970.
    pub fn parse_rfc3339(raw: &str) -> Option<Self> {
        let (raw, offset_secs) = split_offset(raw)?;
        let (date, time) = raw.split_once(['T', 't'])?;
        let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
        // Fixed widths, digits only: `YYYY-MM-DD`, `hh:mm:ss`.
        let field = |s: &str, at: usize, width: usize| -> Option<u64> {
            let part = s.get(at..at + width)?;
            part.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| part.parse().ok())?
        };
        let (d, c) = (date.as_bytes(), clock.as_bytes());
        if d.len() != 10 || d[4] != b'-' || d[7] != b'-' {
            return None;
        }
        if c.len() != 8 || c[2] != b':' || c[5] != b':' {
            return None;
        }
        let (year, month, day) = (field(date, 0, 4)?, field(date, 5, 2)?, field(date, 8, 2)?);
        let (h, m, sec) = (
            field(clock, 0, 2)?,
            field(clock, 3, 2)?,
            field(clock, 6, 2)?,
        );
        if year < 1970
            || !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || h > 23
            || m > 59
            || sec > 60
            || !fraction.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let micros: u64 = format!("{fraction:0<6}").get(..6)?.parse().ok()?;
        let days = days_from_civil(year, month, day);
        let local = days * 86_400 + h * 3600 + m * 60 + sec;
        let utc = local.checked_add_signed(-offset_secs)?;
        Some(Self(utc * 1_000_000 + micros))
    }
}

/// The time without its zone, and the zone's offset east of UTC in
/// seconds: `Z` is 0, `+01:00` is 3600.
fn split_offset(raw: &str) -> Option<(&str, i64)> {
    if let Some(rest) = raw.strip_suffix(['Z', 'z']) {
        return Some((rest, 0));
    }
    let at = raw.len().checked_sub(6)?;
    let (rest, zone) = (raw.get(..at)?, raw.get(at..)?);
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = zone.get(1..)?.split_once(':')?;
    let digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || !digits(m) {
        return None;
    }
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 23 && m <= 59).then_some((rest, sign * (h * 3600 + m * 60)))
}

/// Days since 1970-01-01 of a Gregorian date (the inverse of
/// `civil_from_days`, years from 1970).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let yoe = year - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / 1_000_000;
        let millis = (self.0 / 1000) % 1000;
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        )
    }
}

/// Gregorian date from days since 1970-01-01 (Howard Hinnant's algorithm,
/// restricted to non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::Timestamp;

    #[test]
    fn renders_rfc3339_in_utc() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z", "the epoch"),
            (
                951_782_400_000_000,
                "2000-02-29T00:00:00.000Z",
                "leap day of a century leap year",
            ),
            (
                1_795_582_978_123_456,
                "2026-11-25T05:02:58.123Z",
                "sub-millisecond digits are cut",
            ),
            (
                4_107_542_399_999_000,
                "2100-02-28T23:59:59.999Z",
                "2100 is not a leap year",
            ),
        ];
        for (micros, want, why) in cases {
            assert_eq!(
                Timestamp::from_unix_micros(micros).to_rfc3339(),
                want,
                "{why}"
            );
        }
    }

    #[test]
    fn converts_javascript_milliseconds_and_clamps_nonsense() {
        let cases = [
            (1.5, 1500, "fractional milliseconds keep microseconds"),
            (-5.0, 0, "negative clamps to the epoch"),
            (f64::NAN, 0, "NaN clamps to the epoch"),
            (f64::INFINITY, 0, "infinity clamps to the epoch"),
        ];
        for (millis, want, why) in cases {
            assert_eq!(
                Timestamp::from_unix_millis_f64(millis).as_unix_micros(),
                want,
                "{why}"
            );
        }
    }

    #[test]
    fn reads_rfc3339_with_any_offset_and_fraction() {
        let at = |raw| Timestamp::parse_rfc3339(raw).map(Timestamp::as_unix_micros);
        let utc = at("2026-12-03T09:00:00Z");
        assert_eq!(utc, Some(1_796_288_400_000_000));
        let cases = [
            ("2026-12-03T10:00:00+01:00", utc, "an offset east of UTC"),
            ("2026-12-03T04:30:00-04:30", utc, "an offset west of UTC"),
            (
                "2026-12-03T09:00:00.000000000Z",
                utc,
                "nanoseconds, as Go writes them",
            ),
            (
                "2026-12-03T09:00:00.5Z",
                utc.map(|u| u + 500_000),
                "a short fraction",
            ),
            (
                "0001-01-01T00:00:00Z",
                None,
                "Go's zero time is before 1970",
            ),
            ("2026-12-03T09:00:00", None, "no zone"),
            ("2026-12-03T09:00:00+1:00", None, "a one-digit offset hour"),
            ("2026-12-03T09:00:00+24:00", None, "an offset beyond a day"),
            ("1970-01-01T00:30:00+01:00", None, "before the epoch in UTC"),
            ("12026-12-03T09:00:00Z", None, "a five-digit year"),
            (
                "99999999999999-12-03T09:00:00Z",
                None,
                "a year that would overflow",
            ),
            ("+026-12-03T09:00:00Z", None, "a sign in the year"),
            ("2026-12-03T+9:00:00Z", None, "a sign in the hour"),
            ("2026-2-03T09:00:00Z", None, "a one-digit month"),
            (
                "20é6-12-03T09:00:00Z",
                None,
                "a letter of two bytes in the year",
            ),
            (
                "2026-12-03T0é:00:0Z",
                None,
                "a letter of two bytes in the clock",
            ),
            (
                "9999-12-31T23:59:59.999999Z",
                Some(253_402_300_799_999_999),
                "the last moment of 9999",
            ),
        ];
        for (raw, want, why) in cases {
            assert_eq!(at(raw), want, "{why}: {raw}");
        }
    }

    #[test]
    fn elapsed_time_never_goes_negative() {
        let a = Timestamp::from_unix_micros(10_000);
        let b = Timestamp::from_unix_micros(12_500);
        assert!((b.millis_since(a) - 2.5).abs() < f64::EPSILON);
        assert!(
            a.millis_since(b).abs() < f64::EPSILON,
            "a clock that went backwards reads as zero"
        );
    }
}
