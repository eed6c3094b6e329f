//! The refresher and its store against a scripted STS, on a paused tokio clock.
//!
//! Every test runs with `start_paused`: time stands still while anything can
//! run and jumps to the next timer when nothing can, and the store's clock
//! ([`RuntimeClock`]) follows it. So each timing of the refresh policy is
//! asserted to the millisecond (tokio's timer resolution), hours of it in
//! milliseconds of real time, and the outcome does not depend on the machine's
//! load. The jitter is random; every assertion holds for all of its values.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use super::*;
use crate::clock::{Clock, RuntimeClock};
use crate::sidecar::cache::{Credentials, Generation, RoleInfo};
use crate::sidecar::source::SourceKind;
use crate::sidecar::sts::{AssumeRequest, AssumeRole, ErrorClass, StsError};

mod pod_identity;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// tokio's timers fire on whole milliseconds, so a deadline can be met up to
/// this much late.
const TIMER_SLACK: Duration = Duration::from_millis(2);

/// Asserts `lo <= d <= hi`, allowing the timer's rounding.
#[track_caller]
fn assert_between(d: Duration, lo: Duration, hi: Duration, what: &str) {
    assert!(
        d + TIMER_SLACK >= lo && d <= hi + TIMER_SLACK,
        "{what}: {d:?} is not within {lo:?}..={hi:?}"
    );
}

fn sts_error(code: &str, class: ErrorClass) -> StsError {
    StsError {
        code: code.into(),
        message: format!("scripted {code}"),
        class,
    }
}

/// What the scripted STS does, and what it saw.
#[derive(Debug, Default)]
struct Script {
    /// Lifetime of the credentials it issues.
    ttl: Duration,
    /// How long each call takes.
    delay: Duration,
    /// Answers for the next calls, in order, before anything else.
    failures: VecDeque<StsError>,
    /// Fail every call with this while set.
    fail_all: Option<StsError>,
    /// When each call started, on the test's clock.
    calls: Vec<SystemTime>,
    /// Calls under way now, and the most there ever were: single flight.
    in_flight: usize,
    max_in_flight: usize,
    /// Credentials issued so far; numbers the access key ids.
    issued: u64,
}

/// An [`AssumeRole`] that answers from a [`Script`] on the test's clock.
#[derive(Clone)]
struct ScriptedSts {
    clock: RuntimeClock,
    script: Arc<Mutex<Script>>,
}

impl AssumeRole for ScriptedSts {
    fn assume(
        &self,
        _request: AssumeRequest,
    ) -> impl Future<Output = Result<Credentials, StsError>> + Send {
        let this = self.clone();
        async move {
            let delay = {
                let mut s = this.script.lock().unwrap();
                s.calls.push(this.clock.now());
                s.in_flight += 1;
                s.max_in_flight = s.max_in_flight.max(s.in_flight);
                s.delay
            };
            // A zero sleep would wait for the timer driver's next turn.
            if !delay.is_zero() {
                this.clock.sleep(delay).await;
            }
            let mut s = this.script.lock().unwrap();
            s.in_flight -= 1;
            if let Some(e) = s.failures.pop_front().or_else(|| s.fail_all.clone()) {
                return Err(e);
            }
            s.issued += 1;
            Ok(Credentials::new(
                format!("ASIASCRIPTED{:08}", s.issued),
                "scripted-secret",
                "scripted-session-token",
                this.clock.now() + s.ttl,
                None,
            ))
        }
    }
}

/// The wall time every test starts at: fixed, so that runs are alike.
const START: Duration = Duration::from_secs(1_700_000_000);

