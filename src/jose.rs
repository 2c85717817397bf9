//! Token bytes to a JOSE header and claims, strictly.
//!
//! Holds the compact serialisation (three parts of canonical unpadded base64url), and
//! a JSON reader that keeps only what the checks use and refuses what could make a
//! token mean two things: a member name twice at any depth, a claim name that Go's
//! case-insensitive decoder would take for a registered claim, JSON nested deeper than
//! [`MAX_DEPTH`], a header member that carries or points at a key. It knows nothing of
//! keys, clocks or audiences: those checks are `verify`'s.

use std::{borrow::Cow, cell::Cell, fmt, marker::PhantomData};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::{
    algorithm::Algorithm,
    error::{AuthError, Claim, Malformed},
};

/// The deepest a header or payload may nest, arrays and objects alike: the top-level
/// object is level 1.
pub const MAX_DEPTH: usize = 64;

/// The latest time a claim may name: 9999-12-31T23:59:59Z.
const MAX_TIME: u64 = 253_402_300_799;

/// The three parts of a compact JWS, still encoded.
pub(crate) struct Parts<'t> {
    pub header: &'t [u8],
    pub payload: &'t [u8],
    pub signature: &'t [u8],
    /// `header.payload`, what the signature covers.
    pub signing_input: &'t [u8],
}

impl<'t> Parts<'t> {
    /// Splits `token` at its two dots.
    pub fn split(token: &'t [u8]) -> Result<Parts<'t>, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Malformed(Malformed::EmptyToken));
        }
        let mut dots = memchr::memchr_iter(b'.', token);
        let (Some(first), Some(second), None) = (dots.next(), dots.next(), dots.next()) else {
            return Err(AuthError::Malformed(Malformed::Segments));
        };
        Ok(Parts {
            header: &token[..first],
            payload: &token[first + 1..second],
            signature: &token[second + 1..],
            signing_input: &token[..second],
        })
    }
}

/// Decodes `part`, which must be canonical unpadded base64url: no `=`, and the
/// unused bits of the last character zero (the `base64` crate's URL-safe engine
/// without padding refuses anything else).
pub(crate) fn decode_part(part: &[u8], what: Malformed) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthError::Malformed(what))
}

/// The most bytes the unpadded base64url `part` can decode to, or `None` when no
/// base64url text has its length.
pub(crate) fn decoded_length(part: &[u8]) -> Option<usize> {
    match part.len() % 4 {
        1 => None,
        rest => Some(part.len() / 4 * 3 + rest.saturating_sub(1)),
    }
}

/// The JOSE header, as far as the checks need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// `None` when `alg` names an algorithm this crate never accepts.
    pub alg: Option<Algorithm>,
    /// A `crit` member is present.
    pub crit: bool,
    /// `typ` is absent or `JWT` in any case.
    pub typ_ok: bool,
}

/// Header members that carry a key, point at one, or change what is signed (`b64`,
/// RFC 7797): the key comes from the configuration only, and the signature covers
/// the bytes received.
const REFUSED_HEADER_MEMBERS: [&str; 7] = ["jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "b64"];

/// The header members the checks read, in the order of their bits.
const HEADER_MEMBERS: [&str; 3] = ["alg", "typ", "crit"];

/// Registered header members that must be strings when present (`alg` and `typ`
/// have checks of their own).
const STRING_HEADER_MEMBERS: [&str; 3] = ["kid", "cty", "nonce"];

impl Header {
    /// Reads the decoded header JSON.
    pub fn parse(json: &[u8]) -> Result<Header, AuthError> {
        let members: HeaderMembers = parse_object(json, Malformed::HeaderJson)?;
        if members.refused {
            return Err(AuthError::RefusedHeaderMember);
        }
        let alg = match members.alg {
            Some(Value::Str(alg)) => alg.parse().ok(),
            _ => return Err(AuthError::Malformed(Malformed::HeaderJson)),
        };
        let typ_ok = match members.typ {
            None => true,
            Some(Value::Str(typ)) => typ.eq_ignore_ascii_case("JWT"),
            Some(_) => false,
        };
        Ok(Header {
            alg,
            crit: members.crit,
            typ_ok,
        })
    }
}

/// The header members the checks read, as they came.
#[derive(Default)]
struct HeaderMembers<'a> {
    alg: Option<Value<'a>>,
    typ: Option<Value<'a>>,
    crit: bool,
    /// A member of [`REFUSED_HEADER_MEMBERS`], or one of
    /// [`STRING_HEADER_MEMBERS`] that is not a string.
    refused: bool,
}

