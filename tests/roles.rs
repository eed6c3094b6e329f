//! Several roles in one pod (docs/contract.md §13): the real binary with a
//! roles JSON against the emulator (its STS speaks the real Query/XML protocol
//! and its ledger says which role each key was issued for). Each token gets
//! its own role's credentials and nothing else; a role whose STS calls fail
//! leaves the others served and `/readyz` naming it; IMDS serves only
//! `imds_role`.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{request, ProxyBuilder, ProxyProcess, TokenDir};
use irsa_proxy::policy::Policy;
use irsa_proxy::tools::emulator::{
    self, EmulatorHandle, EmulatorSettings, Issuer, Ledger, ServiceAccountToken,
};
use serde_json::json;

const ISSUER: &str = "https://oidc.eks.us-east-1.amazonaws.com/id/ROLES";
const APP: &str = "arn:aws:iam::111122223333:role/app";
const COPY: &str = "arn:aws:iam::111122223333:role/s3-copy";
/// The copier's hop: its trust policy lets s3-copy in.
const TARGET: &str = "arn:aws:iam::444455556666:role/target";
const LONELY: &str = "arn:aws:iam::111122223333:role/lonely";
/// The broken role's hop: its trust policy lets only someone else in.
const LOCKED: &str = "arn:aws:iam::444455556666:role/locked";
/// The app role's token, given as a value (a Secret key).
const APP_TOKEN: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf";

struct Sts {
    issuer: Issuer,
    handle: EmulatorHandle,
    ledger: Arc<Ledger>,
}

fn trust(principal: &str) -> Policy {
    Policy::parse(
        &json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}]})
        .to_string(),
    )
    .unwrap()
}

impl Sts {
    async fn start() -> Sts {
        let issuer = Issuer::generate_rsa(ISSUER).unwrap();
        let mut settings = EmulatorSettings::new(issuer.verifying_keys().unwrap());
        settings
            .role_trust_policies
            .insert(TARGET.into(), trust(COPY));
        settings.role_trust_policies.insert(
            LOCKED.into(),
            trust("arn:aws:iam::999999999999:role/nobody"),
        );
        let ledger = settings.ledger.clone();
        let handle = emulator::spawn("127.0.0.1:0".parse().unwrap(), settings)
            .await
            .unwrap();
        Sts {
            issuer,
            handle,
            ledger,
        }
    }

    fn token(&self) -> String {
        self.issuer
            .mint_service_account(&ServiceAccountToken {
                namespace: "shop",
                service_account: "cart",
                audience: "sts.amazonaws.com",
                issued_at: SystemTime::now(),
                ttl: Duration::from_secs(3600),
            })
            .unwrap()
    }

    /// The assumed-role ARN the emulator issued this key for.
    fn session_of(&self, access_key_id: &str) -> String {
        self.ledger
            .snapshot()
            .sets
            .iter()
            .find(|s| s.access_key_id == access_key_id)
            .map(|s| s.session.clone())
            .unwrap_or_else(|| panic!("{access_key_id} was not issued by the emulator"))
    }
}

fn write_roles(dir: &Path, roles: serde_json::Value) -> String {
    let file = dir.join("roles.json");
    std::fs::write(&file, roles.to_string()).unwrap();
    file.display().to_string()
}

async fn ecs(p: &ProxyProcess, token: &str) -> common::Reply {
    request(
        p.addr,
        "GET",
        "/v1/credentials",
        &[("Authorization", token)],
    )
    .await
}