/// A refresher running against a scripted STS, and handles on all it touches.
struct Harness {
    clock: RuntimeClock,
    store: Arc<CredentialStore>,
    metrics: Arc<Metrics>,
    /// What the token watcher would signal on a rotation.
    rotated: Arc<Notify>,
    refresh_now: Arc<Notify>,
    script: Arc<Mutex<Script>>,
    /// Holds the token file the refresher reads.
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a refresher whose STS issues `ttl` credentials, with `--refresh-before`
/// `refresh_before`, after `setup` has adjusted the script. Call it inside a
/// paused runtime; the first attempt runs when the test first awaits.
fn start(ttl: Duration, refresh_before: Duration, setup: impl FnOnce(&mut Script)) -> Harness {
    start_from(SourceKind::WebIdentity, ttl, refresh_before, setup)
}

/// [`start`], with the scripted source playing `kind` (`pod_identity.rs`).
fn start_from(
    kind: SourceKind,
    ttl: Duration,
    refresh_before: Duration,
    setup: impl FnOnce(&mut Script),
) -> Harness {
    let clock = RuntimeClock::starting_at(UNIX_EPOCH + START);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "header.payload.signature").unwrap();
    let mut script = Script {
        ttl,
        ..Script::default()
    };
    setup(&mut script);
    let script = Arc::new(Mutex::new(script));
    let store = Arc::new(CredentialStore::new(
        RoleInfo {
            role_arn: "arn:aws:iam::123456789012:role/app".into(),
            account: "123456789012".into(),
        },
        Arc::new(clock.clone()),
    ));
    let metrics = Arc::new(Metrics::new());
    let rotated = Arc::new(Notify::new());
    let refresh_now = Arc::new(Notify::new());
    let scripted = ScriptedSts {
        clock: clock.clone(),
        script: script.clone(),
    };
    let parts = RefresherParts {
        store: store.clone(),
        settings: RefreshSettings {
            role: "default".into(),
            role_arn: "arn:aws:iam::123456789012:role/app".into(),
            session_name: "test".into(),
            duration: secs(3600),
            refresh_before,
            token_file,
        },
        metrics: metrics.clone(),
        rotated: rotated.clone(),
        refresh_now: refresh_now.clone(),
    };
    let task = match kind {
        SourceKind::WebIdentity => tokio::spawn(parts.with(scripted).run()),
        SourceKind::PodIdentity => {
            tokio::spawn(parts.with(pod_identity::ScriptedAgent(scripted)).run())
        }
    };
    Harness {
        clock,
        store,
        metrics,
        rotated,
        refresh_now,
        script,
        _dir: dir,
        task,
    }
}

impl Harness {
    /// Time since the start.
    fn elapsed(&self) -> Duration {
        self.clock.now().duration_since(UNIX_EPOCH + START).unwrap()
    }

    /// When each STS call started, as time since the start.
    fn calls(&self) -> Vec<Duration> {
        self.script
            .lock()
            .unwrap()
            .calls
            .iter()
            .map(|t| t.duration_since(UNIX_EPOCH + START).unwrap())
            .collect()
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap()
    }

    /// What a request would be served now.
    fn served(&self) -> Option<Arc<Generation>> {
        self.store.current()
    }

    /// Time left on a generation.
    fn left(&self, g: &Generation) -> Duration {
        g.credentials
            .expiration
            .duration_since(self.clock.now())
            .unwrap_or_default()
    }

    /// Lets `d` pass, checking every `step` that credentials are served and
    /// outside their margin. Returns the access key ids in the order served.
    async fn serve_for(&self, d: Duration, step: Duration) -> Vec<String> {
        settle().await;
        let mut keys: Vec<String> = Vec::new();
        let end = self.elapsed() + d;
        while self.elapsed() < end {
            let g = self
                .served()
                .unwrap_or_else(|| panic!("nothing served at {:?}", self.elapsed()));
            assert!(self.left(&g) > g.safety_margin, "served inside the margin");
            assert!(self.store.is_ready());
            if keys.last() != Some(&g.credentials.access_key_id) {
                keys.push(g.credentials.access_key_id.clone());
            }
            tokio::time::sleep(step).await;
        }
        keys
    }
}

