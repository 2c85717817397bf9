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
    /// Measured with `benches/compare` (interleaved, one core): a cache hit 66 ns
    /// with, 102 ns without. Without it, the cached layer on the routes cost 0.021×
    /// to 0.023× the RSA operation over the bare router in three runs, against the
    /// 0.02× target (0.019× to 0.022× with it).
    CoarseClock,
    /// The token's parts are decoded with SIMD base64 (`base64-simd`) into buffers on
    /// the stack. Off: the `base64` crate's decoder.
    ///
    /// Measured with `benches/compare` (interleaved, one core, RSA-2048): refusing
    /// an expired token 652 ns with, 974 ns without; an uncached `verify` 1.021×
    /// slower without; the layer's uncached verdict at 1.102× the bare RSA
    /// operation with, 1.120× without in one run (1.109× and 1.110× in another),
    /// where runs with everything on have measured up to 1.128× against the 1.15×
    /// target.
    SimdBase64,
    /// A request with no extensions gets a map with room for the user and axum's
    /// three, allocated once. Off: the map grows as extensions are added.
    ///
    /// Measured with `benches/compare` (interleaved): a cached token through the
    /// layer 789 ns with, 854 ns without (1.072× the median ratio); the layer's cost
    /// over the bare router 0.011× the RSA operation with, 0.013× without, and
    /// 0.021× to 0.023× without on another VM, which failed the 0.02× target there.
    /// The cached layer's 2-thread scaling (target 0.95 of the floor's) measured
    /// 0.884 and 0.893 without it, 0.962 and 0.939 with it, in two runs, and 0.967
    /// without, 0.927 with, in a third. In a run timed by CPU time, no target failed
    /// without it.
    RoomyExtensions,
    /// Each thread keeps the last few tokens the shared cache answered for it,
    /// marked with the id of the registry's cache and with its own copy of the
    /// user's identity; a hit there takes no guard on the registry or on the shared
    /// map, and writes no reference count another thread writes (see
    /// `cache::local`). Off: every hit goes to the registry's shared cache.
    ///
    /// Measured with `benches/compare` (interleaved): a cache hit 66 ns with,
    /// 109 ns without; the cached layer on the routes 978 ns with, 1.03 µs without
    /// (1.081× the median ratio), its cost over the bare router 0.020× the RSA
    /// operation with, 0.023× without, against the 0.02× target (0.019× and 0.022×
    /// with, 0.024× and 0.024× without, in two earlier runs); the cached layer on
    /// 2 threads, by CPU time, 625 ns with, 726 ns without. In a run timed by CPU
    /// time, without it the layer on the routes measured 0.021× (0.019× with) and
    /// the cached layer's 2-thread scaling 0.925 of the floor's (0.994 with),
    /// against 0.95.
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
