//! How a request is read and decided: exactly one `Authorization: Bearer <token>`
//! header, the organisation from `x-zitadel-orgid`, the instance from an
//! [`InstanceId`] extension (else the builder's), and the [`SystemUser`] put on the
//! request. The layers of this crate and tower-http's authorization middleware (see
//! [`layer`](crate::layer)) all decide through here, so their verdicts are one.
//!
//! Holds the reading of requests only: the checks on a token are `verify`'s, the
//! rendering of a refusal is `response`'s.

use std::{panic::AssertUnwindSafe, sync::Arc};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, header::AUTHORIZATION};

use crate::{
    auth::SystemAuth,
    error::{AuthError, Malformed},
    user::{InstanceId, ORG_ID_HEADER, SystemUser},
};

const ORG_ID: HeaderName = HeaderName::from_static(ORG_ID_HEADER);

impl SystemAuth {
    /// Decides `request` and records the decision: on success the [`SystemUser`]
    /// (with the request's instance and organisation) goes into its extensions; in
    /// `optional` mode a request without an `Authorization` header goes on without
    /// one (and any `SystemUser` set before is removed); otherwise the refusal.
    ///
    /// A panic while deciding is caught, logged, and refused as
    /// [`AuthError::Internal`] (a 500 answer, not a dropped connection).
    pub(crate) fn decide<B>(
        &self,
        request: &mut Request<B>,
        optional: bool,
    ) -> Result<(), AuthError> {
        let decision =
            std::panic::catch_unwind(AssertUnwindSafe(|| self.authenticate(request, optional)))
                .unwrap_or_else(|_| {
                    tracing::error!(
                        target: "zitadel_system_auth",
                        "panic while authenticating a request; answered 500"
                    );
                    Err(AuthError::Internal)
                });
        let extensions = request.extensions_mut();
        match decision? {
            Some(user) => {
                record_on_span(&user);
                extensions.insert(user);
            }
            // Let through unauthenticated: nothing set before may pass for a verdict.
            None => drop(extensions.remove::<SystemUser>()),
        }
        Ok(())
    }

    /// The verdict on `request`: `Ok(Some(user))` to go on authenticated, `Ok(None)`
    /// to go on without a user (optional mode, no token), `Err` to refuse.
    fn authenticate<B>(
        &self,
        request: &Request<B>,
        optional: bool,
    ) -> Result<Option<SystemUser>, AuthError> {
        let headers = request.headers();
        let result =
            match authorization(headers).and_then(|value| self.check_header(value.as_bytes())) {
                Err(AuthError::MissingToken) if optional => return Ok(None),
                result => result,
            };
        let result = result.and_then(|user| {
            let instance = match request.extensions().get::<InstanceId>() {
                Some(InstanceId(id)) => Some(id.clone()),
                None => self.instance_id().cloned(),
            };
            Ok(user.with_context(instance, organization(headers)?))
        });
        self.record(&result);
        result.map(Some)
    }

    /// The verdict on the value of the `Authorization` header, read as bytes.
    ///
    /// [`bearer_token`] first checks that the header is ASCII; here that check is
    /// only needed for a refusal. Only a token of base64url and dots passes the
    /// checks (a cached one passed them before), so an accepted header was ASCII,
    /// and a refused one that was not is refused for its encoding, as
    /// [`bearer_token`] refuses it.
    fn check_header(&self, value: &[u8]) -> Result<SystemUser, AuthError> {
        token_in(value)
            .and_then(|token| self.check(token))
            .map_err(|error| {
                if value.is_ascii() {
                    error
                } else {
                    AuthError::Malformed(Malformed::HeaderEncoding)
                }
            })
    }
}

/// Records the user id in a `user_id` field of the current span, when it has one:
/// the span tower-http's `TraceLayer` made with [`trace_span`], for example. Never
/// the token.
fn record_on_span(user: &SystemUser) {
    let span = tracing::Span::current();
    if span.has_field("user_id") {
        span.record("user_id", tracing::field::display(user.user_id()));
    }
}

/// A span for tower-http's `TraceLayer` (`.make_span_with(trace_span)`) with the
/// request's method, path (never the query) and version, and an empty `user_id` that
/// the layer fills in for an authenticated request.
pub fn trace_span<B>(request: &Request<B>) -> tracing::Span {
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        version = ?request.version(),
        user_id = tracing::field::Empty,
    )
}

/// Reads the token from exactly one `Authorization: Bearer <token>` header.
///
/// A missing header or another scheme is [`AuthError::MissingToken`]; several
/// headers are [`AuthError::MultipleAuthorizationHeaders`].
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let value = authorization(headers)?.as_bytes();
    // A header value holds no control characters, so ASCII here means visible ASCII
    // (and tabs), as `HeaderValue::to_str` checks, a word at a time rather than a byte.
    if !value.is_ascii() {
        return Err(AuthError::Malformed(Malformed::HeaderEncoding));
    }
    let token = token_in(value)?;
    std::str::from_utf8(token).map_err(|_| AuthError::Malformed(Malformed::HeaderEncoding))
}

/// The one `Authorization` header.
fn authorization(headers: &HeaderMap) -> Result<&HeaderValue, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthError::MissingToken)?;
    if values.next().is_some() {
        return Err(AuthError::MultipleAuthorizationHeaders);
    }
    Ok(value)
}

/// The organisation the request is about: the one `x-zitadel-orgid` header, if any
/// (an empty or non-text one is none). Several are refused, never first-one-wins.
fn organization(headers: &HeaderMap) -> Result<Option<Arc<str>>, AuthError> {
    let mut values = headers.get_all(&ORG_ID).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(AuthError::MultipleOrganizationHeaders);
    }
    Ok(first
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(Arc::from))
}

/// The token in `Bearer <token>`: the scheme in any case, one or more spaces, then
/// the token.
fn token_in(value: &[u8]) -> Result<&[u8], AuthError> {
    let (scheme, rest) = match value.iter().position(|&b| b == b' ') {
        Some(space) => (&value[..space], &value[space + 1..]),
        None => (value, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(AuthError::MissingToken);
    }
    match rest.iter().position(|&b| b != b' ') {
        None => Err(AuthError::Malformed(Malformed::EmptyToken)),
        Some(start) => Ok(&rest[start..]),
    }
}
