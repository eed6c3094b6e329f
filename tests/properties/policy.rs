//! Properties of trust-policy evaluation: deny wins, no allow allows nothing, order does not matter, globs.

use irsa_proxy::policy::{glob_match, Policy, RequestContext};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::config;

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
