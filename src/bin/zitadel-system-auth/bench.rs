//! `bench`: how many system-user calls per second one core of this machine takes.
//!
//! Four cases, as `benches/verify.rs` measures them, without criterion:
//! - `floor`: one RSA verification with aws-lc-rs (`verify_sig`, the key parsed
//!   once): nothing can verify a new token faster;
//! - `verify, uncached`: [`SystemAuth::verify`] with the token cache off, every
//!   check and the RSA operation, as for each new token;
//! - `verify, cached`: the same token again, served from the token cache;
//! - `layer, cached`: `GET /` with the token through the layer around an axum
//!   Router, on a current-thread tokio runtime (one per thread, as each worker of
//!   a server holds its own service), the requests built untimed just before.
//!
//! Each case runs on 1 to N threads at once. The measurement is interleaved: round
//! after round, every case and thread count runs for one slice in turn (every
//! other round in reverse order), so each ratio compares figures taken
//! milliseconds apart and a change in the machine's load hits all cases alike.
//! `--seconds` is the measuring time of each case and thread count, spread over
//! the rounds; the figures printed are medians over the rounds.
//!
//! Per core: verifications ÷ the CPU time of the threads that made them (the
//! threads' own CPU clocks, so time the machine gave to other work is not
//! counted). All threads: the sum over the threads of verifications ÷ that
//! thread's wall time, which is what the machine delivered with N threads at once
//! (lower than N × per core when threads wait or share a core). × floor: the
//! per-core rate ÷ the floor's in the same round and on as many threads.

mod measure;

use std::{
    io::IsTerminal as _,
    path::PathBuf,
    time::{Duration, SystemTime},
};

use aws_lc_rs::{
    encoding::{AsDer, Pkcs8V1Der},
    rsa::{KeyPair, KeySize},
    signature::{KeyPair as _, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256},
};
use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use clap::builder::TypedValueParser as _;
use indicatif::{ProgressBar, ProgressStyle};
use zitadel_system_auth::{
    ConfigError, SystemAuth,
    mint::{Mint, mint},
};

use self::measure::{Case, Row, Subject, measure};
use crate::{
    args::{EXIT_OK, EXIT_REFUSED, EXIT_USAGE},
    format::thousands,
};

/// Measure verifications per second per core on this machine.
///
/// With fresh 2048-, 3072- and 4096-bit keys (--bits), or with a configured user
/// and its private key (--config, --key, --issuer): the raw RSA verification (the
/// floor), `verify` uncached, `verify` cached and the layer cached, on 1 to N
/// threads, interleaved so that each ratio compares figures taken close together.
/// Prints verifications per second per core and the ratio to the floor.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Measure with this config's user and key instead of fresh keys (with --key
    /// and --issuer).
    #[arg(long, value_name = "FILE", requires_all = ["key", "issuer"])]
    pub config: Option<PathBuf>,
    /// The user's RSA private key, to sign the token measured (with --config).
    #[arg(long, value_name = "PEM", requires_all = ["config", "issuer"])]
    pub key: Option<PathBuf>,
    /// The user id (with --config).
    #[arg(long, value_name = "ID", requires_all = ["config", "key"])]
    pub issuer: Option<String>,
    /// Measure on 1 to N threads at once [default: the CPUs available].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: Option<u32>,
    /// Measuring time of each case and thread count, in seconds.
    #[arg(long, value_name = "S", default_value_t = 1.0, value_parser = seconds)]
    pub seconds: f64,
    /// The sizes of the fresh keys, in bits.
    #[arg(long, value_name = "BITS", value_delimiter = ',', default_values_t = [2048, 3072, 4096],
          conflicts_with = "config",
          value_parser = clap::builder::PossibleValuesParser::new(["2048", "3072", "4096", "8192"])
              .map(|bits| bits.parse::<u32>().unwrap_or(2048)))]
    pub bits: Vec<u32>,
}

fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 3600.0 => Ok(s),
        _ => Err("a number of seconds above 0 and at most 3600".to_owned()),
    }
}

/// The user of the fresh keys' configs.
const USER: &str = "system-user-1";
/// The audience of the fresh keys' configs.
const AUDIENCE: &str = "https://custom-domain.com";
/// The longest slice of a round.
const SLICE: Duration = Duration::from_millis(25);
/// Why a subject could not be set up, and the exit status that goes with it.
struct Failure(u8, String);