/// Lets the refresher run what is due now, without moving time.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// The gaps between consecutive calls.
fn gaps(calls: &[Duration]) -> Vec<Duration> {
    calls.windows(2).map(|w| w[1] - w[0]).collect()
}

// ---------------------------------------------------------------------------
// The pure pieces

#[test]
fn window_should_follow_the_spec() {
    let m = secs;
    // One-hour credentials, default 30 min: 30 min.
    assert_eq!(refresh_window(m(1800), m(3600)), m(1800));
    // Shorter lifetime than asked: half of it.
    assert_eq!(refresh_window(m(1800), m(1200)), m(600));
    // Emulator's 20 s credentials: 10 s, margin 5 s.
    assert_eq!(refresh_window(m(1800), m(20)), m(10));
    // A tiny --refresh-before never lets the credentials reach the margin.
    assert_eq!(refresh_window(m(10), m(3600)), m(120));
}

#[test]
fn backoff_should_double_to_the_cap() {
    let mut b = Backoff::default();
    let d: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
    assert!(d[0] >= ms(500) && d[0] <= secs(1));
    assert!(d[3] >= secs(4) && d[3] <= secs(8));
    assert!(d[9] >= secs(30) && d[9] <= secs(60));
    b.reset();
    assert!(b.next_delay() <= secs(1));
}

// ---------------------------------------------------------------------------
// Refreshing before expiry

/// For each lifetime and `--refresh-before`: every refresh starts between the
/// window and 10 % more before expiry, with window = min(--refresh-before,
/// lifetime / 2) (but at least twice the margin); credentials are served
/// without a gap and never inside the margin; one STS call per generation,
/// never two at once; and the jitter really moves the refreshes.
#[tokio::test(start_paused = true)]
async fn refreshes_should_start_inside_the_jittered_window_for_hours() {
    // (lifetime, --refresh-before, the window they make)
    let cases = [
        (secs(3600), secs(1800), secs(1800)), // STS default, flag default
        (secs(1200), secs(1800), secs(600)),  // lifetime / 2
        (secs(3600), secs(300), secs(300)),   // --refresh-before
        (secs(20), secs(1800), secs(10)),     // the emulator's short credentials
        (secs(3600), secs(10), secs(120)),    // never less than twice the margin
        (secs(900), secs(1800), secs(450)),   // the STS minimum, --duration 15m
    ];
    for (ttl, refresh_before, window) in cases {
        let case = format!("lifetime {ttl:?}, --refresh-before {refresh_before:?}");
        let h = start(ttl, refresh_before, |_| {});
        // 30 generations, checked at a tenth of the window.
        let keys = h.serve_for(ttl * 15, window / 10).await;
        let calls = h.calls();
        let gaps = gaps(&calls);
        assert_eq!(calls[0], Duration::ZERO, "{case}: cold start calls at once");
        assert!(gaps.len() >= 14, "{case}: only {} refreshes", gaps.len());
        for (i, gap) in gaps.iter().enumerate() {
            // A call at `gap` after the last one: its credentials had
            // `ttl - gap` left, which must be within [window, 1.1 window].
            assert_between(
                ttl - *gap,
                window,
                window.mul_f64(1.1),
                &format!("{case}: time left at refresh {i}"),
            );
        }
        let distinct: HashSet<_> = gaps.iter().collect();
        assert!(distinct.len() > 1, "{case}: no jitter: {gaps:?}");
        let s = h.script();
        assert_eq!(s.max_in_flight, 1, "{case}: two calls at once");
        // The last one may have arrived after the last look.
        assert!(
            s.issued - keys.len() as u64 <= 1,
            "{case}: {} generations issued, {} served",
            s.issued,
            keys.len()
        );
        assert_eq!(
            calls.len() as u64,
            s.issued,
            "{case}: one call per generation"
        );
    }
}

