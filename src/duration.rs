//! Durations as operators write them: `90s`, `20m`, `1h`, `1h30m`, `250ms`, or
//! plain seconds (`3600`). Shared by every subcommand so that all flags accept
//! the same forms.

use std::time::Duration;

/// A text that is not a duration. Its `Display` is the forms that are, a phrase
/// that fits after "expected": callers put it in a line that also names the
/// flag and the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a duration such as 90s, 20m, 1h, 1h30m or plain seconds")]
pub struct NotADuration;

/// Parses a duration.
pub fn parse_duration(input: &str) -> Result<Duration, NotADuration> {
    let s = input.trim();
    if s.is_empty() {
        return Err(NotADuration);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| NotADuration);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return Err(NotADuration);
        }
        let value: u64 = rest[..digits].parse().map_err(|_| NotADuration)?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => value
                .checked_mul(60)
                .map(Duration::from_secs)
                .ok_or(NotADuration)?,
            "h" => value
                .checked_mul(3600)
                .map(Duration::from_secs)
                .ok_or(NotADuration)?,
            "d" => value
                .checked_mul(86400)
                .map(Duration::from_secs)
                .ok_or(NotADuration)?,
            _ => return Err(NotADuration),
        };
        total = total.checked_add(part).ok_or(NotADuration)?;
    }
    Ok(total)
}

/// Formats a duration the way it would be written on the command line.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let ms = d.subsec_millis();
    if secs == 0 {
        return format!("{ms}ms");
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    // Milliseconds as their own part: a total in milliseconds can exceed what
    // the parser reads as one number.
    if ms > 0 {
        out.push_str(&format!("{ms}ms"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_should_parse() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("20m"), Ok(Duration::from_secs(1200)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172800)));
    }

    #[test]
    fn plain_seconds_should_parse() {
        assert_eq!(parse_duration("3600"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 15 "), Ok(Duration::from_secs(15)));
    }

    #[test]
    fn garbage_should_be_refused() {
        for bad in [
            "",
            "s",
            "1x",
            "-5s",
            "1.5h",
            "h1",
            "1h 30m",
            "99999999999999999999",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_duration("18446744073709551615h").is_err());
    }

    #[test]
    fn format_should_round_trip() {
        for s in ["90s", "20m", "1h", "1h30m", "250ms", "1h0m5s"] {
            let d = parse_duration(s).unwrap();
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(90_250)), "1m30s250ms");
    }

    /// Regression (found by `cargo fuzz`, target `duration`): a huge duration
    /// with milliseconds was formatted as one millisecond count too large to
    /// parse back.
    #[test]
    fn huge_durations_with_milliseconds_should_round_trip() {
        let d = Duration::from_secs(u64::MAX / 2) + Duration::from_millis(7);
        assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }
}
