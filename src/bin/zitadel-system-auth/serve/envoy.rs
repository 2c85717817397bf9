//! Envoy's external authorization over gRPC (`envoy.service.auth.v3.Authorization/
//! Check`), on the main listener. The request's headers decide, as they do for
//! `/auth`; an OK response sets the caller's two headers (and removes any the client
//! sent), a denial carries 401 or 403 with the crate's body and `WWW-Authenticate`.
//! A route may require roles with the context extension `role` (comma-separated).

use axum::{
    Router,
    body::Body,
    http::{HeaderName, HeaderValue, Request, Response, StatusCode},
};
use envoy_types::ext_authz::v3::{
    CheckRequestExt as _, CheckResponseExt as _, DeniedHttpResponseBuilder, OkHttpResponseBuilder,
    pb::{
        Authorization, AuthorizationServer, CheckRequest, CheckResponse, HeaderAppendAction,
        HttpStatusCode,
    },
};
use http_body_util::BodyExt as _;

use super::{OWN_PREFIX, ROLES_HEADER, Sidecar, USER_HEADER};

/// The gRPC route of the Check method's service.
pub fn router(sidecar: Sidecar) -> Router {
    let service = AuthorizationServer::new(Check { sidecar });
    Router::new().route_service("/envoy.service.auth.v3.Authorization/{*method}", service)
}

struct Check {
    sidecar: Sidecar,
}

#[tonic::async_trait]
impl Authorization for Check {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let check = request.into_inner();
        let headers = check.get_client_headers().cloned().unwrap_or_default();
        // The request as the proxy saw it, as far as the decision reads it.
        let mut http = Request::new(());
        for name in ["authorization", "x-zitadel-orgid"] {
            if let Some(value) = headers.get(name)
                && let Ok(value) = HeaderValue::from_str(value)
            {
                http.headers_mut()
                    .insert(HeaderName::from_static(name), value);
            }
        }
        let roles: Vec<String> = check
            .attributes
            .as_ref()
            .and_then(|attributes| attributes.context_extensions.get("role"))
            .map(|roles| {
                roles
                    .split(',')
                    .map(str::trim)
                    .filter(|role| !role.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let response = match self.sidecar.decide(&mut http, &roles) {
            Ok(caller) => {
                let mut ok = OkHttpResponseBuilder::new();
                for name in headers.keys().filter(|name| name.starts_with(OWN_PREFIX)) {
                    ok.remove_header(name.clone());
                }
                let overwrite = Some(HeaderAppendAction::OverwriteIfExistsOrAdd);
                let text = |value: &HeaderValue| value.to_str().unwrap_or_default().to_owned();
                ok.add_header(
                    USER_HEADER.as_str(),
                    text(&caller.user_id),
                    overwrite,
                    false,
                );
                ok.add_header(ROLES_HEADER.as_str(), text(&caller.roles), overwrite, true);
                let mut response = CheckResponse::with_status(tonic::Status::ok("allowed"));
                response.set_http_response(ok);
                response
            }
            Err(refusal) => denied(*refusal).await,
        };
        Ok(tonic::Response::new(response))
    }
}

/// The refusal as Envoy's denied response: 403 for a missing role, else 401, with
/// the crate's headers and body.
async fn denied(refusal: Response<Body>) -> CheckResponse {
    let forbidden = refusal.status() == StatusCode::FORBIDDEN;
    let (parts, body) = refusal.into_parts();
    let body = body
        .collect()
        .await
        .map(|collected| String::from_utf8_lossy(&collected.to_bytes()).into_owned())
        .unwrap_or_default();
    let mut denied = DeniedHttpResponseBuilder::new();
    denied.set_http_status(if forbidden {
        HttpStatusCode::Forbidden
    } else {
        HttpStatusCode::Unauthorized
    });
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            denied.add_header(
                name.as_str(),
                value,
                Some(HeaderAppendAction::OverwriteIfExistsOrAdd),
                false,
            );
        }
    }
    denied.set_body(body);
    let status = if forbidden {
        tonic::Status::permission_denied("the system user lacks a required role")
    } else {
        tonic::Status::unauthenticated("no valid system user token")
    };
    let mut response = CheckResponse::with_status(status);
    response.set_http_response(denied);
    response
}