/// The old 26 s wall-clock test, as hours: 20 s credentials (margin 5 s) are
/// refreshed 10-11 s before they expire, the new key is served from then on,
/// and nothing is served inside the margin.
#[tokio::test(start_paused = true)]
async fn short_credentials_should_be_replaced_well_before_the_margin() {
    let h = start(secs(20), secs(1800), |_| {});
    settle().await;
    let mut switches = 0;
    let mut last: Option<Arc<Generation>> = None;
    while h.elapsed() < secs(3600) {
        let g = h.served().expect("served at every moment");
        assert_eq!(g.safety_margin, secs(5));
        assert!(h.left(&g) > secs(5), "inside the margin: {:?}", h.left(&g));
        if let Some(old) = last.filter(|o| o.credentials != g.credentials) {
            switches += 1;
            // Seen up to one sampling step after the switch.
            assert!(
                h.left(&old) + ms(250) >= secs(10),
                "switched only {:?} before expiry",
                h.left(&old)
            );
        }
        last = Some(g);
        tokio::time::sleep(ms(250)).await;
    }
    // An hour of 9-10 s generations.
    assert!(switches >= 350, "{switches} generations in an hour");
    // Every call issued a generation, and every generation but one that may
    // have come after the last look was seen being served.
    let calls = h.calls().len();
    assert_eq!(
        calls as u64,
        h.script().issued,
        "one STS call per generation"
    );
    assert!(
        calls == switches + 1 || calls == switches + 2,
        "{calls} STS calls, {} generations seen",
        switches + 1
    );
}

// ---------------------------------------------------------------------------
// Cold start

/// 200 requests at cold start, STS taking 1.5 s: one call, and every request
/// gets its credentials as soon as STS answers.
#[tokio::test(start_paused = true)]
async fn cold_start_herd_should_make_exactly_one_sts_call() {
    let h = start(secs(3600), secs(1800), |s| s.delay = ms(1500));
    let waiters: Vec<_> = (0..200)
        .map(|_| {
            let store = h.store.clone();
            tokio::spawn(async move { store.get(secs(5)).await })
        })
        .collect();
    let mut keys = HashSet::new();
    for w in waiters {
        let g = w.await.unwrap().expect("credentials at cold start");
        keys.insert(g.credentials.access_key_id.clone());
    }
    assert_eq!(h.elapsed(), ms(1500), "answered when STS answered");
    assert_eq!(keys.len(), 1);
    assert_eq!(h.calls().len(), 1, "single flight");
    assert_eq!(h.script().max_in_flight, 1);
}

/// STS never answers: a request waits the cold-start wait (5 s) and gets
/// `CredentialsNotYetAvailable`; not ready meanwhile.
#[tokio::test(start_paused = true)]
async fn cold_start_should_give_up_after_five_seconds_without_sts() {
    let h = start(secs(3600), secs(1800), |s| s.delay = secs(30));
    assert!(!h.store.is_ready());
    let e = h.store.get(secs(5)).await.unwrap_err();
    assert_eq!(h.elapsed(), secs(5));
    assert_eq!(e.code, "CredentialsNotYetAvailable");
    assert!(!e.terminal);
    assert!(!h.store.is_ready());
    assert_eq!(h.calls().len(), 1, "still the first call");
}

/// A terminal failure at cold start answers at once instead of after the wait.
#[tokio::test(start_paused = true)]
async fn a_terminal_failure_should_end_the_cold_start_wait() {
    let h = start(secs(3600), secs(1800), |s| {
        s.fail_all = Some(sts_error("AccessDenied", ErrorClass::Configuration))
    });
    let e = h.store.get(secs(5)).await.unwrap_err();
    assert_eq!(h.elapsed(), Duration::ZERO);
    assert_eq!(e.code, "AccessDenied");
    assert!(e.terminal);
}

// ---------------------------------------------------------------------------
// Failures: static stability, back-off, rotation

