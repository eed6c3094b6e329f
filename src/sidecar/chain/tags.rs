//! Session tags: `pod-identity` (the six tags EKS Pod Identity adds) and fixed
//! `KEY=VALUE` tags, checked against AWS's limits before anything is called.
//!
//! Limits (IAM "Passing session tags in AWS STS"): at most 50 tags; a key is 1 to
//! 128 and a value 0 to 256 characters of letters, digits, spaces and
//! `_ . : / = + - @`; keys are unique ignoring case and may not start with
//! `aws:`; every transitive key must be one of the tags.

use super::session::{Field, Template};
use crate::flags::{serve::MAX_SESSION_TAGS, Refusal};

const MAX_KEY_CHARS: usize = 128;
const MAX_VALUE_CHARS: usize = 256;

/// The `--session-tags` word for the six Pod Identity tags.
pub const POD_IDENTITY: &str = "pod-identity";

/// One session tag; its value may come from the token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTag {
    pub key: String,
    pub value: Template,
}

/// What `--session-tags` may contain, for refusals.
pub const TAGS_FORM: &str =
    "pod-identity or KEY=VALUE items, comma-separated (at most 50 tags; keys 1-128, values 0-256 of letters, digits, spaces and _.:/=+-@)";

fn is_tag_char(c: char) -> bool {
    c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c)
}

/// Why a tag key or value is not one AWS accepts; `None` when it is.
pub fn key_problem(key: &str) -> Option<String> {
    let n = key.chars().count();
    if !(1..=MAX_KEY_CHARS).contains(&n) {
        return Some(format!(
            "has a tag key of {n} characters (1 to {MAX_KEY_CHARS} allowed)"
        ));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Some(format!(
            "has the tag key {key:?}, and keys starting with aws: are AWS's"
        ));
    }
    if let Some(c) = key.chars().find(|c| !is_tag_char(*c)) {
        return Some(format!("has the tag key {key:?} with the character {c:?}"));
    }
    None
}

/// Why a tag value is not one AWS accepts; `None` when it is.
pub fn value_problem(key: &str, value: &str) -> Option<String> {
    let n = value.chars().count();
    if n > MAX_VALUE_CHARS {
        return Some(format!(
            "gives tag {key:?} a value of {n} characters (at most {MAX_VALUE_CHARS})"
        ));
    }
    if let Some(c) = value.chars().find(|c| !is_tag_char(*c)) {
        return Some(format!(
            "gives tag {key:?} a value with the character {c:?}"
        ));
    }
    None
}

/// The keys of the six tags EKS Pod Identity puts on its sessions.
pub const POD_IDENTITY_KEYS: [&str; 6] = [
    "eks-cluster-arn",
    "eks-cluster-name",
    "kubernetes-namespace",
    "kubernetes-service-account",
    "kubernetes-pod-name",
    "kubernetes-pod-uid",
];

/// The six Pod Identity tags. `eks-cluster-arn` only with a cluster ARN.
pub fn pod_identity(cluster_name: &str, cluster_arn: Option<&str>) -> Vec<SessionTag> {
    let field = |key: &str, f: Field| SessionTag {
        key: key.into(),
        value: Template::field(f),
    };
    let mut tags = Vec::new();
    if let Some(arn) = cluster_arn {
        tags.push(SessionTag {
            key: "eks-cluster-arn".into(),
            value: Template::text(arn),
        });
    }
    tags.push(SessionTag {
        key: "eks-cluster-name".into(),
        value: Template::text(cluster_name),
    });
    tags.push(field("kubernetes-namespace", Field::Namespace));
    tags.push(field("kubernetes-service-account", Field::ServiceAccount));
    tags.push(field("kubernetes-pod-name", Field::Pod));
    tags.push(field("kubernetes-pod-uid", Field::PodUid));
    tags
}

