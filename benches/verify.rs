//! What a request costs: this crate against the RSA operation it cannot avoid, and
//! against jwt-authorizer, in one run so that the ratios hold on a noisy machine.
//!
//! `cargo bench --bench verify` runs every case with criterion (about 3 minutes on
//! 2 cores) and prints a Markdown table and each target with PASS or FAIL, read
//! back from criterion's results (the mean time per operation): "criterion means,
//! cases measured one after another". Criterion measures each case on its own,
//! so two cases a target compares are measured minutes apart, and on a busy
//! machine their ratio carries whatever the load did in between.
//!
//! It then runs the interleaved pass (see `interleave`), whose targets are the
//! verdict of the run, printed last under "Verdict (interleaved pass, medians over
//! N rounds)":
//! - every case runs for a slice of about 4 ms in turn, round after round, 150
//!   rounds (15 to 20 s on a busy 2-core VM);
//! - within a round the cases a target compares run next to each other (see
//!   `INTERLEAVED_ORDER`: floor, verify_uncached, layer_uncached,
//!   jwt_authorizer_layer, layer_cached, router_no_layer, the per-route cases, the
//!   refusals, the two registry sizes, then each 1-thread case beside its 2-thread
//!   case), so each ratio's two times are taken milliseconds apart;
//! - every other round runs that order backwards (A B, then B A), so a steady
//!   drift in the machine's speed favours each side of a pair equally often;
//! - each target is checked in every round; its median over the rounds decides
//!   PASS or FAIL, printed with the interquartile range (p25..p75) of the
//!   per-round values and how many rounds passed. No round is dropped.
//!
//! `BENCH_INTERLEAVED_ROUNDS=N` sets the rounds (0 skips the pass) and
//! `BENCH_INTERLEAVED_SLICE_MS=N` the slice.
//!
//! `BENCH_CLOCK=cpu` times every case with the measuring threads' CPU time instead
//! of wall time (see `Clock`): on a machine busy with other work this removes most
//! of the noise, but the 2-thread cases then show CPU cost only (see `on_threads`).
//! Criterion keeps one result per case, so don't mix clocks between the runs a
//! report or chart is made from.
//!
//! Criterion takes one filter, a regular expression on the case names, to run some
//! cases only: `cargo bench --bench verify -- '^(floor|verify_uncached)$'`. The
//! report then marks results that come from an earlier run, and the interleaved
//! pass (which always runs every case) is skipped unless `BENCH_INTERLEAVED_ROUNDS`
//! asks for it. `cargo run --release --example bench_chart` draws `docs/bench.png`
//! from criterion's results and prints the tables again.
//!
//! The cases (see `common/report.rs` for the list and the targets):
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
//! - `refuse_*`: tokens that must be refused before any RSA (cache off).
//! - `verify_uncached_1_user`, `verify_uncached_10000_users`: the registry's size.
//! - `*_1_thread`, `*_2_threads`: the same operation on 1 or 2 threads at once
//!   (`layer_cached_*`: each thread with its own service, sharing the `SystemAuth`).

mod common;
#[path = "common/report.rs"]
mod report;

