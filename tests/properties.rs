//! Property tests over everything that parses outside input: durations, role
//! ARNs, the JWT claim decoder, trust-policy evaluation, the emulator's XML and
//! its Query protocol, what a (possibly malicious) STS answers, the YAML
//! injector, and the HTTP server fed raw bytes.
//!
//! Each property runs 256 cases by default (fewer for the ones that go over the
//! network); `PROPTEST_CASES=N` raises every one of them to N, which is how the
//! long runs recorded in `docs/reliability.md` were made. The properties are:
//! never panic, and the specific invariant named on each test.

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use irsa_proxy::cli::InjectArgs;
use irsa_proxy::config::RoleArn;
use irsa_proxy::duration::{format_duration, parse_duration};
use irsa_proxy::emulator::xml::{escape, StsFault};
use irsa_proxy::emulator::{self, EmulatorSettings, Issuer};
use irsa_proxy::inject::{inject_documents, Options};
use irsa_proxy::policy::{glob_match, Policy, RequestContext};
use irsa_proxy::sts::{AssumeRequest, AssumeRole, ClientSettings, SdkSts};
use irsa_proxy::token::{Claims, Token};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{jwt, FakeSts, ProxyBuilder, TokenDir};

/// `default` cases unless `PROPTEST_CASES` says otherwise.
fn config(default: u32) -> Config {
    let mut c = Config {
        // Keep failing inputs in the test output, not in files in the tree.
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var("PROPTEST_CASES").is_err() {
        c.cases = default;
    }
    c
}

// ------------------------------------------------------------- durations

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn duration_parsing_should_never_panic(s in ".{0,40}") {
        let _ = parse_duration(&s);
    }

    #[test]
    fn duration_parts_should_add_up(
        h in proptest::option::of(0u64..100_000),
        m in proptest::option::of(0u64..100_000),
        s in proptest::option::of(0u64..10_000_000),
        ms in proptest::option::of(0u64..10_000_000),
    ) {
        let mut text = String::new();
        let mut want = Duration::ZERO;
        if let Some(h) = h { text.push_str(&format!("{h}h")); want += Duration::from_secs(h * 3600); }
        if let Some(m) = m { text.push_str(&format!("{m}m")); want += Duration::from_secs(m * 60); }
        if let Some(s) = s { text.push_str(&format!("{s}s")); want += Duration::from_secs(s); }
        if let Some(ms) = ms { text.push_str(&format!("{ms}ms")); want += Duration::from_millis(ms); }
        if text.is_empty() { text.push('0'); } // plain seconds
        prop_assert_eq!(parse_duration(&text), Ok(want));
    }

    #[test]
    fn durations_should_round_trip_through_their_format(ms in 0u64..1_000_000_000_000) {
        let d = Duration::from_millis(ms);
        prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }
}

// ------------------------------------------------------------- role ARNs

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn role_arn_parsing_should_never_panic(s in ".{0,120}") {
        if let Ok(a) = RoleArn::parse(&s) {
            // Whatever parses has the shape the endpoints rely on.
            prop_assert_eq!(a.account.len(), 12);
            prop_assert!(!a.name.is_empty() && a.name.len() <= 64);
            prop_assert!(s.ends_with(&a.name));
        }
    }

    #[test]
    fn valid_role_arns_should_parse_into_their_parts(
        partition in "aws(-[a-z]{2,6})?",
        account in "[0-9]{12}",
        path in "(/[A-Za-z0-9_]{1,10}){0,3}",
        name in "[A-Za-z0-9+=,.@_-]{1,64}",
    ) {
        let arn = format!("arn:{partition}:iam::{account}:role{path}/{name}");
        let a = RoleArn::parse(&arn).unwrap();
        prop_assert_eq!(a.partition, partition);
        prop_assert_eq!(a.account, account);
        prop_assert_eq!(a.name, name);
        prop_assert_eq!(a.arn, arn);
    }

    #[test]
    fn mangled_role_arns_should_be_refused(
        account in "[0-9]{1,11}|[0-9]{13,14}|[0-9]{11}[a-z]",
        name in "[A-Za-z0-9]{1,10}",
    ) {
        let arn = format!("arn:aws:iam::{account}:role/{name}");
        prop_assert!(RoleArn::parse(&arn).is_err());
    }
}

