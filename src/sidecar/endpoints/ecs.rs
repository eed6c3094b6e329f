//! The ECS container-credentials endpoint, on two routes that answer the same
//! JSON body:
//!
//! - `GET /v1/credentials` with `Authorization: <token>`: what SDKs reach
//!   through `AWS_CONTAINER_CREDENTIALS_FULL_URI` plus
//!   `AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE)`. Without a configured token the
//!   header is not checked.
//! - `GET /v2/credentials/<token>`: the token is the last path segment, as ECS
//!   puts a per-task id there. It serves the SDKs that send no header on this
//!   route: every SDK through `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, and Go v1
//!   before 1.15.41 through `..._FULL_URI`. An SSRF that cannot read the app's
//!   environment cannot guess the path. It exists only when a token is
//!   configured, and the path is never logged whole ([`loggable_path`]).

use std::net::SocketAddr;

use http::header::AUTHORIZATION;
use http::{HeaderMap, Response, StatusCode};

use super::response::{error, json, Body};
use super::AppState;

/// The route whose last segment is the token.
pub(crate) const PATH_TOKEN_PREFIX: &str = "/v2/credentials/";

/// `GET /v1/credentials`.
pub async fn get(state: &AppState, headers: &HeaderMap, peer: SocketAddr) -> Response<Body> {
    if let Some(expected) = &state.auth_token {
        let presented = headers.get(AUTHORIZATION);
        if !presented.is_some_and(|v| expected.matches(v.as_bytes())) {
            // The presented value is never logged: it may be a real token for
            // something else.
            // A missing header is what an old SDK sends: say which ones and
            // what gets them in.
            tracing::warn!(
                %peer,
                header = if presented.is_some() { "wrong" } else { "missing" },
                "refused /v1/credentials: Authorization does not match the pod's authorization token{}",
                if presented.is_some() { "" } else { MISSING_HINT }
            );
            return error(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                if presented.is_some() {
                    "the Authorization header does not match the pod's token (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE or AWS_CONTAINER_AUTHORIZATION_TOKEN)"
                } else {
                    "no Authorization header: set AWS_CONTAINER_AUTHORIZATION_TOKEN (SDKs before 2023 read only the value) or AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE; an SDK that sends none (Go v1 before 1.15.41) can use /v2/credentials/<token> instead"
                },
            );
        }
    }
    answer(state).await
}

/// Said in the log when a request came without `Authorization`.
const MISSING_HINT: &str = ": no header was sent. SDKs before 2023 send it only from AWS_CONTAINER_AUTHORIZATION_TOKEN (the value, which `inject` and `dev` set), and Go v1 before 1.15.41 never; those reach /v2/credentials/<token> through AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or FULL_URI";

/// `GET /v2/credentials/<token>`.
pub(crate) async fn get_by_path(state: &AppState, path: &str, peer: SocketAddr) -> Response<Body> {
    let presented = path.strip_prefix(PATH_TOKEN_PREFIX).unwrap_or_default();
    let Some(expected) = &state.auth_token else {
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "/v2/credentials/<token> is served only when the proxy has an authorization token (IRSA_PROXY_AUTH_TOKEN or --auth-token-file)",
        );
    };
    if !expected.matches(presented.as_bytes()) {
        tracing::warn!(
            %peer,
            "refused /v2/credentials/...: the path's token does not match the pod's authorization token"
        );
        return error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "the token in the path does not match the pod's token; AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must be /v2/credentials/<the pod's token>",
        );
    }
    answer(state).await
}

async fn answer(state: &AppState) -> Response<Body> {
    match state.store.get(state.settings.cold_start_wait).await {
        Ok(g) => json(StatusCode::OK, g.ecs_body.clone()),
        Err(u) => error(StatusCode::SERVICE_UNAVAILABLE, &u.code, &u.message),
    }
}

/// The path as it may be logged: the token segment of `/v2/credentials/` is
/// replaced by `...`.
pub(crate) fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    if path.starts_with(PATH_TOKEN_PREFIX) {
        format!("{PATH_TOKEN_PREFIX}...").into()
    } else {
        path.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_segment_should_never_be_logged() {
        assert_eq!(
            loggable_path("/v2/credentials/abc123"),
            "/v2/credentials/..."
        );
        assert_eq!(loggable_path("/v1/credentials"), "/v1/credentials");
    }
}
