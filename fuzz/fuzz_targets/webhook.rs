//! Any bytes into the webhook's review handling (`admission::review`, what
//! `POST /mutate` and `/mutate/opt-in` run on a body): never panics; every
//! answer is an allowing AdmissionReview; every patch it returns applies to its
//! pod (json-patch), and the patched pod, reviewed again as the API server
//! does under `reinvocationPolicy: IfNeeded`, gets no second patch.
//!
//! The first byte picks the entry (bit 0: `/mutate` or `/mutate/opt-in`) and
//! what the rest is (bit 1: a whole review, or a pod that goes into the
//! envelope the API server sends), so that most inputs reach the engine.
#![no_main]
use std::sync::OnceLock;

use base64::Engine;
use irsa_proxy::cli::{InjectArgs, SidecarArgs};
use irsa_proxy::tools::webhook::admission::{review, OptIn};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fn defaults() -> &'static InjectArgs {
    static DEFAULTS: OnceLock<InjectArgs> = OnceLock::new();
    DEFAULTS.get_or_init(|| {
        InjectArgs::with_sidecar(SidecarArgs {
            image: "registry.example/irsa-proxy:1".into(),
            classic_sidecar: false,
            port: 9911,
            token_audience: "sts.amazonaws.com".into(),
            token_expiration: 86400,
        })
        .expect("inject's defaults")
    })
}

/// A Pod CREATE as the API server sends it, carrying `pod`.
fn envelope(pod: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "apps", "operation": "CREATE", "object": pod,
        }
    })
}

/// The answer's patch, decoded, if it has one.
fn patch_of(answer: &[u8]) -> Option<json_patch::Patch> {
    let answer: Value = serde_json::from_slice(answer).expect("the answer is JSON");
    let response = &answer["response"];
    assert_eq!(
        response["allowed"], true,
        "the webhook never denies: {answer}"
    );
    let patch = response
        .get("patch")?
        .as_str()
        .expect("the patch is a string");
    assert_eq!(response["patchType"], "JSONPatch", "{answer}");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .expect("the patch is base64");
    Some(serde_json::from_slice(&patch).expect("the patch is an RFC 6902 patch"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let opt_in = if mode & 1 == 0 {
        OptIn::Namespace
    } else {
        OptIn::Annotation
    };
    let body = if mode & 2 == 0 {
        rest.to_vec()
    } else {
        match serde_json::from_slice::<Value>(rest) {
            Ok(pod) => serde_json::to_vec(&envelope(pod)).expect("serialise"),
            Err(_) => return,
        }
    };
    // A review that is not one is a 400; nothing more to check.
    let Ok(answer) = review(&body, defaults(), opt_in) else {
        return;
    };
    let Some(patch) = patch_of(&answer.body) else {
        return;
    };
    let mut sent: Value = serde_json::from_slice(&body).expect("a patched review was JSON");
    let mut pod = sent["request"]["object"].take();
    json_patch::patch(&mut pod, &patch)
        .unwrap_or_else(|e| panic!("the patch does not apply to its pod: {e}"));
    sent["request"]["object"] = pod;
    let again = review(
        &serde_json::to_vec(&sent).expect("serialise"),
        defaults(),
        opt_in,
    )
    .expect("the patched pod's review is refused");
    if let Some(second) = patch_of(&again.body) {
        panic!("the patched pod was patched again: {second:?}");
    }
});
