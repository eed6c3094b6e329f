//! Properties of the YAML injector: never panics, idempotent, its output reads back.

use irsa_proxy::cli::{InjectArgs, SidecarArgs};
use irsa_proxy::tools::inject::{inject_documents, Options};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::config;

fn inject_options() -> Options {
    Options::from_args(&InjectArgs {
        file: "-".into(),
        path: None,
        sidecar: SidecarArgs {
            image: "registry.example/irsa-proxy:1".into(),
            classic_sidecar: false,
            port: 9911,
            token_audience: "sts.amazonaws.com".into(),
            token_expiration: 86400,
        },
        role_arn: Some("arn:aws:iam::111122223333:role/app".into()),
        container: Vec::new(),
        container_role: Vec::new(),
        strip_web_identity: false,
        keep_web_identity: false,
        auth_secret: None,
        link_local: false,
        chain: Default::default(),
        chain_external_id_secret: None,
        session_name: None,
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