impl<'de> Members<'de> for HeaderMembers<'de> {
    fn take(&mut self, name: &str, value: Value<'de>) -> Option<u8> {
        match name {
            "alg" => self.alg = Some(value),
            "typ" => self.typ = Some(value),
            "crit" => self.crit = true,
            _ => {
                self.refused |= REFUSED_HEADER_MEMBERS.contains(&name)
                    || (STRING_HEADER_MEMBERS.contains(&name) && !matches!(value, Value::Str(_)));
                return None;
            }
        }
        HEADER_MEMBERS
            .iter()
            .position(|member| *member == name)
            .map(|i| 1 << i)
    }
}

/// The registered claims, each as the JSON value it came as, borrowing from the
/// decoded payload.
#[derive(Default)]
pub(crate) struct Claims<'a> {
    iss: Option<Value<'a>>,
    sub: Option<Value<'a>>,
    aud: Option<Value<'a>>,
    exp: Option<Value<'a>>,
    iat: Option<Value<'a>>,
    nbf: Option<Value<'a>>,
    /// A member whose name Go would take for a registered claim without it being
    /// that claim's exact name (`ISS`, `ſub`).
    ambiguous: bool,
}

/// The registered claims, in the order of their bits.
const CLAIMS: [Claim; 6] = [
    Claim::Iss,
    Claim::Sub,
    Claim::Aud,
    Claim::Exp,
    Claim::Iat,
    Claim::Nbf,
];

impl<'de> Members<'de> for Claims<'de> {
    fn take(&mut self, name: &str, value: Value<'de>) -> Option<u8> {
        let Some(index) = CLAIMS.iter().position(|claim| claim.name() == name) else {
            self.ambiguous |= CLAIMS.iter().any(|claim| go_folds_to(name, claim.name()));
            return None;
        };
        let slot = match CLAIMS[index] {
            Claim::Iss => &mut self.iss,
            Claim::Sub => &mut self.sub,
            Claim::Aud => &mut self.aud,
            Claim::Exp => &mut self.exp,
            Claim::Iat => &mut self.iat,
            Claim::Nbf => &mut self.nbf,
        };
        *slot = Some(value);
        Some(1 << index)
    }
}