// ------------------------------------------------------- JWT claim decoder

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn claim_decoding_should_never_panic(s in ".{0,200}") {
        let _ = Claims::decode(&s);
    }

    #[test]
    fn claim_decoding_of_any_payload_bytes_should_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Claims::decode(&format!("e30.{}.c2ln", b64(&payload)));
    }

    #[test]
    fn claims_should_round_trip(
        iss in proptest::option::of(".{0,40}"),
        sub in proptest::option::of(".{0,40}"),
        aud in proptest::collection::vec(".{0,20}", 0..4),
        exp in proptest::option::of(any::<i64>()),
        one_aud in any::<bool>(),
    ) {
        let mut claims = serde_json::Map::new();
        if let Some(i) = &iss { claims.insert("iss".into(), json!(i)); }
        if let Some(s) = &sub { claims.insert("sub".into(), json!(s)); }
        if one_aud && aud.len() == 1 {
            claims.insert("aud".into(), json!(aud[0]));
        } else if !aud.is_empty() {
            claims.insert("aud".into(), json!(aud));
        }
        if let Some(e) = exp { claims.insert("exp".into(), json!(e)); }
        let token = format!("{}.{}.sig", b64(br#"{"alg":"RS256"}"#), b64(Value::Object(claims).to_string().as_bytes()));
        let c = Claims::decode(&token).unwrap();
        prop_assert_eq!(c.iss, iss);
        prop_assert_eq!(c.sub, sub);
        prop_assert_eq!(c.exp, exp);
        prop_assert_eq!(c.aud.values(), aud.iter().map(String::as_str).collect::<Vec<_>>());
        // The summary never panics, whatever the claims hold.
        let _ = Claims::decode(&token).unwrap().summary();
    }

    #[test]
    fn claim_errors_should_never_quote_the_payload(secret in "[A-Za-z]{8,20}") {
        let payload = format!("SECRET{secret}");
        let token = format!("e30.{}.sig", b64(payload.as_bytes()));
        let e = Claims::decode(&token).unwrap_err().to_string();
        prop_assert!(!e.contains(&secret), "{}", e);
        let debug = format!("{:?}", Token::new(token.clone()));
        prop_assert!(!debug.contains(&secret));
    }
}

// ------------------------------------------------------------ trust policies

const ISSUER: &str = "oidc.eks.us-east-1.amazonaws.com/id/ABC";

fn condition_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("system:serviceaccount:demo:app".to_string()),
        Just("system:serviceaccount:demo:*".to_string()),
        Just("sts.amazonaws.com".to_string()),
        Just("*".to_string()),
        "[a-z:*?]{0,12}",
    ]
}

fn statement() -> impl Strategy<Value = Value> {
    let effect = prop_oneof![Just("Allow"), Just("Deny")];
    let action = prop_oneof![
        Just(json!("sts:AssumeRoleWithWebIdentity")),
        Just(json!("STS:assumerolewithwebidentity")),
        Just(json!("sts:*")),
        Just(json!("*")),
        Just(json!(["sts:AssumeRole", "sts:TagSession"])),
        Just(json!("sts:AssumeRoleWith?ebIdentity")),
    ];
    let principal = prop_oneof![
        Just(json!("*")),
        Just(json!({"Federated": format!("arn:aws:iam::111122223333:oidc-provider/{ISSUER}")})),
        Just(
            json!({"Federated": [format!("arn:aws:iam::111122223333:oidc-provider/{ISSUER}"), "arn:aws:iam::1:oidc-provider/x"]})
        ),
        Just(json!({"Federated": "arn:aws:iam::111122223333:oidc-provider/other.example"})),
        Just(json!({"AWS": "arn:aws:iam::111122223333:root"})),
    ];
    let operator = prop_oneof![
        Just("StringEquals"),
        Just("StringLike"),
        Just("StringNotEquals"),
        Just("StringNotLike"),
        Just("StringEqualsIgnoreCase"),
        Just("ForAnyValue:StringLike"),
        Just("ForAllValues:StringEquals"),
        Just("StringLikeIfExists"),
        Just("ForAnyValue:StringNotEqualsIfExists"),
    ];
    let key = prop_oneof![
        Just(format!("{ISSUER}:sub")),
        Just(format!("{ISSUER}:aud")),
        Just(format!("{}:AMR", ISSUER.to_uppercase())),
        Just("other.example:sub".to_string()),
    ];
    let conditions = proptest::collection::vec(
        (
            operator,
            key,
            proptest::collection::vec(condition_value(), 1..3),
        ),
        0..3,
    );
    (effect, action, principal, conditions).prop_map(|(effect, action, principal, conds)| {
        let mut condition = serde_json::Map::new();
        for (op, key, values) in conds {
            let entry = condition.entry(op.to_string()).or_insert_with(|| json!({}));
            entry[key] = json!(values);
        }
        let mut s = json!({"Effect": effect, "Action": action, "Principal": principal});
        if !condition.is_empty() {
            s["Condition"] = Value::Object(condition);
        }
        s
    })
}

