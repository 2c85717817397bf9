//! The reference model of the token rules, written from the README's list of checks
//! and its table of differences (never from the crate's code), and shared by the
//! property tests and the `token` fuzz target (`#[path]` include).
//!
//! [`Rules::accepts`] says whether a token must be accepted at a fixed second, with
//! ZITADEL's 1 s clock offset and 1 h maximum age: the JSON is read with
//! `serde_json` into a tree that keeps repeated names, and the signature is checked
//! with aws-lc-rs's `UnparsedPublicKey`, not with the crate's key code.
#![allow(dead_code)]

use aws_lc_rs::signature::{self, UnparsedPublicKey};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// 9999-12-31T23:59:59Z, the latest time a claim may name.
pub const MAX_TIME: u64 = 253_402_300_799;
/// The deepest a header or payload may nest (the object itself is level 1).
pub const MAX_DEPTH: usize = 64;
/// The registered claims a Go decoder would match case-insensitively.
const REGISTERED: [&str; 6] = ["iss", "sub", "aud", "exp", "iat", "nbf"];
/// Header members that carry or point at a key, or change what is signed.
const KEY_MEMBERS: [&str; 7] = ["jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "b64"];
/// Header members that must be strings when present (besides `alg` and `typ`).
const STRING_MEMBERS: [&str; 3] = ["kid", "cty", "nonce"];

/// What the verifier is configured with.
pub struct Rules<'a> {
    /// The clock, a whole second.
    pub now: u64,
    pub audience: &'a str,
    /// The user ids, and each user's public key (PKCS#1 DER, as `UnparsedPublicKey`
    /// takes RSA keys).
    pub users: &'a [(&'a str, Vec<u8>)],
    pub max_token_length: usize,
}

/// An accepted token: the user (index), `iat` and `exp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub user: usize,
    pub iat: u64,
    pub exp: u64,
}

impl Rules<'_> {
    /// Whether `token` (what follows `Bearer `) must be accepted, and as what.
    pub fn accepts(&self, token: &str) -> Option<Accepted> {
        if token.len() > self.max_token_length {
            return None;
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let signing_input = &token[..header.len() + 1 + payload.len()];
        let header = object(&URL_SAFE_NO_PAD.decode(header).ok()?)?;
        let claims = object(&URL_SAFE_NO_PAD.decode(payload).ok()?)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;

        // The header: nothing that carries a key, registered members typed, no
        // crit, typ JWT in any case, alg RS256 or PS256.
        if header.iter().any(|(name, value)| {
            KEY_MEMBERS.contains(&name.as_str())
                || (STRING_MEMBERS.contains(&name.as_str()) && !value.is_string())
        }) {
            return None;
        }
        if find(&header, "crit").is_some() {
            return None;
        }
        match find(&header, "typ") {
            None => {}
            Some(Value::String(typ)) if typ.eq_ignore_ascii_case("JWT") => {}
            Some(_) => return None,
        }
        let params: &'static dyn signature::VerificationAlgorithm = match find(&header, "alg")? {
            Value::String(alg) if alg == "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
            Value::String(alg) if alg == "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
            _ => return None,
        };

        // The claims: no name Go would read as a registered claim without being it.
        if claims
            .iter()
            .any(|(name, _)| REGISTERED.iter().any(|claim| go_reads_as(name, claim)))
        {
            return None;
        }
        let audience_ok = match find(&claims, "aud")? {
            Value::String(aud) => aud == self.audience,
            Value::Array(items) => {
                items.iter().all(Value::is_string) && items.iter().any(|aud| aud == self.audience)
            }
            _ => false,
        };
        if !audience_ok {
            return None;
        }
        let exp = seconds(find(&claims, "exp")?)?;
        let iat = seconds(find(&claims, "iat")?)?;
        // exp after now + 1 s; iat (0 is none) within [now - 1 h, now + 1 s].
        if exp <= self.now + 1 || iat == 0 || !(self.now - 3600..=self.now + 1).contains(&iat) {
            return None;
        }
        if let Some(nbf) = find(&claims, "nbf")
            && seconds(nbf)? > self.now + 1
        {
            return None;
        }
        let (Some(Value::String(iss)), Some(Value::String(sub))) =
            (find(&claims, "iss"), find(&claims, "sub"))
        else {
            return None;
        };
        if iss != sub {
            return None;
        }
        let user = self.users.iter().position(|(id, _)| id == iss)?;
        UnparsedPublicKey::new(params, &self.users[user].1)
            .verify(signing_input.as_bytes(), &signature)
            .ok()?;
        Some(Accepted { user, iat, exp })
    }
}

