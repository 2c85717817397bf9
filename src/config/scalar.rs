//! The scalars of ZITADEL's config, read as viper's weak typing reads them (a
//! string, a number or a bool as text; `Roles` as a list or one comma-separated
//! string), and `KeyData`'s base64. Holds values only: what they mean is the parent
//! module's, where they sit in the document is `yaml`'s.

use std::fmt;

use base64::Engine as _;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::error::KeyError;

/// Go's `strconv.ParseBool`.
pub(super) fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Removes the string values serde quotes in its errors (`invalid type: string
/// "..."`): a value in the wrong place may be key material, and error messages are
/// logged.
pub(super) fn without_values(message: &str) -> String {
    const QUOTED: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(QUOTED) {
        out.push_str(&rest[..start]);
        out.push_str("a string");
        let value = &rest[start + QUOTED.len()..];
        // The value is Debug-quoted: skip to the first quote not escaped.
        let mut escaped = false;
        let end = value.char_indices().find_map(|(i, c)| match (c, escaped) {
            ('"', false) => Some(i + 1),
            ('\\', false) => {
                escaped = true;
                None
            }
            _ => {
                escaped = false;
                None
            }
        });
        rest = match end {
            Some(end) => &value[end..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// Decodes `KeyData`: PEM text as it is, or base64 of it (line breaks and spaces
/// allowed, padding optional).
pub(super) fn decode_key_data(value: &str) -> Result<Vec<u8>, KeyError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(KeyError::Empty);
    }
    if trimmed.starts_with("-----BEGIN") {
        return Ok(trimmed.as_bytes().to_vec());
    }
    let compact: String = trimmed
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let decoded = engine.decode(compact).map_err(|_| KeyError::NotBase64)?;
    if decoded.iter().all(u8::is_ascii_whitespace) {
        return Err(KeyError::Empty);
    }
    Ok(decoded)
}

/// A mapping key of any scalar type, as text.
pub(super) struct Key(pub String);

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarText("a mapping key")).map(Key)
    }
}

/// Accepts a string, a number or a bool as text.
pub(super) struct ScalarText(&'static str);

impl Visitor<'_> for ScalarText {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
}

/// A setting that may be written as a string or as its own type.
pub(super) struct Weak<T>(pub T);

/// Reads a scalar as text and parses it inside the visitor, so an error carries the
/// value's line.
struct ParsedScalar<T> {
    parse: fn(&str) -> Option<T>,
    error: &'static str,
}

impl<T> ParsedScalar<T> {
    fn finish<E: de::Error>(self, text: String) -> Result<T, E> {
        (self.parse)(text.trim()).ok_or_else(|| E::custom(self.error))
    }
}

impl<T> Visitor<'_> for ParsedScalar<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.error)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        self.finish(v.to_owned())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.finish(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.finish(v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        self.finish(v.to_string())
    }
}

impl<'de> de::Deserialize<'de> for Weak<String> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarText("a string")).map(Weak)
    }
}

impl<'de> de::Deserialize<'de> for Weak<u16> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ParsedScalar {
            parse: |text| text.parse().ok(),
            error: "ExternalPort must be a port number from 0 to 65535",
        })
        .map(Weak)
    }
}

impl<'de> de::Deserialize<'de> for Weak<bool> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ParsedScalar {
            parse: parse_bool,
            error: "ExternalSecure must be true or false",
        })
        .map(Weak)
    }
}

/// `Roles`: a list of names, or one string that ZITADEL's decoder splits at commas
/// (mapstructure's `StringToSliceHookFunc(",")`: no trimming, `""` is no role).
pub(super) struct Roles(pub Vec<String>);

impl<'de> de::Deserialize<'de> for Roles {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Roles;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("Roles as a list of role names or one comma-separated string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Roles, E> {
                if v.is_empty() {
                    return Ok(Roles(Vec::new()));
                }
                Ok(Roles(v.split(',').map(str::to_owned).collect()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Roles, E> {
                Ok(Roles(Vec::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Roles, A::Error> {
                let mut roles = Vec::new();
                while let Some(Weak(role)) = seq.next_element::<Weak<String>>()? {
                    roles.push(role);
                }
                Ok(Roles(roles))
            }
        }
        d.deserialize_any(V)
    }
}

/// Takes a field's value once; a second occurrence is an error.
pub(super) fn set_once<'de, A: MapAccess<'de>, T: de::Deserialize<'de>>(
    map: &mut A,
    slot: &mut Option<T>,
    what: &dyn fmt::Display,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::custom(format_args!("{what} is given twice")));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}
