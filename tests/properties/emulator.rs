//! Properties of the emulator's Query protocol: any form gets one XML document; session names round-trip.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use irsa_proxy::sidecar::sts::{AssumeRequest, AssumeRole, ClientSettings, SdkSts};
use irsa_proxy::sidecar::token::Token;
use irsa_proxy::tools::emulator::{self, EmulatorSettings, Issuer};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::json;

use crate::{config, raw_exchange};

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
    let client = rt
        .block_on(SdkSts::new(&ClientSettings {
            region: Some("us-east-1".into()),
            endpoint: Some(sts.endpoint_url()),
            ..Default::default()
        }))
        .unwrap();
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
                policy: Default::default(),
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
