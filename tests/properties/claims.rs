//! Properties of the JWT claim decoder: never panics, round-trips, never quotes the payload.

use base64::Engine;
use irsa_proxy::sidecar::token::{Claims, Token};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::config;

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
