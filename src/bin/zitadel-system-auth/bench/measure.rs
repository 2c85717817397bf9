//! The interleaved measurement: the cases, one slice of a case on some threads, and
//! the rounds that alternate them (see the parent module for what is measured).

use std::{
    hint::black_box,
    sync::Barrier,
    time::{Duration, Instant},
};

use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header::AUTHORIZATION},
    routing::get,
};
use tower_layer::Layer as _;
use tower_service::Service;
use zitadel_system_auth::{SystemAuth, SystemAuthService};

/// Requests built ahead of a timed stretch of the layer case: few, so each is
/// sent soon after it was built, as a server hands over a request it just parsed.
const REQUEST_BATCH: u64 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Case {
    Floor,
    VerifyUncached,
    VerifyCached,
    LayerCached,
}

impl Case {
    pub(super) const ALL: [Case; 4] = [
        Case::Floor,
        Case::VerifyUncached,
        Case::VerifyCached,
        Case::LayerCached,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Case::Floor => "floor (RSA verification)",
            Case::VerifyUncached => "verify, uncached",
            Case::VerifyCached => "verify, cached",
            Case::LayerCached => "layer, cached",
        }
    }
}

/// What is measured: a key, a token, and the verifiers.
pub(super) struct Subject {
    pub(super) label: String,
    pub(super) bits: usize,
    pub(super) token: String,
    pub(super) signing_input: Vec<u8>,
    pub(super) signature: Vec<u8>,
    /// PKCS#1 `RSAPublicKey` DER, what aws-lc-rs parses for RSA.
    pub(super) public_pkcs1: Vec<u8>,
    pub(super) uncached: SystemAuth,
    pub(super) cached: SystemAuth,
}

/// One slice of one case on some threads: verifications, and the threads' summed
/// CPU time and per-thread rates by wall time.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    ops: u64,
    cpu: Duration,
    /// Σ over the threads of (verifications ÷ that thread's wall time).
    wall_rate: f64,
}

impl Sample {
    fn per_core(&self) -> f64 {
        self.ops as f64 / self.cpu.as_secs_f64().max(1e-9)
    }
}

/// The figures of one case on some threads, over the rounds.
pub(super) struct Row {
    pub(super) case: Case,
    pub(super) threads: u32,
    pub(super) per_core: Vec<f64>,
    pub(super) all_threads: Vec<f64>,
    pub(super) ratio: Vec<f64>,
}

/// The interleaved measurement of every case on 1 to `threads` threads.
pub(super) fn measure(
    subject: &Subject,
    threads: u32,
    rounds: usize,
    slice: Duration,
    tick: &dyn Fn(),
    say: &dyn Fn(&str),
) -> Vec<Row> {
    let floor = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &subject.public_pkcs1);
    let Ok(floor) = floor else {
        return Vec::new();
    };
    let app = subject.cached.layer().layer(router());
    let bearer = format!("Bearer {}", subject.token);
    let work = Work {
        subject,
        floor: &floor,
        app: &app,
        bearer: &bearer,
    };
    // Each case's slice size, from a 1-thread run.
    let sizes: Vec<u64> = Case::ALL
        .iter()
        .map(|&case| slice_size(&work, case, slice))
        .collect();
    let order: Vec<(usize, u32)> = (1..=threads)
        .flat_map(|t| (0..Case::ALL.len()).map(move |c| (c, t)))
        .collect();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::with_capacity(rounds); order.len()];
    for round in 0..rounds {
        say(&format!("round {} of {rounds}", round + 1));
        let mut run = |i: usize| {
            let (case, t) = order[i];
            samples[i].push(work.run(Case::ALL[case], t, sizes[case]));
            tick();
        };
        if round % 2 == 0 {
            (0..order.len()).for_each(&mut run);
        } else {
            (0..order.len()).rev().for_each(&mut run);
        }
    }
    order
        .iter()
        .enumerate()
        .map(|(i, &(case, t))| {
            let floor_index = order
                .iter()
                .position(|&(c, ft)| c == 0 && ft == t)
                .unwrap_or(0);
            Row {
                case: Case::ALL[case],
                threads: t,
                per_core: samples[i].iter().map(Sample::per_core).collect(),
                all_threads: samples[i].iter().map(|s| s.wall_rate).collect(),
                ratio: samples[i]
                    .iter()
                    .zip(&samples[floor_index])
                    .map(|(s, f)| s.per_core() / f.per_core())
                    .collect(),
            }
        })
        .collect()
}

