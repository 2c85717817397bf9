//! What a request costs: this crate against the RSA operation it cannot avoid, and
//! against jwt-authorizer, in one run so that the ratios hold on a noisy machine;
//! what a full token cache adds to a new token; and what each hand-written
//! speed-up is worth.
//!
//! This bench lives in `benches/compare/`, a crate of its own (so that
//! jwt-authorizer, axum 0.7, criterion and plotters are never built by the main
//! crate's `cargo build`, `cargo test` or examples). From the repository's top,
//! `scripts/bench.sh` runs it, the reload bench and the chart; by hand:
//!
//! ```text
//! cd benches/compare
//! cargo bench --bench verify
//! cargo run --release --bin bench_chart
//! ```
//!
//! `cargo bench --bench verify` runs every case with criterion (about 3 minutes on
//! 2 cores) and prints a Markdown table and each target with PASS or FAIL, read
//! back from criterion's results (the mean time per operation): "criterion means,
//! cases measured one after another". Criterion measures each case on its own,
//! so two cases a target compares are measured minutes apart, and on a busy
//! machine their ratio carries whatever the load did in between.
//!
//! It then runs the interleaved pass (see `interleave`), whose targets are the
//! verdict of the run, printed under "Verdict (interleaved pass, medians over N
//! rounds)":
//! - every case runs for a slice of about 4 ms in turn, round after round, 150
//!   rounds;
//! - within a round the cases a target compares run next to each other (see
//!   `INTERLEAVED_ORDER`: floor, verify_uncached, layer_uncached,
//!   jwt_authorizer_layer, layer_cached, router_no_layer, the per-route cases, the
//!   refusals, the two registry sizes, the full and the empty cache, then each
//!   1-thread case beside its 2-thread case), so each ratio's two times are taken
//!   milliseconds apart;
//! - every other round runs that order backwards (A B, then B A), so a steady
//!   drift in the machine's speed favours each side of a pair equally often;
//! - each target is checked in every round; its median over the rounds decides
//!   PASS or FAIL, printed with the interquartile range (p25..p75) of the
//!   per-round values and how many rounds passed. No round is dropped.
//!
//! The speed-ups (`zitadel_system_auth::testing::Speedup`, each one switched off
//! process-wide with `testing::set_speedup`) are measured in the same pass, in
//! every round, two ways (see `SPEEDUPS` and `SPEEDUP_PAIRS`):
//! - a pair of slices per speed-up, side by side: its case with every speed-up on,
//!   then the same case with that one off (`verify_cached` for `CoarseClock`;
//!   `verify_cached`, `layer_cached_per_route` and `layer_cached_2_threads` for
//!   `ThreadCache`);
//! - after the round's cases with every speed-up on, the same cases again with one
//!   speed-up off, for each speed-up in turn, and with the speed-ups of `TOGETHER`
//!   off together, so that every target is also checked without them.
//!
//! The switch is only ever flipped between slices, never while one is timed, and
//! turned back on as soon as the slice is over (see `SpeedupOff`). Each setting has
//! its own `SystemAuth`s, built while it is in force. This is printed last:
//! "speed-up | case | with | without | ratio | targets that fail without it", then
//! every target's median with every speed-up on and with each setting off. A round
//! then takes about 0.55 s on 2 cores (150 rounds: under 1.5 minutes);
//! `BENCH_SPEEDUPS=0` leaves the speed-ups out (a round then takes about 0.15 s).
//!
//! `BENCH_INTERLEAVED_ROUNDS=N` sets the rounds (0 skips the pass) and
//! `BENCH_INTERLEAVED_SLICE_MS=N` the slice.
//!
//! `BENCH_CLOCK=cpu` times every case with the measuring threads' CPU time instead
//! of wall time (see `Clock`): on a machine busy with other work this removes most
//! of the noise, but the 2-thread cases then show CPU cost only (see `on_threads`).
//! Criterion keeps one result per case, so don't mix clocks between the runs a
//! report or chart is made from. With the wall clock, the verdict is followed by
//! the two 2-thread targets over the same slices timed by CPU time, for
//! information: each slice of a 2-thread case reads both clocks (see
//! `on_threads`), and the CPU one leaves out the time a thread waited for a core.
//!
//! Criterion takes one filter, a regular expression on the case names, to run some
//! cases only: `cargo bench --bench verify -- '^(floor|verify_uncached)$'`. The
//! report then marks results that come from an earlier run, and the interleaved
//! pass (which always runs every case) is skipped unless `BENCH_INTERLEAVED_ROUNDS`
//! asks for it. `cargo run --release --bin bench_chart` draws `docs/bench.png`
//! from criterion's results and prints the tables again.
//!
//! The cases (see `src/report.rs` for the list and the targets):
//! - `floor`: aws-lc-rs `verify_sig` over the token's signing input with a key
//!   parsed once and the signature already decoded: the one RSA operation.
//! - `verify_uncached`, `verify_cached`: `SystemAuth::verify` with the cache off,
//!   and on with the same token again and again.
//! - `layer_uncached`, `layer_cached`, `router_no_layer`, `jwt_authorizer_layer`:
//!   `GET /` with an `Authorization` header through a Router with `oneshot`, on a
//!   current-thread tokio runtime (one `block_on` around the loop; the service is
//!   cloned in every iteration, as `axum::serve` clones it for every request; the
//!   requests are built just before, untimed, see `through`). The layer wraps the
//!   Router (`auth.layer().layer(router)`), and jwt-authorizer's the same Router on
//!   axum 0.7: each layer's cost, with nothing that axum adds for a layer.
//! - `layer_uncached_per_route`, `layer_cached_per_route`,
//!   `router_noop_layer_per_route`: the layer on the routes instead
//!   (`Router::layer`, like `route_layer`), and a layer that does nothing there.
//!   axum boxes a layered route once more, which every request then pays for
//!   whatever the layer does; these are printed for information, under the
//!   targets.
//! - `validate_request_cached_per_route`: tower-http's
//!   `ValidateRequestHeaderLayer::custom(auth)` on the same routes, cache on: the
//!   same decision, answering with axum's body instead of the either-body (which
//!   axum boxes once more on a layered route).
//! - `refuse_*`: tokens that must be refused before any RSA (cache off).
//! - `verify_uncached_1_user`, `verify_uncached_10000_users`: the registry's size.
//! - `verify_uncached_full_cache`, `verify_uncached_empty_cache`: `verify` with the
//!   cache on (default capacity, 10,000 tokens) of a valid token that cache has
//!   never seen, so each call is an RSA verification and an insert: into a cache
//!   kept full of valid tokens with staggered `exp` (each insert evicts one), and
//!   into one that holds fewer than 1,000 (see `Pool`).
//! - `*_1_thread`, `*_2_threads`: the same operation on 1 or 2 threads at once
//!   (`layer_cached_*`: each thread with its own service, sharing the `SystemAuth`).

