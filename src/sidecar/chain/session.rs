//! Templates over the token's `kubernetes.io` claims, and fitting a name to what
//! STS accepts.
//!
//! A template such as `{namespace}.{pod}` is rendered once, from the first token
//! that has the claims it names, and kept for the life of the process: the pod
//! name and uid never change while a pod lives, so neither does the session
//! name, whatever refreshes and token rotations happen (a principal that changes
//! at re-authentication makes MSK drop the client).
//!
//! STS allows a session name (and a SourceIdentity) of 2 to 64 characters of
//! `[\w+=,.@-]`. [`fit`] replaces other characters with `-`; a name longer than
//! 64 keeps its first 22 and last 32 characters around 8 characters of a hash of
//! the whole, so the random suffix of a pod name (at the end of
//! `{namespace}.{pod}`) survives, and two names that differ anywhere still
//! differ after shortening.

use std::fmt;

use crate::flags::Refusal;
use crate::sidecar::token::Claims;

/// STS's bounds on a role session name and a SourceIdentity.
pub const MAX_NAME_CHARS: usize = 64;
const MIN_NAME_CHARS: usize = 2;
/// What a shortened name keeps of its start and of its end.
const KEEP_HEAD: usize = 22;
const KEEP_TAIL: usize = 32;
const HASH_CHARS: usize = 8;

/// A value from the token's claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Namespace,
    Pod,
    PodUid,
    ServiceAccount,
}

impl Field {
    const ALL: [Field; 4] = [
        Field::Namespace,
        Field::Pod,
        Field::PodUid,
        Field::ServiceAccount,
    ];

    /// The placeholder's name, between braces.
    pub fn name(self) -> &'static str {
        match self {
            Field::Namespace => "namespace",
            Field::Pod => "pod",
            Field::PodUid => "pod-uid",
            Field::ServiceAccount => "service-account",
        }
    }

    /// Where in the token the value comes from, for messages.
    pub fn claim(self) -> &'static str {
        match self {
            Field::Namespace => "kubernetes.io namespace",
            Field::Pod => "kubernetes.io pod.name",
            Field::PodUid => "kubernetes.io pod.uid",
            Field::ServiceAccount => "kubernetes.io serviceaccount.name",
        }
    }

    /// The value in these claims. The namespace and the service account also
    /// come from `sub` (`system:serviceaccount:<namespace>:<name>`), which every
    /// service-account token has.
    fn value(self, claims: &Claims) -> Option<String> {
        let k = claims.kubernetes.as_ref();
        let from_sub = |i: usize| {
            claims
                .sub
                .as_deref()
                .and_then(|s| s.strip_prefix("system:serviceaccount:"))
                .and_then(|s| s.split(':').nth(i))
                .map(str::to_string)
        };
        let v = match self {
            Field::Namespace => k.and_then(|k| k.namespace.clone()).or_else(|| from_sub(0)),
            Field::Pod => k.and_then(|k| k.pod.as_ref()?.name.clone()),
            Field::PodUid => k.and_then(|k| k.pod.as_ref()?.uid.clone()),
            Field::ServiceAccount => k
                .and_then(|k| k.serviceaccount.as_ref()?.name.clone())
                .or_else(|| from_sub(1)),
        };
        v.filter(|v| !v.is_empty())
    }
}

/// A claim a template needs and the token lacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the token has no {} claim (is it bound to a pod?), which {{{}}} needs", .0.claim(), .0.name())]
pub struct MissingClaim(pub Field);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Field),
}

/// Text with `{namespace}`, `{pod}`, `{pod-uid}` and `{service-account}`
/// placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// What a template may contain, for refusals.
pub const TEMPLATE_FORM: &str =
    "text with the placeholders {namespace}, {pod}, {pod-uid} and {service-account}";

impl Template {
    /// A template of fixed text.
    pub fn text(s: impl Into<String>) -> Template {
        let s = s.into();
        Template {
            parts: if s.is_empty() {
                Vec::new()
            } else {
                vec![Part::Text(s)]
            },
        }
    }

    /// A template of one placeholder.
    pub fn field(f: Field) -> Template {
        Template {
            parts: vec![Part::Field(f)],
        }
    }

    /// Parses a template; an unknown placeholder or a lone brace is refused.
    pub fn parse(s: &str) -> Result<Template, Refusal> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err(Refusal::new("has a '}' with no '{'", TEMPLATE_FORM));
            }
            let Some(len) = rest[open..].find('}') else {
                return Err(Refusal::new("has a '{' with no '}'", TEMPLATE_FORM));
            };
            let name = &rest[open + 1..open + len];
            let Some(field) = Field::ALL.into_iter().find(|f| f.name() == name) else {
                return Err(Refusal::new(
                    format!("has an unknown placeholder {{{name}}}"),
                    TEMPLATE_FORM,
                ));
            };
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            parts.push(Part::Field(field));
            rest = &rest[open + len + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// True when the template has no placeholder.
    pub fn is_fixed(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// The fixed text of the template (placeholders left out): what can be
    /// checked before any token is seen.
    pub fn fixed_text(&self) -> String {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Text(t) => Some(t.as_str()),
                Part::Field(_) => None,
            })
            .collect()
    }

    /// The placeholders in the template.
    pub fn fields(&self) -> impl Iterator<Item = Field> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(f) => Some(*f),
            Part::Text(_) => None,
        })
    }

    /// The text with each placeholder replaced by its claim.
    pub fn render(&self, claims: &Claims) -> Result<String, MissingClaim> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) => out.push_str(&f.value(claims).ok_or(MissingClaim(*f))?),
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.parts {
            match p {
                Part::Text(t) => f.write_str(t)?,
                Part::Field(field) => write!(f, "{{{}}}", field.name())?,
            }
        }
        Ok(())
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

