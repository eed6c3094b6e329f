//! The IMDS endpoints: v1 and v2 session tokens, the credentials documents, the
//! region documents, and `--imds-v1` / `--imds-require-token` / `--no-imds`.
//! Tests about what a document says (not about tokens) ask IMDSv1 with
//! `--imds-v1 always`.

mod common;

use common::{jwt, request, FakeSts, ProxyBuilder, TokenDir};

const TTL: &str = "X-aws-ec2-metadata-token-ttl-seconds";
const TOKEN: &str = "X-aws-ec2-metadata-token";
const CREDS: &str = "/latest/meta-data/iam/security-credentials/";

async fn setup() -> (FakeSts, TokenDir) {
    (
        FakeSts::start().await,
        TokenDir::new(&jwt("system:serviceaccount:default:app", 3600, "a")),
    )
}

#[tokio::test]
async fn imdsv2_flow_should_serve_the_credentials_document() {
    let (sts, dir) = setup().await;
    let p = ProxyBuilder::serve(&dir.path(), &sts.url()).start();
    let t = request(p.addr, "PUT", "/latest/api/token", &[(TTL, "21600")]).await;
    assert_eq!(t.status, 200);
    assert_eq!(t.header(TTL), Some("21600"), "the TTL must be echoed");
    let token = t.body.clone();
    assert!(token.len() >= 32);

    let list = request(p.addr, "GET", CREDS, &[(TOKEN, &token)]).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body, "test-role", "bare name, no trailing newline");
    assert!(list
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));

    let doc = request(
        p.addr,
        "GET",
        &format!("{CREDS}test-role"),
        &[(TOKEN, &token)],
    )
    .await;
    assert_eq!(doc.status, 200, "{}", doc.body);
    assert_eq!(doc.header("content-type"), Some("application/json"));
    let v = doc.json();
    assert_eq!(v["Code"], "Success");
    assert_eq!(v["Type"], "AWS-HMAC");
    assert!(v["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    assert_eq!(v["SecretAccessKey"], "fake-secret-access-key");
    assert_eq!(v["Token"], "fake-session-token");
    assert_eq!(v["Expiration"].as_str().unwrap().len(), 20);
    assert_eq!(v["LastUpdated"].as_str().unwrap().len(), 20);

    let other = request(
        p.addr,
        "GET",
        &format!("{CREDS}other-role"),
        &[(TOKEN, &token)],
    )
    .await;
    assert_eq!(other.status, 404);

    let info = request(
        p.addr,
        "GET",
        "/latest/meta-data/iam/info",
        &[(TOKEN, &token)],
    )
    .await;
    assert_eq!(info.status, 200);
    let v = info.json();
    assert_eq!(v["Code"], "Success");
    assert_eq!(
        v["InstanceProfileArn"],
        "arn:aws:iam::123456789012:instance-profile/test-role"
    );
    assert!(v["InstanceProfileId"].as_str().unwrap().starts_with("AIPA"));
    assert!(v["LastUpdated"].is_string());
}

/// IMDSv1 is what SSRF exploits, and every SDK that can be pointed at a
/// loopback port also speaks IMDSv2: loopback listeners refuse it by default.
#[tokio::test]
async fn imdsv1_should_be_refused_on_loopback_unless_asked_for() {
    let (sts, dir) = setup().await;
    let p = ProxyBuilder::serve(&dir.path(), &sts.url()).start();
    let r = request(p.addr, "GET", &format!("{CREDS}test-role"), &[]).await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("session token is required"), "{}", r.body);
    assert_eq!(request(p.addr, "HEAD", CREDS, &[]).await.status, 401);

    let p = ProxyBuilder::serve(&dir.path(), &sts.url())
        .args(["--imds-v1", "always"])
        .start();
    let doc = request(p.addr, "GET", &format!("{CREDS}test-role"), &[]).await;
    assert_eq!(doc.status, 200);
    assert_eq!(request(p.addr, "HEAD", CREDS, &[]).await.status, 200);
}

