//! One `AdmissionReview` in, one out: the webhook's decision, with no I/O.
//!
//! The contract (`admission.k8s.io/v1`):
//!
//! - a review that is not JSON, not `admission.k8s.io/v1` `AdmissionReview`, or
//!   has no `request.uid` is [`BadReview`] (the server answers 400 with its
//!   message); so is a Pod CREATE without an `object`;
//! - everything else is allowed: pods that opted in get a JSONPatch (RFC 6902)
//!   computed between the pod as sent and the pod after the `inject` engine,
//!   with a `warnings` entry for each variable of the author's that the engine
//!   removed or replaced (a web-identity pair, an endpoint variable), naming
//!   the container and the variable; every other case gets no patch, and a
//!   `warnings` entry when the pod asked for the sidecar but cannot have it
//!   (`hostNetwork`, a pod for Windows nodes, a bad annotation, a pod the
//!   engine refuses). The webhook never denies a pod: the sidecar is an
//!   addition, and a pod without it is better than no pod.

use serde_json::Value as Json;

use crate::cli::InjectArgs;
use crate::sidecar::config::RoleArn;
use crate::tools::inject::{AuthTokenSource, Options, PodChanges, SIDECAR_NAME};

/// The opt-in label (namespaces, pods) and annotation (pods).
pub const INJECT: &str = "irsa-proxy.io/inject";
/// Per-pod options, each standing for the `inject` flag of the same name.
pub const ROLE_ARN: &str = "irsa-proxy.io/role-arn";
pub const LINK_LOCAL: &str = "irsa-proxy.io/link-local";
pub const PORT: &str = "irsa-proxy.io/port";
pub const CONTAINERS: &str = "irsa-proxy.io/containers";
/// Several roles (`inject --container-role`): `CONTAINER=ROLE_ARN`,
/// comma-separated.
pub const CONTAINER_ROLES: &str = "irsa-proxy.io/container-roles";
pub const AUDIENCE: &str = "irsa-proxy.io/audience";
pub const IMAGE: &str = "irsa-proxy.io/image";
pub const KEEP_WEB_IDENTITY: &str = "irsa-proxy.io/keep-web-identity";
/// Role chaining (`inject --chain-role-arn`, comma-separated), the session name
/// and SourceIdentity templates, and the Secret of the last hop's ExternalId.
/// Session tags are left out on purpose: at admission they would come from the
/// pod's author, and ABAC tags must not.
pub const CHAIN_ROLE_ARN: &str = "irsa-proxy.io/chain-role-arn";
pub const SESSION_NAME: &str = "irsa-proxy.io/session-name";
pub const SOURCE_IDENTITY: &str = "irsa-proxy.io/source-identity";
pub const CHAIN_EXTERNAL_ID_SECRET: &str = "irsa-proxy.io/chain-external-id-secret";

const API_VERSION: &str = "admission.k8s.io/v1";

/// Which webhook entry of the `MutatingWebhookConfiguration` called: the API
/// server sends namespace labels to neither, so the entry's selector is
/// carried by the path it calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptIn {
    /// `/mutate`: the namespace is labelled `irsa-proxy.io/inject: enabled`;
    /// every pod is injected unless its annotation says `"false"`.
    Namespace,
    /// `/mutate/opt-in`: any other namespace; only pods annotated
    /// `irsa-proxy.io/inject: "true"` are injected.
    Annotation,
}

/// A review the webhook cannot answer; the message goes back with a 400.
#[derive(Debug, thiserror::Error)]
pub enum BadReview {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("expected apiVersion {API_VERSION:?} and kind \"AdmissionReview\", got {0:?} {1:?}")]
    NotAReview(String, String),
    #[error("request.uid: missing or not a string")]
    NoUid,
    #[error("request.object: a Pod CREATE must carry the pod as a JSON object")]
    NoObject,
}

/// What happened to one review, for the metrics and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The pod gets the sidecar.
    Mutated,
    /// Not a Pod CREATE, not opted in, or already injected: nothing to do.
    Skipped,
    /// Opted in but not injected; the response carries a warning saying why.
    Warned,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Mutated => "mutated",
            Outcome::Skipped => "skipped",
            Outcome::Warned => "warned",
        }
    }
}

/// The answer: the serialised response review and what it did.
#[derive(Debug)]
pub struct Answer {
    pub body: Vec<u8>,
    pub outcome: Outcome,
    /// `namespace/name` (or `generateName*`), for the log.
    pub pod: String,
}

