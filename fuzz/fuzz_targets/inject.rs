//! The YAML injector on any text: never panics, and is idempotent on what it accepts.
#![no_main]
use irsa_proxy::cli::InjectArgs;
use irsa_proxy::inject::{inject_documents, Options};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let opts = Options::from_args(&InjectArgs {
        file: "-".into(),
        path: None,
        image: "ghcr.io/irsa-proxy/irsa-proxy:0.1.0".into(),
        role_arn: None,
        classic_sidecar: false,
        port: 9911,
        container: Vec::new(),
        token_audience: "sts.amazonaws.com".into(),
        token_expiration: 86400,
        strip_web_identity: false,
        auth_secret: None,
        link_local: false,
    })
    .unwrap();
    if let Ok(once) = inject_documents(s, &opts) {
        let twice = inject_documents(&once, &opts).expect("its own output is refused");
        assert_eq!(once, twice);
    }
});
