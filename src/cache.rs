//! The verified-token cache: tokens that passed every check, keyed by the whole
//! token, so a repeated token skips the RSA operation.
//!
//! Each registry snapshot owns its own cache, so a reload (a removed user, a replaced
//! key) starts from an empty one and nothing verified against old keys is served.
//! A hit still re-checks `exp`, `iat`, `nbf` and the key's validity window against
//! the clock: all of them together make one window of time, worked out when the token
//! is stored, so a hit compares the clock with two numbers.
//!
//! Reads are lock-free (`papaya`), so threads never wait on each other. The cache is
//! bounded in entries and in bytes; a full cache evicts with the second-chance
//! (CLOCK) policy, a constant amount of work per insert on average whatever was
//! inserted before: the hand passes over the slots of tokens that were hit since it
//! last passed them (clearing their flag) and reuses the first slot whose token was
//! not. The flags sit in one array beside the map, so the hand reads no entry, and an
//! evicted key is found by its own allocation, so evicting compares no bytes. A
//! stream of tokens used once (a caller minting a new token per request) therefore
//! pushes out its own entries before the ones in use. Inserts, which follow an RSA
//! verification, take one short lock; hits do not. A key is hashed (foldhash, with a
//! seed of the cache's own) and compared whole.
//!
//! In front of it, each thread keeps the last few tokens this cache answered for
//! it ([`local`]), so that a token used again and again on one thread needs no
//! guard on the map. Those few per thread come on top of the limits. Holds no
//! checks of its own: `verify` decides what is stored.

use std::{
    hash::Hasher,
    ops::Range,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

pub(crate) mod local;

use crate::{key::Validity, user::SystemUser};

/// A token that passed every check: its verdict, and what a hit must re-check.
#[derive(Debug, Clone)]
pub(crate) struct CachedToken {
    /// The verdict, without a request context.
    pub user: SystemUser,
    pub validity: Option<Validity>,
    pub not_before: Option<u64>,
    pub issued_at: u64,
    pub expires_at: u64,
    /// The clock readings (nanoseconds since the epoch) at which every time check
    /// passes; outside it, the checks run again to name the one that fails.
    pub window: Range<i128>,
}

/// Whether the token cache answered a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheUse {
    /// The cache held the token.
    Hit,
    /// The cache was asked and did not hold it.
    Miss,
    /// The cache is off, or the token was refused before it was asked.
    Skipped,
}

/// How much the cache may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheLimits {
    /// Tokens at most.
    pub entries: usize,
    /// Bytes at most, counting each token's length and [`ENTRY_OVERHEAD`].
    pub bytes: usize,
}

/// What one entry costs beside its token's bytes: the entry, the map's node and the
/// clock's slot, rounded up.
pub(crate) const ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>() + 64;

/// A bounded, lock-free map from whole tokens to their verified result.
pub(crate) struct TokenCache {
    /// This cache's own id, never 0 and never given to another cache of this
    /// process: what the threads' own caches ([`local`]) mark their entries with.
    id: u64,
    map: papaya::HashMap<Key, Entry, foldhash::fast::RandomState>,
    limits: CacheLimits,
    /// One flag per slot of the clock: the slot's token was hit since it was stored
    /// or since the hand last passed it. Set by readers, without the lock.
    referenced: Box<[AtomicBool]>,
    /// The clock's slots and hand, and the bytes held; changed only under this lock,
    /// as is the set of keys in `map`.
    clock: Mutex<Clock>,
}

/// A cached token's bytes: hashed and compared as bytes, so that a lookup by the
/// bytes of a request finds it; two keys of one allocation are equal at once, so
/// that evicting a slot's own key compares no bytes.
#[derive(Clone)]
struct Key(Arc<[u8]>);

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl std::borrow::Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

struct Entry {
    token: CachedToken,
    /// The clock slot that holds the key.
    slot: usize,
}

/// The second-chance clock: a ring of slots, one per entry the cache may hold.
struct Clock {
    slots: Box<[Option<Key>]>,
    hand: usize,
    bytes: usize,
}

impl Clock {
    fn advance(&mut self) {
        self.hand = (self.hand + 1) % self.slots.len();
    }
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.map.len())
            .field("limits", &self.limits)
            .finish()
    }
}

impl TokenCache {
    /// An empty cache within `limits`.
    pub fn new(limits: CacheLimits) -> TokenCache {
        /// The id of the next cache made.
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let slots = limits.entries.max(1);
        TokenCache {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            map: papaya::HashMap::builder()
                .hasher(foldhash::fast::RandomState::default())
                .capacity(limits.entries.min(1024))
                .build(),
            limits,
            referenced: (0..slots).map(|_| AtomicBool::new(false)).collect(),
            clock: Mutex::new(Clock {
                slots: (0..slots).map(|_| None).collect(),
                hand: 0,
                bytes: 0,
            }),
        }
    }