/// Decides one review. `defaults` are the webhook's flags in `inject`'s terms;
/// annotations override them per pod.
pub fn review(body: &[u8], defaults: &InjectArgs, opt_in: OptIn) -> Result<Answer, BadReview> {
    let mut review: Json =
        serde_json::from_slice(body).map_err(|e| BadReview::NotJson(e.to_string()))?;
    let api_version = review.get("apiVersion").and_then(Json::as_str);
    let kind = review.get("kind").and_then(Json::as_str);
    if api_version != Some(API_VERSION) || kind != Some("AdmissionReview") {
        return Err(BadReview::NotAReview(
            api_version.unwrap_or("").into(),
            kind.unwrap_or("").into(),
        ));
    }
    // The pod, owned: the engine changes it in place and the patch is read
    // from it (nothing else reads `request.object`).
    let object = review.pointer_mut("/request/object").map(Json::take);
    let request = review.get("request").unwrap_or(&Json::Null);
    let uid = request
        .get("uid")
        .and_then(Json::as_str)
        .ok_or(BadReview::NoUid)?;
    let namespace = request
        .get("namespace")
        .and_then(Json::as_str)
        .unwrap_or("");

    let is_pod = request.pointer("/kind/group").and_then(Json::as_str) == Some("")
        && request.pointer("/kind/kind").and_then(Json::as_str) == Some("Pod");
    let is_create = request.get("operation").and_then(Json::as_str) == Some("CREATE");
    // A subresource (pods/ephemeralcontainers, pods/binding) is not a new pod.
    let subresource = request
        .get("subResource")
        .and_then(Json::as_str)
        .is_some_and(|s| !s.is_empty());
    if !is_pod || !is_create || subresource {
        return Ok(answer(
            uid,
            None,
            Vec::new(),
            Outcome::Skipped,
            String::new(),
        ));
    }
    let mut pod = match object {
        Some(o @ Json::Object(_)) => o,
        _ => return Err(BadReview::NoObject),
    };
    let label = pod_label(&pod, namespace);
    let (patch, warnings, outcome) = decide(&mut pod, defaults, opt_in);
    Ok(answer(uid, patch, warnings, outcome, label))
}

fn pod_label(pod: &Json, namespace: &str) -> String {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Json::as_str)
        .map(str::to_string)
        .or_else(|| {
            pod.pointer("/metadata/generateName")
                .and_then(Json::as_str)
                .map(|g| format!("{g}*"))
        })
        .unwrap_or_default();
    format!("{namespace}/{name}")
}

/// The patch (if any, as JSON text), the warnings, and the outcome for one pod.
fn decide(
    pod: &mut Json,
    defaults: &InjectArgs,
    opt_in: OptIn,
) -> (Option<Vec<u8>>, Vec<String>, Outcome) {
    let metadata = pod.get("metadata");
    let annotations = metadata.and_then(|m| m.get("annotations"));
    let annotation = |key: &str| annotations.and_then(|a| a.get(key));
    let label = metadata
        .and_then(|m| m.get("labels"))
        .and_then(|l| l.get(INJECT))
        .and_then(Json::as_str);
    let skip = (None, Vec::new(), Outcome::Skipped);
    let warn = |w: Vec<String>| (None, w, Outcome::Warned);

    // "false" means no, on the label and the annotation alike, whatever the
    // namespace says.
    if label == Some("false") {
        return skip;
    }
    match (annotation(INJECT), opt_in) {
        (Some(Json::String(v)), _) if v == "false" => return skip,
        (Some(Json::String(v)), _) if v == "true" => {}
        (None, OptIn::Namespace) => {}
        (None, OptIn::Annotation) => return skip,
        (Some(other), _) => {
            return warn(vec![format!(
                "{INJECT}: {other}: expected \"true\" or \"false\"; sidecar not added"
            )])
        }
    }

    if pod.pointer("/spec/hostNetwork").and_then(Json::as_bool) == Some(true) {
        return warn(vec![format!(
            "{SIDECAR_NAME}: sidecar not added: hostNetwork pods share the node's loopback, where every pod on the node could reach the credentials"
        )]);
    }
    // Already injected (by `inject`, or by us on an earlier invocation).
    if has_sidecar(pod) {
        return skip;
    }

    let args = match with_annotations(defaults, &annotation) {
        Ok(a) => a,
        Err(errors) => return warn(errors),
    };
    let mut opts = match Options::from_args(&args) {
        Ok(o) => o,
        Err(errors) => {
            return warn(
                errors
                    .into_iter()
                    .map(|e| annotation_terms(&e.to_string()))
                    .collect(),
            )
        }
    };
    // One fresh token per pod, as a plain value: see AuthTokenSource::Value.
    opts.auth_token = AuthTokenSource::Value(crate::sidecar::endpoints::random_token());
    opts.emit_auth_secret = false;

    // The engine works on the pod itself and names what it changed.
    match crate::tools::inject::inject_pod_in_place(pod, &opts) {
        Ok(Some(changes)) => {
            let notes = changes
                .notes
                .iter()
                .map(|n| format!("{SIDECAR_NAME}: {}", annotation_terms(n)))
                .collect();
            match patch_text(pod, &changes) {
                Ok(p) => (Some(p), notes, Outcome::Mutated),
                Err(e) => warn(vec![format!("{SIDECAR_NAME}: sidecar not added: {e}")]),
            }
        }
        Ok(None) => skip,
        Err(problem) => warn(vec![format!(
            "{SIDECAR_NAME}: sidecar not added: {}",
            annotation_terms(&problem.to_string())
        )]),
    }
}