/// Measures as `args` says; prints the results; the exit status.
pub fn run(args: &BenchArgs) -> u8 {
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(256) as u32)
    });
    let rounds = ((args.seconds / SLICE.as_secs_f64()).round() as usize).max(3);
    let slice = Duration::from_secs_f64(args.seconds / rounds as f64);
    let subjects: Vec<Box<dyn Fn() -> Result<Subject, Failure>>> =
        match (&args.config, &args.key, &args.issuer) {
            (Some(config), Some(key), Some(issuer)) => {
                let (config, key, issuer) = (config.clone(), key.clone(), issuer.clone());
                vec![Box::new(move || configured(&config, &key, &issuer))]
            }
            _ => args
                .bits
                .iter()
                .map(|&bits| {
                    Box::new(move || fresh(bits)) as Box<dyn Fn() -> Result<Subject, Failure>>
                })
                .collect(),
        };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let on = if threads == 1 {
        "on 1 thread".to_owned()
    } else {
        format!("on 1 to {threads} threads at once")
    };
    println!(
        "Verifications per second on this machine ({cpus} CPUs), {on}, {} s per case and \
         thread count in {rounds} interleaved rounds; medians over the rounds.",
        args.seconds
    );
    println!(
        "per core: verifications / CPU time of the measuring threads; all threads: summed \
         over the threads, by wall time; × floor: per core / the floor's per core, same round."
    );
    let terminal = std::io::stderr().is_terminal();
    let slices_per_subject = (rounds * Case::ALL.len() * threads as usize) as u64;
    let progress = if terminal {
        let bar = ProgressBar::new(slices_per_subject * subjects.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg:<32} [{bar:30}] {percent:>3}% {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut status = EXIT_OK;
    for make in &subjects {
        progress.set_message("making the key and token");
        let subject = match make() {
            Ok(subject) => subject,
            Err(Failure(code, message)) => {
                progress.finish_and_clear();
                eprintln!("error: {message}");
                return code;
            }
        };
        if !terminal {
            eprintln!(
                "bench: {}: {} rounds of {} slices of {:.1} ms",
                subject.label,
                rounds,
                Case::ALL.len() * threads as usize,
                slice.as_secs_f64() * 1e3
            );
        }
        progress.set_message(format!("RSA-{}: calibrating", subject.bits));
        let table = measure(
            &subject,
            threads,
            rounds,
            slice,
            &|| progress.inc(1),
            &|message| {
                progress.set_message(format!("RSA-{}: {message}", subject.bits));
            },
        );
        progress.suspend(|| print_table(&subject, &table));
        if table.is_empty() {
            status = EXIT_REFUSED;
        }
    }
    progress.finish_and_clear();
    status
}

/// A fresh key of `bits`, a one-user config with it as `KeyData`, a token.
fn fresh(bits: u32) -> Result<Subject, Failure> {
    let size = match bits {
        2048 => KeySize::Rsa2048,
        3072 => KeySize::Rsa3072,
        4096 => KeySize::Rsa4096,
        _ => KeySize::Rsa8192,
    };
    let failed = |what: &str| Failure(EXIT_REFUSED, format!("cannot {what} a {bits}-bit key"));
    let pair = KeyPair::generate(size).map_err(|_| failed("generate"))?;
    let private = AsDer::<Pkcs8V1Der>::as_der(&pair).map_err(|_| failed("encode"))?;
    let public = pair.public_key().as_der().map_err(|_| failed("encode"))?;
    let private_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", private.as_ref().to_vec()));
    let public_pem = pem::encode(&pem::Pem::new("PUBLIC KEY", public.as_ref().to_vec()));
    let yaml = format!(
        "ExternalDomain: custom-domain.com\nExternalPort: 443\nExternalSecure: true\n\
         SystemAPIUsers:\n  - {USER}:\n      KeyData: {}\n",
        STANDARD.encode(public_pem)
    );
    let build = |cache: bool| {
        SystemAuth::builder()
            .config_yaml(&yaml)
            .token_cache(cache)
            .watch(false)
            .build()
            .map_err(|error| Failure(EXIT_REFUSED, error.to_string()))
    };
    let (uncached, cached) = (build(false)?, build(true)?);
    let token = mint(
        private_pem.as_bytes(),
        &Mint::new(USER, AUDIENCE),
        SystemTime::now(),
    )
    .map_err(|error| Failure(EXIT_REFUSED, error.to_string()))?;
    subject(
        format!("RSA-{bits} (fresh key, {USER})"),
        token,
        pair.public_key().as_ref().to_vec(),
        uncached,
        cached,
    )
}

/// The configured user `issuer`, a token signed with `key` for the config's
/// audience.
fn configured(config: &PathBuf, key: &PathBuf, issuer: &str) -> Result<Subject, Failure> {
    let build = |cache: bool| {
        SystemAuth::builder()
            .config_file(config)
            .token_cache(cache)
            .watch(false)
            .build()
            .map_err(|error| {
                let code = match error {
                    ConfigError::Io { .. } => EXIT_USAGE,
                    _ => EXIT_REFUSED,
                };
                Failure(code, error.to_string())
            })
    };
    let (uncached, cached) = (build(false)?, build(true)?);
    let private_pem = std::fs::read(key).map_err(|error| {
        Failure(
            EXIT_USAGE,
            format!("cannot read {}: {error}", key.display()),
        )
    })?;
    let audience = uncached.audiences().first().cloned().unwrap_or_default();
    let token = mint(
        &private_pem,
        &Mint::new(issuer, &audience),
        SystemTime::now(),
    )
    .map_err(|error| Failure(EXIT_REFUSED, format!("{}: {error}", key.display())))?;
    let public_pkcs1 = public_half(&private_pem).ok_or_else(|| {
        Failure(
            EXIT_REFUSED,
            format!("{}: not an RSA private key", key.display()),
        )
    })?;
    let mut subject = subject(
        format!("{issuer} from {}", config.display()),
        token,
        public_pkcs1,
        uncached,
        cached,
    )?;
    subject.label = format!("RSA-{} ({})", subject.bits, subject.label);
    Ok(subject)
}

/// The PKCS#1 public key of the one RSA private key in `pem_text`.
fn public_half(pem_text: &[u8]) -> Option<Vec<u8>> {
    let blocks = pem::parse_many(pem_text).ok()?;
    let pair = blocks.iter().find_map(|block| match block.tag() {
        "PRIVATE KEY" => KeyPair::from_pkcs8(block.contents()).ok(),
        "RSA PRIVATE KEY" => KeyPair::from_der(block.contents()).ok(),
        _ => None,
    })?;
    Some(pair.public_key().as_ref().to_vec())
}

/// Checks that every case does what its name says, once, before any timing.
fn subject(
    label: String,
    token: String,
    public_pkcs1: Vec<u8>,
    uncached: SystemAuth,
    cached: SystemAuth,
) -> Result<Subject, Failure> {
    let refused = |why: String| {
        Failure(
            EXIT_REFUSED,
            format!("the token signed with --key is refused: {why}"),
        )
    };
    let explanation = uncached.explain(&token);
    if let Err(error) = explanation.verdict() {
        return Err(refused(format!(
            "{} ({}); `zitadel-system-auth explain` says why",
            error,
            error.reason()
        )));
    }
    cached
        .verify(&token)
        .map_err(|error| refused(error.to_string()))?;
    let (signing_input, signature) = token
        .rsplit_once('.')
        .ok_or_else(|| refused("not three parts".to_owned()))?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| refused("signature".to_owned()))?;
    let floor = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public_pkcs1)
        .map_err(|_| refused("the public key does not parse".to_owned()))?;
    floor
        .verify_sig(signing_input.as_bytes(), &signature)
        .map_err(|_| refused("the raw RSA verification fails".to_owned()))?;
    let bits = signature.len() * 8;
    Ok(Subject {
        label,
        bits,
        signing_input: signing_input.as_bytes().to_vec(),
        signature,
        token,
        public_pkcs1,
        uncached,
        cached,
    })
}

