//! The refresher running a chain against a scripted STS, on a paused tokio
//! clock (as `cache/refresher/tests.rs` does for one role): hours of
//! refreshes, failing hops and rotations in milliseconds, every timing asserted
//! on the store's clock.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use tokio::sync::Notify;

use super::*;
use crate::arn::RoleArn;
use crate::clock::{Clock, RuntimeClock};
use crate::sidecar::cache::{CredentialStore, RefreshSettings, RefresherParts, RoleInfo};
use crate::sidecar::metrics::Metrics;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const START: Duration = Duration::from_secs(1_700_000_000);
const WEB_ROLE: &str = "arn:aws:iam::111122223333:role/irsa";
const TARGET_ROLE: &str = "arn:aws:iam::444455556666:role/target";

/// One call the scripted STS saw.
#[derive(Debug, Clone)]
struct Call {
    /// 1 for the web-identity call, 2.. for the hops.
    hop: usize,
    at: Duration,
    role_arn: String,
    session_name: String,
    /// The web-identity token (hop 1) or the caller's access key id.
    proof: String,
    request: Option<HopRequest>,
    /// The session policy the call carried.
    policy: SessionPolicy,
}

#[derive(Debug, Default)]
struct Script {
    /// Lifetime the web-identity call issues.
    web_ttl: Duration,
    /// Lifetime a hop issues: AWS gives a chained session at most one hour.
    hop_ttl: Duration,
    delay: Duration,
    /// The next answers of a hop, before anything else.
    failures: HashMap<usize, VecDeque<StsError>>,
    /// Fail every call of a hop with this while set.
    fail_all: HashMap<usize, StsError>,
    calls: Vec<Call>,
    in_flight: usize,
    max_in_flight: usize,
    issued: u64,
}

#[derive(Clone)]
struct ScriptedChain {
    clock: RuntimeClock,
    script: Arc<Mutex<Script>>,
}

impl ScriptedChain {
    /// Records the call, waits its delay, and answers from the script.
    async fn call(&self, mut call: Call) -> Result<Credentials, StsError> {
        let delay = {
            let mut s = self.script.lock().unwrap();
            call.at = self.clock.now().duration_since(UNIX_EPOCH + START).unwrap();
            s.calls.push(call.clone());
            s.in_flight += 1;
            s.max_in_flight = s.max_in_flight.max(s.in_flight);
            s.delay
        };
        if !delay.is_zero() {
            self.clock.sleep(delay).await;
        }
        let mut s = self.script.lock().unwrap();
        s.in_flight -= 1;
        let scripted = s.failures.get_mut(&call.hop).and_then(VecDeque::pop_front);
        if let Some(e) = scripted.or_else(|| s.fail_all.get(&call.hop).cloned()) {
            return Err(e);
        }
        // A hop must be signed with the credentials of the hop before it.
        if call.hop > 1 && !call.proof.starts_with(&format!("ASIAHOP{}X", call.hop - 1)) {
            return Err(StsError {
                code: "InvalidClientTokenId".into(),
                message: format!("hop {} signed with {}", call.hop, call.proof),
                class: ErrorClass::Configuration,
            });
        }
        let mut ttl = if call.hop == 1 { s.web_ttl } else { s.hop_ttl };
        if let Some(r) = &call.request {
            ttl = ttl.min(r.duration);
        }
        s.issued += 1;
        let role = RoleArn::parse(&call.role_arn).unwrap();
        Ok(Credentials::new(
            format!("ASIAHOP{}X{:08}", call.hop, s.issued),
            "scripted-secret",
            "scripted-session-token",
            self.clock.now() + ttl,
            Some(format!(
                "arn:aws:sts::{}:assumed-role/{}/{}",
                role.account, role.name, call.session_name
            )),
        ))
    }
}

impl AssumeRole for ScriptedChain {
    fn assume(
        &self,
        request: AssumeRequest,
    ) -> impl Future<Output = Result<Credentials, StsError>> + Send {
        let this = self.clone();
        async move {
            this.call(Call {
                hop: 1,
                at: Duration::ZERO,
                role_arn: request.role_arn,
                session_name: request.session_name,
                proof: request.token.expose().to_string(),
                request: None,
                policy: request.policy,
            })
            .await
        }
    }
}