/// How many operations of `case` on one thread take about `slice`: a doubling run
/// until one takes a quarter of a slice, then one run of the size that suggests.
fn slice_size(work: &Work<'_>, case: Case, slice: Duration) -> u64 {
    let size_for = |n: u64, took: Duration| {
        let per_op = took.as_secs_f64().max(1e-9) / n as f64;
        ((slice.as_secs_f64() / per_op) as u64).clamp(1, 1 << 32)
    };
    let mut n = 1;
    let took = loop {
        let sample = work.run(case, 1, n);
        let took = sample.cpu;
        if took >= slice / 4 || n >= 1 << 30 {
            break took;
        }
        n *= 2;
    };
    let n = size_for(n, took);
    size_for(n, work.run(case, 1, n).cpu)
}

/// What every slice needs.
struct Work<'a> {
    subject: &'a Subject,
    floor: &'a ParsedPublicKey,
    app: &'a SystemAuthService<Router>,
    bearer: &'a str,
}

impl Work<'_> {
    /// `case` on `threads` threads at once, `n` operations each.
    fn run(&self, case: Case, threads: u32, n: u64) -> Sample {
        let barrier = Barrier::new(threads as usize);
        let spans: Vec<(Duration, Duration)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| scope.spawn(|| self.on_this_thread(case, n, &barrier)))
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().unwrap_or_default())
                .collect()
        });
        Sample {
            ops: n * u64::from(threads),
            cpu: spans.iter().map(|(_, cpu)| *cpu).sum(),
            wall_rate: spans
                .iter()
                .map(|(wall, _)| n as f64 / wall.as_secs_f64().max(1e-9))
                .sum(),
        }
    }

    /// Sets up, waits for the other threads, runs `n` operations: (wall, CPU).
    fn on_this_thread(&self, case: Case, n: u64, barrier: &Barrier) -> (Duration, Duration) {
        let subject = self.subject;
        match case {
            Case::Floor => {
                barrier.wait();
                timed(|| {
                    for _ in 0..n {
                        let verified = self.floor.verify_sig(
                            black_box(&subject.signing_input),
                            black_box(&subject.signature),
                        );
                        black_box(verified.is_ok());
                    }
                })
            }
            Case::VerifyUncached | Case::VerifyCached => {
                let auth = if case == Case::VerifyCached {
                    &subject.cached
                } else {
                    &subject.uncached
                };
                barrier.wait();
                timed(|| {
                    for _ in 0..n {
                        black_box(auth.verify(black_box(&subject.token)).is_ok());
                    }
                })
            }
            Case::LayerCached => {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread().build() else {
                    barrier.wait();
                    return (Duration::ZERO, Duration::ZERO);
                };
                let app = self.app.clone();
                barrier.wait();
                runtime.block_on(async {
                    let (mut wall, mut cpu) = (Duration::ZERO, Duration::ZERO);
                    let mut left = n;
                    let mut batch = Vec::with_capacity(REQUEST_BATCH.min(n) as usize);
                    while left > 0 {
                        let size = left.min(REQUEST_BATCH);
                        batch.extend((0..size).map(|_| request(self.bearer)));
                        let (started, cpu_started) = (Instant::now(), thread_cpu());
                        for request in batch.drain(..) {
                            let mut service = app.clone();
                            let Ok(()) = std::future::poll_fn(|cx| {
                                Service::<Request<Body>>::poll_ready(&mut service, cx)
                            })
                            .await;
                            let Ok(response) = service.call(request).await;
                            black_box(response.status() == StatusCode::OK);
                        }
                        cpu += thread_cpu().saturating_sub(cpu_started);
                        wall += started.elapsed();
                        left -= size;
                    }
                    (wall, cpu)
                })
            }
        }
    }
}

/// Runs `work` and returns its wall and CPU time on this thread.
fn timed(work: impl FnOnce()) -> (Duration, Duration) {
    let (started, cpu_started) = (Instant::now(), thread_cpu());
    work();
    let cpu = thread_cpu().saturating_sub(cpu_started);
    (started.elapsed(), cpu)
}

/// The CPU time this thread has used.
fn thread_cpu() -> Duration {
    cpu_time::ThreadTime::now().as_duration()
}

/// `GET /` answering "ok": the layer goes around it, as around a service's Router.
fn router() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .with_state(())
}

fn request(bearer: &str) -> Request<Body> {
    let mut request = Request::new(Body::empty());
    if let Ok(value) = bearer.parse() {
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    request
}
