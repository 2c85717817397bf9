//! ZITADEL's config text read the way ZITADEL's loader (viper and mapstructure)
//! reads it: the four settings this crate uses, `SystemAPIUsers` in its three
//! shapes, field names in any case, `Roles` as a list or one comma-separated string.
//!
//! Holds the deserialisers only: what the values mean (paths, defaults, the
//! audience) is the parent module's. Errors get their line from serde_yaml; a
//! warning about a field (unknown, or read and never enforced) finds its line by
//! reading the text once more and stopping at that field.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    fmt,
    path::PathBuf,
};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{
    KeySource,
    scalar::{Key, Roles, Weak, decode_key_data, set_once, without_values},
};
use crate::{
    error::shown,
    user::{MemberType, Membership},
};

/// The settings read from the text, before defaults and paths are applied.
#[derive(Default)]
pub(super) struct RawConfig {
    pub domain: Option<String>,
    pub port: Option<u16>,
    pub secure: Option<bool>,
    pub users: Option<Vec<RawUser>>,
}

/// One entry of `SystemAPIUsers`.
pub(super) struct RawUser {
    /// The id tokens carry: lowercased where ZITADEL lowercases it.
    pub id: String,
    /// The id as written, when lowercasing changed it.
    pub written_id: Option<String>,
    /// `Path` when given (as ZITADEL reads it first), else the decoded `KeyData`.
    pub key: KeySource,
    pub memberships: Option<Vec<Membership>>,
}

/// What a parse found: the settings, and warnings (each with its line where the
/// text has one).
pub(super) struct Parsed<T> {
    pub value: T,
    pub warnings: Vec<String>,
}

/// How many field warnings are given a line (each costs one more read of the text).
const LOCATED_WARNINGS: usize = 16;

/// Parses ZITADEL's runtime config text.
pub(super) fn parse_config(text: &str) -> Result<Parsed<RawConfig>, String> {
    let notes = Notes::default();
    let value = read_config(text, &notes).map_err(|e| without_values(&e.to_string()))?;
    let warnings = notes.finish(|field| {
        let finder = Notes {
            stop_at: Some(field),
            ..Notes::default()
        };
        match read_config(text, &finder) {
            Err(error) if finder.stopped.get() => error.location().map(|at| at.line()),
            _ => None,
        }
    });
    Ok(Parsed { value, warnings })
}

fn read_config(text: &str, notes: &Notes) -> Result<RawConfig, serde_yaml::Error> {
    ConfigSeed(notes).deserialize(serde_yaml::Deserializer::from_str(text))
}

/// Parses the JSON form of `SystemAPIUsers` (`ZITADEL_SYSTEMAPIUSERS`): ids keep
/// their case.
pub(super) fn parse_users_json(json: &str) -> Result<Parsed<Vec<RawUser>>, String> {
    let notes = Notes::default();
    let value = users_from_json(json, &notes)?;
    Ok(Parsed {
        value,
        warnings: notes.finish(|_| None),
    })
}

fn users_from_json(json: &str, notes: &Notes) -> Result<Vec<RawUser>, String> {
    let mut de = serde_json::Deserializer::from_str(json);
    let users = UsersSeed {
        notes,
        lowercase: false,
    }
    .deserialize(&mut de)
    .map_err(|e| without_values(&e.to_string()))?;
    de.end().map_err(|e| without_values(&e.to_string()))?;
    Ok(users)
}

/// Warnings gathered while reading, in the order of the text.
#[derive(Default)]
struct Notes {
    warnings: RefCell<Vec<(String, Option<usize>)>>,
    /// How many field warnings were noted so far.
    fields: Cell<usize>,
    /// Stop with an error at this field warning, to learn its line.
    stop_at: Option<usize>,
    stopped: Cell<bool>,
}

impl Notes {
    fn warn(&self, message: String) {
        self.warnings.borrow_mut().push((message, None));
    }

    /// Skips the value of the field whose key was just read, and notes a warning
    /// about that field. When this is the field whose line is wanted, the value's
    /// deserialisation fails instead, so the error carries the value's position.
    fn skip_field<'de, A: MapAccess<'de>>(
        &self,
        map: &mut A,
        message: String,
    ) -> Result<(), A::Error> {
        let index = self.fields.get();
        self.fields.set(index + 1);
        if self.stop_at == Some(index) {
            self.stopped.set(true);
            return map.next_value_seed(StopHere);
        }
        map.next_value::<IgnoredAny>()?;
        self.warnings.borrow_mut().push((message, Some(index)));
        Ok(())
    }

