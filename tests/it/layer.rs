//! The layers through real axum Routers and plain tower services, with real keys,
//! real tokens and an injected clock.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::{
    Extension, Router,
    body::Body,
    http::{Request, Response, StatusCode, header},
    middleware,
    routing::get,
};
use http_body_util::BodyExt as _;
use serde_json::json;
use tower::{Layer as _, ServiceExt as _};
use zitadel_system_auth::{
    AuthError, InstanceId, RequireRoleLayer, SystemAuth, SystemAuthLayer, SystemAuthService,
    SystemUser, error::Malformed,
};

use crate::{
    cases::{self, Outcome, World},
    common::{self, AUD, Answer, KeyExt as _, USER, b64, key, other_key},
};

/// The "current" time of every test.
const T: u64 = 1_700_000_000;
/// The instance and organisation the membership config names.
const INSTANCE: &str = "123456789012345678";
const ORG: &str = "987654321098765432";

// SystemAuth and the layers are Clone + Send + Sync (checked at compile time).
const _: fn() = || {
    fn is<T: Clone + Send + Sync + 'static>() {}
    is::<SystemAuth>();
    is::<SystemAuthLayer>();
    is::<SystemAuthService<Router>>();
    is::<RequireRoleLayer>();
    is::<SystemUser>();
    is::<AuthError>();
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn auth_with(config: &str) -> SystemAuth {
    SystemAuth::builder()
        .config_yaml(config)
        .clock(|| common::at(T, 0))
        .build()
        .expect("build SystemAuth")
}

/// The default config (one user, no memberships) at time `T`.
fn auth() -> SystemAuth {
    auth_with(&common::default_config())
}

/// The default user with an IAM membership on `INSTANCE` and an Organization
/// membership on `ORG`, and no System membership.
fn membership_config() -> String {
    format!(
        "ExternalDomain: custom-domain.com\n\
         ExternalPort: 443\n\
         ExternalSecure: true\n\
         SystemAPIUsers:\n\
         \x20 - {USER}:\n\
         \x20     Path: {}\n\
         \x20     Memberships:\n\
         \x20       - MemberType: IAM\n\
         \x20         Roles: [IAM_OWNER, IAM_LOGIN_CLIENT]\n\
         \x20         AggregateID: \"{INSTANCE}\"\n\
         \x20       - MemberType: Organization\n\
         \x20         Roles: [ORG_OWNER]\n\
         \x20         AggregateID: \"{ORG}\"\n",
        key().public_path().display()
    )
}

fn claims(iat: u64, exp: u64) -> serde_json::Value {
    json!({ "iss": USER, "sub": USER, "aud": AUD, "iat": iat, "exp": exp })
}

/// A token valid at `T`.
fn token() -> String {
    key().rs256(&claims(T, T + 3600))
}

async fn whoami(user: SystemUser) -> String {
    user.user_id().to_owned()
}

async fn maybe(user: Option<SystemUser>) -> String {
    match user {
        Some(user) => format!("user {}", user.user_id()),
        None => "anonymous".to_owned(),
    }
}

/// Echoes the request context the handler sees.
async fn context(user: SystemUser) -> String {
    format!(
        "{} instance={} org={}",
        user.user_id(),
        user.instance_id().unwrap_or("-"),
        user.org_id().unwrap_or("-")
    )
}

/// `GET /` → `whoami`, behind `auth.layer()`.
fn app(auth: &SystemAuth) -> Router {
    Router::new().route("/", get(whoami)).layer(auth.layer())
}

/// `GET /` with the given headers (appended, so a name may repeat).
fn request(headers: &[(&str, &str)]) -> Request<Body> {
    request_to("/", headers)
}

fn request_to(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::get(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::empty()).expect("request")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A handler that counts its calls, behind `auth.layer()`.
fn counting_app(auth: &SystemAuth) -> (Router, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = Router::new()
        .route(
            "/",
            get(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    "called"
                }
            }),
        )
        .layer(auth.layer());
    (app, calls)
}

