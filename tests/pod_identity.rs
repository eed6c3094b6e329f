//! EKS Pod Identity: the emulator playing the node agent over HTTP on
//! 127.0.0.1, and the real binary using it as its credential source.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::{request, ProxyBuilder, ProxyProcess, TokenDir};
use irsa_proxy::arn::RoleArn;
use irsa_proxy::tools::emulator::pod_identity::{Association, AUDIENCE};
use irsa_proxy::tools::emulator::{self, EmulatorHandle, EmulatorSettings, Issuer, Ledger};
use serde_json::json;

const ISSUER: &str = "https://oidc.eks.us-east-1.amazonaws.com/id/PODID";
const ROLE: &str = "arn:aws:iam::444455556666:role/s3-reader";

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A token as the EKS webhook projects it for Pod Identity, with the pod's
/// name and uid in the `kubernetes.io` claim.
fn pod_token(issuer: &Issuer, audience: &str, service_account: &str, exp_in: i64) -> String {
    let now = now_secs();
    issuer
        .mint(&json!({
            "iss": ISSUER,
            "sub": format!("system:serviceaccount:shop:{service_account}"),
            "aud": [audience],
            "iat": now - 10, "nbf": now - 10, "exp": now + exp_in,
            "kubernetes.io": {
                "namespace": "shop",
                "serviceaccount": {"name": service_account, "uid": "sa-uid"},
                "pod": {"name": "cart-7d9f", "uid": "pod-uid-1234"},
            },
        }))
        .unwrap()
}

struct Agent {
    issuer: Issuer,
    handle: EmulatorHandle,
    ledger: Arc<Ledger>,
}

impl Agent {
    async fn start(ttl: Duration, configure: impl FnOnce(&mut EmulatorSettings)) -> Agent {
        let issuer = Issuer::generate_rsa(ISSUER).unwrap();
        let mut settings = EmulatorSettings::new(issuer.verifying_keys().unwrap());
        settings.credential_ttl = ttl;
        settings.pod_identity.associations = vec![Association {
            namespace: "shop".into(),
            service_account: "cart".into(),
            role: RoleArn::parse(ROLE).unwrap(),
        }];
        configure(&mut settings);
        let ledger = settings.ledger.clone();
        let handle = emulator::spawn("127.0.0.1:0".parse().unwrap(), settings)
            .await
            .unwrap();
        Agent {
            issuer,
            handle,
            ledger,
        }
    }

    fn uri(&self) -> String {
        format!("http://{}/v1/credentials", self.handle.addr())
    }

    async fn ask(&self, token: Option<&str>) -> common::Reply {
        let mut h = vec![];
        if let Some(t) = token {
            h.push(("Authorization", t));
        }
        request(self.handle.addr(), "GET", "/v1/credentials", &h).await
    }
}

