//! The YAML injector on any text: never panics, and is idempotent on what it accepts.
#![no_main]
use irsa_proxy::cli::{InjectArgs, SidecarArgs};
use irsa_proxy::tools::inject::{inject_documents, Options};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let opts = Options::from_args(&InjectArgs {
        file: "-".into(),
        path: None,
        sidecar: SidecarArgs {
            image: "registry.example/irsa-proxy:1".into(),
            classic_sidecar: false,
            port: 9911,
            token_audience: "sts.amazonaws.com".into(),
            token_expiration: 86400,
        },
        role_arn: None,
        container: Vec::new(),
        container_role: Vec::new(),
        imds_role: None,
        strip_web_identity: false,
        keep_web_identity: false,
        auth_secret: None,
        link_local: false,
        chain: Default::default(),
        chain_external_id_secret: None,
        session_name: None,
    })
    .unwrap();
    if let Ok(once) = inject_documents(s, &opts) {
        let twice = inject_documents(&once, &opts).expect("its own output is refused");
        assert_eq!(once, twice);
    }
});