fn context() -> impl Strategy<Value = RequestContext> {
    (
        prop_oneof![
            Just(format!("https://{ISSUER}")),
            Just(ISSUER.to_string()),
            Just("https://other.example".to_string())
        ],
        proptest::option::of(condition_value()),
        proptest::collection::vec(condition_value(), 0..3),
        proptest::collection::vec("[a-z]{0,6}", 0..2),
    )
        .prop_map(|(iss, sub, aud, amr)| {
            let aud: Vec<&str> = aud.iter().map(String::as_str).collect();
            let amr: Vec<&str> = amr.iter().map(String::as_str).collect();
            RequestContext::web_identity(&iss, Some("111122223333"), sub.as_deref(), &aud, &amr)
        })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn policy_parsing_should_never_panic(s in ".{0,200}") {
        let _ = Policy::parse(&s);
    }

    #[test]
    fn policy_parsing_of_any_json_shape_should_never_panic(
        statements in proptest::collection::vec(
            prop_oneof![
                statement(),
                Just(json!(null)),
                Just(json!({"Effect": 1})),
                Just(json!({"Effect": "Allow", "Condition": {"StringEquals": "x"}})),
                Just(json!({"Effect": "Allow", "Condition": {"Bogus": {"a": "b"}}})),
                Just(json!({"Effect": "Allow", "Principal": {"Federated": 7}})),
                ".{0,10}".prop_map(|s| json!(s)),
            ],
            0..4,
        ),
        as_object in any::<bool>(),
    ) {
        let doc = if as_object && statements.len() == 1 {
            json!({"Version": "2012-10-17", "Statement": statements[0]})
        } else {
            json!({"Version": "2012-10-17", "Statement": statements})
        };
        if let Ok(p) = Policy::parse(&doc.to_string()) {
            let ctx = RequestContext::web_identity(ISSUER, None, Some("a"), &["b"], &[]);
            let _ = p.evaluate(&ctx).summary();
        }
    }

    #[test]
    fn an_unconditional_deny_should_always_win(
        statements in proptest::collection::vec(statement(), 0..4),
        ctx in context(),
    ) {
        let mut all = statements.clone();
        all.push(json!({"Effect": "Deny", "Principal": "*", "Action": "*"}));
        let p = Policy::parse(&json!({"Statement": all}).to_string()).unwrap();
        prop_assert!(!p.evaluate(&ctx).allowed());
    }

    #[test]
    fn without_an_allow_nothing_should_be_allowed(
        statements in proptest::collection::vec(statement(), 1..4),
        ctx in context(),
    ) {
        let denies: Vec<Value> = statements
            .into_iter()
            .map(|mut s| { s["Effect"] = json!("Deny"); s })
            .collect();
        let p = Policy::parse(&json!({"Statement": denies}).to_string()).unwrap();
        prop_assert!(!p.evaluate(&ctx).allowed());
    }

    #[test]
    fn evaluation_should_not_depend_on_statement_order(
        statements in proptest::collection::vec(statement(), 1..4),
        ctx in context(),
    ) {
        let forward = Policy::parse(&json!({"Statement": statements}).to_string()).unwrap();
        let mut reversed = statements.clone();
        reversed.reverse();
        let backward = Policy::parse(&json!({"Statement": reversed}).to_string()).unwrap();
        prop_assert_eq!(forward.evaluate(&ctx).allowed(), backward.evaluate(&ctx).allowed());
    }

    #[test]
    fn globs_should_match_themselves_and_star_everything(s in "[^*?]{0,30}", t in ".{0,30}") {
        prop_assert!(glob_match(&s, &s));
        prop_assert!(glob_match("*", &t));
        let (pattern, value) = (format!("{s}*"), format!("{s}{t}"));
        prop_assert!(glob_match(&pattern, &value));
    }
}

