//! The verified-token cache: tokens that passed every check, keyed by the whole
//! token, so a repeated token skips the RSA operation.
//!
//! Each registry snapshot owns its own cache, so a reload (a removed user, a replaced
//! key) starts from an empty one and nothing verified against old keys is served.
//! A hit still re-checks `exp`, `iat`, `nbf` and the key's validity window against
//! the clock: all of them together make one window of time, worked out when the token
//! is stored, so a hit compares the clock with two numbers. Reads are lock-free
//! (`papaya`), so threads never wait on each other.

use std::{
    hash::{BuildHasher, Hasher},
    ops::Range,
    sync::Arc,
};

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
    map: papaya::HashMap<Box<[u8]>, CachedToken, TailHash>,
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
                .hasher(TailHash::default())
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

/// How many bytes at the end of a token its hash reads.
const HASHED_BYTES: usize = 32;

/// Hashes a token by its length and its last [`HASHED_BYTES`] bytes: the end of its
/// RSA signature (at least 342 characters long for a token that verified), which
/// nobody without a user's private key can choose, so cached tokens spread as well
/// as by hashing every byte, at a fraction of the work. Only verified tokens are ever
/// stored, and a lookup still compares the whole token.
#[derive(Clone, Default)]
struct TailHash(foldhash::fast::RandomState);

impl BuildHasher for TailHash {
    type Hasher = TailHasher<<foldhash::fast::RandomState as BuildHasher>::Hasher>;

    fn build_hasher(&self) -> Self::Hasher {
        TailHasher(self.0.build_hasher())
    }
}

/// The hasher of [`TailHash`].
struct TailHasher<H>(H);

impl<H: Hasher> Hasher for TailHasher<H> {
    fn finish(&self) -> u64 {
        self.0.finish()
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0
            .write(&bytes[bytes.len().saturating_sub(HASHED_BYTES)..]);
    }

    fn write_usize(&mut self, length: usize) {
        self.0.write_usize(length);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_reads_the_length_and_the_tail() {
        let hash = TailHash::default();
        let token = |head: &[u8], tail: &[u8]| [head, tail].concat().into_boxed_slice();
        let tail = [b'x'; HASHED_BYTES];
        let a = token(b"header.payload.", &tail);
        let b = token(b"HEADER.PAYLOAD.", &tail);
        assert_eq!(hash.hash_one(&*a), hash.hash_one(&*b));
        assert_ne!(
            hash.hash_one(&*a),
            hash.hash_one(&*token(b"header.payload", &tail))
        );
        let mut other_tail = tail;
        other_tail[HASHED_BYTES - 1] = b'y';
        assert_ne!(
            hash.hash_one(&*a),
            hash.hash_one(&*token(b"header.payload.", &other_tail))
        );
        // Boxed and borrowed keys hash alike, so lookups by bytes find stored tokens.
        assert_eq!(hash.hash_one(&a), hash.hash_one(&*a));
    }
}
