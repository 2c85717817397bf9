//! `SystemAuth::verify` against ZITADEL's checks, with real RSA keys, real tokens
//! from independent signers, and an injected clock for exact boundaries.

use std::time::{Duration, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::{
    Engine as _, alphabet,
    engine::{
        DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig,
        general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    },
};
use serde_json::json;
use zitadel_system_auth::{
    Algorithm, AuthError, Membership, SystemAuth, SystemAuthBuilder, SystemUser,
    error::{AudienceHint, Claim, Malformed},
};

use crate::{
    cases::{self, World},
    common::{self, AUD, KeyExt as _, USER, b64, key, other_key},
};

/// The "current" time of most tests (2023-11-14T22:13:20Z).
const T: u64 = 1_700_000_000;
/// A plain RS256 header.
const RS: &str = r#"{"alg":"RS256","typ":"JWT"}"#;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A builder with the default config and the clock fixed at `secs.nanos`.
fn builder_at(secs: u64, nanos: u32) -> SystemAuthBuilder {
    SystemAuth::builder()
        .config_yaml(&common::default_config())
        .clock(move || common::at(secs, nanos))
}

/// The default verifier with the clock fixed at `secs.nanos`.
fn auth_at(secs: u64, nanos: u32) -> SystemAuth {
    builder_at(secs, nanos).build().expect("build SystemAuth")
}

/// The default verifier with the clock at `T`.
fn auth() -> SystemAuth {
    auth_at(T, 0)
}

/// Claims for the default user and audience.
fn claims(iat: u64, exp: u64) -> serde_json::Value {
    json!({ "iss": USER, "sub": USER, "aud": AUD, "iat": iat, "exp": exp })
}

/// Claims valid at `T`.
fn valid() -> serde_json::Value {
    claims(T, T + 3600)
}

/// A payload text for the default user with `iat` and `exp` given as JSON text.
fn payload(iat: &str, exp: &str) -> String {
    format!(r#"{{"iss":"{USER}","sub":"{USER}","aud":"{AUD}","iat":{iat},"exp":{exp}}}"#)
}

/// The default key signs `payload_json` under the plain RS256 header.
fn raw(payload_json: &str) -> String {
    key().sign_raw(Algorithm::RS256, RS, payload_json)
}

/// Signs an arbitrary signing input (`header.payload`, already encoded) with the
/// default key, RS256, through the openssl command line.
fn sign_input(input: &str) -> String {
    let sig = common::openssl_stdin(
        &[
            "dgst",
            "-sha256",
            "-sign",
            common::path_str(&key().private_path()),
            "-binary",
        ],
        input.as_bytes(),
    );
    format!("{input}.{}", b64(&sig))
}

#[track_caller]
fn ok(result: Result<SystemUser, AuthError>) -> SystemUser {
    match result {
        Ok(user) => user,
        Err(error) => panic!("token refused: {error:?} ({error})"),
    }
}

#[track_caller]
fn refused(result: Result<SystemUser, AuthError>) -> AuthError {
    match result {
        Ok(user) => panic!("token accepted: {user:?}"),
        Err(error) => error,
    }
}

fn parts(token: &str) -> (&str, &str, &str) {
    let mut it = token.split('.');
    let parts = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    assert!(it.next().is_none());
    parts
}

/// A base64url engine that ignores non-zero trailing bits (as lenient decoders do).
fn lenient() -> GeneralPurpose {
    GeneralPurpose::new(
        &alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    )
}

/// The same bytes, encoded with non-zero trailing bits in the last character.
fn trailing_bits_variant(segment: &str) -> String {
    assert_ne!(segment.len() % 4, 0, "segment has no trailing bits");
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = *segment.as_bytes().last().unwrap();
    let index = ALPHABET.iter().position(|c| *c == last).unwrap();
    let variant = format!(
        "{}{}",
        &segment[..segment.len() - 1],
        ALPHABET[index + 1] as char
    );
    assert_ne!(variant, segment);
    assert_eq!(
        lenient().decode(&variant).unwrap(),
        URL_SAFE_NO_PAD.decode(segment).unwrap(),
        "the variant decodes to the same bytes with a lenient decoder"
    );
    variant
}

/// Pads a JSON object text with spaces before its closing brace until its length
/// is `residue` modulo 3 (so its base64 has trailing bits).
fn json_len_mod3(json: &str, residue: usize) -> String {
    let mut json = json.to_owned();
    while json.len() % 3 != residue {
        json.insert(json.len() - 1, ' ');
    }
    json
}

fn hex_decode(text: &str) -> Vec<u8> {
    let text = text.trim();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------
// The table of refusals, through verify
// ---------------------------------------------------------------------------

/// Every token of the refusal table, through `SystemAuth::verify` (and, for a
/// route's role, `SystemUser::require_role`): refused with the row's error, and the
/// error's own answer (status, code, challenge, description, reason) is the row's.
/// The cases that are headers rather than tokens are the layer's.
#[test]
fn every_refused_token_of_the_table() {
    let world = World::new();
    let table = cases::refusals();
    let (mut failures, mut checked) = (Vec::new(), 0);
    for case in &table {
        let sent = (case.make)();
        let Some(token) = sent.token() else { continue };
        world.set_at(case.at);
        let error = match (world.auth.verify(token), case.role) {
            (Err(error), None) => error,
            (Ok(user), Some(role)) => match user.require_role(role) {
                Err(error) => error,
                Ok(()) => {
                    failures.push(format!("- {}: the user has the role {role}", case.name));
                    continue;
                }
            },
            (result, _) => {
                failures.push(format!("- {}: {result:?}", case.name));
                continue;
            }
        };
        checked += 1;
        let got = (
            error.clone(),
            error.status().as_u16(),
            error.grpc_code(),
            error.www_authenticate(),
            error.to_string(),
            error.reason(),
        );
        let want = (
            case.error.clone(),
            case.status,
            case.code,
            Some(case.www_authenticate.to_owned()),
            cases::description(&case.error),
            case.reason,
        );
        if got != want {
            failures.push(format!("- {}: got {got:?}\n  want {want:?}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} tokens failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        checked > 50,
        "only {checked} of {} cases are tokens",
        table.len()
    );
}

// ---------------------------------------------------------------------------
// Accepted tokens, from independent signers
// ---------------------------------------------------------------------------

#[track_caller]
fn assert_default_user(user: &SystemUser, iat: u64, exp: u64) {
    assert_eq!(user.user_id(), USER);
    assert_eq!(user.issued_at(), UNIX_EPOCH + Duration::from_secs(iat));
    assert_eq!(user.expires_at(), UNIX_EPOCH + Duration::from_secs(exp));
    assert_eq!(user.memberships(), [Membership::default_system_owner()]);
    assert_eq!(user.instance_id(), None);
    assert_eq!(user.org_id(), None);
    assert!(user.has_role("SYSTEM_OWNER"));
}

#[test]
fn jsonwebtoken_rs256_token_is_accepted() {
    let token = key().jwt(jsonwebtoken::Algorithm::RS256, &valid());
    let user = ok(auth().verify(&token));
    assert_default_user(&user, T, T + 3600);
}

#[test]
fn jsonwebtoken_ps256_token_is_accepted() {
    let token = key().jwt(jsonwebtoken::Algorithm::PS256, &valid());
    let user = ok(auth().verify(&token));
    assert_default_user(&user, T, T + 3600);
}

#[test]
fn openssl_cli_rs256_token_is_accepted() {
    let token = key().sign_openssl(RS, &valid().to_string());
    let user = ok(auth().verify(&token));
    assert_default_user(&user, T, T + 3600);
}

#[test]
fn aws_lc_rs_ps256_token_is_accepted() {
    let token = key().sign_raw(
        Algorithm::PS256,
        r#"{"alg":"PS256","typ":"JWT"}"#,
        &valid().to_string(),
    );
    let user = ok(auth().verify(&token));
    assert_default_user(&user, T, T + 3600);
}

#[test]
fn seed_shaped_token_is_accepted_at_its_time() {
    // The token from the seed: iat 1659957184, exp 1659960784.
    let token = key().sign_openssl(
        r#"{"alg":"RS256","typ":"JWT"}"#,
        r#"{"iss":"system-user-1","sub":"system-user-1","aud":"https://custom-domain.com","iat":1659957184,"exp":1659960784}"#,
    );
    let user = ok(auth_at(1_659_957_200, 0).verify(&token));
    assert_default_user(&user, 1_659_957_184, 1_659_960_784);
}

#[test]
fn openssl_ps256_with_hash_length_salt_is_accepted() {
    let header = b64(br#"{"alg":"PS256","typ":"JWT"}"#);
    let input = format!("{header}.{}", b64(valid().to_string().as_bytes()));
    let sig = common::openssl_stdin(
        &[
            "dgst",
            "-sha256",
            "-sign",
            common::path_str(&key().private_path()),
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:32",
            "-binary",
        ],
        input.as_bytes(),
    );
    let token = format!("{input}.{}", b64(&sig));
    assert_default_user(&ok(auth().verify(&token)), T, T + 3600);
}

#[test]
fn ps256_with_maximal_salt_is_refused() {
    // RFC 7518: the salt is as long as the hash; Go accepts any salt length, this
    // crate does not.
    let header = b64(br#"{"alg":"PS256","typ":"JWT"}"#);
    let input = format!("{header}.{}", b64(valid().to_string().as_bytes()));
    let sig = common::openssl_stdin(
        &[
            "dgst",
            "-sha256",
            "-sign",
            common::path_str(&key().private_path()),
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:max",
            "-binary",
        ],
        input.as_bytes(),
    );
    let token = format!("{input}.{}", b64(&sig));
    assert_eq!(refused(auth().verify(&token)), AuthError::InvalidSignature);
}

#[test]
fn the_same_token_verifies_many_times() {
    let auth = auth();
    let token = key().rs256(&valid());
    for _ in 0..3 {
        ok(auth.verify(&token));
    }
}

// ---------------------------------------------------------------------------
// exp: accepted iff now + 1 s < exp
// ---------------------------------------------------------------------------

#[test]
fn exp_boundary_with_nanosecond_clock() {
    let exp = T + 100;
    let token = key().rs256(&claims(T, exp));
    // now + 1s = exp - 1ns: before exp.
    ok(auth_at(exp - 2, 999_999_999).verify(&token));
    // now + 1s = exp: not before exp.
    assert_eq!(
        refused(auth_at(exp - 1, 0).verify(&token)),
        AuthError::Expired
    );
    assert_eq!(
        refused(auth_at(exp - 1, 1).verify(&token)),
        AuthError::Expired
    );
    assert_eq!(refused(auth_at(exp, 0).verify(&token)), AuthError::Expired);
    assert_eq!(
        refused(auth_at(exp + 10, 0).verify(&token)),
        AuthError::Expired
    );
}

#[test]
fn exp_equal_to_iat_is_expired() {
    let token = key().rs256(&claims(T, T));
    assert_eq!(refused(auth().verify(&token)), AuthError::Expired);
}

#[test]
fn missing_exp_is_refused() {
    let token = raw(&json!({ "iss": USER, "sub": USER, "aud": AUD, "iat": T }).to_string());
    assert_eq!(
        refused(auth().verify(&token)),
        AuthError::MissingClaim(Claim::Exp)
    );
}

#[test]
fn null_exp_is_refused() {
    let token = raw(&payload(&T.to_string(), "null"));
    assert!(matches!(
        refused(auth().verify(&token)),
        AuthError::InvalidClaim(Claim::Exp) | AuthError::MissingClaim(Claim::Exp)
    ));
}

// ---------------------------------------------------------------------------
// iat in the future: refused iff iat > round(now + 1 s), halfway rounds up
// ---------------------------------------------------------------------------

#[test]
fn iat_in_future_just_below_half_rounds_down() {
    let at = auth_at(T, 499_999_999); // now + 1s = T+1.499999999 -> T+1
    ok(at.verify(&key().rs256(&claims(T + 1, T + 3600))));
    assert_eq!(
        refused(at.verify(&key().rs256(&claims(T + 2, T + 3600)))),
        AuthError::IssuedInFuture
    );
}

#[test]
fn iat_in_future_exactly_half_rounds_up() {
    // now + 1s = T+1.5 -> T+2, so iat = T+2 is not in the future.
    ok(auth_at(T, 500_000_000).verify(&key().rs256(&claims(T + 2, T + 3600))));
    assert_eq!(
        refused(auth_at(T, 500_000_000).verify(&key().rs256(&claims(T + 3, T + 3600)))),
        AuthError::IssuedInFuture
    );
}

#[test]
fn iat_in_future_below_half_is_refused() {
    // now + 1s = T+1.4999 -> T+1 < T+2.
    assert_eq!(
        refused(auth_at(T, 499_900_000).verify(&key().rs256(&claims(T + 2, T + 3600)))),
        AuthError::IssuedInFuture
    );
}

#[test]
fn iat_in_future_at_whole_seconds() {
    let at = auth_at(T, 0);
    ok(at.verify(&key().rs256(&claims(T + 1, T + 3600))));
    assert_eq!(
        refused(at.verify(&key().rs256(&claims(T + 2, T + 3600)))),
        AuthError::IssuedInFuture
    );
}

#[test]
fn missing_iat_is_refused() {
    let token = raw(&json!({ "iss": USER, "sub": USER, "aud": AUD, "exp": T + 60 }).to_string());
    assert_eq!(
        refused(auth().verify(&token)),
        AuthError::MissingClaim(Claim::Iat)
    );
}

// ---------------------------------------------------------------------------
// iat too old: refused iff iat < round(now - 1 h)
// ---------------------------------------------------------------------------

#[test]
fn iat_age_boundary_rounds_like_go() {
    let exp = T + 86_400;
    let at_t = key().rs256(&claims(T, exp));
    let at_t1 = key().rs256(&claims(T + 1, exp));
    // now - 1h = T + 0.499999999 -> T.
    ok(auth_at(T + 3600, 499_999_999).verify(&at_t));
    // now - 1h = T + 0.5 -> T+1.
    assert_eq!(
        refused(auth_at(T + 3600, 500_000_000).verify(&at_t)),
        AuthError::IssuedTooLongAgo
    );
    ok(auth_at(T + 3600, 500_000_000).verify(&at_t1));
    // Whole seconds: exactly one hour old is still fine, one more second is not.
    ok(auth_at(T + 3600, 0).verify(&at_t));
    assert_eq!(
        refused(auth_at(T + 3601, 0).verify(&at_t)),
        AuthError::IssuedTooLongAgo
    );
}

#[test]
fn long_lived_token_is_refused_once_iat_is_over_an_hour_old() {
    let token = key().rs256(&claims(T, T + 365 * 86_400));
    ok(auth_at(T + 3000, 0).verify(&token));
    assert_eq!(
        refused(auth_at(T + 7200, 0).verify(&token)),
        AuthError::IssuedTooLongAgo
    );
}

// ---------------------------------------------------------------------------
// nbf (ZITADEL ignores it; this crate honours it)
// ---------------------------------------------------------------------------

#[test]
fn nbf_is_honoured_with_the_offset() {
    let with_nbf = |nbf: u64| {
        key().rs256(&json!({
            "iss": USER, "sub": USER, "aud": AUD, "iat": T, "exp": T + 3600, "nbf": nbf
        }))
    };
    ok(auth().verify(&with_nbf(T - 10)));
    ok(auth().verify(&with_nbf(T)));
    // nbf = now + 1s exactly.
    ok(auth().verify(&with_nbf(T + 1)));
    assert_eq!(
        refused(auth().verify(&with_nbf(T + 2))),
        AuthError::NotYetValid
    );
    // With nanoseconds: now + 1s = T+1.5 < T+2.
    assert_eq!(
        refused(auth_at(T, 500_000_000).verify(&with_nbf(T + 2))),
        AuthError::NotYetValid
    );
    ok(auth_at(T + 1, 0).verify(&with_nbf(T + 2)));
}

#[test]
fn nbf_of_wrong_type_is_refused() {
    let token = key().rs256(&json!({
        "iss": USER, "sub": USER, "aud": AUD, "iat": T, "exp": T + 3600, "nbf": "soon"
    }));
    assert_eq!(
        refused(auth().verify(&token)),
        AuthError::InvalidClaim(Claim::Nbf)
    );
}

// ---------------------------------------------------------------------------
// Configurable offset and age
// ---------------------------------------------------------------------------

#[test]
fn zero_clock_offset_moves_the_exp_boundary() {
    let exp = T + 100;
    let token = key().rs256(&claims(T, exp));
    let at = |s, n| {
        builder_at(s, n)
            .clock_offset(Duration::ZERO)
            .build()
            .unwrap()
    };
    ok(at(exp - 1, 999_999_999).verify(&token));
    assert_eq!(refused(at(exp, 0).verify(&token)), AuthError::Expired);
    // With the default offset, exp - 1 s is already refused.
    assert_eq!(
        refused(auth_at(exp - 1, 0).verify(&token)),
        AuthError::Expired
    );
    ok(at(exp - 1, 0).verify(&token));
}

#[test]
fn larger_clock_offset_moves_every_boundary() {
    let offset = Duration::from_secs(5);
    let at = |s, n| builder_at(s, n).clock_offset(offset).build().unwrap();
    let exp = T + 100;
    let token = key().rs256(&claims(T, exp));
    ok(at(exp - 6, 999_999_999).verify(&token));
    assert_eq!(refused(at(exp - 5, 0).verify(&token)), AuthError::Expired);
    // iat up to now + 5 s is fine.
    ok(at(T, 0).verify(&key().rs256(&claims(T + 5, T + 3600))));
    assert_eq!(
        refused(at(T, 0).verify(&key().rs256(&claims(T + 6, T + 3600)))),
        AuthError::IssuedInFuture
    );
    // and so is nbf.
    let nbf = key().rs256(&json!({
        "iss": USER, "sub": USER, "aud": AUD, "iat": T, "exp": T + 3600, "nbf": T + 5
    }));
    ok(at(T, 0).verify(&nbf));
    assert_eq!(refused(auth().verify(&nbf)), AuthError::NotYetValid);
}

#[test]
fn max_token_age_moves_the_iat_boundary() {
    let at = |s, n| {
        builder_at(s, n)
            .max_token_age(Duration::from_secs(600))
            .build()
            .unwrap()
    };
    let token = key().rs256(&claims(T, T + 3600));
    ok(at(T + 600, 0).verify(&token));
    ok(at(T + 600, 499_999_999).verify(&token));
    assert_eq!(
        refused(at(T + 600, 500_000_000).verify(&token)),
        AuthError::IssuedTooLongAgo
    );
    assert_eq!(
        refused(at(T + 601, 0).verify(&token)),
        AuthError::IssuedTooLongAgo
    );
    // The default (1 h) would still accept it.
    ok(auth_at(T + 601, 0).verify(&token));
}

#[test]
fn zero_max_token_age_disables_the_age_check() {
    let token = key().rs256(&claims(T, T + 30 * 86_400));
    let later = T + 10 * 86_400;
    assert_eq!(
        refused(auth_at(later, 0).verify(&token)),
        AuthError::IssuedTooLongAgo
    );
    let unlimited = builder_at(later, 0)
        .max_token_age(Duration::ZERO)
        .build()
        .unwrap();
    ok(unlimited.verify(&token));
    // The other checks still hold.
    assert_eq!(
        refused(
            builder_at(T + 30 * 86_400, 0)
                .max_token_age(Duration::ZERO)
                .build()
                .unwrap()
                .verify(&token)
        ),
        AuthError::Expired
    );
}

/// ZITADEL reads an `iat` of 0 (after cutting off a fraction) as no `iat` at all,
/// whatever the age limit.
#[test]
fn iat_zero_is_a_missing_iat_also_without_an_age_limit() {
    let unlimited = builder_at(T, 0)
        .max_token_age(Duration::ZERO)
        .build()
        .unwrap();
    for auth in [auth(), unlimited.clone()] {
        for iat in ["0", "0.0", "0.999", "-0.0", "0e3"] {
            let token = raw(&payload(iat, &(T + 3600).to_string()));
            assert_eq!(
                refused(auth.verify(&token)),
                AuthError::MissingClaim(Claim::Iat),
                "iat {iat}"
            );
        }
    }
    // One second after the epoch is an iat, too old by default, fine without a limit.
    let token = raw(&payload("1", &(T + 3600).to_string()));
    assert_eq!(refused(auth().verify(&token)), AuthError::IssuedTooLongAgo);
    ok(unlimited.verify(&token));
}

// ---------------------------------------------------------------------------
// Time values
// ---------------------------------------------------------------------------

#[test]
fn fractional_exp_is_cut_off() {
    let exp = T + 100;
    let token = raw(&payload(&T.to_string(), &format!("{exp}.9")));
    // As if exp = T+100: accepted when now + 1s < T+100 ...
    let user = ok(auth_at(exp - 2, 999_999_999).verify(&token));
    assert_eq!(user.expires_at(), UNIX_EPOCH + Duration::from_secs(exp));
    // ... refused at now + 1s = T+100 even though T+100 < T+100.9.
    assert_eq!(
        refused(auth_at(exp - 1, 0).verify(&token)),
        AuthError::Expired
    );
}

#[test]
fn small_fractional_exp_is_cut_off() {
    // exp = 1234.9 behaves as 1234.
    let token = raw(&payload("1200", "1234.9"));
    ok(auth_at(1232, 999_999_999).verify(&token));
    assert_eq!(refused(auth_at(1233, 0).verify(&token)), AuthError::Expired);
}

#[test]
fn fractional_iat_is_cut_off() {
    // iat = T+1.9 is taken as T+1, which is not after round(T+0.4+1) = T+1.
    let token = raw(&payload(&format!("{}.9", T + 1), &(T + 3600).to_string()));
    let user = ok(auth_at(T, 400_000_000).verify(&token));
    assert_eq!(user.issued_at(), UNIX_EPOCH + Duration::from_secs(T + 1));
}

#[test]
fn exponent_notation_is_a_number() {
    // 1.7e9 is the number 1700000000.
    let token = raw(&payload("1.7e9", "1.7000036e9"));
    let user = ok(auth().verify(&token));
    assert_eq!(user.issued_at(), UNIX_EPOCH + Duration::from_secs(T));
    assert_eq!(
        user.expires_at(),
        UNIX_EPOCH + Duration::from_secs(T + 3600)
    );
}

#[test]
fn time_strings_are_refused() {
    let rfc3339_exp = raw(&payload(&T.to_string(), r#""2023-11-14T23:13:20Z""#));
    assert_eq!(
        refused(auth().verify(&rfc3339_exp)),
        AuthError::InvalidClaim(Claim::Exp)
    );
    let rfc3339_iat = raw(&payload(
        r#""2023-11-14T22:13:20Z""#,
        &(T + 3600).to_string(),
    ));
    assert_eq!(
        refused(auth().verify(&rfc3339_iat)),
        AuthError::InvalidClaim(Claim::Iat)
    );
    let numeric_string = raw(&payload(&T.to_string(), &format!("\"{}\"", T + 3600)));
    assert_eq!(
        refused(auth().verify(&numeric_string)),
        AuthError::InvalidClaim(Claim::Exp)
    );
}

#[test]
fn other_time_types_are_refused() {
    for exp in ["true", "[1700003600]", r#"{"t":1700003600}"#] {
        let token = raw(&payload(&T.to_string(), exp));
        assert_eq!(
            refused(auth().verify(&token)),
            AuthError::InvalidClaim(Claim::Exp),
            "exp = {exp}"
        );
    }
}

#[test]
fn negative_times_are_refused() {
    for exp in ["-1", "-1700003600", "-0.5", "-9223372036854775808"] {
        let token = raw(&payload(&T.to_string(), exp));
        assert_eq!(
            refused(auth().verify(&token)),
            AuthError::InvalidClaim(Claim::Exp),
            "exp = {exp}"
        );
    }
    let token = raw(&payload("-1", &(T + 3600).to_string()));
    assert_eq!(
        refused(auth().verify(&token)),
        AuthError::InvalidClaim(Claim::Iat)
    );
    let nbf = key().rs256(&json!({
        "iss": USER, "sub": USER, "aud": AUD, "iat": T, "exp": T + 3600, "nbf": -5
    }));
    assert_eq!(
        refused(auth().verify(&nbf)),
        AuthError::InvalidClaim(Claim::Nbf)
    );
}

#[test]
fn out_of_range_times_are_refused() {
    for exp in [
        "1e300",
        "18446744073709551616",
        "18446744073709551615",
        "9223372036854775807",
        "1e19",
        "253402300800",
    ] {
        let token = raw(&payload(&T.to_string(), exp));
        assert_eq!(
            refused(auth().verify(&token)),
            AuthError::InvalidClaim(Claim::Exp),
            "exp = {exp}"
        );
    }
    let huge_iat = raw(&payload(&u64::MAX.to_string(), &(T + 3600).to_string()));
    assert_eq!(
        refused(auth().verify(&huge_iat)),
        AuthError::InvalidClaim(Claim::Iat)
    );
    let huge_nbf = key().rs256(&json!({
        "iss": USER, "sub": USER, "aud": AUD, "iat": T, "exp": T + 3600, "nbf": u64::MAX
    }));
    assert_eq!(
        refused(auth().verify(&huge_nbf)),
        AuthError::InvalidClaim(Claim::Nbf)
    );
}

#[test]
fn latest_representable_exp_is_accepted() {
    // 9999-12-31T23:59:59Z.
    let token = raw(&payload(&T.to_string(), "253402300799"));
    let user = ok(auth().verify(&token));
    assert_eq!(
        user.expires_at(),
        UNIX_EPOCH + Duration::from_secs(253_402_300_799)
    );
}

#[test]
fn clock_before_1970_does_not_panic() {
    let auth = SystemAuth::builder()
        .config_yaml(&common::default_config())
        .clock(|| UNIX_EPOCH - Duration::from_secs(10))
        .build()
        .unwrap();
    // iat 1 is after round(-10 s + 1 s).
    let token = key().rs256(&claims(1, 100));
    assert_eq!(refused(auth.verify(&token)), AuthError::IssuedInFuture);
    let token = key().rs256(&valid());
    assert_eq!(refused(auth.verify(&token)), AuthError::IssuedInFuture);
    // Just before 1970, iat 1 is fine: round(-0.2 s + 1 s) = 1 s.
    let auth = SystemAuth::builder()
        .config_yaml(&common::default_config())
        .clock(|| UNIX_EPOCH - Duration::from_millis(200))
        .build()
        .unwrap();
    ok(auth.verify(&key().rs256(&claims(1, 100))));
}

#[test]
fn far_future_clock_does_not_panic() {
    let far = Duration::from_secs(1 << 62);
    let auth = SystemAuth::builder()
        .config_yaml(&common::default_config())
        .clock(move || UNIX_EPOCH + far)
        .build()
        .unwrap();
    assert_eq!(
        refused(auth.verify(&key().rs256(&valid()))),
        AuthError::Expired
    );
    let token = raw(&payload(&T.to_string(), "253402300799"));
    assert_eq!(refused(auth.verify(&token)), AuthError::Expired);
}

#[test]
fn extreme_durations_do_not_panic() {
    let token = key().rs256(&claims(1, T + 3600));
    // An offset of Duration::MAX: every token is expired.
    let auth = builder_at(T, 0)
        .clock_offset(Duration::MAX)
        .build()
        .unwrap();
    assert_eq!(refused(auth.verify(&token)), AuthError::Expired);
    // A max age of Duration::MAX: iat 1 (1970) is not too old.
    let auth = builder_at(T, 0)
        .max_token_age(Duration::MAX)
        .build()
        .unwrap();
    let user = ok(auth.verify(&token));
    assert_eq!(user.issued_at(), UNIX_EPOCH + Duration::from_secs(1));
}

// ---------------------------------------------------------------------------
// Audience
// ---------------------------------------------------------------------------

fn with_aud(aud: serde_json::Value) -> String {
    key().rs256(&json!({ "iss": USER, "sub": USER, "aud": aud, "iat": T, "exp": T + 3600 }))
}

#[test]
fn audience_as_string_and_array() {
    ok(auth().verify(&with_aud(json!(AUD))));
    ok(auth().verify(&with_aud(json!([AUD]))));
    ok(auth().verify(&with_aud(json!(["https://other.example", AUD]))));
    ok(auth().verify(&with_aud(json!([
        "https://a.example",
        AUD,
        "https://b.example"
    ]))));
}

#[test]
fn audience_of_wrong_type_is_refused() {
    for aud in [
        json!([AUD, 1]),
        json!([1, AUD]),
        json!([AUD, null]),
        json!([[AUD]]),
        json!(42),
        json!({ "aud": AUD }),
        json!(true),
    ] {
        assert_eq!(
            refused(auth().verify(&with_aud(aud.clone()))),
            AuthError::InvalidClaim(Claim::Aud),
            "aud = {aud}"
        );
    }
}

#[test]
fn null_audience_is_refused() {
    assert!(matches!(
        refused(auth().verify(&with_aud(json!(null)))),
        AuthError::InvalidClaim(Claim::Aud) | AuthError::MissingClaim(Claim::Aud)
    ));
}

#[test]
fn missing_audience_is_refused() {
    let token = key().rs256(&json!({ "iss": USER, "sub": USER, "iat": T, "exp": T + 3600 }));
    assert_eq!(
        refused(auth().verify(&token)),
        AuthError::MissingClaim(Claim::Aud)
    );
}

#[test]
fn empty_audience_array_is_refused() {
    match refused(auth().verify(&with_aud(json!([])))) {
        AuthError::AudienceMismatch { expected, .. } => assert_eq!(&*expected, AUD),
        other => panic!("expected AudienceMismatch, got {other:?}"),
    }
    match refused(auth().verify(&with_aud(json!("")))) {
        AuthError::AudienceMismatch { expected, .. } => assert_eq!(&*expected, AUD),
        other => panic!("expected AudienceMismatch, got {other:?}"),
    }
}

#[test]
fn audience_near_misses_are_refused_naming_the_expected_one() {
    let cases = [
        (
            "https://custom-domain.com/",
            Some(AudienceHint::TrailingSlash),
        ),
        ("http://custom-domain.com", Some(AudienceHint::Scheme)),
        ("https://custom-domain.com:443", Some(AudienceHint::Port)),
        ("https://custom-domain.com:8443", Some(AudienceHint::Port)),
        ("https://Custom-Domain.com", Some(AudienceHint::Case)),
        ("HTTPS://CUSTOM-DOMAIN.COM", Some(AudienceHint::Case)),
        ("https://custom-domain.com/api", None),
        ("https://custom-domain.com.evil.com", None),
        ("https://evil.com/https://custom-domain.com", None),
        ("https://evil-custom-domain.com", None),
        ("https://custom-domain.co", None),
        ("custom-domain.com", None),
        (" https://custom-domain.com", None),
        ("https://custom-domain.com ", None),
        ("https://custom-domain.com\u{0}", None),
    ];
    for (aud, hint) in cases {
        let error = refused(auth().verify(&with_aud(json!(aud))));
        let AuthError::AudienceMismatch {
            expected,
            hint: got_hint,
        } = &error
        else {
            panic!("aud {aud:?}: expected AudienceMismatch, got {error:?}");
        };
        assert_eq!(&**expected, AUD, "aud {aud:?}");
        if let Some(hint) = hint {
            assert_eq!(*got_hint, hint, "aud {aud:?}");
        }
        let text = error.to_string();
        assert!(text.contains(AUD), "{text:?} names {AUD}");
        if !AUD.contains(aud.trim()) {
            assert!(
                !text.contains(aud.trim()),
                "{text:?} must not echo the token's aud {aud:?}"
            );
        }
        assert!(!text.contains("evil"), "{text:?}");
        // And the array form gives the same answer.
        assert!(matches!(
            refused(auth().verify(&with_aud(json!([aud, "https://x.example"])))),
            AuthError::AudienceMismatch { .. }
        ));
    }
}

#[test]
fn audience_mismatch_is_decided_before_time() {
    // ZITADEL's order: aud before exp.
    let token = key().rs256(&json!({
        "iss": USER, "sub": USER, "aud": "https://wrong.example", "iat": T - 7200, "exp": T - 3600
    }));
    assert!(matches!(
        refused(auth().verify(&token)),
        AuthError::AudienceMismatch { .. }
    ));
}

#[test]
fn configured_audience_replaces_the_one_from_the_config() {
    let auth = builder_at(T, 0)
        .audience("http://localhost:8080")
        .build()
        .unwrap();
    ok(auth.verify(&with_aud(json!("http://localhost:8080"))));
    match refused(auth.verify(&with_aud(json!(AUD)))) {
        AuthError::AudienceMismatch { expected, .. } => {
            assert_eq!(&*expected, "http://localhost:8080")
        }
        other => panic!("expected AudienceMismatch, got {other:?}"),
    }
}

#[test]
fn additional_audience_is_accepted_exactly() {
    let internal = "http://zitadel.internal:8080";
    let auth = builder_at(T, 0)
        .additional_audience(internal)
        .build()
        .unwrap();
    assert_eq!(auth.audiences(), [AUD, internal]);
    ok(auth.verify(&with_aud(json!(internal))));
    ok(auth.verify(&with_aud(json!(AUD))));
    ok(auth.verify(&with_aud(json!(["https://x.example", internal]))));
    match refused(auth.verify(&with_aud(json!("http://zitadel.internal:8080/")))) {
        AuthError::AudienceMismatch { expected, .. } => assert_eq!(&*expected, AUD),
        other => panic!("expected AudienceMismatch, got {other:?}"),
    }
    // Without the additional audience the internal URL is refused.
    assert!(matches!(
        refused(self::auth().verify(&with_aud(json!(internal)))),
        AuthError::AudienceMismatch { .. }
    ));
}

// ---------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------

#[test]
fn issuer_must_equal_subject() {
    let token = key().rs256(&json!({
        "iss": USER, "sub": "someone-else", "aud": AUD, "iat": T, "exp": T + 3600
    }));
    assert_eq!(
        refused(auth().verify(&token)),
        AuthError::IssuerSubjectMismatch
    );
    let token = key().rs256(&json!({
        "iss": "someone-else", "sub": USER, "aud": AUD, "iat": T, "exp": T + 3600
    }));
    assert_eq!(
        refused(auth().verify(&token)),
        AuthError::IssuerSubjectMismatch
    );
}

#[test]
fn unknown_user_is_refused() {
    let token = other_key().rs256(&json!({
        "iss": "nobody", "sub": "nobody", "aud": AUD, "iat": T, "exp": T + 3600
    }));
    assert_eq!(refused(auth().verify(&token)), AuthError::UnknownUser);
    // Even signed by a configured key.
    let token = key().rs256(&json!({
        "iss": "nobody", "sub": "nobody", "aud": AUD, "iat": T, "exp": T + 3600
    }));
    assert_eq!(refused(auth().verify(&token)), AuthError::UnknownUser);
}

#[test]
fn user_id_look_alikes_are_unknown() {
    for id in [
        "system-user-1 ",
        " system-user-1",
        "System-User-1",
        "SYSTEM-USER-1",
        "system-user-1\n",
        "system-user-1\u{0}",
        "system\u{2011}user-1",
        "system-user-",
        "system-user-10",
    ] {
        let token = key().rs256(&json!({
            "iss": id, "sub": id, "aud": AUD, "iat": T, "exp": T + 3600
        }));
        assert_eq!(
            refused(auth().verify(&token)),
            AuthError::UnknownUser,
            "user id {id:?}"
        );
    }
}

#[test]
fn mistyped_issuer_or_subject_is_refused() {
    let cases = [
        (json!(7), json!(USER), Claim::Iss),
        (json!([USER]), json!(USER), Claim::Iss),
        (json!({ "id": USER }), json!(USER), Claim::Iss),
        (json!(null), json!(USER), Claim::Iss),
        (json!(USER), json!(5), Claim::Sub),
        (json!(USER), json!([USER]), Claim::Sub),
        (json!(USER), json!(false), Claim::Sub),
    ];
    for (iss, sub, claim) in cases {
        let token = key().rs256(&json!({
            "iss": iss, "sub": sub, "aud": AUD, "iat": T, "exp": T + 3600
        }));
        assert_eq!(
            refused(auth().verify(&token)),
            AuthError::InvalidClaim(claim),
            "iss {iss}, sub {sub}"
        );
    }
}

#[test]
fn missing_issuer_or_subject_is_refused() {
    let token = key().rs256(&json!({ "sub": USER, "aud": AUD, "iat": T, "exp": T + 3600 }));
    assert_eq!(
        refused(auth().verify(&token)),
        AuthError::MissingClaim(Claim::Iss)
    );
    let token = key().rs256(&json!({ "iss": USER, "aud": AUD, "iat": T, "exp": T + 3600 }));
    assert_eq!(
        refused(auth().verify(&token)),
        AuthError::MissingClaim(Claim::Sub)
    );
}

/// Go's decoder (under ZITADEL) reads these as the registered claims; this crate
/// reads claim names exactly, so a token with them means two things, and is refused.
#[test]
fn claim_names_in_another_case_are_refused() {
    let ambiguous = AuthError::Malformed(Malformed::AmbiguousClaimName);
    for iss_name in ["ISS", "Iss", "iSS", "\u{0131}ss", "\u{0130}SS"] {
        let token = raw(&format!(
            r#"{{"{iss_name}":"{USER}","sub":"{USER}","aud":"{AUD}","iat":{T},"exp":{}}}"#,
            T + 3600
        ));
        assert_eq!(refused(auth().verify(&token)), ambiguous, "{iss_name}");
        // Beside the exact claim too.
        let token = raw(&format!(
            r#"{{"iss":"{USER}","{iss_name}":"other","sub":"{USER}","aud":"{AUD}","iat":{T},"exp":{}}}"#,
            T + 3600
        ));
        assert_eq!(refused(auth().verify(&token)), ambiguous, "{iss_name}");
    }
    for (name, value) in [
        ("SUB", format!("\"{USER}\"")),
        ("\u{017F}ub", "7".to_owned()),
        ("AUD", "\"https://other.example\"".to_owned()),
        ("EXP", (T - 10).to_string()),
        ("IAT", (T - 7200).to_string()),
        ("nBF", (T + 600).to_string()),
    ] {
        let token = raw(&format!(
            r#"{{"iss":"{USER}","sub":"{USER}","aud":"{AUD}","iat":{T},"exp":{},"{name}":{value}}}"#,
            T + 3600
        ));
        assert_eq!(refused(auth().verify(&token)), ambiguous, "{name}");
    }
    // Names that fold to no registered claim are ordinary private claims.
    for name in ["Issuer", "subject", "audi", "\u{00DF}ub", "ex"] {
        let token = raw(&format!(
            r#"{{"iss":"{USER}","sub":"{USER}","aud":"{AUD}","iat":{T},"exp":{},"{name}":1}}"#,
            T + 3600
        ));
        ok(auth().verify(&token));
    }
}

#[test]
fn upper_case_claims_alone_are_refused_too() {
    let ambiguous = AuthError::Malformed(Malformed::AmbiguousClaimName);
    let token = raw(&format!(
        r#"{{"iss":"{USER}","SUB":"{USER}","aud":"{AUD}","iat":{T},"exp":{}}}"#,
        T + 3600
    ));
    assert_eq!(refused(auth().verify(&token)), ambiguous);
    let token = raw(&format!(
        r#"{{"iss":"{USER}","sub":"{USER}","AUD":"{AUD}","iat":{T},"exp":{}}}"#,
        T + 3600
    ));
    assert_eq!(refused(auth().verify(&token)), ambiguous);
    let token = raw(&format!(
        r#"{{"iss":"{USER}","sub":"{USER}","aud":"{AUD}","iat":{T},"EXP":{}}}"#,
        T + 3600
    ));
    assert_eq!(refused(auth().verify(&token)), ambiguous);
    let token = raw(&format!(
        r#"{{"iss":"{USER}","sub":"{USER}","aud":"{AUD}","IAT":{T},"exp":{}}}"#,
        T + 3600
    ));
    assert_eq!(refused(auth().verify(&token)), ambiguous);
}

#[test]
fn escaped_claim_names_and_values_are_decoded() {
    // "\u0069ss" is "iss" and "system\u002duser-1" is "system-user-1".
    let token = raw(&format!(
        r#"{{"\u0069ss":"system\u002duser-1","sub":"{USER}","aud":"https:\/\/custom-domain.com","iat":{T},"exp":{}}}"#,
        T + 3600
    ));
    assert_eq!(ok(auth().verify(&token)).user_id(), USER);
}

// ---------------------------------------------------------------------------
// Header
// ---------------------------------------------------------------------------

#[test]
fn alg_none_is_refused_in_any_spelling() {
    let body = b64(valid().to_string().as_bytes());
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
        for token in [
            format!("{header}.{body}."),
            format!("{header}.{body}.{}", b64(b"x")),
        ] {
            assert_eq!(
                refused(auth().verify(&token)),
                AuthError::AlgorithmNotAllowed,
                "alg {alg}"
            );
        }
        // And with a real RS256 signature over this input.
        let signed = key().sign_raw(
            Algorithm::RS256,
            &format!(r#"{{"alg":"{alg}"}}"#),
            &valid().to_string(),
        );
        assert_eq!(
            refused(auth().verify(&signed)),
            AuthError::AlgorithmNotAllowed,
            "alg {alg}"
        );
    }
}

#[test]
fn hs256_with_the_public_key_as_secret_is_refused() {
    for secret in [key().public_pem().as_bytes().to_vec(), key().public_der()] {
        let input = format!(
            "{}.{}",
            b64(br#"{"alg":"HS256","typ":"JWT"}"#),
            b64(valid().to_string().as_bytes())
        );
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &secret),
            input.as_bytes(),
        );
        let token = format!("{input}.{}", b64(tag.as_ref()));
        assert_eq!(
            refused(auth().verify(&token)),
            AuthError::AlgorithmNotAllowed
        );
        // Even when every RSA algorithm is allowed.
        let all = builder_at(T, 0).algorithms(Algorithm::ALL).build().unwrap();
        assert_eq!(refused(all.verify(&token)), AuthError::AlgorithmNotAllowed);
    }
}

#[test]
fn non_rsa_and_unknown_algorithms_are_refused() {
    for alg in [
        "ES256", "ES384", "EdDSA", "HS384", "HS512", "rs256", "RS256 ", "RSA", "",
    ] {
        let token = key().sign_raw(
            Algorithm::RS256,
            &format!(r#"{{"alg":"{alg}"}}"#),
            &valid().to_string(),
        );
        assert_eq!(
            refused(auth().verify(&token)),
            AuthError::AlgorithmNotAllowed,
            "alg {alg:?}"
        );
    }
}

#[test]
fn alg_of_wrong_type_or_missing_is_malformed() {
    for header in [
        r#"{"alg":256}"#,
        r#"{"alg":["RS256"]}"#,
        r#"{"alg":null}"#,
        r#"{"typ":"JWT"}"#,
        r#"{}"#,
    ] {
        let token = key().sign_raw(Algorithm::RS256, header, &valid().to_string());
        assert_eq!(
            refused(auth().verify(&token)),
            AuthError::Malformed(Malformed::HeaderJson),
            "header {header}"
        );
    }
}

#[test]
fn rs384_and_rs512_need_to_be_allowed() {
    for alg in [
        jsonwebtoken::Algorithm::RS384,
        jsonwebtoken::Algorithm::RS512,
        jsonwebtoken::Algorithm::PS384,
        jsonwebtoken::Algorithm::PS512,
    ] {
        let token = key().jwt(alg, &valid());
        assert_eq!(
            refused(auth().verify(&token)),
            AuthError::AlgorithmNotAllowed,
            "{alg:?}"
        );
    }
    let auth = builder_at(T, 0)
        .algorithms([Algorithm::RS256, Algorithm::RS384])
        .build()
        .unwrap();
    ok(auth.verify(&key().jwt(jsonwebtoken::Algorithm::RS384, &valid())));
    ok(auth.verify(&key().rs256(&valid())));
    assert_eq!(
        refused(auth.verify(&key().jwt(jsonwebtoken::Algorithm::RS512, &valid()))),
        AuthError::AlgorithmNotAllowed
    );
    // PS256 is not in this list.
    assert_eq!(
        refused(auth.verify(&key().jwt(jsonwebtoken::Algorithm::PS256, &valid()))),
        AuthError::AlgorithmNotAllowed
    );
    let all = builder_at(T, 0)
        .algorithms([Algorithm::RS512, Algorithm::PS384, Algorithm::PS512])
        .build()
        .unwrap();
    ok(all.verify(&key().jwt(jsonwebtoken::Algorithm::RS512, &valid())));
    ok(all.verify(&key().jwt(jsonwebtoken::Algorithm::PS384, &valid())));
    ok(all.verify(&key().jwt(jsonwebtoken::Algorithm::PS512, &valid())));
    assert_eq!(
        refused(all.verify(&key().rs256(&valid()))),
        AuthError::AlgorithmNotAllowed
    );
}

#[test]
fn alg_must_match_the_signature() {
    // A PS256 header over an RS256 signature.
    let token = key().sign_raw(
        Algorithm::RS256,
        r#"{"alg":"PS256","typ":"JWT"}"#,
        &valid().to_string(),
    );
    assert_eq!(refused(auth().verify(&token)), AuthError::InvalidSignature);
    // An RS256 header over a PS256 signature.
    let token = key().sign_raw(
        Algorithm::PS256,
        r#"{"alg":"RS256","typ":"JWT"}"#,
        &valid().to_string(),
    );
    assert_eq!(refused(auth().verify(&token)), AuthError::InvalidSignature);
    // An RS384 header over an RS256 signature, with RS384 allowed.
    let auth = builder_at(T, 0)
        .algorithms([Algorithm::RS256, Algorithm::RS384])
        .build()
        .unwrap();
    let token = key().sign_raw(Algorithm::RS256, r#"{"alg":"RS384"}"#, &valid().to_string());
    assert_eq!(refused(auth.verify(&token)), AuthError::InvalidSignature);
}

#[test]
fn crit_header_is_refused() {
    for header in [
        r#"{"alg":"RS256","crit":["exp"],"exp":1}"#,
        r#"{"alg":"RS256","crit":[]}"#,
        r#"{"alg":"RS256","crit":"b64"}"#,
    ] {
        let token = key().sign_raw(Algorithm::RS256, header, &valid().to_string());
        assert_eq!(
            refused(auth().verify(&token)),
            AuthError::CriticalHeader,
            "{header}"
        );
    }
}

#[test]
fn typ_jwt_in_any_case_is_accepted() {
    for header in [
        r#"{"alg":"RS256","typ":"JWT"}"#,
        r#"{"alg":"RS256","typ":"jwt"}"#,
        r#"{"alg":"RS256","typ":"Jwt"}"#,
        r#"{"alg":"RS256"}"#,
    ] {
        let token = key().sign_raw(Algorithm::RS256, header, &valid().to_string());
        ok(auth().verify(&token));
    }
}

#[test]
fn other_typ_is_refused() {
    for header in [
        r#"{"alg":"RS256","typ":"at+jwt"}"#,
        r#"{"alg":"RS256","typ":"JOSE"}"#,
        r#"{"alg":"RS256","typ":"JWT "}"#,
        r#"{"alg":"RS256","typ":""}"#,
        r#"{"alg":"RS256","typ":1}"#,
        r#"{"alg":"RS256","typ":null}"#,
        r#"{"alg":"RS256","typ":["JWT"]}"#,
    ] {
        let token = key().sign_raw(Algorithm::RS256, header, &valid().to_string());
        assert_eq!(
            refused(auth().verify(&token)),
            AuthError::UnsupportedType,
            "{header}"
        );
    }
}

/// The key comes from the configuration only: a header that carries a key or points
/// at one is refused, even on a token the user's own key signed.
#[test]
fn key_carrying_headers_are_refused_even_for_the_right_key() {
    for (name, value) in [
        ("jku", json!("https://evil.example/jwks.json")),
        ("x5u", json!("https://evil.example/cert.pem")),
        ("x5c", json!([STANDARD.encode(other_key().public_der())])),
        ("x5c", json!("not an array")),
        ("x5t", json!("AAAA")),
        ("x5t#S256", json!("AAAA")),
        ("jwk", json!({ "kty": "oct", "k": "c2VjcmV0" })),
        ("jwk", json!("not an object")),
        ("b64", json!(false)),
        ("b64", json!(true)),
        ("kid", json!(7)),
        ("kid", json!(null)),
        ("cty", json!({})),
        ("nonce", json!(["n"])),
    ] {
        let mut header = json!({ "alg": "RS256", "typ": "JWT" });
        header[name] = value;
        let token = key().sign_raw(Algorithm::RS256, &header.to_string(), &valid().to_string());
        assert_eq!(
            refused(auth().verify(&token)),
            AuthError::RefusedHeaderMember,
            "{header}"
        );
    }
    // A string kid (never used to find the key) is fine.
    let header = json!({ "alg": "RS256", "typ": "JWT", "kid": "some-other-user" });
    ok(auth().verify(&key().sign_raw(Algorithm::RS256, &header.to_string(), &valid().to_string())));
}

#[test]
fn embedded_jwk_of_the_attackers_key_is_refused() {
    let modulus = common::openssl(&[
        "rsa",
        "-pubin",
        "-in",
        common::path_str(&other_key().public_path()),
        "-noout",
        "-modulus",
    ]);
    let modulus = String::from_utf8(modulus).unwrap();
    let n = hex_decode(modulus.trim().strip_prefix("Modulus=").unwrap());
    assert_eq!(n.len(), 256);
    let jwk = json!({ "kty": "RSA", "n": b64(&n), "e": "AQAB", "alg": "RS256", "use": "sig" });
    for header in [
        json!({ "alg": "RS256", "typ": "JWT", "jwk": jwk }),
        json!({ "alg": "RS256", "typ": "JWT", "jwk": jwk, "kid": "other" }),
        json!({
            "alg": "RS256",
            "typ": "JWT",
            "x5c": [STANDARD.encode(other_key().public_der())],
            "jku": "https://evil.example/jwks.json",
            "x5u": "https://evil.example/cert.pem",
        }),
    ] {
        let token =
            other_key().sign_raw(Algorithm::RS256, &header.to_string(), &valid().to_string());
        assert_eq!(
            refused(auth().verify(&token)),
            AuthError::RefusedHeaderMember,
            "{header}"
        );
    }
}

// ---------------------------------------------------------------------------
// Structure
// ---------------------------------------------------------------------------

#[test]
fn wrong_number_of_segments_is_malformed() {
    let token = key().rs256(&valid());
    let (h, p, s) = parts(&token);
    for bad in [
        format!("{h}.{p}"),
        format!("{h}.{p}.{s}.{s}"),
        format!("{h}.{p}.{s}."),
        format!("{h}.{p}.{s}.x"),
        format!("{h}.{h}.{p}.{s}"),
        format!("{h}{p}{s}"),
        "..".to_owned(),
        "...".to_owned(),
        ".".to_owned(),
    ] {
        let error = refused(auth().verify(&bad));
        assert!(
            matches!(error, AuthError::Malformed(_)),
            "{bad:.40}: {error:?}"
        );
    }
    assert_eq!(
        refused(auth().verify(&format!("{h}.{p}"))),
        AuthError::Malformed(Malformed::Segments)
    );
    assert_eq!(
        refused(auth().verify(&format!("{h}.{p}.{s}.{s}"))),
        AuthError::Malformed(Malformed::Segments)
    );
}

#[test]
fn empty_token_is_malformed() {
    assert_eq!(
        refused(auth().verify("")),
        AuthError::Malformed(Malformed::EmptyToken)
    );
}

#[test]
fn padded_segments_are_malformed() {
    // A header whose JSON length is not a multiple of 3, so '=' padding is
    // meaningful; properly signed.
    let header = json_len_mod3(r#"{"alg":"RS256","typ":"JWT"}"#, 1);
    let pay = json_len_mod3(&valid().to_string(), 1);
    let (h, p) = (b64(header.as_bytes()), b64(pay.as_bytes()));
    // The unpadded form verifies.
    ok(auth().verify(&sign_input(&format!("{h}.{p}"))));
    assert_eq!(
        refused(auth().verify(&sign_input(&format!("{h}==.{p}")))),
        AuthError::Malformed(Malformed::HeaderBase64)
    );
    assert_eq!(
        refused(auth().verify(&sign_input(&format!("{h}.{p}==")))),
        AuthError::Malformed(Malformed::PayloadBase64)
    );
    // The signature (256 bytes) with its padding.
    let token = key().rs256(&valid());
    assert_eq!(
        refused(auth().verify(&format!("{token}=="))),
        AuthError::Malformed(Malformed::SignatureBase64)
    );
}

#[test]
fn non_canonical_base64_is_malformed() {
    let header = json_len_mod3(r#"{"alg":"RS256","typ":"JWT"}"#, 1);
    let pay = json_len_mod3(&valid().to_string(), 2);
    let (h, p) = (b64(header.as_bytes()), b64(pay.as_bytes()));
    ok(auth().verify(&sign_input(&format!("{h}.{p}"))));
    // Each variant is signed as it stands, so only the encoding is wrong.
    let h2 = trailing_bits_variant(&h);
    assert_eq!(
        refused(auth().verify(&sign_input(&format!("{h2}.{p}")))),
        AuthError::Malformed(Malformed::HeaderBase64)
    );
    let p2 = trailing_bits_variant(&p);
    assert_eq!(
        refused(auth().verify(&sign_input(&format!("{h}.{p2}")))),
        AuthError::Malformed(Malformed::PayloadBase64)
    );
    // The signature: 256 bytes, so its last character carries 4 trailing bits.
    let token = key().rs256(&valid());
    let (th, tp, ts) = parts(&token);
    let s2 = trailing_bits_variant(ts);
    assert_eq!(
        refused(auth().verify(&format!("{th}.{tp}.{s2}"))),
        AuthError::Malformed(Malformed::SignatureBase64)
    );
}

#[test]
fn standard_base64_alphabet_is_malformed() {
    // Find a header whose base64url holds '-' or '_' and spell it with '+' / '/'.
    let (h, std_h) = (0..3)
        .find_map(|pad| {
            let header = format!(r#"{{"alg":"RS256","x":"{}~~~~~~??????"}}"#, " ".repeat(pad));
            let h = b64(header.as_bytes());
            (h.contains('-') || h.contains('_')).then(|| {
                let std = h.replace('-', "+").replace('_', "/");
                (h, std)
            })
        })
        .expect("a header with - or _ in its base64url");
    let p = b64(valid().to_string().as_bytes());
    ok(auth().verify(&sign_input(&format!("{h}.{p}"))));
    assert_eq!(
        refused(auth().verify(&sign_input(&format!("{std_h}.{p}")))),
        AuthError::Malformed(Malformed::HeaderBase64)
    );
    // A signature in the standard alphabet.
    let token = key().rs256(&valid());
    let (th, tp, ts) = parts(&token);
    if ts.contains('-') || ts.contains('_') {
        let std_s = ts.replace('-', "+").replace('_', "/");
        assert_eq!(
            refused(auth().verify(&format!("{th}.{tp}.{std_s}"))),
            AuthError::Malformed(Malformed::SignatureBase64)
        );
    }
}

#[test]
fn whitespace_inside_the_token_is_malformed() {
    let token = key().rs256(&valid());
    let (h, p, s) = parts(&token);
    for bad in [
        format!(" {token}"),
        format!("{token} "),
        format!("{h}.{p} .{s}"),
        format!("{h}.{p}.{}\n{}", &s[..100], &s[100..]),
    ] {
        assert!(
            matches!(refused(auth().verify(&bad)), AuthError::Malformed(_)),
            "{bad:?}"
        );
    }
}

#[test]
fn payload_that_is_not_a_json_object_is_malformed() {
    for payload in [
        format!(r#"[{}]"#, valid()),
        r#"["iss","sub"]"#.to_owned(),
        r#""system-user-1""#.to_owned(),
        "42".to_owned(),
        "null".to_owned(),
        String::new(),
        format!("{} {{}}", valid()),
        format!("{}x", valid()),
        valid().to_string()[1..].to_owned(),
    ] {
        let token = raw(&payload);
        assert_eq!(
            refused(auth().verify(&token)),
            AuthError::Malformed(Malformed::PayloadJson),
            "{payload}"
        );
    }
    // Whitespace around the object is JSON.
    ok(auth().verify(&raw(&format!(" \n{}\t ", valid()))));
}

#[test]
fn header_that_is_not_a_json_object_is_malformed() {
    for header in [r#"["RS256"]"#, r#""RS256""#, "", r#"{"alg":"RS256""#] {
        let token = key().sign_raw(Algorithm::RS256, header, &valid().to_string());
        assert_eq!(
            refused(auth().verify(&token)),
            AuthError::Malformed(Malformed::HeaderJson),
            "{header}"
        );
    }
}

#[test]
fn payload_with_invalid_utf8_in_a_claim_is_malformed() {
    let h = b64(RS.as_bytes());
    let mut bytes = format!(
        r#"{{"iss":"{USER}","sub":"{USER}","aud":"{AUD}","iat":{T},"exp":{},"name":""#,
        T + 3600
    )
    .into_bytes();
    bytes.extend_from_slice(b"\xff\xfe\"}");
    let token = sign_input(&format!("{h}.{}", b64(&bytes)));
    assert_eq!(
        refused(auth().verify(&token)),
        AuthError::Malformed(Malformed::PayloadJson)
    );
    let mut bytes = b"{\"iss\":\"system-user-1\xc3\",\"sub\":\"x\"}".to_vec();
    bytes.push(b' ');
    let token = sign_input(&format!("{h}.{}", b64(&bytes)));
    assert_eq!(
        refused(auth().verify(&token)),
        AuthError::Malformed(Malformed::PayloadJson)
    );
}

#[test]
fn payload_with_invalid_utf8_anywhere_is_malformed() {
    // RFC 7519 7.2: the payload must be UTF-8 JSON. The invalid bytes here sit in
    // a string nested inside an unknown claim's object.
    let h = b64(RS.as_bytes());
    let mut bytes = format!(
        r#"{{"iss":"{USER}","sub":"{USER}","aud":"{AUD}","iat":{T},"exp":{},"ext":{{"name":""#,
        T + 3600
    )
    .into_bytes();
    bytes.extend_from_slice(b"\xff\xfe\"}}");
    let token = sign_input(&format!("{h}.{}", b64(&bytes)));
    assert_eq!(
        refused(auth().verify(&token)),
        AuthError::Malformed(Malformed::PayloadJson)
    );
}

#[test]
fn header_with_invalid_utf8_anywhere_is_malformed() {
    // The same for the JOSE header: invalid bytes nested in an unknown member.
    let p = b64(valid().to_string().as_bytes());
    let token = sign_input(&format!(
        "{}.{p}",
        b64(b"{\"alg\":\"RS256\",\"x\":{\"y\":\"\xff\"}}")
    ));
    assert_eq!(
        refused(auth().verify(&token)),
        AuthError::Malformed(Malformed::HeaderJson)
    );
}

#[test]
fn header_with_invalid_utf8_is_malformed() {
    let p = b64(valid().to_string().as_bytes());
    let token = sign_input(&format!(
        "{}.{p}",
        b64(b"{\"alg\":\"RS256\",\"x\":\"\xff\"}")
    ));
    assert_eq!(
        refused(auth().verify(&token)),
        AuthError::Malformed(Malformed::HeaderJson)
    );
}

/// Go replaces a lone surrogate escape with U+FFFD; JSON text holding one is not
/// Unicode, and the token is refused, wherever the escape is.
#[test]
fn lone_surrogate_escapes_are_malformed() {
    for (escape, name) in [
        (r"\ud800", "x"),
        (r"\udc00", "x"),
        (r"a\ud83d", "x"),
        ("1", r"\ud800"),
    ] {
        let pay = format!(
            r#"{{"iss":"{USER}","sub":"{USER}","aud":"{AUD}","iat":{T},"exp":{},"{name}":"{escape}"}}"#,
            T + 3600
        );
        assert_eq!(
            refused(auth().verify(&key().sign_raw(Algorithm::RS256, RS, &pay))),
            AuthError::Malformed(Malformed::PayloadJson),
            "payload {escape} {name}"
        );
        let header = format!(r#"{{"alg":"RS256","{name}":"{escape}"}}"#);
        assert_eq!(
            refused(auth().verify(&key().sign_raw(
                Algorithm::RS256,
                &header,
                &valid().to_string()
            ))),
            AuthError::Malformed(Malformed::HeaderJson),
            "header {escape} {name}"
        );
    }
    // A surrogate pair is one character, and fine.
    let pay = format!(
        r#"{{"iss":"{USER}","sub":"{USER}","aud":"{AUD}","iat":{T},"exp":{},"x":"\ud83d\ude00"}}"#,
        T + 3600
    );
    ok(auth().verify(&key().sign_raw(Algorithm::RS256, RS, &pay)));
}

#[test]
fn duplicate_member_names_are_refused() {
    let exp = T + 3600;
    let payloads = [
        format!(
            r#"{{"iss":"{USER}","sub":"{USER}","aud":"{AUD}","iat":{T},"exp":{exp},"iss":"{USER}"}}"#
        ),
        format!(
            r#"{{"iss":"intruder","sub":"{USER}","aud":"{AUD}","iat":{T},"exp":{exp},"iss":"{USER}"}}"#
        ),
        format!(
            r#"{{"iss":"{USER}","sub":"{USER}","aud":"{AUD}","iat":{T},"exp":{exp},"exp":{}}}"#,
            exp + 86_400
        ),
        format!(
            r#"{{"iss":"{USER}","sub":"{USER}","aud":"https://evil.example","aud":"{AUD}","iat":{T},"exp":{exp}}}"#
        ),
        format!(
            r#"{{"iss":"{USER}","sub":"{USER}","aud":"{AUD}","iat":{T},"exp":{exp},"x":1,"x":2}}"#
        ),
        // "\u0069ss" is "iss".
        format!(
            r#"{{"iss":"{USER}","sub":"{USER}","aud":"{AUD}","iat":{T},"exp":{exp},"\u0069ss":"{USER}"}}"#
        ),
    ];
    for payload in payloads {
        assert_eq!(
            refused(auth().verify(&raw(&payload))),
            AuthError::Malformed(Malformed::DuplicateMember),
            "{payload}"
        );
    }
    for header in [
        r#"{"alg":"RS256","alg":"RS256"}"#,
        r#"{"alg":"none","alg":"RS256"}"#,
        r#"{"alg":"RS256","typ":"JWT","typ":"JWT"}"#,
        r#"{"alg":"RS256","kid":"a","kid":"b"}"#,
    ] {
        let token = key().sign_raw(Algorithm::RS256, header, &valid().to_string());
        assert_eq!(
            refused(auth().verify(&token)),
            AuthError::Malformed(Malformed::DuplicateMember),
            "{header}"
        );
    }
}

#[test]
fn nested_objects_with_different_names_are_fine() {
    let token = raw(&format!(
        r#"{{"iss":"{USER}","sub":"{USER}","aud":"{AUD}","iat":{T},"exp":{},"ext":{{"a":1,"b":{{"a":2}}}}}}"#,
        T + 3600
    ));
    ok(auth().verify(&token));
}

/// go-jose refuses a duplicate member name at any depth; so does this crate, in the
/// header and in the payload.
#[test]
fn duplicate_names_at_any_depth_are_refused() {
    let duplicate = AuthError::Malformed(Malformed::DuplicateMember);
    for nested in [
        r#"{"a":1,"a":2}"#,
        r#"{"x":{"a":1,"a":2}}"#,
        r#"[{"a":1,"a":2}]"#,
        r#"[[[{"b":[],"b":[]}]]]"#,
    ] {
        let pay = format!(
            r#"{{"iss":"{USER}","sub":"{USER}","aud":"{AUD}","iat":{T},"exp":{},"ext":{nested}}}"#,
            T + 3600
        );
        assert_eq!(
            refused(auth().verify(&key().sign_raw(Algorithm::RS256, RS, &pay))),
            duplicate,
            "payload {nested}"
        );
        let header = format!(r#"{{"alg":"RS256","ext":{nested}}}"#);
        assert_eq!(
            refused(auth().verify(&key().sign_raw(
                Algorithm::RS256,
                &header,
                &valid().to_string()
            ))),
            duplicate,
            "header {nested}"
        );
    }
}

/// One depth limit for arrays and objects alike: 64 levels, the payload itself
/// being the first.
#[test]
fn nesting_up_to_64_levels_is_fine_and_the_signature_still_matters() {
    for (open, close) in [("[", "]"), (r#"{"a":"#, "}")] {
        let nested = |depth: usize| format!("{}1{}", open.repeat(depth), close.repeat(depth));
        let pay = |depth: usize| {
            format!(
                r#"{{"iss":"{USER}","sub":"{USER}","aud":"{AUD}","iat":{T},"exp":{},"deep":{}}}"#,
                T + 3600,
                nested(depth)
            )
        };
        ok(auth().verify(&key().sign_raw(Algorithm::RS256, RS, &pay(63))));
        assert_eq!(
            refused(auth().verify(&other_key().sign_raw(Algorithm::RS256, RS, &pay(63)))),
            AuthError::InvalidSignature
        );
        assert_eq!(
            refused(auth().verify(&key().sign_raw(Algorithm::RS256, RS, &pay(64)))),
            AuthError::Malformed(Malformed::NestingTooDeep),
            "{open}"
        );
        let header = format!(r#"{{"alg":"RS256","deep":{}}}"#, nested(64));
        assert_eq!(
            refused(auth().verify(&key().sign_raw(
                Algorithm::RS256,
                &header,
                &valid().to_string()
            ))),
            AuthError::Malformed(Malformed::NestingTooDeep),
            "{open}"
        );
    }
}

#[test]
fn deep_nesting_in_an_unknown_claim_does_not_panic() {
    let auth = builder_at(T, 0)
        .max_token_length(4 * 1024 * 1024)
        .build()
        .unwrap();
    for (open, close) in [("[", "]"), (r#"{"a":"#, "}")] {
        for depth in [1_000, 100_000] {
            let nested = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            let pay = format!(
                r#"{{"iss":"{USER}","sub":"{USER}","aud":"{AUD}","iat":{T},"exp":{},"deep":{nested}}}"#,
                T + 3600
            );
            let good = auth.verify(&key().sign_raw(Algorithm::RS256, RS, &pay));
            let bad = auth.verify(&other_key().sign_raw(Algorithm::RS256, RS, &pay));
            // Accepted or refused, but consistently: a wrong key never passes.
            let bad = bad.expect_err("another key's token passed");
            match good {
                Ok(_) => assert_eq!(bad, AuthError::InvalidSignature, "depth {depth}"),
                Err(good) => assert_eq!(good, bad, "depth {depth}"),
            }
        }
    }
}

#[test]
fn default_length_cap_is_exact() {
    // Find a header/payload padding that makes the token exactly 8192 bytes.
    let sig_len = b64(&[0; 256]).len();
    let enc_len = |n: usize| (4 * n).div_ceil(3);
    let claims_text = |pad: usize| {
        format!(
            r#"{{"iss":"{USER}","sub":"{USER}","aud":"{AUD}","iat":{T},"exp":{},"pad":"{}"}}"#,
            T + 3600,
            "p".repeat(pad)
        )
    };
    let header_text =
        |spaces: usize| format!(r#"{{"alg":"RS256","typ":"JWT"{}}}"#, " ".repeat(spaces));
    let total = |spaces: usize, pad: usize| {
        enc_len(header_text(spaces).len()) + 1 + enc_len(claims_text(pad).len()) + 1 + sig_len
    };
    let (spaces, pad) = (0..3)
        .flat_map(|s| (5000..7000).map(move |p| (s, p)))
        .find(|&(s, p)| total(s, p) == 8192)
        .expect("a padding for 8192 bytes");
    let exact = key().sign_raw(Algorithm::RS256, &header_text(spaces), &claims_text(pad));
    assert_eq!(exact.len(), 8192);
    ok(auth().verify(&exact));
    let (spaces, pad) = (0..3)
        .flat_map(|s| (5000..7000).map(move |p| (s, p)))
        .find(|&(s, p)| total(s, p) == 8193)
        .expect("a padding for 8193 bytes");
    let over = key().sign_raw(Algorithm::RS256, &header_text(spaces), &claims_text(pad));
    assert_eq!(over.len(), 8193);
    assert_eq!(
        refused(auth().verify(&over)),
        AuthError::TokenTooLong { limit: 8192 }
    );
}

#[test]
fn length_cap_is_checked_before_anything_else() {
    assert_eq!(
        refused(auth().verify(&"a".repeat(9000))),
        AuthError::TokenTooLong { limit: 8192 }
    );
    assert_eq!(
        refused(auth().verify(&".".repeat(100_000))),
        AuthError::TokenTooLong { limit: 8192 }
    );
}

#[test]
fn max_token_length_changes_the_cap() {
    let token = key().rs256(&valid());
    let len = token.len();
    let at_len = builder_at(T, 0).max_token_length(len).build().unwrap();
    ok(at_len.verify(&token));
    let below = builder_at(T, 0).max_token_length(len - 1).build().unwrap();
    assert_eq!(
        refused(below.verify(&token)),
        AuthError::TokenTooLong { limit: len - 1 }
    );
    // A larger cap lets a big token through.
    let big = key().rs256(&json!({
        "iss": USER, "sub": USER, "aud": AUD, "iat": T, "exp": T + 3600,
        "pad": "x".repeat(20_000)
    }));
    assert_eq!(
        refused(auth().verify(&big)),
        AuthError::TokenTooLong { limit: 8192 }
    );
    let large = builder_at(T, 0)
        .max_token_length(64 * 1024)
        .build()
        .unwrap();
    ok(large.verify(&big));
}

// ---------------------------------------------------------------------------
// Signature
// ---------------------------------------------------------------------------

#[test]
fn bad_signatures_are_refused() {
    let token = key().rs256(&valid());
    let (h, p, s) = parts(&token);
    let sig = URL_SAFE_NO_PAD.decode(s).unwrap();
    assert_eq!(sig.len(), 256);
    let mut flipped = sig.clone();
    flipped[100] ^= 1;
    let mut longer = sig.clone();
    longer.push(0);
    let mut leading_zero = vec![0];
    leading_zero.extend_from_slice(&sig);
    let cases = [
        ("empty", String::new()),
        ("truncated", b64(&sig[..255])),
        ("half", b64(&sig[..128])),
        ("one byte too long", b64(&longer)),
        ("leading zero", b64(&leading_zero)),
        ("one bit flipped", b64(&flipped)),
        ("zeros", b64(&[0; 256])),
        ("all ones", b64(&[0xff; 256])),
        ("one byte", b64(&[1])),
    ];
    for (what, bad) in cases {
        assert_eq!(
            refused(auth().verify(&format!("{h}.{p}.{bad}"))),
            AuthError::InvalidSignature,
            "{what}"
        );
    }
    // Not base64 at all.
    for bad in ["!!!!", "a", &s[..s.len() - 1]] {
        assert_eq!(
            refused(auth().verify(&format!("{h}.{p}.{bad}"))),
            AuthError::Malformed(Malformed::SignatureBase64),
            "{bad:.10}"
        );
    }
}

#[test]
fn signature_from_another_key_is_refused() {
    for token in [
        other_key().rs256(&valid()),
        other_key().jwt(jsonwebtoken::Algorithm::PS256, &valid()),
        other_key().sign_openssl(RS, &valid().to_string()),
    ] {
        assert_eq!(refused(auth().verify(&token)), AuthError::InvalidSignature);
    }
}

#[test]
fn changed_payload_or_header_is_refused() {
    let token = key().rs256(&valid());
    let (h, _, s) = parts(&token);
    // Another payload that passes every claim check, under the old signature.
    let later = b64(claims(T, T + 3500).to_string().as_bytes());
    assert_eq!(
        refused(auth().verify(&format!("{h}.{later}.{s}"))),
        AuthError::InvalidSignature
    );
    let (_, p, _) = parts(&token);
    let other_header = b64(br#"{"alg":"RS256"}"#);
    assert_ne!(other_header, h);
    assert_eq!(
        refused(auth().verify(&format!("{other_header}.{p}.{s}"))),
        AuthError::InvalidSignature
    );
    // Swapping in the signature of another valid token.
    let second = key().rs256(&claims(T, T + 3599));
    let (_, _, s2) = parts(&second);
    assert_eq!(
        refused(auth().verify(&format!("{h}.{p}.{s2}"))),
        AuthError::InvalidSignature
    );
}

// ---------------------------------------------------------------------------
// Cheap checks before RSA
// ---------------------------------------------------------------------------

#[test]
fn cheap_checks_run_before_the_signature() {
    let garbage = b64(&[7; 256]);
    let unsigned = |claims: serde_json::Value, header: &str| {
        format!(
            "{}.{}.{garbage}",
            b64(header.as_bytes()),
            b64(claims.to_string().as_bytes())
        )
    };
    assert_eq!(
        refused(auth().verify(&unsigned(claims(T - 7200, T - 3600), RS))),
        AuthError::Expired
    );
    assert_eq!(
        refused(auth().verify(&unsigned(claims(T + 60, T + 3600), RS))),
        AuthError::IssuedInFuture
    );
    assert_eq!(
        refused(auth().verify(&unsigned(
            json!({ "iss": "nobody", "sub": "nobody", "aud": AUD, "iat": T, "exp": T + 3600 }),
            RS
        ))),
        AuthError::UnknownUser
    );
    assert_eq!(
        refused(auth().verify(&unsigned(
            json!({ "iss": USER, "sub": "x", "aud": AUD, "iat": T, "exp": T + 3600 }),
            RS
        ))),
        AuthError::IssuerSubjectMismatch
    );
    assert!(matches!(
        refused(auth().verify(&unsigned(
            json!({ "iss": USER, "sub": USER, "aud": "https://x", "iat": T, "exp": T + 3600 }),
            RS
        ))),
        AuthError::AudienceMismatch { .. }
    ));
    // Expired, with alg none and no signature at all.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none"}"#),
        b64(claims(T - 7200, T - 3600).to_string().as_bytes())
    );
    assert_eq!(refused(auth().verify(&none)), AuthError::Expired);
    // A signature that is not even base64 is part of the token's shape, read before
    // any claim (and before the user list, whose answer must not depend on it).
    let token = format!(
        "{}.{}.***",
        b64(RS.as_bytes()),
        b64(claims(T - 7200, T - 3600).to_string().as_bytes())
    );
    assert_eq!(
        refused(auth().verify(&token)),
        AuthError::Malformed(Malformed::SignatureBase64)
    );
    // With valid claims the garbage signature is what fails.
    assert_eq!(
        refused(auth().verify(&unsigned(valid(), RS))),
        AuthError::InvalidSignature
    );
}

#[test]
fn error_messages_do_not_echo_the_token() {
    let token = other_key().rs256(&json!({
        "iss": USER, "sub": USER, "aud": "https://secret-audience.example", "iat": T, "exp": T + 3600
    }));
    let error = refused(auth().verify(&token));
    let (h, p, s) = parts(&token);
    let text = format!("{error} {error:?} {:?}", error.www_authenticate());
    for part in [h, p, s, "secret-audience"] {
        assert!(!text.contains(part), "{text}");
    }
}

// ---------------------------------------------------------------------------
// A token seen before (the crate may remember verified tokens) is still checked
// ---------------------------------------------------------------------------

/// A verifier whose clock can be moved; returns the clock's seconds.
fn movable_auth(start: u64) -> (SystemAuth, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    };
    let clock = Arc::new(AtomicU64::new(start));
    let read = clock.clone();
    let auth = SystemAuth::builder()
        .config_yaml(&common::default_config())
        .clock(move || common::at(read.load(Ordering::SeqCst), 0))
        .build()
        .unwrap();
    (auth, clock)
}

#[test]
fn a_token_seen_before_expires_on_time() {
    use std::sync::atomic::Ordering;
    let (auth, clock) = movable_auth(T);
    let token = key().rs256(&claims(T, T + 100));
    ok(auth.verify(&token));
    ok(auth.verify(&token));
    clock.store(T + 98, Ordering::SeqCst);
    ok(auth.verify(&token));
    clock.store(T + 99, Ordering::SeqCst);
    assert_eq!(refused(auth.verify(&token)), AuthError::Expired);
}

#[test]
fn a_token_seen_before_grows_too_old() {
    use std::sync::atomic::Ordering;
    let (auth, clock) = movable_auth(T);
    let token = key().rs256(&claims(T, T + 86_400));
    ok(auth.verify(&token));
    clock.store(T + 3600, Ordering::SeqCst);
    ok(auth.verify(&token));
    clock.store(T + 3601, Ordering::SeqCst);
    assert_eq!(refused(auth.verify(&token)), AuthError::IssuedTooLongAgo);
}

#[test]
fn a_token_seen_before_does_not_vouch_for_look_alikes() {
    let auth = auth();
    let token = key().rs256(&valid());
    ok(auth.verify(&token));
    let (h, p, s) = parts(&token);
    let mut sig = URL_SAFE_NO_PAD.decode(s).unwrap();
    sig[255] ^= 0x80;
    for bad in [
        format!("{h}.{p}.{}", b64(&sig)),
        format!("{h}.{p}.{}", trailing_bits_variant(s)),
        format!("{h}.{p}.{s}=="),
        format!("{h}.{p}.{}", &s[..s.len() - 4]),
        format!("{h}.{p}."),
        format!("{h}.{p}"),
        format!(" {token}"),
        format!("{token} "),
    ] {
        assert!(auth.verify(&bad).is_err(), "{bad:?}");
    }
    // And the real one is still fine.
    ok(auth.verify(&token));
}

#[test]
fn a_refused_token_stays_refused() {
    let auth = auth();
    let token = other_key().rs256(&valid());
    for _ in 0..3 {
        assert_eq!(refused(auth.verify(&token)), AuthError::InvalidSignature);
    }
}

#[test]
fn a_cached_token_is_checked_again_for_nbf_when_the_clock_moves_back() {
    use std::sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    };
    let now = Arc::new(AtomicU64::new(T + 100));
    let clock = now.clone();
    let auth = SystemAuth::builder()
        .config_yaml(&common::default_config())
        .watch(false)
        .clock(move || common::at(clock.load(Ordering::SeqCst), 0))
        .build()
        .unwrap();
    let mut claims = claims(T, T + 3600);
    claims["nbf"] = json!(T + 50);
    let token = key().rs256(&claims);
    ok(auth.verify(&token)); // verified and cached at T + 100
    now.store(T + 10, Ordering::SeqCst); // the clock is set back before nbf
    assert_eq!(refused(auth.verify(&token)), AuthError::NotYetValid);
    now.store(T + 100, Ordering::SeqCst);
    ok(auth.verify(&token));
}

/// With the system clock, a cache hit reads the cheap coarse clock unless the
/// token's window is about to end: a cached token is still accepted exactly until
/// `exp` (with the clock offset) and refused from then on, as a fresh check would.
#[test]
fn a_cached_token_is_refused_from_the_moment_it_expires_on_the_system_clock() {
    use std::time::SystemTime;
    use zitadel_system_auth::testing::rsa_operations_on_this_thread;
    let offset = Duration::from_secs(1);
    let auth = SystemAuth::builder()
        .config_yaml(&common::default_config())
        .watch(false)
        .clock_offset(offset)
        .build()
        .unwrap();
    let nanos = |time: SystemTime| time.duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Valid while now + 1 s < exp: for one to two seconds from here.
    let exp = now + 3;
    let token = key().rs256(&claims(now, exp));
    let expires = u128::from(exp) * 1_000_000_000 - offset.as_nanos();
    ok(auth.verify(&token)); // verified and cached
    let rsa_before = rsa_operations_on_this_thread();
    let (mut hits, deadline) = (0u64, SystemTime::now() + Duration::from_secs(30));
    loop {
        let before = nanos(SystemTime::now());
        let result = auth.verify(&token);
        let after = nanos(SystemTime::now());
        match result {
            Ok(_) => {
                assert!(
                    before < expires,
                    "accepted {} ns after expiry",
                    before - expires
                );
                hits += 1;
            }
            Err(error) => {
                assert_eq!(error, AuthError::Expired);
                assert!(
                    after >= expires,
                    "refused {} ns before expiry",
                    expires - after
                );
                break;
            }
        }
        assert!(SystemTime::now() < deadline, "still accepted 30 s later");
    }
    assert!(hits > 100, "only {hits} cache hits before expiry");
    assert_eq!(
        rsa_operations_on_this_thread(),
        rsa_before,
        "every hit came from the cache"
    );
}
