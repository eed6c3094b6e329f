//! The server skeleton that every HTTP server of irsa-proxy shares: the
//! sidecar's credential endpoints ([`crate::sidecar::endpoints`]), the STS
//! emulator and the admission webhook (both over the TLS handshake of
//! `crate::tools::tls`, with the `tools` feature). Each brings its handler;
//! the plumbing is written once.
//!
//! # Contract of [`serve`]
//!
//! - It takes bound listeners, a handler and a shutdown future from the caller
//!   (mini-redis style), so tests bind `127.0.0.1:0` and drive it in process.
//! - Until `shutdown` completes it accepts on every listener. Each connection is
//!   HTTP/1.1 with keep-alive; it must deliver a complete request head within
//!   [`Limits::header_read_timeout`] of opening or of its previous response (the
//!   slow-client and idle keep-alive limit in one), and at most
//!   [`Limits::max_head_bytes`] of it (hyper answers 431 beyond).
//! - At most [`Limits::max_connections`] are open at once; at the limit the
//!   longest-idle one is closed to admit a new one ([`connections`]).
//! - The handler gets each request with its [`Conn`]: hyper does not put the peer
//!   on the request, so it is captured per connection.
//! - Once `shutdown` completes: the listeners are closed, idle connections are
//!   closed, in-flight requests get [`Limits::drain_timeout`] to finish, and
//!   `serve` returns when they have or when that time is up.
//!
//! [`shutdown_signal`] is the wait for SIGTERM or SIGINT that the subcommands
//! pass as `shutdown`.

pub(crate) mod connections;

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::task::Poll;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};

use connections::Connections;

/// The bounds a server puts on its connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A connection must deliver a complete request head within this long
    /// after it opens or after the previous response.
    pub header_read_timeout: Duration,
    /// Largest request head accepted; hyper answers 431 beyond it.
    pub max_head_bytes: usize,
    /// Open connections at most.
    pub max_connections: usize,
    /// How long in-flight requests may take to finish once draining starts.
    pub drain_timeout: Duration,
}

/// Where a request came from and where it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub peer: SocketAddr,
    /// The address of the listener it arrived on (`None` if the operating
    /// system would not say).
    pub local: Option<SocketAddr>,
}

/// After a failed `accept` (EMFILE and the like), wait this long instead of
/// spinning.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// What turns an accepted TCP stream into the byte stream HTTP is spoken on:
/// nothing for plain HTTP ([`Plain`]), a TLS handshake for HTTPS
/// (`tools::tls::Tls`, with the `tools` feature: the sidecar never names a tool).
pub(crate) trait Handshake: Clone + Send + Sync + 'static {
    type Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static;
    /// At most `within` (the header-read timeout): a peer that opens and
    /// stalls holds a connection slot only this long.
    fn handshake(
        &self,
        stream: TcpStream,
        within: Duration,
    ) -> impl Future<Output = std::io::Result<Self::Io>> + Send;
}

/// Plain HTTP.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Plain;

impl Handshake for Plain {
    type Io = TcpStream;
    async fn handshake(&self, stream: TcpStream, _: Duration) -> std::io::Result<TcpStream> {
        Ok(stream)
    }
}

/// Serves `handler` on every listener until `shutdown` completes, then drains
/// (the module doc has the whole contract). `name` labels the log lines.
pub async fn serve<H, F, B>(
    name: &'static str,
    listeners: Vec<TcpListener>,
    limits: Limits,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, Conn) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_with(name, listeners, Plain, limits, handler, shutdown).await;
}

