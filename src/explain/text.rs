//! How an explanation words values: JSON on one line, times in RFC 3339 and
//! relative to now, and ZITADEL's notes that depend only on the text.

use std::{fmt, time::Duration};

use base64::Engine as _;
use serde_json::Value;

pub(super) const NANOS: i128 = 1_000_000_000;

/// JSON shown on one line, as it reads.
pub(super) fn shown_json(json: &[u8]) -> String {
    match serde_json::from_slice::<Value>(json) {
        Ok(value) => value.to_string(),
        Err(_) => format!("({} bytes that are not one JSON value)", json.len()),
    }
}

pub(super) fn shown(value: &Value) -> String {
    match value {
        Value::Null => "nothing".to_owned(),
        value => value.to_string(),
    }
}

/// Which refused members the header has, and what go-jose (under ZITADEL) does
/// with them.
pub(super) fn refused_header_members(json: &[u8]) -> (String, Option<String>) {
    const KEY_MEMBERS: [&str; 6] = ["jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256"];
    let Ok(Value::Object(members)) = serde_json::from_slice::<Value>(json) else {
        return ("a member this crate refuses".to_owned(), None);
    };
    let mut found = Vec::new();
    let mut notes = Vec::new();
    let keys: Vec<&str> = KEY_MEMBERS
        .iter()
        .copied()
        .filter(|name| members.contains_key(*name))
        .collect();
    if !keys.is_empty() {
        found.push(format!("{} carries or points at a key", keys.join(", ")));
        notes.push(
            "go-jose (under ZITADEL) checks a jwk or x5c (a bad one refuses the token) and \
             ignores jku, x5u, x5t and x5t#S256; the key always comes from the configuration",
        );
    }
    if members.contains_key("b64") {
        found.push("b64 changes what is signed (RFC 7797)".to_owned());
        notes.push("go-jose (under ZITADEL) honours \"b64\": false even without crit");
    }
    for name in ["kid", "cty", "nonce"] {
        if members.get(name).is_some_and(|value| !value.is_string()) {
            found.push(format!("{name} is not a string"));
            if name == "cty" {
                notes.push("go-jose (under ZITADEL) ignores cty");
            }
        }
    }
    let found = if found.is_empty() {
        "a member this crate refuses".to_owned()
    } else {
        found.join("; ")
    };
    let notes = (!notes.is_empty()).then(|| notes.join("; "));
    (found, notes)
}

/// The note on JSON that is not Unicode text, which Go reads all the same.
pub(super) fn not_unicode(json: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(json).ok();
    let lone_surrogate = text.is_some_and(|text| {
        text.to_ascii_lowercase().contains("\\ud") && serde_json::from_str::<Value>(text).is_err()
    });
    (text.is_none() || lone_surrogate).then(|| {
        "Go's decoder (under ZITADEL) reads invalid UTF-8 and lone surrogates as U+FFFD".to_owned()
    })
}

/// ZITADEL's note on a time claim written as RFC 3339 text.
pub(super) fn string_time(value: &Value) -> Option<String> {
    value
        .is_string()
        .then(|| "ZITADEL accepts a time claim written as RFC 3339 text".to_owned())
}

/// The note on base64 that a lenient decoder reads: what go-jose does.
pub(super) fn noncanonical(encoded: &[u8]) -> Option<String> {
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let compact: Vec<u8> = encoded
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    lenient.decode(compact).is_ok().then(|| {
        "go-jose (under ZITADEL) decodes this part (it strips white space and accepts non-canonical final characters)".to_owned()
    })
}

/// A time as an explanation writes it: RFC 3339 in UTC, to the second
/// (`2023-11-14T22:13:20Z`). Holds seconds since the Unix epoch, as a token's `exp`
/// does; one past year 9999 reads `N s after 1970`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time(pub u64);

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match spki::der::DateTime::from_unix_duration(Duration::from_secs(self.0)) {
            Ok(time) => write!(f, "{time}"),
            Err(_) => write!(f, "{} s after 1970", self.0),
        }
    }
}

/// A duration as an explanation writes it: whole seconds in the two largest units
/// that fit (`3 min 12 s`, `1 h 4 min`, `2 d 3 h`), and `0 s` under a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [(86_400, "d"), (3_600, "h"), (60, "min"), (1, "s")];
        let mut rest = self.0.as_secs();
        let mut written = 0;
        for (size, name) in units {
            if rest >= size && written < 2 {
                let gap = if written > 0 { " " } else { "" };
                write!(f, "{gap}{} {name}", rest / size)?;
                rest %= size;
                written += 1;
            } else if written > 0 {
                break;
            }
        }
        if written == 0 {
            f.write_str("0 s")?;
        }
        Ok(())
    }
}

/// Seconds since the epoch in RFC 3339.
pub(super) fn time(seconds: u64) -> String {
    Time(seconds).to_string()
}

/// `seconds` relative to the clock reading `now`.
pub(super) fn relative(seconds: u64, now: i128) -> String {
    let difference = i128::from(seconds) - now.div_euclid(NANOS);
    match difference {
        0 => "now".to_owned(),
        d if d > 0 => format!("in {}", span_secs(d)),
        d => format!("{} ago", span_secs(-d)),
    }
}

pub(super) fn span(duration: Duration) -> String {
    Span(duration).to_string()
}

/// A number of seconds as a [`Span`]; none below 0.
pub(super) fn span_secs(seconds: i128) -> String {
    let seconds = u64::try_from(seconds.max(0)).unwrap_or(u64::MAX);
    span(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_in_two_units() {
        assert_eq!(span_secs(0), "0 s");
        assert_eq!(span_secs(192), "3 min 12 s");
        assert_eq!(span_secs(3840), "1 h 4 min");
        assert_eq!(span_secs(3600), "1 h");
        assert_eq!(span_secs(183_600), "2 d 3 h");
        assert_eq!(span_secs(20 * 86_400 - 5), "19 d 23 h");
        assert_eq!(span_secs(-5), "0 s");
        assert_eq!(Span(Duration::from_millis(999)).to_string(), "0 s");
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
        assert_eq!(time(1_659_957_184), "2022-08-08T11:13:04Z");
        assert_eq!(time(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(time(u64::MAX), format!("{} s after 1970", u64::MAX));
    }
}
