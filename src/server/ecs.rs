//! `GET /v1/credentials`: the ECS container-credentials endpoint that SDKs reach
//! through `AWS_CONTAINER_CREDENTIALS_FULL_URI`.

use std::net::SocketAddr;

use http::header::AUTHORIZATION;
use http::{HeaderMap, Response, StatusCode};

use super::response::{error, json, Body};
use super::AppState;

pub async fn get(state: &AppState, headers: &HeaderMap, peer: SocketAddr) -> Response<Body> {
    if let Some(expected) = &state.auth_token {
        let presented = headers.get(AUTHORIZATION);
        if !presented.is_some_and(|v| expected.matches(v.as_bytes())) {
            // The presented value is never logged: it may be a real token for
            // something else.
            tracing::warn!(
                %peer,
                header = if presented.is_some() { "wrong" } else { "missing" },
                "refused /v1/credentials: Authorization does not match --auth-token-file"
            );
            return error(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "the Authorization header is missing or does not match the token in AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            );
        }
    }
    match state.store.get(state.settings.cold_start_wait).await {
        Ok(g) => json(StatusCode::OK, g.ecs_body.clone()),
        Err(u) => error(StatusCode::SERVICE_UNAVAILABLE, &u.code, &u.message),
    }
}