/// [`serve`], with each connection first through `handshake` (TLS).
pub(crate) async fn serve_with<S, H, F, B>(
    name: &'static str,
    listeners: Vec<TcpListener>,
    handshake: S,
    limits: Limits,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    S: Handshake,
    H: Fn(Request<Incoming>, Conn) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Owned here and never shared: the drain below always runs. Connection
    // tasks hold watchers, so the drain also waits for handshakes in progress.
    // (One accept loop over all listeners, rather than a task per listener
    // holding a clone, is what makes that so.)
    let graceful = GracefulShutdown::new();
    let limit = Connections::new(limits.max_connections);
    let locals: Vec<Option<SocketAddr>> = listeners.iter().map(|l| l.local_addr().ok()).collect();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_head_bytes)
        .keep_alive(true);
    tokio::pin!(shutdown);
    let mut index = 0;
    loop {
        let accepted = tokio::select! {
            (i, a) = accept_any(&listeners, index) => {
                index = i;
                a
            }
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(server = name, error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        // Accepted first, then admitted: at the limit the longest-idle connection
        // makes room, so new clients are answered whatever idle ones hold.
        let slot = tokio::select! {
            slot = limit.admit() => match slot {
                Some(slot) => slot,
                None => break,
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            peer,
            local: locals.get(index).copied().flatten(),
        };
        let handler = handler.clone();
        let entry = slot.entry.clone();
        let epoch = slot.epoch;
        let service = service_fn(move |req| {
            // Busy from the complete head to the response: never evicted then.
            let busy = entry.begin(epoch);
            let response = handler(req, conn);
            async move {
                let response = response.await;
                drop(busy);
                Ok::<_, Infallible>(response)
            }
        });
        let watcher = graceful.watcher();
        let handshake = handshake.clone();
        let http = http.clone();
        tokio::spawn(async move {
            let io = match handshake
                .handshake(stream, limits.header_read_timeout)
                .await
            {
                Ok(io) => io,
                Err(e) => {
                    tracing::debug!(server = name, %peer, error = %e, "handshake failed");
                    return;
                }
            };
            let connection = watcher.watch(http.serve_connection(TokioIo::new(io), service));
            tokio::select! {
                r = connection => if let Err(e) = r {
                    tracing::debug!(server = name, %peer, error = %e, "connection ended with an error");
                },
                () = slot.entry.evicted() => {
                    tracing::debug!(server = name, %peer, "closed this idle connection to admit a new one (connection limit)");
                }
            }
            drop(slot);
        });
    }
    drop(listeners);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            server = name,
            drain_timeout_s = limits.drain_timeout.as_secs_f64(),
            "in-flight requests did not finish within the drain timeout"
        );
    }
}

/// The next connection on any of the listeners, with the listener's index.
/// The listener after the one that answered last is asked first, so a busy
/// listener cannot starve the others.
async fn accept_any(
    listeners: &[TcpListener],
    after: usize,
) -> (usize, std::io::Result<(TcpStream, SocketAddr)>) {
    let n = listeners.len();
    poll_fn(|cx| {
        for i in (1..=n).map(|k| (after + k) % n) {
            if let Some(Poll::Ready(r)) = listeners.get(i).map(|l| l.poll_accept(cx)) {
                return Poll::Ready((i, r));
            }
        }
        Poll::Pending
    })
    .await
}

/// Completes on SIGTERM (Kubernetes stopping the pod) or SIGINT (Ctrl-C).
///
/// The handlers are installed when this is called, not when the future is
/// first polled: call it before announcing readiness, so a signal that arrives
/// in between is not the default action (death by SIGINT, exit code 130).
pub(crate) fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            match (term, int) {
                (Some(mut term), Some(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                }
                (Some(mut term), None) => {
                    let _ = term.recv().await;
                }
                (None, Some(mut int)) => {
                    let _ = int.recv().await;
                }
                (None, None) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use http_body_util::Full;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::{oneshot, Notify};

    use super::*;

    fn limits(drain_timeout: Duration) -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            max_head_bytes: 8 * 1024,
            max_connections: 8,
            drain_timeout,
        }
    }

    /// A server whose one handler announces itself on `entered` and answers
    /// once `release` is notified; stopped through the returned sender.
    async fn slow_server(
        drain_timeout: Duration,
    ) -> (
        SocketAddr,
        Arc<Notify>,
        Arc<Notify>,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let (e, r) = (entered.clone(), release.clone());
        let handler = move |_req: Request<Incoming>, conn: Conn| {
            let (e, r) = (e.clone(), r.clone());
            async move {
                assert_eq!(conn.local, Some(addr));
                e.notify_one();
                r.notified().await;
                Response::new(Full::new(Bytes::from_static(b"done")))
            }
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            "test",
            vec![listener],
            limits(drain_timeout),
            handler,
            async {
                let _ = stopped.await;
            },
        ));
        (addr, entered, release, stop, task)
    }

    async fn send_request(addr: SocketAddr) -> TcpStream {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        c
    }

    /// Regression (issue 10): the drain ran only if `Arc::try_unwrap` of a
    /// shared `GracefulShutdown` succeeded, and was skipped silently if not.
    #[tokio::test]
    async fn shutdown_should_wait_for_the_request_in_flight() {
        let (addr, entered, release, stop, mut task) = slow_server(Duration::from_secs(30)).await;
        let mut client = send_request(addr).await;
        entered.notified().await;
        stop.send(()).unwrap();
        // Whatever the load, serve cannot return while the handler waits.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), &mut task)
                .await
                .is_err(),
            "serve returned with a request in flight"
        );
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "still accepting after shutdown"
        );
        release.notify_one();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("drained")
            .unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("done"), "{answer}");
    }

    #[tokio::test]
    async fn the_drain_should_end_at_its_timeout() {
        let (addr, entered, _release, stop, task) = slow_server(Duration::from_millis(100)).await;
        let _client = send_request(addr).await;
        entered.notified().await;
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("serve returned after the drain timeout")
            .unwrap();
    }
}
