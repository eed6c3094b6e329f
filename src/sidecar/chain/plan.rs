//! The chain as configured: the hops after the web-identity role and what they
//! carry, from `serve`'s flags (and their `IRSA_PROXY_*` twins), validated
//! before anything is called; and its rendering from the token's claims.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::session::{self, MissingClaim, Template};
use super::tags::{self, SessionTag};
use super::SessionPolicy;
use crate::arn::RoleArn;
use crate::cli::ServeArgs;
use crate::duration::format_duration;
use crate::flags::{self, serve as f, FlagError, Flags, Given, Refusal};
use crate::sidecar::sts::policy;
use crate::sidecar::token::Claims;

const CLUSTER_NAME_NEEDED: &str =
    "the cluster's name with --session-tags pod-identity (its eks-cluster-name tag)";
const NEEDS_CHAIN: &str =
    "needs a chain: AssumeRoleWithWebIdentity takes no ExternalId, session tags or SourceIdentity";
const NEEDS_CHAIN_ALLOWED: &str = "--chain-role-arn (IRSA_PROXY_CHAIN_ROLE_ARN) too";

/// What an ExternalId may be (STS's `externalId` constraint).
const EXTERNAL_ID_FORM: &str = "2 to 1224 of [A-Za-z0-9_+=,.@:/-]";

/// Where the last hop's ExternalId comes from. `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub enum ExternalId {
    Value(String),
    /// Re-read before every call, so a rotated Secret is picked up.
    File(PathBuf),
}

impl fmt::Debug for ExternalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExternalId::Value(v) => write!(f, "ExternalId(<{} characters>)", v.len()),
            ExternalId::File(p) => write!(f, "ExternalId(file {})", p.display()),
        }
    }
}

/// Why an ExternalId file could not be used; names the file, never the value.
#[derive(Debug, thiserror::Error)]
pub enum ExternalIdError {
    #[error("ExternalId file {path}: cannot read it: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ExternalId file {path}: does not hold {EXTERNAL_ID_FORM}")]
    Invalid { path: PathBuf },
}

impl ExternalIdError {
    /// The code for metrics and 503 bodies.
    pub fn code(&self) -> &'static str {
        match self {
            ExternalIdError::Unreadable { .. } => "ExternalIdFileUnreadable",
            ExternalIdError::Invalid { .. } => "ExternalIdFileInvalid",
        }
    }
}

fn is_external_id(s: &str) -> bool {
    (2..=1224).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@:/-".contains(&b))
}

impl ExternalId {
    /// The value to send now.
    pub fn read(&self) -> Result<String, ExternalIdError> {
        match self {
            ExternalId::Value(v) => Ok(v.clone()),
            ExternalId::File(path) => {
                let raw = std::fs::read(path).map_err(|source| ExternalIdError::Unreadable {
                    path: path.clone(),
                    source,
                })?;
                let v = String::from_utf8(raw)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| is_external_id(s))
                    .ok_or_else(|| ExternalIdError::Invalid { path: path.clone() })?;
                Ok(v)
            }
        }
    }
}

/// One `AssumeRole` after the web-identity role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub role: RoleArn,
    /// Only on the last hop: the role whose owner asks for one.
    pub external_id: Option<ExternalId>,
}

/// The chain and what it carries. Empty (no hops, no template) for a plain
/// `serve`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// In order; the last one's credentials are served.
    pub hops: Vec<Hop>,
    /// `--session-name` when it has placeholders; else the fixed name in
    /// `Config::session_name` is used as it is.
    pub session_name: Option<Template>,
    /// Sent with the first hop (AssumeRoleWithWebIdentity takes none).
    pub tags: Vec<SessionTag>,
    pub transitive_tag_keys: Vec<String>,
    /// Set on the first hop; AWS keeps it for the rest of the chain.
    pub source_identity: Option<Template>,
    /// Sent on the last call (the web-identity call without hops).
    pub session_policy: SessionPolicy,
}

/// The parts of a plan that come from the token, rendered once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub session_name: Option<String>,
    pub tags: Vec<(String, String)>,
    pub source_identity: Option<String>,
}

/// A claim missing for one flag, or a claim value AWS would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("{flag}: {missing}")]
    Missing {
        flag: &'static str,
        missing: MissingClaim,
    },
    #[error("--session-tags: the token's claims make a tag AWS refuses: it {0}")]
    Tag(String),
}