impl<'a> Claims<'a> {
    /// Reads the decoded payload JSON.
    pub fn parse(json: &'a [u8]) -> Result<Claims<'a>, AuthError> {
        let claims: Claims = parse_object(json, Malformed::PayloadJson)?;
        if claims.ambiguous {
            return Err(AuthError::Malformed(Malformed::AmbiguousClaimName));
        }
        Ok(claims)
    }

    /// `aud`: a string or an array of strings.
    pub fn aud(&self) -> Result<&[Text<'a>], AuthError> {
        match &self.aud {
            None => Err(AuthError::MissingClaim(Claim::Aud)),
            Some(Value::Str(aud)) => Ok(std::slice::from_ref(aud)),
            Some(Value::Strings(auds)) => Ok(auds),
            Some(_) => Err(AuthError::InvalidClaim(Claim::Aud)),
        }
    }

    /// `exp`, in whole seconds since the epoch, when present.
    pub fn exp(&self) -> Result<Option<u64>, AuthError> {
        time(Claim::Exp, &self.exp)
    }

    /// `iat`, in whole seconds since the epoch, when present.
    pub fn iat(&self) -> Result<Option<u64>, AuthError> {
        time(Claim::Iat, &self.iat)
    }

    /// `nbf`, in whole seconds since the epoch, when present.
    pub fn nbf(&self) -> Result<Option<u64>, AuthError> {
        time(Claim::Nbf, &self.nbf)
    }

    /// `iss`, a string.
    pub fn iss(&self) -> Result<&str, AuthError> {
        string(Claim::Iss, &self.iss)
    }

    /// `sub`, a string.
    pub fn sub(&self) -> Result<&str, AuthError> {
        string(Claim::Sub, &self.sub)
    }
}

fn time(claim: Claim, value: &Option<Value<'_>>) -> Result<Option<u64>, AuthError> {
    match value {
        None => Ok(None),
        Some(Value::Time(seconds)) => Ok(Some(*seconds)),
        Some(_) => Err(AuthError::InvalidClaim(claim)),
    }
}

fn string<'c>(claim: Claim, value: &'c Option<Value<'_>>) -> Result<&'c str, AuthError> {
    match value {
        None => Err(AuthError::MissingClaim(claim)),
        Some(Value::Str(text)) => Ok(text),
        Some(_) => Err(AuthError::InvalidClaim(claim)),
    }
}

/// Whether Go's `encoding/json` would read a member called `name` into the field
/// tagged `registered` (a lower-case ASCII name) although `name` is not exactly it.
///
/// Go matches a member to a field by exact name first, then by a case fold that
/// takes a non-ASCII letter to ASCII in four cases: `ſ` (U+017F) and the Kelvin sign
/// (U+212A) by Unicode simple case folding, and `ı` (U+0131) and `İ` (U+0130), which
/// Go's `ToUpper(ToLower(r))` folding (encoding/json since Go 1.21) takes to `I`.
/// All four are refused here, whichever Go version ZITADEL runs.
fn go_folds_to(name: &str, registered: &str) -> bool {
    fn fold(c: char) -> char {
        match c {
            '\u{017F}' => 's',
            '\u{212A}' => 'k',
            '\u{0130}' | '\u{0131}' => 'i',
            c => c.to_ascii_lowercase(),
        }
    }
    name != registered && name.chars().map(fold).eq(registered.chars())
}

/// A JSON string, borrowed from the input unless it had escapes.
pub(crate) type Text<'a> = Cow<'a, str>;

/// A member's value, reduced to what the checks can use.
enum Value<'a> {
    Str(Text<'a>),
    Strings(Vec<Text<'a>>),
    /// A number of whole seconds in 0..=9999-12-31 (a fraction is cut off).
    Time(u64),
    /// Anything else: a mistyped or out-of-range value.
    Other,
}

/// A JSON object read straight into the members the checks use.
trait Members<'de>: Default {
    /// Keeps the value of the member `name` if the checks use it, and returns the
    /// member's bit (one per name); `None` for a member it only looked at.
    fn take(&mut self, name: &str, value: Value<'de>) -> Option<u8>;
}

/// Why a read failed, when it is more than "not JSON".
type Problem = Cell<Option<Malformed>>;

/// Where the reader is: how deep, and where to say why it stopped.
#[derive(Clone, Copy)]
struct Context<'p> {
    /// The level of the value about to be read (the top-level object is 1).
    depth: usize,
    problem: &'p Problem,
}

impl Context<'_> {
    /// Stops the read for `why`.
    fn refuse<E: de::Error>(self, why: Malformed) -> E {
        self.problem.set(Some(why));
        E::custom(why)
    }

    /// The context of the members of a container at this level, or a refusal when
    /// the container itself is too deep.
    fn inside<E: de::Error>(self) -> Result<Self, E> {
        if self.depth > MAX_DEPTH {
            return Err(self.refuse(Malformed::NestingTooDeep));
        }
        Ok(Context {
            depth: self.depth + 1,
            problem: self.problem,
        })
    }
}

