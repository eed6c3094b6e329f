//! `inject`'s edge: a pod spec (or pod metadata) of a YAML document to the
//! engine's JSON and back.
//!
//! JSON holds a subset of what YAML can write: mapping keys that are strings,
//! finite numbers, no tags. A pod spec needs nothing else (the API server
//! stores it as JSON), so anything outside that is refused, naming where it
//! is, rather than changed. Everything else reads back the same: strings,
//! booleans, null, integers and floats keep their type, and mappings their
//! key order (`serde_json`'s `preserve_order`).

use serde_json::{Map, Number, Value as Json};
use serde_norway::{Mapping, Value as Yaml};

use super::pod::Problem;

/// `v` (a mapping) as a JSON object; `at` names it in errors (`spec`).
pub(crate) fn to_json_object(v: &Yaml, at: &str) -> Result<Map<String, Json>, Problem> {
    match v {
        Yaml::Mapping(m) => mapping_to_json(m, at),
        _ => Err(Problem::NoPodSpec(at.into())),
    }
}

/// A YAML mapping as a JSON object; `at` names it in errors (`metadata`).
pub(crate) fn mapping_to_json(m: &Mapping, at: &str) -> Result<Map<String, Json>, Problem> {
    object(m).map_err(|NotJson { mut path, what }| {
        path.push(at.to_string());
        path.reverse();
        Problem::NotJson {
            at: path.concat(),
            what,
        }
    })
}

/// A JSON value as YAML.
pub(crate) fn from_json(v: Json) -> Yaml {
    match v {
        Json::Null => Yaml::Null,
        Json::Bool(b) => Yaml::Bool(b),
        Json::Number(n) => Yaml::Number(match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => u.into(),
            (None, Some(i)) => i.into(),
            // A JSON number is a u64, an i64 or a finite f64.
            (None, None) => n.as_f64().unwrap_or_default().into(),
        }),
        Json::String(s) => Yaml::String(s),
        Json::Array(items) => Yaml::Sequence(items.into_iter().map(from_json).collect()),
        Json::Object(m) => Yaml::Mapping(mapping_from_json(m)),
    }
}

/// A JSON object as a YAML mapping, keys in the same order.
pub(crate) fn mapping_from_json(m: Map<String, Json>) -> Mapping {
    let mut out = Mapping::with_capacity(m.len());
    for (k, v) in m {
        out.insert(Yaml::String(k), from_json(v));
    }
    out
}

/// What JSON cannot hold, and the path to it from the innermost step out.
struct NotJson {
    path: Vec<String>,
    what: String,
}

impl NotJson {
    fn new(what: String) -> NotJson {
        NotJson {
            path: Vec::new(),
            what,
        }
    }

    fn within(mut self, step: String) -> NotJson {
        self.path.push(step);
        self
    }
}

fn object(m: &Mapping) -> Result<Map<String, Json>, NotJson> {
    let mut out = Map::with_capacity(m.len());
    for (k, v) in m {
        let Yaml::String(key) = k else {
            let shown = serde_norway::to_string(k).unwrap_or_default();
            return Err(NotJson::new(format!(
                "a key that is not a string ({})",
                shown.trim_end()
            )));
        };
        let v = value(v).map_err(|e| e.within(format!(".{key}")))?;
        out.insert(key.clone(), v);
    }
    Ok(out)
}

fn value(v: &Yaml) -> Result<Json, NotJson> {
    Ok(match v {
        Yaml::Null => Json::Null,
        Yaml::Bool(b) => Json::Bool(*b),
        Yaml::Number(n) => {
            if let Some(u) = n.as_u64() {
                Json::Number(u.into())
            } else if let Some(i) = n.as_i64() {
                Json::Number(i.into())
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                Json::Number(
                    Number::from_f64(f).ok_or_else(|| NotJson::new(format!("the number {n}")))?,
                )
            }
        }
        Yaml::String(s) => Json::String(s.clone()),
        Yaml::Sequence(items) => Json::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| value(item).map_err(|e| e.within(format!("[{i}]"))))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(m) => Json::Object(object(m)?),
        Yaml::Tagged(t) => return Err(NotJson::new(format!("the YAML tag {}", t.tag))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Yaml {
        serde_norway::from_str(text).expect("YAML")
    }

    #[test]
    fn a_pod_spec_should_read_back_the_same() {
        let text = "containers:\n- name: app\n  ports:\n  - containerPort: 8080\n  env:\n  - {name: B, value: \"on\"}\n  - {name: A, value: '1'}\nz: null\nratio: 1.5\nneg: -3\nbig: 18446744073709551615\nflag: true\na: {}\n";
        let doc = yaml(text);
        let json = to_json_object(&doc, "spec").expect("JSON");
        let keys: Vec<&str> = json.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["containers", "z", "ratio", "neg", "big", "flag", "a"]
        );
        assert_eq!(from_json(Json::Object(json)), doc);
    }

    #[test]
    fn what_json_cannot_hold_should_be_refused_where_it_is() {
        for (text, at, what) in [
            (
                "nodeSelector:\n  1: x\n",
                "spec.nodeSelector",
                "a key that is not a string (1)",
            ),
            (
                "containers:\n- name: a\n  x: !custom 1\n",
                "spec.containers[0].x",
                "the YAML tag !custom",
            ),
            ("x: .inf\n", "spec.x", "the number .inf"),
        ] {
            match to_json_object(&yaml(text), "spec") {
                Err(Problem::NotJson { at: a, what: w }) => {
                    assert_eq!((a.as_str(), w.as_str()), (at, what), "{text}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