impl Plan {
    /// True when there is at least one hop.
    pub fn is_chained(&self) -> bool {
        !self.hops.is_empty()
    }

    /// True when something must be read from the token's claims.
    pub fn needs_claims(&self) -> bool {
        self.session_name.as_ref().is_some_and(|t| !t.is_fixed())
            || self.source_identity.as_ref().is_some_and(|t| !t.is_fixed())
            || self.tags.iter().any(|t| !t.value.is_fixed())
    }

    /// The role whose credentials are served: the last hop's, or `first`.
    pub fn served_role<'a>(&'a self, first: &'a RoleArn) -> &'a RoleArn {
        self.hops.last().map_or(first, |h| &h.role)
    }

    /// Renders the templates with the token's claims.
    pub fn render(&self, claims: &Claims) -> Result<Rendered, RenderError> {
        let missing = |flag| move |missing| RenderError::Missing { flag, missing };
        let session_name = match &self.session_name {
            Some(t) => Some(session::fit(
                &t.render(claims).map_err(missing(f::SESSION_NAME.name))?,
            )),
            None => None,
        };
        let source_identity = match &self.source_identity {
            Some(t) => Some(session::fit(
                &t.render(claims).map_err(missing(f::SOURCE_IDENTITY.name))?,
            )),
            None => None,
        };
        let mut tags = Vec::new();
        for t in &self.tags {
            let value = t
                .value
                .render(claims)
                .map_err(missing(f::SESSION_TAGS.name))?;
            if let Some(p) = tags::value_problem(&t.key, &value) {
                return Err(RenderError::Tag(p));
            }
            tags.push((t.key.clone(), value));
        }
        Ok(Rendered {
            session_name,
            tags,
            source_identity,
        })
    }

