//! Properties of what a (possibly malicious) STS answers: credentials or one bounded error line.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use irsa_proxy::sidecar::sts::{AssumeRequest, AssumeRole, ClientSettings, SdkSts};
use irsa_proxy::sidecar::token::Token;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

use crate::config;

/// XML text escaping for the scripted answers. Written here rather than taken
/// from the emulator so that this subject, the sidecar's STS client, builds
/// without the `tools` feature.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            // Characters XML 1.0 cannot carry at all, dropped as the emulator does.
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

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
    let client = rt
        .block_on(SdkSts::new(&ClientSettings {
            region: Some("us-east-1".into()),
            endpoint: Some(format!("http://{addr}")),
            ..Default::default()
        }))
        .unwrap();
    let mut runner = TestRunner::new(config(128));
    runner
        .run(&sts_answer(), |answer| {
            *script.lock().unwrap() = answer.clone();
            let r = rt.block_on(client.assume(AssumeRequest {
                role_arn: "arn:aws:iam::111122223333:role/demo".into(),
                session_name: "prop".into(),
                duration: Duration::from_secs(900),
                token: Token::new("a.b.c"),
                policy: Default::default(),
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