    /// This cache's id (see [`local`]).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Runs `check` on the cached result for exactly `token`, if there is one, and
    /// hands the entry to this thread's own cache ([`local`]).
    /// (Bytes, so the layer can look a token up before reading the header as text:
    /// equal bytes are the token that passed every check.)
    pub fn get<T>(&self, token: &[u8], check: impl FnOnce(&CachedToken) -> T) -> Option<T> {
        self.map.pin().get_key_value(token).map(|(key, entry)| {
            local::remember(self.id, key, &entry.token);
            // A load first: a hot slot's flag is already set, and its cache line
            // stays shared between the threads that read it. (An entry evicted
            // meanwhile may mark its slot's next token: that one only gets a
            // second chance.)
            let flag = &self.referenced[entry.slot];
            if !flag.load(Ordering::Relaxed) {
                flag.store(true, Ordering::Relaxed);
            }
            check(&entry.token)
        })
    }

    /// Stores a verified token in the slot under the clock's hand, evicting as it
    /// goes until the token fits. A token longer than the byte limit itself is not
    /// stored.
    pub fn insert(&self, token: &[u8], value: CachedToken) {
        let cost = token.len() + ENTRY_OVERHEAD;
        if cost > self.limits.bytes {
            return;
        }
        let map = self.map.pin();
        let mut clock = self.clock.lock().unwrap_or_else(PoisonError::into_inner);
        if map.contains_key(token) {
            return;
        }
        // Each slot is spared at most once per insert, so the work is bounded even
        // while other threads keep hitting every entry; every step either spares,
        // evicts, or passes an empty slot, and with nothing left the token fits.
        let mut spares = clock.slots.len();
        let slot = loop {
            let hand = clock.hand;
            if let Some(key) = &clock.slots[hand] {
                // Second chance: one that was hit since the hand passed stays.
                if spares > 0 && self.referenced[hand].swap(false, Ordering::Relaxed) {
                    spares -= 1;
                    clock.advance();
                    continue;
                }
                map.remove(key);
                clock.bytes -= key.0.len() + ENTRY_OVERHEAD;
                clock.slots[hand] = None;
            }
            if clock.bytes + cost <= self.limits.bytes {
                break hand;
            }
            clock.advance();
        };
        let key = Key(Arc::from(token));
        self.referenced[slot].store(false, Ordering::Relaxed);
        map.insert(key.clone(), Entry { token: value, slot });
        clock.slots[slot] = Some(key);
        clock.bytes += cost;
        clock.advance();
    }

    /// How many tokens are cached.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// How many bytes the cached tokens count for (see [`CacheLimits::bytes`]).
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.clock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached() -> CachedToken {
        CachedToken {
            user: SystemUser::new(
                Arc::new(crate::user::Identity {
                    id: "u".into(),
                    memberships: Box::new([]),
                }),
                0,
                0,
            ),
            validity: None,
            not_before: None,
            issued_at: 0,
            expires_at: 0,
            window: 0..1,
        }
    }

    fn token(i: usize) -> Vec<u8> {
        format!("token-{i:08}").into_bytes()
    }

    #[test]
    fn a_full_cache_evicts_one_at_a_time_and_keeps_the_tokens_in_use() {
        let cache = TokenCache::new(CacheLimits {
            entries: 100,
            bytes: usize::MAX,
        });
        for i in 0..100 {
            cache.insert(&token(i), cached());
        }
        // Ten tokens in use, then a stream of tokens used once.
        for i in 0..10 {
            assert!(cache.get(&token(i), |_| ()).is_some());
        }
        for i in 100..1_000 {
            cache.insert(&token(i), cached());
            assert_eq!(cache.len(), 100, "after inserting {i}");
            for hot in 0..10 {
                assert!(cache.get(&token(hot), |_| ()).is_some(), "{hot} after {i}");
            }
        }
        assert!(cache.get(&token(998), |_| ()).is_some());
        assert!(cache.get(&token(50), |_| ()).is_none());
    }

    #[test]
    fn the_byte_limit_holds_whatever_the_token_lengths() {
        let limit = 20 * (ENTRY_OVERHEAD + 100);
        let cache = TokenCache::new(CacheLimits {
            entries: 1_000,
            bytes: limit,
        });
        for i in 0..500 {
            let token = vec![b'a' + (i % 26) as u8; 10 + (i * 37) % 400];
            let mut token = token;
            token.extend_from_slice(&i.to_be_bytes());
            cache.insert(&token, cached());
            assert!(cache.bytes() <= limit, "{} bytes after {i}", cache.bytes());
        }
        assert!(cache.len() >= 10, "{} entries", cache.len());
        // A token over the whole limit is not stored.
        let huge = vec![b'h'; limit];
        cache.insert(&huge, cached());
        assert!(cache.get(&huge, |_| ()).is_none());
    }

    #[test]
    fn inserting_a_token_twice_keeps_one_entry() {
        let cache = TokenCache::new(CacheLimits {
            entries: 10,
            bytes: usize::MAX,
        });
        cache.insert(&token(1), cached());
        cache.insert(&token(1), cached());
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.bytes(), token(1).len() + ENTRY_OVERHEAD);
    }
}
