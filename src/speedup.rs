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
    /// The token's parts are decoded with SIMD base64 (`base64-simd`) into buffers on
    /// the stack. Off: the `base64` crate's decoder.
    ///
    /// Measured with `benches/compare` (one core, RSA-2048): refusing an expired
    /// token 559 ns with, 810 ns without; the layer's uncached verdict at 1.101× the
    /// bare RSA operation with, 1.123× without (target ≤ 1.15×, which it keeps
    /// with less margin and failed in one short run without).
    SimdBase64,
    /// A request with no extensions gets a map with room for the user and axum's
    /// three, allocated once. Off: the map grows as extensions are added.
    ///
    /// Measured with `benches/compare`: a cached token through the layer 758 ns
    /// with, 841 ns without; the layer's cost over the bare router 0.015× the RSA
    /// operation with, 0.021× without, which fails the 0.02× target.
    RoomyExtensions,
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