/// The answer is the refusal `error` gets by the README's rules (`cases::wire`,
/// written by hand): status, the one `WWW-Authenticate`, the JSON body, the content
/// type and `cache-control: no-store`.
#[track_caller]
fn assert_refusal(answer: &Answer, error: &AuthError) {
    let wire = cases::wire(error);
    assert_eq!(answer.status.as_u16(), wire.status, "{}", answer.body);
    assert_eq!(
        answer.headers.get(header::CONTENT_TYPE).unwrap(),
        "application/json"
    );
    assert_eq!(
        answer.headers.get(header::CACHE_CONTROL).unwrap(),
        "no-store"
    );
    assert_eq!(
        answer.json(),
        json!({ "code": wire.code, "message": wire.message, "details": [] }),
    );
    let www: Vec<&str> = answer
        .headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().expect("ASCII"))
        .collect();
    assert_eq!(www, wire.www_authenticate.as_slice(), "{error:?}");
}

/// A 401 `invalid_token` refusal as `error`.
#[track_caller]
fn assert_invalid_token(answer: &Answer, error: &AuthError) {
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(
        answer
            .www_authenticate()
            .starts_with("Bearer error=\"invalid_token\", error_description=\""),
        "{}",
        answer.www_authenticate()
    );
    assert_eq!(answer.json()["code"], 16);
    assert_refusal(answer, error);
}

/// No token: 401 with a bare challenge (RFC 6750 section 3.1).
#[track_caller]
fn assert_bare_bearer(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.www_authenticate(), "Bearer");
    assert_eq!(
        answer
            .headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .count(),
        1
    );
    assert_eq!(
        answer.json(),
        json!({ "code": 16, "message": "a bearer token is required", "details": [] })
    );
    assert_eq!(
        answer.headers.get(header::CONTENT_TYPE).unwrap(),
        "application/json"
    );
}

/// Authenticated without `role`: 403, code 7, `insufficient_scope`.
#[track_caller]
fn assert_forbidden(answer: &Answer, role: &str) {
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert_eq!(
        answer.json(),
        json!({
            "code": 7,
            "message": format!("the system user lacks the role {role} here"),
            "details": [],
        })
    );
    assert_eq!(
        answer.www_authenticate(),
        format!(
            "Bearer error=\"insufficient_scope\", error_description=\"the system user lacks the role {role} here\""
        )
    );
    assert_refusal(
        answer,
        &AuthError::MissingRole {
            role: Arc::from(role),
        },
    );
}

// ---------------------------------------------------------------------------
// The table of refusals, through the layer
// ---------------------------------------------------------------------------