    /// The warnings, each field warning with the line `line_of` finds for it.
    fn finish(self, line_of: impl Fn(usize) -> Option<usize>) -> Vec<String> {
        self.warnings
            .into_inner()
            .into_iter()
            .map(|(message, field)| {
                match field.filter(|&i| i < LOCATED_WARNINGS).and_then(&line_of) {
                    Some(line) => format!("line {line}: {message}"),
                    None => message,
                }
            })
            .collect()
    }
}

/// A value whose deserialisation fails wherever it is, to learn its position.
struct StopHere;

impl<'de> DeserializeSeed<'de> for StopHere {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for StopHere {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("(the position of a warning)")
    }
}

/// The nearest of `known` to an unknown field name, when one is near.
fn nearest(field: &str, known: &[&'static str]) -> Option<&'static str> {
    let field = field.to_ascii_lowercase();
    known
        .iter()
        .map(|name| {
            let distance = strsim::damerau_levenshtein(&field, &name.to_ascii_lowercase());
            (distance, *name)
        })
        .filter(|(distance, name)| *distance <= (name.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

fn unknown_field(field: &str, known: &[&'static str]) -> String {
    match nearest(field, known) {
        Some(name) => format!("unknown field {} (did you mean `{name}`?)", shown(field)),
        None => format!(
            "unknown field {} (known: {})",
            shown(field),
            known.join(", ")
        ),
    }
}

// ---- The document. ----

struct ConfigSeed<'n>(&'n Notes);

impl<'de> DeserializeSeed<'de> for ConfigSeed<'_> {
    type Value = RawConfig;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawConfig, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ConfigSeed<'_> {
    type Value = RawConfig;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("ZITADEL's runtime configuration (a mapping)")
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawConfig, E> {
        Ok(RawConfig::default())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawConfig, A::Error> {
        let mut raw = RawConfig::default();
        let (mut domain, mut port, mut secure) = (None, None, None);
        while let Some(Key(key)) = map.next_key()? {
            match key.to_ascii_lowercase().as_str() {
                "externaldomain" => set_once(&mut map, &mut domain, &"ExternalDomain")?,
                "externalport" => set_once(&mut map, &mut port, &"ExternalPort")?,
                "externalsecure" => set_once(&mut map, &mut secure, &"ExternalSecure")?,
                "systemapiusers" => {
                    if raw.users.is_some() {
                        return Err(de::Error::custom("SystemAPIUsers is given twice"));
                    }
                    raw.users = Some(map.next_value_seed(UsersSeed {
                        notes: self.0,
                        lowercase: true,
                    })?);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        raw.domain = domain.map(|Weak(v): Weak<String>| v);
        raw.port = port.map(|Weak(v): Weak<u16>| v);
        raw.secure = secure.map(|Weak(v): Weak<bool>| v);
        Ok(raw)
    }
}

/// `SystemAPIUsers` in any of its three shapes. ZITADEL's loader lowercases the keys
/// of YAML maps, so ids in the list and map forms are lowercased (`lowercase`); ids
/// inside JSON text keep their case.
struct UsersSeed<'n> {
    notes: &'n Notes,
    lowercase: bool,
}

impl<'de> DeserializeSeed<'de> for UsersSeed<'_> {
    type Value = Vec<RawUser>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<RawUser>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UsersSeed<'_> {
    type Value = Vec<RawUser>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(
            "SystemAPIUsers as a list of `user-id: {Path|KeyData}` entries, a mapping, or JSON text",
        )
    }
    fn visit_unit<E: de::Error>(self) -> Result<Vec<RawUser>, E> {
        Ok(Vec::new())
    }
    fn visit_none<E: de::Error>(self) -> Result<Vec<RawUser>, E> {
        Ok(Vec::new())
    }
    fn visit_str<E: de::Error>(self, json: &str) -> Result<Vec<RawUser>, E> {
        if json.trim().is_empty() {
            return Ok(Vec::new());
        }
        users_from_json(json, self.notes)
            .map_err(|e| E::custom(format_args!("the JSON text is invalid: {e}")))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<RawUser>, A::Error> {
        let mut users = UserMap::new(self.notes, self.lowercase);
        while seq.next_element_seed(&mut users)?.is_some() {}
        Ok(users.users)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Vec<RawUser>, A::Error> {
        let mut users = UserMap::new(self.notes, self.lowercase);
        (&mut users).visit_map(map)?;
        Ok(users.users)
    }
}

/// The users read so far; each mapping of user ids to entries adds to them (one
/// for the map shape, one per list item for the list shape).
struct UserMap<'n> {
    notes: &'n Notes,
    lowercase: bool,
    users: Vec<RawUser>,
    /// Each id read so far, and how it was written.
    seen: HashMap<String, String>,
}

impl<'n> UserMap<'n> {
    fn new(notes: &'n Notes, lowercase: bool) -> Self {
        UserMap {
            notes,
            lowercase,
            users: Vec::new(),
            seen: HashMap::new(),
        }
    }
}

impl<'de> DeserializeSeed<'de> for &mut UserMap<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for &mut UserMap<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping of system user ids to {Path|KeyData, Memberships}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(written)) = map.next_key()? {
            if written.is_empty() {
                return Err(de::Error::custom("a system user id is empty"));
            }
            let id = if self.lowercase {
                written.to_lowercase()
            } else {
                written.clone()
            };
            if let Some(before) = self.seen.insert(id.clone(), written.clone()) {
                return Err(de::Error::custom(if before == written {
                    format!("system user {} is configured twice", shown(&written))
                } else {
                    format!(
                        "system users {} and {} are one id once lowercased, as ZITADEL lowercases the ids of the list and map forms",
                        shown(&before),
                        shown(&written)
                    )
                }));
            }
            let mut user = map.next_value_seed(Entry {
                id: &id,
                notes: self.notes,
            })?;
            if id != written {
                self.notes.warn(format!(
                    "system user id {} is read as {}, as ZITADEL lowercases the ids of the list and map forms: tokens must carry iss and sub {}",
                    shown(&written),
                    shown(&id),
                    shown(&id)
                ));
                user.written_id = Some(written);
            }
            self.users.push(user);
        }
        Ok(())
    }
}

/// The fields of a user entry, as ZITADEL's struct has them.
const ENTRY_FIELDS: [&str; 5] = ["Path", "KeyData", "Memberships", "NotBefore", "NotAfter"];

/// One user's entry, which knows the user id for its messages.
struct Entry<'a> {
    id: &'a str,
    notes: &'a Notes,
}

impl<'de> DeserializeSeed<'de> for Entry<'_> {
    type Value = RawUser;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawUser, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Entry<'_> {
    type Value = RawUser;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "system user {}: a mapping with Path or KeyData",
            shown(self.id)
        )
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawUser, E> {
        Err(E::custom(format_args!(
            "system user {}: neither Path nor KeyData is set",
            shown(self.id)
        )))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<RawUser, E> {
        Err(E::custom(format_args!(
            "system user {}: found a plain value where Path or KeyData belongs (did you forget `KeyData:`?)",
            shown(self.id)
        )))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawUser, A::Error> {
        let user = shown(self.id);
        let (mut path, mut key_data, mut memberships) = (None, None, None);
        let mut validity_fields = false;
        let mut unknown = Vec::new();
        while let Some(Key(field)) = map.next_key()? {
            let what = format!("system user {user}: {}", shown(&field));
            match field.to_ascii_lowercase().as_str() {
                "path" => set_once::<_, Option<String>>(&mut map, &mut path, &what)?,
                "keydata" => set_once::<_, Option<String>>(&mut map, &mut key_data, &what)?,
                "memberships" => {
                    if memberships.is_some() {
                        return Err(de::Error::custom(format_args!("{what} is given twice")));
                    }
                    memberships = Some(map.next_value_seed(MembershipsSeed {
                        user: &user,
                        notes: self.notes,
                    })?);
                }
                "notbefore" | "notafter" if !validity_fields => {
                    validity_fields = true;
                    self.notes.skip_field(&mut map, format!(
                        "system user {user}: {} is read by ZITADEL but enforced by neither ZITADEL nor this crate; a certificate's own NotBefore and NotAfter are what count",
                        shown(&field)
                    ))?;
                }
                "notbefore" | "notafter" => {
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    let message = unknown_field(&field, &ENTRY_FIELDS);
                    self.notes.skip_field(
                        &mut map,
                        format!("system user {user}: {message}, ignored as ZITADEL ignores it"),
                    )?;
                    unknown.push(message);
                }
            }
        }
        let path = path.flatten().filter(|p| !p.is_empty());
        let key_data = key_data.flatten();
        if path.is_some() && key_data.is_some() {
            self.notes.warn(format!(
                "system user {user} has both Path and KeyData; Path is used, as ZITADEL does"
            ));
        }
        let key = match (path, key_data) {
            (Some(path), _) => KeySource::Path(PathBuf::from(path)),
            (None, Some(text)) => KeySource::Data(decode_key_data(&text).map_err(|e| {
                de::Error::custom(format_args!("system user {user}, KeyData: {e}"))
            })?),
            (None, None) => {
                let mut message = format!("system user {user}: neither Path nor KeyData is set");
                if !unknown.is_empty() {
                    message.push_str(&format!(" ({})", unknown.join("; ")));
                }
                return Err(de::Error::custom(message));
            }
        };
        Ok(RawUser {
            id: self.id.to_owned(),
            written_id: None,
            key,
            memberships,
        })
    }
}

/// `Memberships`: present means a list of at least one (an empty or null one is
/// refused, since a half-written file must never widen a user's rights).
struct MembershipsSeed<'a> {
    user: &'a str,
    notes: &'a Notes,
}

impl<'de> DeserializeSeed<'de> for MembershipsSeed<'_> {
    type Value = Vec<Membership>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Membership>, D::Error> {
        d.deserialize_any(self)
    }
}

