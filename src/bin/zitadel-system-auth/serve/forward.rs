//! Forward-auth: `/auth` (any method) answers a proxy's subrequest with 200 and the
//! caller's headers, or 401/403 with the crate's refusal (body and
//! `WWW-Authenticate`), which Caddy and Traefik hand to the client. `?role=NAME`
//! requires that role for the location asking (repeatable).

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{Response, StatusCode},
    routing::any,
};

use super::{ROLES_HEADER, Sidecar, USER_HEADER, forward_auth_status};

pub fn router(sidecar: Sidecar) -> Router {
    Router::new().route("/auth", any(auth)).with_state(sidecar)
}

async fn auth(State(sidecar): State<Sidecar>, mut request: Request) -> Response<Body> {
    let roles = query_roles(request.uri().query());
    match sidecar.decide(&mut request, &roles) {
        Ok(caller) => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::OK;
            let headers = response.headers_mut();
            headers.insert(USER_HEADER, caller.user_id);
            headers.insert(ROLES_HEADER, caller.roles);
            response
        }
        Err(refusal) => forward_auth_status(*refusal),
    }
}

/// The values of every `role` parameter of the query, percent-decoded.
fn query_roles(query: Option<&str>) -> Vec<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(name, value)| name == "role" && !value.is_empty())
        .map(|(_, value)| value.into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_every_role_parameter() {
        assert_eq!(query_roles(None), Vec::<String>::new());
        assert_eq!(query_roles(Some("role=IAM_OWNER")), ["IAM_OWNER"]);
        assert_eq!(
            query_roles(Some("x=1&role=A&role=B%5FC&role=")),
            ["A", "B_C"]
        );
        assert_eq!(query_roles(Some("role=%zz")), ["%zz"]);
    }
}
