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
        imds_role: None,
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

/// A pod with app and init containers, and the subset of them given a role
/// each (`--container-role`, issue 18).
fn pod_with_roles() -> impl Strategy<Value = (Value, Vec<String>)> {
    (
        proptest::collection::btree_set("[a-z]([a-z0-9-]{0,10}[a-z0-9])?", 1..6),
        any::<u8>(),
        any::<u8>(),
    )
        .prop_filter("not our own names", |(names, _, _)| {
            !names.contains("irsa-proxy") && !names.contains("irsa-proxy-link-local")
        })
        .prop_map(|(names, init_mask, role_mask)| {
            let names: Vec<String> = names.into_iter().collect();
            // The first container is always an app container.
            let (mut apps, mut inits) = (Vec::new(), Vec::new());
            for (i, n) in names.iter().enumerate() {
                let c = json!({"name": n, "image": "x", "env": [{"name": "KEEP", "value": n}]});
                if i > 0 && init_mask & (1 << i) != 0 {
                    inits.push(c);
                } else {
                    apps.push(c);
                }
            }
            let mut spec = json!({"containers": apps});
            if !inits.is_empty() {
                spec["initContainers"] = json!(inits);
            }
            let roles = names
                .iter()
                .enumerate()
                .filter(|(i, _)| role_mask & (1 << i) != 0)
                .map(|(_, n)| n.clone())
                .collect();
            let pod =
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec});
            (pod, roles)
        })
}

fn roles_options(roles: &[String]) -> Options {
    let mut args = InjectArgs::with_sidecar(SidecarArgs {
        image: "registry.example/irsa-proxy:1".into(),
        classic_sidecar: false,
        port: 9911,
        token_audience: "sts.amazonaws.com".into(),
        token_expiration: 86400,
    })
    .unwrap();
    args.container_role = roles
        .iter()
        .map(|r| format!("{r}=arn:aws:iam::111122223333:role/{r}"))
        .collect();
    Options::from_args(&args).unwrap()
}

proptest! {
    #![proptest_config(config(128))]

    /// Each container with a role can reach only its own token: its one mount
    /// of the shared volume is its own `roles/<name>`, read-only, and its token
    /// variable is its own Secret key; a container without one is unchanged;
    /// the sidecar serves exactly the roles given; every container but the
    /// sidecar is kept from the EKS webhook.
    #[test]
    fn each_role_should_reach_only_its_own_container((pod, roles) in pod_with_roles()) {
        let input = serde_norway::to_string(&pod).unwrap();
        let out = inject_documents(&input, &roles_options(&roles)).unwrap();
        let docs: Vec<Value> = out
            .split("\n---\n")
            .map(|d| serde_norway::from_str(d).unwrap())
            .collect();
        let injected = docs.iter().find(|d| d["kind"] == "Pod").unwrap();
        if roles.is_empty() {
            // No role: the single-role injection, as before.
            prop_assert!(out.contains("IRSA_PROXY_AUTH_TOKEN\n"), "{}", out);
            return Ok(());
        }
        let spec = &injected["spec"];
        let listed = |key: &str, from: &Value| -> Vec<Value> {
            from[key].as_array().cloned().unwrap_or_default()
        };
        let all: Vec<Value> = listed("initContainers", spec)
            .into_iter()
            .chain(listed("containers", spec))
            .collect();
        let originals: Vec<Value> = listed("initContainers", &pod["spec"])
            .into_iter()
            .chain(listed("containers", &pod["spec"]))
            .collect();
        let sidecar = all.iter().find(|c| c["name"] == "irsa-proxy").unwrap();
        let roles_env = listed("env", sidecar)
            .into_iter()
            .find(|e| e["name"] == "IRSA_PROXY_ROLES")
            .unwrap();
        let served: Value = serde_json::from_str(roles_env["value"].as_str().unwrap()).unwrap();
        let mut served: Vec<&String> = served["roles"].as_object().unwrap().keys().collect();
        served.sort();
        let mut given: Vec<&String> = roles.iter().collect();
        given.sort();
        prop_assert_eq!(served, given);
        for original in &originals {
            let name = original["name"].as_str().unwrap();
            let c = all.iter().find(|c| c["name"] == name).unwrap();
            if !roles.iter().any(|r| r == name) {
                prop_assert_eq!(c, original);
                continue;
            }
            let ours: Vec<Value> = listed("volumeMounts", c)
                .into_iter()
                .filter(|m| m["name"] == "irsa-proxy-auth")
                .collect();
            prop_assert_eq!(ours.len(), 1);
            prop_assert_eq!(&ours[0]["subPath"], &json!(format!("roles/{name}")));
            prop_assert_eq!(&ours[0]["readOnly"], &json!(true));
            let keys: Vec<Value> = listed("env", c)
                .iter()
                .filter_map(|e| e.pointer("/valueFrom/secretKeyRef/key").cloned())
                .collect();
            prop_assert_eq!(keys, vec![json!(name)]);
        }
        let skip = injected["metadata"]["annotations"]["eks.amazonaws.com/skip-containers"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut skipped: Vec<&str> = skip.split(',').collect();
        skipped.sort();
        let mut names: Vec<&str> = originals.iter().filter_map(|c| c["name"].as_str()).collect();
        names.sort();
        prop_assert_eq!(skipped, names);
    }
}