fn key(r: &common::Reply) -> String {
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["AccessKeyId"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn each_token_should_get_its_own_role_and_a_failing_role_should_not_stop_the_others() {
    let sts = Sts::start().await;
    let token = TokenDir::new(&sts.token());
    let work = tempfile::tempdir().unwrap();
    let token_dir = work.path().join("roles");
    let roles = write_roles(
        work.path(),
        json!({
            "imds_role": "app",
            "roles": {
                "app": {"role_arn": APP},
                "copier": {"role_arn": COPY, "chain_role_arn": [TARGET]},
                "broken": {"role_arn": LONELY, "chain_role_arn": [LOCKED]},
            }
        }),
    );
    let p = ProxyBuilder::serve(&token.path(), &sts.handle.endpoint_url())
        .args(["--roles-file", &roles])
        .args(["--auth-token-dir", &token_dir.display().to_string()])
        .env("IRSA_PROXY_AUTH_TOKEN_APP", APP_TOKEN)
        .start();

    // The token files: the given value for app, 256 random bits for the others,
    // each in a directory of its own (what a container mounts with subPath).
    let read = |name: &str| std::fs::read_to_string(token_dir.join(name).join("token")).unwrap();
    assert_eq!(read("app"), APP_TOKEN);
    let copier_token = read("copier");
    let broken_token = read("broken");
    for t in [&copier_token, &broken_token] {
        assert_eq!(t.len(), 64);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    assert_ne!(copier_token, broken_token);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(token_dir.join("copier").join("token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
    }

    // app and copier are served, each its own role.
    assert!(
        common::eventually(Duration::from_secs(15), || async {
            ecs(&p, APP_TOKEN).await.status == 200 && ecs(&p, &copier_token).await.status == 200
        })
        .await,
        "logs:\n{}",
        p.logs()
    );
    let app = ecs(&p, APP_TOKEN).await;
    let app_key = key(&app);
    assert_eq!(app.json()["RoleArn"], APP);
    assert!(
        sts.session_of(&app_key)
            .starts_with("arn:aws:sts::111122223333:assumed-role/app/"),
        "{}",
        sts.session_of(&app_key)
    );
    let copier = ecs(&p, &copier_token).await;
    let copier_key = key(&copier);
    assert_eq!(copier.json()["RoleArn"], TARGET);
    assert!(sts
        .session_of(&copier_key)
        .starts_with("arn:aws:sts::444455556666:assumed-role/target/"));
    assert_ne!(app_key, copier_key);

    // The relative URI's path token routes the same way.
    let by_path = |t: &str| format!("/v2/credentials/{t}");
    assert_eq!(
        key(&request(p.addr, "GET", &by_path(APP_TOKEN), &[]).await),
        app_key
    );
    assert_eq!(
        key(&request(p.addr, "GET", &by_path(&copier_token), &[]).await),
        copier_key
    );

    // A token for one role never yields another: a wrong or missing token is
    // 401, the failing role's token is its own 503, never someone else's keys.
    for (what, reply) in [
        ("wrong token", ecs(&p, &"0".repeat(64)).await),
        (
            "app token with a byte more",
            ecs(&p, &format!("{APP_TOKEN}0")).await,
        ),
        (
            "no header",
            request(p.addr, "GET", "/v1/credentials", &[]).await,
        ),
        (
            "wrong path",
            request(p.addr, "GET", &by_path(&"f".repeat(64)), &[]).await,
        ),
    ] {
        assert_eq!(reply.status, 401, "{what}: {}", reply.body);
        assert!(!reply.body.contains("ASIA"), "{what}: {}", reply.body);
    }
    let broken = ecs(&p, &broken_token).await;
    assert_eq!(broken.status, 503, "{}", broken.body);
    assert_eq!(broken.json()["code"], "AccessDenied", "{}", broken.body);
    assert!(!broken.body.contains(&app_key) && !broken.body.contains(&copier_key));

    // /readyz names the role without credentials, and only it.
    let ready = request(p.addr, "GET", "/readyz", &[]).await;
    assert_eq!(ready.status, 503);
    assert!(
        ready
            .body
            .starts_with("not ready: 1 of 3 roles have no credentials; broken: AccessDenied: "),
        "{}",
        ready.body
    );
    assert!(
        !ready.body.contains("app:") && !ready.body.contains("copier:"),
        "{}",
        ready.body
    );

    // IMDS serves imds_role alone.
    let listing =
        common::http::imds_v2(p.addr, "/latest/meta-data/iam/security-credentials/").await;
    assert_eq!((listing.status, listing.body.as_str()), (200, "app"));
    let from_imds =
        common::http::imds_v2(p.addr, "/latest/meta-data/iam/security-credentials/app").await;
    assert_eq!(key(&from_imds), app_key);
    assert_eq!(
        common::http::imds_v2(p.addr, "/latest/meta-data/iam/security-credentials/target")
            .await
            .status,
        404
    );

    // Metrics name the role on STS calls and requests.
    let m = p.metrics().await;
    for needle in [
        "irsa_proxy_sts_requests_total{result=\"success\",error=\"\",role=\"app\"} ",
        "irsa_proxy_sts_requests_total{result=\"success\",error=\"\",role=\"copier\"} ",
        "irsa_proxy_sts_requests_total{result=\"error\",error=\"AccessDenied\",role=\"broken\"} ",
        "irsa_proxy_credentials_expiry_timestamp_seconds{role=\"app\"} ",
        "irsa_proxy_http_requests_total{endpoint=\"ecs\",status=\"200\",role=\"copier\"} ",
        "irsa_proxy_http_requests_total{endpoint=\"ecs\",status=\"401\",role=\"\"} ",
        "irsa_proxy_http_requests_total{endpoint=\"imds\",status=\"200\",role=\"app\"} ",
        "irsa_proxy_ready 0",
    ] {
        assert!(m.contains(needle), "missing {needle} in\n{m}");
    }
    assert!(
        !m.contains("role=\"broken\"} 0")
            && !m.contains("expiry_timestamp_seconds{role=\"broken\"}")
    );

    // The logs name the roles, never a token.
    let logs = p.logs();
    assert!(
        logs.contains("role=broken") || logs.contains("role=\"broken\""),
        "{logs}"
    );
    for secret in [APP_TOKEN, copier_token.as_str(), broken_token.as_str()] {
        assert!(!logs.contains(secret), "a token was logged:\n{logs}");
    }
}

#[tokio::test]
async fn without_an_imds_role_imds_should_serve_no_credentials_and_a_restart_should_keep_the_tokens(
) {
    let sts = Sts::start().await;
    let token = TokenDir::new(&sts.token());
    let work = tempfile::tempdir().unwrap();
    let token_dir = work.path().join("roles");
    // Inline, as inject writes it; no --role-arn: every role names its own.
    let roles = json!({"roles": {"app": {"role_arn": APP}, "copier": {"role_arn": COPY}}});
    let p = ProxyBuilder::serve(&token.path(), &sts.handle.endpoint_url())
        .without("--role-arn")
        .env("IRSA_PROXY_ROLES", &roles.to_string())
        .env(
            "IRSA_PROXY_AUTH_TOKEN_DIR",
            &token_dir.display().to_string(),
        )
        .start();
    assert!(
        common::eventually(Duration::from_secs(15), || async {
            request(p.addr, "GET", "/readyz", &[]).await.status == 200
        })
        .await,
        "logs:\n{}",
        p.logs()
    );
    for path in [
        "/latest/meta-data/iam/security-credentials/",
        "/latest/meta-data/iam/security-credentials/app",
        "/latest/meta-data/iam/info",
    ] {
        let r = common::http::imds_v2(p.addr, path).await;
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        assert!(
            r.body.contains("IMDS serves no role") && r.body.contains("imds_role"),
            "{path}: {}",
            r.body
        );
        assert!(!r.body.contains("ASIA"));
    }
    let copier_token = std::fs::read_to_string(token_dir.join("copier").join("token")).unwrap();
    let copier = ecs(&p, &copier_token).await;
    assert!(sts
        .session_of(&key(&copier))
        .starts_with("arn:aws:sts::111122223333:assumed-role/s3-copy/"));

    // A restarted sidecar keeps the tokens the containers already hold; a
    // token given as a value replaces what the file held.
    drop(p);
    let app_before = std::fs::read_to_string(token_dir.join("app").join("token")).unwrap();
    let p = ProxyBuilder::serve(&token.path(), &sts.handle.endpoint_url())
        .without("--role-arn")
        .env("IRSA_PROXY_ROLES", &roles.to_string())
        .env(
            "IRSA_PROXY_AUTH_TOKEN_DIR",
            &token_dir.display().to_string(),
        )
        .env("IRSA_PROXY_AUTH_TOKEN_APP", APP_TOKEN)
        .start();
    let read = |name: &str| std::fs::read_to_string(token_dir.join(name).join("token")).unwrap();
    assert_eq!(read("copier"), copier_token);
    assert_eq!(read("app"), APP_TOKEN);
    assert_ne!(app_before, APP_TOKEN);
    assert!(
        common::eventually(Duration::from_secs(15), || async {
            ecs(&p, &copier_token).await.status == 200 && ecs(&p, APP_TOKEN).await.status == 200
        })
        .await,
        "logs:\n{}",
        p.logs()
    );
    assert_eq!(ecs(&p, &app_before).await.status, 401, "the replaced token");
}

#[test]
fn a_bad_roles_configuration_should_exit_2_with_one_line_each() {
    let work = tempfile::tempdir().unwrap();
    let roles = write_roles(
        work.path(),
        json!({"imds_role": "nobody", "roles": {
            "app": {"role_arn": "arn:aws:iam::1:role/x"},
            "Copier": {},
            "ok": {"colour": "blue"}
        }}),
    );
    let home = tempfile::tempdir().unwrap();
    let out = common::proxy::clean_command(home.path())
        .args(["serve", "--roles-file", &roles])
        .args([
            "--token-file",
            &work.path().join("token").display().to_string(),
        ])
        .args(["--auth-token-file", "/nonexistent-for-test/auth-token"])
        .env("IRSA_PROXY_AUTH_TOKEN_OK", "SECRET-too-short")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "has roles.app.role_arn \"arn:aws:iam::1:role/x\", which is not a role ARN",
        "has a role named \"Copier\", which is not a role name",
        "has roles.ok.colour, which is not a key of a role",
        "has imds_role \"nobody\", which is not one of its roles",
        "--auth-token-dir (IRSA_PROXY_AUTH_TOKEN_DIR) is required",
        "--auth-token-file: \"/nonexistent-for-test/auth-token\" is for one role",
    ] {
        let lines: Vec<&str> = err.lines().filter(|l| l.contains(needle)).collect();
        assert_eq!(lines.len(), 1, "{needle:?} in\n{err}");
    }
    assert!(!err.contains("SECRET"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// The role the emulated Pod Identity agent gives `shop/cart`.
const PI_ROLE: &str = "arn:aws:iam::444455556666:role/pod-role";
const PI_API: &str = "arn:aws:iam::111122223333:role/pi-api";
const PI_COPY: &str = "arn:aws:iam::111122223333:role/pi-copy";
const PI_TARGET: &str = "arn:aws:iam::777788889999:role/pi-target";

/// A token as the EKS webhook projects it for Pod Identity.
fn pod_identity_token(issuer: &Issuer) -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    issuer
        .mint(&json!({
            "iss": ISSUER,
            "sub": "system:serviceaccount:shop:cart",
            "aud": [irsa_proxy::tools::emulator::pod_identity::AUDIENCE],
            "iat": now - 10, "nbf": now - 10, "exp": now + 3600,
            "kubernetes.io": {
                "namespace": "shop",
                "serviceaccount": {"name": "cart", "uid": "sa-uid"},
                "pod": {"name": "cart-7d9f", "uid": "pod-uid-1234"},
            },
        }))
        .unwrap()
}

/// The order the EKS webhook gives at admission: `inject --container-role`
/// wrote each role's `role_arn`, then Pod Identity was added, so `serve` runs
/// on the agent. Each `role_arn` is assumed from the agent's role as the
/// role's first hop (tags on it, the session policy on the last hop), and
/// each token gets its own role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_pod_identity_each_role_arn_should_be_assumed_from_the_agents_role() {
    use irsa_proxy::arn::RoleArn;
    use irsa_proxy::tools::emulator::pod_identity::Association;
    let trust = |principal: &str| {
        Policy::parse(
            &json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"AWS": principal},
                "Action": ["sts:AssumeRole", "sts:TagSession"]}]})
            .to_string(),
        )
        .unwrap()
    };
    let issuer = Issuer::generate_rsa(ISSUER).unwrap();
    let mut settings = EmulatorSettings::new(issuer.verifying_keys().unwrap());
    settings.pod_identity.associations = vec![Association {
        namespace: "shop".into(),
        service_account: "cart".into(),
        role: RoleArn::parse(PI_ROLE).unwrap(),
    }];
    for (role, principal) in [(PI_API, PI_ROLE), (PI_COPY, PI_ROLE), (PI_TARGET, PI_COPY)] {
        settings
            .role_trust_policies
            .insert(role.into(), trust(principal));
    }
    let ledger = settings.ledger.clone();
    let handle = emulator::spawn("127.0.0.1:0".parse().unwrap(), settings)
        .await
        .unwrap();

    let token = TokenDir::new(&pod_identity_token(&issuer));
    let work = tempfile::tempdir().unwrap();
    let token_dir = work.path().join("roles");
    let roles = write_roles(
        work.path(),
        json!({"roles": {
            "api": {"role_arn": PI_API},
            "copier": {"role_arn": PI_COPY, "chain_role_arn": [PI_TARGET],
                       "session_policy": {"Version": "2012-10-17", "Statement": [
                           {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}},
        }}),
    );
    let p = ProxyBuilder::serve(&token.path(), &handle.endpoint_url())
        .without("--role-arn")
        .without("--token-file")
        .args(["--source", "pod-identity"])
        .args([
            "--pod-identity-uri",
            &format!("http://{}/v1/credentials", handle.addr()),
        ])
        .args([
            "--pod-identity-token-file",
            &token.path().display().to_string(),
        ])
        .args(["--roles-file", &roles])
        .args(["--auth-token-dir", &token_dir.display().to_string()])
        .args(["--session-tags", "team=payments"])
        .start();
    let read = |name: &str| std::fs::read_to_string(token_dir.join(name).join("token")).unwrap();
    let (api_token, copier_token) = (read("api"), read("copier"));
    assert!(
        common::eventually(Duration::from_secs(15), || async {
            ecs(&p, &api_token).await.status == 200 && ecs(&p, &copier_token).await.status == 200
        })
        .await,
        "logs:\n{}",
        p.logs()
    );
    let logs = p.logs();
    for (name, arn) in [("api", PI_API), ("copier", PI_COPY)] {
        let line = format!(
            "role {name}: Pod Identity source; {arn} assumed as a hop from the agent's role"
        );
        assert_eq!(logs.matches(&line).count(), 1, "{line:?} in\n{logs}");
    }

    let record = |key: &str| {
        ledger
            .snapshot()
            .sets
            .into_iter()
            .find(|s| s.access_key_id == key)
            .unwrap_or_else(|| panic!("{key} was not issued by the emulator"))
    };
    // api: one hop from the agent's role, with the tag and the Pod Identity six.
    let api = ecs(&p, &api_token).await;
    assert_eq!(api.json()["RoleArn"], PI_API);
    let api_set = record(&key(&api));
    assert!(
        api_set
            .session
            .starts_with("arn:aws:sts::111122223333:assumed-role/pi-api/"),
        "{}",
        api_set.session
    );
    assert_eq!(api_set.session_tags["team"], "payments");
    assert_eq!(api_set.session_tags["kubernetes-namespace"], "shop");
    assert!(api_set.session_policy.is_none());
    // copier: role_arn, then its chain; the session policy on the last hop.
    let copier = ecs(&p, &copier_token).await;
    assert_eq!(copier.json()["RoleArn"], PI_TARGET);
    let copier_set = record(&key(&copier));
    assert!(copier_set
        .session
        .starts_with("arn:aws:sts::777788889999:assumed-role/pi-target/"));
    assert!(copier_set.session_policy.is_some());
    assert!(
        !copier_set.session_tags.contains_key("team"),
        "not transitive"
    );

    // The credentials work as the role they name.
    use aws_sdk_sts::config::{BehaviorVersion, Credentials, Region};
    let c = api.json();
    let sts = aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(handle.endpoint_url())
            .credentials_provider(Credentials::new(
                c["AccessKeyId"].as_str().unwrap(),
                c["SecretAccessKey"].as_str().unwrap(),
                Some(c["Token"].as_str().unwrap().to_string()),
                None,
                "irsa-proxy",
            ))
            .build(),
    );
    let me = sts.get_caller_identity().send().await.unwrap();
    assert!(
        me.arn()
            .unwrap()
            .starts_with("arn:aws:sts::111122223333:assumed-role/pi-api/"),
        "{me:?}"
    );
}

/// A `role_arn` on Pod Identity is a hop: the chained session's 1h cap holds.
#[test]
fn on_pod_identity_a_role_arn_should_cap_the_duration_at_one_hour() {
    let work = tempfile::tempdir().unwrap();
    let token = work.path().join("token");
    std::fs::write(&token, "x").unwrap();
    let roles = write_roles(work.path(), json!({"roles": {"api": {"role_arn": PI_API}}}));
    let home = tempfile::tempdir().unwrap();
    let out = common::proxy::clean_command(home.path())
        .args(["serve", "--roles-file", &roles, "--source", "pod-identity"])
        .args(["--pod-identity-uri", "http://127.0.0.1:1/v1/credentials"])
        .args(["--pod-identity-token-file", &token.display().to_string()])
        .args([
            "--auth-token-dir",
            &work.path().join("roles").display().to_string(),
        ])
        .args(["--duration", "2h"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("--duration: \"2h\" is longer than the 1h AWS allows a session obtained by role chaining (roles.api.role_arn, assumed from the Pod Identity role)"),
        "{err}"
    );
}
