//! The `zitadel-system-auth` command (feature `cli`), run as the built binary on
//! temporary configs with real keys and real tokens: `check`, `explain` across
//! the whole refusal table (its verdict line is `verify`'s at the same fixed
//! clock), `mint` with ZITADEL's flag styles, `bench`, `completions`, help and
//! exit statuses. The library's `SystemAuth::explain` is held to `verify` on the
//! same table and on a few hundred random tokens.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::LazyLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use proptest::{
    collection::vec,
    prelude::*,
    sample::select,
    test_runner::{Config as ProptestConfig, TestRunner},
};
use serde_json::{Value, json};
use zitadel_system_auth::{
    Algorithm, AuthError, SystemAuth,
    explain::Explanation,
    key::PublicKey,
    mint::{Mint, mint},
    testing::{TEST_AUDIENCE, TestKey},
};

/// The clock of every `explain` case: 2023-11-14T22:13:20Z.
const T: u64 = 1_700_000_000;
const AUD: &str = TEST_AUDIENCE;
const USER: &str = "system-user-1";
/// Configured with `KeyData`.
const USER2: &str = "system-user-2";
/// Configured with a PKCS#1 key (read here, not by ZITADEL).
const PKCS1_USER: &str = "pkcs1-user";
/// Configured with a self-signed certificate valid from the real now for 2 days.
const CERT_USER: &str = "cert-user";

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn real_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

// ---- Running the binary ----

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn last_line(&self) -> &str {
        self.stdout.trim_end().lines().last().unwrap_or("")
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_zitadel-system-auth"));
    for var in [
        "ZITADEL_SYSTEMAPIUSERS",
        "ZITADEL_EXTERNALDOMAIN",
        "ZITADEL_EXTERNALPORT",
        "ZITADEL_EXTERNALSECURE",
    ] {
        command.env_remove(var);
    }
    command
}

fn finish(mut command: Command, stdin: Option<&str>) -> Run {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("the binary starts");
    let input = stdin.unwrap_or("").to_owned();
    let mut pipe = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(input.as_bytes());
    });
    let output = child.wait_with_output().expect("the binary ends");
    writer.join().expect("stdin written");
    Run {
        code: output.status.code().expect("an exit code"),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    }
}

fn run(args: &[&str]) -> Run {
    let mut command = binary();
    command.args(args);
    finish(command, None)
}

fn run_stdin(args: &[&str], stdin: &str) -> Run {
    let mut command = binary();
    command.args(args);
    finish(command, Some(stdin))
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let output = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the openssl command line is installed (see .ci/run)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

// ---- The fixture: keys, files, a config ----

struct Fixture {
    dir: tempfile::TempDir,
    keys: [TestKey; 4],
    other: TestKey,
    config: PathBuf,
    /// The certificate's NotBefore and NotAfter.
    cert_window: (u64, u64),
}

impl Fixture {
    fn key(&self, user: &str) -> &TestKey {
        match user {
            USER2 => &self.keys[1],
            PKCS1_USER => &self.keys[2],
            CERT_USER => &self.keys[3],
            _ => &self.keys[0],
        }
    }

    fn config(&self) -> &str {
        path_str(&self.config)
    }

    /// `verify` and `explain` as the binary sees them at `now`.
    fn auth_at(&self, now: u64) -> SystemAuth {
        SystemAuth::builder()
            .config_file(&self.config)
            .clock(move || at(now))
            .token_cache(false)
            .watch(false)
            .build()
            .expect("the fixture config loads")
    }

    /// A token of `user` valid at `now`, signed with its key.
    fn token(&self, user: &str, now: u64) -> zitadel_system_auth::testing::TokenBuilder<'_> {
        self.key(user)
            .token(user, AUD)
            .issued_at(at(now))
            .expires_at(at(now + 600))
    }
}

/// Four users: `Path`, `KeyData`, a PKCS#1 key (written by openssl), a certificate.
static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = [
        TestKey::generate(),
        TestKey::generate(),
        TestKey::generate(),
        TestKey::generate(),
    ];
    let path1 = keys[0].write(dir.path(), USER).expect("write key");
    let pkcs1_source = keys[2].write(dir.path(), PKCS1_USER).expect("write key");
    let pkcs1 = dir.path().join("pkcs1-user.rsa.pub");
    openssl(&[
        "rsa",
        "-pubin",
        "-in",
        path_str(&pkcs1_source),
        "-RSAPublicKey_out",
        "-out",
        path_str(&pkcs1),
    ]);
    keys[3].write(dir.path(), CERT_USER).expect("write key");
    let cert = dir.path().join("cert-user.crt");
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        path_str(&dir.path().join("cert-user.pem")),
        "-subj",
        "/CN=cert-user",
        "-days",
        "2",
        "-out",
        path_str(&cert),
    ]);
    let validity = PublicKey::from_pem(&std::fs::read(&cert).expect("read cert"))
        .expect("the certificate loads")
        .validity()
        .expect("a certificate has a window");
    let yaml = format!(
        "ExternalDomain: custom-domain.com\nExternalPort: 443\nExternalSecure: true\n\
         SystemAPIUsers:\n\
         \x20 - {USER}:\n      Path: {}\n\
         \x20 - {USER2}:\n      KeyData: {}\n\
         \x20     Memberships:\n        - MemberType: IAM\n          Roles: \"IAM_OWNER,IAM_USER_MANAGER\"\n          AggregateID: \"123456789012345678\"\n\
         \x20 - {PKCS1_USER}:\n      Path: {}\n\
         \x20 - {CERT_USER}:\n      Path: {}\n",
        path1.display(),
        keys[1].key_data(),
        pkcs1.display(),
        cert.display(),
    );
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, yaml).expect("write config");
    Fixture {
        dir,
        keys,
        other: TestKey::generate(),
        config,
        cert_window: (validity.not_before, validity.not_after),
    }
});

// ---- The refusal table ----

/// One token, the time it is checked at, and the check that must fail (`None`:
/// accepted).
struct Case {
    name: &'static str,
    token: String,
    now: u64,
    fails: Option<&'static str>,
}

fn case(name: &'static str, token: String, fails: Option<&'static str>) -> Case {
    Case {
        name,
        token,
        now: T,
        fails,
    }
}

/// A token of `USER` at `T` with exactly these header and payload texts.
fn raw(header: &str, payload: &str) -> String {
    FIXTURE
        .key(USER)
        .sign_raw(Algorithm::RS256, header, payload)
}

/// The claims of a valid token of `USER` at `T`, as JSON text, with `extra`
/// members appended as written.
fn claims_text(extra: &str) -> String {
    format!(
        r#"{{"iss":"{USER}","sub":"{USER}","aud":"{AUD}","iat":{T},"exp":{}{extra}}}"#,
        T + 600
    )
}

const HEADER: &str = r#"{"alg":"RS256","typ":"JWT"}"#;