#[path = "../../common/mod.rs"]
mod common;

use std::{
    cell::Cell,
    collections::BTreeMap,
    hint::black_box,
    sync::{
        Barrier, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header::AUTHORIZATION},
    routing::get,
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use criterion::Criterion;
use tokio::runtime::Runtime;
use tower::{Layer as _, ServiceExt as _};
use tower_http::validate_request::ValidateRequestHeaderLayer;
use zitadel_system_auth::{
    AuthError, SystemAuth, SystemAuthService,
    error::{AudienceHint, Malformed},
    testing::{Speedup, set_speedup},
};
use zitadel_system_auth_compare::report;

use common::{AUD, BenchKey, USER};

/// The token cache's default capacity, in tokens (the builder's
/// `token_cache_capacity`); checked when the full-cache case fills a cache built
/// with the defaults.
const CACHE_CAPACITY: usize = 10_000;

/// How many distinct valid tokens the cache cases cycle through: more than
/// [`CACHE_CAPACITY`], see [`Pool`].
const POOL_SIZE: usize = 12_000;

/// The empty-cache case verifies at most this many tokens with one `SystemAuth`
/// before it takes a fresh one, so its cache never holds more than this.
const EMPTY_CACHE_TOKENS: u64 = 1_000;

/// The pool's first token expires this long (in seconds) after the bench started;
/// a run must end before it does.
const POOL_FIRST_EXP: u64 = 30 * 60;

/// Valid tokens that the cache cases verify, each one a token the cache it is
/// given has not seen.
///
/// `POOL_SIZE` tokens for [`USER`], `iat` from now to 7 s ago and `exp` staggered
/// over 25 minutes from [`POOL_FIRST_EXP`] on (8 tokens a second, each with its
/// own `iat`, so that all are distinct), in shuffled order, so that the
/// cache holds entries whose time windows all end at different times, in no
/// order. Minting takes a few seconds (one RSA signature each, on every core),
/// once.
///
/// Why no timed call is a cache hit: the full cache is filled with the first
/// [`CACHE_CAPACITY`] + 1 tokens, and then verifies the pool in order, round and
/// round (one cursor per `SystemAuth`, in [`Auths`]). No token is ever hit there,
/// so second-chance eviction drops the oldest entry at each insert and the cache
/// holds the last `CACHE_CAPACITY` tokens verified; a token comes round again
/// after `POOL_SIZE − 1` others, more than the cache holds, so it was evicted.
/// The empty-cache case takes a fresh `SystemAuth` (untimed) for each run of at
/// most [`EMPTY_CACHE_TOKENS`] tokens, all distinct, and checks after each run
/// that its cache holds as many tokens as it verified: every one was a miss.
struct Pool {
    tokens: Vec<String>,
    /// When the first token expires.
    first_exp: SystemTime,
}

impl Pool {
    fn mint(key: &BenchKey) -> Pool {
        let started = Instant::now();
        let now = common::now();
        let signer = key.encoding_key();
        // Token `i` gets slot `j` of the staggering: a bijection (7,919 is prime and
        // does not divide POOL_SIZE), so `exp` is not in insertion order.
        let mint = |i: usize| {
            let j = i * 7_919 % POOL_SIZE;
            let iat = now - (j % 8) as u64;
            let exp = now + POOL_FIRST_EXP + (j / 8) as u64;
            common::rs256_with(
                &signer,
                &serde_json::json!({ "iss": USER, "sub": USER, "aud": AUD, "iat": iat, "exp": exp }),
            )
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per_thread = POOL_SIZE.div_ceil(threads);
        let tokens: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..POOL_SIZE)
                .step_by(per_thread)
                .map(|from| {
                    let mint = &mint;
                    scope.spawn(move || {
                        (from..(from + per_thread).min(POOL_SIZE))
                            .map(mint)
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("minting thread"))
                .collect()
        });
        let mut distinct: Vec<&String> = tokens.iter().collect();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), POOL_SIZE, "the pool's tokens are distinct");
        eprintln!(
            "{POOL_SIZE} tokens for the cache cases minted in {:.2?}",
            started.elapsed()
        );
        Pool {
            tokens,
            first_exp: SystemTime::UNIX_EPOCH + Duration::from_secs(now + POOL_FIRST_EXP),
        }
    }

    /// The token at `index` (modulo the pool's size).
    fn token(&self, index: usize) -> &str {
        &self.tokens[index % POOL_SIZE]
    }

    /// Verifies the pool's token at `index` with `auth`, which must accept it.
    fn verify(&self, auth: &SystemAuth, index: usize) {
        if let Err(error) = auth.verify(black_box(self.token(index))) {
            panic!(
                "a pool token was refused ({error}); its tokens expire from {} min after \
                 the bench started on{}",
                POOL_FIRST_EXP / 60,
                if SystemTime::now() > self.first_exp {
                    ", and that time has come: the run took too long"
                } else {
                    ""
                }
            );
        }
    }
}

/// Everything the cases share, made once before any timing.
struct Fixture {
    key: BenchKey,
    /// A valid token for `system-user-1`.
    token: String,
    /// `Bearer <token>`.
    bearer: String,
    /// `header.payload` of `token`, and its decoded signature.
    signing_input: Vec<u8>,
    signature: Vec<u8>,
    wrong_aud: String,
    expired: String,
    unknown_user: String,
    /// A valid token for `system-user-5000` (for the 10,000-user registry).
    token_user_5000: String,
    /// The config with `system-user-1` alone, its key inline.
    one_user: String,
    /// The config with 10,000 users sharing one key file.
    many_users: String,
    /// Holds the key file of the 10,000-user config.
    _dir: tempfile::TempDir,
    /// The cache cases' tokens.
    pool: Pool,
}