// ------------------------------------------------------- the emulator's XML

/// The inverse of `escape` for the five entities it writes.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c as u32 >= 0x20 && c != '\u{fffe}' && c != '\u{ffff}')
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn escaped_text_should_carry_no_markup_and_round_trip(s in any::<String>()) {
        let e = escape(&s);
        prop_assert!(!e.contains(['<', '>', '"', '\'']));
        for (i, _) in e.match_indices('&') {
            let rest = &e[i..];
            prop_assert!(["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].iter().any(|ent| rest.starts_with(ent)), "{}", e);
        }
        prop_assert!(e.chars().all(xml_char));
        let kept: String = s.chars().filter(|c| xml_char(*c)).collect();
        prop_assert_eq!(unescape(&e), kept);
    }

    #[test]
    fn error_documents_should_hold_exactly_one_message(message in any::<String>(), rid in ".{0,20}") {
        let xml = StsFault::validation(message).to_xml(&rid);
        prop_assert_eq!(xml.matches("<Message>").count(), 1);
        prop_assert_eq!(xml.matches("</Message>").count(), 1);
        // The twelve tags of the template, and not one more from the message.
        prop_assert_eq!(xml.matches('<').count(), 12, "{}", xml);
    }
}

/// Sends one raw HTTP/1.1 request and reads the answer until the server closes.
async fn raw_exchange(addr: SocketAddr, bytes: &[u8], limit: Duration) -> Vec<u8> {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return Vec::new();
    };
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    out
}

/// A request with form parameters as the SDKs send them.
fn form_post(addr: SocketAddr, params: &[(String, String)]) -> Vec<u8> {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn emulator_params() -> impl Strategy<Value = Vec<(String, String)>> {
    let key = prop_oneof![
        Just("Action".to_string()),
        Just("Version".to_string()),
        Just("RoleArn".to_string()),
        Just("RoleSessionName".to_string()),
        Just("WebIdentityToken".to_string()),
        Just("DurationSeconds".to_string()),
        Just("Policy".to_string()),
        ".{0,8}",
    ];
    let value = prop_oneof![
        Just("AssumeRoleWithWebIdentity".to_string()),
        Just("GetCallerIdentity".to_string()),
        Just("2011-06-15".to_string()),
        Just("arn:aws:iam::111122223333:role/demo".to_string()),
        Just("-1".to_string()),
        Just("99999999999999999999".to_string()),
        Just("a.b.c".to_string()),
        ".{0,40}",
    ];
    proptest::collection::vec((key, value), 0..8)
}

#[test]
fn the_emulator_should_answer_any_form_with_one_xml_document() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let issuer = Issuer::generate_rsa("https://oidc.example/id/PROP").unwrap();
    let sts = rt
        .block_on(emulator::spawn(
            "127.0.0.1:0".parse().unwrap(),
            EmulatorSettings::new(issuer.verifying_keys().unwrap()),
        ))
        .unwrap();
    let addr = sts.addr();
    let mut runner = TestRunner::new(config(128));
    runner
        .run(&emulator_params(), |params| {
            let answer = rt.block_on(raw_exchange(
                addr,
                &form_post(addr, &params),
                Duration::from_secs(5),
            ));
            let text = String::from_utf8_lossy(&answer);
            let status: u16 = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            prop_assert!([200, 400, 403, 404, 405, 413].contains(&status), "{}", text);
            let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
            prop_assert!(body.starts_with('<'), "{}", text);
            prop_assert_eq!(body.matches("<RequestId>").count(), 1, "{}", text);
            Ok(())
        })
        .unwrap();
}