/// The patch (RFC 6902), as JSON text: one `add` per field the engine
/// changed, carrying its new value whole (`add` replaces a member that is
/// there, and creates one that is not), read from the changed pod. No copy of
/// the pod and no diff; the API server applies it to the pod it sent, which
/// gives the pod the engine made. The keys of each value are written sorted:
/// the same pod gets the same bytes whatever order the engine built them in.
fn patch_text(pod: &Json, changes: &PodChanges) -> serde_json::Result<Vec<u8>> {
    #[derive(serde::Serialize)]
    struct Add<'a> {
        op: &'static str,
        path: String,
        value: Sorted<'a>,
    }
    let null = Json::Null;
    let at = |pointer: &str| pod.pointer(pointer).unwrap_or(&null);
    let mut ops: Vec<Add<'_>> = changes
        .spec
        .iter()
        .map(|field| {
            let path = format!("/spec/{field}");
            Add {
                op: "add",
                value: Sorted(at(&path)),
                path,
            }
        })
        .collect();
    if changes.metadata_created {
        ops.push(Add {
            op: "add",
            path: "/metadata".into(),
            value: Sorted(at("/metadata")),
        });
    } else if changes.annotations {
        ops.push(Add {
            op: "add",
            path: "/metadata/annotations".into(),
            value: Sorted(at("/metadata/annotations")),
        });
    }
    serde_json::to_vec(&ops)
}

/// A JSON value written with every object's keys in sorted order.
struct Sorted<'a>(&'a Json);

impl serde::Serialize for Sorted<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self.0 {
            Json::Object(m) => {
                let mut entries: Vec<(&String, &Json)> = m.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, &Sorted(v))?;
                }
                map.end()
            }
            Json::Array(items) => s.collect_seq(items.iter().map(Sorted)),
            scalar => scalar.serialize(s),
        }
    }
}

fn has_sidecar(pod: &Json) -> bool {
    ["/spec/containers", "/spec/initContainers"]
        .iter()
        .any(|at| {
            pod.pointer(at)
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .any(|c| c.get("name").and_then(Json::as_str) == Some(SIDECAR_NAME))
        })
}

/// `inject`'s messages name its flags; here the annotations stand for them.
fn annotation_terms(message: &str) -> String {
    message
        .replace("--port", PORT)
        .replace("--container-role", CONTAINER_ROLES)
        .replace("--container ", &format!("{CONTAINERS} "))
        .replace("--link-local", LINK_LOCAL)
        .replace("--image", IMAGE)
        .replace("--role-arn", ROLE_ARN)
        .replace("--token-audience", AUDIENCE)
        .replace("--chain-role-arn", CHAIN_ROLE_ARN)
        .replace("--chain-external-id-secret", CHAIN_EXTERNAL_ID_SECRET)
        .replace("--session-name", SESSION_NAME)
        .replace("--source-identity", SOURCE_IDENTITY)
        .replace(
            "--keep-web-identity",
            &format!("{KEEP_WEB_IDENTITY}: \"true\""),
        )
}

