//! The battery-backed hardware clock (`/dev/rtc0`, UTC).
//!
//! The kernel has `RTC_CLASS` and the CMOS driver but not `RTC_HCTOSYS`, so nothing sets the system clock from the
//! RTC at boot: [`set_system_clock_from_rtc`] does, and only ever forwards (a clock already ahead is kept, so a
//! boot never steps time backwards). After a good SNTP sync the sync task writes the RTC back with [`write_rtc`],
//! at most every [`WRITE_INTERVAL`], like the kernel's own 11-minute mode.

use keel_config::{civil_from_days, days_from_civil};
use nix::errno::Errno;
use nix::libc::c_int;
use nix::sys::time::TimeSpec;
use nix::time::{clock_gettime, clock_settime, ClockId};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The first RTC; the CMOS clock on a PC.
pub const DEVICE: &str = "/dev/rtc0";
/// How often a synced clock is copied to the RTC (the kernel's 11-minute mode).
pub const WRITE_INTERVAL: Duration = Duration::from_secs(11 * 60);
/// Years an RTC reading may hold; anything else is a dead battery or garbage, not a time.
const YEARS: std::ops::RangeInclusive<i64> = 1970..=2199;

/// `struct rtc_time` from `<linux/rtc.h>`: the fields of `struct tm`, month 0–11, year since 1900.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RtcTime {
    pub tm_sec: c_int,
    pub tm_min: c_int,
    pub tm_hour: c_int,
    pub tm_mday: c_int,
    pub tm_mon: c_int,
    pub tm_year: c_int,
    pub tm_wday: c_int,
    pub tm_yday: c_int,
    pub tm_isdst: c_int,
}

// RTC_RD_TIME = _IOR('p', 0x09, struct rtc_time); RTC_SET_TIME = _IOW('p', 0x0a, struct rtc_time).
nix::ioctl_read!(rtc_rd_time, b'p', 0x09, RtcTime);
nix::ioctl_write_ptr!(rtc_set_time, b'p', 0x0a, RtcTime);

#[derive(Debug, thiserror::Error)]
pub enum RtcError {
    #[error("open {path}: {source}")]
    Open { path: String, source: std::io::Error },
    #[error("RTC_RD_TIME on {path}: {source}")]
    Read { path: String, source: Errno },
    #[error("RTC_SET_TIME on {path}: {source}")]
    Write { path: String, source: Errno },
    #[error("rtc holds no valid time: {0}")]
    Invalid(String),
    #[error("system clock {0} is outside what an rtc can hold")]
    Unrepresentable(i64),
    #[error("clock_gettime(CLOCK_REALTIME): {0}")]
    GetClock(Errno),
    #[error("clock_settime(CLOCK_REALTIME): {0}")]
    SetClock(Errno),
}

/// What [`set_system_clock_from_rtc`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// The system clock was behind the RTC and now holds the RTC's time.
    Set { rtc: i64 },
    /// The system clock was already at or past the RTC; it was left alone.
    Kept { rtc: i64, system: i64 },
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days in `month` (1–12) of `year`.
fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Unix seconds of an RTC reading, after checking every field (no month 13, no 30 February, no hour 24).
pub fn rtc_to_unix(tm: &RtcTime) -> Result<i64, RtcError> {
    let year = i64::from(tm.tm_year) + 1900;
    let month = i64::from(tm.tm_mon) + 1;
    let bad = |field: &str, value: c_int| Err(RtcError::Invalid(format!("{field}={value}")));
    if !YEARS.contains(&year) {
        return bad("year", tm.tm_year);
    }
    if !(1..=12).contains(&month) {
        return bad("mon", tm.tm_mon);
    }
    if !(1..=days_in_month(year, month)).contains(&i64::from(tm.tm_mday)) {
        return bad("mday", tm.tm_mday);
    }
    if !(0..24).contains(&tm.tm_hour) {
        return bad("hour", tm.tm_hour);
    }
    if !(0..60).contains(&tm.tm_min) {
        return bad("min", tm.tm_min);
    }
    if !(0..60).contains(&tm.tm_sec) {
        return bad("sec", tm.tm_sec);
    }
    let days = days_from_civil(year, month, i64::from(tm.tm_mday));
    Ok(days * 86_400 + i64::from(tm.tm_hour) * 3600 + i64::from(tm.tm_min) * 60 + i64::from(tm.tm_sec))
}

