//! Times, durations and numbers as the command prints them: times and durations
//! in `explain`'s words.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zitadel_system_auth::explain::{Span, Time};

/// Seconds since the Unix epoch, now, or `--now` when given.
pub fn now_secs(now: Option<u64>) -> u64 {
    now.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

/// A `SystemTime` as seconds since the Unix epoch (0 before it).
pub fn secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Seconds since the Unix epoch in RFC 3339, as `explain` writes times.
pub fn rfc3339(seconds: u64) -> String {
    Time(seconds).to_string()
}

/// A duration in its two largest units, as `explain` writes durations.
pub fn span(seconds: u64) -> String {
    Span(Duration::from_secs(seconds)).to_string()
}

/// A whole number with thousands separators: `44,210`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_with_thousands_separators() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(44_210.4), "44,210");
        assert_eq!(thousands(15_187_026.0), "15,187,026");
    }
}