#[tokio::test]
async fn token_requests_should_follow_the_imdsv2_rules() {
    let (sts, dir) = setup().await;
    let p = ProxyBuilder::serve(&dir.path(), &sts.url()).start();
    for bad in ["0", "21601", "-1", "abc", ""] {
        let r = request(p.addr, "PUT", "/latest/api/token", &[(TTL, bad)]).await;
        assert_eq!(r.status, 400, "ttl {bad:?}");
    }
    let r = request(
        p.addr,
        "PUT",
        "/latest/api/token",
        &[("Content-Length", "0")],
    )
    .await;
    assert_eq!(r.status, 400, "missing TTL");
    let r = request(
        p.addr,
        "PUT",
        "/latest/api/token",
        &[(TTL, "60"), ("X-Forwarded-For", "10.0.0.1")],
    )
    .await;
    assert_eq!(r.status, 403);
    let r = request(p.addr, "GET", CREDS, &[(TOKEN, "made-up-token")]).await;
    assert_eq!(r.status, 401);
    // An expired token is refused too.
    let t = request(p.addr, "PUT", "/latest/api/token", &[(TTL, "1")])
        .await
        .body;
    assert_eq!(
        request(p.addr, "GET", CREDS, &[(TOKEN, &t)]).await.status,
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        request(p.addr, "GET", CREDS, &[(TOKEN, &t)]).await.status,
        401
    );
}

#[tokio::test]
async fn require_token_should_refuse_imdsv1() {
    let (sts, dir) = setup().await;
    let p = ProxyBuilder::serve(&dir.path(), &sts.url())
        .arg("--imds-require-token")
        .start();
    assert_eq!(request(p.addr, "GET", CREDS, &[]).await.status, 401);
    let t = request(p.addr, "PUT", "/latest/api/token", &[(TTL, "60")])
        .await
        .body;
    assert_eq!(
        request(p.addr, "GET", CREDS, &[(TOKEN, &t)]).await.status,
        200
    );
}

#[tokio::test]
async fn region_documents_should_follow_the_configured_region() {
    let (sts, dir) = setup().await;
    let p = ProxyBuilder::serve(&dir.path(), &sts.url())
        .set("--region", "eu-west-2")
        .args(["--imds-v1", "always"])
        .start();
    let r = request(p.addr, "GET", "/latest/meta-data/placement/region", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "eu-west-2"));
    let r = request(
        p.addr,
        "GET",
        "/latest/meta-data/placement/availability-zone",
        &[],
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "eu-west-2a"));
    let r = request(
        p.addr,
        "GET",
        "/latest/dynamic/instance-identity/document",
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    for key in [
        "region",
        "accountId",
        "availabilityZone",
        "instanceId",
        "instanceType",
        "imageId",
        "architecture",
        "privateIp",
        "pendingTime",
        "version",
    ] {
        assert!(!v[key].is_null(), "missing {key}");
    }
    assert_eq!(v["region"], "eu-west-2");
    assert_eq!(v["accountId"], "123456789012");
    let listing = request(p.addr, "GET", "/latest/meta-data/", &[]).await;
    assert!(listing.body.contains("iam/") && listing.body.contains("placement/"));
}

#[tokio::test]
async fn region_documents_should_be_404_without_a_region() {
    let (sts, dir) = setup().await;
    let p = ProxyBuilder::serve(&dir.path(), &sts.url())
        .without("--region")
        .args(["--imds-v1", "always"])
        .start();
    for path in [
        "/latest/meta-data/placement/region",
        "/latest/meta-data/placement/availability-zone",
        "/latest/dynamic/instance-identity/document",
    ] {
        assert_eq!(
            request(p.addr, "GET", path, &[]).await.status,
            404,
            "{path}"
        );
    }
}

#[tokio::test]
async fn paths_not_served_should_be_404() {
    let (sts, dir) = setup().await;
    let p = ProxyBuilder::serve(&dir.path(), &sts.url())
        .args(["--imds-v1", "always"])
        .start();
    for path in [
        "/latest/meta-data/iam/security-credentials-extended/",
        "/latest/user-data",
        "/latest/meta-data/iam/security-credentials/test-role/extra",
        "/latest/meta-data/instance-id",
    ] {
        assert_eq!(
            request(p.addr, "GET", path, &[]).await.status,
            404,
            "{path}"
        );
    }
}

#[tokio::test]
async fn no_imds_should_turn_the_paths_off() {
    let (sts, dir) = setup().await;
    let p = ProxyBuilder::serve(&dir.path(), &sts.url())
        .arg("--no-imds")
        .start();
    assert_eq!(request(p.addr, "GET", CREDS, &[]).await.status, 404);
    assert_eq!(
        request(p.addr, "PUT", "/latest/api/token", &[(TTL, "60")])
            .await
            .status,
        404
    );
    assert_eq!(p.ecs(None).await.status, 200);
}
