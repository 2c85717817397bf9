//! The checks on a token, in ZITADEL's order, cheap ones first.
//!
//! 1. Three dot-separated parts of canonical unpadded base64url; the header and
//!    the payload are JSON objects without duplicate member names.
//! 2. `aud` (a string or an array of strings) contains an expected audience, compared
//!    exactly.
//! 3. `exp` is present and the current time plus the clock offset is before it.
//! 4. `iat` is present, not after now plus the offset, and not older than the maximum
//!    age; `nbf`, when present, is not after now plus the offset.
//! 5. `iss` equals `sub`.
//! 6. `iss` names a configured user, whose certificate (if the key came in one) is
//!    within its validity window.
//! 7. The header: no `crit`, `typ` is `JWT` when present, `alg` is allowed; then the
//!    one RSA operation, with the user's key.
//!
//! Nothing before step 7's last part touches RSA, so junk costs little.
//!
//! The token is read as bytes: the checks only accept base64url and dots, so a token
//! that passes was text. The header and the payload are decoded on the stack, a
//! header the usual minters write is known by its exact text (see `Header::known`),
//! the claims are read straight from the JSON into the values the checks use, and a
//! cached token's time checks are one window of clock readings worked out once
//! (see `Verifier::window`, and a test that it agrees with the checks), which a
//! cache hit compares with the cheap coarse clock while that is enough (see
//! `Verifier::coarsely_inside`).

use std::{
    borrow::Cow,
    fmt,
    marker::PhantomData,
    mem::MaybeUninit,
    ops::Range,
    str::FromStr,
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64_simd::Out;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::{
    cache::CachedToken,
    error::{AudienceHint, AuthError, Claim, Malformed},
    key::Validity,
    metrics::Metrics,
    registry::Registry,
    user::Identity,
};

/// The latest time a claim may name: 9999-12-31T23:59:59Z.
const MAX_TIME: u64 = 253_402_300_799;
const NANOS: i128 = 1_000_000_000;

/// A signature algorithm a token may use. All of them are RSA: ZITADEL's system
/// users have RSA keys, so only RS* and PS* can ever verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::upper_case_acronyms)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (allowed by default).
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256 and a 32-byte salt (allowed by default).
    PS256,
    /// RSASSA-PSS with SHA-384 and a 48-byte salt.
    PS384,
    /// RSASSA-PSS with SHA-512 and a 64-byte salt.
    PS512,
}

impl Algorithm {
    pub(crate) const COUNT: usize = 6;

    /// The allowed list when none is configured: RS256 and PS256, the RSA members of
    /// ZITADEL's default list.
    pub const DEFAULT: [Algorithm; 2] = [Algorithm::RS256, Algorithm::PS256];

