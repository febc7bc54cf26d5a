//! Instants as UTC seconds since the Unix epoch, converted from TOML offset date-times and shown as RFC 3339.
//! The civil-date arithmetic is Howard Hinnant's `days_from_civil` / `civil_from_days`.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use toml::value::{Datetime, Offset};

/// A point in time, whole seconds (fractions are dropped: expiry is not that precise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    pub unix_seconds: i64,
}

impl Timestamp {
    /// From a TOML date-time; it must have a date, a time and an offset, else it names no single instant.
    pub fn from_toml(dt: &Datetime) -> Option<Timestamp> {
        let (date, time, offset) = (dt.date?, dt.time?, dt.offset?);
        let days = days_from_civil(i64::from(date.year), i64::from(date.month), i64::from(date.day));
        let secs = i64::from(time.hour) * 3600 + i64::from(time.minute) * 60 + i64::from(time.second.unwrap_or(0));
        let offset_secs = match offset {
            Offset::Z => 0,
            Offset::Custom { minutes } => i64::from(minutes) * 60,
        };
        Some(Timestamp { unix_seconds: days * 86_400 + secs - offset_secs })
    }

    pub fn from_system(t: SystemTime) -> Timestamp {
        let unix_seconds = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        };
        Timestamp { unix_seconds }
    }
}

/// RFC 3339 in UTC, e.g. `2026-12-31T00:00:00Z`.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.unix_seconds.div_euclid(86_400);
        let secs = self.unix_seconds.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(f, "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1–12); H. Hinnant's `days_from_civil`. Shared with
/// the init's RTC code, so there is one calendar in the project.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month 1–12, day 1–31) of a day count since 1970-01-01; the inverse of [`days_from_civil`].
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Option<Timestamp> {
        Timestamp::from_toml(&text.parse::<Datetime>().unwrap())
    }

    #[test]
    fn offset_datetimes_become_unix_seconds() {
        assert_eq!(ts("1970-01-01T00:00:00Z").unwrap().unix_seconds, 0);
        assert_eq!(ts("2026-12-31T00:00:00Z").unwrap().unix_seconds, 1_798_675_200);
        assert_eq!(ts("2026-12-31T02:00:00+02:00").unwrap().unix_seconds, 1_798_675_200);
        assert_eq!(ts("2000-02-29T12:34:56.789Z").unwrap().unix_seconds, 951_827_696);
        assert_eq!(ts("1969-12-31T23:59:59Z").unwrap().unix_seconds, -1);
    }

    #[test]
    fn local_datetimes_name_no_instant() {
        assert_eq!(ts("2026-12-31T00:00:00"), None);
        assert_eq!(ts("2026-12-31"), None);
        assert_eq!(ts("10:00:00"), None);
    }

    #[test]
    fn display_is_rfc3339_utc() {
        for text in ["1970-01-01T00:00:00Z", "2026-12-31T00:00:00Z", "2000-02-29T12:34:56Z", "1969-12-31T23:59:59Z"] {
            assert_eq!(ts(text).unwrap().to_string(), text);
        }
        assert_eq!(ts("2026-12-31T02:00:00+02:00").unwrap().to_string(), "2026-12-31T00:00:00Z");
    }
}