impl AssumeHop for ScriptedChain {
    fn assume_hop(
        &self,
        caller: &Credentials,
        request: HopRequest,
    ) -> impl Future<Output = Result<Credentials, StsError>> + Send {
        let this = self.clone();
        let proof = caller.access_key_id.clone();
        async move {
            // Which hop this is: one more than the caller's.
            let hop = proof
                .strip_prefix("ASIAHOP")
                .and_then(|s| s.split('X').next())
                .and_then(|n| n.parse::<usize>().ok())
                .map_or(0, |n| n + 1);
            this.call(Call {
                hop,
                at: Duration::ZERO,
                role_arn: request.role_arn.clone(),
                session_name: request.session_name.clone(),
                proof,
                policy: request.policy.clone(),
                request: Some(request),
            })
            .await
        }
    }
}

/// A JWT (unsigned: the scripted STS does not verify) bound to a pod.
fn token(pod: &str) -> String {
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = format!(
        r#"{{"iss":"https://oidc.example/id/X","sub":"system:serviceaccount:payments:api","aud":"sts.amazonaws.com","kubernetes.io":{{"namespace":"payments","pod":{{"name":"{pod}","uid":"uid-{pod}"}},"serviceaccount":{{"name":"api","uid":"sa-uid"}}}}}}"#
    );
    format!(
        "{}.{}.sig",
        b.encode(r#"{"alg":"RS256"}"#),
        b.encode(payload)
    )
}

struct Harness {
    clock: RuntimeClock,
    store: Arc<CredentialStore>,
    metrics: Arc<Metrics>,
    rotated: Arc<Notify>,
    script: Arc<Mutex<Script>>,
    token_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn plan(hops: &[&str]) -> Plan {
    Plan {
        hops: hops
            .iter()
            .map(|a| Hop {
                role: RoleArn::parse(a).unwrap(),
                external_id: None,
            })
            .collect(),
        session_name: Some(session::Template::parse("{namespace}.{pod}").unwrap()),
        tags: tags::pod_identity("prod", None),
        transitive_tag_keys: vec!["kubernetes-namespace".into()],
        source_identity: Some(session::Template::parse("{pod}").unwrap()),
        session_policy: SessionPolicy::default(),
    }
}

/// The scripted STS as the EKS Pod Identity agent: the same script (its
/// calls are hop 1), the token read from the file as the agent source does.
struct ScriptedAgent(ScriptedChain);

impl CredentialSource for ScriptedAgent {
    fn kind(&self) -> SourceKind {
        SourceKind::PodIdentity
    }

    async fn fetch(&self, settings: &RefreshSettings) -> Result<Credentials, SourceError> {
        let token = read_token(&settings.token_file)?;
        let request = AssumeRequest {
            role_arn: WEB_ROLE.into(),
            session_name: "eks-prod-agent".into(),
            duration: settings.duration,
            token,
            policy: Default::default(),
        };
        self.0
            .assume(request)
            .await
            .map_err(|error| SourceError::Refused { error, token: None })
    }
}

fn start(plan: Plan, duration: Duration, setup: impl FnOnce(&mut Script)) -> Harness {
    start_on(SourceKind::WebIdentity, plan, duration, setup)
}

fn start_on(
    source: SourceKind,
    plan: Plan,
    duration: Duration,
    setup: impl FnOnce(&mut Script),
) -> Harness {
    let clock = RuntimeClock::starting_at(UNIX_EPOCH + START);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token("api-7d9f8-x2x4z")).unwrap();
    let mut script = Script {
        web_ttl: secs(3600),
        hop_ttl: secs(3600),
        ..Script::default()
    };
    setup(&mut script);
    let script = Arc::new(Mutex::new(script));
    let served = plan.served_role(&RoleArn::parse(WEB_ROLE).unwrap()).clone();
    let store = Arc::new(CredentialStore::new(
        RoleInfo {
            role_arn: served.arn.clone(),
            account: served.account.clone(),
        },
        Arc::new(clock.clone()),
    ));
    let metrics = Arc::new(Metrics::new());
    let rotated = Arc::new(Notify::new());
    let sts = ScriptedChain {
        clock: clock.clone(),
        script: script.clone(),
    };
    let settings = RefreshSettings {
        role: "default".into(),
        role_arn: WEB_ROLE.into(),
        session_name: "fixed-name-not-used".into(),
        duration,
        refresh_before: secs(1800),
        token_file: token_file.clone(),
    };
    let chain = Chained::new(sts.clone(), Arc::new(plan));
    let parts = RefresherParts {
        store: store.clone(),
        settings,
        metrics: metrics.clone(),
        rotated: rotated.clone(),
        refresh_now: Arc::new(Notify::new()),
    };
    let task = match source {
        SourceKind::WebIdentity => tokio::spawn(parts.with(chain).run()),
        SourceKind::PodIdentity => tokio::spawn(
            parts
                .with(ChainedSource::new(ScriptedAgent(sts), chain))
                .run(),
        ),
    };
    Harness {
        clock,
        store,
        metrics,
        rotated,
        script,
        token_file,
        _dir: dir,
        task,
    }
}

impl Harness {
    fn elapsed(&self) -> Duration {
        self.clock.now().duration_since(UNIX_EPOCH + START).unwrap()
    }

    fn calls(&self) -> Vec<Call> {
        self.script.lock().unwrap().calls.clone()
    }

    /// Waits until `d` has passed, checking every second that whatever is
    /// served is the last role's and outside its margin. Returns the access
    /// key ids served, in order.
    async fn watch(&self, d: Duration) -> Vec<String> {
        settle().await;
        let end = self.elapsed() + d;
        let mut keys: Vec<String> = Vec::new();
        while self.elapsed() < end {
            if let Some(g) = self.store.current() {
                let c = &g.credentials;
                assert!(
                    c.access_key_id.starts_with("ASIAHOP2X"),
                    "served {} at {:?}: not the last role's",
                    c.access_key_id,
                    self.elapsed()
                );
                assert!(c
                    .assumed_role_arn
                    .as_deref()
                    .unwrap()
                    .contains(":assumed-role/target/"));
                assert!(c.expiration - g.safety_margin > self.clock.now());
                if keys.last() != Some(&c.access_key_id) {
                    keys.push(c.access_key_id.clone());
                }
            }
            tokio::time::sleep(secs(1)).await;
        }
        keys
    }

    /// Makes every call of hop 2 fail with `AccessDenied` from now on, checks
    /// that what is served now stays served, unchanged, until its margin and
    /// that nothing is served past it, and returns the store's reason then.
    async fn fail_hop_two_past_the_margin(&self) -> crate::sidecar::cache::Unavailable {
        let first = self.store.current().expect("served before the hop fails");
        self.script
            .lock()
            .unwrap()
            .fail_all
            .insert(2, error("AccessDenied", ErrorClass::Configuration));
        let served_until = first
            .serve_until()
            .duration_since(UNIX_EPOCH + START)
            .unwrap();
        let keys = self.watch(served_until - self.elapsed() - secs(1)).await;
        assert_eq!(keys, std::slice::from_ref(&first.credentials.access_key_id));
        assert!(self.store.is_ready());
        tokio::time::sleep(secs(2)).await;
        assert!(self.store.current().is_none());
        assert!(!self.store.is_ready());
        let u = self.store.unavailable();
        assert_eq!(u.code, "AccessDenied");
        u
    }
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

fn error(code: &str, class: ErrorClass) -> StsError {
    StsError {
        code: code.into(),
        message: format!("scripted {code}"),
        class,
    }
}

/// The chain's second hop issues at most an hour (AWS's cap on a chained
/// session) while the web-identity role would give 12 h: every refresh is
/// scheduled on the hour the last hop returned, the hop asks for no more than
/// --duration, and only the last role's credentials are ever served.
#[tokio::test(start_paused = true)]
async fn a_chain_should_refresh_on_the_last_hops_lifetime_and_serve_only_it() {
    let h = start(plan(&[TARGET_ROLE]), secs(3600), |s| {
        s.web_ttl = secs(12 * 3600);
        s.hop_ttl = secs(3600);
    });
    let keys = h.watch(secs(6 * 3600)).await;
    let calls = h.calls();
    let web: Vec<&Call> = calls.iter().filter(|c| c.hop == 1).collect();
    let hops: Vec<&Call> = calls.iter().filter(|c| c.hop == 2).collect();
    assert_eq!(web.len(), hops.len(), "the whole chain at every refresh");
    assert!(hops.len() >= 10, "only {} refreshes in 6 h", hops.len());
    for w in hops.windows(2) {
        // One-hour credentials, window min(30m, 30m): refreshed 30 to 33 min
        // before they expire, not on the 12 h of the first role.
        let gap = w[1].at - w[0].at;
        assert!(
            gap >= secs(1620) && gap <= secs(1800) + secs(1),
            "gap {gap:?}"
        );
    }
    assert!(keys.len() >= hops.len() - 1);
    let r = hops[0].request.as_ref().unwrap();
    assert_eq!(r.duration, secs(3600));
    assert_eq!(r.role_arn, TARGET_ROLE);
    assert_eq!(r.session_name, "payments.api-7d9f8-x2x4z");
    assert_eq!(r.source_identity.as_deref(), Some("api-7d9f8-x2x4z"));
    assert!(r
        .tags
        .contains(&("kubernetes-pod-uid".into(), "uid-api-7d9f8-x2x4z".into())));
    assert!(r.tags.contains(&("eks-cluster-name".into(), "prod".into())));
    assert_eq!(r.transitive_tag_keys, ["kubernetes-namespace"]);
    assert_eq!(web[0].session_name, "payments.api-7d9f8-x2x4z");
    assert_eq!(web[0].role_arn, WEB_ROLE);
    assert_eq!(h.script.lock().unwrap().max_in_flight, 1);
}

/// The second hop starts failing with AccessDenied after the first success:
/// the last good final credentials are served until their margin, never the
/// first role's (which keep coming), then the 503 names the hop and its STS
/// error, the metric counts AccessDenied, and readiness drops.
#[tokio::test(start_paused = true)]
async fn a_failing_second_hop_should_serve_the_last_final_credentials_until_the_margin() {
    let h = start(plan(&[TARGET_ROLE]), secs(3600), |_| {});
    settle().await;
    // Until the margin: the same final credentials, whatever the retries do;
    // past it: nothing, and the reason names hop 2.
    let u = h.fail_hop_two_past_the_margin().await;
    let retried = h.calls().iter().filter(|c| c.hop == 1).count();
    assert!(
        retried > 2,
        "the chain was retried from the token: {retried}"
    );
    assert!(
        u.message.starts_with(&format!(
            "hop 2 of 2 (AssumeRole {TARGET_ROLE}): scripted AccessDenied"
        )),
        "{}",
        u.message
    );
    assert!(u.message.contains("sts:TagSession"), "{}", u.message);
    let text = h.metrics.encode(false);
    assert!(text.contains(
        r#"irsa_proxy_sts_requests_total{result="error",error="AccessDenied",role="default"}"#
    ));
    // A request at this point gets the 503 at once.
    let e = h.store.get(secs(5)).await.unwrap_err();
    assert_eq!(e.code, "AccessDenied");
}

/// The chain on the EKS Pod Identity source: the agent's role is the first,
/// the hop is signed with its credentials and named from the Pod Identity
/// token's claims, only the last role is served; a failing hop is served
/// until the margin, then named; a failing agent is named as hop 1.
#[tokio::test(start_paused = true)]
async fn a_chain_on_the_pod_identity_source_should_serve_only_the_last_role() {
    let h = start_on(
        SourceKind::PodIdentity,
        plan(&[TARGET_ROLE]),
        secs(3600),
        |_| {},
    );
    let keys = h.watch(secs(2 * 3600)).await;
    assert!(keys.len() >= 3, "refreshed on the hop's hour: {keys:?}");
    let calls = h.calls();
    let hop = calls.iter().find(|c| c.hop == 2).expect("a hop");
    assert!(hop.proof.starts_with("ASIAHOP1X"), "{hop:?}");
    assert_eq!(hop.session_name, "payments.api-7d9f8-x2x4z");
    let request = hop.request.as_ref().unwrap();
    assert_eq!(request.source_identity.as_deref(), Some("api-7d9f8-x2x4z"));
    assert!(request
        .tags
        .contains(&("kubernetes-pod-name".into(), "api-7d9f8-x2x4z".into())));
    // The hop fails: the last final credentials until their margin, then 503.
    let u = h.fail_hop_two_past_the_margin().await;
    assert!(
        u.message
            .starts_with(&format!("hop 2 of 2 (AssumeRole {TARGET_ROLE}): ")),
        "{}",
        u.message
    );
    // The agent fails: named as the first hop.
    {
        let mut s = h.script.lock().unwrap();
        s.fail_all.clear();
        s.fail_all
            .insert(1, error("Throttling", ErrorClass::Retryable));
    }
    tokio::time::sleep(secs(600)).await;
    let u = h.store.unavailable();
    assert_eq!(u.code, "Throttling");
    assert!(
        u.message.starts_with(
            "hop 1 of 2 (the EKS Pod Identity agent for the first role): scripted Throttling"
        ),
        "{}",
        u.message
    );
}

/// Throttling on the first hop, then on the second, then AccessDenied on the
/// second: each is retried with back-off, each is its own `error` label, and
/// the store's reason says which hop and which error, so `/readyz` tells them
/// apart.
#[tokio::test(start_paused = true)]
async fn throttling_on_either_hop_should_be_retried_and_told_apart_from_access_denied() {
    let throttled = || error("Throttling", ErrorClass::Retryable);
    let h = start(plan(&[TARGET_ROLE]), secs(3600), |s| {
        s.failures
            .insert(1, VecDeque::from([throttled(), throttled()]));
        s.failures.insert(2, VecDeque::from([throttled()]));
    });
    settle().await;
    assert!(h.store.current().is_none());
    let u = h.store.unavailable();
    assert_eq!(u.code, "Throttling");
    assert!(
        u.message.starts_with(&format!(
            "hop 1 of 2 (AssumeRoleWithWebIdentity {WEB_ROLE})"
        )),
        "{}",
        u.message
    );
    assert!(!u.terminal, "throttling is waited out");
    // Back-off: 0.5-1 s, then 1-2 s; then hop 1 succeeds and hop 2 throttles.
    tokio::time::sleep(secs(3)).await;
    settle().await;
    let u = h.store.unavailable();
    assert_eq!(u.code, "Throttling");
    assert!(
        u.message
            .starts_with(&format!("hop 2 of 2 (AssumeRole {TARGET_ROLE})")),
        "{}",
        u.message
    );
    // The next try gets through.
    tokio::time::sleep(secs(5)).await;
    assert!(h.store.current().is_some());
    let calls = h.calls();
    let starts: Vec<Duration> = calls.iter().filter(|c| c.hop == 1).map(|c| c.at).collect();
    assert_eq!(starts.len(), 4);
    assert!(
        starts
            .windows(2)
            .all(|w| w[1] - w[0] >= Duration::from_millis(500)),
        "{starts:?}"
    );
    // Then AccessDenied on hop 2: a different label, a different reason.
    h.script
        .lock()
        .unwrap()
        .fail_all
        .insert(2, error("AccessDenied", ErrorClass::Configuration));
    tokio::time::sleep(secs(3600)).await;
    let u = h.store.unavailable();
    assert_eq!((u.code.as_str(), u.terminal), ("AccessDenied", true));
    let text = h.metrics.encode(false);
    assert!(
        text.contains(
            r#"irsa_proxy_sts_requests_total{result="error",error="Throttling",role="default"} 3"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"irsa_proxy_sts_requests_total{result="error",error="AccessDenied",role="default"}"#
        ),
        "{text}"
    );
}

/// The token rotates while the second hop is in flight: the chain under way
/// finishes with the token it read, one chain at a time, the next refresh
/// reads the new token, and the session name stays the one of the first token.
#[tokio::test(start_paused = true)]
async fn a_rotation_during_a_chain_refresh_should_not_start_a_second_chain() {
    let h = start(plan(&[TARGET_ROLE]), secs(3600), |s| s.delay = secs(2));
    // The first chain: hop 1 from 0 s to 2 s, hop 2 from 2 s to 4 s.
    tokio::time::sleep(secs(3)).await;
    let calls = h.calls();
    assert_eq!(calls.last().map(|c| c.hop), Some(2), "hop 2 in flight");
    std::fs::write(&h.token_file, token("api-7d9f8-rotated")).unwrap();
    h.rotated.notify_one();
    tokio::time::sleep(secs(2)).await;
    let first = h.store.current().expect("the chain under way finished");
    assert!(first.credentials.access_key_id.starts_with("ASIAHOP2X"));
    // No new chain for the rotation: the credentials are fresh.
    tokio::time::sleep(secs(60)).await;
    assert_eq!(h.calls().len(), 2);
    // The next refresh (about 30 min on) reads the new token, with the old name.
    h.watch(secs(2000)).await;
    let calls = h.calls();
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert_eq!(calls[0].proof, token("api-7d9f8-x2x4z"));
    assert_eq!(calls[2].proof, token("api-7d9f8-rotated"));
    assert!(calls
        .iter()
        .all(|c| c.session_name == "payments.api-7d9f8-x2x4z"));
    assert_eq!(h.script.lock().unwrap().max_in_flight, 1);
}

/// Three roles: each hop is signed with the one before, only the first hop
/// carries the tags and the SourceIdentity, and the last role is served.
#[tokio::test(start_paused = true)]
async fn a_longer_chain_should_sign_each_hop_with_the_previous_role() {
    const MIDDLE: &str = "arn:aws:iam::222233334444:role/middle";
    let mut p = plan(&[MIDDLE, TARGET_ROLE]);
    p.hops[1].external_id = Some(ExternalId::Value("ext-1234".into()));
    let h = start(p, secs(3600), |_| {});
    settle().await;
    let calls = h.calls();
    assert_eq!(calls.iter().map(|c| c.hop).collect::<Vec<_>>(), [1, 2, 3]);
    let (second, third) = (
        calls[1].request.as_ref().unwrap(),
        calls[2].request.as_ref().unwrap(),
    );
    assert!(!second.tags.is_empty() && second.source_identity.is_some());
    assert!(third.tags.is_empty() && third.source_identity.is_none());
    assert_eq!(
        (second.external_id.as_deref(), third.external_id.as_deref()),
        (None, Some("ext-1234"))
    );
    let g = h.store.current().unwrap();
    assert!(g.credentials.access_key_id.starts_with("ASIAHOP3X"));
    assert_eq!(h.store.role.role_arn, TARGET_ROLE);
}

/// A token without the pod claim a template needs: a 503 that names the claim,
/// and no STS call.
#[tokio::test(start_paused = true)]
async fn a_missing_claim_should_be_named_and_nothing_called() {
    let h = start(plan(&[TARGET_ROLE]), secs(3600), |_| {});
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let bare = format!(
        "{}.{}.sig",
        b.encode("{}"),
        b.encode(r#"{"sub":"system:serviceaccount:payments:api"}"#)
    );
    std::fs::write(&h.token_file, bare).unwrap();
    settle().await;
    assert!(h.calls().is_empty());
    let u = h.store.unavailable();
    assert_eq!(u.code, "MissingClaim");
    assert!(
        u.message.contains("kubernetes.io pod.name"),
        "{}",
        u.message
    );
}

#[test]
fn an_external_id_should_never_be_formatted() {
    let r = HopRequest {
        role_arn: TARGET_ROLE.into(),
        session_name: "s".into(),
        duration: secs(900),
        external_id: Some("SECRET-MARKER-DO-NOT-LOG".into()),
        tags: Vec::new(),
        transitive_tag_keys: Vec::new(),
        source_identity: None,
        policy: SessionPolicy::default(),
    };
    assert!(!format!("{r:?}").contains("SECRET-MARKER"));
    let id = ExternalId::Value("SECRET-MARKER-DO-NOT-LOG".into());
    assert!(!format!("{id:?}").contains("SECRET-MARKER"));
}

fn scoped_down() -> SessionPolicy {
    SessionPolicy::new(
        Some(
            crate::sidecar::sts::policy::pack(
                r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::one-bucket/*"}}"#,
            )
            .unwrap(),
        ),
        vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".into()],
    )
    .unwrap()
}

/// The session policy goes on the role's last call only: the web-identity
/// call without hops, else the last hop (an earlier role narrowed would only
/// make the next hop fail), at every refresh.
#[tokio::test(start_paused = true)]
async fn the_session_policy_should_go_on_the_last_call_only() {
    let policy = scoped_down();
    // No chain: the web-identity call carries it.
    let p = Plan {
        session_policy: policy.clone(),
        ..Plan::default()
    };
    let h = start(p, secs(3600), |_| {});
    settle().await;
    tokio::time::sleep(secs(3 * 3600)).await;
    let calls = h.calls();
    assert!(calls.len() >= 3, "{} calls", calls.len());
    assert!(calls.iter().all(|c| c.hop == 1 && c.policy == policy));
    drop(h);

    // Two hops: only the second hop carries it.
    let mut p = plan(&["arn:aws:iam::222233334444:role/middle", TARGET_ROLE]);
    p.session_policy = policy.clone();
    let h = start(p, secs(3600), |_| {});
    settle().await;
    tokio::time::sleep(secs(3 * 3600)).await;
    let calls = h.calls();
    assert!(calls.iter().filter(|c| c.hop == 3).count() >= 3);
    for c in &calls {
        let expected = if c.hop == 3 {
            policy.clone()
        } else {
            SessionPolicy::default()
        };
        assert_eq!(c.policy, expected, "hop {}", c.hop);
    }
    drop(h);

    // On Pod Identity with a hop: the hop carries it, the agent call nothing.
    let mut p = plan(&[TARGET_ROLE]);
    p.session_policy = policy.clone();
    let h = start_on(SourceKind::PodIdentity, p, secs(3600), |_| {});
    settle().await;
    let calls = h.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls[0].policy.is_empty());
    assert_eq!(calls[1].policy, policy);
}