/// The RTC fields of a Unix time (weekday and day of the year filled in), if an RTC can hold it.
pub fn unix_to_rtc(secs: i64) -> Result<RtcTime, RtcError> {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    if !YEARS.contains(&year) {
        return Err(RtcError::Unrepresentable(secs));
    }
    let int = |v: i64| c_int::try_from(v).map_err(|_| RtcError::Unrepresentable(secs));
    Ok(RtcTime {
        tm_sec: int(rem % 60)?,
        tm_min: int(rem / 60 % 60)?,
        tm_hour: int(rem / 3600)?,
        tm_mday: int(day)?,
        tm_mon: int(month - 1)?,
        tm_year: int(year - 1900)?,
        // 1970-01-01 was a Thursday (4).
        tm_wday: int((days + 4).rem_euclid(7))?,
        tm_yday: int(days - days_from_civil(year, 1, 1))?,
        tm_isdst: 0,
    })
}

/// `2036-02-07T06:28:16Z`, for log lines.
pub fn format_utc(secs: i64) -> String {
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// Unix seconds of a `SystemTime` (negative before 1970), truncated.
pub fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            -i64::try_from(d.as_secs() + u64::from(d.subsec_nanos() > 0)).unwrap_or(i64::MAX)
        }
    }
}

/// Should a system clock at `system` (s, ns) be set to an RTC reading of `rtc` seconds? Only when behind it.
pub fn should_set(system: (i64, i64), rtc: i64) -> bool {
    i128::from(system.0) * 1_000_000_000 + i128::from(system.1) < i128::from(rtc) * 1_000_000_000
}

/// Reads the RTC as Unix seconds.
pub fn read_rtc(path: &Path) -> Result<i64, RtcError> {
    let name = || path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| RtcError::Open { path: name(), source })?;
    let mut tm = RtcTime::default();
    // SAFETY: the descriptor is open for the whole call and `tm` is a live, correctly sized `struct rtc_time`.
    unsafe { rtc_rd_time(file.as_raw_fd(), &mut tm) }.map_err(|source| RtcError::Read { path: name(), source })?;
    rtc_to_unix(&tm)
}

/// At boot: sets the system clock from the RTC if, and only if, the system clock is behind it.
pub fn set_system_clock_from_rtc(path: &Path) -> Result<Boot, RtcError> {
    let rtc = read_rtc(path)?;
    let now = clock_gettime(ClockId::CLOCK_REALTIME).map_err(RtcError::GetClock)?;
    let system = (now.tv_sec(), now.tv_nsec());
    if !should_set(system, rtc) {
        log::info!("time.rtc rtc={} system={} action=kept", format_utc(rtc), format_utc(system.0));
        return Ok(Boot::Kept { rtc, system: system.0 });
    }
    clock_settime(ClockId::CLOCK_REALTIME, TimeSpec::new(rtc, 0)).map_err(RtcError::SetClock)?;
    log::info!("time.rtc rtc={} system={} action=set", format_utc(rtc), format_utc(system.0));
    Ok(Boot::Set { rtc })
}

