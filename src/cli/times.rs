//! Times as operators read and type them: shown in the operator's time zone (`TZ`) with a
//! relative form ("2h ago", "in 40m"), or in UTC with `--utc`; typed as `14:00`,
//! `tomorrow 09:00`, `+2h`, `-15m`, `2026-12-01`, `2026-12-01 14:00` (local time) or RFC 3339.
//! Typed times are turned into RFC 3339 before they are sent, so the node never guesses the
//! operator's zone.

use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use super::{Failure, FailureKind};
use crate::model::clock::{self, Millis};

/// The time forms the CLI accepts, for `--help` texts.
pub const INPUT_FORMS: &str = "TIME is one of: 14:00 (today), tomorrow 09:00, today 14:00, \
yesterday 22:30, +2h (from now), -15m (ago), now, 2026-12-01 (midnight), 2026-12-01 14:00 \
(in your time zone, TZ), or RFC 3339 (2026-12-01T14:00:00Z)";

/// The zone times are shown and read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// UTC (`--utc`).
    Utc,
    /// The operator's zone (`TZ`, or the system's), looked up per instant (daylight saving).
    Local,
    /// A fixed offset (tests).
    Fixed(UtcOffset),
}

/// How to show and read times in this run: the zone and the current time.
#[derive(Debug, Clone, Copy)]
pub struct Times {
    /// The zone.
    pub zone: Zone,
    /// Now, once for the whole run (so one answer is consistent).
    pub now: Millis,
}

fn to_datetime(ms: Millis) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).ok()
}

fn to_millis(t: OffsetDateTime) -> Millis {
    (t.unix_timestamp_nanos() / 1_000_000) as Millis
}

impl Times {
    /// The operator's zone, or UTC with `utc`.
    pub fn new(utc: bool) -> Times {
        Times {
            zone: if utc { Zone::Utc } else { Zone::Local },
            now: clock::now(),
        }
    }

    fn offset_at(&self, t: OffsetDateTime) -> UtcOffset {
        match self.zone {
            Zone::Utc => UtcOffset::UTC,
            Zone::Fixed(o) => o,
            Zone::Local => UtcOffset::local_offset_at(t).unwrap_or(UtcOffset::UTC),
        }
    }

    /// `2026-12-01 14:05 +01:00` (`2026-12-01 13:05Z` in UTC).
    pub fn absolute(&self, ms: Millis) -> String {
        let Some(t) = to_datetime(ms) else {
            return format!("@{ms}ms");
        };
        let offset = self.offset_at(t);
        let t = t.to_offset(offset);
        let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
        let base = t.format(&f).unwrap_or_default();
        if offset.is_utc() {
            format!("{base}Z")
        } else {
            let (h, m, _) = offset.as_hms();
            format!(
                "{base} {}{:02}:{:02}",
                if h < 0 || m < 0 { '-' } else { '+' },
                h.abs(),
                m.abs()
            )
        }
    }

    /// `2h ago`, `in 40m`, `just now`.
    pub fn relative(&self, ms: Millis) -> String {
        let d = ms - self.now;
        if d.abs() < 60_000 {
            return "just now".into();
        }
        if d < 0 {
            format!("{} ago", short_duration(-d))
        } else {
            format!("in {}", short_duration(d))
        }
    }

    /// `2026-12-01 14:05 +01:00 (2h ago)`: what the chart shows.
    pub fn at(&self, ms: Millis) -> String {
        format!("{} ({})", self.absolute(ms), self.relative(ms))
    }

    /// How long ago, shortly (`2h`): the list's age column.
    pub fn age(&self, ms: Millis) -> String {
        short_duration((self.now - ms).max(0))
    }

    /// Reads a typed time into RFC 3339 (UTC) for the node.
    pub fn parse(&self, text: &str) -> Result<String, Failure> {
        let ms = self.parse_millis(text)?;
        Ok(clock::format(ms))
    }

