//! The checks of an explanation, one by one, each with what was expected and what
//! the token has; the checks themselves are `verify`'s and `jose`'s.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::Value;

use super::{Check, Outcome, text::*};
use crate::{
    algorithm::Algorithm,
    error::{AudienceHint, AuthError, Malformed},
    jose::{Claims, Header, Parts},
    registry::Registry,
    verify::{Verifier, check_validity},
};

/// Runs every check on `token` at the clock reading `now`.
pub(super) fn run(verifier: &Verifier, registry: &Registry, now: i128, token: &[u8]) -> Vec<Check> {
    Explainer {
        verifier,
        registry,
        now,
        checks: Vec::new(),
    }
    .run(token)
}

struct Explainer<'a> {
    verifier: &'a Verifier,
    registry: &'a Registry,
    now: i128,
    checks: Vec<Check>,
}

impl Explainer<'_> {
    fn push(
        &mut self,
        check: &'static str,
        outcome: Outcome,
        detail: String,
        zitadel: Option<String>,
    ) {
        self.checks.push(Check {
            check,
            outcome,
            detail,
            zitadel,
        });
    }

    fn pass(&mut self, check: &'static str, detail: String) {
        self.push(check, Outcome::Passed, detail, None);
    }

    fn fail(&mut self, check: &'static str, detail: String, zitadel: Option<String>) {
        self.push(check, Outcome::Failed, detail, zitadel);
    }

    fn skip(&mut self, check: &'static str, why: &str) {
        self.push(check, Outcome::Skipped, format!("not checked: {why}"), None);
    }

    fn run(mut self, token: &[u8]) -> Vec<Check> {
        let limit = self.verifier.max_token_length;
        if token.len() > limit {
            self.fail(
                "length",
                format!("{} bytes, more than the limit of {limit}", token.len()),
                Some("ZITADEL reads a token of any length".to_owned()),
            );
        } else {
            self.pass("length", format!("{} bytes, at most {limit}", token.len()));
        }
        let parts = match Parts::split(token) {
            Ok(parts) => {
                self.pass("parts", "three parts separated by dots".to_owned());
                parts
            }
            Err(error) => {
                let zitadel = token
                    .iter()
                    .any(u8::is_ascii_whitespace)
                    .then(|| "go-jose (under ZITADEL) removes white space first".to_owned());
                self.fail("parts", error.to_string(), zitadel);
                for check in ["header", "payload", "claims", "signature"] {
                    self.skip(check, "the token does not have three parts");
                }
                return self.checks;
            }
        };
        let header = self.header(parts.header);
        let payload = self.payload(parts.payload);
        let signature = self.signature_encoding(parts.signature);
        match &payload {
            Some((claims_json, _)) => self.claims(claims_json),
            None => {
                for check in ["aud", "exp", "iat", "iss = sub"] {
                    self.skip(check, "the payload could not be read");
                }
            }
        }
        let algorithm = match &header {
            Some((header, raw)) => self
                .header_checks(header, raw)
                .ok_or("no allowed algorithm"),
            None => {
                for check in ["crit", "typ", "alg"] {
                    self.skip(check, "the header could not be read");
                }
                Err("the header could not be read")
            }
        };
        let issuer = match &payload {
            Some((_, Some(issuer))) => Ok(issuer.clone()),
            Some((_, None)) => Err("the token names no issuer (iss is not a string)"),
            None => Err("the payload could not be read"),
        };
        self.key_checks(issuer, algorithm, parts.signing_input, signature);
        self.checks
    }

    /// The header's JSON, read strictly, and as a JSON value.
    fn header(&mut self, encoded: &[u8]) -> Option<(Header, Value)> {
        let json = match URL_SAFE_NO_PAD.decode(encoded) {
            Ok(json) => json,
            Err(_) => {
                let error = AuthError::Malformed(Malformed::HeaderBase64);
                self.fail("header", error.to_string(), noncanonical(encoded));
                return None;
            }
        };
        match Header::parse(&json) {
            Ok(header) => {
                self.pass("header", shown_json(&json));
                let raw = serde_json::from_slice(&json).unwrap_or(Value::Null);
                Some((header, raw))
            }
            Err(AuthError::RefusedHeaderMember) => {
                let (members, zitadel) = refused_header_members(&json);
                self.fail(
                    "header",
                    format!(
                        "{} ({members}): {}",
                        AuthError::RefusedHeaderMember,
                        shown_json(&json)
                    ),
                    zitadel,
                );
                None
            }
            Err(error) => {
                let zitadel = match &error {
                    AuthError::Malformed(Malformed::NestingTooDeep) => {
                        Some("Go reads JSON up to 10,000 levels deep".to_owned())
                    }
                    AuthError::Malformed(Malformed::HeaderJson) => not_unicode(&json),
                    _ => None,
                };
                self.fail("header", format!("{error}: {}", shown_json(&json)), zitadel);
                None
            }
        }
    }

    /// The payload's JSON, read strictly; its text and `iss` when it reads.
    fn payload(&mut self, encoded: &[u8]) -> Option<(Vec<u8>, Option<String>)> {
        let Ok(json) = URL_SAFE_NO_PAD.decode(encoded) else {
            let error = AuthError::Malformed(Malformed::PayloadBase64);
            self.fail("payload", error.to_string(), noncanonical(encoded));
            return None;
        };
        match Claims::parse(&json) {
            Ok(claims) => {
                self.pass("payload", shown_json(&json));
                let issuer = claims.iss().ok().map(str::to_owned);
                Some((json, issuer))
            }
            Err(error) => {
                let zitadel = match &error {
                    AuthError::Malformed(Malformed::AmbiguousClaimName) => Some(
                        "Go's decoder (under ZITADEL) reads such a member as the registered claim, the last one winning",
                    ),
                    AuthError::Malformed(Malformed::DuplicateMember) => {
                        Some("Go's decoder (under ZITADEL) takes the last one")
                    }
                    AuthError::Malformed(Malformed::NestingTooDeep) => {
                        Some("Go reads JSON up to 10,000 levels deep")
                    }
                    _ => None,
                };
                let zitadel = zitadel.map(str::to_owned).or_else(|| match &error {
                    AuthError::Malformed(Malformed::PayloadJson) => not_unicode(&json),
                    _ => None,
                });
                self.fail(
                    "payload",
                    format!("{error}: {}", shown_json(&json)),
                    zitadel,
                );
                None
            }
        }
    }

    fn signature_encoding(&mut self, encoded: &[u8]) -> Option<Vec<u8>> {
        match URL_SAFE_NO_PAD.decode(encoded) {
            Ok(signature) => {
                self.pass(
                    "signature encoding",
                    format!("{} bytes of unpadded base64url", signature.len()),
                );
                Some(signature)
            }
            Err(_) => {
                let error = AuthError::Malformed(Malformed::SignatureBase64);
                self.fail(
                    "signature encoding",
                    error.to_string(),
                    noncanonical(encoded),
                );
                None
            }
        }
    }

    /// `aud`, `exp`, `iat`, `nbf`, `iss = sub`, on a payload that reads.
    fn claims(&mut self, json: &[u8]) {
        let Ok(claims) = Claims::parse(json) else {
            return;
        };
        let raw: Value = serde_json::from_slice(json).unwrap_or(Value::Null);
        let now = self.now;
        let verifier = self.verifier;

        // aud
        let expected = self.registry.audiences();
        let wanted = expected
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(" or ");
        match claims.aud() {
            Ok(presented) => {
                let found = presented
                    .iter()
                    .map(|a| format!("{a:?}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                if presented
                    .iter()
                    .any(|aud| expected.iter().any(|e| **e == **aud))
                {
                    self.pass("aud", format!("{found}, expected {wanted}"));
                } else {
                    let hint = match (expected.first(), presented.first()) {
                        (Some(e), Some(p)) => format!(" ({})", AudienceHint::between(e, p)),
                        _ => String::new(),
                    };
                    self.fail(
                        "aud",
                        format!("expected {wanted} exactly; the token has {found}{hint}"),
                        None,
                    );
                }
            }
            Err(error) => {
                let zitadel = match &raw["aud"] {
                    Value::Number(_) => {
                        Some("ZITADEL drops a numeric aud, then refuses the token for its audience")
                    }
                    Value::Array(items) if items.iter().any(|item| !item.is_string()) => {
                        Some("ZITADEL's claim decoder panics on a non-string in an aud array")
                    }
                    _ => None,
                };
                self.fail(
                    "aud",
                    format!("{error}; the token has {}", shown(&raw["aud"])),
                    zitadel.map(str::to_owned),
                )
            }
        }

        // exp
        match claims.exp() {
            Ok(Some(exp)) => match verifier.check_expiry(now, exp) {
                Ok(()) => self.pass(
                    "exp",
                    format!("expires at {}, {}", time(exp), relative(exp, now)),
                ),
                Err(error) => {
                    let offset = span(verifier.clock_offset);
                    let when = if i128::from(exp) * NANOS <= now {
                        format!("expired at {}, {}", time(exp), relative(exp, now))
                    } else {
                        format!(
                            "expires at {}, {}, within the clock offset of {offset}",
                            time(exp),
                            relative(exp, now)
                        )
                    };
                    self.fail("exp", format!("{error}: {when}"), None)
                }
            },
            Ok(None) => self.fail(
                "exp",
                AuthError::MissingClaim(crate::error::Claim::Exp).to_string(),
                None,
            ),
            Err(error) => self.fail(
                "exp",
                format!("{error}; the token has {}", shown(&raw["exp"])),
                string_time(&raw["exp"]),
            ),
        }

        // iat
        match claims.iat() {
            Ok(Some(iat)) if iat > 0 => match verifier.check_issued_at(now, iat) {
                Ok(()) => self.pass(
                    "iat",
                    format!("issued at {}, {}", time(iat), relative(iat, now)),
                ),
                Err(error @ AuthError::IssuedTooLongAgo) => {
                    let age = now / NANOS - i128::from(iat);
                    let over = age - verifier.max_token_age.as_secs() as i128;
                    self.fail(
                        "iat",
                        format!(
                            "{error}: issued at {}, {} ago, {} over the maximum age of {}",
                            time(iat),
                            span_secs(age),
                            span_secs(over),
                            span(verifier.max_token_age)
                        ),
                        None,
                    )
                }
                Err(error) => self.fail(
                    "iat",
                    format!(
                        "{error}: issued at {}, {} (the clock offset is {})",
                        time(iat),
                        relative(iat, now),
                        span(verifier.clock_offset)
                    ),
                    None,
                ),
            },
            Ok(_) => self.fail(
                "iat",
                format!(
                    "{} (an iat of 0 is none, as in ZITADEL)",
                    AuthError::MissingClaim(crate::error::Claim::Iat)
                ),
                None,
            ),
            Err(error) => self.fail(
                "iat",
                format!("{error}; the token has {}", shown(&raw["iat"])),
                string_time(&raw["iat"]),
            ),
        }

        // nbf
        let ignores = Some("ZITADEL ignores nbf".to_owned());
        match claims.nbf() {
            Ok(None) => {}
            Ok(Some(nbf)) => match verifier.check_not_before(now, Some(nbf)) {
                Ok(()) => self.pass(
                    "nbf",
                    format!("not before {}, {}", time(nbf), relative(nbf, now)),
                ),
                Err(error) => self.fail(
                    "nbf",
                    format!(
                        "{error}: not before {}, {} (the clock offset is {})",
                        time(nbf),
                        relative(nbf, now),
                        span(verifier.clock_offset)
                    ),
                    ignores,
                ),
            },
            Err(error) => self.fail(
                "nbf",
                format!("{error}; the token has {}", shown(&raw["nbf"])),
                ignores,
            ),
        }

        // iss = sub
        match (claims.iss(), claims.sub()) {
            (Ok(iss), Ok(sub)) if iss == sub => self.pass("iss = sub", format!("{iss:?}")),
            (Ok(iss), Ok(sub)) => self.fail(
                "iss = sub",
                format!("iss {iss:?} and sub {sub:?} differ"),
                None,
            ),
            (Err(error), _) | (_, Err(error)) => self.fail("iss = sub", error.to_string(), None),
        }
    }

    /// `crit`, `typ`, `alg`; the algorithm when it is allowed.
    fn header_checks(&mut self, header: &Header, raw: &Value) -> Option<Algorithm> {
        if header.crit {
            // go-jose takes a `crit` that lists only `b64` (and no `b64` member is
            // here: it refused the header before).
            let only_b64 = raw["crit"]
                .as_array()
                .is_some_and(|names| !names.is_empty() && names.iter().all(|n| n == "b64"));
            self.fail(
                "crit",
                format!("{}: {}", AuthError::CriticalHeader, shown(&raw["crit"])),
                only_b64.then(|| {
                    "go-jose (under ZITADEL) accepts a crit that lists only b64".to_owned()
                }),
            );
        } else {
            self.pass("crit", "absent".to_owned());
        }
        if header.typ_ok {
            self.pass("typ", "JWT or absent".to_owned());
        } else {
            self.fail(
                "typ",
                AuthError::UnsupportedType.to_string(),
                Some("ZITADEL ignores typ".to_owned()),
            );
        }
        let allowed: Vec<&str> = Algorithm::ALL
            .iter()
            .filter(|alg| self.verifier.algorithms.contains(**alg))
            .map(|alg| alg.name())
            .collect();
        match header
            .alg
            .filter(|alg| self.verifier.algorithms.contains(*alg))
        {
            Some(algorithm) => {
                self.pass(
                    "alg",
                    format!("{algorithm}, allowed: {}", allowed.join(", ")),
                );
                Some(algorithm)
            }
            None => {
                let named = header
                    .alg
                    .map_or("an algorithm this crate never accepts".to_owned(), |a| {
                        a.to_string()
                    });
                self.fail(
                    "alg",
                    format!("{named}; allowed: {}", allowed.join(", ")),
                    None,
                );
                None
            }
        }
    }

    /// The user `iss` names, its key's window, and the signature.
    fn key_checks(
        &mut self,
        issuer: Result<String, &'static str>,
        algorithm: Result<Algorithm, &'static str>,
        signing_input: &[u8],
        signature: Option<Vec<u8>>,
    ) {
        let issuer = match issuer {
            Ok(issuer) => issuer,
            Err(why) => {
                for check in ["user", "key validity", "signature"] {
                    self.skip(check, why);
                }
                return;
            }
        };
        let Some(user) = self.registry.get(&issuer) else {
            let mut known: Vec<&str> = self.registry.users().map(|u| &*u.identity.id).collect();
            known.sort_unstable();
            let lowercase = issuer.to_lowercase();
            let hint = if issuer != lowercase && known.contains(&lowercase.as_str()) {
                format!(
                    " (the configured id is {lowercase:?}: ids in the list and map forms are lowercased, as ZITADEL does)"
                )
            } else {
                String::new()
            };
            self.fail(
                "user",
                format!(
                    "{issuer:?} is not a configured system user{hint}; configured: {}",
                    known.join(", ")
                ),
                None,
            );
            for check in ["key validity", "signature"] {
                self.skip(check, "no configured user");
            }
            return;
        };
        let key = &user.key;
        let zitadel = (!key.format().zitadel_reads_it()).then(|| {
            "ZITADEL cannot read this user's key (PKCS#1) and refuses every token of this user"
                .to_owned()
        });
        self.push(
            "user",
            Outcome::Passed,
            format!(
                "{issuer:?}, key {} ({}, {} bits)",
                key.fingerprint_hex(),
                key.format(),
                key.bits()
            ),
            zitadel,
        );
        match key.validity() {
            None => self.pass("key validity", "a bare key, no validity window".to_owned()),
            Some(validity) => {
                let window = format!(
                    "certificate valid from {} to {}",
                    time(validity.not_before),
                    time(validity.not_after)
                );
                match check_validity(self.now, Some(validity)) {
                    Ok(()) => self.pass("key validity", window),
                    Err(error) => self.fail(
                        "key validity",
                        format!("{error} (precisely: {}): {window}", error.reason()),
                        None,
                    ),
                }
            }
        }
        match (algorithm, signature) {
            (Ok(algorithm), Some(signature)) => {
                if key.verify(algorithm, signing_input, &signature) {
                    self.pass(
                        "signature",
                        format!("verifies with the user's key ({algorithm})"),
                    );
                } else {
                    let zitadel = (algorithm == Algorithm::PS256).then(|| {
                        "refuses it too, unless this key signed it with a PSS salt other than \
                         32 bytes: Go (under ZITADEL) accepts any salt length, this crate only \
                         the hash's length (RFC 7518)"
                            .to_owned()
                    });
                    self.fail(
                        "signature",
                        format!("does not verify with the user's key ({algorithm}); the token was signed by another key, or changed after signing"),
                        zitadel,
                    );
                }
            }
            (Err(why), _) => self.skip("signature", why),
            (_, None) => self.skip("signature", "the signature could not be decoded"),
        }
    }
}
