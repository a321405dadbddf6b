//! Instants as inventories and plans write them (RFC 3339, UTC), and the durations policies
//! write (`30d`, `12h`, `90m`).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant, read and written as RFC 3339 (`2026-12-07T10:00:00Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub SystemTime);

impl Timestamp {
    /// `self` less `duration`, or the Unix epoch when that is before it.
    pub fn minus(self, duration: Duration) -> Timestamp {
        Timestamp(self.0.checked_sub(duration).unwrap_or(SystemTime::UNIX_EPOCH))
    }
}

impl std::str::FromStr for Timestamp {
    type Err = String;

    fn from_str(text: &str) -> Result<Timestamp, String> {
        humantime::parse_rfc3339_weak(text).map(Timestamp).map_err(|e| format!("{text:?} is not an RFC 3339 time: {e}"))
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", humantime::format_rfc3339(self.0))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A duration as policies write it: a count and a unit, `30d`, `12h`, `90m`, `45s`, `2w`
/// (several may follow each other: `1d12h`).
///
/// # Errors
/// A message naming what is wrong: no unit, an unknown one, a number too large.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("{text:?} is not a duration ({why}; write 30d, 12h, 90m, 45s or 2w)");
    if text.is_empty() {
        return Err(bad("it is empty"));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad("a number must come first"));
        }
        let count: u64 = rest[..digits].parse().map_err(|_| bad("the number is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 604_800,
            "" => return Err(bad("a unit must follow the number")),
            _ => return Err(bad("the unit is not one of s, m, h, d, w")),
        };
        rest = &rest[unit_len..];
        let part = count.checked_mul(seconds).ok_or_else(|| bad("it is too long"))?;
        total = total.checked_add(Duration::from_secs(part)).ok_or_else(|| bad("it is too long"))?;
    }
    Ok(total)
}

/// A duration as [`parse_duration`] reads it, in days, hours, minutes and seconds (as
/// policies write them: `30d` rather than `4w2d`).
pub fn format_duration(duration: Duration) -> String {
    let mut seconds = duration.as_secs();
    if seconds == 0 {
        return "0s".into();
    }
    let mut text = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if seconds >= size {
            text.push_str(&format!("{}{unit}", seconds / size));
            seconds %= size;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(90 * 60)));
        assert_eq!(parse_duration("1d12h"), Ok(Duration::from_secs(36 * 3600)));
        for (text, says) in [
            ("", "empty"),
            ("30", "a unit must follow"),
            ("d", "a number must come first"),
            ("3y", "not one of"),
            ("30 d", "not one of"),
            ("99999999999999999999d", "too large"),
            ("9999999999999999w", "too long"),
        ] {
            let error = parse_duration(text).unwrap_err();
            assert!(error.contains(says), "{text:?}: {error}");
        }
    }

    #[test]
    fn timestamps() {
        let time: Timestamp = "2026-12-07T10:00:00Z".parse().unwrap();
        assert_eq!(time.to_string(), "2026-12-07T10:00:00Z");
        assert_eq!(serde_json::to_string(&time).unwrap(), "\"2026-12-07T10:00:00Z\"");
        assert!("yesterday".parse::<Timestamp>().unwrap_err().contains("RFC 3339"));
        assert_eq!(time.minus(Duration::from_secs(u64::MAX)), Timestamp(SystemTime::UNIX_EPOCH));
    }

    proptest! {
        /// A duration prints as one that reads back the same.
        #[test]
        fn durations_round_trip(seconds in 0u64..10_000_000_000) {
            let duration = Duration::from_secs(seconds);
            prop_assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }

        /// Any text is a duration or an error naming it, never a panic.
        #[test]
        fn any_text_is_read_or_refused(text in "\\PC{0,24}") {
            if let Err(error) = parse_duration(&text) {
                prop_assert!(error.contains("not a duration"));
            }
        }
    }
}