    /// Reads a typed time.
    pub fn parse_millis(&self, text: &str) -> Result<Millis, Failure> {
        let t = text.trim();
        let err = || {
            Failure::new(
                FailureKind::Invalid,
                format!("invalid time {text:?}: {INPUT_FORMS}"),
            )
        };
        if t == "now" {
            return Ok(self.now);
        }
        if let Some(d) = t.strip_prefix('+') {
            let d = clock::parse_duration(d).map_err(|_| err())?;
            return self.now.checked_add(d).ok_or_else(err);
        }
        if let Some(d) = t.strip_prefix('-') {
            let d = clock::parse_duration(d).map_err(|_| err())?;
            return self.now.checked_sub(d).ok_or_else(err);
        }
        if let Ok(v) = OffsetDateTime::parse(t, &Rfc3339) {
            return Ok(to_millis(v));
        }
        let now = to_datetime(self.now).ok_or_else(err)?;
        let today = now.to_offset(self.offset_at(now)).date();
        let (day, clock_part) = match t.split_once(' ') {
            Some(("today", rest)) => (Some(today), Some(rest)),
            Some(("tomorrow", rest)) => (today.next_day(), Some(rest)),
            Some(("yesterday", rest)) => (today.previous_day(), Some(rest)),
            Some((date, rest)) => (Some(parse_date(date).ok_or_else(err)?), Some(rest)),
            None => match parse_date(t) {
                Some(d) => (Some(d), None),
                None => (Some(today), Some(t)),
            },
        };
        let day = day.ok_or_else(err)?;
        let hm = match clock_part {
            Some(c) => parse_clock(c.trim()).ok_or_else(err)?,
            None => Time::MIDNIGHT,
        };
        let local = PrimitiveDateTime::new(day, hm);
        // The offset of that wall-clock time in the zone (daylight saving may differ from now).
        let guess = local.assume_utc();
        let offset = self.offset_at(guess);
        Ok(to_millis(local.assume_offset(offset)))
    }
}

fn parse_date(s: &str) -> Option<Date> {
    Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

fn parse_clock(s: &str) -> Option<Time> {
    let hms = time::macros::format_description!("[hour]:[minute]:[second]");
    let hm = time::macros::format_description!("[hour]:[minute]");
    Time::parse(s, hms).or_else(|_| Time::parse(s, hm)).ok()
}

/// `45s`, `12m`, `3h`, `2d`, `5w`: one unit, rounded down.
pub fn short_duration(ms: Millis) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m", s / 60),
        3_600..86_400 => format!("{}h", s / 3_600),
        86_400..1_209_600 => format!("{}d", s / 86_400),
        _ => format!("{}w", s / 604_800),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(offset_h: i8) -> Times {
        Times {
            zone: Zone::Fixed(UtcOffset::from_hms(offset_h, 0, 0).unwrap()),
            // 2026-12-01T10:00:00Z
            now: 1_796_119_200_000,
        }
    }

    #[test]
    fn shows_local_time_with_a_relative_form() {
        let t = times(1);
        assert_eq!(t.at(t.now - 7_200_000), "2026-12-01 09:00 +01:00 (2h ago)");
        assert_eq!(t.relative(t.now + 40 * 60_000), "in 40m");
        let utc = Times {
            zone: Zone::Utc,
            now: t.now,
        };
        assert_eq!(utc.absolute(t.now), "2026-12-01 10:00Z");
        assert_eq!(t.age(t.now - 3 * 86_400_000), "3d");
    }

    #[test]
    fn reads_the_input_forms_in_the_operators_zone() {
        let t = times(1);
        let hour = 3_600_000;
        assert_eq!(t.parse_millis("+2h").unwrap(), t.now + 2 * hour);
        assert_eq!(t.parse_millis("-15m").unwrap(), t.now - 15 * 60_000);
        // 14:00 at +01:00 is 13:00Z, three hours after 10:00Z.
        assert_eq!(t.parse_millis("14:00").unwrap(), t.now + 3 * hour);
        assert_eq!(t.parse_millis("tomorrow 09:00").unwrap(), t.now + 22 * hour);
        assert_eq!(
            t.parse("2026-12-01 14:00").unwrap(),
            "2026-12-01T13:00:00.000Z"
        );
        assert_eq!(t.parse("2026-12-02").unwrap(), "2026-12-01T23:00:00.000Z");
        assert_eq!(
            t.parse("2026-12-01T14:00:00Z").unwrap(),
            "2026-12-01T14:00:00.000Z"
        );
        let e = t.parse("teatime").unwrap_err();
        assert_eq!(e.kind, FailureKind::Invalid);
        assert!(e.message.contains("tomorrow 09:00"), "{}", e.message);
        assert!(t.parse("+9223372036854775s").is_err());
    }
}