/// Copies `now` to the RTC, rounded to the nearest second (the RTC's resolution).
pub fn write_rtc(path: &Path, now: SystemTime) -> Result<(), RtcError> {
    let name = || path.display().to_string();
    let secs = unix_secs(now + Duration::from_millis(500));
    let tm = unix_to_rtc(secs)?;
    let file =
        std::fs::OpenOptions::new().write(true).open(path).map_err(|source| RtcError::Open { path: name(), source })?;
    // SAFETY: the descriptor is open for the whole call and `tm` is a valid `struct rtc_time` the kernel only reads.
    unsafe { rtc_set_time(file.as_raw_fd(), &tm) }.map_err(|source| RtcError::Write { path: name(), source })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tm(year: c_int, mon1: c_int, mday: c_int, hour: c_int, min: c_int, sec: c_int) -> RtcTime {
        RtcTime {
            tm_sec: sec,
            tm_min: min,
            tm_hour: hour,
            tm_mday: mday,
            tm_mon: mon1 - 1,
            tm_year: year - 1900,
            ..RtcTime::default()
        }
    }

    #[test]
    fn converts_known_dates() {
        assert_eq!(rtc_to_unix(&tm(1970, 1, 1, 0, 0, 0)).unwrap(), 0);
        assert_eq!(rtc_to_unix(&tm(2000, 1, 1, 0, 0, 0)).unwrap(), 946_684_800);
        assert_eq!(rtc_to_unix(&tm(2000, 2, 29, 12, 0, 0)).unwrap(), 951_825_600);
        assert_eq!(rtc_to_unix(&tm(2024, 2, 29, 23, 59, 59)).unwrap(), 1_709_251_199);
        assert_eq!(rtc_to_unix(&tm(2024, 3, 1, 0, 0, 0)).unwrap(), 1_709_251_200);
        assert_eq!(rtc_to_unix(&tm(2024, 12, 31, 23, 59, 59)).unwrap(), 1_735_689_599);
        // The NTP era 0 → 1 rollover and the 32-bit time_t limit.
        assert_eq!(rtc_to_unix(&tm(2036, 2, 7, 6, 28, 16)).unwrap(), 2_085_978_496);
        assert_eq!(rtc_to_unix(&tm(2038, 1, 19, 3, 14, 8)).unwrap(), 1 << 31);
        assert_eq!(rtc_to_unix(&tm(2100, 3, 1, 0, 0, 0)).unwrap(), 4_107_542_400);
    }

    #[test]
    fn leap_years_and_month_lengths() {
        assert!(is_leap(2000) && is_leap(2024) && is_leap(2400));
        assert!(!is_leap(1900) && !is_leap(2100) && !is_leap(2023));
        let lengths: Vec<i64> = (1..=12).map(|m| days_in_month(2023, m)).collect();
        assert_eq!(lengths, [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]);
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2100, 2), 28);
        assert!(rtc_to_unix(&tm(2024, 2, 29, 0, 0, 0)).is_ok());
        assert!(rtc_to_unix(&tm(2023, 2, 29, 0, 0, 0)).is_err());
        assert!(rtc_to_unix(&tm(2100, 2, 29, 0, 0, 0)).is_err());
        assert!(rtc_to_unix(&tm(2024, 4, 31, 0, 0, 0)).is_err());
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(rtc_to_unix(&tm(2024, 13, 1, 0, 0, 0)), Err(RtcError::Invalid(f)) if f == "mon=12"));
        assert!(rtc_to_unix(&tm(2024, 0, 1, 0, 0, 0)).is_err());
        assert!(rtc_to_unix(&tm(2024, 1, 0, 0, 0, 0)).is_err());
        assert!(rtc_to_unix(&tm(2024, 1, 32, 0, 0, 0)).is_err());
        assert!(rtc_to_unix(&tm(2024, 1, 1, 24, 0, 0)).is_err());
        assert!(rtc_to_unix(&tm(2024, 1, 1, 0, 60, 0)).is_err());
        assert!(rtc_to_unix(&tm(2024, 1, 1, 0, 0, 60)).is_err());
        assert!(rtc_to_unix(&tm(2024, 1, 1, -1, 0, 0)).is_err());
        assert!(rtc_to_unix(&tm(1969, 12, 31, 23, 59, 59)).is_err());
        assert!(rtc_to_unix(&tm(2200, 1, 1, 0, 0, 0)).is_err());
        assert!(rtc_to_unix(&RtcTime { tm_year: c_int::MIN, ..tm(2024, 1, 1, 0, 0, 0) }).is_err());
    }

    #[test]
    fn round_trips_through_rtc_fields() {
        let mut secs = 0i64;
        while secs < 4_102_444_800 {
            let fields = unix_to_rtc(secs).unwrap();
            assert_eq!(rtc_to_unix(&fields).unwrap(), secs, "{fields:?}");
            secs += 86_400 * 13 + 3_601 * 7 + 59;
        }
        let t = unix_to_rtc(1_709_208_000).unwrap(); // Thursday 2024-02-29 12:00:00
        assert_eq!((t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour), (124, 1, 29, 12));
        assert_eq!((t.tm_wday, t.tm_yday), (4, 59));
        assert_eq!(unix_to_rtc(0).unwrap().tm_wday, 4);
        assert!(matches!(unix_to_rtc(-1), Err(RtcError::Unrepresentable(-1))));
    }

    #[test]
    fn formats_utc() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(2_085_978_496), "2036-02-07T06:28:16Z");
        assert_eq!(format_utc(-1), "1969-12-31T23:59:59Z");
        assert_eq!(unix_secs(UNIX_EPOCH + Duration::from_millis(1500)), 1);
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_millis(1500)), -2);
    }

    #[test]
    fn boot_only_moves_the_clock_forward() {
        assert!(should_set((0, 0), 1_700_000_000)); // fresh boot at 1970
        assert!(should_set((1_700_000_000, 999_999_999), 1_700_000_001));
        assert!(!should_set((1_700_000_000, 1), 1_700_000_000)); // a fraction ahead: never back
        assert!(!should_set((1_700_000_000, 0), 1_700_000_000));
        assert!(!should_set((1_800_000_000, 0), 1_700_000_000));
    }
}