#[tokio::test]
async fn the_emulated_agent_should_answer_like_the_real_one() {
    let agent = Agent::start(Duration::from_secs(3600), |_| {}).await;
    let good = pod_token(&agent.issuer, AUDIENCE, "cart", 600);

    let ok = agent.ask(Some(&good)).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let body = ok.json();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    // In the real agent's order (`pkg/credentials/model.go`): serde_json
    // keeps the order of what it parses (`preserve_order`).
    assert_eq!(
        keys,
        [
            "AccessKeyId",
            "SecretAccessKey",
            "Token",
            "AccountId",
            "Expiration"
        ]
    );
    assert_eq!(body["AccountId"], "444455556666");
    assert!(body["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    // The session carries the six Pod Identity tags.
    let set = agent.ledger.snapshot().sets.pop().unwrap();
    assert!(
        set.session.starts_with(
            "arn:aws:sts::444455556666:assumed-role/s3-reader/eks-irsa-proxy-dev-cart-7d9f-"
        ),
        "{}",
        set.session
    );
    let tags: Vec<(&str, &str)> = set
        .session_tags
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        tags,
        [
            (
                "eks-cluster-arn",
                "arn:aws:eks:us-east-1:444455556666:cluster/irsa-proxy-dev"
            ),
            ("eks-cluster-name", "irsa-proxy-dev"),
            ("kubernetes-namespace", "shop"),
            ("kubernetes-pod-name", "cart-7d9f"),
            ("kubernetes-pod-uid", "pod-uid-1234"),
            ("kubernetes-service-account", "cart"),
        ]
    );

    // The agent's refusals: status, plain-text body.
    let wrong_audience = pod_token(&agent.issuer, "sts.amazonaws.com", "cart", 600);
    let expired = pod_token(&agent.issuer, AUDIENCE, "cart", -60);
    let unassociated = pod_token(&agent.issuer, AUDIENCE, "payments", 600);
    let forged = {
        let other = Issuer::generate_rsa(ISSUER).unwrap();
        pod_token(&other, AUDIENCE, "cart", 600)
    };
    let cases: [(Option<&str>, u16, &str); 6] = [
        (None, 400, "Service account token cannot be empty"),
        (Some("not-a-jwt"), 400, "Service account token cannot be parsed: "),
        (
            Some(&expired),
            400,
            "Service account token failed basic claim validations: token has invalid claims: token is expired",
        ),
        (Some(&wrong_audience), 400, "(InvalidTokenException): "),
        (Some(&forged), 400, "(InvalidTokenException): "),
        (Some(&unassociated), 404, "(ResourceNotFoundException): "),
    ];
    for (token, status, says) in cases {
        let r = agent.ask(token).await;
        assert_eq!(r.status, status, "{says}: {}", r.body);
        assert!(r.body.contains(says), "{says}: {}", r.body);
        assert!(r.body.ends_with('\n'));
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        if says.starts_with('(') {
            assert!(
                r.body.starts_with('[') && r.body.trim_end().ends_with(", fault: client"),
                "{}",
                r.body
            );
        }
    }
}

/// The issued session is a real one for the emulator's later calls: a
/// `GetCallerIdentity` signed with the agent's credentials is accepted as the
/// Pod Identity session, and the set it used carries the six session tags.
#[tokio::test]
async fn the_agents_session_should_be_seen_with_its_tags_by_later_calls() {
    let agent = Agent::start(Duration::from_secs(3600), |_| {}).await;
    let good = pod_token(&agent.issuer, AUDIENCE, "cart", 600);
    let creds = agent.ask(Some(&good)).await.json();
    let key = creds["AccessKeyId"].as_str().unwrap().to_string();
    let sts = common::sdk::sts_client(
        &agent.handle.endpoint_url(),
        Some(common::sdk::credentials_from_json(&creds)),
    );
    let who = sts.get_caller_identity().send().await.unwrap();
    assert!(who
        .arn()
        .unwrap()
        .starts_with("arn:aws:sts::444455556666:assumed-role/s3-reader/eks-"));
    let snapshot = agent.ledger.snapshot();
    let set = snapshot
        .sets
        .iter()
        .find(|s| s.access_key_id == key)
        .unwrap();
    assert_eq!(
        set.calls.live, 1,
        "the later call was recorded against the set"
    );
    assert_eq!(set.session_tags.len(), 6);
    assert_eq!(set.session_tags["kubernetes-service-account"], "cart");
}

#[tokio::test]
async fn the_emulated_agent_should_throttle_above_its_rate() {
    let agent = Agent::start(Duration::from_secs(3600), |s| {
        s.pod_identity.max_calls_per_second = Some(4)
    })
    .await;
    let good = pod_token(&agent.issuer, AUDIENCE, "cart", 600);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(agent.ask(Some(&good)).await.status);
    }
    // A burst of rate / 2, then 429 "Too Many Requests".
    assert_eq!(statuses, [200, 200, 429, 429, 429, 429]);
    let r = agent.ask(Some(&good)).await;
    assert_eq!(r.body, "Too Many Requests\n");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(agent.ask(Some(&good)).await.status, 200, "refilled");
}

fn serve_pod_identity(agent_uri: &str, token: &TokenDir) -> ProxyProcess {
    // At trace level: no secret may reach even the most verbose log.
    ProxyBuilder::serve(&token.path(), "http://127.0.0.1:1")
        .env("RUST_LOG", "trace")
        .without("--role-arn")
        .without("--token-file")
        .without("--sts-endpoint")
        .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", agent_uri)
        .env(
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            &token.path().display().to_string(),
        )
        .start()
}