#[test]
fn any_session_name_sts_accepts_should_round_trip_through_the_xml() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let issuer = Issuer::generate_rsa("https://oidc.example/id/PROP").unwrap();
    let sts = rt
        .block_on(emulator::spawn(
            "127.0.0.1:0".parse().unwrap(),
            EmulatorSettings::new(issuer.verifying_keys().unwrap()),
        ))
        .unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = issuer
        .mint(
            &json!({"iss": "https://oidc.example/id/PROP", "sub": "system:serviceaccount:a:b",
            "aud": "sts.amazonaws.com", "iat": now, "exp": now + 3600}),
        )
        .unwrap();
    let client = rt.block_on(SdkSts::new(&ClientSettings {
        region: Some("us-east-1".into()),
        endpoint: Some(sts.endpoint_url()),
    }));
    // STS's `[\w+=,.@-]` is ASCII: `\w` as in Java, not Unicode.
    let names = prop_oneof!["[A-Za-z0-9_+=,.@-]{2,64}", ".{0,70}"];
    let mut runner = TestRunner::new(config(64));
    runner
        .run(&names, |name| {
            let r = rt.block_on(client.assume(AssumeRequest {
                role_arn: "arn:aws:iam::111122223333:role/demo".into(),
                session_name: name.clone(),
                duration: Duration::from_secs(900),
                token: Token::new(token.clone()),
            }));
            let valid = (2..=64).contains(&name.chars().count())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
            match r {
                Ok(c) => {
                    prop_assert!(valid, "accepted {:?}", name);
                    let arn = c.assumed_role_arn.unwrap();
                    prop_assert!(arn.ends_with(&format!("/{name}")), "{} vs {:?}", arn, name);
                }
                Err(e) => {
                    prop_assert!(!valid || e.code != "ValidationError", "{:?}: {}", name, e);
                    prop_assert_eq!(e.code.as_str(), "ValidationError");
                }
            }
            Ok(())
        })
        .unwrap();
}

// ------------------------------------------------- what a hostile STS says

/// A one-route HTTP server that answers every request with the current script.
async fn scripted_sts(script: Arc<Mutex<(u16, String)>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let script = script.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let (status, body) = script.lock().unwrap().clone();
                    async move {
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .status(status)
                                .header("content-type", "text/xml")
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

const VALID_RESPONSE: &str = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <AssumedRoleUser><Arn>ARN</Arn><AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser>
    <Credentials>
      <SessionToken>TOKEN</SessionToken>
      <SecretAccessKey>SECRET</SecretAccessKey>
      <Expiration>EXPIRATION</Expiration>
      <AccessKeyId>KEY</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"#;

fn sts_answer() -> impl Strategy<Value = (u16, String)> {
    let field = prop_oneof![
        ".{0,30}",
        "[A-Z0-9]{16,20}",
        Just("&amp;&lt;]]>".to_string())
    ];
    let expiration = prop_oneof![
        Just("2099-01-01T00:00:00Z".to_string()),
        Just("1970-01-01T00:00:00Z".to_string()),
        Just("not a date".to_string()),
        Just("2099-13-45T99:99:99Z".to_string()),
        Just("99999999999".to_string()),
        "[0-9T:Z.+-]{0,30}",
    ];
    let valid_ish = (
        field.clone(),
        field.clone(),
        field.clone(),
        field,
        expiration,
    )
        .prop_map(|(arn, token, secret, key, exp)| {
            (
                200,
                VALID_RESPONSE
                    .replace("ARN", &escape(&arn))
                    .replace("TOKEN", &escape(&token))
                    .replace("SECRET", &escape(&secret))
                    .replace("KEY", &escape(&key))
                    .replace("EXPIRATION", &escape(&exp)),
            )
        });
    let truncated =
        (0usize..VALID_RESPONSE.len()).prop_map(|n| (200, VALID_RESPONSE[..n].to_string()));
    let error = (
        prop_oneof![Just(400u16), Just(403), Just(404), Just(429)],
        ".{0,20}",
        ".{0,600}",
    )
        .prop_map(|(status, code, message)| {
            (
                status,
                format!(
                    "<ErrorResponse><Error><Type>Sender</Type><Code>{}</Code><Message>{}</Message></Error></ErrorResponse>",
                    escape(&code),
                    escape(&message)
                ),
            )
        });
    let garbage = (
        prop_oneof![Just(200u16), Just(400), Just(403)],
        proptest::collection::vec(any::<u8>(), 0..400),
    )
        .prop_map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned()));
    let nested = (1usize..2000).prop_map(|depth| (200, "<a>".repeat(depth)));
    prop_oneof![valid_ish, truncated, error, garbage, nested]
}