    /// Reads the chain's flags, recording every refusal in `flags`. `duration`
    /// is `--duration` as resolved (with where it came from, for the refusal).
    pub(crate) fn from_args(
        flags: &mut Flags<'_>,
        args: &ServeArgs,
        duration: Option<(Duration, Option<&'static str>, String)>,
    ) -> Plan {
        Plan::build(flags, args, duration, false).0
    }

    /// With several roles (`crate::sidecar::roles`): the settings every role's
    /// chain shares, without hops (each role names its own; `--chain-role-arn`
    /// is refused), and the ExternalId for each role's last hop. What needs a
    /// chain is checked per role by the caller.
    pub(crate) fn for_roles(flags: &mut Flags<'_>, args: &ServeArgs) -> (Plan, Option<ExternalId>) {
        Plan::build(flags, args, None, true)
    }

    fn build(
        flags: &mut Flags<'_>,
        args: &ServeArgs,
        duration: Option<(Duration, Option<&'static str>, String)>,
        roles: bool,
    ) -> (Plan, Option<ExternalId>) {
        let mut plan = Plan::default();

        // Hops: the flag, repeated, or the variable, comma-separated.
        let (values, source) = if !args.chain.chain_role_arn.is_empty() {
            (args.chain.chain_role_arn.clone(), None)
        } else if let Some((v, source)) = flags.raw(&f::CHAIN_ROLE_ARN, None) {
            (v.split(',').map(|s| s.trim().to_string()).collect(), source)
        } else {
            (Vec::new(), None)
        };
        if roles && !values.is_empty() {
            flags.refuse(FlagError::refused(
                f::CHAIN_ROLE_ARN.name,
                source,
                &values.join(","),
                Refusal::new(
                    "is given together with several roles (--roles-file or IRSA_PROXY_ROLES)",
                    "chain_role_arn in each role of the roles JSON",
                ),
            ));
        }
        let values = if roles { Vec::new() } else { values };
        for v in values.iter().filter(|v| !v.is_empty()) {
            match flags::role_arn(v) {
                Ok(role) => plan.hops.push(Hop {
                    role,
                    external_id: None,
                }),
                Err(why) => {
                    flags.refuse(FlagError::refused(f::CHAIN_ROLE_ARN.name, source, v, why))
                }
            }
        }

        // The ExternalId: a value (never quoted back) or a file.
        let value = flags.raw(&f::CHAIN_EXTERNAL_ID, args.chain_external_id.as_deref());
        let file = flags.raw(
            &f::CHAIN_EXTERNAL_ID_FILE,
            args.chain_external_id_file.as_deref(),
        );
        let external_id = match (value, file) {
            (Some((v, source)), Some(_)) => {
                flags.refuse(FlagError {
                    flag: f::CHAIN_EXTERNAL_ID.name,
                    source,
                    value: Given::Secret { chars: v.len() },
                    problem: "is given together with --chain-external-id-file".into(),
                    allowed: "one of them".into(),
                });
                None
            }
            (Some((v, source)), None) => {
                let v = v.trim().to_string();
                if is_external_id(&v) {
                    Some(ExternalId::Value(v))
                } else {
                    flags.refuse(FlagError {
                        flag: f::CHAIN_EXTERNAL_ID.name,
                        source,
                        value: Given::Secret { chars: v.len() },
                        problem: "is not an ExternalId".into(),
                        allowed: EXTERNAL_ID_FORM.into(),
                    });
                    None
                }
            }
            (None, Some(_)) => flags.parse(
                &f::CHAIN_EXTERNAL_ID_FILE,
                args.chain_external_id_file.as_deref(),
                |p| {
                    let id = ExternalId::File(PathBuf::from(p));
                    // Read once now, so a typo is exit 2 rather than a 503.
                    id.read().map(|_| id).map_err(|e| {
                        Refusal::new(
                            match e {
                                ExternalIdError::Unreadable { source, .. } => {
                                    format!("cannot be read ({source})")
                                }
                                ExternalIdError::Invalid { .. } => {
                                    "does not hold an ExternalId".to_string()
                                }
                            },
                            format!("a readable file holding {EXTERNAL_ID_FORM}"),
                        )
                    })
                },
            ),
            (None, None) => None,
        };
        let needs_chain = |flags: &mut Flags<'_>, flag: &flags::Flag, given: Option<&str>| {
            if let Some((v, source)) = flags.raw(flag, given) {
                flags.refuse(FlagError::refused(
                    flag.name,
                    source,
                    &v,
                    Refusal::new(NEEDS_CHAIN, NEEDS_CHAIN_ALLOWED),
                ));
            }
        };
        let mut external_id = external_id;
        match plan.hops.last_mut() {
            Some(last) => last.external_id = external_id.take(),
            // Several roles: each role's last hop gets it.
            None if roles => {}
            // No hop was given (a refused one is reported already).
            None if values.is_empty() => {
                let given = args.chain_external_id.as_deref();
                if let Some((v, source)) = flags.raw(&f::CHAIN_EXTERNAL_ID, given) {
                    flags.refuse(FlagError {
                        flag: f::CHAIN_EXTERNAL_ID.name,
                        source,
                        value: Given::Secret { chars: v.len() },
                        problem: NEEDS_CHAIN.into(),
                        allowed: NEEDS_CHAIN_ALLOWED.into(),
                    });
                }
                let file = args.chain_external_id_file.as_deref();
                needs_chain(flags, &f::CHAIN_EXTERNAL_ID_FILE, file);
            }
            None => {}
        }

        // The session name, when it is a template.
        if let Some((v, source)) = flags.raw(&f::SESSION_NAME, args.session_name.as_deref()) {
            if v.contains(['{', '}']) {
                match Template::parse(v.trim()) {
                    Ok(t) => plan.session_name = Some(t),
                    Err(why) => {
                        flags.refuse(FlagError::refused(f::SESSION_NAME.name, source, &v, why))
                    }
                }
            }
        }

        // Tags, transitive keys, SourceIdentity: only on a chain.
        let tag_items: Vec<String>;
        let tag_source;
        if !args.chain.session_tags.is_empty() {
            tag_items = args.chain.session_tags.clone();
            tag_source = None;
        } else if let Some((v, source)) = flags.raw(&f::SESSION_TAGS, None) {
            tag_items = vec![v];
            tag_source = source;
        } else {
            tag_items = Vec::new();
            tag_source = None;
        }
        let shown = tag_items.join(",");
        let parsed = tags::parse_items(tag_items.iter().flat_map(|i| i.split(',')));
        let cluster_name = flags.parse(&f::CLUSTER_NAME, args.chain.cluster_name.as_deref(), |v| {
            let v = v.trim();
            match tags::value_problem("eks-cluster-name", v) {
                None if !v.is_empty() => Ok(v.to_string()),
                _ => Err(Refusal::new(
                    "is not a cluster name",
                    "1 to 256 of letters, digits and _.:/=+-@",
                )),
            }
        });
        let cluster_arn = flags.parse(&f::CLUSTER_ARN, args.chain.cluster_arn.as_deref(), |v| {
            let v = v.trim();
            let ok = v.starts_with("arn:")
                && v.contains(":eks:")
                && v.contains(":cluster/")
                && tags::value_problem("eks-cluster-arn", v).is_none();
            if ok {
                Ok(v.to_string())
            } else {
                Err(Refusal::new(
                    "is not a cluster ARN",
                    "arn:<partition>:eks:<region>:<account>:cluster/<name>",
                ))
            }
        });
        match parsed {
            Ok((pod_identity, custom)) => {
                if pod_identity {
                    let given = flags
                        .raw(&f::CLUSTER_NAME, args.chain.cluster_name.as_deref())
                        .is_some();
                    match &cluster_name {
                        Some(name) => plan.tags = tags::pod_identity(name, cluster_arn.as_deref()),
                        // Refused already: a bad name, or tags without a chain.
                        None if given || (values.is_empty() && !roles) => {}
                        None => {
                            flags.refuse(FlagError::missing(&f::CLUSTER_NAME, CLUSTER_NAME_NEEDED))
                        }
                    }
                }
                // Pod Identity's tags are transitive, as EKS makes them.
                plan.transitive_tag_keys = plan.tags.iter().map(|t| t.key.clone()).collect();
                plan.tags.extend(custom);
            }
            Err(why) => flags.refuse(FlagError::refused(
                f::SESSION_TAGS.name,
                tag_source,
                &shown,
                why,
            )),
        }
        let transitive = flags.raw(
            &f::TRANSITIVE_TAG_KEYS,
            args.chain.transitive_tag_keys.as_deref(),
        );
        if let Some((v, _)) = &transitive {
            for k in v.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                if !plan
                    .transitive_tag_keys
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(k))
                {
                    plan.transitive_tag_keys.push(k.to_string());
                }
            }
        }
        if let Err(why) = tags::check(&plan.tags, &plan.transitive_tag_keys) {
            let (flag, source, v) = match &transitive {
                Some((v, source)) if why.allowed.starts_with("keys of") => {
                    (f::TRANSITIVE_TAG_KEYS.name, *source, v.clone())
                }
                _ => (f::SESSION_TAGS.name, tag_source, shown.clone()),
            };
            flags.refuse(FlagError::refused(flag, source, &v, why));
        }
        if let Some((v, source)) =
            flags.raw(&f::SOURCE_IDENTITY, args.chain.source_identity.as_deref())
        {
            match Template::parse(v.trim()) {
                Ok(t) if t.to_string().to_ascii_lowercase().starts_with("aws:") => {
                    flags.refuse(FlagError::refused(
                        f::SOURCE_IDENTITY.name,
                        source,
                        &v,
                        Refusal::new(
                            "starts with aws:, which AWS keeps for itself",
                            "a SourceIdentity such as {namespace}.{pod}",
                        ),
                    ))
                }
                Ok(t) => plan.source_identity = Some(t),
                Err(why) => {
                    flags.refuse(FlagError::refused(f::SOURCE_IDENTITY.name, source, &v, why))
                }
            }
        }
        if plan.hops.is_empty() && values.is_empty() && !roles {
            let given = (!args.chain.session_tags.is_empty()).then_some(shown.as_str());
            needs_chain(flags, &f::SESSION_TAGS, given);
            needs_chain(
                flags,
                &f::TRANSITIVE_TAG_KEYS,
                args.chain.transitive_tag_keys.as_deref(),
            );
            needs_chain(
                flags,
                &f::SOURCE_IDENTITY,
                args.chain.source_identity.as_deref(),
            );
        }

