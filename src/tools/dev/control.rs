//! Faults on demand while `dev` runs: a small HTTP endpoint on loopback
//! (`IRSA_PROXY_DEV_CONTROL_URL`, a free port) and two signals.
//!
//! | request | signal | effect |
//! | --- | --- | --- |
//! | `POST /rotate-token` | `SIGUSR1` | write a fresh web-identity token now (kubelet's `..data` swap) |
//! | `POST /expire-credentials` | `SIGUSR2` | every credential set still valid expires now: calls with it are refused `ExpiredToken` and counted as `revoked`; the proxy fetches a fresh set at once |
//! | `GET /report` | | the report so far, as JSON |
//!
//! Answers are JSON; other paths 404, other methods 405.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use super::report::{self, Ending};
use super::Bench;
use crate::sidecar::http_server::{Conn, Limits};

const LIMITS: Limits = Limits {
    header_read_timeout: Duration::from_secs(10),
    max_head_bytes: 16 * 1024,
    max_connections: 64,
    drain_timeout: Duration::from_secs(1),
};

/// The running endpoint.
pub(crate) struct Control {
    url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Control {
    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        self.url.clone()
    }

    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Serves the endpoint on a free loopback port.
pub(crate) async fn spawn(bench: Arc<Bench>) -> std::io::Result<Control> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handler = move |req: Request<Incoming>, _conn: Conn| {
        let bench = bench.clone();
        async move { answer(&req, &bench) }
    };
    let task = tokio::spawn(crate::sidecar::http_server::serve(
        "dev-control",
        vec![listener],
        LIMITS,
        handler,
        async move {
            let _ = stopped.await;
        },
    ));
    Ok(Control { url, stop, task })
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn answer(req: &Request<Incoming>, bench: &Bench) -> Response<Full<Bytes>> {
    let allowed = match req.uri().path() {
        "/rotate-token" | "/expire-credentials" => "POST",
        "/report" => "GET",
        _ => {
            return json(
                StatusCode::NOT_FOUND,
                r#"{"code":"NotFound","message":"POST /rotate-token, POST /expire-credentials, GET /report"}"#.into(),
            )
        }
    };
    if req.method().as_str() != allowed {
        let mut resp = json(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(r#"{{"code":"MethodNotAllowed","message":"use {allowed}"}}"#),
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allowed));
        return resp;
    }
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/rotate-token") => {
            bench.rotate();
            json(StatusCode::OK, r#"{"rotating":true}"#.into())
        }
        (&Method::POST, "/expire-credentials") => {
            let n = bench.expire();
            json(StatusCode::OK, format!(r#"{{"expired_sets":{n}}}"#))
        }
        _ => {
            // The report so far: as if the run ended now, passing.
            let r = report::build(&bench.ledger.snapshot(), &bench.facts(), &Ending::TimeUp);
            json(StatusCode::OK, r.json())
        }
    }
}

/// SIGUSR1 rotates the token, SIGUSR2 expires the credentials, until the
/// returned task is aborted. The handlers are installed before this returns
/// (a signal that arrived before them would end the process), so call it
/// before the export lines are printed.
pub(crate) fn on_signals(bench: Arc<Bench>) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut usr1, mut usr2) = match (
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        _ => {
            tracing::warn!("dev: cannot listen for SIGUSR1/SIGUSR2; use the control endpoint");
            return tokio::spawn(async {});
        }
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(()) = usr1.recv() => bench.rotate(),
                Some(()) = usr2.recv() => { bench.expire(); }
                else => return,
            }
        }
    })
}
