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
    /// Measured with `benches/compare` (interleaved, one core): a cache hit 85 ns
    /// with, 120 ns without. Together with [`TailHash`](Self::TailHash) it keeps the
    /// cached layer within its target (see there for the figures of both off).
    CoarseClock,
    /// The token's parts are decoded with SIMD base64 (`base64-simd`) into buffers on
    /// the stack. Off: the `base64` crate's decoder.
    ///
    /// Measured with `benches/compare` (interleaved, one core, RSA-2048): refusing
    /// an expired token 707 ns with, 1.10 µs without; an uncached `verify` 1.022×
    /// slower without; the layer's uncached verdict at 1.109× the bare RSA
    /// operation with, 1.126× without, where runs with everything on have measured
    /// up to 1.128× against the 1.15× target.
    SimdBase64,
    /// A request with no extensions gets a map with room for the user and axum's
    /// three, allocated once. Off: the map grows as extensions are added.
    ///
    /// Measured with `benches/compare` (interleaved): a cached token through the
    /// layer 929 ns with, 971 ns without (1.066× the median ratio); the layer's cost
    /// over the bare router 0.013× the RSA operation with, 0.016× without in that
    /// run, and 0.021× to 0.023× without on another VM, which fails the 0.02× target.
    RoomyExtensions,
    /// Each thread keeps the last few tokens the shared cache answered for it,
    /// marked with the id of the registry's cache, and a hit there takes no guard
    /// on the registry or on the shared map (see `cache::local`). Off: every hit
    /// goes to the registry's shared cache.
    ///
    /// Measured with `benches/compare` (interleaved): FIGURES.
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