/// STS goes down after the first call: the cached credentials are served until
/// their margin (a quarter of 20 s), then the STS error is the answer and the
/// proxy is not ready. STS comes back and the token rotates: a call at once.
#[tokio::test(start_paused = true)]
async fn outage_should_serve_cached_credentials_until_the_margin_then_the_error() {
    let h = start(secs(20), secs(1800), |_| {});
    settle().await;
    let first = h.served().expect("first generation");
    h.script().fail_all = Some(sts_error("InternalFailure", ErrorClass::Retryable));

    // Served, unchanged, until 15 s.
    while h.elapsed() < secs(15) - ms(100) {
        let g = h.served().expect("cached credentials served in the outage");
        assert_eq!(g.credentials, first.credentials);
        assert!(h.store.is_ready());
        tokio::time::sleep(ms(100)).await;
    }
    tokio::time::sleep_until(tokio::time::Instant::now() + (secs(15) - h.elapsed())).await;
    assert_eq!(h.elapsed(), secs(15));
    assert!(h.served().is_none(), "served inside the margin");
    assert!(!h.store.is_ready());
    let e = h.store.get(secs(5)).await.unwrap_err();
    assert_eq!(
        h.elapsed(),
        secs(15),
        "no cold-start wait once something was cached"
    );
    assert_eq!(e.code, "InternalFailure");
    assert!(!e.message.is_empty());
    assert_eq!(h.store.unavailable().code, "InternalFailure");
    // The refresh started 10-11 s before expiry and has been retried since.
    let calls = h.calls();
    assert_between(calls[1], secs(9), secs(10), "the refresh");
    assert!(calls.len() >= 4, "{calls:?}");
    let m = h.metrics.encode(h.store.is_ready());
    assert!(
        m.contains(r#"irsa_proxy_sts_requests_total{result="error",error="InternalFailure",role="default"}"#),
        "{m}"
    );

    // Well into the back-off, STS comes back and the token rotates.
    tokio::time::sleep(secs(120)).await;
    assert!(h.served().is_none());
    h.script().fail_all = None;
    let n = h.calls().len();
    let rotated_at = h.elapsed();
    h.rotated.notify_one();
    settle().await;
    assert_eq!(
        h.calls().len(),
        n + 1,
        "the rotation cut the back-off short"
    );
    assert_eq!(h.calls()[n], rotated_at);
    assert!(h.served().is_some());
    assert!(h.store.last_error().is_none());
}

/// Retryable failures back off 1 s, 2 s, 4 s ... up to 60 s, each drawn from
/// the upper half of its step.
#[tokio::test(start_paused = true)]
async fn backoff_should_double_from_one_second_to_sixty_with_jitter() {
    let h = start(secs(3600), secs(1800), |s| {
        s.fail_all = Some(sts_error("Throttling", ErrorClass::Retryable))
    });
    tokio::time::sleep(secs(30 * 60)).await;
    let gaps = gaps(&h.calls());
    assert!(gaps.len() >= 30, "{gaps:?}");
    for (k, gap) in gaps.iter().enumerate() {
        let step = secs(1 << k.min(6)).min(secs(60));
        assert_between(*gap, step / 2, step, &format!("retry {k}"));
    }
    let capped: HashSet<_> = gaps[7..].iter().collect();
    assert!(capped.len() > 1, "no jitter at the cap: {gaps:?}");
    assert_eq!(h.store.unavailable().code, "Throttling");
}

/// Three throttles, then success: four calls, the back-off of each, the
/// metrics of both, and after the success the normal schedule again.
#[tokio::test(start_paused = true)]
async fn throttling_three_times_then_success_should_recover() {
    let h = start(secs(3600), secs(1800), |s| {
        for _ in 0..3 {
            s.failures
                .push_back(sts_error("Throttling", ErrorClass::Retryable));
        }
    });
    let g = h.store.get(secs(30)).await.expect("recovered");
    let calls = h.calls();
    assert_eq!(calls.len(), 4);
    let gaps = gaps(&calls);
    assert_between(gaps[0], ms(500), secs(1), "first retry");
    assert_between(gaps[1], secs(1), secs(2), "second retry");
    assert_between(gaps[2], secs(2), secs(4), "third retry");
    assert_eq!(h.elapsed(), calls[3]);
    assert_eq!(h.left(&g), secs(3600));
    let m = h.metrics.encode(true);
    assert!(
        m.contains(
            r#"irsa_proxy_sts_requests_total{result="error",error="Throttling",role="default"} 3"#
        ),
        "{m}"
    );
    assert!(
        m.contains(r#"irsa_proxy_sts_requests_total{result="success",error="",role="default"} 1"#),
        "{m}"
    );

    // A success resets the back-off: the next outage starts again at 1 s.
    h.script().fail_all = Some(sts_error("Throttling", ErrorClass::Retryable));
    tokio::time::sleep(secs(1800) + secs(60)).await;
    let calls = h.calls();
    assert_between(calls[4] - calls[3], secs(1620), secs(1800), "the refresh");
    assert_between(calls[5] - calls[4], ms(500), secs(1), "first retry again");
}

/// A rotation calls STS at once when the last call failed, and not while the
/// cached credentials are fresh.
#[tokio::test(start_paused = true)]
async fn a_rotation_should_refresh_at_once_only_when_one_is_due() {
    let h = start(secs(3600), secs(1800), |s| {
        s.fail_all = Some(sts_error("InvalidIdentityToken", ErrorClass::Token))
    });
    // Ten minutes of token errors: the back-off is at its cap.
    tokio::time::sleep(secs(600)).await;
    let e = h.store.last_error().expect("the token error");
    assert_eq!(e.code, "InvalidIdentityToken");
    assert!(e.terminal, "waiting will not fix a token");
    h.script().fail_all = None;
    let n = h.calls().len();
    let rotated_at = h.elapsed();
    h.rotated.notify_one();
    settle().await;
    assert_eq!(h.calls().len(), n + 1);
    assert_eq!(h.calls()[n], rotated_at, "called at the rotation");
    let g = h.served().expect("the new token worked");

    // Fresh credentials: a rotation changes nothing.
    h.rotated.notify_one();
    tokio::time::sleep(secs(600)).await;
    assert_eq!(h.calls().len(), n + 1, "called STS with fresh credentials");
    assert_eq!(h.served().unwrap().credentials, g.credentials);
}

#[tokio::test(start_paused = true)]
async fn a_refresh_asked_for_should_call_sts_at_once_with_fresh_credentials() {
    let h = start(secs(3600), secs(1800), |_| {});
    settle().await;
    let first = h.served().expect("first credentials");
    tokio::time::sleep(secs(60)).await;
    assert_eq!(h.calls().len(), 1);
    let asked_at = h.elapsed();
    h.refresh_now.notify_one();
    settle().await;
    assert_eq!(h.calls().len(), 2, "called STS when asked");
    assert_eq!(h.calls()[1], asked_at);
    assert_ne!(h.served().unwrap().credentials, first.credentials);
}

/// Credentials that STS hands out already inside their margin (a clock far
/// off) are refused and retried, never installed.
#[tokio::test(start_paused = true)]
async fn credentials_expiring_at_once_should_count_as_a_failure() {
    let h = start(Duration::ZERO, secs(1800), |_| {});
    settle().await;
    assert!(h.store.cached().is_none());
    let e = h.store.last_error().expect("a failure");
    assert_eq!(e.code, "CredentialsAlreadyExpired");
    assert!(!e.terminal);
    // The first retry comes 0.5-1 s later, the second at least 1 s after it.
    tokio::time::sleep(ms(1200)).await;
    assert_eq!(h.calls().len(), 2, "retried after the back-off");
}

/// One of several roles (docs/contract.md §13): its own store, refresher and
/// scripted STS, on a clock and metrics shared with the other roles.
fn start_role(
    name: &str,
    clock: &RuntimeClock,
    metrics: &Arc<Metrics>,
    dir: &tempfile::TempDir,
) -> (
    Arc<CredentialStore>,
    Arc<Mutex<Script>>,
    tokio::task::JoinHandle<()>,
) {
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "header.payload.signature").unwrap();
    let script = Arc::new(Mutex::new(Script {
        ttl: secs(3600),
        ..Script::default()
    }));
    let store = Arc::new(CredentialStore::new(
        RoleInfo {
            role_arn: format!("arn:aws:iam::123456789012:role/{name}"),
            account: "123456789012".into(),
        },
        Arc::new(clock.clone()),
    ));
    let parts = RefresherParts {
        store: store.clone(),
        settings: RefreshSettings {
            role: name.into(),
            role_arn: format!("arn:aws:iam::123456789012:role/{name}"),
            session_name: "test".into(),
            duration: secs(3600),
            refresh_before: secs(1800),
            token_file,
        },
        metrics: metrics.clone(),
        rotated: Arc::new(Notify::new()),
        refresh_now: Arc::new(Notify::new()),
    };
    let sts = ScriptedSts {
        clock: clock.clone(),
        script: script.clone(),
    };
    (store, script, tokio::spawn(parts.with(sts).run()))
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Static stability is each role's own: whenever and however long role
    /// `a`'s STS fails, role `b` is served at every minute of four hours, on
    /// its own schedule (as many calls as a healthy role makes, never `a`'s
    /// retries), and the metrics keep the two roles' calls apart; `a` itself
    /// keeps serving what it had until its margin.
    #[test]
    fn one_roles_failures_should_leave_the_other_roles_served(
        outage_from_min in 0u64..180,
        outage_min in 1u64..240,
        class in proptest::prop_oneof![
            proptest::strategy::Just(ErrorClass::Retryable),
            proptest::strategy::Just(ErrorClass::Configuration),
        ],
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async move {
            let clock = RuntimeClock::starting_at(UNIX_EPOCH + START);
            let metrics = Arc::new(Metrics::new());
            let dir = tempfile::tempdir().unwrap();
            let (a, a_script, a_task) = start_role("a", &clock, &metrics, &dir);
            let (b, b_script, b_task) = start_role("b", &clock, &metrics, &dir);
            let start = clock.now();
            let outage = start + secs(outage_from_min * 60)..start + secs((outage_from_min + outage_min) * 60);
            let mut a_serve_until: Option<SystemTime> = None;
            for minute in 0..=240u64 {
                let now = clock.now();
                let failing = outage.contains(&now);
                a_script.lock().unwrap().fail_all =
                    failing.then(|| sts_error(if class == ErrorClass::Retryable { "Throttling" } else { "AccessDenied" }, class));
                // Let every refresher act on this minute before looking.
                tokio::time::sleep(ms(1)).await;
                let now = clock.now();
                if minute > 0 {
                    assert!(b.is_ready(), "b not served at minute {minute} (a failing: {failing})");
                }
                if let Some(until) = a_serve_until {
                    if now + TIMER_SLACK < until {
                        assert!(a.is_ready(), "a dropped what it had at minute {minute}");
                    }
                }
                if let Some(g) = a.current() {
                    a_serve_until = Some(g.serve_until());
                }
                tokio::time::sleep(secs(60) - ms(1)).await;
            }
            // b: one call at start, then one per refresh window of 27-30 min.
            let b_calls = b_script.lock().unwrap().calls.len();
            assert!((8..=10).contains(&b_calls), "b made {b_calls} calls in 4 h");
            let text = metrics.encode(false);
            assert!(!text.contains(r#"result="error",error="Throttling",role="b""#), "{text}");
            assert!(!text.contains(r#"result="error",error="AccessDenied",role="b""#), "{text}");
            let a_errors = {
                let s = a_script.lock().unwrap();
                s.calls.len() - s.issued as usize
            };
            if a_errors > 0 {
                assert!(text.contains(r#"role="a""#), "{text}");
            }
            a_task.abort();
            b_task.abort();
        });
    }
}
