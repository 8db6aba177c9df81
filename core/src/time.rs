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

    /// Reads a UTC RFC 3339 time (`Z`, optional fraction), as envelopes
    /// carry it; `None` for anything else or before 1970.
    pub fn parse_rfc3339(raw: &str) -> Option<Self> {
        let raw = raw.strip_suffix('Z').or_else(|| raw.strip_suffix('z'))?;
        let (date, time) = raw.split_once(['T', 't'])?;
        let mut d = date.split('-');
        let (year, month, day): (u64, u64, u64) = (
            d.next()?.parse().ok()?,
            d.next()?.parse().ok()?,
            d.next()?.parse().ok()?,
        );
        let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
        let mut t = clock.split(':');
        let (h, m, sec): (u64, u64, u64) = (
            t.next()?.parse().ok()?,
            t.next()?.parse().ok()?,
            t.next()?.parse().ok()?,
        );
        if d.next().is_some()
            || t.next().is_some()
            || year < 1970
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
        Some(Self(
            ((days * 86_400 + h * 3600 + m * 60 + sec) * 1_000_000) + micros,
        ))
    }
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