#[test]
fn any_sts_answer_should_give_credentials_or_one_bounded_error_line() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let script = Arc::new(Mutex::new((200u16, String::new())));
    let addr = rt.block_on(scripted_sts(script.clone()));
    let client = rt.block_on(SdkSts::new(&ClientSettings {
        region: Some("us-east-1".into()),
        endpoint: Some(format!("http://{addr}")),
    }));
    let mut runner = TestRunner::new(config(128));
    runner
        .run(&sts_answer(), |answer| {
            *script.lock().unwrap() = answer.clone();
            let r = rt.block_on(client.assume(AssumeRequest {
                role_arn: "arn:aws:iam::111122223333:role/demo".into(),
                session_name: "prop".into(),
                duration: Duration::from_secs(900),
                token: Token::new("a.b.c"),
            }));
            match r {
                Ok(c) => {
                    prop_assert_eq!(answer.0, 200);
                    // Whatever was accepted has a real expiration time.
                    prop_assert!(c.expiration > SystemTime::UNIX_EPOCH - Duration::from_secs(1));
                }
                Err(e) => {
                    prop_assert!(!e.message.contains(['\n', '\r']), "{:?}", e.message);
                    prop_assert!(e.message.chars().count() <= 1024, "{}", e.message.len());
                    prop_assert!(!e.code.is_empty());
                }
            }
            Ok(())
        })
        .unwrap();
}

// --------------------------------------------------------------- inject

fn inject_options() -> Options {
    Options::from_args(&InjectArgs {
        file: "-".into(),
        image: "ghcr.io/irsa-proxy/irsa-proxy:0.1.0".into(),
        role_arn: Some("arn:aws:iam::111122223333:role/app".into()),
        classic_sidecar: false,
        port: 9911,
        container: Vec::new(),
        token_audience: "sts.amazonaws.com".into(),
        token_expiration: 86400,
        strip_web_identity: false,
        auth_secret: None,
        link_local: false,
    })
    .unwrap()
}

fn container() -> impl Strategy<Value = Value> {
    (
        "[a-z][a-z0-9-]{0,12}",
        "[a-z0-9./:-]{1,30}",
        // Printable values: serde_norway's emitter writes some control
        // characters raw, which no YAML parser (ours included) then accepts.
        proptest::collection::btree_map("[A-Z_][A-Z0-9_]{0,10}", "[ -~àé日本]{0,20}", 0..4),
        any::<bool>(),
    )
        .prop_map(|(name, image, env, aws_env)| {
            let mut env: Vec<Value> = env
                .into_iter()
                .map(|(k, v)| json!({"name": k, "value": v}))
                .collect();
            if aws_env {
                env.push(json!({"name": "AWS_ROLE_ARN", "value": "arn:aws:iam::1:role/x"}));
            }
            json!({"name": name, "image": image, "env": env})
        })
}