    /// Every algorithm this crate knows.
    pub const ALL: [Algorithm; Algorithm::COUNT] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ];

    /// The JOSE name, e.g. `RS256`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl FromStr for Algorithm {
    type Err = AuthError;

    /// Reads a JOSE name exactly (`none`, HMAC and EC names are refused).
    fn from_str(name: &str) -> Result<Algorithm, AuthError> {
        Ok(match name {
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "PS256" => Algorithm::PS256,
            "PS384" => Algorithm::PS384,
            "PS512" => Algorithm::PS512,
            _ => return Err(AuthError::AlgorithmNotAllowed),
        })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the verifier reads the time; replaceable for tests.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The settings of the checks, fixed when [`SystemAuth`](crate::SystemAuth) is built.
pub(crate) struct Verifier {
    pub audiences: Box<[Arc<str>]>,
    pub algorithms: u8,
    pub clock_offset: Duration,
    pub max_token_age: Duration,
    pub max_token_length: usize,
    /// A clock set with the builder's `clock`; `None` reads the system clock.
    pub clock: Option<Clock>,
}

/// A token that passed every check.
pub(crate) struct Verified {
    pub identity: Arc<Identity>,
    pub issued_at: u64,
    pub expires_at: u64,
}

impl From<&CachedToken> for Verified {
    fn from(cached: &CachedToken) -> Verified {
        Verified {
            identity: cached.identity.clone(),
            issued_at: cached.issued_at,
            expires_at: cached.expires_at,
        }
    }
}

impl Verifier {
    /// The clock's reading, in nanoseconds since the Unix epoch.
    pub fn now(&self) -> i128 {
        match &self.clock {
            Some(clock) => nanos_since_epoch(clock()),
            None => nanos_since_epoch(SystemTime::now()),
        }
    }

    /// Whether the system's coarse clock shows that the clock reads inside
    /// `window` now. When it does not, [`now`](Self::now) decides.
    ///
    /// The coarse clock is the time at the kernel's last tick, so it is never ahead
    /// of [`now`](Self::now) and at most a tick (a few milliseconds) behind it. A
    /// coarse reading at or after the window's start, and more than
    /// [`COARSE_CLOCK_MARGIN`] before its end, therefore puts the precise reading in
    /// the window too, and a cache hit then costs no precise clock read. Only the
    /// system clock has a coarse twin: with the builder's `clock`, this is `false`.
    fn coarsely_inside(&self, window: &Range<i128>) -> bool {
        self.clock.is_none()
            && coarse_now().is_some_and(|coarse| {
                window.start <= coarse && coarse < window.end - COARSE_CLOCK_MARGIN
            })
    }

    /// Runs every check on `token` against the users in `registry`, at the
    /// clock's reading. A token found in the registry's cache only has its times
    /// and its key's validity window checked again.
    pub fn verify(
        &self,
        token: &[u8],
        registry: &Registry,
        metrics: &Metrics,
    ) -> Result<Verified, AuthError> {
        if token.len() > self.max_token_length {
            return Err(AuthError::TokenTooLong {
                limit: self.max_token_length,
            });
        }
        self.cached(token, registry, metrics)
            .unwrap_or_else(|| self.verify_fresh(token, registry, self.now()))
    }

    /// The result for exactly `token` if the registry's cache (if it is on) holds
    /// it, its times and its key's window checked again against the clock.
    fn cached(
        &self,
        token: &[u8],
        registry: &Registry,
        metrics: &Metrics,
    ) -> Option<Result<Verified, AuthError>> {
        let cache = registry.cache()?;
        let hit = cache.get(token, |cached| {
            if !self.coarsely_inside(&cached.window) {
                let now = self.now();
                if !cached.window.contains(&now) {
                    // Only to name the check that fails.
                    self.recheck(now, cached)?;
                }
            }
            Ok(cached.into())
        });
        metrics.cache(hit.is_some());
        hit
    }

    /// Every check on a token the cache does not hold, which goes into the cache
    /// (if it is on) when it passes. The token is bytes: the checks read it as
    /// base64url, so it needs no separate check that it is text.
    fn verify_fresh(
        &self,
        token: &[u8],
        registry: &Registry,
        now: i128,
    ) -> Result<Verified, AuthError> {
        let verified = self.verify_uncached(token, registry, now)?;
        let result = Verified::from(&verified);
        if let Some(cache) = registry.cache() {
            cache.insert(token, verified, |cached| cached.window.contains(&now));
        }
        Ok(result)
    }

    /// The checks a cached token must pass again: the times, and the key's window.
    fn recheck(&self, now: i128, cached: &CachedToken) -> Result<(), AuthError> {
        self.check_expiry(now, cached.expires_at)?;
        self.check_issued_at(now, cached.issued_at)?;
        self.check_not_before(now, cached.not_before)?;
        check_validity(now, cached.validity)
    }

    /// The clock readings at which [`recheck`](Self::recheck) passes: each check
    /// below solved for `now`, and the ranges intersected.
    fn window(
        &self,
        issued_at: u64,
        expires_at: u64,
        not_before: Option<u64>,
        validity: Option<Validity>,
    ) -> Range<i128> {
        let offset = self.offset();
        let half = NANOS / 2;
        // `exp`: now + offset < exp.
        let mut until = secs(expires_at) - offset;
        // `iat` not in the future: iat <= round(now + offset), so
        // now >= iat - 1/2 s - offset.
        let mut from = secs(issued_at) - half - offset;
        // `iat` not too old: iat >= round(now - max_age), so
        // now < iat + 1 s + max_age - 1/2 s.
        let max_age = self.max_token_age.as_nanos() as i128;
        if max_age > 0 {
            until = until.min(secs(issued_at) + NANOS + max_age - half);
        }
        // `nbf`: nbf <= now + offset.
        if let Some(not_before) = not_before {
            from = from.max(secs(not_before) - offset);
        }
        // The key's certificate: NotBefore <= now <= NotAfter.
        if let Some(validity) = validity {
            from = from.max(secs(validity.not_before));
            until = until.min(secs(validity.not_after) + 1);
        }
        from..until
    }

    /// Every check, in ZITADEL's order; the result holds what a cache hit must
    /// check again.
    fn verify_uncached(
        &self,
        token: &[u8],
        registry: &Registry,
        now: i128,
    ) -> Result<CachedToken, AuthError> {
        // 1. Shape.
        if token.is_empty() {
            return Err(AuthError::Malformed(Malformed::EmptyToken));
        }
        let mut dots = memchr::memchr_iter(b'.', token);
        let (Some(first_dot), Some(second_dot), None) = (dots.next(), dots.next(), dots.next())
        else {
            return Err(AuthError::Malformed(Malformed::Segments));
        };
        let header_b64 = &token[..first_dot];
        let payload_b64 = &token[first_dot + 1..second_dot];
        let signature_b64 = &token[second_dot + 1..];
        let signing_input = &token[..second_dot];
        // Header and payload decoded into one buffer (on the stack for any usual
        // token), which the claims borrow from.
        let mut stack = [const { MaybeUninit::<u8>::uninit() }; 2048];
        let mut heap = Vec::new();
        let header_room = BASE64URL.estimated_decoded_length(header_b64.len());
        let room = header_room + BASE64URL.estimated_decoded_length(payload_b64.len());
        let buffer = match stack.get_mut(..room) {
            Some(buffer) => buffer,
            None => {
                heap.resize(room, MaybeUninit::uninit());
                &mut heap[..]
            }
        };
        let (header_buffer, payload_buffer) = buffer.split_at_mut(header_room);
        let known = Header::known(header_b64);
        let header = match known {
            Some(_) => &[][..],
            None => decode_part(header_b64, header_buffer, Malformed::HeaderBase64)?,
        };
        let payload = decode_part(payload_b64, payload_buffer, Malformed::PayloadBase64)?;
        let header = match known {
            Some(header) => header,
            None => Header::parse(header)?,
        };
        let claims = Claims::parse(payload)?;

        // 2. Audience.
        let audience = claims.audience()?;
        if !audience
            .iter()
            .any(|aud| self.audiences.iter().any(|expected| **expected == **aud))
        {
            let expected = self.audiences.first().cloned().unwrap_or_else(|| "".into());
            let hint = audience
                .first()
                .map_or(AudienceHint::Other, |aud| audience_hint(&expected, aud));
            return Err(AuthError::AudienceMismatch { expected, hint });
        }

        // 3 and 4. Expiry, issued-at, not-before.
        let expires_at = claims
            .time(Claim::Exp, &claims.exp)?
            .ok_or(AuthError::MissingClaim(Claim::Exp))?;
        self.check_expiry(now, expires_at)?;
        let issued_at = claims
            .time(Claim::Iat, &claims.iat)?
            .ok_or(AuthError::MissingClaim(Claim::Iat))?;
        self.check_issued_at(now, issued_at)?;
        let not_before = claims.time(Claim::Nbf, &claims.nbf)?;
        self.check_not_before(now, not_before)?;

        // 5. The issuer signs for itself.
        let issuer = claims.string(Claim::Iss, &claims.iss)?;
        let subject = claims.string(Claim::Sub, &claims.sub)?;
        if issuer != subject {
            return Err(AuthError::IssuerSubjectMismatch);
        }

        // 6. The user and its key's validity window.
        let user = registry.get(issuer).ok_or(AuthError::UnknownUser)?;
        let validity = user.key.validity();
        check_validity(now, validity)?;

        // 7. The header, then the signature.
        if header.crit {
            return Err(AuthError::CriticalHeader);
        }
        if !header.typ_ok {
            return Err(AuthError::UnsupportedType);
        }
        let algorithm = header
            .alg
            .filter(|alg| self.algorithms & alg.bit() != 0)
            .ok_or(AuthError::AlgorithmNotAllowed)?;
        // A signature is never longer than an 8192-bit modulus: decode on the stack.
        let mut signature = [const { MaybeUninit::<u8>::uninit() }; 1024];
        let signature_len = BASE64URL
            .decoded_length(signature_b64)
            .map_err(|_| AuthError::Malformed(Malformed::SignatureBase64))?;
        if signature_len > signature.len() {
            return Err(AuthError::InvalidSignature);
        }
        let signature = decode_part(signature_b64, &mut signature, Malformed::SignatureBase64)?;
        if !user.key.verify(algorithm, signing_input, signature) {
            return Err(AuthError::InvalidSignature);
        }
        Ok(CachedToken {
            identity: user.identity.clone(),
            validity,
            not_before,
            issued_at,
            expires_at,
            window: self.window(issued_at, expires_at, not_before, validity),
        })
    }

    fn offset(&self) -> i128 {
        self.clock_offset.as_nanos() as i128
    }

    /// `exp`: now + offset must be before it.
    fn check_expiry(&self, now: i128, expires_at: u64) -> Result<(), AuthError> {
        if now + self.offset() >= secs(expires_at) {
            return Err(AuthError::Expired);
        }
        Ok(())
    }

    /// `iat`: not after now + offset, not older than the maximum age, both rounded
    /// to the second as ZITADEL rounds them.
    fn check_issued_at(&self, now: i128, issued_at: u64) -> Result<(), AuthError> {
        if secs(issued_at) > round_to_second(now + self.offset()) {
            return Err(AuthError::IssuedInFuture);
        }
        let max_age = self.max_token_age.as_nanos() as i128;
        if max_age > 0 && secs(issued_at) < round_to_second(now - max_age) {
            return Err(AuthError::IssuedTooLongAgo);
        }
        Ok(())
    }

    /// `nbf`, when present: not after now + offset.
    fn check_not_before(&self, now: i128, not_before: Option<u64>) -> Result<(), AuthError> {
        match not_before {
            Some(not_before) if secs(not_before) > now + self.offset() => {
                Err(AuthError::NotYetValid)
            }
            _ => Ok(()),
        }
    }
}

/// A certificate's window: NotBefore ≤ now ≤ NotAfter.
fn check_validity(now: i128, validity: Option<Validity>) -> Result<(), AuthError> {
    if let Some(validity) = validity {
        if now < secs(validity.not_before) {
            return Err(AuthError::KeyNotYetValid);
        }
        if now > secs(validity.not_after) {
            return Err(AuthError::KeyExpired);
        }
    }
    Ok(())
}

/// Turns a list of algorithms into the verifier's bit set.
pub(crate) fn algorithm_set(algorithms: &[Algorithm]) -> u8 {
    algorithms.iter().fold(0, |set, alg| set | alg.bit())
}

/// Canonical unpadded base64url: no `=`, and the unused bits of the last character
/// zero. (SIMD-accelerated; a token's three parts are its hot path.)
const BASE64URL: base64_simd::Base64 = base64_simd::URL_SAFE_NO_PAD;

/// Decodes the canonical unpadded base64url `part` into the front of `out` (room
/// for [`estimated_decoded_length`](base64_simd::Base64::estimated_decoded_length)).
fn decode_part<'o>(
    part: &[u8],
    out: &'o mut [MaybeUninit<u8>],
    what: Malformed,
) -> Result<&'o [u8], AuthError> {
    let malformed = || AuthError::Malformed(what);
    let len = BASE64URL.decoded_length(part).map_err(|_| malformed())?;
    let out = out.get_mut(..len).ok_or_else(malformed)?;
    match BASE64URL.decode(part, Out::from_uninit_slice(out)) {
        Ok(decoded) => Ok(decoded),
        Err(_) => Err(malformed()),
    }
}

