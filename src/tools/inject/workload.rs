//! Where the pod templates are in the workload kinds `inject` knows.
//!
//! A document is looked at only if its `kind` and the group of its `apiVersion`
//! name a built-in workload; a custom resource that happens to be called
//! `Deployment` passes through untouched. `kind: List` (what `kubectl get -o yaml`
//! prints for several objects) is searched item by item.

use serde_norway::Value;

use super::pod::Problem;

/// One pod spec found in a document.
pub(crate) struct PodSpecAt {
    /// Names the object in error messages: `Deployment/api`, `items[1] Job/backup`.
    pub label: String,
    /// Keys and list indexes from the document root to the pod spec mapping.
    pub path: Vec<Step>,
    /// The object's `metadata.namespace`, where its pods run (`None`: the
    /// namespace the manifest is applied to).
    pub namespace: Option<String>,
}

#[derive(Clone)]
pub(crate) enum Step {
    Key(&'static str),
    Index(usize),
}

/// The kinds whose pod spec lives at `spec`, `spec.template.spec` or, for CronJob,
/// `spec.jobTemplate.spec.template.spec`, keyed by kind and API group.
fn pod_spec_path(api_version: &str, kind: &str) -> Option<&'static [&'static str]> {
    const POD: &[&str] = &["spec"];
    const TEMPLATE: &[&str] = &["spec", "template", "spec"];
    const POD_TEMPLATE: &[&str] = &["template", "spec"];
    const CRON: &[&str] = &["spec", "jobTemplate", "spec", "template", "spec"];
    match (api_version, kind) {
        ("v1", "Pod") => Some(POD),
        ("v1", "ReplicationController") => Some(TEMPLATE),
        ("v1", "PodTemplate") => Some(POD_TEMPLATE),
        ("apps/v1", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet") => Some(TEMPLATE),
        ("batch/v1", "Job") => Some(TEMPLATE),
        ("batch/v1", "CronJob") => Some(CRON),
        _ => None,
    }
}

/// `Kind/name` of an object, for error messages.
pub(crate) fn describe(doc: &Value) -> String {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("object");
    match doc
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
    {
        Some(name) => format!("{kind}/{name}"),
        None => kind.to_string(),
    }
}

/// Every pod spec in `doc`, in document order. A workload whose pod spec is missing
/// is an error: it cannot be what the user meant to inject.
pub(crate) fn find_pod_specs(doc: &Value) -> Result<Vec<PodSpecAt>, (String, Problem)> {
    let mut found = Vec::new();
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind == "List" {
        if let Some(items) = doc.get("items").and_then(Value::as_sequence) {
            for (i, item) in items.iter().enumerate() {
                if let Some(at) = find_in_object(item, &format!("items[{i}] "))? {
                    let mut path = vec![Step::Key("items"), Step::Index(i)];
                    path.extend(at.path);
                    found.push(PodSpecAt { path, ..at });
                }
            }
        }
    } else if let Some(at) = find_in_object(doc, "")? {
        found.push(at);
    }
    Ok(found)
}

fn find_in_object(obj: &Value, prefix: &str) -> Result<Option<PodSpecAt>, (String, Problem)> {
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let Some(keys) = pod_spec_path(api_version, kind) else {
        return Ok(None);
    };
    let label = format!("{prefix}{}", describe(obj));
    let mut at = obj;
    for key in keys {
        match at.get(*key) {
            Some(next) if next.is_mapping() => at = next,
            _ => return Err((label, Problem::NoPodSpec(keys.join(".")))),
        }
    }
    Ok(Some(PodSpecAt {
        label,
        path: keys.iter().map(|k| Step::Key(k)).collect(),
        namespace: namespace(obj),
    }))
}

/// The objects of a document: the document itself, or the items of a `List`.
pub(crate) fn objects(doc: &Value) -> Vec<&Value> {
    match doc.get("items").and_then(Value::as_sequence) {
        Some(items) if doc.get("kind").and_then(Value::as_str) == Some("List") => {
            items.iter().collect()
        }
        _ => vec![doc],
    }
}

pub(crate) fn name(obj: &Value) -> Option<&str> {
    obj.get("metadata")?.get("name")?.as_str()
}

pub(crate) fn namespace(obj: &Value) -> Option<String> {
    obj.get("metadata")?
        .get("namespace")?
        .as_str()
        .map(str::to_string)
}

/// The path of the pod's metadata, given the path of its spec: the sibling
/// `metadata` of a template's `spec`, or the object's own for a Pod.
pub(crate) fn metadata_path(spec_path: &[Step]) -> Vec<Step> {
    let mut path = spec_path.to_vec();
    path.pop();
    path.push(Step::Key("metadata"));
    path
}

/// Follows `path`, creating (or replacing a null with) an empty mapping at the
/// last key if needed.
pub(crate) fn get_or_insert_mapping<'a>(
    doc: &'a mut Value,
    path: &[Step],
) -> Option<&'a mut serde_norway::Mapping> {
    let (last, parent) = path.split_last()?;
    let Step::Key(key) = last else { return None };
    let parent = get_mut(doc, parent)?.as_mapping_mut()?;
    let slot = parent
        .entry((*key).into())
        .or_insert_with(|| Value::Mapping(Default::default()));
    if slot.is_null() {
        *slot = Value::Mapping(Default::default());
    }
    slot.as_mapping_mut()
}

/// Follows `path` (found by [`find_pod_specs`] on the same document) to the pod spec.
pub(crate) fn get_mut<'a>(doc: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    let mut at = doc;
    for step in path {
        at = match step {
            Step::Key(k) => at.get_mut(*k)?,
            Step::Index(i) => at.get_mut(*i)?,
        };
    }
    Some(at)
}