fn b64(text: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

fn refusal_table() -> Vec<Case> {
    let fx = &*FIXTURE;
    let valid = fx.token(USER, T).build();
    let (input, signature) = valid.rsplit_once('.').expect("three parts");
    let mut flipped = signature.as_bytes().to_vec();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let flipped = format!("{input}.{}", String::from_utf8(flipped).expect("ASCII"));
    // The last character of a 256-byte signature carries 4 unused bits.
    let mut loose = signature.as_bytes().to_vec();
    let last = loose.len() - 1;
    let index = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        .iter()
        .position(|c| *c == loose[last])
        .expect("base64url");
    loose[last] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[index | 1];
    let loose = format!("{input}.{}", String::from_utf8(loose).expect("ASCII"));
    let deep = format!(
        r#"{{"iss":"{USER}","sub":"{USER}","aud":"{AUD}","iat":{T},"exp":{},"x":{}{}}}"#,
        T + 600,
        "[".repeat(70),
        "]".repeat(70)
    );
    let minted = mint(
        fx.key(USER).private_pem().as_bytes(),
        &Mint::new(USER, AUD),
        at(T),
    )
    .expect("mint");
    let (cert_from, cert_until) = fx.cert_window;

    let mut cases = vec![
        // Accepted.
        case("valid RS256", valid.clone(), None),
        case(
            "valid PS256",
            fx.token(USER, T).algorithm(Algorithm::PS256).build(),
            None,
        ),
        case("valid, from the library's mint", minted, None),
        case("valid, KeyData user", fx.token(USER2, T).build(), None),
        case(
            "valid, PKCS#1 key (ZITADEL cannot read it)",
            fx.token(PKCS1_USER, T).build(),
            None,
        ),
        case(
            "valid, typ in lower case",
            fx.token(USER, T).header("typ", "jwt").build(),
            None,
        ),
        case(
            "valid, nbf in the past",
            fx.token(USER, T).claim("nbf", T - 60).build(),
            None,
        ),
        case(
            "valid, aud an array",
            fx.token(USER, T)
                .claim("aud", json!(["https://other.example", AUD]))
                .build(),
            None,
        ),
        // Length and shape.
        case(
            "too long",
            format!("{valid}{}", "A".repeat(9000)),
            Some("length"),
        ),
        case("one part", "abcdefghijklmnop".to_owned(), Some("parts")),
        case("two parts", "abc.def".to_owned(), Some("parts")),
        case("four parts", format!("{valid}.abc"), Some("parts")),
        case(
            "space inside the payload",
            valid.replacen('.', ".e ", 1),
            Some("payload"),
        ),
        case(
            "header not base64url",
            valid.replacen("eyJ", "ey+", 1),
            Some("header"),
        ),
        case(
            "padded header",
            valid.replacen('.', "=.", 1),
            Some("header"),
        ),
        case(
            "payload not JSON",
            format!("{}.{}.{signature}", b64(HEADER), b64("not json")),
            Some("payload"),
        ),
        case("payload an array", raw(HEADER, "[1,2]"), Some("payload")),
        case(
            "header an array",
            raw("[]", &claims_text("")),
            Some("header"),
        ),
        case(
            "header without alg",
            raw(r#"{"typ":"JWT"}"#, &claims_text("")),
            Some("header"),
        ),
        case("signature flipped", flipped, Some("signature")),
        case(
            "signature with unused bits set",
            loose,
            Some("signature encoding"),
        ),
        case(
            "signature not base64url",
            format!("{input}.abc+def"),
            Some("signature encoding"),
        ),
        case("nesting too deep", raw(HEADER, &deep), Some("payload")),
        case(
            "invalid UTF-8 in the payload",
            format!(
                "{}.{}.{signature}",
                b64(HEADER),
                b64([&b"{\"iss\":\"\xff\"}"[..]].concat())
            ),
            Some("payload"),
        ),
        case(
            "a lone surrogate in the payload",
            raw(HEADER, &claims_text(r#","x":"\ud800""#)),
            Some("payload"),
        ),
        case(
            "a member twice in the payload",
            raw(HEADER, &claims_text(&format!(r#","iss":"{USER}""#))),
            Some("payload"),
        ),
        case(
            "a member twice in the header",
            raw(r#"{"alg":"RS256","alg":"RS256"}"#, &claims_text("")),
            Some("header"),
        ),
        case(
            "ISS beside iss",
            raw(HEADER, &claims_text(r#","ISS":"x""#)),
            Some("payload"),
        ),
        case(
            "ſub (U+017F) beside sub",
            raw(HEADER, &claims_text(r#","ſub":"x""#)),
            Some("payload"),
        ),
        // Header members.
        case(
            "jwk in the header",
            fx.token(USER, T)
                .header("jwk", json!({"kty": "RSA"}))
                .build(),
            Some("header"),
        ),
        case(
            "jku in the header",
            fx.token(USER, T)
                .header("jku", "https://evil.example/jwks")
                .build(),
            Some("header"),
        ),
        case(
            "x5c in the header",
            fx.token(USER, T).header("x5c", json!(["MIIB"])).build(),
            Some("header"),
        ),
        case(
            "b64 in the header",
            fx.token(USER, T).header("b64", false).build(),
            Some("header"),
        ),
        case(
            "kid a number",
            fx.token(USER, T).header("kid", 7).build(),
            Some("header"),
        ),
        case(
            "cty a number",
            fx.token(USER, T).header("cty", 7).build(),
            Some("header"),
        ),
        case(
            "crit [exp]",
            fx.token(USER, T).header("crit", json!(["exp"])).build(),
            Some("crit"),
        ),
        case(
            "crit [b64] (ZITADEL accepts it)",
            fx.token(USER, T).header("crit", json!(["b64"])).build(),
            Some("crit"),
        ),
        case(
            "typ JOSE",
            fx.token(USER, T).header("typ", "JOSE").build(),
            Some("typ"),
        ),
        case(
            "alg none",
            fx.token(USER, T).header("alg", "none").build(),
            Some("alg"),
        ),
        case(
            "alg none, no signature",
            format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(claims_text(""))),
            Some("alg"),
        ),
        case(
            "alg HS256",
            fx.token(USER, T).header("alg", "HS256").build(),
            Some("alg"),
        ),
        case(
            "alg RS512 (not allowed)",
            fx.token(USER, T).algorithm(Algorithm::RS512).build(),
            Some("alg"),
        ),
        case(
            "alg ES256",
            fx.token(USER, T).header("alg", "ES256").build(),
            Some("alg"),
        ),
        // The audience.
        case(
            "aud with a trailing slash",
            fx.token(USER, T)
                .audience("https://custom-domain.com/")
                .build(),
            Some("aud"),
        ),
        case(
            "aud with http",
            fx.token(USER, T)
                .audience("http://custom-domain.com")
                .build(),
            Some("aud"),
        ),
        case(
            "aud with :443",
            fx.token(USER, T)
                .audience("https://custom-domain.com:443")
                .build(),
            Some("aud"),
        ),
        case(
            "aud in another case",
            fx.token(USER, T)
                .audience("https://Custom-Domain.com")
                .build(),
            Some("aud"),
        ),
        case(
            "aud another URL",
            fx.token(USER, T).audience("https://other.example").build(),
            Some("aud"),
        ),
        case(
            "aud a number",
            fx.token(USER, T).claim("aud", 5).build(),
            Some("aud"),
        ),
        case(
            "aud an array with a number",
            fx.token(USER, T).claim("aud", json!([AUD, 5])).build(),
            Some("aud"),
        ),
        case(
            "no aud",
            fx.token(USER, T).without("aud").build(),
            Some("aud"),
        ),
        // Times.
        case(
            "expired",
            fx.token(USER, T)
                .issued_at(at(T - 300))
                .expires_at(at(T - 192))
                .build(),
            Some("exp"),
        ),
        case(
            "exp within the clock offset",
            fx.token(USER, T).expires_at(at(T + 1)).build(),
            Some("exp"),
        ),
        case(
            "no exp",
            fx.token(USER, T).without("exp").build(),
            Some("exp"),
        ),
        case(
            "exp as RFC 3339 text",
            fx.token(USER, T)
                .claim("exp", "2023-11-14T23:13:20Z")
                .build(),
            Some("exp"),
        ),
        case(
            "exp negative",
            fx.token(USER, T).claim("exp", -1).build(),
            Some("exp"),
        ),
        case(
            "iat in the future",
            fx.token(USER, T)
                .issued_at(at(T + 3600))
                .expires_at(at(T + 7200))
                .build(),
            Some("iat"),
        ),
        case(
            "iat too old, exp still ahead",
            fx.token(USER, T)
                .issued_at(at(T - 3840))
                .expires_at(at(T + 600))
                .build(),
            Some("iat"),
        ),
        case(
            "no iat",
            fx.token(USER, T).without("iat").build(),
            Some("iat"),
        ),
        case(
            "iat 0",
            fx.token(USER, T).claim("iat", 0).build(),
            Some("iat"),
        ),
        case(
            "nbf in the future",
            fx.token(USER, T).claim("nbf", T + 600).build(),
            Some("nbf"),
        ),
        case(
            "nbf as text",
            fx.token(USER, T).claim("nbf", "soon").build(),
            Some("nbf"),
        ),
        // Issuer, user, key.
        case(
            "iss and sub differ",
            fx.token(USER, T).claim("sub", USER2).build(),
            Some("iss = sub"),
        ),
        case(
            "iss a number",
            fx.token(USER, T).claim("iss", 5).claim("sub", 5).build(),
            Some("iss = sub"),
        ),
        case(
            "unknown user",
            fx.key(USER)
                .token("system-user-9", AUD)
                .issued_at(at(T))
                .expires_at(at(T + 600))
                .build(),
            Some("user"),
        ),
        case(
            "user id in upper case",
            fx.key(USER)
                .token("System-User-1", AUD)
                .issued_at(at(T))
                .expires_at(at(T + 600))
                .build(),
            Some("user"),
        ),
        case(
            "signed by another key",
            fx.token(USER, T).signed_by(&fx.other).build(),
            Some("signature"),
        ),
        case(
            "signed by another user's key",
            fx.token(USER, T).signed_by(fx.key(USER2)).build(),
            Some("signature"),
        ),
        case(
            "PS256 signed by another key",
            fx.token(USER, T)
                .algorithm(Algorithm::PS256)
                .signed_by(&fx.other)
                .build(),
            Some("signature"),
        ),
        case(
            "header says RS256, signed with PS256",
            {
                let payload = claims_text("");
                fx.key(USER).sign_raw(Algorithm::PS256, HEADER, &payload)
            },
            Some("signature"),
        ),
        case(
            "several problems at once",
            fx.token(USER, T)
                .audience("https://custom-domain.com/")
                .issued_at(at(T - 7200))
                .expires_at(at(T - 3600))
                .claim("sub", "someone-else")
                .header("typ", "JOSE")
                .build(),
            Some("aud"),
        ),
    ];
    // The certificate user: not valid yet at T (2023), expired after its NotAfter,
    // valid inside its window.
    cases.push(case(
        "certificate not valid yet",
        fx.token(CERT_USER, T).build(),
        Some("key validity"),
    ));
    cases.push(Case {
        name: "certificate expired",
        token: fx.token(CERT_USER, cert_until + 60).build(),
        now: cert_until + 60,
        fails: Some("key validity"),
    });
    cases.push(Case {
        name: "certificate in its window",
        token: fx.token(CERT_USER, cert_from + 60).build(),
        now: cert_from + 60,
        fails: None,
    });
    cases
}

/// The verdict line the binary must print for `verify`'s result.
fn verdict_line(result: &Result<zitadel_system_auth::SystemUser, AuthError>) -> String {
    match result {
        Ok(user) => format!("verdict: accepted, system user {:?}", user.user_id()),
        Err(error) => format!("verdict: refused ({}): {error}", error.reason()),
    }
}

/// Every part of the token's signature segment of 16 characters or more, and every
/// base64 line of every configured public key.
fn secrets(token: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    if let Some((_, signature)) = token.rsplit_once('.')
        && signature.len() >= 16
        && token.split('.').count() == 3
    {
        for start in (0..=signature.len() - 16).step_by(4) {
            secrets.push(signature[start..start + 16].to_owned());
        }
    }
    for key in FIXTURE.keys.iter() {
        for line in key.public_pem().lines() {
            if !line.starts_with("-----") && line.len() >= 16 {
                secrets.push(line.to_owned());
            }
        }
        secrets.push(key.key_data()[..40].to_owned());
    }
    secrets
}

#[test]
fn explain_gives_verify_s_verdict_on_every_token_of_the_refusal_table() {
    let fx = &*FIXTURE;
    let mut failures = Vec::new();
    let table = refusal_table();
    let mut reasons = std::collections::BTreeSet::new();
    for case in &table {
        let auth = fx.auth_at(case.now);
        let verified = auth.verify(&case.token);
        if let Err(error) = &verified {
            reasons.insert(error.reason());
        }
        let expected = verdict_line(&verified);

        // The library: the same verdict.
        let explanation = auth.explain(&case.token);
        if explanation.verdict().map_err(Clone::clone)
            != verified.as_ref().map(|u| u.user_id()).map_err(Clone::clone)
        {
            failures.push(format!("{}: library verdict differs", case.name));
        }

        // The binary, at the same clock.
        let now = case.now.to_string();
        let out = run(&[
            "explain",
            "--config",
            fx.config(),
            "--now",
            &now,
            &case.token,
        ]);
        if out.last_line() != expected {
            failures.push(format!(
                "{}: binary printed {:?}, verify says {:?}\n{out:?}",
                case.name,
                out.last_line(),
                expected
            ));
        }
        let code = if verified.is_ok() { 0 } else { 1 };
        if out.code != code {
            failures.push(format!(
                "{}: exit {} (expected {code})",
                case.name, out.code
            ));
        }
        match case.fails {
            None if verified.is_err() => {
                failures.push(format!("{}: refused, expected accepted", case.name))
            }
            Some(check) => {
                if verified.is_ok() {
                    failures.push(format!("{}: accepted, expected refused", case.name));
                }
                let line = format!("FAIL  {check:<18} ");
                if !out.stdout.contains(&line) {
                    failures.push(format!("{}: no `{line}` line\n{out:?}", case.name));
                }
            }
            None => {
                if out.stdout.contains("FAIL  ") {
                    failures.push(format!("{}: a FAIL line\n{out:?}", case.name));
                }
            }
        }
        for secret in secrets(&case.token) {
            if out.stdout.contains(&secret) || out.stderr.contains(&secret) {
                failures.push(format!("{}: printed {secret:?}", case.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every refusal the table is meant to reach.
    for reason in [
        "token_too_long",
        "malformed",
        "invalid_claim",
        "missing_claim",
        "audience",
        "expired",
        "iat_in_future",
        "iat_too_old",
        "not_yet_valid",
        "iss_sub_mismatch",
        "unknown_user",
        "key_not_yet_valid",
        "key_expired",
        "algorithm",
        "crit",
        "header_member",
        "typ",
        "signature",
    ] {
        assert!(
            reasons.contains(reason),
            "no case refused with {reason}: {reasons:?}"
        );
    }
}

/// Every token of the crate's one refusal table (`cases`), explained by the binary
/// at the case's clock: its verdict line is `verify`'s, and the library's
/// `explain` agrees too.
#[test]
fn explain_gives_verify_s_verdict_on_every_token_of_the_crates_table() {
    let world = crate::cases::World::with(|builder| builder.token_cache(false));
    let config = world.config();
    let config = config.to_str().expect("UTF-8 path");
    let (mut failures, mut checked) = (Vec::new(), 0);
    for case in crate::cases::refusals() {
        let sent = (case.make)();
        let Some(token) = sent.token() else { continue };
        world.set_at(case.at);
        let verified = world.auth.verify(token);
        if world.auth.explain(token).verdict().map_err(Clone::clone)
            != verified.as_ref().map(|u| u.user_id()).map_err(Clone::clone)
        {
            failures.push(format!("{}: the library's verdict differs", case.name));
        }
        let now = case.at.secs().to_string();
        let out = run(&["explain", "--config", config, "--now", &now, token]);
        if token.trim().is_empty() {
            // Nothing to explain: a usage error, not a verdict.
            if out.code != 2 {
                failures.push(format!("{}: an empty token exits {}", case.name, out.code));
            }
            continue;
        }
        if out.last_line() != verdict_line(&verified) {
            failures.push(format!(
                "{}: the binary printed {:?}, verify says {:?}",
                case.name,
                out.last_line(),
                verdict_line(&verified)
            ));
        }
        for secret in secrets(token) {
            if out.stdout.contains(&secret) || out.stderr.contains(&secret) {
                failures.push(format!("{}: printed {secret:?}", case.name));
            }
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked > 50, "only {checked} tokens");
}

#[test]
fn explain_names_the_precise_check_and_what_zitadel_would_do() {
    let fx = &*FIXTURE;
    let explain = |token: &str, now: u64| {
        let now = now.to_string();
        run(&["explain", "--config", fx.config(), "--now", &now, token])
    };
    // Unknown user, signature and certificate window share one public text; the
    // verdict line names the precise reason.
    let unknown = fx
        .key(USER)
        .token("System-User-1", AUD)
        .issued_at(at(T))
        .expires_at(at(T + 600))
        .build();
    let out = explain(&unknown, T);
    assert!(
        out.last_line()
            .starts_with("verdict: refused (unknown_user): "),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains(r#"the configured id is "system-user-1""#),
        "{out:?}"
    );
    let other = fx.token(USER, T).signed_by(&fx.other).build();
    let out = explain(&other, T);
    assert!(
        out.last_line()
            .starts_with("verdict: refused (signature): "),
        "{out:?}"
    );
    assert!(out.stdout.contains(&fx.key(USER).fingerprint()), "{out:?}");

    // Times: relative to now, the maximum age.
    let old = fx
        .token(USER, T)
        .issued_at(at(T - 3840))
        .expires_at(at(T + 600))
        .build();
    let out = explain(&old, T);
    assert!(
        out.stdout.contains(
            "issued at 2023-11-14T21:09:20Z, 1 h 4 min ago, 4 min over the maximum age of 1 h"
        ),
        "{out:?}"
    );
    let expired = fx
        .token(USER, T)
        .issued_at(at(T - 300))
        .expires_at(at(T - 192))
        .build();
    let out = explain(&expired, T);
    assert!(
        out.stdout
            .contains("expired at 2023-11-14T22:10:08Z, 3 min 12 s ago"),
        "{out:?}"
    );

    // Every problem at once, the verdict the first in verify's order.
    let several = fx
        .token(USER, T)
        .audience("https://custom-domain.com:443")
        .issued_at(at(T - 7200))
        .expires_at(at(T - 3600))
        .claim("sub", "someone-else")
        .build();
    let out = explain(&several, T);
    for check in ["aud", "exp", "iat", "iss = sub"] {
        assert!(
            out.stdout.contains(&format!("FAIL  {check:<18} ")),
            "{check}: {out:?}"
        );
    }
    assert!(out.stdout.contains("differs only in the port"), "{out:?}");
    assert!(
        out.last_line().starts_with("verdict: refused (audience): "),
        "{out:?}"
    );

    // Where ZITADEL decides otherwise, the line after says so.
    for (token, zitadel) in [
        (
            fx.token(PKCS1_USER, T).build(),
            "ZITADEL cannot read this user's key",
        ),
        (
            fx.token(USER, T).claim("nbf", T + 600).build(),
            "ZITADEL ignores nbf",
        ),
        (
            fx.token(USER, T).header("typ", "JOSE").build(),
            "ZITADEL ignores typ",
        ),
        (
            fx.token(USER, T).header("crit", json!(["b64"])).build(),
            "accepts a crit that lists only b64",
        ),
        (
            fx.token(USER, T).header("cty", 7).build(),
            "go-jose (under ZITADEL) ignores cty",
        ),
        (
            fx.token(USER, T).header("x5c", json!(["MIIB"])).build(),
            "checks a jwk or x5c",
        ),
        (
            raw(HEADER, &claims_text(r#","ISS":"x""#)),
            "reads such a member as the registered claim",
        ),
        (
            fx.token(USER, T)
                .claim("exp", "2023-11-14T23:13:20Z")
                .build(),
            "RFC 3339 text",
        ),
        (
            fx.token(USER, T).claim("aud", json!([AUD, 5])).build(),
            "panics on a non-string in an aud array",
        ),
    ] {
        let out = explain(&token, T);
        assert!(out.stdout.contains("ZITADEL: "), "{zitadel}: {out:?}");
        assert!(out.stdout.contains(zitadel), "{zitadel}: {out:?}");
    }
    // Where both refuse, no note: crit with another member.
    let out = explain(&fx.token(USER, T).header("crit", json!(["exp"])).build(), T);
    assert!(!out.stdout.contains("ZITADEL: "), "{out:?}");
}

#[test]
fn explain_reads_the_token_as_it_is_pasted() {
    let fx = &*FIXTURE;
    let token = fx.token(USER, T).build();
    let now = T.to_string();
    let args = ["explain", "--config", fx.config(), "--now", now.as_str()];
    let accepted = format!("verdict: accepted, system user \"{USER}\"");
    for input in [
        token.clone(),
        format!("{token}\n"),
        format!("Bearer {token}"),
        format!("Authorization: Bearer {token}\n"),
        format!("authorization:   Bearer  {token}"),
        format!("-H 'Authorization: Bearer {token}'"),
        format!("--header \"Authorization: Bearer {token}\""),
    ] {
        let out = run_stdin(&args, &input);
        assert_eq!(out.code, 0, "{input:?}: {out:?}");
        assert_eq!(out.last_line(), accepted, "{input:?}");
        assert!(!out.stdout.contains("ZITADEL: "), "{input:?}: {out:?}");
        // The same as arguments.
        let mut with_arg = args.to_vec();
        with_arg.push(&input);
        let out = run(&with_arg);
        assert_eq!(out.last_line(), accepted, "argument {input:?}: {out:?}");
    }
    // Unquoted words after `--` are joined.
    let mut words = args.to_vec();
    let bearer = ["--", "Authorization:", "Bearer", token.as_str()];
    words.extend(bearer);
    let out = run(&words);
    assert_eq!(out.last_line(), accepted, "{out:?}");

    // `bearer`: accepted here, and the first line says ZITADEL refuses it.
    for scheme in ["bearer", "BEARER"] {
        let out = run_stdin(&args, &format!("Authorization: {scheme} {token}"));
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains("PASS  scheme"), "{out:?}");
        assert!(
            out.stdout.contains(
                r#"ZITADEL: ZITADEL refuses this scheme: it splits the header on "Bearer ""#
            ),
            "{out:?}"
        );
        assert_eq!(out.last_line(), accepted);
    }

    // Nothing given: a usage error.
    let out = run_stdin(&args, "  \n");
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("no token given"), "{out:?}");
}

#[test]
fn explain_as_json_and_with_another_audience() {
    let fx = &*FIXTURE;
    let now = T.to_string();
    let token = fx
        .token(USER, T)
        .audience("http://zitadel.internal:8080")
        .build();
    let out = run(&[
        "explain",
        "--config",
        fx.config(),
        "--now",
        &now,
        "--json",
        &token,
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    let json: Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    assert_eq!(json["verdict"]["accepted"], false);
    assert_eq!(json["verdict"]["reason"], "audience");
    let aud = json["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["check"] == "aud")
        .expect("an aud check");
    assert_eq!(aud["outcome"], "failed");

    let out = run(&[
        "explain",
        "--config",
        fx.config(),
        "--now",
        &now,
        "--json",
        "--audience",
        "http://zitadel.internal:8080",
        &token,
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let json: Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    assert_eq!(json["verdict"]["accepted"], true);
    assert_eq!(json["verdict"]["user_id"], USER);
    let signature = token.rsplit('.').next().expect("signature");
    assert!(!out.stdout.contains(&signature[..20]));
}

#[test]
fn explain_with_a_bad_or_missing_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = TestKey::generate();
    let private = key
        .write(dir.path(), "k")
        .expect("write")
        .with_extension("pem");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "SystemAPIUsers:\n  - u:\n      Path: {}\n",
            private.display()
        ),
    )
    .expect("write");
    let out = run(&["explain", "--config", path_str(&config), "abc"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("this is a private key"), "{out:?}");
    assert!(!out.stderr.contains("BEGIN"), "{out:?}");

    let missing = dir.path().join("missing.yaml");
    let out = run(&["explain", "--config", path_str(&missing), "abc"]);
    assert_eq!(out.code, 2, "{out:?}");
}

// ---- check ----

/// A config with every kind of entry `check` reports on, in `dir`.
fn check_config(dir: &Path, cert_days: &str) -> (PathBuf, [TestKey; 2], PathBuf) {
    let keys = [TestKey::generate(), TestKey::generate()];
    let public = keys[0].write(dir, "one").expect("write");
    keys[1].write(dir, "two").expect("write");
    let cert = dir.join("two.crt");
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        path_str(&dir.join("two.pem")),
        "-subj",
        "/CN=two",
        "-days",
        cert_days,
        "-out",
        path_str(&cert),
    ]);
    let pkcs1 = dir.join("one.rsa.pub");
    openssl(&[
        "rsa",
        "-pubin",
        "-in",
        path_str(&public),
        "-RSAPublicKey_out",
        "-out",
        path_str(&pkcs1),
    ]);
    let cert_data = STANDARD.encode(std::fs::read(&cert).expect("read cert"));
    let yaml = format!(
        "ExternalDomain: custom-domain.com\n\
         ExternalPort: 443\n\
         ExternalSecure: true\n\
         SystemAPIUsers:\n\
         \x20 - system-user-1:\n      Path: one.pub\n\
         \x20 - System-User-2:\n      KeyData: {cert_data}\n\
         \x20     Memberships:\n        - MemberType: System\n          Roles: [SYSTEM_OWNER]\n        - MemberType: IAM\n          Roles: \"IAM_OWNER,IAM_USER_MANAGER\"\n          AggregateID: \"123456789012345678\"\n\
         \x20 - legacy-user:\n      Path: one.rsa.pub\n      KeyData: {}\n",
        keys[0].key_data()
    );
    let config = dir.join("config.yaml");
    std::fs::write(&config, yaml).expect("write config");
    (config, keys, public)
}

#[test]
fn check_prints_the_audience_each_user_and_the_warnings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, keys, public) = check_config(dir.path(), "10");
    let out = run(&["check", "--config", path_str(&config)]);
    assert_eq!(out.code, 0, "{out:?}");
    let stdout = &out.stdout;
    assert!(
        stdout.contains("audience: https://custom-domain.com\n"),
        "{out:?}"
    );
    assert!(
        stdout.contains("ExternalPort 443 (left out: the default port of https)"),
        "{out:?}"
    );
    // The fingerprint is what openssl and sha256sum print.
    let openssl_fingerprint = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl pkey -pubin -in '{}' -outform DER | sha256sum",
            public.display()
        ))
        .output()
        .expect("sh");
    let openssl_fingerprint = String::from_utf8(openssl_fingerprint.stdout).expect("text");
    let openssl_fingerprint = openssl_fingerprint.split_whitespace().next().expect("hex");
    assert_eq!(openssl_fingerprint, keys[0].fingerprint());
    let line = |id: &str| {
        stdout
            .lines()
            .find(|line| line.trim_start().starts_with(id))
            .unwrap_or_else(|| panic!("no line for {id}: {out:?}"))
            .to_owned()
    };
    let one = line("system-user-1:");
    assert!(
        one.contains(&format!("Path {}", dir.path().join("one.pub").display())),
        "{one}"
    );
    assert!(
        one.contains(&format!("PKIX, 2048 bits, sha256 {openssl_fingerprint}")),
        "{one}"
    );
    assert!(one.contains("memberships System: SYSTEM_OWNER"), "{one}");
    let two = line("system-user-2 (written System-User-2):");
    assert!(two.contains("KeyData, certificate, 2048 bits"), "{two}");
    assert!(two.contains(&keys[1].fingerprint()), "{two}");
    assert!(
        two.contains("(9 d 23 h left)") || two.contains("(10 d left)"),
        "{two}"
    );
    assert!(
        two.contains(
            "memberships System: SYSTEM_OWNER; IAM 123456789012345678: IAM_OWNER, IAM_USER_MANAGER"
        ),
        "{two}"
    );
    let legacy = line("legacy-user:");
    assert!(
        legacy.contains("one.rsa.pub, PKCS#1, 2048 bits"),
        "{legacy}"
    );
    for warning in [
        "`System-User-2` is read as `system-user-2`",
        "system user `legacy-user` has both Path and KeyData; Path is used",
        "the key is PKCS#1, which this crate reads but ZITADEL cannot; convert it with `openssl rsa -RSAPublicKey_in",
        "the certificate expires at",
        "ExternalPort 443 is left out of the audience",
    ] {
        assert!(stdout.contains(warning), "{warning}: {out:?}");
    }
    assert!(stdout.contains("errors: none"), "{out:?}");
    assert!(
        out.last_line()
            .starts_with("result: the config loads (3 users, 5 warnings)"),
        "{out:?}"
    );
    for key in &keys {
        for pem_line in key.public_pem().lines().filter(|l| !l.starts_with("-----")) {
            assert!(!stdout.contains(pem_line), "key material printed: {out:?}");
        }
    }

    // The same as one JSON document.
    let out = run(&["check", "--config", path_str(&config), "--json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let json: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(json["loads"], true);
    assert_eq!(json["audience"]["url"], AUD);
    assert_eq!(json["audience"]["externalPort"], 443);
    assert_eq!(json["users"][0]["id"], "system-user-1");
    assert_eq!(
        json["users"][0]["key"]["fingerprint"],
        keys[0].fingerprint()
    );
    assert_eq!(json["users"][0]["key"]["format"], "PKIX");
    assert_eq!(json["users"][1]["writtenId"], "System-User-2");
    assert_eq!(json["users"][1]["key"]["format"], "certificate");
    assert!(json["users"][1]["key"]["daysLeft"].as_i64().expect("days") <= 10);
    assert_eq!(
        json["users"][1]["memberships"][1]["aggregateId"],
        "123456789012345678"
    );
    assert_eq!(json["users"][2]["key"]["zitadelReadsIt"], false);
    assert_eq!(json["warnings"].as_array().expect("warnings").len(), 5);
    assert_eq!(json["errors"].as_array().expect("errors").len(), 0);

    // Later, the certificate has expired: a warning, and the config still loads.
    let later = (real_now() + 20 * 86_400).to_string();
    let out = run(&["check", "--config", path_str(&config), "--now", &later]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("the certificate expired at"), "{out:?}");
    assert!(
        out.stdout.contains("every token of this user is refused"),
        "{out:?}"
    );
}

#[test]
fn check_reads_zitadel_s_environment_with_env() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, keys, _) = check_config(dir.path(), "300");
    let users = format!(r#"{{"env-user": {{"keyData": "{}"}}}}"#, keys[1].key_data());
    let mut command = binary();
    command
        .args(["check", "--config", path_str(&config), "--env"])
        .env("ZITADEL_EXTERNALDOMAIN", "zitadel.example")
        .env("ZITADEL_EXTERNALPORT", "8443")
        .env("ZITADEL_SYSTEMAPIUSERS", &users);
    let out = finish(command, None);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("audience: https://zitadel.example:8443\n"),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains("from the environment: ExternalDomain, ExternalPort, SystemAPIUsers"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("users: 1\n  env-user: KeyData, PKIX"),
        "{out:?}"
    );

    // Without --env the variables are not read, and a warning says so.
    let mut command = binary();
    command
        .args(["check", "--config", path_str(&config)])
        .env("ZITADEL_EXTERNALDOMAIN", "zitadel.example");
    let out = finish(command, None);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("audience: https://custom-domain.com\n"),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains("ZITADEL_EXTERNALDOMAIN is set in this environment but not read"),
        "{out:?}"
    );
}

#[test]
fn check_reports_every_bad_key_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = TestKey::generate();
    key.write(dir.path(), "k").expect("write");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "ExternalDomain: custom-domain.com:8443\nSystemAPIUsers:\n\
         \x20 - private-user:\n      Path: k.pem\n\
         \x20 - missing-user:\n      Path: missing.pub\n\
         \x20 - good-user:\n      Path: k.pub\n\
         \x20 - garbage-user:\n      KeyData: bm90IGEga2V5\n",
    )
    .expect("write");
    let out = run(&["check", "--config", path_str(&config)]);
    assert_eq!(out.code, 1, "{out:?}");
    for error in [
        "system user `private-user`, Path",
        "this is a private key; configure the public half instead (export it with `openssl rsa -in key.pem -pubout -out key.pub`)",
        "system user `missing-user`, Path",
        "cannot read the key file",
        "a relative Path resolves next to the config file",
        "system user `garbage-user`, KeyData: no PEM block found",
        "errors: 3",
        "holds a port or a path, so the audience is https://custom-domain.com:8443:8080",
    ] {
        assert!(out.stdout.contains(error), "{error}: {out:?}");
    }
    assert!(out.stdout.contains(&format!(
        "good-user: Path {}",
        dir.path().join("k.pub").display()
    )));
    assert!(
        out.last_line()
            .starts_with("result: the config does not load (3 errors)"),
        "{out:?}"
    );
    for line in key
        .private_pem()
        .lines()
        .filter(|l| !l.starts_with("-----"))
    {
        assert!(!out.stdout.contains(line), "key material printed: {out:?}");
    }

    let out = run(&["check", "--config", path_str(&config), "--json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let json: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(json["loads"], false);
    assert_eq!(json["errors"].as_array().expect("errors").len(), 3);

    // A config that does not parse: the error names the line.
    std::fs::write(
        &config,
        "SystemAPIUsers:\n  - u:\n      Path: k.pub\n      Memberships:\n        - MemberType: Sytem\n",
    )
    .expect("write");
    let out = run(&["check", "--config", path_str(&config)]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("unknown membership type `Sytem`"),
        "{out:?}"
    );
    assert!(out.stdout.contains("line 5"), "{out:?}");

    // A config file that cannot be read: 2.
    let out = run(&["check", "--config", path_str(&dir.path().join("nope.yaml"))]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stdout.contains("cannot read config file"), "{out:?}");
}

// ---- mint ----

/// The claims of `token`.
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

fn header(token: &str) -> String {
    String::from_utf8(
        URL_SAFE_NO_PAD
            .decode(token.split('.').next().expect("header"))
            .expect("b64"),
    )
    .expect("text")
}

#[test]
fn mint_takes_zitadel_s_flag_styles() {
    let fx = &*FIXTURE;
    let pem = fx.dir.path().join(format!("{USER}.pem"));
    let pem = path_str(&pem);
    let auth = SystemAuth::builder()
        .config_file(&fx.config)
        .watch(false)
        .build()
        .expect("config");
    let key = format!("-key={pem}");
    let long_key = format!("--key={pem}");
    let styles: [Vec<&str>; 4] = [
        // The seed's own command line.
        vec![
            "mint",
            "-audience=https://custom-domain.com",
            &key,
            "-issuer=system-user-1",
        ],
        vec!["mint", "-audience", AUD, "-key", pem, "-issuer", USER],
        vec![
            "mint",
            "--audience=https://custom-domain.com",
            &long_key,
            "--issuer=system-user-1",
        ],
        vec![
            "mint",
            "--audience",
            AUD,
            "--key",
            pem,
            "--issuer",
            USER,
            "--lifetime",
            "120",
        ],
    ];
    for args in &styles {
        let out = run(args);
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
        let token = out.stdout.strip_suffix('\n').expect("a newline");
        assert!(!token.contains(char::is_whitespace));
        let user = auth.verify(token).expect("the minted token verifies");
        assert_eq!(user.user_id(), USER);
        assert_eq!(header(token), r#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = claims(token);
        assert_eq!(claims["iss"], USER);
        assert_eq!(claims["sub"], USER);
        assert_eq!(claims["aud"], AUD);
        let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
        let expected = if args.contains(&"120") { 120 } else { 3600 };
        assert_eq!(lifetime, expected);
        assert!(claims["iat"].as_u64().unwrap().abs_diff(real_now()) < 300);
    }

    // PS256, written to a file readable by its owner only.
    let output = fx.dir.path().join("token.txt");
    let out = run(&[
        "mint",
        "-audience",
        AUD,
        "-key",
        pem,
        "-issuer",
        USER,
        "-algorithm=PS256",
        "-output",
        path_str(&output),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "");
    let written = std::fs::read_to_string(&output).expect("the token file");
    let token = written.strip_suffix('\n').expect("a newline");
    assert_eq!(header(token), r#"{"alg":"PS256","typ":"JWT"}"#);
    assert_eq!(auth.verify(token).expect("verifies").user_id(), USER);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&output)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // A note for an audience ZITADEL never builds; the token is still minted.
    let out = run(&[
        "mint",
        "-audience=https://custom-domain.com/",
        &key,
        "-issuer=x",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("did you mean https://custom-domain.com?"),
        "{out:?}"
    );
    let out = run(&[
        "mint",
        "-audience=https://custom-domain.com:443",
        &key,
        "-issuer=x",
        "-lifetime=7200",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("leaves the default port out"),
        "{out:?}"
    );
    assert!(out.stderr.contains("works for 1 hour at most"), "{out:?}");
}

#[test]
fn mint_refuses_what_cannot_sign() {
    let fx = &*FIXTURE;
    let public = fx.dir.path().join(format!("{USER}.pub"));
    let out = run(&[
        "mint",
        "--audience",
        AUD,
        "--key",
        path_str(&public),
        "--issuer",
        USER,
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains("holds a public key or certificate"),
        "{out:?}"
    );
    assert!(!out.stderr.contains("BEGIN"), "{out:?}");

    let missing = fx.dir.path().join("missing.pem");
    let out = run(&[
        "mint",
        "--audience",
        AUD,
        "--key",
        path_str(&missing),
        "--issuer",
        USER,
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("cannot read"), "{out:?}");

    let pem = fx.dir.path().join(format!("{USER}.pem"));
    for bad in [
        vec!["--lifetime", "0"],
        vec!["--algorithm", "HS256"],
        vec!["--algorithm", "RS512"],
    ] {
        let mut args = vec![
            "mint",
            "--audience",
            AUD,
            "--key",
            path_str(&pem),
            "--issuer",
            USER,
        ];
        args.extend(&bad);
        let out = run(&args);
        assert_eq!(out.code, 2, "{bad:?}: {out:?}");
        assert_eq!(out.stdout, "");
    }
    // A required flag missing: clap's usage error.
    let out = run(&["mint", "--audience", AUD]);
    assert_eq!(out.code, 2, "{out:?}");
}

// ---- bench ----

/// Each key size asked for is measured with a fresh key of its own, every case of
/// it, in the order asked.
#[test]
fn bench_measures_each_key_size_asked_for() {
    let out = run(&[
        "bench",
        "--threads",
        "1",
        "--seconds",
        "0.05",
        "--bits",
        "3072,4096",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let sections: Vec<&str> = out.stdout.split("RSA-").skip(1).collect();
    assert_eq!(sections.len(), 2, "{out:?}");
    for (section, bits) in sections.iter().zip(["3072", "4096"]) {
        assert!(
            section.starts_with(&format!("{bits} (fresh key, system-user-1)")),
            "{section}"
        );
        for case in [
            "floor (RSA verification)",
            "verify, uncached",
            "layer, cached",
        ] {
            assert!(
                section
                    .lines()
                    .any(|line| line.trim_start().starts_with(case) && line.contains("/s")),
                "no {case} line for RSA-{bits}: {section}"
            );
        }
    }
}

#[test]
fn bench_measures_fresh_keys_and_a_configured_user() {
    let out = run(&[
        "bench",
        "--threads",
        "1",
        "--seconds",
        "0.1",
        "--bits",
        "2048",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("RSA-2048 (fresh key, system-user-1)"),
        "{out:?}"
    );
    for case in [
        "floor (RSA verification)",
        "verify, uncached",
        "verify, cached",
        "layer, cached",
    ] {
        let line = out
            .stdout
            .lines()
            .find(|line| line.trim_start().starts_with(case))
            .unwrap_or_else(|| panic!("no {case} line: {out:?}"));
        assert!(line.contains("/s"), "{line}");
        assert!(line.contains('×'), "{line}");
    }
    assert!(out.stdout.contains("one core takes about"), "{out:?}");
    // Not a terminal: plain progress lines, no bar.
    assert!(out.stderr.contains("bench: RSA-2048"), "{out:?}");
    assert!(!out.stderr.contains('\r'), "{out:?}");

    // A configured user and its key, on 1 and 2 threads.
    let fx = &*FIXTURE;
    let pem = fx.dir.path().join(format!("{USER2}.pem"));
    std::fs::write(&pem, fx.key(USER2).private_pem()).expect("write");
    let out = run(&[
        "bench",
        "--config",
        fx.config(),
        "--key",
        path_str(&pem),
        "--issuer",
        USER2,
        "--threads",
        "2",
        "--seconds",
        "0.1",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("RSA-2048 (system-user-2 from"),
        "{out:?}"
    );
    let rows = |threads: &str| {
        out.stdout
            .lines()
            .filter(|line| {
                line.split_whitespace().any(|word| word == threads) && line.contains("/s")
            })
            .count()
    };
    assert!(rows("1") >= 4 && rows("2") >= 4, "{out:?}");

    // A key that is not the user's: refused before measuring.
    let out = run(&[
        "bench",
        "--config",
        fx.config(),
        "--key",
        path_str(&pem),
        "--issuer",
        USER,
        "--threads",
        "1",
        "--seconds",
        "0.1",
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("refused"), "{out:?}");
    assert!(out.stderr.contains("(signature)"), "{out:?}");

    // --config needs --key and --issuer.
    let out = run(&["bench", "--config", fx.config()]);
    assert_eq!(out.code, 2, "{out:?}");
}

// ---- completions, help, usage ----

#[test]
fn completions_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert_eq!(out.code, 0, "{shell}: {out:?}");
        assert!(out.stdout.contains("zitadel-system-auth"), "{shell}");
        for subcommand in ["check", "explain", "mint", "bench"] {
            assert!(out.stdout.contains(subcommand), "{shell}: {subcommand}");
        }
        assert!(out.stdout.contains("audience"), "{shell}");
    }
    let out = run(&["completions", "tcsh"]);
    assert_eq!(out.code, 2, "{out:?}");
}

#[test]
fn every_subcommand_has_help_and_usage_errors_exit_2() {
    for subcommand in ["check", "explain", "mint", "bench", "completions"] {
        for help in ["--help", "-help", "-h"] {
            let out = run(&[subcommand, help]);
            assert_eq!(out.code, 0, "{subcommand} {help}: {out:?}");
            assert!(
                out.stdout.contains("Usage: zitadel-system-auth"),
                "{subcommand}"
            );
            // `explain` and `check` judge at another time on request.
            assert_eq!(
                out.stdout.contains("--now <UNIX_SECONDS>"),
                matches!(subcommand, "check" | "explain"),
                "{subcommand}: --now in the help"
            );
        }
    }
    let out = run(&["--help"]);
    assert_eq!(out.code, 0);
    assert!(out.stdout.contains("Exit status: 0 success"), "{out:?}");
    let out = run(&["--version"]);
    assert_eq!(out.code, 0);
    assert!(out.stdout.starts_with("zitadel-system-auth "));
    for args in [
        &["nope"][..],
        &["check"],
        &["explain"],
        &["check", "--config"],
        &[],
    ] {
        let out = run(args);
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
    }
}

// ---- explain against verify on random tokens (library) ----

fn config_proptest(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn member_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (T - 4000..T + 4000).prop_map(Value::from),
        (-1e3f64..1e3).prop_map(|d| Value::from(T as f64 + d)),
        select(vec![
            USER,
            USER2,
            "System-User-1",
            "system-user-9",
            AUD,
            "https://custom-domain.com/",
            "http://custom-domain.com",
            "RS256",
            "PS256",
            "none",
            "HS256",
            "JWT",
            "",
            "2023-11-14T22:13:20Z",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..3).prop_map(Value::Array),
            vec((select(vec!["a", "iss", "kid"]), inner), 0..3).prop_map(|members| {
                Value::Object(
                    members
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                )
            }),
        ]
    })
}

/// Header and payload member lists (names may repeat), mostly near a valid token.
/// JSON object members in the order written; a name may repeat.
type Members = Vec<(String, Value)>;

fn token_parts() -> impl Strategy<Value = (Members, Members, u8)> {
    let name = |names: Vec<&'static str>| select(names).prop_map(str::to_owned);
    let header_extra = vec(
        (
            name(vec![
                "alg", "typ", "crit", "kid", "jwk", "b64", "cty", "x5t", "zip",
            ]),
            member_value(),
        ),
        0..2,
    );
    let payload_extra = vec(
        (
            name(vec![
                "iss",
                "sub",
                "aud",
                "exp",
                "iat",
                "nbf",
                "ISS",
                "Aud",
                "\u{17f}ub",
                "jti",
            ]),
            member_value(),
        ),
        0..3,
    );
    let alg = prop_oneof![
        6 => Just(json!("RS256")),
        2 => Just(json!("PS256")),
        1 => select(vec!["RS512", "none", "HS256", "ES256"]).prop_map(Value::from),
    ];
    let user = prop_oneof![6 => Just(json!(USER)), 2 => Just(json!(USER2)), 1 => member_value()];
    let aud = prop_oneof![6 => Just(json!(AUD)), 1 => member_value()];
    let exp = prop_oneof![6 => (T + 2..T + 4000).prop_map(Value::from), 1 => member_value()];
    let iat = prop_oneof![6 => (T - 3600..=T + 1).prop_map(Value::from), 1 => member_value()];
    (
        alg,
        any::<bool>(),
        header_extra,
        user.clone(),
        prop_oneof![8 => Just(None), 1 => user.prop_map(Some)],
        aud,
        exp,
        iat,
        proptest::option::weighted(0.2, (T - 100..T + 100).prop_map(Value::from)),
        payload_extra,
        0u8..4,
    )
        .prop_map(
            |(alg, typ, header_extra, iss, sub, aud, exp, iat, nbf, payload_extra, signer)| {
                let mut header = vec![("alg".to_owned(), alg)];
                if typ {
                    header.push(("typ".to_owned(), json!("JWT")));
                }
                header.extend(header_extra);
                let sub = sub.unwrap_or_else(|| iss.clone());
                let mut payload = vec![
                    ("iss".to_owned(), iss),
                    ("sub".to_owned(), sub),
                    ("aud".to_owned(), aud),
                    ("exp".to_owned(), exp),
                    ("iat".to_owned(), iat),
                ];
                if let Some(nbf) = nbf {
                    payload.push(("nbf".to_owned(), nbf));
                }
                payload.extend(payload_extra);
                (header, payload, signer)
            },
        )
}

fn object_text(members: &[(String, Value)]) -> String {
    let members: Vec<String> = members
        .iter()
        .map(|(name, value)| format!("{}:{value}", Value::from(name.as_str())))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// `explain(t).verdict()` is `verify(t)` for a few hundred signed tokens near a
/// valid one (every kind of claim and header value, repeated and case-folded
/// names, the user's key, another user's, a stranger's) and as many with one
/// character changed.
#[test]
fn explain_s_verdict_is_verify_s_on_random_tokens() {
    let fx = &*FIXTURE;
    let auth = fx.auth_at(T);
    let config = config_proptest(384);
    let outcomes = std::cell::Cell::new((0usize, 0usize));
    // A batch of random tokens holds some valid ones (8 to 26 of 384 in 15 runs):
    // more batches until both verdicts were seen often enough.
    for _batch in 0..4 {
        TestRunner::new(config.clone())
            .run(&token_parts(), |(header, payload, signer)| {
                let header = object_text(&header);
                let payload = object_text(&payload);
                let key = match signer {
                    0 | 1 => fx.key(USER),
                    2 => fx.key(USER2),
                    _ => &fx.other,
                };
                let algorithm = if header.contains(r#""alg":"PS256""#) {
                    Algorithm::PS256
                } else {
                    Algorithm::RS256
                };
                let token = key.sign_raw(algorithm, &header, &payload);
                let (verified, explained) =
                    same_verdict(&auth, &token, &format!("header {header} payload {payload}"))?;
                let (accepted, refused) = outcomes.get();
                if verified {
                    outcomes.set((accepted + 1, refused));
                    prop_assert!(!explained.to_string().contains("FAIL  "));
                } else {
                    outcomes.set((accepted, refused + 1));
                    prop_assert!(explained.to_string().contains("FAIL  "), "{}", explained);
                }
                Ok(())
            })
            .unwrap();
        let (accepted, refused) = outcomes.get();
        if accepted >= 10 && refused >= 10 {
            break;
        }
    }
    let (accepted, refused) = outcomes.get();
    assert!(
        accepted >= 10 && refused >= 10,
        "{accepted} accepted, {refused} refused"
    );

    // One character of a valid token changed, inserted or removed.
    let valid = fx.token(USER, T).build();
    let chars: Vec<char> = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ~"
        .chars()
        .collect();
    let edits = (any::<proptest::sample::Index>(), select(chars), 0u8..3);
    TestRunner::new(config)
        .run(&edits, |(index, c, kind)| {
            let mut token: Vec<char> = valid.chars().collect();
            let i = index.index(token.len());
            match kind {
                0 => token[i] = c,
                1 => token.insert(i, c),
                _ => {
                    token.remove(i);
                }
            }
            let token: String = token.into_iter().collect();
            same_verdict(&auth, &token, &token).map(drop)
        })
        .unwrap();
}

/// Checks that `explain(token)`'s verdict is `verify(token)`'s (`context` names the
/// token in a failure), and returns whether it was accepted, with the explanation.
fn same_verdict(
    auth: &SystemAuth,
    token: &str,
    context: &str,
) -> Result<(bool, Explanation), TestCaseError> {
    let verified = auth.verify(token);
    let explained = auth.explain(token);
    prop_assert_eq!(
        explained.verdict().map_err(Clone::clone),
        verified.as_ref().map(|u| u.user_id()).map_err(Clone::clone),
        "{}",
        context
    );
    Ok((verified.is_ok(), explained))
}