/// How far before a cached token's window ends the coarse clock stops being
/// enough (see `Verifier::coarsely_inside`): far more than a kernel tick, so the
/// coarse clock's lag never matters, and a small part of any token's lifetime.
const COARSE_CLOCK_MARGIN: i128 = NANOS;

/// The system's coarse real-time clock (`CLOCK_REALTIME_COARSE`), in nanoseconds
/// since the Unix epoch.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn coarse_now() -> Option<i128> {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    Some(i128::from(time.tv_sec) * NANOS + i128::from(time.tv_nsec))
}

/// No coarse clock here: every check reads the precise one.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn coarse_now() -> Option<i128> {
    None
}

fn nanos_since_epoch(time: SystemTime) -> i128 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    }
}

fn secs(seconds: u64) -> i128 {
    seconds as i128 * NANOS
}

/// Go's `Time.Round(time.Second)`: halfway values round up.
fn round_to_second(nanos: i128) -> i128 {
    (nanos + NANOS / 2).div_euclid(NANOS) * NANOS
}

/// Says how `presented` differs from `expected`, in one fixed word.
fn audience_hint(expected: &str, presented: &str) -> AudienceHint {
    fn split(url: &str) -> (&str, &str, &str) {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host);
        (scheme, host, path)
    }
    if presented.eq_ignore_ascii_case(expected) {
        return AudienceHint::Case;
    }
    if presented.trim_end_matches('/') == expected.trim_end_matches('/') {
        return AudienceHint::TrailingSlash;
    }
    let (e_scheme, e_host, e_path) = split(expected);
    let (p_scheme, p_host, p_path) = split(presented);
    if e_host == p_host && e_path == p_path {
        if e_scheme != p_scheme {
            return AudienceHint::Scheme;
        }
        return AudienceHint::Port;
    }
    AudienceHint::Other
}