impl MembershipsSeed<'_> {
    fn empty<E: de::Error>(&self) -> E {
        E::custom(format_args!(
            "system user {}: Memberships is empty; remove the field for ZITADEL's default (System with SYSTEM_OWNER), or list the memberships",
            self.user
        ))
    }
}

impl<'de> Visitor<'de> for MembershipsSeed<'_> {
    type Value = Vec<Membership>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "system user {}: Memberships as a list", self.user)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Vec<Membership>, E> {
        Err(self.empty())
    }
    fn visit_none<E: de::Error>(self) -> Result<Vec<Membership>, E> {
        Err(self.empty())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Membership>, A::Error> {
        let mut memberships = Vec::new();
        while let Some(membership) = seq.next_element_seed(MembershipSeed {
            user: self.user,
            number: memberships.len() + 1,
            notes: self.notes,
        })? {
            memberships.push(membership);
        }
        if memberships.is_empty() {
            return Err(self.empty());
        }
        Ok(memberships)
    }
}

/// The fields of a membership, as ZITADEL's struct has them.
const MEMBERSHIP_FIELDS: [&str; 4] = ["MemberType", "Roles", "AggregateID", "ObjectID"];

/// One membership, which knows its user and place for its messages.
struct MembershipSeed<'a> {
    user: &'a str,
    number: usize,
    notes: &'a Notes,
}

