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
//!
//! With several roles (docs/contract.md §13) the token on either route picks
//! the role ([`super::TokenTable`]): a role's token gets that role's answer, any
//! other value 401.

use std::net::SocketAddr;

use http::header::AUTHORIZATION;
use http::{HeaderMap, Response, StatusCode};

use super::response::{error, json, Body};
use super::AppState;

/// The route whose last segment is the token.
pub(crate) const PATH_TOKEN_PREFIX: &str = "/v2/credentials/";

/// `GET /v1/credentials`: the answer, and the index of the role it is for.
pub async fn get(
    state: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> (Option<usize>, Response<Body>) {
    if state.tokens.is_empty() {
        // One role, no token: nothing to check.
        return (Some(0), answer(state, 0).await);
    }
    let presented = headers.get(AUTHORIZATION);
    match presented.and_then(|v| state.tokens.lookup(v.as_bytes())) {
        Some(role) => (Some(role), answer(state, role).await),
        None if state.several => {
            tracing::warn!(
                %peer,
                header = if presented.is_some() { "wrong" } else { "missing" },
                "refused /v1/credentials: Authorization matches no role's token{}",
                if presented.is_some() { "" } else { MISSING_HINT }
            );
            (
                None,
                error(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    if presented.is_some() {
                        "the Authorization header matches no role's token: a container presents its own role's token (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE or AWS_CONTAINER_AUTHORIZATION_TOKEN)"
                    } else {
                        "no Authorization header: each role's container presents its own token, from AWS_CONTAINER_AUTHORIZATION_TOKEN or AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE; an SDK that sends none can use /v2/credentials/<token>"
                    },
                ),
            )
        }
        None => {
            // The presented value is never logged: it may be a real token for
            // something else. A missing header is what an old SDK sends: say
            // which ones and what gets them in.
            tracing::warn!(
                %peer,
                header = if presented.is_some() { "wrong" } else { "missing" },
                "refused /v1/credentials: Authorization does not match the pod's authorization token{}",
                if presented.is_some() { "" } else { MISSING_HINT }
            );
            let refused = error(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                if presented.is_some() {
                    "the Authorization header does not match the pod's token (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE or AWS_CONTAINER_AUTHORIZATION_TOKEN)"
                } else {
                    "no Authorization header: set AWS_CONTAINER_AUTHORIZATION_TOKEN (SDKs before 2023 read only the value) or AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE; an SDK that sends none (Go v1 before 1.15.41) can use /v2/credentials/<token> instead"
                },
            );
            (None, refused)
        }
    }
}

/// Said in the log when a request came without `Authorization`.
const MISSING_HINT: &str = ": no header was sent. SDKs before 2023 send it only from AWS_CONTAINER_AUTHORIZATION_TOKEN (the value, which `inject` and `dev` set), and Go v1 before 1.15.41 never; those reach /v2/credentials/<token> through AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or FULL_URI";

/// `GET /v2/credentials/<token>`: the answer, and the index of the role it is
/// for.
pub(crate) async fn get_by_path(
    state: &AppState,
    path: &str,
    peer: SocketAddr,
) -> (Option<usize>, Response<Body>) {
    let presented = path.strip_prefix(PATH_TOKEN_PREFIX).unwrap_or_default();
    if state.tokens.is_empty() {
        return (
            None,
            error(
                StatusCode::NOT_FOUND,
                "NotFound",
                "/v2/credentials/<token> is served only when the proxy has an authorization token (IRSA_PROXY_AUTH_TOKEN or --auth-token-file)",
            ),
        );
    }
    match state.tokens.lookup(presented.as_bytes()) {
        Some(role) => (Some(role), answer(state, role).await),
        None => {
            let (logged, said) = if state.several {
                (
                    "refused /v2/credentials/...: the path's token matches no role's token",
                    "the token in the path matches no role's token; AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must be /v2/credentials/<the container's own token>",
                )
            } else {
                (
                    "refused /v2/credentials/...: the path's token does not match the pod's authorization token",
                    "the token in the path does not match the pod's token; AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must be /v2/credentials/<the pod's token>",
                )
            };
            tracing::warn!(%peer, "{logged}");
            (None, error(StatusCode::UNAUTHORIZED, "Unauthorized", said))
        }
    }
}

async fn answer(state: &AppState, role: usize) -> Response<Body> {
    let store = &state.roles[role].store;
    match store.get(state.settings.cold_start_wait).await {
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
