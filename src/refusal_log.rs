//! Refusal logging that a flood cannot turn into a full disk: at most
//! [`REFUSAL_LOGS_PER_SECOND`] lines a second per log; the refusals past that are
//! counted, and the count is logged once the next second begins.
//!
//! Holds the limit only: what a refusal's line says is decided by the module that
//! refuses (`auth` for tokens, `role` for a route's role).

use std::{
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
    time::SystemTime,
};

/// How many refusals are logged in one second at most; the rest are counted and
/// the count is logged when the next second begins, so a flood cannot fill a disk.
pub const REFUSAL_LOGS_PER_SECOND: u32 = 20;

/// One rate-limited log of refusals, with atomics only (no lock on the request
/// path).
#[derive(Debug)]
pub(crate) struct RefusalLog {
    /// What was refused, for the summary line: "more {what} than are logged".
    what: &'static str,
    /// The second (since the epoch) the count belongs to.
    second: AtomicU64,
    /// Refusals seen in that second.
    count: AtomicU32,
}

impl RefusalLog {
    /// An empty log whose summary line says "more `what` than are logged".
    pub const fn new(what: &'static str) -> RefusalLog {
        RefusalLog {
            what,
            second: AtomicU64::new(0),
            count: AtomicU32::new(0),
        }
    }

    /// Counts one refusal, and writes its line with `line` if this second has room.
    pub fn log(&self, line: impl FnOnce()) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let second = self.second.load(Ordering::Relaxed);
        if second != now
            && self
                .second
                .compare_exchange(second, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let previous = self.count.swap(0, Ordering::Relaxed);
            if previous > REFUSAL_LOGS_PER_SECOND {
                tracing::info!(
                    target: "zitadel_system_auth",
                    suppressed = previous - REFUSAL_LOGS_PER_SECOND,
                    "more {} than are logged",
                    self.what
                );
            }
        }
        if self.count.fetch_add(1, Ordering::Relaxed) < REFUSAL_LOGS_PER_SECOND {
            line();
        }
    }
}
