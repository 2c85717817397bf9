//! Metrics through the `metrics` facade (feature `metrics`; without it every call
//! here is empty and free).
//!
//! | name | kind | labels |
//! | --- | --- | --- |
//! | `zitadel_system_auth_requests_total` | counter | `outcome` = `accepted` or `refused`; `reason` (refusals: [`AuthError::reason`](crate::AuthError::reason)) |
//! | `zitadel_system_auth_token_cache_total` | counter | `result` = `hit` or `miss` |
//! | `zitadel_system_auth_reloads_total` | counter | `outcome` = `changed`, `unchanged`, `partial` or `failed` |
//! | `zitadel_system_auth_registry_generation` | gauge | |
//! | `zitadel_system_auth_seconds_since_last_good_reload` | gauge | (updated with every decision and reload) |
//! | `zitadel_system_auth_reload_thread_panics_total` | counter | (panics caught in the reload thread, which goes on) |
//! | `zitadel_system_auth_role_refusals_total` | counter | `reason` = `missing_role` or `missing_token` (refused by a [`RequireRoleLayer`](crate::RequireRoleLayer), after the authentication layer counted the request as accepted) |
//!
//! Every label value is one of the fixed words above: none comes from a token.
//! Install the recorder before building [`SystemAuth`](crate::SystemAuth): handles are
//! taken once, at build.
//!
//! Holds the counters only: what to count is decided by the modules that count.

#[cfg(feature = "metrics")]
mod enabled {
    use std::{
        sync::atomic::{AtomicU64, Ordering},
        time::{SystemTime, UNIX_EPOCH},
    };

    use metrics::{Counter, Gauge, counter, gauge};

    use crate::cache::CacheUse;

    /// Handles taken once at build.
    pub(crate) struct Metrics {
        accepted: Counter,
        cache_hit: Counter,
        cache_miss: Counter,
        generation: Gauge,
        since_good_reload: Gauge,
        reload_thread_panics: Counter,
        /// Unix seconds of the last good reload (or the build).
        last_good: AtomicU64,
    }

    fn unix_now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    impl Metrics {
        pub fn new() -> Metrics {
            Metrics {
                accepted: counter!("zitadel_system_auth_requests_total", "outcome" => "accepted"),
                cache_hit: counter!("zitadel_system_auth_token_cache_total", "result" => "hit"),
                cache_miss: counter!("zitadel_system_auth_token_cache_total", "result" => "miss"),
                generation: gauge!("zitadel_system_auth_registry_generation"),
                since_good_reload: gauge!("zitadel_system_auth_seconds_since_last_good_reload"),
                reload_thread_panics: counter!("zitadel_system_auth_reload_thread_panics_total"),
                last_good: AtomicU64::new(unix_now()),
            }
        }

        fn touch(&self) {
            let since = unix_now().saturating_sub(self.last_good.load(Ordering::Relaxed));
            self.since_good_reload.set(since as f64);
        }

        pub fn accepted(&self) {
            self.accepted.increment(1);
            self.touch();
        }

        pub fn refused(&self, reason: &'static str) {
            counter!("zitadel_system_auth_requests_total", "outcome" => "refused", "reason" => reason)
                .increment(1);
            self.touch();
        }

        pub fn cache(&self, cache: CacheUse) {
            match cache {
                CacheUse::Hit => self.cache_hit.increment(1),
                CacheUse::Miss => self.cache_miss.increment(1),
                CacheUse::Skipped => {}
            }
        }

        pub fn reload(&self, outcome: &'static str, generation: u64, good: bool) {
            counter!("zitadel_system_auth_reloads_total", "outcome" => outcome).increment(1);
            self.generation.set(generation as f64);
            if good {
                self.last_good.store(unix_now(), Ordering::Relaxed);
            }
            self.touch();
        }

        pub fn reload_thread_panic(&self) {
            self.reload_thread_panics.increment(1);
        }
    }

    /// A request a route's role check refused (the role layer holds no handles:
    /// the counter is looked up at each refusal).
    pub(crate) fn role_refused(reason: &'static str) {
        counter!("zitadel_system_auth_role_refusals_total", "reason" => reason).increment(1);
    }
}

#[cfg(not(feature = "metrics"))]
mod enabled {
    /// Without the `metrics` feature: nothing.
    pub(crate) struct Metrics;

    impl Metrics {
        pub fn new() -> Metrics {
            Metrics
        }
        pub fn accepted(&self) {}
        pub fn refused(&self, _reason: &'static str) {}
        pub fn cache(&self, _cache: crate::cache::CacheUse) {}
        pub fn reload(&self, _outcome: &'static str, _generation: u64, _good: bool) {}
        pub fn reload_thread_panic(&self) {}
    }

    pub(crate) fn role_refused(_reason: &'static str) {}
}

pub(crate) use enabled::{Metrics, role_refused};