/// The JOSE header, as far as the checks need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    /// `None` when `alg` names an algorithm this crate never accepts.
    alg: Option<Algorithm>,
    crit: bool,
    typ_ok: bool,
}

impl Header {
    /// The header the base64url text `encoded` holds, when it is one of the headers
    /// the usual minters write (`alg` alone, or with `"typ":"JWT"` before or after
    /// it, for each algorithm), known by its exact text: equal text parses alike, so
    /// this is what [`parse`](Self::parse) would return, without decoding and
    /// parsing it again for every token.
    fn known(encoded: &[u8]) -> Option<Header> {
        static KNOWN: OnceLock<Vec<(Vec<u8>, Header)>> = OnceLock::new();
        let known = KNOWN.get_or_init(|| {
            Algorithm::ALL
                .iter()
                .flat_map(|alg| {
                    [
                        format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#),
                        format!(r#"{{"typ":"JWT","alg":"{alg}"}}"#),
                        format!(r#"{{"alg":"{alg}"}}"#),
                    ]
                })
                .filter_map(|json| {
                    let header = Header::parse(json.as_bytes()).ok()?;
                    Some((BASE64URL.encode_type::<Vec<u8>>(json), header))
                })
                .collect()
        });
        known
            .iter()
            .find(|(text, _)| text.as_slice() == encoded)
            .map(|(_, header)| *header)
    }

    fn parse(json: &[u8]) -> Result<Header, AuthError> {
        let members: HeaderMembers = parse_object(json, Malformed::HeaderJson)?;
        let alg = match members.alg {
            Some(Value::Str(alg)) => alg.parse().ok(),
            _ => return Err(AuthError::Malformed(Malformed::HeaderJson)),
        };
        let typ_ok = match members.typ {
            None => true,
            Some(Value::Str(typ)) => typ.eq_ignore_ascii_case("JWT"),
            Some(_) => false,
        };
        Ok(Header {
            alg,
            crit: members.crit,
            typ_ok,
        })
    }
}

/// The header members the checks read, as they came.
#[derive(Default)]
struct HeaderMembers<'a> {
    alg: Option<Value<'a>>,
    crit: bool,
    typ: Option<Value<'a>>,
}

impl<'de> Members<'de> for HeaderMembers<'de> {
    fn read<A: MapAccess<'de>>(&mut self, name: &str, map: &mut A) -> Result<u8, A::Error> {
        Ok(match name {
            "alg" => read_into(&mut self.alg, map, 1)?,
            "crit" => {
                map.next_value_seed(ValueSeed)?;
                self.crit = true;
                2
            }
            "typ" => read_into(&mut self.typ, map, 4)?,
            _ => 0,
        })
    }
}