/// Every case of the refusal table, through the real layer on a Router: the
/// status, the JSON body, the one `WWW-Authenticate`, `content-type` and
/// `cache-control` are the row's literals; nothing of the token comes back; the
/// handler never runs. And the same case as a gRPC request: a trailers-only
/// status with the row's code and description.
#[tokio::test]
async fn every_refusal_of_the_table() {
    let world = World::new();
    let table = cases::refusals();
    let mut failures = Vec::new();
    for case in &table {
        world.set_at(case.at);
        let sent = (case.make)();
        let problems = cases::judge(
            cases::app(&world.auth, case.role),
            sent.request(false),
            &Outcome::Refused(case.wire()),
            &sent.secrets(),
        )
        .await;
        if !problems.is_empty() {
            failures.push(format!("- {}: {}", case.name, problems.join("; ")));
        }
        let problems = cases::judge_grpc(
            cases::app(&world.auth, case.role),
            sent.request(true),
            &case.wire(),
        )
        .await;
        if !problems.is_empty() {
            failures.push(format!("- {} (gRPC): {}", case.name, problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Success
// ---------------------------------------------------------------------------

#[tokio::test]
async fn valid_token_puts_the_system_user_in_extensions() {
    let answer = common::get_with_token(app(&auth()), Some(&token())).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body, USER);
    assert!(answer.headers.get(header::WWW_AUTHENTICATE).is_none());
}

#[tokio::test]
async fn handler_sees_the_verified_claims() {
    async fn details(user: SystemUser) -> String {
        let iat = user
            .issued_at()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let exp = user
            .expires_at()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        format!(
            "{} {} {} {}",
            user.user_id(),
            iat.as_secs(),
            exp.as_secs(),
            user.has_role("SYSTEM_OWNER")
        )
    }
    let app = Router::new().route("/", get(details)).layer(auth().layer());
    let token = key().rs256(&claims(T - 10, T + 100));
    let answer = common::get_with_token(app, Some(&token)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body, format!("{USER} {} {} true", T - 10, T + 100));
}

#[tokio::test]
async fn tokens_from_every_signer_pass_the_layer() {
    let tokens = [
        key().rs256(&claims(T, T + 3600)),
        key().jwt(jsonwebtoken::Algorithm::PS256, &claims(T, T + 3600)),
        key().sign_openssl(
            r#"{"alg":"RS256","typ":"JWT"}"#,
            &claims(T, T + 3600).to_string(),
        ),
    ];
    for token in tokens {
        let answer = common::get_with_token(app(&auth()), Some(&token)).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_eq!(answer.body, USER);
    }
}

#[tokio::test]
async fn scheme_in_any_case_and_several_spaces_are_accepted() {
    let token = token();
    for value in [
        format!("Bearer {token}"),
        format!("bearer {token}"),
        format!("BEARER {token}"),
        format!("bEaReR {token}"),
        format!("Bearer   {token}"),
        format!("bearer     {token}"),
    ] {
        let answer = common::send(app(&auth()), request(&[("authorization", &value)])).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{value:.12}: {}",
            answer.body
        );
        assert_eq!(answer.body, USER);
    }
}

// ---------------------------------------------------------------------------
// Missing and malformed Authorization headers
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Error format
// ---------------------------------------------------------------------------

/// The organisation a request is about must be one: several `x-zitadel-orgid`
/// headers are refused like several `Authorization` headers, never first-one-wins.
#[tokio::test]
async fn two_org_id_headers_get_400_invalid_request() {
    let auth = auth_with(&membership_config());
    let token = token();
    let (app, calls) = counting_app(&auth);
    for (first, second) in [(ORG, ORG), (ORG, "987654321098765433"), ("", ORG)] {
        let answer = common::send(
            app.clone(),
            request(&[
                ("authorization", &bearer(&token)),
                ("x-zitadel-orgid", first),
                ("x-zitadel-orgid", second),
            ]),
        )
        .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
        assert_eq!(
            answer.json(),
            json!({
                "code": 3,
                "message": "at most one x-zitadel-orgid header is allowed",
                "details": [],
            })
        );
        assert_eq!(
            answer.www_authenticate(),
            "Bearer error=\"invalid_request\", error_description=\"at most one x-zitadel-orgid header is allowed\""
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // One header is fine.
    let answer = common::send(
        app,
        request(&[("authorization", &bearer(&token)), ("x-zitadel-orgid", ORG)]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

/// An unknown user, a signature by another key and a key outside its certificate's
/// window get one and the same answer, so no caller can probe for user ids.
#[tokio::test]
async fn unknown_user_and_bad_signature_answer_alike() {
    let exp = T + 3600;
    let unknown =
        key().rs256(&json!({ "iss": "nobody", "sub": "nobody", "aud": AUD, "iat": T, "exp": exp }));
    let forged = other_key().rs256(&claims(T, exp));
    let unknown = common::get_with_token(app(&auth()), Some(&unknown)).await;
    let forged = common::get_with_token(app(&auth()), Some(&forged)).await;
    let want = "the token is not signed by a valid key of a configured system user";
    for answer in [&unknown, &forged] {
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            answer.json(),
            json!({ "code": 16, "message": want, "details": [] })
        );
        assert_eq!(
            answer.www_authenticate(),
            format!("Bearer error=\"invalid_token\", error_description=\"{want}\"")
        );
    }
    let headers = |answer: &Answer| {
        let mut all: Vec<(String, Vec<u8>)> = answer
            .headers
            .iter()
            .filter(|(name, _)| *name != header::CONTENT_LENGTH)
            .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
            .collect();
        all.sort();
        all
    };
    assert_eq!(headers(&unknown), headers(&forged));
    assert_eq!(unknown.body, forged.body);
}

#[tokio::test]
async fn refusal_has_zitadels_body_and_an_rfc6750_challenge() {
    let expired = key().rs256(&claims(T - 7200, T - 3600));
    let answer = common::get_with_token(app(&auth()), Some(&expired)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.headers.get(header::CONTENT_TYPE).unwrap(),
        "application/json"
    );
    let body = answer.json();
    let object = body.as_object().expect("a JSON object");
    assert_eq!(object.len(), 3, "{body}");
    assert_eq!(body["code"], 16);
    assert_eq!(body["details"], json!([]));
    let message = body["message"].as_str().unwrap();
    assert_eq!(message, "the token has expired");
    assert_eq!(
        answer.www_authenticate(),
        format!("Bearer error=\"invalid_token\", error_description=\"{message}\"")
    );
}

// ---------------------------------------------------------------------------
// Optional layer
// ---------------------------------------------------------------------------

fn optional_app(auth: &SystemAuth) -> Router {
    Router::new()
        .route("/", get(maybe))
        .route("/strict", get(whoami))
        .route(
            "/owner",
            get(whoami).route_layer(RequireRoleLayer::new("SYSTEM_OWNER")),
        )
        .layer(auth.optional_layer())
}

#[tokio::test]
async fn optional_layer_without_token_gives_none() {
    let answer = common::get_with_token(optional_app(&auth()), None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body, "anonymous");
    // Another scheme is no bearer token either.
    let answer = common::send(
        optional_app(&auth()),
        request(&[("authorization", "Basic dXNlcjpwYXNz")]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body, "anonymous");
}

#[tokio::test]
async fn optional_layer_with_valid_token_gives_the_user() {
    let answer = common::get_with_token(optional_app(&auth()), Some(&token())).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body, format!("user {USER}"));
}

#[tokio::test]
async fn optional_layer_still_refuses_bad_tokens() {
    let cases = [
        (
            other_key().rs256(&claims(T, T + 3600)),
            AuthError::InvalidSignature,
        ),
        (key().rs256(&claims(T - 7200, T - 3600)), AuthError::Expired),
        ("x.y".to_owned(), AuthError::Malformed(Malformed::Segments)),
    ];
    for (token, error) in cases {
        let answer = common::get_with_token(optional_app(&auth()), Some(&token)).await;
        assert_invalid_token(&answer, &error);
    }
    let answer = common::send(
        optional_app(&auth()),
        request(&[("authorization", "Bearer")]),
    )
    .await;
    assert_invalid_token(&answer, &AuthError::Malformed(Malformed::EmptyToken));
    let token = token();
    let answer = common::send(
        optional_app(&auth()),
        request(&[
            ("authorization", &bearer(&token)),
            ("authorization", &bearer(&token)),
        ]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
}

/// A `SystemUser` put on the request before the optional layer (by a mistaken or
/// hostile middleware) never passes for the layer's verdict.
#[tokio::test]
async fn optional_layer_removes_a_user_set_before_it() {
    let forged = auth()
        .verify(&token())
        .expect("a valid token gives a user to plant");
    let planted = |app: Router| app.layer(Extension(forged.clone()));
    let answer = common::get_with_token(planted(optional_app(&auth())), None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body, "anonymous");
    let answer = common::send(planted(optional_app(&auth())), request_to("/strict", &[])).await;
    assert_bare_bearer(&answer);
    let answer = common::send(planted(optional_app(&auth())), request_to("/owner", &[])).await;
    assert_bare_bearer(&answer);
    // With a token, the handler sees the layer's user.
    let answer = common::get_with_token(planted(optional_app(&auth())), Some(&token())).await;
    assert_eq!(answer.body, format!("user {USER}"));
}

#[tokio::test]
async fn mandatory_extractor_behind_optional_layer_without_token_is_401() {
    let answer = common::send(optional_app(&auth()), request_to("/strict", &[])).await;
    assert_bare_bearer(&answer);
    let answer = common::send(
        optional_app(&auth()),
        request_to("/strict", &[("authorization", &bearer(&token()))]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, USER);
}

#[tokio::test]
async fn role_layer_behind_optional_layer_without_token_is_401() {
    let answer = common::send(optional_app(&auth()), request_to("/owner", &[])).await;
    assert_bare_bearer(&answer);
    let answer = common::send(
        optional_app(&auth()),
        request_to("/owner", &[("authorization", &bearer(&token()))]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
}

// ---------------------------------------------------------------------------
// Roles
// ---------------------------------------------------------------------------

/// `GET /` → `context`, requiring `role`, with route layers.
fn role_app(auth: &SystemAuth, role: &str) -> Router {
    Router::new()
        .route("/", get(context))
        .route_layer(RequireRoleLayer::new(role.to_owned()))
        .route_layer(auth.layer())
}

#[tokio::test]
async fn system_owner_role_passes_a_default_user() {
    let answer = common::get_with_token(role_app(&auth(), "SYSTEM_OWNER"), Some(&token())).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body, format!("{USER} instance=- org=-"));
}

#[tokio::test]
async fn missing_role_is_403_with_code_7() {
    let answer = common::get_with_token(role_app(&auth(), "IAM_OWNER"), Some(&token())).await;
    assert_forbidden(&answer, "IAM_OWNER");
    let answer = common::get_with_token(role_app(&auth(), "ORG_OWNER"), Some(&token())).await;
    assert_forbidden(&answer, "ORG_OWNER");
    // Role names are exact.
    let answer = common::get_with_token(role_app(&auth(), "system_owner"), Some(&token())).await;
    assert_forbidden(&answer, "system_owner");
}

#[tokio::test]
async fn role_layer_still_needs_authentication_first() {
    let answer = common::get_with_token(role_app(&auth(), "SYSTEM_OWNER"), None).await;
    assert_bare_bearer(&answer);
    let bad = other_key().rs256(&claims(T, T + 3600));
    let answer = common::get_with_token(role_app(&auth(), "SYSTEM_OWNER"), Some(&bad)).await;
    assert_invalid_token(&answer, &AuthError::InvalidSignature);
}

#[tokio::test]
async fn role_layer_without_auth_layer_is_401() {
    let app = Router::new()
        .route("/", get(|| async { "open" }))
        .route_layer(RequireRoleLayer::new("SYSTEM_OWNER"));
    let answer = common::get_with_token(app, Some(&token())).await;
    assert_bare_bearer(&answer);
}

#[tokio::test]
async fn configured_memberships_replace_the_default() {
    // A user with IAM and Organization memberships is no SYSTEM_OWNER.
    let auth = auth_with(&membership_config());
    let answer = common::get_with_token(role_app(&auth, "SYSTEM_OWNER"), Some(&token())).await;
    assert_forbidden(&answer, "SYSTEM_OWNER");
}

#[tokio::test]
async fn iam_membership_applies_only_on_its_instance() {
    let auth = auth_with(&membership_config());
    // No instance known: the IAM membership does not apply.
    let answer = common::get_with_token(role_app(&auth, "IAM_OWNER"), Some(&token())).await;
    assert_forbidden(&answer, "IAM_OWNER");
    // The instance, set by an outer layer.
    let app = role_app(&auth, "IAM_OWNER").layer(Extension(InstanceId(Arc::from(INSTANCE))));
    let answer = common::get_with_token(app, Some(&token())).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body, format!("{USER} instance={INSTANCE} org=-"));
    // Another instance.
    let app =
        role_app(&auth, "IAM_OWNER").layer(Extension(InstanceId(Arc::from("123456789012345679"))));
    let answer = common::get_with_token(app, Some(&token())).await;
    assert_forbidden(&answer, "IAM_OWNER");
    // Every role of the membership applies, no other.
    let app = role_app(&auth, "IAM_LOGIN_CLIENT").layer(Extension(InstanceId(Arc::from(INSTANCE))));
    assert_eq!(
        common::get_with_token(app, Some(&token())).await.status,
        StatusCode::OK
    );
    let app = role_app(&auth, "ORG_OWNER").layer(Extension(InstanceId(Arc::from(INSTANCE))));
    assert_forbidden(
        &common::get_with_token(app, Some(&token())).await,
        "ORG_OWNER",
    );
}

#[tokio::test]
async fn instance_from_a_map_request_middleware() {
    // A service that knows the instance from the Host header, as ZITADEL does.
    async fn instance_from_host(mut request: Request<Body>) -> Request<Body> {
        let instance = match request.headers().get(header::HOST).map(|h| h.as_bytes()) {
            Some(b"tenant-a.example") => Some(INSTANCE),
            Some(b"tenant-b.example") => Some("111111111111111111"),
            _ => None,
        };
        if let Some(instance) = instance {
            request
                .extensions_mut()
                .insert(InstanceId(Arc::from(instance)));
        }
        request
    }
    let auth = auth_with(&membership_config());
    let app = role_app(&auth, "IAM_OWNER").layer(middleware::map_request(instance_from_host));
    let token = token();
    let answer = common::send(
        app.clone(),
        request(&[
            ("host", "tenant-a.example"),
            ("authorization", &bearer(&token)),
        ]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body, format!("{USER} instance={INSTANCE} org=-"));
    let answer = common::send(
        app,
        request(&[
            ("host", "tenant-b.example"),
            ("authorization", &bearer(&token)),
        ]),
    )
    .await;
    assert_forbidden(&answer, "IAM_OWNER");
}

#[tokio::test]
async fn builder_instance_id_is_the_fallback() {
    let matching = SystemAuth::builder()
        .config_yaml(&membership_config())
        .clock(|| common::at(T, 0))
        .instance_id(INSTANCE)
        .build()
        .unwrap();
    assert_eq!(matching.instance_id().map(|i| &**i), Some(INSTANCE));
    let answer = common::get_with_token(role_app(&matching, "IAM_OWNER"), Some(&token())).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body, format!("{USER} instance={INSTANCE} org=-"));
    // verify() carries it too.
    let user = matching.verify(&token()).unwrap();
    assert_eq!(user.instance_id(), Some(INSTANCE));
    assert!(user.has_role("IAM_OWNER"));

    // The request's InstanceId wins over the builder's.
    let app = role_app(&matching, "IAM_OWNER").layer(Extension(InstanceId(Arc::from("other"))));
    let answer = common::get_with_token(app, Some(&token())).await;
    assert_forbidden(&answer, "IAM_OWNER");

    let elsewhere = SystemAuth::builder()
        .config_yaml(&membership_config())
        .clock(|| common::at(T, 0))
        .instance_id("other")
        .build()
        .unwrap();
    let answer = common::get_with_token(role_app(&elsewhere, "IAM_OWNER"), Some(&token())).await;
    assert_forbidden(&answer, "IAM_OWNER");
    let app = role_app(&elsewhere, "IAM_OWNER").layer(Extension(InstanceId(Arc::from(INSTANCE))));
    let answer = common::get_with_token(app, Some(&token())).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

#[tokio::test]
async fn organization_membership_applies_only_with_its_org_header() {
    let auth = auth_with(&membership_config());
    let token = token();
    let send_org = |org: Option<&str>| {
        let mut headers = vec![("authorization", bearer(&token))];
        if let Some(org) = org {
            headers.push(("x-zitadel-orgid", org.to_owned()));
        }
        let request = request(
            &headers
                .iter()
                .map(|(n, v)| (*n, v.as_str()))
                .collect::<Vec<_>>(),
        );
        common::send(role_app(&auth, "ORG_OWNER"), request)
    };
    let answer = send_org(Some(ORG)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body, format!("{USER} instance=- org={ORG}"));
    assert_forbidden(&send_org(None).await, "ORG_OWNER");
    assert_forbidden(&send_org(Some("987654321098765433")).await, "ORG_OWNER");
    assert_forbidden(&send_org(Some("")).await, "ORG_OWNER");
    assert_forbidden(&send_org(Some(INSTANCE)).await, "ORG_OWNER");
    // The org header does not make an IAM membership apply.
    let request = request(&[
        ("authorization", &bearer(&token)),
        ("x-zitadel-orgid", INSTANCE),
    ]);
    let answer = common::send(role_app(&auth, "IAM_OWNER"), request).await;
    assert_forbidden(&answer, "IAM_OWNER");
}

#[tokio::test]
async fn require_role_in_a_handler_gives_the_same_403() {
    async fn guarded(user: SystemUser) -> Result<String, AuthError> {
        user.require_role("IAM_OWNER")?;
        Ok(user.user_id().to_owned())
    }
    let auth = auth();
    let in_handler = Router::new().route("/", get(guarded)).layer(auth.layer());
    let by_layer = role_app(&auth, "IAM_OWNER");
    let a = common::get_with_token(in_handler, Some(&token())).await;
    let b = common::get_with_token(by_layer, Some(&token())).await;
    assert_forbidden(&a, "IAM_OWNER");
    assert_eq!(a.status, b.status);
    assert_eq!(a.body, b.body);
    assert_eq!(a.www_authenticate(), b.www_authenticate());
    assert_eq!(
        a.headers.get(header::CONTENT_TYPE),
        b.headers.get(header::CONTENT_TYPE)
    );

    // With the instance, the guard passes.
    let auth = auth_with(&membership_config());
    let app = Router::new()
        .route("/", get(guarded))
        .layer(auth.layer())
        .layer(Extension(InstanceId(Arc::from(INSTANCE))));
    let answer = common::get_with_token(app, Some(&token())).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body, USER);
}

#[tokio::test]
async fn route_layer_leaves_unmatched_routes_404() {
    let auth = auth();
    let app = Router::new()
        .route("/system", get(whoami))
        .route_layer(RequireRoleLayer::new("SYSTEM_OWNER"))
        .route_layer(auth.layer())
        .route("/healthz", get(|| async { "ok" }));
    let answer = common::send(app.clone(), request_to("/nowhere", &[])).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    let answer = common::send(app.clone(), request_to("/healthz", &[])).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "ok");
    let answer = common::send(app.clone(), request_to("/system", &[])).await;
    assert_bare_bearer(&answer);
    let answer = common::send(
        app,
        request_to("/system", &[("authorization", &bearer(&token()))]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, USER);
}

// ---------------------------------------------------------------------------
// Plain tower services
// ---------------------------------------------------------------------------

async fn body_text<B>(response: Response<B>) -> String
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn layer_wraps_a_plain_tower_service() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let inner = tower::service_fn(move |request: Request<Body>| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let user = request.extensions().get::<SystemUser>().cloned();
            let text = user.map_or("nobody".to_owned(), |u| u.user_id().to_owned());
            Ok::<_, Infallible>(Response::new(Body::from(text)))
        }
    });
    let service = auth().layer().layer(inner);

    let request = Request::get("/")
        .header("authorization", bearer(&token()))
        .body(Body::empty())
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(response).await, USER);

    let response = service
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    let body: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
    assert_eq!(body["code"], 16);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn layer_wraps_a_service_with_other_body_types() {
    // Request<String> in, Response<String> out of the inner service.
    let inner = tower::service_fn(|request: Request<String>| async move {
        let user = request.extensions().get::<SystemUser>().cloned();
        let text = format!(
            "{} read {}",
            user.map_or("nobody".to_owned(), |u| u.user_id().to_owned()),
            request.body()
        );
        Ok::<_, Infallible>(Response::new(text))
    });
    let service = RequireRoleLayer::new("SYSTEM_OWNER").layer(inner);
    let service = auth().layer().layer(service);

    let request = Request::post("/")
        .header("authorization", bearer(&token()))
        .body("payload".to_owned())
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(response).await, format!("{USER} read payload"));

    let request = Request::post("/")
        .header(
            "authorization",
            bearer(&other_key().rs256(&claims(T, T + 3600))),
        )
        .body("payload".to_owned())
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );

    // The role layer alone refuses a request without a user.
    let lonely = RequireRoleLayer::new("SYSTEM_OWNER").layer(tower::service_fn(
        |_: Request<String>| async { Ok::<_, Infallible>(Response::new(String::from("in"))) },
    ));
    let response = lonely
        .oneshot(Request::get("/").body(String::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

// ---------------------------------------------------------------------------
// Sharing
// ---------------------------------------------------------------------------

#[tokio::test]
async fn clones_share_the_registry() {
    let auth = auth();
    let clone = auth.clone();
    assert_eq!(auth.generation(), 1);
    assert_eq!(clone.generation(), auth.generation());
    assert_eq!(clone.user_ids(), auth.user_ids());
    assert_eq!(clone.user_ids(), [USER]);
    assert_eq!(clone.audiences(), auth.audiences());
    assert_eq!(clone.verify(&token()), auth.verify(&token()));
    // One layer serves many requests concurrently.
    let app = app(&clone);
    let token = token();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let app = app.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            common::get_with_token(app, Some(&token)).await.status
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
}

#[test]
fn debug_output_holds_no_key_material() {
    let auth = auth();
    let text = format!("{auth:?} {:?}", auth.layer());
    assert!(text.contains(AUD), "{text}");
    let der_b64 = b64(&key().public_der());
    assert!(!text.contains(&der_b64[40..80]), "{text}");
    assert!(!text.contains("BEGIN"), "{text}");
}

#[tokio::test]
async fn a_reload_through_one_handle_is_seen_by_its_clones_and_layers() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("system-user-1.pub");
    std::fs::write(&key_path, key().public_pem()).unwrap();
    let auth = SystemAuth::builder()
        .config_yaml(&common::config_with_path(USER, &key_path))
        .clock(|| common::at(T, 0))
        .watch(false)
        .build()
        .unwrap();
    let clone = auth.clone();
    let app = app(&clone);
    let old = token();
    let new = other_key().rs256(&claims(T, T + 3600));
    assert_eq!(
        common::get_with_token(app.clone(), Some(&old)).await.status,
        StatusCode::OK
    );
    assert_invalid_token(
        &common::get_with_token(app.clone(), Some(&new)).await,
        &AuthError::InvalidSignature,
    );

    // The user's key is replaced; the original handle reloads.
    std::fs::write(&key_path, other_key().public_pem()).unwrap();
    let report = auth.reload().unwrap();
    assert!(report.changed);
    assert_eq!(report.generation, 2);
    assert_eq!(auth.generation(), 2);
    assert_eq!(clone.generation(), auth.generation());

    // The layer built from the clone uses the new key.
    let answer = common::get_with_token(app.clone(), Some(&new)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body, USER);
    assert_invalid_token(
        &common::get_with_token(app, Some(&old)).await,
        &AuthError::InvalidSignature,
    );
}

/// Around a whole Router (the request has no extensions yet when the layer adds
/// the user), the handler sees the user and every extension axum adds after it.
#[tokio::test]
async fn a_router_wrapped_in_the_layer_gives_handlers_the_user_and_axums_extensions() {
    use axum::extract::{MatchedPath, OriginalUri, Path};
    let router =
        Router::new().route(
            "/instances/{id}",
            get(
                |user: SystemUser,
                 matched: MatchedPath,
                 uri: OriginalUri,
                 Path(id): Path<String>| async move {
                    format!("{} {} {} {id}", user.user_id(), matched.as_str(), uri.0)
                },
            ),
        );
    let app = auth().layer().layer(router);
    let get_with = |path: &str, token: Option<&str>| {
        let request = Request::get(path);
        match token {
            Some(token) => request.header("authorization", bearer(token)),
            None => request,
        }
        .body(Body::empty())
        .unwrap()
    };
    for _ in 0..3 {
        let response = app
            .clone()
            .oneshot(get_with("/instances/42?x=1", Some(&token())))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            body_text(response).await,
            format!("{USER} /instances/{{id}} /instances/42?x=1 42")
        );
    }
    let response = app
        .clone()
        .oneshot(get_with("/instances/42", None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = app
        .clone()
        .oneshot(get_with("/elsewhere", Some(&token())))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