/// `raw` made into a name STS accepts (`[\w+=,.@-]{2,64}`): other characters
/// become `-`, a short name is padded with `-`, and a long one keeps its first
/// 22 and last 32 characters around a hash of all of `raw`.
pub fn fit(raw: &str) -> String {
    let cleaned: Vec<char> = raw
        .trim()
        .chars()
        .map(|c| if is_name_char(c) { c } else { '-' })
        .collect();
    if cleaned.len() > MAX_NAME_CHARS {
        let hash = crate::id::stable_id("", raw);
        let head: String = cleaned[..KEEP_HEAD].iter().collect();
        let tail: String = cleaned[cleaned.len() - KEEP_TAIL..].iter().collect();
        return format!("{head}-{}-{tail}", &hash[..HASH_CHARS]);
    }
    let mut name: String = cleaned.into_iter().collect();
    while name.len() < MIN_NAME_CHARS {
        name.push('-');
    }
    name
}

/// Whether `s` is already a name STS accepts.
pub fn is_valid_name(s: &str) -> bool {
    (MIN_NAME_CHARS..=MAX_NAME_CHARS).contains(&s.chars().count()) && s.chars().all(is_name_char)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidecar::token::{KubernetesClaims, ObjectRef};
    use proptest::prelude::*;

    fn claims(namespace: &str, pod: &str) -> Claims {
        Claims {
            sub: Some(format!("system:serviceaccount:{namespace}:app")),
            kubernetes: Some(KubernetesClaims {
                namespace: Some(namespace.into()),
                pod: Some(ObjectRef {
                    name: Some(pod.into()),
                    uid: Some("0b3c2f6e-1111-4222-8333-944445555666".into()),
                }),
                serviceaccount: Some(ObjectRef {
                    name: Some("app".into()),
                    uid: None,
                }),
            }),
            ..Claims::default()
        }
    }

    #[test]
    fn templates_should_render_the_claims() {
        let t = Template::parse("{namespace}.{pod}").unwrap();
        assert!(!t.is_fixed());
        assert_eq!(t.to_string(), "{namespace}.{pod}");
        let c = claims("payments", "api-7d9f8-x2x4z");
        assert_eq!(t.render(&c).unwrap(), "payments.api-7d9f8-x2x4z");
        let t = Template::parse("sa-{service-account}@{pod-uid}").unwrap();
        assert_eq!(
            t.render(&c).unwrap(),
            "sa-app@0b3c2f6e-1111-4222-8333-944445555666"
        );
        assert!(Template::parse("plain").unwrap().is_fixed());
    }

    #[test]
    fn templates_should_refuse_unknown_placeholders_and_lone_braces() {
        for bad in ["{node}", "{pod", "pod}", "{}"] {
            let e = Template::parse(bad).unwrap_err();
            assert!(e.allowed.contains("{namespace}"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_missing_claim_should_be_named() {
        let t = Template::parse("{namespace}.{pod}").unwrap();
        let c = Claims {
            sub: Some("system:serviceaccount:demo:app".into()),
            ..Claims::default()
        };
        let e = t.render(&c).unwrap_err();
        assert_eq!(e, MissingClaim(Field::Pod));
        assert_eq!(
            e.to_string(),
            "the token has no kubernetes.io pod.name claim (is it bound to a pod?), which {pod} needs"
        );
        // The namespace falls back to `sub`.
        assert_eq!(
            Template::parse("{namespace}").unwrap().render(&c).unwrap(),
            "demo"
        );
    }

    #[test]
    fn fit_should_clean_pad_and_keep_short_names() {
        assert_eq!(
            fit("my session/with:bad chars"),
            "my-session-with-bad-chars"
        );
        assert_eq!(fit("a"), "a-");
        let long = format!("ns.{}-7d9f8-x2x4z", "a".repeat(80));
        let f = fit(&long);
        assert_eq!(f.len(), 64);
        assert!(f.ends_with("-7d9f8-x2x4z"), "{f}");
        assert!(f.starts_with("ns.aaaa"), "{f}");
        assert!(is_valid_name(&f));
    }

    /// A DNS-1123 label or subdomain as Kubernetes allows for namespaces (63)
    /// and pod names (253).
    fn dns_name(max: usize) -> impl Strategy<Value = String> {
        proptest::string::string_regex(&format!("[a-z0-9]([-a-z0-9.]{{0,{}}}[a-z0-9])?", max - 2))
            .unwrap()
    }

    proptest! {
        /// Any namespace and pod name up to Kubernetes' limits give a valid
        /// name, and two pods that differ only in their random suffix (a
        /// ReplicaSet's five characters) never get the same one.
        #[test]
        fn session_names_should_be_valid_and_tell_pods_apart(
            namespace in dns_name(63),
            base in dns_name(247),
            a in "[bcdfghjklmnpqrstvwxz2456789]{5}",
            b in "[bcdfghjklmnpqrstvwxz2456789]{5}",
            template in prop::sample::select(vec![
                "{namespace}.{pod}", "{pod}.{namespace}", "{pod}", "irsa-{namespace}-{pod}-{service-account}",
            ]),
        ) {
            let t = Template::parse(template).unwrap();
            let pod_a = format!("{base}-{a}");
            let pod_b = format!("{base}-{b}");
            let name_a = fit(&t.render(&claims(&namespace, &pod_a)).unwrap());
            let name_b = fit(&t.render(&claims(&namespace, &pod_b)).unwrap());
            prop_assert!(is_valid_name(&name_a), "{}", name_a);
            prop_assert!(is_valid_name(&name_b), "{}", name_b);
            prop_assert_eq!(a == b, name_a == name_b, "{} / {}", name_a, name_b);
        }
    }
}
