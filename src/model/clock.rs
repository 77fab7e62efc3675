//! Timestamps: unix milliseconds (UTC) everywhere inside; RFC 3339 at the edges.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, PrimitiveDateTime};

/// Milliseconds since the unix epoch, UTC.
pub type Millis = i64;

/// The current time.
pub fn now() -> Millis {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as Millis
}

/// RFC 3339 in UTC with milliseconds (`2026-11-22T03:17:00.123Z`) for display.
pub fn format(ms: Millis) -> String {
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&f).ok())
        .unwrap_or_else(|| format!("@{ms}ms"))
}

/// Why a time could not be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid time {0:?}: use RFC 3339 (2026-11-22T03:17:00Z), 'YYYY-MM-DD HH:MM[:SS]' (UTC), 'now', a duration ago such as '-15m' or ahead such as '+2h', between 1970 and 9999")]
pub struct TimeError(pub String);

/// The earliest time accepted (1970-01-01T00:00:00Z): no NOC record is older.
pub const MIN_TIME: Millis = 0;
/// The latest time accepted (9999-12-31T23:59:59.999Z): what RFC 3339 can write.
pub const MAX_TIME: Millis = 253_402_300_799_999;

/// Parses a point in time: RFC 3339, `YYYY-MM-DD HH:MM[:SS]` in UTC, `now`, `-DURATION` (that
/// long before `now`, e.g. `-15m`, `-2h`) or `+DURATION` (after it). Times before 1970 or after
/// 9999 are refused (`-1000000y` and year 0 are typos, not history).
pub fn parse_time(text: &str, now: Millis) -> Result<Millis, TimeError> {
    let t = parse_any_time(text, now)?;
    if (MIN_TIME..=MAX_TIME).contains(&t) {
        Ok(t)
    } else {
        Err(TimeError(format!(
            "{} (out of range 1970 to 9999)",
            text.trim()
        )))
    }
}

fn parse_any_time(text: &str, now: Millis) -> Result<Millis, TimeError> {
    let text = text.trim();
    let err = || TimeError(text.to_string());
    if text == "now" {
        return Ok(now);
    }
    if let Some(ago) = text.strip_prefix('-') {
        return now
            .checked_sub(parse_duration(ago).map_err(|_| err())?)
            .ok_or_else(err);
    }
    if let Some(ahead) = text.strip_prefix('+') {
        return now
            .checked_add(parse_duration(ahead).map_err(|_| err())?)
            .ok_or_else(err);
    }
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as Millis);
    }
    let formats = [
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]"),
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]"),
    ];
    for f in formats {
        if let Ok(t) = PrimitiveDateTime::parse(text, f) {
            return Ok((t.assume_utc().unix_timestamp_nanos() / 1_000_000) as Millis);
        }
    }
    Err(err())
}

/// Why a duration could not be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {0:?}: use e.g. 90s, 15m, 2h, 1d, 1h30m")]
pub struct DurationError(pub String);

/// Parses a duration like `90s`, `15m`, `2h`, `1d`, `1h30m` into milliseconds (positive).
pub fn parse_duration(text: &str) -> Result<Millis, DurationError> {
    let d = humantime::parse_duration(text.trim()).map_err(|_| DurationError(text.to_string()))?;
    let ms = Millis::try_from(d.as_millis()).map_err(|_| DurationError(text.to_string()))?;
    if ms <= 0 {
        return Err(DurationError(text.to_string()));
    }
    Ok(ms)
}

/// A human duration for display: `2h 5m`, `3d 4h`, `12s`.
pub fn human_duration(ms: Millis) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_time("now", now), Ok(now));
        assert_eq!(parse_time("-15m", now), Ok(now - 900_000));
        let t = parse_time("2026-11-22T03:17:00Z", now).unwrap();
        assert_eq!(t, 1_795_317_420_000);
        assert_eq!(parse_time("2026-11-22 03:17", now), Ok(t));
        assert!(parse_time("yesterday", now).is_err());
        assert_eq!(parse_time("+2h", now), Ok(now + 7_200_000));
        // Far past and far future are typos, not times: refused, never wrapped.
        assert!(parse_time("-1000000y", now).is_err());
        assert!(parse_time("0000-01-01T00:00:00Z", now).is_err());
        assert!(parse_time("+9223372036854775s", now).is_err());
        assert_eq!(format(t), "2026-11-22T03:17:00.000Z");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2h"), Ok(7_200_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(human_duration(7_500_000), "2h 5m");
    }
}