/// The registered claims, each as the JSON value it came as, borrowing from the
/// decoded payload.
#[derive(Default)]
struct Claims<'a> {
    iss: Option<Value<'a>>,
    sub: Option<Value<'a>>,
    aud: Option<Value<'a>>,
    exp: Option<Value<'a>>,
    iat: Option<Value<'a>>,
    nbf: Option<Value<'a>>,
}

impl<'de> Members<'de> for Claims<'de> {
    fn read<A: MapAccess<'de>>(&mut self, name: &str, map: &mut A) -> Result<u8, A::Error> {
        let (slot, bit) = match name {
            "iss" => (&mut self.iss, 1),
            "sub" => (&mut self.sub, 2),
            "aud" => (&mut self.aud, 4),
            "exp" => (&mut self.exp, 8),
            "iat" => (&mut self.iat, 16),
            "nbf" => (&mut self.nbf, 32),
            _ => return Ok(0),
        };
        read_into(slot, map, bit)
    }
}

impl<'a> Claims<'a> {
    fn parse(json: &'a [u8]) -> Result<Claims<'a>, AuthError> {
        parse_object(json, Malformed::PayloadJson)
    }

    fn audience(&self) -> Result<&[Text<'a>], AuthError> {
        match &self.aud {
            None => Err(AuthError::MissingClaim(Claim::Aud)),
            Some(Value::Str(aud)) => Ok(std::slice::from_ref(aud)),
            Some(Value::Strings(auds)) => Ok(auds),
            Some(_) => Err(AuthError::InvalidClaim(Claim::Aud)),
        }
    }

    fn time(&self, claim: Claim, value: &Option<Value<'a>>) -> Result<Option<u64>, AuthError> {
        match value {
            None => Ok(None),
            Some(Value::Time(seconds)) => Ok(Some(*seconds)),
            Some(_) => Err(AuthError::InvalidClaim(claim)),
        }
    }

    fn string<'c>(&self, claim: Claim, value: &'c Option<Value<'a>>) -> Result<&'c str, AuthError> {
        match value {
            None => Err(AuthError::MissingClaim(claim)),
            Some(Value::Str(text)) => Ok(text),
            Some(_) => Err(AuthError::InvalidClaim(claim)),
        }
    }
}

/// A JSON string, borrowed from the input unless it had escapes.
type Text<'a> = Cow<'a, str>;

/// A member's value, reduced to what the checks can use.
enum Value<'a> {
    Str(Text<'a>),
    Strings(Vec<Text<'a>>),
    /// A number of whole seconds in 0..=9999-12-31 (a fraction is cut off).
    Time(u64),
    /// Anything else: a mistyped or out-of-range value.
    Other,
}

/// A JSON object read straight into the members the checks use.
trait Members<'de>: Default {
    /// Reads the value of the member `name` if the checks use it, and returns the
    /// member's bit (one per name); returns 0 without reading for any other name.
    fn read<A: MapAccess<'de>>(&mut self, name: &str, map: &mut A) -> Result<u8, A::Error>;
}

/// Reads the next value into `slot` and returns `bit`.
fn read_into<'de, A: MapAccess<'de>>(
    slot: &mut Option<Value<'de>>,
    map: &mut A,
    bit: u8,
) -> Result<u8, A::Error> {
    *slot = Some(map.next_value_seed(ValueSeed)?);
    Ok(bit)
}

/// Parses `json` as one object whose member names are all different.
fn parse_object<'de, T: Members<'de>>(
    json: &'de [u8],
    malformed: Malformed,
) -> Result<T, AuthError> {
    // JSON is UTF-8 throughout (RFC 8259); serde_json would not check the strings
    // it skips.
    let text = std::str::from_utf8(json).map_err(|_| AuthError::Malformed(malformed))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let (members, duplicate) = de
        .deserialize_map(ObjectVisitor(PhantomData))
        .and_then(|read| de.end().map(|()| read))
        .map_err(|_| AuthError::Malformed(malformed))?;
    if duplicate {
        return Err(AuthError::Malformed(Malformed::DuplicateMember));
    }
    Ok(members)
}

/// Reads an object into `T`, and says whether a member name came twice.
struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Members<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = (T, bool);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(T, bool), A::Error> {
        let mut members = T::default();
        let mut seen = 0u8;
        let mut duplicate = false;
        // The names `T` does not read; their values are still parsed, so a value
        // that is not valid JSON refuses the token wherever it is.
        let mut others: Vec<Text<'de>> = Vec::new();
        while let Some(name) = map.next_key_seed(TextSeed)? {
            match members.read(&name, &mut map)? {
                0 => {
                    map.next_value_seed(ValueSeed)?;
                    others.push(name);
                }
                bit => {
                    duplicate |= seen & bit != 0;
                    seen |= bit;
                }
            }
        }
        Ok((members, duplicate || has_duplicates(&mut others)))
    }
}