/// The binary detects Pod Identity from the variables the EKS webhook sets,
/// says so, serves the agent's credentials on ECS and IMDS with its AccountId,
/// and through an agent outage keeps them until the margin, then answers 503
/// naming the agent.
#[tokio::test]
async fn serve_should_take_credentials_from_the_agent_and_survive_its_outage() {
    let agent = Agent::start(Duration::from_secs(8), |_| {}).await;
    let token = TokenDir::new(&pod_token(&agent.issuer, AUDIENCE, "cart", 3600));
    let proxy = serve_pod_identity(&agent.uri(), &token);

    let first = proxy.ecs(None).await;
    assert_eq!(first.status, 200, "{}\n{}", first.body, proxy.logs());
    let got = Instant::now();
    let body = first.json();
    assert_eq!(body["AccountId"], "444455556666");
    assert!(
        body.get("RoleArn").is_none(),
        "the agent names no role: {body}"
    );
    let key = body["AccessKeyId"].as_str().unwrap().to_string();
    let logs = proxy.logs();
    for secret in [&body["SecretAccessKey"], &body["Token"]] {
        assert!(
            !logs.contains(secret.as_str().unwrap()),
            "a secret reached the logs"
        );
    }
    let raw = std::fs::read_to_string(token.path()).unwrap();
    assert!(
        !logs.contains(raw.trim()),
        "the Pod Identity token reached the logs"
    );
    assert!(
        logs.contains("credential source: EKS Pod Identity agent"),
        "{logs}"
    );
    assert!(
        logs.contains("obtained credentials from the EKS Pod Identity agent"),
        "{logs}"
    );

    // IMDS (v2) names the role after the source and serves the same set.
    let session = request(
        proxy.addr,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
    )
    .await;
    assert_eq!(session.status, 200, "{}", session.body);
    let imds = [("X-aws-ec2-metadata-token", session.body.as_str())];
    let list = request(
        proxy.addr,
        "GET",
        "/latest/meta-data/iam/security-credentials/",
        &imds,
    )
    .await;
    assert_eq!((list.status, list.body.trim()), (200, "eks-pod-identity"));
    let creds = request(
        proxy.addr,
        "GET",
        "/latest/meta-data/iam/security-credentials/eks-pod-identity",
        &imds,
    )
    .await;
    assert_eq!(creds.json()["AccessKeyId"], key.as_str());
    let info = request(proxy.addr, "GET", "/latest/meta-data/iam/info", &imds).await;
    assert_eq!(
        info.json()["InstanceProfileArn"],
        "arn:aws:iam::444455556666:instance-profile/eks-pod-identity"
    );

    // The agent goes away. The 8 s credentials (margin 2 s) stay served,
    // unchanged, until 6 s after issue; then 503 naming the agent.
    agent.handle.stop().await;
    let mut last_ok = got;
    let deadline = got + Duration::from_secs(15);
    let refusal = loop {
        assert!(
            Instant::now() < deadline,
            "never refused:\n{}",
            proxy.logs()
        );
        let r = proxy.ecs(None).await;
        if r.status == 200 {
            assert_eq!(r.json()["AccessKeyId"], key.as_str());
            last_ok = Instant::now();
        } else {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        last_ok.duration_since(got) >= Duration::from_secs(4),
        "served only {:?} of the cached credentials",
        last_ok.duration_since(got)
    );
    assert_eq!(refusal.status, 503, "{}", refusal.body);
    let e = refusal.json();
    assert_eq!(e["code"], "PodIdentityAgentUnreachable", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("EKS Pod Identity agent at http://127.0.0.1:"),
        "{e}"
    );
    let ready = request(proxy.addr, "GET", "/readyz", &[]).await;
    assert_eq!(ready.status, 503);
}

/// No association: 503 at once, with EKS Auth's code and the hint.
#[tokio::test]
async fn serve_should_name_a_missing_association() {
    let agent = Agent::start(Duration::from_secs(3600), |_| {}).await;
    let token = TokenDir::new(&pod_token(&agent.issuer, AUDIENCE, "payments", 3600));
    let proxy = serve_pod_identity(&agent.uri(), &token);
    let r = proxy.ecs(None).await;
    assert_eq!(r.status, 503, "{}", r.body);
    let e = r.json();
    assert_eq!(e["code"], "ResourceNotFoundException", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("create-pod-identity-association"),
        "{e}"
    );
    // The token is never logged.
    let logs = proxy.logs();
    let raw = std::fs::read_to_string(token.path()).unwrap();
    assert!(!logs.contains(raw.trim()), "the token reached the logs");
}

/// EKS makes the six Pod Identity tags transitive (docs.aws.amazon.com/eks/
/// latest/userguide/pod-id-abac.html, "Cross-account tags"): an `AssumeRole`
/// chained on the agent's session carries them on, the next role's trust
/// policy sees them as `aws:PrincipalTag/<key>`, and setting one again is
/// refused. The real binary chains on the agent's credentials for a role
/// whose trust policy names the namespace tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_identity_tags_should_be_transitive_down_a_chain() {
    const TARGET: &str = "arn:aws:iam::777788889999:role/cross-account";
    let trust = |namespace: &str| {
        irsa_proxy::policy::Policy::parse(
            &json!({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow",
                "Principal": {"AWS": ROLE},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
                "Condition": {"StringEquals": {
                    "aws:PrincipalTag/kubernetes-namespace": namespace,
                    "aws:PrincipalTag/eks-cluster-name": "irsa-proxy-dev"}}}]})
            .to_string(),
        )
        .unwrap()
    };
    let agent = Agent::start(Duration::from_secs(3600), |s| {
        s.role_trust_policies.insert(TARGET.into(), trust("shop"));
        s.role_trust_policies.insert(
            "arn:aws:iam::777788889999:role/other-namespace".into(),
            trust("payments"),
        );
    })
    .await;

    // The SDK on the agent's credentials.
    use aws_sdk_sts::types::Tag;
    let good = pod_token(&agent.issuer, AUDIENCE, "cart", 600);
    let creds = agent.ask(Some(&good)).await.json();
    let sts = common::sdk::sts_client(
        &agent.handle.endpoint_url(),
        Some(common::sdk::credentials_from_json(&creds)),
    );
    let hop = sts
        .assume_role()
        .role_arn(TARGET)
        .role_session_name("hop")
        .tags(
            Tag::builder()
                .key("team")
                .value("payments")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let key = hop.credentials().unwrap().access_key_id().to_string();
    let snapshot = agent.ledger.snapshot();
    let set = snapshot
        .sets
        .iter()
        .find(|s| s.access_key_id == key)
        .unwrap();
    assert_eq!(set.session_tags.len(), 7, "{:?}", set.session_tags);
    assert_eq!(set.session_tags["kubernetes-namespace"], "shop");
    assert_eq!(set.session_tags["kubernetes-pod-uid"], "pod-uid-1234");
    assert_eq!(set.session_tags["team"], "payments");

    // A trust policy for another namespace's tag refuses the same session.
    let denied = sts
        .assume_role()
        .role_arn("arn:aws:iam::777788889999:role/other-namespace")
        .role_session_name("hop")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        denied.as_service_error().and_then(|e| e.meta().code()),
        Some("AccessDenied")
    );
    // A transitive tag cannot be set again down the chain.
    let again = sts
        .assume_role()
        .role_arn(TARGET)
        .role_session_name("hop")
        .tags(
            Tag::builder()
                .key("kubernetes-namespace")
                .value("prod")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        again.as_service_error().and_then(|e| e.meta().code()),
        Some("InvalidParameterValue"),
        "{again:?}"
    );

    // The binary: Pod Identity, then the cross-account role.
    let token = TokenDir::new(&pod_token(&agent.issuer, AUDIENCE, "cart", 3600));
    let proxy = ProxyBuilder::serve(&token.path(), &agent.handle.endpoint_url())
        .without("--role-arn")
        .without("--token-file")
        .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &agent.uri())
        .env(
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            &token.path().display().to_string(),
        )
        .env("IRSA_PROXY_CHAIN_ROLE_ARN", TARGET)
        .start();
    let r = proxy.ecs(None).await;
    assert_eq!(r.status, 200, "{}\n{}", r.body, proxy.logs());
    let served = r.json()["AccessKeyId"].as_str().unwrap().to_string();
    let snapshot = agent.ledger.snapshot();
    let set = snapshot
        .sets
        .iter()
        .find(|s| s.access_key_id == served)
        .unwrap();
    assert!(
        set.session
            .starts_with("arn:aws:sts::777788889999:assumed-role/cross-account/"),
        "{}",
        set.session
    );
    assert_eq!(set.session_tags.len(), 6, "{:?}", set.session_tags);
    assert_eq!(set.session_tags["kubernetes-service-account"], "cart");
}