impl Fixture {
    fn new() -> Fixture {
        let key = BenchKey::generate();
        let token = key.rs256(&common::claims(USER, AUD));
        let now = common::now();
        let wrong_aud = key.rs256(&common::claims(USER, "https://other-domain.com"));
        let expired = key.rs256(&serde_json::json!({
            "iss": USER, "sub": USER, "aud": AUD, "iat": now - 7200, "exp": now - 3600,
        }));
        let unknown_user = key.rs256(&common::claims("system-user-unknown", AUD));
        let token_user_5000 = key.rs256(&common::claims("system-user-5000", AUD));
        let (signing_input, signature) = token.rsplit_once('.').expect("three parts");
        let signing_input = signing_input.as_bytes().to_vec();
        let signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url");

        // 10,000 users sharing one key file, and `SystemAPIUsers` as one mapping
        // (the list form parses in quadratic time, see benches/reload.rs), so the
        // setup stays quick: each user still gets its own entry and parsed key.
        let dir = tempfile::tempdir().expect("temp dir");
        let shared = dir.path().join("shared.pub");
        std::fs::write(&shared, &key.public_pem).expect("write key");
        let many_users = common::config_with_paths_map(
            (0..10_000).map(|i| (format!("system-user-{i}"), shared.as_path())),
        );
        eprintln!("token: {} bytes", token.len());
        let pool = Pool::mint(&key);

        Fixture {
            bearer: format!("Bearer {token}"),
            one_user: common::config_with_key_data(USER, &key),
            key,
            token,
            signing_input,
            signature,
            wrong_aud,
            expired,
            unknown_user,
            token_user_5000,
            many_users,
            _dir: dir,
            pool,
        }
    }

    /// A `SystemAuth` for `yaml`, not watching files, the cache on (with its
    /// default limits) or off.
    fn auth(yaml: &str, cache: bool) -> SystemAuth {
        SystemAuth::builder()
            .config_yaml(yaml)
            .token_cache(cache)
            .watch(false)
            .build()
            .expect("config loads")
    }

    /// The key parsed once, as `floor` uses it.
    fn parsed_key(&self) -> ParsedPublicKey {
        ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.key.public_pkcs1_der)
            .expect("parse key")
    }

    /// Checks, once, that every case does what its name says.
    fn check(&self, auths: &Auths, rt: &Runtime, jwt_authorizer: &JwtAuthorizerApp) {
        let key = self.parsed_key();
        key.verify_sig(&self.signing_input, &self.signature)
            .expect("floor verifies");
        for auth in [&auths.uncached, &auths.cached] {
            assert_eq!(auth.verify(&self.token).expect("verifies").user_id(), USER);
        }
        assert_eq!(
            auths
                .users_10000
                .verify(&self.token_user_5000)
                .expect("user 5000 verifies")
                .user_id(),
            "system-user-5000"
        );
        let auth = &auths.uncached;
        assert_eq!(
            auth.verify("abc.def").unwrap_err(),
            AuthError::Malformed(Malformed::Segments)
        );
        assert!(matches!(
            auth.verify(&self.wrong_aud).unwrap_err(),
            AuthError::AudienceMismatch {
                hint: AudienceHint::Other,
                ..
            }
        ));
        assert_eq!(auth.verify(&self.expired).unwrap_err(), AuthError::Expired);
        assert_eq!(
            auth.verify(&self.unknown_user).unwrap_err(),
            AuthError::UnknownUser
        );
        assert_eq!(auths.full_cache.status().cached_tokens, CACHE_CAPACITY);
        rt.block_on(async {
            let no_token = || Request::get("/").body(Body::empty()).expect("request");
            for auth in [&auths.uncached, &auths.cached] {
                assert_eq!(status(protected(auth), self.request()).await, 200);
                assert_eq!(status(protected(auth), no_token()).await, 401);
                assert_eq!(status(per_route(auth.layer()), self.request()).await, 200);
                assert_eq!(status(per_route(auth.layer()), no_token()).await, 401);
                let validate = || per_route(ValidateRequestHeaderLayer::custom(auth.clone()));
                assert_eq!(status(validate(), self.request()).await, 200);
                assert_eq!(status(validate(), no_token()).await, 401);
            }
            assert_eq!(status(router(), self.request()).await, 200);
            assert_eq!(
                status(per_route(tower::layer::util::Identity::new()), no_token()).await,
                200
            );
            let response = jwt_authorizer
                .clone()
                .oneshot(self.request07())
                .await
                .expect("infallible");
            assert_eq!(response.status(), 200, "jwt-authorizer accepts the token");
            let response = jwt_authorizer
                .clone()
                .oneshot(
                    axum07::http::Request::get("/")
                        .header(AUTHORIZATION, format!("Bearer {}", self.wrong_aud))
                        .body(axum07::body::Body::empty())
                        .expect("request"),
                )
                .await
                .expect("infallible");
            assert_ne!(response.status(), 200, "jwt-authorizer checks aud");
        });
    }

    /// `GET /` with the token, as the layer cases send it (built per iteration).
    fn request(&self) -> Request<Body> {
        Request::get("/")
            .header(AUTHORIZATION, &self.bearer)
            .body(Body::empty())
            .expect("request")
    }

    /// The same request for the axum 0.7 Router.
    fn request07(&self) -> axum07::http::Request<axum07::body::Body> {
        axum07::http::Request::get("/")
            .header(AUTHORIZATION, &self.bearer)
            .body(axum07::body::Body::empty())
            .expect("request")
    }
}

/// The `SystemAuth`s the cases use, built under one setting of the speed-ups (see
/// [`Setting`]): a cache takes its hash when it is made, so each setting has its
/// own.
struct Auths {
    uncached: SystemAuth,
    cached: SystemAuth,
    users_10000: SystemAuth,
    /// Cache on with its defaults, full: see [`Pool`].
    full_cache: SystemAuth,
    /// The pool index `full_cache` verifies next: every token before it (round
    /// the pool) has been verified, the last [`CACHE_CAPACITY`] are cached.
    full_cache_next: AtomicUsize,
}

impl Auths {
    /// Builds them with the speed-ups as `setting` says (then all on again).
    fn build(fx: &Fixture, setting: Setting) -> Auths {
        let started = Instant::now();
        let _off = SpeedupOff::new(setting.off);
        // One token more than the capacity: the cache still holds exactly
        // CACHE_CAPACITY, so that is its capacity, and it is full.
        let full_cache = Fixture::auth(&fx.one_user, true);
        for index in 0..=CACHE_CAPACITY {
            fx.pool.verify(&full_cache, index);
        }
        assert_eq!(full_cache.status().cached_tokens, CACHE_CAPACITY);
        let auths = Auths {
            uncached: Fixture::auth(&fx.one_user, false),
            cached: Fixture::auth(&fx.one_user, true),
            users_10000: Fixture::auth(&fx.many_users, false),
            full_cache,
            full_cache_next: AtomicUsize::new(CACHE_CAPACITY + 1),
        };
        assert_eq!(auths.users_10000.user_ids().len(), 10_000);
        eprintln!(
            "SystemAuths for {} (a 10,000-user registry, a full cache) built in {:.2?}",
            setting.label(),
            started.elapsed()
        );
        auths
    }
}