/// Whether Go's case-insensitive JSON decoder reads a member named `name` as the
/// claim `claim` although the names differ: ASCII letters in any case, and the four
/// non-ASCII letters Go folds to ASCII ones (long s, Kelvin sign, dotless i, dotted
/// capital I).
pub fn go_reads_as(name: &str, claim: &str) -> bool {
    if name == claim || name.chars().count() != claim.len() {
        return false;
    }
    name.chars().zip(claim.chars()).all(|(a, b)| {
        a.eq_ignore_ascii_case(&b)
            || matches!(
                (a, b),
                ('\u{017F}', 's') | ('\u{212A}', 'k') | ('\u{0131}', 'i') | ('\u{0130}', 'i')
            )
    })
}

fn find<'m>(members: &'m [(String, Value)], name: &str) -> Option<&'m Value> {
    members.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

/// Whole seconds of a number in 0..=9999-12-31 (a fraction cut off).
pub fn seconds(value: &Value) -> Option<u64> {
    let Value::Number(number) = value else {
        return None;
    };
    if let Some(whole) = number.as_u64() {
        return (whole <= MAX_TIME).then_some(whole);
    }
    if number.is_i64() {
        return None;
    }
    let float = number.as_f64()?;
    (float >= 0.0 && float.trunc() <= MAX_TIME as f64).then(|| float.trunc() as u64)
}

/// One JSON object (UTF-8, nothing after it) with distinct member names in every
/// object at any depth, nested at most [`MAX_DEPTH`] levels; its members in order.
pub fn object(bytes: &[u8]) -> Option<Vec<(String, Value)>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut de = serde_json::Deserializer::from_str(text);
    let tree = de.deserialize_any(TreeVisitor).ok()?;
    de.end().ok()?;
    if tree.depth() > MAX_DEPTH || !tree.distinct_names() {
        return None;
    }
    match tree {
        Tree::Object(members) => Some(
            members
                .into_iter()
                .map(|(name, tree)| (name, tree.value()))
                .collect(),
        ),
        _ => None,
    }
}

/// A JSON value that keeps repeated member names.
enum Tree {
    Leaf(Value),
    Array(Vec<Tree>),
    Object(Vec<(String, Tree)>),
}

impl Tree {
    fn depth(&self) -> usize {
        match self {
            Tree::Leaf(_) => 0,
            Tree::Array(items) => 1 + items.iter().map(Tree::depth).max().unwrap_or(0),
            Tree::Object(members) => 1 + members.iter().map(|(_, t)| t.depth()).max().unwrap_or(0),
        }
    }

    fn distinct_names(&self) -> bool {
        match self {
            Tree::Leaf(_) => true,
            Tree::Array(items) => items.iter().all(Tree::distinct_names),
            Tree::Object(members) => {
                let mut names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
                names.sort_unstable();
                names.windows(2).all(|pair| pair[0] != pair[1])
                    && members.iter().all(|(_, t)| t.distinct_names())
            }
        }
    }

    fn value(self) -> Value {
        match self {
            Tree::Leaf(value) => value,
            Tree::Array(items) => Value::Array(items.into_iter().map(Tree::value).collect()),
            Tree::Object(members) => Value::Object(
                members
                    .into_iter()
                    .map(|(name, tree)| (name, tree.value()))
                    .collect(),
            ),
        }
    }
}

struct TreeVisitor;

impl<'de> serde::de::DeserializeSeed<'de> for TreeVisitor {
    type Value = Tree;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Tree, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Tree, E> {
        Ok(Tree::Leaf(Value::from(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Tree, E> {
        Ok(Tree::Leaf(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Tree, E> {
        Ok(Tree::Leaf(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Tree, E> {
        Ok(Tree::Leaf(Value::from(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Tree, E> {
        Ok(Tree::Leaf(Value::from(v)))
    }
    fn visit_unit<E>(self) -> Result<Tree, E> {
        Ok(Tree::Leaf(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(TreeVisitor)? {
            items.push(item);
        }
        Ok(Tree::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut members = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            members.push((name, map.next_value_seed(TreeVisitor)?));
        }
        Ok(Tree::Object(members))
    }
}
