//! Times as people read them: in the desktop's time zone, with the day when
//! it is not today ("Today", "Yesterday", "Monday 30 November").

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

/// The desktop's time zone (`TZ`, else `/etc/localtime`), UTC if neither
/// can be read.
pub fn system_zone() -> TimeZone {
    TimeZone::try_system().unwrap_or(TimeZone::UTC)
}

fn local(ms: u64, tz: &TimeZone) -> jiff::civil::DateTime {
    tz.to_datetime(
        Timestamp::from_millisecond(ms.min(i64::MAX as u64) as i64)
            .unwrap_or(Timestamp::UNIX_EPOCH),
    )
}

fn date(ms: u64, tz: &TimeZone) -> Date {
    local(ms, tz).date()
}

/// "14:05", local.
pub fn clock(ms: u64, tz: &TimeZone) -> String {
    local(ms, tz).strftime("%H:%M").to_string()
}

/// Whether two instants fall on one local day.
pub fn same_day(a: u64, b: u64, tz: &TimeZone) -> bool {
    date(a, tz) == date(b, tz)
}

/// The day separator: "Today", "Yesterday", "Monday 30 November", with the
/// year when it is not this year's.
pub fn day(ms: u64, now_ms: u64, tz: &TimeZone) -> String {
    let (d, today) = (date(ms, tz), date(now_ms, tz));
    if d == today {
        "Today".into()
    } else if today.yesterday().is_ok_and(|y| y == d) {
        "Yesterday".into()
    } else if d.year() == today.year() {
        d.strftime("%A %-d %B").to_string()
    } else {
        d.strftime("%A %-d %B %Y").to_string()
    }
}

/// A short stamp for the room list: the time today, "Yesterday", the
/// weekday within a week, else the date.
pub fn short(ms: u64, now_ms: u64, tz: &TimeZone) -> String {
    let (d, today) = (date(ms, tz), date(now_ms, tz));
    if d == today {
        clock(ms, tz)
    } else if today.yesterday().is_ok_and(|y| y == d) {
        "Yesterday".into()
    } else if (today - d).get_days() < 7 && d < today {
        d.strftime("%a").to_string()
    } else if d.year() == today.year() {
        d.strftime("%-d %b").to_string()
    } else {
        d.strftime("%-d %b %Y").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-30 07:30 UTC.
    const NOW: u64 = 1_796_023_800_000;

    #[test]
    fn times_are_local_with_the_day() {
        let berlin = TimeZone::fixed(jiff::tz::offset(1));
        let tokyo = TimeZone::fixed(jiff::tz::offset(9));
        assert_eq!(clock(NOW, &TimeZone::UTC), "07:30");
        assert_eq!(clock(NOW, &berlin), "08:30");
        assert_eq!(clock(NOW, &tokyo), "16:30");
        assert_eq!(day(NOW, NOW, &berlin), "Today");
        let h = 3_600_000;
        // 22:30 UTC the day before is already today in Tokyo, yesterday in Berlin.
        assert_eq!(day(NOW - 9 * h, NOW, &berlin), "Yesterday");
        assert_eq!(day(NOW - 9 * h, NOW, &tokyo), "Today");
        assert_eq!(day(NOW - 3 * 24 * h, NOW, &berlin), "Friday 27 November");
        assert_eq!(
            day(NOW - 400 * 24 * h, NOW, &berlin),
            "Sunday 26 October 2025"
        );
        assert_eq!(short(NOW - 3 * 24 * h, NOW, &berlin), "Fri");
        assert_eq!(short(NOW - 30 * 24 * h, NOW, &berlin), "31 Oct");
        assert!(same_day(NOW, NOW - h, &berlin));
        assert!(!same_day(NOW, NOW - 9 * h, &berlin));
    }
}