/// Every hand-written speed-up, in the order of the tables.
static SPEEDUPS: [Speedup; 2] = [Speedup::CoarseClock, Speedup::ThreadCache];

/// Speed-ups that work on the same case, also measured off together: each of the
/// two cache-hit ones saves a little, and a target may need both.
static TOGETHER: [&[Speedup]; 1] = [&[Speedup::CoarseClock, Speedup::ThreadCache]];

/// The with/without pairs of the interleaved pass: each speed-up on the case
/// where it does its work.
const SPEEDUP_PAIRS: &[(Speedup, &str)] = &[
    (Speedup::CoarseClock, "verify_cached"),
    (Speedup::ThreadCache, "verify_cached"),
    (Speedup::ThreadCache, "layer_cached_per_route"),
    (Speedup::ThreadCache, "layer_cached_2_threads"),
];

/// Which speed-ups are off: none, one, or the ones of [`TOGETHER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Setting {
    off: &'static [Speedup],
}

impl Setting {
    const ALL_ON: Setting = Setting { off: &[] };

    /// The speed-ups that are off, as the tables name them: `ThreadCache`,
    /// `CoarseClock+ThreadCache`.
    fn name(self) -> String {
        let names: Vec<String> = self.off.iter().map(|s| format!("{s:?}")).collect();
        names.join("+")
    }

    fn label(self) -> String {
        if self.off.is_empty() {
            "every speed-up on".to_owned()
        } else {
            format!("{} off", self.name())
        }
    }
}

/// Turns speed-ups off for the whole process until dropped, then on again. Only
/// ever held around a slice, outside its timer (see [`switched`]), or around a
/// setup.
struct SpeedupOff(&'static [Speedup]);

impl SpeedupOff {
    fn new(off: &'static [Speedup]) -> SpeedupOff {
        for &speedup in off {
            set_speedup(speedup, false);
        }
        SpeedupOff(off)
    }
}

impl Drop for SpeedupOff {
    fn drop(&mut self) {
        for &speedup in self.0 {
            set_speedup(speedup, true);
        }
    }
}

/// `routine` with the speed-ups as `setting` says while it runs: switched before
/// the routine starts its timer, and back on after it stopped it.
fn switched<'a>(setting: Setting, mut routine: Routine<'a>) -> Routine<'a> {
    if setting.off.is_empty() {
        return routine;
    }
    Box::new(move |n| {
        let _off = SpeedupOff::new(setting.off);
        routine(n)
    })
}

/// The status `app` answers `request` with.
async fn status<S, B>(app: S, request: Request<Body>) -> StatusCode
where
    S: tower::Service<
            Request<Body>,
            Response = axum::http::Response<B>,
            Error = std::convert::Infallible,
        >,
{
    let Ok(response) = app.oneshot(request).await;
    response.status()
}

/// `GET /` answering "ok", with no authentication.
///
/// Every Router case (jwt-authorizer's too) is finished with `with_state(())`, as
/// `axum::serve` finishes a Router (`into_make_service` calls it): the routes, and
/// the layers on them, are then built once instead of again for every request.
fn router() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .with_state(())
}

/// [`router`] wrapped in this crate's layer, as a service that answers only to
/// system users wraps its Router: what `layer_*` measure. Every request meets the
/// layer before routing, and axum adds nothing of its own for the layer.
fn protected(auth: &SystemAuth) -> SystemAuthService<Router> {
    auth.layer().layer(router())
}

/// [`router`] with `layer` on its routes (`Router::layer`, as `route_layer`
/// does): what `*_per_route` measure. axum boxes every layered route once more,
/// so each request also pays for a second boxed service and future, whatever
/// the layer does (`router_noop_layer_per_route` measures that share alone).
fn per_route<L>(layer: L) -> Router
where
    L: tower::Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
    L::Service: tower::Service<Request<Body>, Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    <L::Service as tower::Service<Request<Body>>>::Response: axum::response::IntoResponse + 'static,
    <L::Service as tower::Service<Request<Body>>>::Future: Send + 'static,
{
    Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer)
        .with_state(())
}

/// The service jwt-authorizer makes of a Router.
type JwtAuthorizerApp =
    jwt_authorizer::layer::AuthorizationService<axum07::Router, jwt_authorizer::RegisteredClaims>;

/// The same shape on axum 0.7: the Router wrapped in jwt-authorizer's layer,
/// configured with the same public key, `aud` checked, `iss` not.
fn jwt_authorizer_app(rt: &Runtime, public_pem: &str) -> JwtAuthorizerApp {
    use jwt_authorizer::{IntoLayer as _, JwtAuthorizer, RegisteredClaims, Validation};
    let authorizer = rt
        .block_on(
            JwtAuthorizer::<RegisteredClaims>::from_rsa_pem_text(public_pem)
                .validation(Validation::new().aud(&[AUD]))
                .build(),
        )
        .expect("jwt-authorizer builds");
    let app = axum07::Router::new()
        .route("/", axum07::routing::get(|| async { "ok" }))
        .with_state(());
    authorizer.into_layer().layer(app)
}

fn current_thread_runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// What times the cases: wall time (the default), or with `BENCH_CLOCK=cpu` the
/// CPU time of the measuring thread, which other processes on a busy machine
/// barely disturb (they take the core away, but that time is not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clock {
    Wall,
    Cpu,
}

fn clock() -> Clock {
    static CLOCK: OnceLock<Clock> = OnceLock::new();
    *CLOCK.get_or_init(|| match std::env::var("BENCH_CLOCK").as_deref() {
        Ok("cpu") => Clock::Cpu,
        Ok("wall") | Err(_) => Clock::Wall,
        Ok(other) => panic!("BENCH_CLOCK={other:?}: use wall or cpu"),
    })
}

/// The CPU time this thread has used (`CLOCK_THREAD_CPUTIME_ID` on Linux, through
/// the `cpu-time` crate).
fn thread_cpu_time() -> Duration {
    cpu_time::ThreadTime::now().as_duration()
}