/// The webhook's defaults with the pod's annotations applied; every bad
/// annotation named, each in its own warning.
fn with_annotations<'a>(
    defaults: &InjectArgs,
    annotation: &dyn Fn(&str) -> Option<&'a Json>,
) -> Result<InjectArgs, Vec<String>> {
    let mut args = defaults.clone();
    let mut errors = Vec::new();
    let mut text = |key: &str| -> Option<String> {
        match annotation(key)? {
            Json::String(s) => Some(s.trim().to_string()),
            other => {
                errors.push(format!("{key}: {other}: expected a string"));
                None
            }
        }
    };
    let role = text(ROLE_ARN);
    let link_local = text(LINK_LOCAL);
    let port = text(PORT);
    let containers = text(CONTAINERS);
    let container_roles = text(CONTAINER_ROLES);
    let audience = text(AUDIENCE);
    let image = text(IMAGE);
    let keep = text(KEEP_WEB_IDENTITY);
    let chain = text(CHAIN_ROLE_ARN);
    let session_name = text(SESSION_NAME);
    let source_identity = text(SOURCE_IDENTITY);
    let external_id_secret = text(CHAIN_EXTERNAL_ID_SECRET);
    // Checked with inject's flags by `Options::from_args`, whose messages name
    // these annotations (`annotation_terms`).
    if let Some(list) = chain {
        args.chain.chain_role_arn = list
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
    }
    args.session_name = session_name.or(args.session_name);
    args.chain.source_identity = source_identity.or(args.chain.source_identity);
    args.chain_external_id_secret = external_id_secret.or(args.chain_external_id_secret);
    if let Some(arn) = role {
        match RoleArn::parse(&arn) {
            Ok(_) => args.role_arn = Some(arn),
            Err(form) => errors.push(format!("{ROLE_ARN}: {arn:?}: expected {form}")),
        }
    }
    for (key, value, field) in [
        (LINK_LOCAL, link_local, &mut args.link_local),
        (KEEP_WEB_IDENTITY, keep, &mut args.keep_web_identity),
    ] {
        match value.as_deref() {
            None => {}
            Some("true") => *field = true,
            Some("false") => *field = false,
            Some(v) => errors.push(format!("{key}: {v:?}: expected \"true\" or \"false\"")),
        }
    }
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => args.sidecar.port = n,
            _ => errors.push(format!("{PORT}: {p:?}: expected a port in 1..=65535")),
        }
    }
    if let Some(list) = containers {
        let names: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        if names.is_empty() {
            errors.push(format!(
                "{CONTAINERS}: {list:?}: expected app container names, comma-separated"
            ));
        } else {
            args.container = names;
        }
    }
    // Each checked with inject's flag by `Options::from_args`: a bad entry, a
    // container given twice or in two roles is a warning naming the annotation.
    if let Some(list) = container_roles {
        let roles: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect();
        if roles.is_empty() {
            errors.push(format!(
                "{CONTAINER_ROLES}: {list:?}: expected CONTAINER=ROLE_ARN, comma-separated"
            ));
        } else {
            args.container_role = roles;
        }
    }
    if let Some(aud) = audience {
        if aud.is_empty() {
            errors.push(format!("{AUDIENCE}: must not be empty"));
        } else {
            args.sidecar.token_audience = aud;
        }
    }
    if let Some(img) = image {
        if img.is_empty() || img.chars().any(char::is_whitespace) {
            errors.push(format!("{IMAGE}: {img:?}: expected an image reference"));
        } else {
            args.sidecar.image = img;
        }
    }
    if errors.is_empty() {
        Ok(args)
    } else {
        Err(errors
            .into_iter()
            .map(|e| format!("{e}; sidecar not added"))
            .collect())
    }
}

