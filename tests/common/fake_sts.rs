//! A fake STS for the proxy's tests. It speaks the real Query protocol (a
//! form-encoded POST, an XML `AssumeRoleWithWebIdentityResponse`, an XML
//! `ErrorResponse`), records every call and can be scripted per test:
//! credentials that expire in N seconds whatever was asked, failures for the next
//! K calls, a token value it rejects as expired, a delay, stop and restart.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct Failure {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl Failure {
    pub fn new(status: u16, code: &str, message: &str) -> Failure {
        Failure {
            status,
            code: code.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Call {
    pub token: String,
    pub duration: Option<u64>,
    pub session_name: String,
    pub role_arn: String,
    pub at: Instant,
    /// The access key id issued, if the call succeeded.
    pub issued: Option<String>,
}

#[derive(Debug)]
pub struct Script {
    /// Credentials live at most this long, whatever was asked.
    pub credential_ttl: Duration,
    /// Failures for the next calls, in order.
    pub failures: VecDeque<Failure>,
    /// Fail every call with this while set.
    pub fail_all: Option<Failure>,
    /// Token values answered with `ExpiredTokenException`.
    pub expired_tokens: HashSet<String>,
    /// Wait this long before answering.
    pub delay: Duration,
    /// The secret access key and session token to issue (tests put markers here).
    pub secret: String,
    pub session_token: String,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            credential_ttl: Duration::from_secs(3600),
            failures: VecDeque::new(),
            fail_all: None,
            expired_tokens: HashSet::new(),
            delay: Duration::ZERO,
            secret: "fake-secret-access-key".into(),
            session_token: "fake-session-token".into(),
        }
    }
}

#[derive(Default)]
struct Shared {
    script: Mutex<Script>,
    calls: Mutex<Vec<Call>>,
    seq: Mutex<u64>,
}

pub struct FakeSts {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl FakeSts {
    pub async fn start() -> FakeSts {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(accept(listener, shared.clone()));
        FakeSts {
            addr,
            shared,
            task: Mutex::new(Some(task)),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.shared.script.lock().unwrap()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().unwrap().clone()
    }

    pub fn call_count(&self) -> usize {
        self.shared.calls.lock().unwrap().len()
    }

    /// Stops listening and drops every open connection.
    pub fn stop(&self) {
        if let Some(t) = self.task.lock().unwrap().take() {
            t.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&self) {
        self.stop();
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) if tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot rebind {}: {e}", self.addr),
            }
        };
        *self.task.lock().unwrap() = Some(tokio::spawn(accept(listener, self.shared.clone())));
    }
}

impl Drop for FakeSts {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        conns.spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(answer(&shared, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
        while conns.try_join_next().is_some() {}
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn error_response(f: &Failure) -> Response<Full<Bytes>> {
    let kind = if f.status >= 500 {
        "Receiver"
    } else {
        "Sender"
    };
    let body = format!(
        r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error>
    <Type>{kind}</Type>
    <Code>{}</Code>
    <Message>{}</Message>
  </Error>
  <RequestId>00000000-0000-0000-0000-000000000000</RequestId>
</ErrorResponse>
"#,
        xml_escape(&f.code),
        xml_escape(&f.message)
    );
    Response::builder()
        .status(f.status)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

async fn answer(shared: &Shared, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let form: std::collections::HashMap<String, String> =
        form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    if get("Action") != "AssumeRoleWithWebIdentity" {
        return error_response(&Failure::new(400, "InvalidAction", "unsupported action"));
    }
    let delay = shared.script.lock().unwrap().delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut call = Call {
        token: get("WebIdentityToken"),
        duration: get("DurationSeconds").parse().ok(),
        session_name: get("RoleSessionName"),
        role_arn: get("RoleArn"),
        at: Instant::now(),
        issued: None,
    };
    let (failure, ttl, secret, session_token) = {
        let mut s = shared.script.lock().unwrap();
        let failure = if let Some(f) = s.failures.pop_front() {
            Some(f)
        } else if let Some(f) = &s.fail_all {
            Some(f.clone())
        } else if s.expired_tokens.contains(&call.token) {
            Some(Failure::new(
                400,
                "ExpiredTokenException",
                "Token expired: current date/time 1 must be before the expiration date/time 0",
            ))
        } else {
            None
        };
        (
            failure,
            s.credential_ttl,
            s.secret.clone(),
            s.session_token.clone(),
        )
    };
    if let Some(f) = failure {
        shared.calls.lock().unwrap().push(call);
        return error_response(&f);
    }
    let n = {
        let mut seq = shared.seq.lock().unwrap();
        *seq += 1;
        *seq
    };
    let key = format!("ASIAFAKE{n:012}");
    call.issued = Some(key.clone());
    let asked = Duration::from_secs(call.duration.unwrap_or(3600));
    let expiration = SystemTime::now() + ttl.min(asked);
    let role_name = call
        .role_arn
        .rsplit('/')
        .next()
        .unwrap_or("role")
        .to_string();
    let account = call
        .role_arn
        .split(':')
        .nth(4)
        .unwrap_or("123456789012")
        .to_string();
    let body = format!(
        r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:default:app</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::{account}:assumed-role/{role_name}/{session}</Arn>
      <AssumedRoleId>AROAFAKE00000000000:{session}</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>{token}</SessionToken>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <Expiration>{exp}</Expiration>
      <AccessKeyId>{key}</AccessKeyId>
    </Credentials>
    <Provider>oidc.eks.us-east-1.amazonaws.com/id/TEST</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>00000000-0000-0000-0000-00000000{n:04}</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>
"#,
        session = xml_escape(&call.session_name),
        token = xml_escape(&session_token),
        secret = xml_escape(&secret),
        exp = humantime::format_rfc3339_seconds(expiration),
    );
    shared.calls.lock().unwrap().push(call);
    Response::builder()
        .status(200)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}