/// A start time on [`clock`].
#[derive(Debug, Clone, Copy)]
enum Timer {
    Wall(Instant),
    Cpu(Duration),
}

impl Timer {
    fn start() -> Timer {
        match clock() {
            Clock::Wall => Timer::Wall(Instant::now()),
            Clock::Cpu => Timer::Cpu(thread_cpu_time()),
        }
    }

    fn elapsed(self) -> Duration {
        match self {
            Timer::Wall(start) => start.elapsed(),
            Timer::Cpu(start) => thread_cpu_time().saturating_sub(start),
        }
    }
}

/// A case: runs its operation `n` times and returns the time that took (what
/// criterion's `iter_custom` wants). Every case is timed this way, by criterion and
/// by the interleaved pass alike.
type Routine<'a> = Box<dyn FnMut(u64) -> Duration + 'a>;

/// A loop of `op`, timed.
fn timed<'a>(mut op: impl FnMut() + 'a) -> Routine<'a> {
    Box::new(move |n| {
        let timer = Timer::start();
        for _ in 0..n {
            op();
        }
        timer.elapsed()
    })
}

/// The harness of every Router case: one `block_on` around the loop; each
/// iteration clones the service and sends a request with `oneshot`.
///
/// The requests are built untimed, [`REQUEST_BATCH`] at a time just before they
/// are sent: in a server the HTTP stack builds a request and hands it over at
/// once, still fresh in the CPU's caches, and these cases time what the Router
/// (and the layer on it) do with it. (The current-thread runtime runs everything
/// on this thread, so the CPU clock sees all of it.)
fn through<'a, S, B>(rt: &'a Runtime, app: S, request: impl Fn() -> B + 'a) -> Routine<'a>
where
    S: tower::Service<B, Error = std::convert::Infallible> + Clone + 'a,
{
    Box::new(move |n| {
        rt.block_on(async {
            let mut took = Duration::ZERO;
            let mut left = n;
            let mut batch = Vec::with_capacity(REQUEST_BATCH.min(n) as usize);
            while left > 0 {
                let size = left.min(REQUEST_BATCH);
                batch.extend((0..size).map(|_| request()));
                let timer = Timer::start();
                for request in batch.drain(..) {
                    let Ok(response) = app.clone().oneshot(request).await;
                    black_box(response);
                }
                took += timer.elapsed();
                left -= size;
            }
            took
        })
    })
}

/// How many requests [`through`] builds ahead of a timed stretch: few, so that
/// each is sent soon after it was built (building a few hundred ahead left each
/// one cold in the caches by the time it was sent, which no server does), and
/// enough that reading the clock around the stretch costs nothing measurable.
const REQUEST_BATCH: u64 = 8;

/// Runs a workload on `threads` threads at once and returns the time per operation
/// times `iters`, which is what criterion's `iter_custom` wants.
///
/// Method (wall clock): each thread first runs `setup` (its own runtime, its own
/// Router, ...) and one operation, untimed, then all meet at a barrier, and each
/// does `iters` operations. The untimed operation is there because every slice runs
/// on fresh threads, while a server's workers live long: a thread's first use of
/// the thread-local state behind the work (arc-swap's debt slot, the cache's
/// epoch guard, tokio's context) belongs to the thread's start, not to the
/// workload. The wall time is from the earliest thread's start to the latest
/// thread's end.
/// `threads × iters` operations ran in that time, so the time per operation is
/// wall / (threads × iters), and we return wall / threads. With 1 thread it is the
/// plain time per op. Throughput scaling = (1-thread time per op) / (2-thread time
/// per op): 2.0 is perfect, 1.0 is no gain. The target compares a case's scaling
/// with the floor's scaling measured in the same way, so that a machine that
/// cannot give two full cores affects both alike.
///
/// With `BENCH_CLOCK=cpu`, the threads' CPU time stands in for the wall time, as
/// if they had run fully side by side: the mean CPU time per thread, / threads like
/// the wall time. Perfect scaling still reads 2.0 (and "ops/s per core" means the
/// same in both modes), but it shows only what running side by side costs in CPU
/// (cache lines bouncing between cores, spinning), not waiting on a lock.
///
/// Both readings are taken in every call: the one the clock asks for is returned,
/// and the CPU one is also left in [`THREADS_CPU`], so that the interleaved pass
/// can show the 2-thread scalings of the same slices by CPU time as well.
fn on_threads<S, W>(threads: u32, iters: u64, setup: S) -> Duration
where
    S: Fn() -> W + Sync,
    W: FnMut(u64),
{
    let barrier = Barrier::new(threads as usize);
    let spans: Vec<(Instant, Instant, Duration)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut work = setup();
                    work(1);
                    barrier.wait();
                    let cpu = thread_cpu_time();
                    let start = Instant::now();
                    work(iters);
                    let end = Instant::now();
                    (start, end, thread_cpu_time().saturating_sub(cpu))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect()
    });
    let cpu = spans.iter().map(|s| s.2).sum::<Duration>() / threads / threads;
    THREADS_CPU.set(Some(cpu));
    match clock() {
        Clock::Wall => {
            let start = spans.iter().map(|s| s.0).min().expect("a thread");
            let end = spans.iter().map(|s| s.1).max().expect("a thread");
            (end - start) / threads
        }
        Clock::Cpu => cpu,
    }
}

thread_local! {
    /// The CPU-time reading of the last [`on_threads`] call made on this thread
    /// (the one that runs the slices), taken by [`interleave`] after each slice.
    static THREADS_CPU: Cell<Option<Duration>> = const { Cell::new(None) };
}

