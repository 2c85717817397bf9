//! Times, durations and numbers as the command prints them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now, or `--now` when given (for tests).
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

/// Seconds since the Unix epoch in RFC 3339 (`2023-11-14T22:13:20Z`).
pub fn rfc3339(seconds: u64) -> String {
    spki::der::DateTime::from_unix_duration(Duration::from_secs(seconds))
        .map_or_else(|_| format!("{seconds} s after 1970"), |t| t.to_string())
}

/// A duration in its two largest units: `3 min 12 s`, `1 h 4 min`, `12 d 3 h`.
pub fn span(seconds: u64) -> String {
    let units = [(86_400, "d"), (3_600, "h"), (60, "min"), (1, "s")];
    let mut rest = seconds;
    let mut parts = Vec::new();
    for (size, name) in units {
        if rest >= size && parts.len() < 2 {
            parts.push(format!("{} {name}", rest / size));
            rest %= size;
        } else if !parts.is_empty() {
            break;
        }
    }
    if parts.is_empty() {
        "0 s".to_owned()
    } else {
        parts.join(" ")
    }
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
    fn numbers_times_and_spans() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(44_210.4), "44,210");
        assert_eq!(thousands(15_187_026.0), "15,187,026");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(span(0), "0 s");
        assert_eq!(span(192), "3 min 12 s");
        assert_eq!(span(20 * 86_400 - 5), "19 d 23 h");
    }
}
