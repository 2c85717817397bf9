//! The hand-written speed-ups on the request path, each with a switch so that the
//! benchmarks can measure it side by side with the plain code it replaces.
//!
//! With the feature `testing`, [`testing::set_speedup`](crate::testing::set_speedup)
//! turns one off for the whole process (a relaxed atomic load where it is used);
//! without it every speed-up is on and the switch is a constant. Holds switches only.

/// A hand-written speed-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Speedup {
    /// A cache hit compares the token's time window with the kernel's coarse clock
    /// (`CLOCK_REALTIME_COARSE`), and reads the precise one only near the window's
    /// end. Off: every hit reads the precise clock.
    ///
    /// Measured with `benches/compare` (interleaved, one core): a cache hit 55 ns
    /// with, 73 ns without. The cached layer on the routes cost 0.017× the RSA
    /// operation over the bare router with it, 0.019× without, and 0.022× with it
    /// and the thread cache both off, against the 0.02× target (0.020× and 0.021×
    /// without it alone in two earlier runs).
    CoarseClock,
    /// Each thread keeps the last few tokens the shared cache answered for it,
    /// marked with the id of the registry's cache and with its own copy of the
    /// user's identity; a hit there takes no guard on the registry or on the shared
    /// map, and writes no reference count another thread writes (see
    /// `cache::local`). Off: every hit goes to the registry's shared cache.
    ///
    /// Measured with `benches/compare` (interleaved): a cache hit 55 ns with,
    /// 68 ns without; the cached layer on the routes 632 ns with, 679 ns without
    /// (1.066× the median ratio), its cost over the bare router 0.017× the RSA
    /// operation with, 0.020× without, against the 0.02× target (0.021× without in
    /// each of the two runs before); the cached layer's 2-thread scaling 1.001 of
    /// the floor's with, 0.829 without, against 0.95. By CPU time, the cached layer
    /// on 2 threads 625 ns with, 726 ns without.
    ThreadCache,
}

#[cfg(feature = "testing")]
mod switches {
    use std::sync::atomic::{AtomicU8, Ordering};

    use super::Speedup;

    /// One bit per speed-up that is turned off.
    static OFF: AtomicU8 = AtomicU8::new(0);

    fn bit(speedup: Speedup) -> u8 {
        1 << (speedup as u8)
    }

    pub(crate) fn set(speedup: Speedup, on: bool) {
        if on {
            OFF.fetch_and(!bit(speedup), Ordering::Relaxed);
        } else {
            OFF.fetch_or(bit(speedup), Ordering::Relaxed);
        }
    }

    #[inline]
    pub(crate) fn on(speedup: Speedup) -> bool {
        OFF.load(Ordering::Relaxed) & bit(speedup) == 0
    }
}

#[cfg(feature = "testing")]
pub(crate) use switches::{on, set};

/// Whether `speedup` is on: always, without the feature `testing`.
#[cfg(not(feature = "testing"))]
#[inline(always)]
pub(crate) const fn on(_speedup: Speedup) -> bool {
    true
}