/// Every case of the bench, in the order of `src/report.rs`, with the
/// `SystemAuth`s of `auths`.
fn cases<'a>(
    fx: &'a Fixture,
    auths: &'a Auths,
    rt: &'a Runtime,
    jwt_authorizer: &'a JwtAuthorizerApp,
) -> Vec<(&'static str, Routine<'a>)> {
    let mut cases: Vec<(&'static str, Routine<'a>)> = Vec::new();

    // 1. The floor: the RSA operation alone.
    let key = fx.parsed_key();
    cases.push((
        "floor",
        timed(move || {
            key.verify_sig(black_box(&fx.signing_input), black_box(&fx.signature))
                .expect("verifies")
        }),
    ));

    // 2. verify, uncached and cached.
    cases.push((
        "verify_uncached",
        timed(|| {
            black_box(auths.uncached.verify(black_box(&fx.token)).expect("ok"));
        }),
    ));
    cases.push((
        "verify_cached",
        timed(|| {
            black_box(auths.cached.verify(black_box(&fx.token)).expect("ok"));
        }),
    ));

    // 3. Through a Router.
    cases.push((
        "layer_uncached",
        through(rt, protected(&auths.uncached), || fx.request()),
    ));
    cases.push((
        "layer_cached",
        through(rt, protected(&auths.cached), || fx.request()),
    ));
    cases.push(("router_no_layer", through(rt, router(), || fx.request())));
    cases.push((
        "jwt_authorizer_layer",
        through(rt, jwt_authorizer.clone(), || fx.request07()),
    ));
    // The same with the layer on the routes instead, and the share of that which
    // axum takes for any layer there.
    cases.push((
        "layer_uncached_per_route",
        through(rt, per_route(auths.uncached.layer()), || fx.request()),
    ));
    cases.push((
        "layer_cached_per_route",
        through(rt, per_route(auths.cached.layer()), || fx.request()),
    ));
    cases.push((
        "router_noop_layer_per_route",
        through(rt, per_route(tower::layer::util::Identity::new()), || {
            fx.request()
        }),
    ));
    cases.push((
        "validate_request_cached_per_route",
        through(
            rt,
            per_route(ValidateRequestHeaderLayer::custom(auths.cached.clone())),
            || fx.request(),
        ),
    ));

    // 4. Refusals that must not reach RSA.
    for (name, token) in [
        ("refuse_malformed", "abc.def"),
        ("refuse_wrong_aud", fx.wrong_aud.as_str()),
        ("refuse_expired", fx.expired.as_str()),
        ("refuse_unknown_user", fx.unknown_user.as_str()),
    ] {
        cases.push((
            name,
            timed(move || {
                black_box(auths.uncached.verify(black_box(token)).unwrap_err());
            }),
        ));
    }

    // 5. The registry's size, measured back to back.
    cases.push((
        "verify_uncached_1_user",
        timed(|| {
            black_box(auths.uncached.verify(black_box(&fx.token)).expect("ok"));
        }),
    ));
    cases.push((
        "verify_uncached_10000_users",
        timed(|| {
            black_box(
                auths
                    .users_10000
                    .verify(black_box(&fx.token_user_5000))
                    .expect("ok"),
            );
        }),
    ));

    // 6. A token the cache has not seen, into a full cache and into an empty
    // one (see `Pool`), measured back to back. Both run the same loop.
    cases.push((
        "verify_uncached_full_cache",
        Box::new(|n| {
            let next = &auths.full_cache_next;
            let from = next.load(Ordering::Relaxed);
            let timer = Timer::start();
            for index in from..from + n as usize {
                fx.pool.verify(&auths.full_cache, index);
            }
            let took = timer.elapsed();
            next.store((from + n as usize) % POOL_SIZE, Ordering::Relaxed);
            took
        }),
    ));
    let mut next = 0;
    cases.push((
        "verify_uncached_empty_cache",
        Box::new(move |n| {
            let mut took = Duration::ZERO;
            let mut left = n;
            while left > 0 {
                let size = left.min(EMPTY_CACHE_TOKENS);
                let auth = Fixture::auth(&fx.one_user, true);
                let from = next;
                let timer = Timer::start();
                for index in from..from + size as usize {
                    fx.pool.verify(&auth, index);
                }
                took += timer.elapsed();
                assert_eq!(
                    auth.status().cached_tokens,
                    size as usize,
                    "every token of the empty-cache case is a miss"
                );
                next = (from + size as usize) % POOL_SIZE;
                left -= size;
            }
            took
        }),
    ));

    // 7. Each workload on 1 thread, then at once on 2, back to back (see
    // `on_threads`).
    let threads = [(1, "floor_1_thread"), (2, "floor_2_threads")];
    for (threads, name) in threads {
        cases.push((
            name,
            Box::new(move |iters| {
                on_threads(threads, iters, || {
                    let key = fx.parsed_key();
                    move |n| {
                        for _ in 0..n {
                            key.verify_sig(black_box(&fx.signing_input), black_box(&fx.signature))
                                .expect("verifies");
                        }
                    }
                })
            }),
        ));
    }
    let threads = [
        (1, "verify_uncached_1_thread"),
        (2, "verify_uncached_2_threads"),
    ];
    for (threads, name) in threads {
        cases.push((
            name,
            Box::new(move |iters| {
                on_threads(threads, iters, || {
                    move |n| {
                        for _ in 0..n {
                            black_box(auths.uncached.verify(black_box(&fx.token)).expect("ok"));
                        }
                    }
                })
            }),
        ));
    }
    // `layer_cached` on 1 or 2 threads. Each thread builds its own service (and its
    // own current-thread runtime) in its setup, as each worker of a server holds
    // its own service: the threads share only the `SystemAuth` (its cache, its
    // registry), which is what this crate is responsible for. Cloning one shared
    // Router in every iteration instead would make both threads hammer the same
    // `Arc` refcount, which is axum's contention, not this crate's.
    let threads = [(1, "layer_cached_1_thread"), (2, "layer_cached_2_threads")];
    for (threads, name) in threads {
        cases.push((
            name,
            Box::new(move |iters| {
                on_threads(threads, iters, || {
                    let rt = current_thread_runtime();
                    let app = protected(&auths.cached);
                    move |n| {
                        rt.block_on(async {
                            for _ in 0..n {
                                let Ok(response) = app.clone().oneshot(fx.request()).await;
                                black_box(response);
                            }
                        })
                    }
                })
            }),
        ));
    }
    cases
}

/// The order of the cases within a round of the interleaved pass: the cases that a
/// target compares sit next to each other (the floor first, next to the cases
/// compared with it; `jwt_authorizer_layer` between the two layer cases it is
/// compared with; `layer_cached` next to `router_no_layer`; the full cache next to
/// the empty one; each 1-thread case next to its 2-thread case), so that each
/// ratio's two times are taken a few milliseconds apart. `verify_cached` is in no
/// target and only sits where it parts no pair.
const INTERLEAVED_ORDER: &[&str] = &[
    "floor",
    "verify_uncached",
    "layer_uncached",
    "jwt_authorizer_layer",
    "layer_cached",
    "router_no_layer",
    "router_noop_layer_per_route",
    "layer_cached_per_route",
    "validate_request_cached_per_route",
    "layer_uncached_per_route",
    "verify_cached",
    "refuse_malformed",
    "refuse_wrong_aud",
    "refuse_expired",
    "refuse_unknown_user",
    "verify_uncached_1_user",
    "verify_uncached_10000_users",
    "verify_uncached_full_cache",
    "verify_uncached_empty_cache",
    "floor_1_thread",
    "floor_2_threads",
    "verify_uncached_1_thread",
    "verify_uncached_2_threads",
    "layer_cached_1_thread",
    "layer_cached_2_threads",
];