/// Parses `json` as one object whose member names are all different, at any depth.
fn parse_object<'de, T: Members<'de>>(
    json: &'de [u8],
    malformed: Malformed,
) -> Result<T, AuthError> {
    // JSON is UTF-8 throughout (RFC 8259).
    let text = std::str::from_utf8(json).map_err(|_| AuthError::Malformed(malformed))?;
    let problem = Problem::default();
    let context = Context {
        depth: 1,
        problem: &problem,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    de.deserialize_map(ObjectVisitor(context, PhantomData))
        .and_then(|members| de.end().map(|()| members))
        .map_err(|_| AuthError::Malformed(problem.get().unwrap_or(malformed)))
}

/// Reads the top-level object into `T`.
struct ObjectVisitor<'p, T>(Context<'p>, PhantomData<T>);

impl<'de, T: Members<'de>> Visitor<'de> for ObjectVisitor<'_, T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let context = self.0;
        let inside = context.inside()?;
        let mut members = T::default();
        let mut seen = 0u8;
        // The names `T` only looked at, to find duplicates among them.
        let mut others: Vec<Text<'de>> = Vec::new();
        while let Some(name) = map.next_key_seed(TextSeed)? {
            let value = map.next_value_seed(ValueSeed(inside))?;
            match members.take(&name, value) {
                Some(bit) if seen & bit != 0 => {
                    return Err(context.refuse(Malformed::DuplicateMember));
                }
                Some(bit) => seen |= bit,
                None => others.push(name),
            }
        }
        if has_duplicates(&mut others) {
            return Err(context.refuse(Malformed::DuplicateMember));
        }
        Ok(members)
    }
}

/// Whether a name occurs twice in `names`.
fn has_duplicates(names: &mut [Text<'_>]) -> bool {
    if names.len() <= 16 {
        return names
            .iter()
            .enumerate()
            .any(|(i, name)| names[..i].contains(name));
    }
    names.sort_unstable();
    names.windows(2).any(|pair| pair[0] == pair[1])
}

/// A JSON string, borrowed where it can be.
struct TextSeed;

impl<'de> DeserializeSeed<'de> for TextSeed {
    type Value = Text<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Text<'de>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for TextSeed {
    type Value = Text<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// Any JSON value at the context's depth.
struct ValueSeed<'p>(Context<'p>);

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value<'de>, E> {
        Ok(if v <= MAX_TIME {
            Value::Time(v)
        } else {
            Value::Other
        })
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value<'de>, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Ok(Value::Other),
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value<'de>, E> {
        Ok(if v >= 0.0 && v.trunc() <= MAX_TIME as f64 {
            Value::Time(v.trunc() as u64)
        } else {
            Value::Other
        })
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Value<'de>, E> {
        Ok(Value::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value<'de>, E> {
        Ok(Value::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value<'de>, A::Error> {
        let inside = self.0.inside()?;
        let mut strings = Vec::new();
        let mut all_strings = true;
        while let Some(item) = seq.next_element_seed(ValueSeed(inside))? {
            match item {
                Value::Str(text) if all_strings => strings.push(text),
                _ => all_strings = false,
            }
        }
        Ok(if all_strings {
            Value::Strings(strings)
        } else {
            Value::Other
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value<'de>, A::Error> {
        let inside = self.0.inside()?;
        let mut names = Vec::new();
        while let Some(name) = map.next_key_seed(TextSeed)? {
            map.next_value_seed(ValueSeed(inside))?;
            names.push(name);
        }
        if has_duplicates(&mut names) {
            return Err(self.0.refuse(Malformed::DuplicateMember));
        }
        Ok(Value::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_folds_the_four_non_ascii_letters_and_ascii_case() {
        for name in [
            "ISS",
            "Iss",
            "\u{017F}ub",
            "SUB",
            "\u{0131}at",
            "\u{0130}AT",
        ] {
            assert!(
                ["iss", "sub", "iat"]
                    .iter()
                    .any(|registered| go_folds_to(name, registered)),
                "{name}"
            );
        }
        for (name, registered) in [
            ("iss", "iss"),
            ("is", "iss"),
            ("issx", "iss"),
            ("\u{00DF}ub", "sub"),
            ("i\u{0073}\u{0301}s", "iss"),
        ] {
            assert!(!go_folds_to(name, registered), "{name} {registered}");
        }
    }
}
