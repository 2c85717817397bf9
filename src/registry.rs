//! The key registry: an immutable snapshot of every system user's key and
//! memberships and of the audiences tokens must carry, loaded whole from a
//! [`Config`] and swapped in whole, with the cache of the tokens verified against it.
//!
//! Holds what a generation knows; reading files is `config`'s, parsing keys is
//! `key`'s, and when to load a new generation is `reload`'s.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use arc_swap::{ArcSwap, Guard};

use crate::{
    cache::{CacheLimits, TokenCache},
    config::{Config, KeySource, MAX_KEY_BYTES, read_file},
    error::{ConfigError, KeyOrigin, shown},
    key::PublicKey,
    user::Identity,
};

/// The registry in place, swapped whole by a reload, and the id of its token cache,
/// which each thread's own cache ([`cache::local`](crate::cache::local)) reads
/// without taking a guard on the registry.
pub(crate) struct InPlace {
    registry: ArcSwap<Registry>,
    /// The id of `registry`'s cache, 0 for none. Set before the registry is
    /// stored: whoever sees the new registry then also sees its cache's id, so no
    /// thread's entry from an older cache answers once the new registry is seen.
    cache_id: AtomicU64,
}

impl InPlace {
    pub fn new(registry: Arc<Registry>) -> InPlace {
        InPlace {
            cache_id: AtomicU64::new(cache_id(&registry)),
            registry: ArcSwap::new(registry),
        }
    }

    /// The registry in place (a cheap guard, for reading it now).
    pub fn load(&self) -> Guard<Arc<Registry>> {
        self.registry.load()
    }

    /// The registry in place, to keep.
    pub fn load_full(&self) -> Arc<Registry> {
        self.registry.load_full()
    }

    /// Puts `registry` in place.
    pub fn store(&self, registry: Arc<Registry>) {
        self.cache_id.store(cache_id(&registry), Ordering::SeqCst);
        self.registry.store(registry);
    }

    /// The id of the token cache in place, 0 for none.
    pub fn cache_id(&self) -> u64 {
        self.cache_id.load(Ordering::Acquire)
    }
}

/// The id of `registry`'s token cache, 0 for none.
fn cache_id(registry: &Registry) -> u64 {
    registry.cache().map_or(0, TokenCache::id)
}

/// One system user as the verifier sees it.
#[derive(Debug)]
pub(crate) struct UserEntry {
    pub identity: Arc<Identity>,
    pub key: Arc<PublicKey>,
    /// The text the key was read from, so an unchanged key is not parsed again.
    pub pem: Arc<[u8]>,
}

/// Every user's key, keyed by user id, the expected audiences, and the cache of
/// tokens verified against them. Never changed once built.
#[derive(Debug)]
pub(crate) struct Registry {
    generation: u64,
    /// The audiences a token may carry, the external URL first.
    audiences: Box<[Arc<str>]>,
    /// Keyed with foldhash: a lookup per uncached request, by the token's `iss`.
    users: HashMap<Box<str>, UserEntry, foldhash::fast::RandomState>,
    cache: Option<TokenCache>,
}

impl Registry {
    /// Reads every user's key named by `config`. A key that cannot be loaded is
    /// reported; its user keeps the key it has in `previous`, if any, and is left
    /// out otherwise. `cache` is the token cache's size, if it is on.
    pub fn load(
        config: &Config,
        audiences: Box<[Arc<str>]>,
        previous: Option<&Registry>,
        generation: u64,
        cache: Option<CacheLimits>,
    ) -> (Registry, Vec<ConfigError>) {
        let mut users = HashMap::with_capacity_and_hasher(config.users().len(), Default::default());
        let mut problems = Vec::new();
        for user in config.users() {
            let last_good = previous.and_then(|p| p.get(user.id()));
            let (key, pem) = match load_key(user.id(), user.key(), last_good) {
                Ok(loaded) => loaded,
                Err(problem) => {
                    problems.push(problem);
                    match last_good {
                        Some(last_good) => (last_good.key.clone(), last_good.pem.clone()),
                        None => continue,
                    }
                }
            };
            let identity = Arc::new(Identity {
                id: user.id().into(),
                memberships: user.memberships().into(),
            });
            users.insert(user.id().into(), UserEntry { identity, key, pem });
        }
        let registry = Registry {
            generation,
            audiences,
            users,
            cache: cache.map(TokenCache::new),
        };
        (registry, problems)
    }

