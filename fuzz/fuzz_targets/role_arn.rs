//! `RoleArn::parse` on any text: never panics; what parses has the parts the
//! endpoints rely on.
#![no_main]
use irsa_proxy::sidecar::config::RoleArn;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(a) = RoleArn::parse(s) {
        assert_eq!(a.account.len(), 12);
        assert!(!a.name.is_empty() && a.name.len() <= 64);
        assert!(s.ends_with(&a.name));
    }
});