impl<'de> DeserializeSeed<'de> for MembershipSeed<'_> {
    type Value = Membership;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Membership, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MembershipSeed<'_> {
    type Value = Membership;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a membership {MemberType, Roles, AggregateID}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Membership, A::Error> {
        let place = format!("system user {}, membership {}", self.user, self.number);
        let (mut kind, mut roles, mut aggregate, mut object) = (None, None, None, None);
        let mut unknown = Vec::new();
        while let Some(Key(field)) = map.next_key()? {
            let what = format!("{place}: {}", shown(&field));
            match field.to_ascii_lowercase().as_str() {
                "membertype" => set_once::<_, Weak<String>>(&mut map, &mut kind, &what)?,
                "roles" => set_once::<_, Option<Roles>>(&mut map, &mut roles, &what)?,
                "aggregateid" => {
                    set_once::<_, Option<Weak<String>>>(&mut map, &mut aggregate, &what)?
                }
                "objectid" => set_once::<_, Option<Weak<String>>>(&mut map, &mut object, &what)?,
                _ => {
                    let message = unknown_field(&field, &MEMBERSHIP_FIELDS);
                    self.notes.skip_field(&mut map, format!(
                        "{place}: {message}, ignored as ZITADEL ignores it (a misspelt field grants less, never more)"
                    ))?;
                    unknown.push(message);
                }
            }
        }
        let Some(Weak(kind)) = kind else {
            let mut message =
                format!("{place}: a membership needs a MemberType (System, IAM or Organization)");
            if !unknown.is_empty() {
                message.push_str(&format!(" ({})", unknown.join("; ")));
            }
            return Err(de::Error::custom(message));
        };
        let member_type = MemberType::parse(&kind).map_err(de::Error::custom)?;
        let text = |value: Option<Option<Weak<String>>>| {
            value.flatten().map(|Weak(v)| v).filter(|v| !v.is_empty())
        };
        Ok(Membership {
            member_type,
            roles: roles.flatten().map(|Roles(r)| r).unwrap_or_default(),
            aggregate_id: text(aggregate),
            object_id: text(object),
        })
    }
}