/// How many operations of `routine` take about `slice` (on the bench's clock).
///
/// A doubling run from 1 operation until one run takes at least `slice / 4`
/// (16 operations for a ~45 µs case, a few thousand for a ~150 ns one), then one
/// run of the size that suggests, whose time sets the final size: the estimate
/// then comes from a run as long as a slice, not from the first, coldest calls.
fn slice_size(routine: &mut Routine<'_>, slice: Duration) -> u64 {
    let size_for = |n: u64, took: Duration| {
        let per_op = took.as_secs_f64().max(1e-9) / n as f64;
        ((slice.as_secs_f64() / per_op) as u64).clamp(1, 1 << 32)
    };
    let mut n: u64 = 1;
    let took = loop {
        let took = routine(n);
        if took >= slice / 4 || n >= 1 << 30 {
            break took;
        }
        n *= 2;
    };
    let n = size_for(n, took);
    size_for(n, routine(n))
}

/// What a slice of the interleaved pass measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// A case, with the speed-ups as setting `setting` (an index into the pass's
    /// settings) says.
    Case { setting: usize, name: &'static str },
    /// Pair `pair` of [`SPEEDUP_PAIRS`], with its speed-up on or off.
    Pair { pair: usize, on: bool },
}

/// The slices of one round, in order: every case of [`INTERLEAVED_ORDER`] with
/// every speed-up on, then the [`SPEEDUP_PAIRS`] (with, without), then every case
/// again with each speed-up of `settings` off in turn.
fn round_order(settings: &[Setting]) -> Vec<Slot> {
    let mut order = Vec::new();
    for (setting, _) in settings.iter().enumerate() {
        order.extend(
            INTERLEAVED_ORDER
                .iter()
                .map(|&name| Slot::Case { setting, name }),
        );
        if setting == 0 && settings.len() > 1 {
            for pair in 0..SPEEDUP_PAIRS.len() {
                order.push(Slot::Pair { pair, on: true });
                order.push(Slot::Pair { pair, on: false });
            }
        }
    }
    order
}

/// The interleaved pass: every slice runs for about `slice` in turn, round after
/// round, so that a change in the machine's load hits all cases alike. The slices
/// run in their order in even rounds and in the reverse order in odd rounds (A B,
/// then B A): a steady drift in the machine's speed then favours each case of a
/// pair as often as the other. Returns each round's time per operation of each
/// slice, in nanoseconds, in the slices' order; the targets are then checked in
/// every round and the median taken. Beside them, the same for the slices that
/// run on threads, by their CPU time (NaN for the others, see [`on_threads`]).
fn interleave(
    slices: &mut [Routine<'_>],
    rounds: usize,
    slice: Duration,
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let sizes: Vec<u64> = slices
        .iter_mut()
        .map(|routine| slice_size(routine, slice))
        .collect();
    let count = slices.len();
    let mut results = Vec::with_capacity(rounds);
    let mut cpu_results = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let mut times = vec![f64::NAN; count];
        let mut cpu_times = vec![f64::NAN; count];
        let mut run = |i: usize| {
            THREADS_CPU.set(None);
            let took = slices[i](sizes[i]);
            times[i] = took.as_secs_f64() * 1e9 / sizes[i] as f64;
            if let Some(cpu) = THREADS_CPU.take() {
                cpu_times[i] = cpu.as_secs_f64() * 1e9 / sizes[i] as f64;
            }
        };
        if round % 2 == 0 {
            (0..count).for_each(&mut run);
        } else {
            (0..count).rev().for_each(&mut run);
        }
        results.push(times);
        cpu_results.push(cpu_times);
    }
    (results, cpu_results)
}

/// Takes the case `name` out of `cases`.
fn take_case<'a>(cases: &mut Vec<(&'static str, Routine<'a>)>, name: &str) -> Routine<'a> {
    let at = cases
        .iter()
        .position(|c| c.0 == name)
        .unwrap_or_else(|| panic!("no case {name}"));
    cases.swap_remove(at).1
}