    /// Whether `other` has the same audiences, and the same users with the same
    /// keys and memberships.
    pub fn same_as(&self, other: &Registry) -> bool {
        self.audiences == other.audiences
            && self.users.len() == other.users.len()
            && self.users.iter().all(|(id, entry)| {
                other.users.get(id).is_some_and(|theirs| {
                    entry.identity == theirs.identity
                        && entry.key.fingerprint() == theirs.key.fingerprint()
                        && entry.key.validity() == theirs.key.validity()
                })
            })
    }

    /// The audiences a token may carry, the external URL first.
    pub fn audiences(&self) -> &[Arc<str>] {
        &self.audiences
    }

    /// The cache of tokens verified against this registry, when caching is on.
    pub fn cache(&self) -> Option<&TokenCache> {
        self.cache.as_ref()
    }

    /// The user named `id`, compared exactly.
    pub fn get(&self, id: &str) -> Option<&UserEntry> {
        self.users.get(id)
    }

    /// Counts up by one with every registry swapped in.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The users, in no particular order.
    pub fn users(&self) -> impl Iterator<Item = &UserEntry> {
        self.users.values()
    }
}

/// Where the expected audiences come from: the builder's audience, or ZITADEL's
/// `BuildHTTP(ExternalDomain, ExternalPort, ExternalSecure)` from the configuration
/// as it is at each load; then the builder's additional audiences.
#[derive(Debug, Clone)]
pub(crate) struct AudienceRule {
    pub fixed: Option<String>,
    pub additional: Vec<String>,
}

impl AudienceRule {
    /// The audiences for `config`; an audience that is empty or not visible ASCII is
    /// an error.
    pub fn audiences(&self, config: &Config) -> Result<Box<[Arc<str>]>, ConfigError> {
        let primary = self.fixed.clone().unwrap_or_else(|| config.audience());
        std::iter::once(primary)
            .chain(self.additional.iter().cloned())
            .map(|audience| check_audience(&audience).map(|()| Arc::from(audience)))
            .collect()
    }
}

fn check_audience(audience: &str) -> Result<(), ConfigError> {
    if audience.is_empty() {
        return Err(ConfigError::InvalidAudience(
            "an audience is empty".to_owned(),
        ));
    }
    if !audience.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ConfigError::InvalidAudience(format!(
            "{audience:?} must be visible ASCII without spaces"
        )));
    }
    Ok(())
}

/// Reads a user's key; the last good one is reused when its text is unchanged.
fn load_key(
    user: &str,
    source: &KeySource,
    last_good: Option<&UserEntry>,
) -> Result<(Arc<PublicKey>, Arc<[u8]>), ConfigError> {
    let (text, origin) = match source {
        KeySource::Path(path) => {
            let text = read_file(path, MAX_KEY_BYTES).map_err(|source| ConfigError::KeyFile {
                user: user.to_owned(),
                path: path.clone(),
                source,
            })?;
            (std::borrow::Cow::Owned(text), KeyOrigin::Path(path.clone()))
        }
        KeySource::Data(data) => (
            std::borrow::Cow::Borrowed(data.as_slice()),
            KeyOrigin::KeyData,
        ),
    };
    if let Some(last_good) = last_good.filter(|entry| *entry.pem == *text) {
        return Ok((last_good.key.clone(), last_good.pem.clone()));
    }
    let key = PublicKey::from_pem(&text).map_err(|source| ConfigError::Key {
        user: user.to_owned(),
        origin: origin.clone(),
        source,
    })?;
    if !key.format().zitadel_reads_it() {
        tracing::warn!(
            target: "zitadel_system_auth",
            "system user {}, {origin}: the key is PKCS#1, which this crate reads but ZITADEL cannot; \
             convert it with `openssl rsa -RSAPublicKey_in -in key.pub -pubout -out key.pkix.pub`",
            shown(user)
        );
    }
    Ok((Arc::new(key), Arc::from(text.into_owned())))
}