/// The median and the middle half of `values`.
fn quartiles(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.5), at(0.75))
}

fn ratio(value: f64) -> String {
    if value >= 10.0 {
        format!("{value:.0}×")
    } else {
        format!("{value:.3}×")
    }
}

fn print_table(subject: &Subject, rows: &[Row]) {
    println!();
    println!("{}, {}-byte token", subject.label, subject.token.len());
    if rows.is_empty() {
        println!("  not measured: the key does not parse for the floor");
        return;
    }
    println!(
        "  {:<26} {:>7} {:>17} {:>20} {:>9}  (p25..p75)",
        "case", "threads", "per core (CPU)", "all threads (wall)", "× floor"
    );
    for row in rows {
        let (_, per_core, _) = quartiles(&row.per_core);
        let (_, all, _) = quartiles(&row.all_threads);
        let (low, mid, high) = quartiles(&row.ratio);
        let spread = if row.case == Case::Floor {
            String::new()
        } else {
            format!("({}..{})", ratio(low), ratio(high))
        };
        println!(
            "  {:<26} {:>7} {:>15}/s {:>18}/s {:>9}  {spread}",
            row.case.name(),
            row.threads,
            thousands(per_core),
            thousands(all),
            ratio(mid),
        );
    }
    let figure = |case: Case| {
        rows.iter()
            .find(|row| row.case == case && row.threads == 1)
            .map_or(0.0, |row| quartiles(&row.per_core).1)
    };
    println!(
        "  one core takes about {} new tokens a second (verify, uncached) and {} repeated \
         tokens through the layer (cached)",
        thousands(figure(Case::VerifyUncached)),
        thousands(figure(Case::LayerCached))
    );
}
