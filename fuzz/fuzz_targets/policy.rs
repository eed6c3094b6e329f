//! Trust-policy parsing and evaluation on any text: never panic.
#![no_main]
use irsa_proxy::policy::{Policy, RequestContext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(p) = Policy::parse(s) {
        let ctx = RequestContext::web_identity(
            "https://oidc.eks.us-east-1.amazonaws.com/id/ABC",
            Some("111122223333"),
            Some("system:serviceaccount:demo:app"),
            &["sts.amazonaws.com"],
            &[],
        );
        let _ = p.evaluate(&ctx).summary();
    }
});
