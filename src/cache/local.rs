//! Each thread's own few verified tokens, in front of the registry's shared cache
//! ([`Speedup::ThreadCache`]).
//!
//! A thread keeps the last [`SLOTS`] tokens the shared cache answered for it, each
//! marked with the id of the [`TokenCache`](super::TokenCache) that held it. A
//! lookup names the id of the cache in place now ([`InPlace::cache_id`]), and only
//! an entry with that id answers: every registry has a cache of its own, with a new
//! id, so once a reload has put a new registry in place no entry made before it
//! answers again, on any thread. Such a hit needs no registry guard and no map
//! guard, which is what it saves; it still compares every byte of the token, and
//! the verifier still checks its time window, as for a hit in the shared cache.
//! The thread keeps its own copy of the user's identity, so the `SystemUser` a hit
//! hands out counts a reference that no other thread writes.
//!
//! A thread that sees more than [`SLOTS`] tokens in turn gains nothing from it,
//! and pays for each hand-over (a few reference counts and a copy of the identity)
//! on every hit in the shared cache. A service of system users sees a few users,
//! each with one token at a time.
//!
//! [`InPlace::cache_id`]: crate::registry::InPlace::cache_id

use std::cell::RefCell;

use super::{CachedToken, Key};
use crate::speedup::{self, Speedup};

/// How many tokens each thread keeps.
const SLOTS: usize = 4;

/// One token a thread keeps, with the id of the cache that answered it.
struct Slot {
    cache_id: u64,
    /// The token's last bytes, compared before the whole token: the tokens of one
    /// user share their first hundred bytes or so, and two signatures end alike
    /// only by chance.
    tail: u64,
    key: Key,
    token: CachedToken,
}

/// The last eight bytes of `token` (fewer for a shorter one), as one number.
fn tail(token: &[u8]) -> u64 {
    let mut last = [0; 8];
    let n = token.len().min(8);
    last[8 - n..].copy_from_slice(&token[token.len() - n..]);
    u64::from_ne_bytes(last)
}

struct Slots {
    slots: [Option<Slot>; SLOTS],
    /// The slot the next token goes into (the oldest).
    next: usize,
}

thread_local! {
    static SLOTS_OF_THIS_THREAD: RefCell<Slots> = const {
        RefCell::new(Slots { slots: [const { None }; SLOTS], next: 0 })
    };
}

/// Runs `check` on this thread's entry for exactly `token` from the cache
/// `cache_id`, if there is one. `cache_id` 0 (no cache in place) finds nothing.
pub(crate) fn get<T>(
    cache_id: u64,
    token: &[u8],
    check: impl FnOnce(&CachedToken) -> T,
) -> Option<T> {
    if cache_id == 0 || !speedup::on(Speedup::ThreadCache) {
        return None;
    }
    let tail = tail(token);
    SLOTS_OF_THIS_THREAD
        .try_with(|slots| {
            let slots = slots.try_borrow().ok()?;
            let slot = slots.slots.iter().flatten().find(|slot| {
                slot.cache_id == cache_id && slot.tail == tail && *slot.key.0 == *token
            })?;
            Some(check(&slot.token))
        })
        .ok()
        .flatten()
}

/// Keeps `token` (answered by the cache `cache_id`) on this thread, in place of
/// the oldest entry or of an older one of the same token.
pub(super) fn remember(cache_id: u64, key: &Key, token: &CachedToken) {
    if !speedup::on(Speedup::ThreadCache) {
        return;
    }
    // A thread being torn down keeps nothing.
    let tail = tail(&key.0);
    let _ = SLOTS_OF_THIS_THREAD.try_with(|slots| {
        let Ok(mut slots) = slots.try_borrow_mut() else {
            return;
        };
        let index = slots
            .slots
            .iter()
            .position(|slot| {
                slot.as_ref()
                    .is_some_and(|slot| slot.tail == tail && slot.key == *key)
            })
            .unwrap_or_else(|| {
                let next = slots.next;
                slots.next = (next + 1) % SLOTS;
                next
            });
        slots.slots[index] = Some(Slot {
            cache_id,
            tail,
            key: key.clone(),
            token: CachedToken {
                user: token.user.with_own_identity(),
                validity: token.validity,
                not_before: token.not_before,
                issued_at: token.issued_at,
                expires_at: token.expires_at,
                window: token.window.clone(),
            },
        });
    });
}
