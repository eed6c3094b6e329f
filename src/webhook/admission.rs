//! One `AdmissionReview` in, one out: the webhook's decision, with no I/O.
//!
//! The contract (`admission.k8s.io/v1`):
//!
//! - a review that is not JSON, not `admission.k8s.io/v1` `AdmissionReview`, or
//!   has no `request.uid` is [`BadReview`] (the server answers 400 with its
//!   message); so is a Pod CREATE without an `object`;
//! - everything else is allowed: pods that opted in get a JSONPatch (RFC 6902)
//!   computed between the pod as sent and the pod after the `inject` engine;
//!   every other case gets no patch, and a `warnings` entry when the pod asked
//!   for the sidecar but cannot have it (`hostNetwork`, a bad annotation, a pod
//!   the engine refuses). The webhook never denies a pod: the sidecar is an
//!   addition, and a pod without it is better than no pod.

use serde_json::Value as Json;

use crate::cli::InjectArgs;
use crate::config::RoleArn;
use crate::inject::{AuthTokenSource, Options, SIDECAR_NAME};

/// The opt-in label (namespaces, pods) and annotation (pods).
pub const INJECT: &str = "irsa-proxy.io/inject";
/// Per-pod options, each standing for the `inject` flag of the same name.
pub const ROLE_ARN: &str = "irsa-proxy.io/role-arn";
pub const LINK_LOCAL: &str = "irsa-proxy.io/link-local";
pub const PORT: &str = "irsa-proxy.io/port";
pub const CONTAINERS: &str = "irsa-proxy.io/containers";
pub const AUDIENCE: &str = "irsa-proxy.io/audience";
pub const IMAGE: &str = "irsa-proxy.io/image";

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
    let review: Json =
        serde_json::from_slice(body).map_err(|e| BadReview::NotJson(e.to_string()))?;
    let api_version = review.get("apiVersion").and_then(Json::as_str);
    let kind = review.get("kind").and_then(Json::as_str);
    if api_version != Some(API_VERSION) || kind != Some("AdmissionReview") {
        return Err(BadReview::NotAReview(
            api_version.unwrap_or("").into(),
            kind.unwrap_or("").into(),
        ));
    }
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
    let pod = match request.get("object") {
        Some(o @ Json::Object(_)) => o,
        _ => return Err(BadReview::NoObject),
    };
    let label = pod_label(pod, namespace);
    let (patch, warnings, outcome) = decide(pod, defaults, opt_in);
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
    pod: &Json,
    defaults: &InjectArgs,
    opt_in: OptIn,
) -> (Option<Vec<u8>>, Vec<String>, Outcome) {
    let annotation =
        |key: &str| pod.pointer(&format!("/metadata/annotations/{}", key.replace('/', "~1")));
    let label = pod
        .pointer(&format!("/metadata/labels/{}", INJECT.replace('/', "~1")))
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
    opts.auth_token = AuthTokenSource::Value(crate::server::random_token());
    opts.emit_auth_secret = false;

    match crate::inject::inject_pod(pod, &opts) {
        Ok(Some(mutated)) => {
            // Straight to text: the patch is only ever sent.
            let patch = json_patch::diff(pod, &mutated);
            match serde_json::to_vec(&patch) {
                Ok(p) => (Some(p), Vec::new(), Outcome::Mutated),
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
        .replace("--container ", &format!("{CONTAINERS} "))
        .replace("--link-local", LINK_LOCAL)
        .replace("--image", IMAGE)
        .replace("--role-arn", ROLE_ARN)
        .replace("--token-audience", AUDIENCE)
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
    let audience = text(AUDIENCE);
    let image = text(IMAGE);
    if let Some(arn) = role {
        match RoleArn::parse(&arn) {
            Ok(_) => args.role_arn = Some(arn),
            Err(form) => errors.push(format!("{ROLE_ARN}: {arn:?}: expected {form}")),
        }
    }
    match link_local.as_deref() {
        None => {}
        Some("true") => args.link_local = true,
        Some("false") => args.link_local = false,
        Some(v) => errors.push(format!(
            "{LINK_LOCAL}: {v:?}: expected \"true\" or \"false\""
        )),
    }
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => args.port = n,
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
    if let Some(aud) = audience {
        if aud.is_empty() {
            errors.push(format!("{AUDIENCE}: must not be empty"));
        } else {
            args.token_audience = aud;
        }
    }
    if let Some(img) = image {
        if img.is_empty() || img.chars().any(char::is_whitespace) {
            errors.push(format!("{IMAGE}: {img:?}: expected an image reference"));
        } else {
            args.image = img;
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
    // Serialised from borrowed fields: no intermediate JSON tree.
    #[derive(serde::Serialize)]
    struct Review<'a> {
        #[serde(rename = "apiVersion")]
        api_version: &'a str,
        kind: &'a str,
        response: Response<'a>,
    }
    #[derive(serde::Serialize)]
    struct Response<'a> {
        uid: &'a str,
        allowed: bool,
        #[serde(rename = "patchType", skip_serializing_if = "Option::is_none")]
        patch_type: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch: Option<String>,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        warnings: &'a [String],
    }
    let review = Review {
        api_version: API_VERSION,
        kind: "AdmissionReview",
        response: Response {
            uid,
            allowed: true,
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch: patch.map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
            warnings: &warnings,
        },
    };
    Answer {
        body: serde_json::to_vec(&review).unwrap_or_default(),
        outcome,
        pod,
    }
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