        plan.session_policy = session_policy(flags, args);

        // AWS caps a chained session at one hour: refused, not clamped, so the
        // lifetime the user asked for is never silently changed.
        if let (true, Some((d, source, v))) = (plan.is_chained(), duration) {
            if d > f::CHAINED_DURATION_CAP {
                flags.refuse(FlagError::refused(
                    f::DURATION.name,
                    source,
                    &v,
                    Refusal::new(
                        "is longer than the 1h AWS allows a session obtained by role chaining (--chain-role-arn)",
                        format!(
                            "{} to {} with a chain",
                            format_duration(*f::DURATION_RANGE.start()),
                            format_duration(f::CHAINED_DURATION_CAP)
                        ),
                    ),
                ));
            }
        }
        (plan, external_id)
    }
}

/// `--session-policy-file` and `--session-policy-arn` (or their variables),
/// read and checked now.
fn session_policy(flags: &mut Flags<'_>, args: &ServeArgs) -> SessionPolicy {
    let document = flags.parse(
        &f::SESSION_POLICY_FILE,
        args.session_policy_file.as_deref(),
        |p| policy::read_document(std::path::Path::new(p.trim())),
    );
    let (values, source) = if !args.session_policy_arn.is_empty() {
        (args.session_policy_arn.clone(), None)
    } else if let Some((v, source)) = flags.raw(&f::SESSION_POLICY_ARN, None) {
        (v.split(',').map(|s| s.trim().to_string()).collect(), source)
    } else {
        (Vec::new(), None)
    };
    let mut arns = Vec::new();
    for v in values.iter().filter(|v| !v.trim().is_empty()) {
        match policy::policy_arn(v) {
            Ok(a) => arns.push(a),
            Err(why) => flags.refuse(FlagError::refused(
                f::SESSION_POLICY_ARN.name,
                source,
                v,
                why,
            )),
        }
    }
    if arns.len() > policy::MAX_ARNS {
        flags.refuse(FlagError::refused(
            f::SESSION_POLICY_ARN.name,
            source,
            &arns.join(","),
            Refusal::new(
                format!("names {} managed policies", arns.len()),
                format!("at most {} policy ARNs (STS's limit)", policy::MAX_ARNS),
            ),
        ));
        arns.clear();
    }
    SessionPolicy { document, arns }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::cli::ServeArgs;
    use crate::flags;
    use crate::sidecar::config::Config;

    fn args(extra: impl FnOnce(&mut ServeArgs)) -> ServeArgs {
        let mut a = ServeArgs {
            role_arn: Some("arn:aws:iam::111122223333:role/irsa".into()),
            token_file: Some(std::env::temp_dir().join("token").display().to_string()),
            ..Default::default()
        };
        extra(&mut a);
        a
    }

    fn refusals(a: &ServeArgs, env: &[(&str, &str)]) -> String {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        flags::lines(&Config::from_args(a, &env).unwrap_err())
    }

    #[test]
    fn a_chain_should_be_read_from_flags_and_the_environment() {
        let env: HashMap<String, String> = [
            (
                "IRSA_PROXY_CHAIN_ROLE_ARN",
                "arn:aws:iam::222233334444:role/a, arn:aws:iam::444455556666:role/b",
            ),
            ("IRSA_PROXY_CHAIN_EXTERNAL_ID", "ext-1234"),
            ("IRSA_PROXY_SESSION_TAGS", "pod-identity,team=payments"),
            ("IRSA_PROXY_CLUSTER_NAME", "prod"),
            ("IRSA_PROXY_TRANSITIVE_TAG_KEYS", "team"),
            ("IRSA_PROXY_SOURCE_IDENTITY", "{namespace}.{pod}"),
            ("AWS_ROLE_SESSION_NAME", "{namespace}.{pod}"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = Config::from_args(&args(|_| {}), &env).unwrap();
        let p = &c.chain;
        assert_eq!(p.hops.len(), 2);
        assert_eq!(c.served_role().name, "b");
        assert_eq!(p.hops[0].external_id, None);
        assert_eq!(
            p.hops[1].external_id,
            Some(super::ExternalId::Value("ext-1234".into()))
        );
        assert_eq!(
            p.tags.len(),
            6,
            "five pod-identity tags (no cluster ARN) and team"
        );
        assert!(p.transitive_tag_keys.contains(&"team".to_string()));
        assert!(p
            .transitive_tag_keys
            .contains(&"kubernetes-pod-name".to_string()));
        assert_eq!(
            p.session_name.as_ref().unwrap().to_string(),
            "{namespace}.{pod}"
        );
        assert!(p.needs_claims());
        assert!(
            !format!("{p:?}").contains("ext-1234"),
            "the ExternalId is never formatted"
        );
    }

    #[test]
    fn a_chained_duration_over_an_hour_should_be_refused_in_one_line() {
        let a = args(|a| {
            a.chain.chain_role_arn = vec!["arn:aws:iam::444455556666:role/b".into()];
            a.duration = Some("2h".into());
        });
        assert_eq!(
            refusals(&a, &[]),
            "--duration: \"2h\" is longer than the 1h AWS allows a session obtained by role chaining (--chain-role-arn); expected 15m to 1h with a chain"
        );
        let a = args(|a| a.duration = Some("2h".into()));
        assert!(
            Config::from_args(&a, &HashMap::new()).is_ok(),
            "no cap without a chain"
        );
        let e = refusals(
            &args(|_| {}),
            &[
                (
                    "IRSA_PROXY_CHAIN_ROLE_ARN",
                    "arn:aws:iam::444455556666:role/b",
                ),
                ("IRSA_PROXY_DURATION", "90m"),
            ],
        );
        assert!(
            e.starts_with("--duration (IRSA_PROXY_DURATION): \"90m\" is longer"),
            "{e}"
        );
    }

    #[test]
    fn chain_settings_without_a_chain_or_with_bad_values_should_be_refused() {
        let a = args(|a| {
            a.chain.session_tags = vec!["team=payments".into()];
            a.chain.source_identity = Some("{pod}".into());
            a.chain_external_id = Some("SECRET-external".into());
        });
        let e = refusals(&a, &[]);
        assert!(
            e.contains("--session-tags: \"team=payments\" needs a chain"),
            "{e}"
        );
        assert!(
            e.contains("--source-identity: \"{pod}\" needs a chain"),
            "{e}"
        );
        assert!(
            e.contains("--chain-external-id: a value of 15 characters needs a chain"),
            "{e}"
        );
        assert!(!e.contains("SECRET"), "{e}");
        let a = args(|a| {
            a.chain.chain_role_arn = vec!["arn:aws:iam::1:role/b".into()];
            a.chain.session_tags = vec!["pod-identity".into()];
            a.session_name = Some("{namespace}.{node}".into());
            a.chain.transitive_tag_keys = Some("nope".into());
        });
        let e = refusals(&a, &[]);
        for needle in [
            "--chain-role-arn: \"arn:aws:iam::1:role/b\" is not a role ARN",
            "--cluster-name (IRSA_PROXY_CLUSTER_NAME) is required; expected the cluster's name with --session-tags pod-identity",
            "--session-name: \"{namespace}.{node}\" has an unknown placeholder {node}",
            "--transitive-tag-keys: \"nope\" names \"nope\", which is not one of --session-tags",
        ] {
            assert!(e.contains(needle), "missing {needle:?} in\n{e}");
        }
    }

    #[test]
    fn an_external_id_file_should_be_read_now_and_at_every_call() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("external-id");
        let a = args(|a| {
            a.chain.chain_role_arn = vec!["arn:aws:iam::444455556666:role/b".into()];
            a.chain_external_id_file = Some(file.display().to_string());
        });
        assert!(refusals(&a, &[]).starts_with("--chain-external-id-file: "));
        std::fs::write(&file, "first-id\n").unwrap();
        let c = Config::from_args(&a, &HashMap::new()).unwrap();
        let id = c.chain.hops[0].external_id.clone().unwrap();
        assert_eq!(id.read().unwrap(), "first-id");
        std::fs::write(&file, "second-id").unwrap();
        assert_eq!(id.read().unwrap(), "second-id");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(id.read().unwrap_err().code(), "ExternalIdFileInvalid");
    }

    #[test]
    fn a_session_policy_should_be_read_from_flags_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.json");
        std::fs::write(
            &file,
            "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": {\"Effect\": \"Allow\", \"Action\": \"s3:GetObject\", \"Resource\": \"arn:aws:s3:::b/*\"}\n}\n",
        )
        .unwrap();
        let a = args(|a| {
            a.session_policy_file = Some(file.display().to_string());
            a.session_policy_arn = vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".into()];
        });
        let c = Config::from_args(&a, &HashMap::new()).unwrap();
        let p = &c.chain.session_policy;
        assert!(!p.document.as_deref().unwrap().contains('\n'), "packed");
        assert_eq!(p.arns, ["arn:aws:iam::aws:policy/ReadOnlyAccess"]);
        assert!(!c.chain.is_chained(), "a session policy needs no chain");

        let env: HashMap<String, String> = [
            ("IRSA_PROXY_SESSION_POLICY_FILE", file.display().to_string()),
            (
                "IRSA_PROXY_SESSION_POLICY_ARNS",
                "arn:aws:iam::111122223333:policy/a, arn:aws:iam::aws:policy/b".into(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let c = Config::from_args(&args(|_| {}), &env).unwrap();
        assert!(c.chain.session_policy.document.is_some());
        assert_eq!(c.chain.session_policy.arns.len(), 2);
        assert!(Config::from_args(&args(|_| {}), &HashMap::new())
            .unwrap()
            .chain
            .session_policy
            .is_empty());
    }

    #[test]
    fn a_bad_session_policy_should_be_refused_in_one_line_each() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.json");
        std::fs::write(&file, "{\"Statement\": [").unwrap();
        let a = args(|a| {
            a.session_policy_file = Some(file.display().to_string());
            a.session_policy_arn = vec!["arn:aws:iam::111122223333:role/app".into()];
        });
        let e = refusals(&a, &[]);
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 2, "{e}");
        assert!(
            lines[0].starts_with(&format!(
                "--session-policy-file: {:?} is not JSON (",
                file.display().to_string()
            )),
            "{e}"
        );
        assert!(lines[0].ends_with(super::policy::DOCUMENT_FORM), "{e}");
        assert_eq!(
            lines[1],
            format!(
                "--session-policy-arn: \"arn:aws:iam::111122223333:role/app\" is not a managed policy ARN; expected {}",
                super::policy::ARN_FORM
            )
        );
        let eleven: Vec<String> = (0..11)
            .map(|i| format!("arn:aws:iam::aws:policy/p{i}"))
            .collect();
        let e = refusals(
            &args(|_| {}),
            &[("IRSA_PROXY_SESSION_POLICY_ARNS", &eleven.join(","))],
        );
        assert!(
            e.starts_with("--session-policy-arn (IRSA_PROXY_SESSION_POLICY_ARNS): ")
                && e.ends_with(
                    "names 11 managed policies; expected at most 10 policy ARNs (STS's limit)"
                ),
            "{e}"
        );
        let e = refusals(
            &args(|a| a.session_policy_file = Some("/nonexistent/policy.json".into())),
            &[],
        );
        assert!(e.contains("cannot be read (entity not found)"), "{e}");
    }

    #[test]
    fn a_session_policy_on_pod_identity_should_need_a_hop() {
        let token = std::env::temp_dir().join("token").display().to_string();
        let agent = |extra: &[(&str, &str)]| {
            let mut env: HashMap<String, String> = [
                (
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "http://169.254.170.23/v1/credentials",
                ),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token.as_str()),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            for (k, v) in extra {
                env.insert(k.to_string(), v.to_string());
            }
            env
        };
        let arn = (
            "IRSA_PROXY_SESSION_POLICY_ARNS",
            "arn:aws:iam::aws:policy/ReadOnlyAccess",
        );
        let e =
            flags::lines(&Config::from_args(&ServeArgs::default(), &agent(&[arn])).unwrap_err());
        assert_eq!(
            e,
            "--session-policy-arn (IRSA_PROXY_SESSION_POLICY_ARNS): \"arn:aws:iam::aws:policy/ReadOnlyAccess\" needs a chain with --source pod-identity: the Pod Identity agent takes no session policy; expected --chain-role-arn (IRSA_PROXY_CHAIN_ROLE_ARN) too, whose last AssumeRole carries it"
        );
        let hop = (
            "IRSA_PROXY_CHAIN_ROLE_ARN",
            "arn:aws:iam::444455556666:role/b",
        );
        let c = Config::from_args(&ServeArgs::default(), &agent(&[arn, hop])).unwrap();
        assert_eq!(c.chain.session_policy.arns.len(), 1);
    }
}