fn main() {
    let started = SystemTime::now();
    let fx = Fixture::new();
    let rt = current_thread_runtime();
    let jwt_authorizer = jwt_authorizer_app(&rt, &fx.key.public_pem);
    let auths_on = Auths::build(&fx, Setting::ALL_ON);
    fx.check(&auths_on, &rt, &jwt_authorizer);
    let mut all_on = cases(&fx, &auths_on, &rt, &jwt_authorizer);
    assert_eq!(
        all_on.iter().map(|c| c.0).collect::<Vec<_>>(),
        report::CASES.iter().map(|c| c.name).collect::<Vec<_>>(),
        "the cases and report::CASES list the same names in the same order"
    );
    let mut in_order: Vec<&str> = INTERLEAVED_ORDER.to_vec();
    in_order.sort_unstable();
    let mut names: Vec<&str> = all_on.iter().map(|c| c.0).collect();
    names.sort_unstable();
    assert_eq!(in_order, names, "INTERLEAVED_ORDER lists every case once");

    // With no arguments but cargo's `--bench`: the whole run, then the interleaved
    // pass. With a filter or any criterion option, criterion alone.
    let whole_run = std::env::args().skip(1).all(|arg| arg == "--bench");
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(30)
        // The bootstrap runs single-threaded here (no rayon); 10,000 resamples
        // keep the analysis to a fraction of a second per case.
        .nresamples(10_000)
        .configure_from_args();
    for (name, routine) in all_on.iter_mut() {
        c.bench_function(name, |b| b.iter_custom(&mut *routine));
    }
    c.final_summary();
    let dir = report::criterion_dir();
    let clock_name = match clock() {
        Clock::Wall => "wall",
        Clock::Cpu => "cpu",
    };
    if let Err(error) = std::fs::write(dir.join(report::CLOCK_FILE), clock_name) {
        eprintln!("cannot note the clock in {}: {error}", dir.display());
    }
    report::print_report(&dir, Some(started));
    if clock() == Clock::Cpu {
        println!(
            "Timed with the threads' CPU time (BENCH_CLOCK=cpu): 2-thread cases count CPU time only, not waiting.\n"
        );
    }

    let rounds = env_number("BENCH_INTERLEAVED_ROUNDS").unwrap_or(if whole_run { 150 } else { 0 });
    if rounds == 0 {
        if whole_run {
            println!(
                "Interleaved pass skipped (BENCH_INTERLEAVED_ROUNDS=0): the only results are \
                 criterion's above, whose cases were measured one after another.\n"
            );
        }
        return;
    }
    let slice = Duration::from_millis(env_number("BENCH_INTERLEAVED_SLICE_MS").unwrap_or(4));
    let speedups = env_number("BENCH_SPEEDUPS").unwrap_or(1) != 0;
    let mut settings = vec![Setting::ALL_ON];
    if speedups {
        settings.extend(SPEEDUPS.iter().map(|speedup| Setting {
            off: std::slice::from_ref(speedup),
        }));
        settings.extend(TOGETHER.iter().map(|&off| Setting { off }));
    }
    // Each setting's SystemAuths, built while it is in force.
    let auths_off: Vec<Auths> = settings[1..]
        .iter()
        .map(|&setting| Auths::build(&fx, setting))
        .collect();
    let auths = |setting: usize| match setting {
        0 => &auths_on,
        k => &auths_off[k - 1],
    };
    let order = round_order(&settings);
    let mut by_setting: Vec<Vec<(&'static str, Routine<'_>)>> = vec![all_on];
    by_setting.extend((1..settings.len()).map(|k| cases(&fx, auths(k), &rt, &jwt_authorizer)));
    let mut slices: Vec<Routine<'_>> = Vec::with_capacity(order.len());
    for slot in &order {
        let routine = match *slot {
            Slot::Case { setting, name } => {
                switched(settings[setting], take_case(&mut by_setting[setting], name))
            }
            Slot::Pair { pair, on } => {
                let (speedup, name) = SPEEDUP_PAIRS[pair];
                let setting = if on {
                    0
                } else {
                    settings
                        .iter()
                        .position(|s| s.off == [speedup])
                        .expect("a setting per speed-up")
                };
                let mut cases = cases(&fx, auths(setting), &rt, &jwt_authorizer);
                switched(settings[setting], take_case(&mut cases, name))
            }
        };
        slices.push(routine);
    }
    println!(
        "Interleaved pass: {rounds} rounds, each case ~{slice:?} per round, the cases a target \
         compares side by side, every other round in reverse order{}.\n",
        if speedups {
            "; in each round, each speed-up's case with and without it, side by side, then \
             every case again with each speed-up off in turn"
        } else {
            " (speed-ups not measured: BENCH_SPEEDUPS=0)"
        }
    );
    let pass_started = Instant::now();
    let (times, cpu_times) = interleave(&mut slices, rounds as usize, slice);
    drop(slices);
    // Every speed-up on again, whatever happened (each slice already turned its
    // own back on).
    for speedup in SPEEDUPS {
        set_speedup(speedup, true);
    }
    let pass_took = pass_started.elapsed();
    println!("Interleaved pass took {:.1} s.\n", pass_took.as_secs_f64());

    // Each round's times by setting and case, and by pair.
    let mut per_setting = vec![vec![BTreeMap::new(); times.len()]; settings.len()];
    let mut per_pair = vec![vec![(f64::NAN, f64::NAN); times.len()]; SPEEDUP_PAIRS.len()];
    for (round, times) in times.iter().enumerate() {
        for (slot, &time) in order.iter().zip(times) {
            match *slot {
                Slot::Case { setting, name } => {
                    per_setting[setting][round].insert(name, time);
                }
                Slot::Pair { pair, on: true } => per_pair[pair][round].0 = time,
                Slot::Pair { pair, on: false } => per_pair[pair][round].1 = time,
            }
        }
    }
    let results = &per_setting[0];
    println!("{}", report::interleaved_cases_table(results));
    println!("## Verdict (interleaved pass, medians over {rounds} rounds)\n");
    println!(
        "The criterion tables above are per case and sequential: each case was measured on \
         its own, minutes apart from the others, so their ratios carry the machine's drift \
         in between. The verdict below comes from the interleaved pass: each target is \
         checked in every round on times taken milliseconds apart, and its median over the \
         rounds decides; p25..p75 is the interquartile range of the per-round values.\n"
    );
    println!("{}", report::interleaved_targets_table(results));
    println!("{}", report::per_route_table(results));
    if clock() == Clock::Wall {
        // The slices that ran on threads, every speed-up on, by their CPU time.
        let cpu_results: Vec<BTreeMap<&'static str, f64>> = cpu_times
            .iter()
            .map(|times| {
                order
                    .iter()
                    .zip(times)
                    .filter_map(|(slot, &time)| match *slot {
                        Slot::Case { setting: 0, name } if !time.is_nan() => Some((name, time)),
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        println!("{}", report::cpu_scaling_table(&cpu_results));
    }
    if !speedups {
        return;
    }

    println!("## The hand-written speed-ups (interleaved pass, medians over {rounds} rounds)\n");
    println!(
        "with and without: each speed-up's case with every speed-up on and with that one \
         off, in slices side by side in every round; ratio: the median over the rounds of \
         without ÷ with (above 1: the speed-up saves time). Targets that fail without it: \
         the targets whose median fails over the rounds in which every case ran again with \
         that speed-up off (the table after this one gives them all).\n"
    );
    let pairs: Vec<report::SpeedupPair<'_>> = SPEEDUP_PAIRS
        .iter()
        .zip(&per_pair)
        .map(|(&(speedup, case), rounds)| report::SpeedupPair {
            speedup: format!("{speedup:?}"),
            case,
            rounds,
        })
        .collect();
    let off: Vec<(String, &[BTreeMap<&'static str, f64>])> = settings[1..]
        .iter()
        .zip(&per_setting[1..])
        .map(|(setting, rounds)| (setting.name(), rounds.as_slice()))
        .collect();
    println!("{}", report::speedup_table(&pairs, results, &off));
    println!("Every target with every speed-up on, and with each setting off:\n");
    println!("{}", report::targets_by_setting_table(results, &off));
}

/// A whole number from the environment variable `name`, if set (panics if it is
/// not a number, rather than silently using the default).
fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?}: expected a whole number")),
    )
}