fn workload() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("Deployment"),
            Just("StatefulSet"),
            Just("DaemonSet"),
            Just("Job"),
            Just("CronJob"),
            Just("Pod"),
            Just("ConfigMap")
        ],
        proptest::collection::vec(container(), 1..4),
        proptest::collection::vec(container(), 0..2),
        any::<bool>(),
    )
        .prop_map(|(kind, containers, inits, webhook_volume)| {
            // Unique names, as Kubernetes requires.
            let mut seen = std::collections::BTreeSet::new();
            let containers: Vec<Value> = containers
                .into_iter()
                .chain(inits.iter().cloned())
                .filter(|c| seen.insert(c["name"].as_str().unwrap().to_string()))
                .collect();
            let n = containers.len() - inits.len().min(containers.len() - 1);
            let (apps, inits) = containers.split_at(n.max(1));
            let mut pod = json!({"containers": apps});
            if !inits.is_empty() {
                pod["initContainers"] = json!(inits);
            }
            if webhook_volume {
                pod["volumes"] = json!([{"name": "aws-iam-token", "projected": {"sources": [
                    {"serviceAccountToken": {"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}}]}}]);
            }
            let template = json!({"metadata": {"labels": {"app": "x"}}, "spec": pod});
            let doc = match kind {
                "Pod" => json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": pod}),
                "ConfigMap" => json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}),
                "CronJob" => json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
                    "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}}),
                "Job" => json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": {"template": template}}),
                k => json!({"apiVersion": "apps/v1", "kind": k, "metadata": {"name": "w"},
                    "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template}}),
            };
            serde_norway::to_string(&doc).unwrap()
        })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn inject_should_never_panic_on_any_text(s in ".{0,300}") {
        let _ = inject_documents(&s, &inject_options());
    }

    #[test]
    fn inject_should_be_idempotent(docs in proptest::collection::vec(workload(), 1..3)) {
        let input = docs.join("---\n");
        let opts = inject_options();
        let once = inject_documents(&input, &opts).unwrap();
        let twice = inject_documents(&once, &opts).unwrap();
        prop_assert_eq!(&once, &twice);
        // Every pod-bearing document got the sidecar, once.
        let pods = docs.iter().filter(|d| !d.contains("ConfigMap")).count();
        prop_assert_eq!(once.matches("name: irsa-proxy\n").count(), pods, "{}", once);
    }
}

// ------------------------------------------------ raw bytes to the server

fn path_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/v1/credentials".to_string()),
        Just("/latest/api/token".to_string()),
        Just("/latest/meta-data/iam/security-credentials/test-role".to_string()),
        Just("/latest/meta-data/iam/security-credentials/".to_string()),
        Just("/latest/meta-data/iam/info".to_string()),
        Just("/latest/dynamic/instance-identity/document".to_string()),
        Just("/healthz".to_string()),
        Just("/readyz".to_string()),
        Just("/metrics".to_string()),
        Just("*".to_string()),
        Just("http://evil.example/v1/credentials".to_string()),
        "/[ -~]{0,40}",
        "/(%[0-9a-fA-F]{2}|[a-z./]){0,20}",
    ]
}

fn raw_request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        Just("GET".to_string()),
        Just("HEAD".to_string()),
        Just("PUT".to_string()),
        Just("POST".to_string()),
        Just("DELETE".to_string()),
        Just("OPTIONS".to_string()),
        Just("CONNECT".to_string()),
        Just("get".to_string()),
        "[A-Z]{1,8}",
    ];
    let path = path_strategy();
    let header_name = prop_oneof![
        Just("Host".to_string()),
        Just("Authorization".to_string()),
        Just("X-aws-ec2-metadata-token".to_string()),
        Just("X-aws-ec2-metadata-token-ttl-seconds".to_string()),
        Just("X-Forwarded-For".to_string()),
        Just("Content-Length".to_string()),
        Just("Transfer-Encoding".to_string()),
        Just("Connection".to_string()),
        Just("Expect".to_string()),
        "[!-9;-~]{1,12}",
    ];
    let header_value = prop_oneof![
        Just("127.0.0.1".to_string()),
        Just("evil.example".to_string()),
        Just("21600".to_string()),
        Just("-1".to_string()),
        Just("chunked".to_string()),
        Just("100-continue".to_string()),
        Just("close".to_string()),
        "[ -~]{0,30}",
        proptest::collection::vec(any::<u8>(), 0..20)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ];
    let version = prop_oneof![
        Just("HTTP/1.1".to_string()),
        Just("HTTP/1.0".to_string()),
        Just("HTTP/2.0".to_string()),
        "[ -~]{0,9}",
    ];
    let structured = (
        method,
        path,
        version,
        proptest::collection::vec((header_name, header_value), 0..6),
        proptest::collection::vec(any::<u8>(), 0..64),
        any::<bool>(),
    )
        .prop_map(|(m, p, v, headers, body, close)| {
            let mut out = format!("{m} {p} {v}\r\n").into_bytes();
            for (k, val) in headers {
                out.extend_from_slice(format!("{k}: {val}\r\n").as_bytes());
            }
            if close {
                out.extend_from_slice(b"Connection: close\r\n");
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&body);
            out
        });
    // Well-formed requests with one odd header, so that routing (not only the
    // parser) sees most cases.
    let tidy = (
        prop_oneof![Just("GET"), Just("HEAD"), Just("PUT"), Just("POST")],
        path_strategy(),
        proptest::option::of(("[A-Za-z-]{1,12}", "[ -~]{0,30}")),
    )
        .prop_map(|(m, p, h)| {
            let mut out = format!("{m} {p} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
            if let Some((k, v)) = h {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("Connection: close\r\n\r\n");
            out.into_bytes()
        });
    prop_oneof![
        3 => structured,
        3 => tidy,
        1 => proptest::collection::vec(any::<u8>(), 0..512),
    ]
}

#[test]
fn any_bytes_should_get_http_answers_or_a_closed_connection() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sts = rt.block_on(FakeSts::start());
    let dir = TokenDir::new(&jwt("system:serviceaccount:default:app", 3600, "p"));
    let mut p = ProxyBuilder::serve(&dir.path(), &sts.url())
        .args(["--header-timeout", "1s"])
        .start();
    let addr = p.addr;
    assert!(
        rt.block_on(common::eventually(Duration::from_secs(10), || async {
            common::request(addr, "GET", "/readyz", &[]).await.status == 200
        }))
    );
    let mut runner = TestRunner::new(config(256));
    let statuses = Mutex::new(BTreeMap::<u16, usize>::new());
    let result = runner.run(&raw_request(), |bytes| {
        let answer = rt.block_on(raw_exchange(addr, &bytes, Duration::from_secs(3)));
        // An answer starts with a well-formed status line (HTTP/1.0 for 1.0 clients).
        let text = String::from_utf8_lossy(&answer);
        if !answer.is_empty() {
            prop_assert!(
                text.starts_with("HTTP/1.1 ") || text.starts_with("HTTP/1.0 "),
                "{:?} -> {:?}",
                String::from_utf8_lossy(&bytes),
                text
            );
            let status: u16 = text[9..12].parse().unwrap_or(0);
            prop_assert!((200..600).contains(&status), "{}", text);
            *statuses.lock().unwrap().entry(status).or_default() += 1;
            let asked_for_evil = String::from_utf8_lossy(&bytes)
                .split("\r\n")
                .enumerate()
                .any(|(i, line)| {
                    let l = line.to_ascii_lowercase();
                    (i == 0 && l.contains("://evil.example"))
                        || (l.starts_with("host:") && l.contains("evil.example"))
                });
            if asked_for_evil {
                prop_assert!(
                    !text.contains("AccessKeyId"),
                    "served through a DNS name: {:?}",
                    String::from_utf8_lossy(&bytes)
                );
            }
        }
        Ok(())
    });
    let alive = p.child.try_wait().unwrap().is_none();
    let logs = p.logs();
    result.unwrap();
    assert!(alive, "the proxy exited; logs:\n{logs}");
    assert!(!logs.contains("panicked"), "{logs}");
    assert_eq!(
        rt.block_on(common::request(addr, "GET", "/healthz", &[]))
            .status,
        200
    );
    eprintln!("raw-bytes statuses: {:?}", statuses.lock().unwrap());
}

/// Regression (found by `cargo fuzz`, target `inject`): a document that is a
/// multi-line string was written back as a block scalar no YAML parser accepts,
/// so a second run refused the first one's output.
#[test]
fn inject_output_should_always_read_back() {
    let opts = inject_options();
    for input in [
        "m\r\r'",
        "|\n  a\n  b\n",
        "- a\n- \"b\\nc\"\n",
        "'x\n\n  y'",
    ] {
        let once = inject_documents(input, &opts).unwrap();
        let twice = inject_documents(&once, &opts)
            .unwrap_or_else(|e| panic!("{input:?} -> {once:?} is refused: {e}"));
        assert_eq!(once, twice, "{input:?}");
    }
}