/// Parses the `--session-tags` items (already split at commas). `pod-identity`
/// is returned as a flag, for the caller to expand with the cluster flags.
pub fn parse_items<'a>(
    items: impl IntoIterator<Item = &'a str>,
) -> Result<(bool, Vec<SessionTag>), Refusal> {
    let mut pod_identity = false;
    let mut tags = Vec::new();
    for item in items.into_iter().map(str::trim).filter(|i| !i.is_empty()) {
        if item.eq_ignore_ascii_case(POD_IDENTITY) {
            pod_identity = true;
            continue;
        }
        let Some((key, value)) = item.split_once('=') else {
            return Err(Refusal::new(
                format!("has {item:?}, which is neither pod-identity nor KEY=VALUE"),
                TAGS_FORM,
            ));
        };
        let value = Template::parse(value).map_err(|r| {
            Refusal::new(
                format!("gives tag {key:?} a value that {}", r.problem),
                r.allowed,
            )
        })?;
        tags.push(SessionTag {
            key: key.trim().to_string(),
            value,
        });
    }
    Ok((pod_identity, tags))
}

/// Checks the tags and transitive keys against AWS's limits: count, key and
/// (fixed) value characters and lengths, unique keys, transitive keys among the
/// tags.
pub fn check(tags: &[SessionTag], transitive: &[String]) -> Result<(), Refusal> {
    let refuse = |problem: String| Err(Refusal::new(problem, TAGS_FORM));
    if tags.len() > MAX_SESSION_TAGS {
        return refuse(format!(
            "makes {} session tags (AWS allows {MAX_SESSION_TAGS})",
            tags.len()
        ));
    }
    let mut seen: Vec<String> = Vec::new();
    for t in tags {
        if let Some(p) = key_problem(&t.key) {
            return refuse(p);
        }
        if t.value.is_fixed() {
            if let Some(p) = value_problem(&t.key, &t.value.fixed_text()) {
                return refuse(p);
            }
        }
        let lower = t.key.to_lowercase();
        if seen.contains(&lower) {
            return refuse(format!(
                "has the tag key {:?} twice (keys are unique, ignoring case)",
                t.key
            ));
        }
        seen.push(lower);
    }
    for k in transitive {
        if !seen.contains(&k.to_lowercase()) {
            return Err(Refusal::new(
                format!("names {k:?}, which is not one of --session-tags"),
                "keys of --session-tags, comma-separated",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(k: &str, v: &str) -> SessionTag {
        SessionTag {
            key: k.into(),
            value: Template::text(v),
        }
    }

    #[test]
    fn pod_identity_should_be_the_six_eks_keys() {
        let keys: Vec<String> = pod_identity(
            "prod",
            Some("arn:aws:eks:us-east-1:111122223333:cluster/prod"),
        )
        .into_iter()
        .map(|t| t.key)
        .collect();
        assert_eq!(
            keys,
            [
                "eks-cluster-arn",
                "eks-cluster-name",
                "kubernetes-namespace",
                "kubernetes-service-account",
                "kubernetes-pod-name",
                "kubernetes-pod-uid"
            ]
        );
        assert_eq!(pod_identity("kind", None).len(), 5);
    }

    #[test]
    fn items_should_parse_pod_identity_and_pairs() {
        let (pi, tags) = parse_items(["pod-identity", " team=payments", "cost-center="]).unwrap();
        assert!(pi);
        assert_eq!(tags, vec![tag("team", "payments"), tag("cost-center", "")]);
        assert!(parse_items(["nonsense"]).is_err());
        assert!(parse_items(["a={node}"])
            .unwrap_err()
            .problem
            .contains("{node}"));
    }

    #[test]
    fn limits_should_be_checked() {
        let many: Vec<SessionTag> = (0..51).map(|i| tag(&format!("k{i}"), "v")).collect();
        assert!(check(&many, &[])
            .unwrap_err()
            .problem
            .contains("51 session tags"));
        assert!(check(&many[..50], &[]).is_ok());
        assert!(check(&[tag(&"k".repeat(129), "v")], &[]).is_err());
        assert!(check(&[tag("aws:x", "v")], &[]).is_err());
        assert!(check(&[tag("a", &"v".repeat(257))], &[]).is_err());
        assert!(check(&[tag("a", "semi;colon")], &[]).is_err());
        assert!(check(&[tag("Team", "a"), tag("team", "b")], &[])
            .unwrap_err()
            .problem
            .contains("twice"));
        assert!(check(&[tag("team", "a")], &["other".into()]).is_err());
        assert!(check(&[tag("team", "a b:c/d=e+f-g@h_i.j")], &["TEAM".into()]).is_ok());
    }
}