/// Whether a name occurs twice in `names`.
fn has_duplicates(names: &mut [Text<'_>]) -> bool {
    if names.len() <= 16 {
        return names
            .iter()
            .enumerate()
            .any(|(i, name)| names[..i].contains(name));
    }
    names.sort_unstable();
    names.windows(2).any(|pair| pair[0] == pair[1])
}

/// A JSON string, borrowed where it can be.
struct TextSeed;

impl<'de> DeserializeSeed<'de> for TextSeed {
    type Value = Text<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Text<'de>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for TextSeed {
    type Value = Text<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value<'de>, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value<'de>, E> {
        Ok(if v <= MAX_TIME {
            Value::Time(v)
        } else {
            Value::Other
        })
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value<'de>, E> {
        Ok(u64::try_from(v).map_or(Value::Other, |v| {
            if v <= MAX_TIME {
                Value::Time(v)
            } else {
                Value::Other
            }
        }))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value<'de>, E> {
        Ok(if v >= 0.0 && v.trunc() <= MAX_TIME as f64 {
            Value::Time(v.trunc() as u64)
        } else {
            Value::Other
        })
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Value<'de>, E> {
        Ok(Value::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value<'de>, E> {
        Ok(Value::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value<'de>, A::Error> {
        let mut strings = Vec::new();
        let mut all_strings = true;
        while let Some(item) = seq.next_element_seed(ValueSeed)? {
            match item {
                Value::Str(text) if all_strings => strings.push(text),
                _ => all_strings = false,
            }
        }
        Ok(if all_strings {
            Value::Strings(strings)
        } else {
            Value::Other
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Value::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A verifier with only the time settings the tests below vary.
    fn verifier(clock_offset: Duration, max_token_age: Duration, clock: Option<Clock>) -> Verifier {
        Verifier {
            audiences: Box::new([]),
            algorithms: 0,
            clock_offset,
            max_token_age,
            max_token_length: 0,
            clock,
        }
    }

    /// The coarse clock is never ahead of the precise one, and lags it by far less
    /// than the margin a cache hit keeps from the end of its window.
    #[test]
    fn the_coarse_clock_trails_the_precise_one_by_less_than_the_margin() {
        for _ in 0..10_000 {
            let before = nanos_since_epoch(SystemTime::now());
            let Some(coarse) = coarse_now() else {
                return; // no coarse clock on this platform: nothing relies on one
            };
            let after = nanos_since_epoch(SystemTime::now());
            assert!(coarse <= after, "coarse clock {} ns ahead", coarse - after);
            assert!(
                before - coarse < COARSE_CLOCK_MARGIN,
                "coarse clock {} ns behind",
                before - coarse
            );
        }
    }

    /// Only a window the coarse clock is well inside skips the precise clock, and
    /// never with a clock set by the builder.
    #[test]
    fn only_a_window_well_inside_skips_the_precise_clock() {
        let system = verifier(Duration::ZERO, Duration::ZERO, None);
        let fixed = verifier(
            Duration::ZERO,
            Duration::ZERO,
            Some(Arc::new(SystemTime::now)),
        );
        let now = system.now();
        // From `from` to `until` milliseconds from now.
        let around = |from: i128, until: i128| now + from * 1_000_000..now + until * 1_000_000;
        if coarse_now().is_some() {
            assert!(system.coarsely_inside(&around(-60_000, 60_000)));
        }
        let outside = [
            around(-60_000, 500),
            around(-60_000, 0),
            around(2_000, 60_000),
            around(-60_000, -1_000),
        ];
        for window in outside.iter().cloned().chain([around(-60_000, 60_000)]) {
            assert!(
                !fixed.coarsely_inside(&window),
                "{window:?} with a set clock"
            );
        }
        // Ends within the margin, ended, or not begun: the precise clock decides.
        for window in outside {
            assert!(!system.coarsely_inside(&window), "{window:?}");
        }
    }

    /// A cache hit accepts exactly when every check passes: the window worked out at
    /// insert time agrees with the checks, at and around each of their edges.
    #[test]
    fn cache_window_agrees_with_the_checks() {
        let base: u64 = 1_700_000_000;
        let edges = |secs: u64| {
            let at = i128::from(secs) * NANOS;
            [
                -NANOS,
                -NANOS / 2 - 1,
                -NANOS / 2,
                -NANOS / 2 + 1,
                -1,
                0,
                1,
                NANOS / 2,
                NANOS,
            ]
            .map(|d| at + d)
        };
        let mut compared = 0;
        for offset in [
            Duration::ZERO,
            Duration::from_millis(1500),
            Duration::from_secs(60),
        ] {
            for max_age in [
                Duration::ZERO,
                Duration::from_secs(3600),
                Duration::from_millis(2500),
            ] {
                let verifier = verifier(offset, max_age, None);
                for (iat, exp, nbf, validity) in [
                    (base, base + 3600, None, None),
                    (base, base + 1, Some(base + 1), None),
                    (base + 10, base + 5, None, None),
                    (
                        base,
                        base + 7200,
                        Some(base - 5),
                        Some(Validity {
                            not_before: base + 2,
                            not_after: base + 3,
                        }),
                    ),
                ] {
                    let cached = CachedToken {
                        identity: Arc::new(Identity {
                            id: "u".into(),
                            memberships: Box::new([]),
                        }),
                        validity,
                        not_before: nbf,
                        issued_at: iat,
                        expires_at: exp,
                        window: verifier.window(iat, exp, nbf, validity),
                    };
                    let offset_nanos = offset.as_nanos() as i128;
                    let max_age_nanos = max_age.as_nanos() as i128;
                    let mut times: Vec<i128> = Vec::new();
                    for secs in [
                        Some(iat),
                        Some(exp),
                        Some(iat + 1),
                        nbf,
                        validity.map(|v| v.not_before),
                        validity.map(|v| v.not_after),
                    ]
                    .into_iter()
                    .flatten()
                    {
                        for at in edges(secs) {
                            for shift in [0, -offset_nanos, max_age_nanos] {
                                times.push(at + shift);
                            }
                        }
                    }
                    for now in times {
                        assert_eq!(
                            cached.window.contains(&now),
                            verifier.recheck(now, &cached).is_ok(),
                            "now {now}, iat {iat}, exp {exp}, nbf {nbf:?}, {validity:?}, offset {offset:?}, max age {max_age:?}"
                        );
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared > 1000, "{compared} times compared");
    }

    /// The known headers are the parser's own results for their text.
    #[test]
    fn known_headers_read_as_parsed() {
        for json in [
            r#"{"alg":"RS256","typ":"JWT"}"#,
            r#"{"typ":"JWT","alg":"PS512"}"#,
            r#"{"alg":"RS384"}"#,
        ] {
            let encoded = BASE64URL.encode_type::<Vec<u8>>(json);
            let parsed = Header::parse(json.as_bytes()).expect("parses");
            assert_eq!(Header::known(&encoded), Some(parsed), "{json}");
        }
        for json in [
            r#"{"alg":"RS256","typ":"JWT","kid":"1"}"#,
            r#"{"alg":"RS256", "typ":"JWT"}"#,
            r#"{"alg":"HS256","typ":"JWT"}"#,
            r#"{"alg":"RS256","typ":"JWS"}"#,
        ] {
            assert_eq!(
                Header::known(&BASE64URL.encode_type::<Vec<u8>>(json)),
                None,
                "{json}"
            );
        }
    }

    #[test]
    fn go_rounding_rounds_halfway_up() {
        assert_eq!(round_to_second(1_499_999_999), NANOS);
        assert_eq!(round_to_second(1_500_000_000), 2 * NANOS);
        assert_eq!(round_to_second(-1), 0);
    }

    #[test]
    fn audience_hints_name_the_difference() {
        let expected = "https://custom-domain.com";
        assert_eq!(
            audience_hint(expected, "https://custom-domain.com/"),
            AudienceHint::TrailingSlash
        );
        assert_eq!(
            audience_hint(expected, "http://custom-domain.com"),
            AudienceHint::Scheme
        );
        assert_eq!(
            audience_hint(expected, "https://custom-domain.com:443"),
            AudienceHint::Port
        );
        assert_eq!(
            audience_hint(expected, "https://Custom-Domain.com"),
            AudienceHint::Case
        );
        assert_eq!(
            audience_hint(expected, "https://other.example"),
            AudienceHint::Other
        );
    }
}
