//! The verified-token cache: tokens that passed every check, keyed by the whole
//! token, so a repeated token skips the RSA operation.
//!
//! Each registry snapshot owns its own cache, so a reload (a removed user, a replaced
//! key) starts from an empty one and nothing verified against old keys is served.
//! A hit still re-checks `exp`, `iat`, `nbf` and the key's validity window against
//! the clock: all of them together make one window of time, worked out when the token
//! is stored, so a hit compares the clock with two numbers. Reads are lock-free
//! (`papaya`), so threads never wait on each other.

use std::{ops::Range, sync::Arc};

use crate::{key::Validity, user::Identity};

/// A token that passed every check, with what a hit must re-check.
#[derive(Debug, Clone)]
pub(crate) struct CachedToken {
    pub identity: Arc<Identity>,
    pub validity: Option<Validity>,
    pub not_before: Option<u64>,
    pub issued_at: u64,
    pub expires_at: u64,
    /// The clock readings (nanoseconds since the epoch) at which every time check
    /// passes; outside it, the checks run again to name the one that fails.
    pub window: Range<i128>,
}

/// A bounded, lock-free map from whole tokens to their verified result.
pub(crate) struct TokenCache {
    map: papaya::HashMap<Box<[u8]>, CachedToken, foldhash::fast::RandomState>,
    capacity: usize,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.map.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl TokenCache {
    /// An empty cache holding at most `capacity` tokens.
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            map: papaya::HashMap::builder()
                .hasher(foldhash::fast::RandomState::default())
                .capacity(capacity.min(1024))
                .build(),
            capacity,
        }
    }

    /// Runs `check` on the cached result for exactly `token`, if there is one.
    /// (Bytes, so the layer can look a token up before reading the header as text:
    /// equal bytes are the token that passed every check.)
    pub fn get<T>(&self, token: &[u8], check: impl FnOnce(&CachedToken) -> T) -> Option<T> {
        self.map.pin().get(token).map(check)
    }

    /// Stores a verified token. When the cache is full, entries `keep` refuses are
    /// dropped first, and if that frees nothing, all of them.
    pub fn insert(&self, token: &[u8], value: CachedToken, keep: impl Fn(&CachedToken) -> bool) {
        let map = self.map.pin();
        if map.len() >= self.capacity {
            map.retain(|_, cached| keep(cached));
            if map.len() >= self.capacity {
                map.clear();
            }
        }
        map.insert(token.into(), value);
    }

    /// How many tokens are cached.
    pub fn len(&self) -> usize {
        self.map.len()
    }
}