use std::{
    collections::BTreeMap,
    hint::black_box,
    sync::{Barrier, OnceLock},
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
use zitadel_system_auth::{
    AuthError, SystemAuth, SystemAuthService,
    error::{AudienceHint, Malformed},
};

use common::{AUD, BenchKey, USER};

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
    /// Holds the key file of the 10,000-user config.
    _dir: tempfile::TempDir,
    auth_uncached: SystemAuth,
    auth_cached: SystemAuth,
    auth_10000_users: SystemAuth,
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

        let one_user = common::config_with_key_data(USER, &key);
        let build = |yaml: &str, cache: bool| {
            SystemAuth::builder()
                .config_yaml(yaml)
                .token_cache(cache)
                .watch(false)
                .build()
                .expect("config loads")
        };
        let auth_uncached = build(&one_user, false);
        let auth_cached = build(&one_user, true);

        // 10,000 users sharing one key file, and `SystemAPIUsers` as one mapping
        // (the list form parses in quadratic time, see benches/reload.rs), so the
        // setup stays quick: each user still gets its own entry and parsed key.
        let dir = tempfile::tempdir().expect("temp dir");
        let shared = dir.path().join("shared.pub");
        std::fs::write(&shared, &key.public_pem).expect("write key");
        let started = Instant::now();
        let many = common::config_with_paths_map(
            (0..10_000).map(|i| (format!("system-user-{i}"), shared.as_path())),
        );
        let auth_10000_users = build(&many, false);
        assert_eq!(auth_10000_users.user_ids().len(), 10_000);
        eprintln!(
            "token: {} bytes; 10,000-user registry built in {:.2?}",
            token.len(),
            started.elapsed()
        );

        Fixture {
            bearer: format!("Bearer {token}"),
            key,
            token,
            signing_input,
            signature,
            wrong_aud,
            expired,
            unknown_user,
            token_user_5000,
            _dir: dir,
            auth_uncached,
            auth_cached,
            auth_10000_users,
        }
    }

    /// The key parsed once, as `floor` uses it.
    fn parsed_key(&self) -> ParsedPublicKey {
        ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.key.public_pkcs1_der)
            .expect("parse key")
    }

    /// Checks, once, that every case does what its name says.
    fn check(&self, rt: &Runtime, jwt_authorizer: &JwtAuthorizerApp) {
        let key = self.parsed_key();
        key.verify_sig(&self.signing_input, &self.signature)
            .expect("floor verifies");
        for auth in [&self.auth_uncached, &self.auth_cached] {
            assert_eq!(auth.verify(&self.token).expect("verifies").user_id(), USER);
        }
        assert_eq!(
            self.auth_10000_users
                .verify(&self.token_user_5000)
                .expect("user 5000 verifies")
                .user_id(),
            "system-user-5000"
        );
        let auth = &self.auth_uncached;
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
        rt.block_on(async {
            let no_token = || Request::get("/").body(Body::empty()).expect("request");
            for auth in [&self.auth_uncached, &self.auth_cached] {
                assert_eq!(status(protected(auth), self.request()).await, 200);
                assert_eq!(status(protected(auth), no_token()).await, 401);
                assert_eq!(status(per_route(auth.layer()), self.request()).await, 200);
                assert_eq!(status(per_route(auth.layer()), no_token()).await, 401);
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

/// The status `app` answers `request` with.
async fn status<S>(app: S, request: Request<Body>) -> StatusCode
where
    S: tower::Service<
            Request<Body>,
            Response = axum::response::Response,
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
/// Router, ...), then all meet at a barrier, and each does `iters` operations. The
/// wall time is from the earliest thread's start to the latest thread's end.
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
fn on_threads<S, W>(threads: u32, iters: u64, setup: S) -> Duration
where
    S: Fn() -> W + Sync,
    W: FnOnce(u64),
{
    let barrier = Barrier::new(threads as usize);
    let spans: Vec<(Instant, Instant, Duration)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let work = setup();
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
    match clock() {
        Clock::Wall => {
            let start = spans.iter().map(|s| s.0).min().expect("a thread");
            let end = spans.iter().map(|s| s.1).max().expect("a thread");
            (end - start) / threads
        }
        Clock::Cpu => spans.iter().map(|s| s.2).sum::<Duration>() / threads / threads,
    }
}

/// Every case of the bench, in the order of `common/report.rs`.
fn cases<'a>(
    fx: &'a Fixture,
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
            black_box(fx.auth_uncached.verify(black_box(&fx.token)).expect("ok"));
        }),
    ));
    cases.push((
        "verify_cached",
        timed(|| {
            black_box(fx.auth_cached.verify(black_box(&fx.token)).expect("ok"));
        }),
    ));

    // 3. Through a Router.
    cases.push((
        "layer_uncached",
        through(rt, protected(&fx.auth_uncached), || fx.request()),
    ));
    cases.push((
        "layer_cached",
        through(rt, protected(&fx.auth_cached), || fx.request()),
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
        through(rt, per_route(fx.auth_uncached.layer()), || fx.request()),
    ));
    cases.push((
        "layer_cached_per_route",
        through(rt, per_route(fx.auth_cached.layer()), || fx.request()),
    ));
    cases.push((
        "router_noop_layer_per_route",
        through(rt, per_route(tower::layer::util::Identity::new()), || {
            fx.request()
        }),
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
                black_box(fx.auth_uncached.verify(black_box(token)).unwrap_err());
            }),
        ));
    }

    // 5. The registry's size, measured back to back.
    cases.push((
        "verify_uncached_1_user",
        timed(|| {
            black_box(fx.auth_uncached.verify(black_box(&fx.token)).expect("ok"));
        }),
    ));
    cases.push((
        "verify_uncached_10000_users",
        timed(|| {
            black_box(
                fx.auth_10000_users
                    .verify(black_box(&fx.token_user_5000))
                    .expect("ok"),
            );
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
                            black_box(fx.auth_uncached.verify(black_box(&fx.token)).expect("ok"));
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
                    let app = protected(&fx.auth_cached);
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
/// compared with; `layer_cached` next to `router_no_layer`; each 1-thread case
/// next to its 2-thread case), so that each ratio's two times are taken a few
/// milliseconds apart. `verify_cached` is in no target and only sits where it
/// parts no pair.
const INTERLEAVED_ORDER: &[&str] = &[
    "floor",
    "verify_uncached",
    "layer_uncached",
    "jwt_authorizer_layer",
    "layer_cached",
    "router_no_layer",
    "router_noop_layer_per_route",
    "layer_cached_per_route",
    "layer_uncached_per_route",
    "verify_cached",
    "refuse_malformed",
    "refuse_wrong_aud",
    "refuse_expired",
    "refuse_unknown_user",
    "verify_uncached_1_user",
    "verify_uncached_10000_users",
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

/// The interleaved pass: every case runs for about `slice` in turn, round after
/// round, so that a change in the machine's load hits all cases alike. The cases
/// run in [`INTERLEAVED_ORDER`] in even rounds and in the reverse order in odd
/// rounds (A B, then B A): a steady drift in the machine's speed then favours each
/// case of a pair as often as the other. Returns each round's time per operation
/// by case; the targets are then checked in every round and the median taken.
fn interleave(
    cases: &mut [(&'static str, Routine<'_>)],
    rounds: usize,
    slice: Duration,
) -> Vec<BTreeMap<&'static str, f64>> {
    let order: Vec<usize> = INTERLEAVED_ORDER
        .iter()
        .map(|name| {
            cases
                .iter()
                .position(|c| c.0 == *name)
                .expect("INTERLEAVED_ORDER names a case")
        })
        .collect();
    let mut distinct = order.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        (distinct.len(), order.len()),
        (cases.len(), cases.len()),
        "INTERLEAVED_ORDER lists every case once"
    );
    let sizes: Vec<u64> = cases
        .iter_mut()
        .map(|(_, routine)| slice_size(routine, slice))
        .collect();
    let mut results = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let mut times = BTreeMap::new();
        let mut run = |i: usize| {
            let (name, routine) = &mut cases[i];
            let took = routine(sizes[i]);
            times.insert(*name, took.as_secs_f64() * 1e9 / sizes[i] as f64);
        };
        if round % 2 == 0 {
            order.iter().for_each(|&i| run(i));
        } else {
            order.iter().rev().for_each(|&i| run(i));
        }
        results.push(times);
    }
    results
}

fn main() {
    let started = SystemTime::now();
    let fx = Fixture::new();
    let rt = current_thread_runtime();
    let jwt_authorizer = jwt_authorizer_app(&rt, &fx.key.public_pem);
    fx.check(&rt, &jwt_authorizer);
    let mut cases = cases(&fx, &rt, &jwt_authorizer);
    assert_eq!(
        cases.iter().map(|c| c.0).collect::<Vec<_>>(),
        report::CASES.iter().map(|c| c.name).collect::<Vec<_>>(),
        "the cases and report::CASES list the same names in the same order"
    );

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
    for (name, routine) in cases.iter_mut() {
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
    println!(
        "Interleaved pass: {rounds} rounds, each case ~{slice:?} per round, the cases a target \
         compares side by side, every other round in reverse order.\n"
    );
    let pass_started = Instant::now();
    let results = interleave(&mut cases, rounds as usize, slice);
    let pass_took = pass_started.elapsed();
    println!("Interleaved pass took {:.1} s.\n", pass_took.as_secs_f64());
    println!("{}", report::interleaved_cases_table(&results));
    println!("## Verdict (interleaved pass, medians over {rounds} rounds)\n");
    println!(
        "The criterion tables above are per case and sequential: each case was measured on \
         its own, minutes apart from the others, so their ratios carry the machine's drift \
         in between. The verdict below comes from the interleaved pass: each target is \
         checked in every round on times taken milliseconds apart, and its median over the \
         rounds decides; p25..p75 is the interquartile range of the per-round values.\n"
    );
    println!("{}", report::interleaved_targets_table(&results));
    println!("{}", report::per_route_table(&results));
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