fn answer(
    uid: &str,
    patch: Option<Vec<u8>>,
    warnings: Vec<String>,
    outcome: Outcome,
    pod: String,
) -> Answer {
    use base64::Engine;
    // Written field by field: the patch's base64 goes in as it is (it needs
    // no escaping), with no intermediate JSON tree or escape scan of it.
    let b64_len = patch.as_ref().map_or(0, |p| p.len().div_ceil(3) * 4);
    let mut body = Vec::with_capacity(192 + b64_len);
    body.extend_from_slice(b"{\"apiVersion\":");
    let _ = serde_json::to_writer(&mut body, API_VERSION);
    body.extend_from_slice(b",\"kind\":\"AdmissionReview\",\"response\":{\"uid\":");
    // Writing a string or a list of strings into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut body, uid);
    body.extend_from_slice(b",\"allowed\":true");
    if let Some(patch) = patch {
        body.extend_from_slice(b",\"patchType\":\"JSONPatch\",\"patch\":\"");
        let start = body.len();
        body.resize(start + b64_len, 0);
        let written = base64::engine::general_purpose::STANDARD
            .encode_slice(&patch, &mut body[start..])
            .unwrap_or(0);
        body.truncate(start + written);
        body.push(b'"');
    }
    if !warnings.is_empty() {
        body.extend_from_slice(b",\"warnings\":");
        let _ = serde_json::to_writer(&mut body, &warnings);
    }
    body.extend_from_slice(b"}}");
    Answer { body, outcome, pod }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    fn defaults() -> InjectArgs {
        #[derive(Parser)]
        struct P {
            #[command(flatten)]
            a: InjectArgs,
        }
        P::parse_from(["x", "--image", "registry.example/irsa-proxy:1"]).a
    }

    fn review_of(pod: Json, operation: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": API_VERSION, "kind": "AdmissionReview",
            "request": {
                "uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "apps", "operation": operation, "object": pod,
            }
        }))
        .unwrap_or_default()
    }

    fn pod(annotations: Json) -> Json {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "api-7d4b9c-", "annotations": annotations},
            "spec": {"containers": [{"name": "api", "image": "api:1"}]}
        })
    }

    fn decided(pod: Json, opt_in: OptIn) -> (Outcome, Json) {
        let a = review(&review_of(pod, "CREATE"), &defaults(), opt_in).expect("review");
        let v: Json = serde_json::from_slice(&a.body).unwrap_or_default();
        (a.outcome, v["response"].clone())
    }

    #[test]
    fn annotation_false_should_mean_no_in_an_enabled_namespace() {
        let (o, r) = decided(pod(json!({INJECT: "false"})), OptIn::Namespace);
        assert_eq!(o, Outcome::Skipped);
        assert!(r.get("patch").is_none());
    }

    #[test]
    fn annotation_true_should_be_needed_outside_an_enabled_namespace() {
        assert_eq!(
            decided(pod(json!({})), OptIn::Annotation).0,
            Outcome::Skipped
        );
        let (o, r) = decided(pod(json!({INJECT: "true"})), OptIn::Annotation);
        assert_eq!(o, Outcome::Mutated);
        assert_eq!(r["patchType"], "JSONPatch");
    }

    #[test]
    fn bad_annotations_should_leave_the_pod_unchanged_with_a_warning_each() {
        let (o, r) = decided(
            pod(json!({PORT: "99999", ROLE_ARN: "nope", LINK_LOCAL: "yes"})),
            OptIn::Namespace,
        );
        assert_eq!(o, Outcome::Warned);
        assert!(r.get("patch").is_none());
        let w = r["warnings"].to_string();
        for key in [PORT, ROLE_ARN, LINK_LOCAL] {
            assert!(w.contains(key), "{key} not named in {w}");
        }
        assert_eq!(r["allowed"], true);
    }

    /// The chain annotations reach the sidecar as its variables; a bad one is
    /// named by its annotation and leaves the pod as it was.
    #[test]
    fn chain_annotations_should_reach_the_sidecar_or_be_named() {
        let (o, r) = decided(
            pod(json!({
                CHAIN_ROLE_ARN: "arn:aws:iam::444455556666:role/target",
                SESSION_NAME: "{namespace}.{pod}",
                SOURCE_IDENTITY: "{pod}",
                CHAIN_EXTERNAL_ID_SECRET: "target-external-id",
            })),
            OptIn::Namespace,
        );
        assert_eq!(o, Outcome::Mutated);
        use base64::Engine;
        let patch = base64::engine::general_purpose::STANDARD
            .decode(r["patch"].as_str().unwrap_or_default())
            .unwrap_or_default();
        let patch = String::from_utf8_lossy(&patch);
        for needle in [
            r#""name":"IRSA_PROXY_CHAIN_ROLE_ARN","value":"arn:aws:iam::444455556666:role/target""#,
            r#""name":"AWS_ROLE_SESSION_NAME","value":"{namespace}.{pod}""#,
            r#""name":"IRSA_PROXY_SOURCE_IDENTITY","value":"{pod}""#,
            r#""secretKeyRef":{"key":"external-id","name":"target-external-id"}"#,
        ] {
            assert!(patch.contains(needle), "{needle} not in {patch}");
        }
        let (o, r) = decided(
            pod(json!({CHAIN_ROLE_ARN: "arn:aws:iam::1:role/x", SESSION_NAME: "{node}"})),
            OptIn::Namespace,
        );
        assert_eq!(o, Outcome::Warned);
        let w = r["warnings"].to_string();
        assert!(
            w.contains(CHAIN_ROLE_ARN) && w.contains(SESSION_NAME),
            "{w}"
        );
    }

    /// Several roles by annotation: each role its own fresh token, the same
    /// in the sidecar and in its container only; a bad annotation is a warning
    /// naming it, and the pod is left as it was.
    #[test]
    fn container_roles_should_give_each_container_its_own_token_or_be_named() {
        let spec = json!({
            "initContainers": [{"name": "copier", "image": "aws-cli"}],
            "containers": [{"name": "api", "image": "x"}, {"name": "worker", "image": "y"},
                           {"name": "metrics", "image": "z"}],
        });
        let mut pod = with_spec(spec);
        pod["metadata"]["annotations"][CONTAINER_ROLES] = json!(
            "copier=arn:aws:iam::111122223333:role/s3-copy, api=arn:aws:iam::111122223333:role/api,worker=arn:aws:iam::111122223333:role/worker"
        );
        let (o, r) = decided(pod.clone(), OptIn::Annotation);
        assert_eq!(o, Outcome::Mutated, "{r}");
        let out = patched(pod.clone(), &r);
        let all: Vec<&Json> = ["initContainers", "containers"]
            .iter()
            .flat_map(|k| out["spec"][k].as_array().into_iter().flatten())
            .collect();
        let named = |n: &str| *all.iter().find(|c| c["name"] == n).expect(n);
        let env = |c: &Json, n: &str| -> Option<String> {
            c["env"].as_array()?.iter().find(|e| e["name"] == n)?["value"]
                .as_str()
                .map(str::to_string)
        };
        let sidecar = named(SIDECAR_NAME);
        let mut tokens = Vec::new();
        for role in ["copier", "api", "worker"] {
            let mine = env(named(role), "AWS_CONTAINER_AUTHORIZATION_TOKEN").expect(role);
            let served = env(
                sidecar,
                &format!("IRSA_PROXY_AUTH_TOKEN_{}", role.to_uppercase()),
            )
            .expect(role);
            assert_eq!(mine, served, "{role}");
            assert_eq!(mine.len(), 64);
            tokens.push(mine);
        }
        tokens.dedup();
        assert_eq!(tokens.len(), 3, "every role its own token");
        assert_eq!(named("metrics"), &json!({"name": "metrics", "image": "z"}));
        let roles: Json =
            serde_json::from_str(&env(sidecar, "IRSA_PROXY_ROLES").expect("roles")).unwrap();
        assert_eq!(
            roles["roles"]["api"]["role_arn"],
            "arn:aws:iam::111122223333:role/api"
        );
        assert_eq!(
            out["metadata"]["annotations"]["eks.amazonaws.com/skip-containers"],
            "copier,api,worker,metrics"
        );

        for (bad, needle) in [
            (
                "apx=arn:aws:iam::111122223333:role/x",
                "no container of that name",
            ),
            (
                "api=arn:aws:iam::111122223333:role/api,api=arn:aws:iam::111122223333:role/api",
                "a second time",
            ),
            (
                "api=arn:aws:iam::111122223333:role/api,api=arn:aws:iam::111122223333:role/b",
                "second role",
            ),
            ("api", "CONTAINER=ROLE_ARN"),
            (" , ", "CONTAINER=ROLE_ARN"),
        ] {
            let mut pod = pod.clone();
            pod["metadata"]["annotations"][CONTAINER_ROLES] = json!(bad);
            let (o, r) = decided(pod, OptIn::Annotation);
            assert_eq!(o, Outcome::Warned, "{bad}: {r}");
            assert!(r.get("patch").is_none(), "{bad}");
            let w = warnings(&r);
            assert!(
                w.iter()
                    .any(|w| w.contains(CONTAINER_ROLES) && w.contains(needle)),
                "{bad}: {w:?}"
            );
            assert!(!w.iter().any(|w| w.contains("--container-role")), "{w:?}");
        }
    }

    fn with_spec(spec: Json) -> Json {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "annotations": {INJECT: "true"}},
            "spec": spec,
        })
    }

    #[test]
    fn windows_pods_should_be_allowed_unchanged_with_a_warning() {
        let app =
            json!([{"name": "app", "image": "mcr.microsoft.com/windows/servercore:ltsc2022"}]);
        for (spec, why) in [
            (
                json!({"os": {"name": "windows"}, "containers": app}),
                "spec.os.name",
            ),
            (
                json!({"nodeSelector": {"kubernetes.io/os": "windows"}, "containers": app}),
                "nodeSelector",
            ),
            (
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "kubernetes.io/os", "operator": "In", "values": ["windows"]}]}]}}},
                    "containers": app}),
                "nodeAffinity",
            ),
        ] {
            let (o, r) = decided(with_spec(spec), OptIn::Namespace);
            assert_eq!(o, Outcome::Warned, "{why}");
            assert!(r.get("patch").is_none(), "{why}");
            assert_eq!(r["allowed"], true);
            let w = r["warnings"].to_string();
            assert!(w.contains("Windows") && w.contains(why), "{why}: {w}");
        }
        // Linux selected explicitly, or Windows as one choice of two: injected.
        for spec in [
            json!({"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": app}),
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/os", "operator": "In", "values": ["windows", "linux"]}]}]}}},
                "containers": app}),
        ] {
            assert_eq!(
                decided(with_spec(spec), OptIn::Namespace).0,
                Outcome::Mutated
            );
        }
    }

    /// `pod` with the response's patch applied.
    fn patched(mut pod: Json, response: &Json) -> Json {
        let ops: json_patch::Patch = serde_json::from_slice(
            &base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                response["patch"].as_str().unwrap_or_default(),
            )
            .expect("base64"),
        )
        .expect("a JSON patch");
        json_patch::patch(&mut pod, &ops).expect("the patch applies");
        pod
    }

    fn warnings(r: &Json) -> Vec<String> {
        r["warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str().map(str::to_string))
            .collect()
    }

    #[test]
    fn web_identity_should_be_removed_with_a_warning_unless_kept() {
        let env = json!([
            {"name": "AWS_ROLE_ARN", "value": "arn:aws:iam::111122223333:role/app"},
            {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"},
            {"name": "AWS_CONTAINER_AUTHORIZATION_TOKEN", "value": "SECRET-MARKER-DO-NOT-LOG"},
            {"name": "AWS_EC2_METADATA_SERVICE_ENDPOINT", "value": "http://10.0.0.1"},
        ]);
        let spec = json!({"containers": [{"name": "app", "image": "a:1", "env": env}]});
        let (o, r) = decided(with_spec(spec.clone()), OptIn::Namespace);
        assert_eq!(o, Outcome::Mutated);
        let w = warnings(&r);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(
            w[0].contains("\"app\"")
                && w[0].contains("AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE")
                && w[0].contains("irsa-proxy.io/keep-web-identity: \"true\""),
            "{w:?}"
        );
        assert!(w[1].contains("AWS_CONTAINER_AUTHORIZATION_TOKEN"), "{w:?}");
        assert!(w[2].contains("AWS_EC2_METADATA_SERVICE_ENDPOINT"), "{w:?}");
        assert!(
            !r.to_string().contains("SECRET-MARKER"),
            "a value was echoed"
        );
        let pod = patched(with_spec(spec.clone()), &r);
        let app_env = pod["spec"]["containers"][0]["env"].to_string();
        assert!(!app_env.contains("AWS_ROLE_ARN"), "{app_env}");
        assert!(
            !app_env.contains("AWS_WEB_IDENTITY_TOKEN_FILE"),
            "{app_env}"
        );
        // The sidecar still assumes the app's role.
        assert!(pod["spec"]["initContainers"][0]["env"]
            .to_string()
            .contains("role/app"));

        let mut kept = with_spec(spec);
        kept["metadata"]["annotations"][KEEP_WEB_IDENTITY] = json!("true");
        let (o, r) = decided(kept, OptIn::Namespace);
        assert_eq!(o, Outcome::Mutated);
        let w = warnings(&r);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w.iter().all(|w| !w.contains("AWS_ROLE_ARN")), "{w:?}");
    }

    #[test]
    fn link_local_should_leave_port_80_to_the_app() {
        let spec = json!({"containers": [{"name": "web", "image": "nginx:1.27",
            "ports": [{"containerPort": 80}]}]});
        let mut pod = with_spec(spec.clone());
        pod["metadata"]["annotations"][LINK_LOCAL] = json!("true");
        let (o, r) = decided(pod.clone(), OptIn::Namespace);
        assert_eq!(o, Outcome::Mutated, "{r}");
        assert!(r.get("warnings").is_none(), "{r}");
        let pod = patched(pod, &r);
        let init = &pod["spec"]["initContainers"];
        assert_eq!(init[0]["name"], "irsa-proxy-link-local");
        assert!(init[0]["command"]
            .to_string()
            .contains("--redirect-port=9911"));
        let args = init[1]["args"].to_string();
        assert!(args.contains("--listen=169.254.169.254:9911"), "{args}");
        assert!(!args.contains(":80\""), "{args}");
        assert!(
            pod["spec"].get("securityContext").is_none(),
            "no sysctl: {pod}"
        );
    }

    #[test]
    fn malformed_reviews_should_be_refused_with_the_reason() {
        let d = defaults();
        assert!(matches!(
            review(b"{", &d, OptIn::Namespace),
            Err(BadReview::NotJson(_))
        ));
        let v1beta1 = br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}"#;
        assert!(matches!(
            review(v1beta1, &d, OptIn::Namespace),
            Err(BadReview::NotAReview(..))
        ));
        let no_uid =
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}"#;
        assert!(matches!(
            review(no_uid, &d, OptIn::Namespace),
            Err(BadReview::NoUid)
        ));
    }

    #[test]
    fn a_token_value_should_never_show_in_debug_output() {
        let shown = format!(
            "{:?}",
            AuthTokenSource::Value("SECRET-MARKER-DO-NOT-LOG".into())
        );
        assert!(!shown.contains("SECRET-MARKER"), "{shown}");
    }

    /// The patch names only the fields the engine changed, whole: applied to
    /// the pod as sent, it gives exactly the pod the engine made, whatever
    /// the options and whatever the pod already had.
    #[test]
    fn the_patch_should_make_the_pod_the_engine_makes() {
        let app = json!({"name": "app", "image": "a:1", "env": [{"name": "A", "value": "1"}]});
        let pods = [
            with_spec(json!({"containers": [app.clone()]})),
            with_spec(json!({
                "initContainers": [{"name": "setup", "image": "s:1"}],
                "containers": [app.clone(), {"name": "side", "image": "b:1"}],
                "volumes": [{"name": "data", "emptyDir": {}}],
            })),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"annotations": null},
                "spec": {"containers": [app.clone()]}}),
            json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [app.clone()]}}),
        ];
        let mut args = defaults();
        for options in [
            "",
            "classic",
            "link-local",
            "classic link-local",
            "container",
        ] {
            args.sidecar.classic_sidecar = options.contains("classic");
            args.link_local = options.contains("link-local");
            args.container = match options {
                "container" => vec!["app".into()],
                _ => Vec::new(),
            };
            let mut opts = Options::from_args(&args).expect("options");
            opts.auth_token = AuthTokenSource::Value("t".into());
            for pod in &pods {
                let mut made = pod.clone();
                let changes = crate::tools::inject::inject_pod_in_place(&mut made, &opts)
                    .expect("injected")
                    .expect("a change");
                let ops: json_patch::Patch =
                    serde_json::from_slice(&patch_text(&made, &changes).expect("text"))
                        .expect("a JSON patch");
                let mut patched = pod.clone();
                json_patch::patch(&mut patched, &ops).expect("the patch applies");
                assert_eq!(patched, made, "{options}: {pod}");
            }
        }
    }

    /// The answer, written field by field, is the AdmissionReview it was as a
    /// serialised struct: escapes in the uid and the warnings included.
    #[test]
    fn the_answer_should_be_an_admission_review() {
        let a = answer(
            "u\"1\\",
            Some(b"[{\"op\":\"add\"}]".to_vec()),
            vec!["w \"1\"\n".into(), "w2".into()],
            Outcome::Mutated,
            String::new(),
        );
        let v: Json = serde_json::from_slice(&a.body).expect("JSON");
        assert_eq!(
            v,
            json!({"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": {
                "uid": "u\"1\\", "allowed": true, "patchType": "JSONPatch",
                "patch": "W3sib3AiOiJhZGQifV0=", "warnings": ["w \"1\"\n", "w2"]}})
        );
        let a = answer("u", None, Vec::new(), Outcome::Skipped, String::new());
        assert_eq!(
            String::from_utf8_lossy(&a.body),
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":true}}"#
        );
    }

    #[test]
    fn updates_should_be_allowed_without_a_patch() {
        let a = review(
            &review_of(pod(json!({})), "UPDATE"),
            &defaults(),
            OptIn::Namespace,
        )
        .expect("review");
        assert_eq!(a.outcome, Outcome::Skipped);
    }
}
