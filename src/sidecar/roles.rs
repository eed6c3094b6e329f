//! Several roles in one pod (docs/contract.md §13, "Several roles"): the roles
//! JSON of `serve --roles-file PATH` (or inline in `IRSA_PROXY_ROLES`, what
//! `inject` writes), read and checked before anything starts.
//!
//! ```json
//! {"imds_role": "app",
//!  "roles": {"app":    {"role_arn": "arn:aws:iam::111122223333:role/app"},
//!            "copier": {"role_arn": "arn:aws:iam::111122223333:role/s3-copy",
//!                       "chain_role_arn": ["arn:aws:iam::444455556666:role/other"],
//!                       "session_policy_arns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}}}
//! ```
//!
//! Every problem is one [`FlagError`] line naming the role and the key
//! (`IRSA_PROXY_ROLES has roles.copier.role_arn "x", which is not a role ARN;
//! expected ...`), collected with the other flags' so one start-up shows all.
//! What depends on the rest of the configuration (the source, `--role-arn`,
//! the chain flags, the tokens) is checked by `config.rs` with [`Roles`].

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use std::time::Duration;

use crate::arn::RoleArn;
use crate::cli::ServeArgs;
use crate::duration::format_duration;
use crate::flags::{self, serve as f, FlagError, Flags, Given};
use crate::sidecar::chain::{Plan, SessionPolicy};
use crate::sidecar::endpoints::AuthToken;
use crate::sidecar::source::SourceKind;
use crate::sidecar::sts::policy;

/// The keys a role may have.
const ROLE_KEYS: &str =
    "role_arn, chain_role_arn, session_policy, session_policy_file or session_policy_arns";
/// What a roles JSON looks like, for the refusals that cannot say more.
const ROLES_FORM: &str =
    r#"{"imds_role": NAME, "roles": {NAME: {"role_arn": "arn:..."}}} (docs/contract.md §13)"#;
/// What a role name may be: a DNS label of at most 32 characters, so that
/// container names fit.
pub const NAME_FORM: &str = "1 to 32 of [a-z0-9-], starting and ending with a letter or digit";

/// The roles, checked, with the parts that come from the rest of the
/// configuration filled in by `config.rs`.
#[derive(Debug, Clone)]
pub struct Roles {
    /// The only role IMDS serves; `None`: IMDS serves no credentials.
    pub imds_role: Option<String>,
    /// Sorted by name, at least one.
    pub roles: Vec<RoleConfig>,
    /// `--auth-token-dir`: `DIR/<name>/token` for each role.
    pub token_dir: PathBuf,
    /// Where the JSON came from, for the refusals of [`check_with`].
    origin: Origin,
}

impl Roles {
    /// The role names, comma-separated, for logs and bodies.
    pub fn names(&self) -> String {
        self.roles
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One named role.
#[derive(Debug, Clone)]
pub struct RoleConfig {
    /// A DNS label ([`NAME_FORM`]).
    pub name: String,
    /// The web-identity role; `None`: the top-level `--role-arn`. With
    /// `--source pod-identity` the agent picks the pod's role, and this one
    /// is assumed from it as the first hop ([`RoleConfig::hops_on`]).
    pub role_arn: Option<RoleArn>,
    /// Hops after it, in order (the chain machinery, `crate::sidecar::chain`).
    pub hops: Vec<RoleArn>,
    /// Sent on the role's last call (empty: none).
    pub session_policy: SessionPolicy,
    /// `IRSA_PROXY_AUTH_TOKEN_<NAME>`, when set (redacted in `Debug`).
    pub token: Option<AuthToken>,
}

impl RoleConfig {
    /// True when the role makes AssumeRole calls: it has `chain_role_arn`,
    /// or, on the Pod Identity source, a `role_arn` (assumed as the first
    /// hop from the agent's role).
    pub fn is_chained(&self, source: SourceKind) -> bool {
        !self.hops.is_empty() || source == SourceKind::PodIdentity && self.role_arn.is_some()
    }

    /// The role's hops on `source`: on Pod Identity its `role_arn` (if any)
    /// comes first, assumed with the agent's credentials.
    pub fn hops_on(&self, source: SourceKind) -> Vec<RoleArn> {
        let first = match (source, &self.role_arn) {
            (SourceKind::PodIdentity, Some(arn)) => Some(arn.clone()),
            _ => None,
        };
        first.into_iter().chain(self.hops.iter().cloned()).collect()
    }

    /// The variable that holds this role's token as a value.
    pub fn token_variable(&self) -> String {
        token_variable(&self.name)
    }

    /// The file the sidecar writes this role's token to.
    pub fn token_file(&self, dir: &std::path::Path) -> PathBuf {
        dir.join(&self.name).join("token")
    }
}

/// `IRSA_PROXY_AUTH_TOKEN_<NAME>`: NAME upper-cased, `-` as `_`.
pub fn token_variable(name: &str) -> String {
    format!(
        "{}{}",
        f::AUTH_TOKEN_ROLE_PREFIX,
        name.to_ascii_uppercase().replace('-', "_")
    )
}

/// True for a role name: a DNS label of at most 32 characters.
pub fn is_role_name(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=32).contains(&b.len())
        && edge(b[0])
        && edge(b[b.len() - 1])
        && b.iter().all(|&c| edge(c) || c == b'-')
}

/// Where the JSON came from, for the refusals.
#[derive(Debug, Clone)]
struct Origin {
    flag: &'static str,
    source: Option<&'static str>,
    value: Given,
}

impl Origin {
    fn refusal(&self, problem: impl Into<String>, allowed: impl Into<String>) -> FlagError {
        FlagError {
            flag: self.flag,
            source: self.source,
            value: self.value.clone(),
            problem: problem.into(),
            allowed: allowed.into(),
        }
    }
}

/// Reads `--roles-file` / `IRSA_PROXY_ROLES_FILE` or `IRSA_PROXY_ROLES`, and
/// checks the JSON. `None` when neither is given (a single-role `serve`), or
/// when something was refused (recorded in `flags`).
pub(crate) fn read(flags: &mut Flags<'_>, args: &ServeArgs) -> Option<Roles> {
    let file = flags.raw(&f::ROLES_FILE, args.roles_file.as_deref());
    let inline = flags.raw(&f::ROLES, None);
    let (origin, text) = match (file, inline) {
        (None, None) => return None,
        (Some((path, source)), Some(_)) => {
            flags.refuse(FlagError::refused(
                f::ROLES_FILE.name,
                source,
                &path,
                flags::Refusal::new("is given together with IRSA_PROXY_ROLES", "one of them"),
            ));
            return None;
        }
        (Some((path, source)), None) => {
            let origin = Origin {
                flag: f::ROLES_FILE.name,
                source,
                value: Given::Value(path.clone()),
            };
            match std::fs::read_to_string(path.trim()) {
                Ok(text) => (origin, text),
                Err(e) => {
                    flags.refuse(origin.refusal(
                        format!("cannot be read ({e})"),
                        format!("a readable file holding {ROLES_FORM}"),
                    ));
                    return None;
                }
            }
        }
        (None, Some((text, _))) => (
            Origin {
                flag: f::ROLES.name,
                source: None,
                value: Given::Nothing,
            },
            text,
        ),
    };
    let before = flags.count();
    let roles = parse(&text, &origin, &mut |e| flags.refuse(e));
    if flags.count() > before {
        return None;
    }
    roles
}

/// Parses and checks the roles JSON; every problem goes to `refuse`. The token
/// directory and the tokens are filled in later.
fn parse(text: &str, origin: &Origin, refuse: &mut dyn FnMut(FlagError)) -> Option<Roles> {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            refuse(origin.refusal(
                format!("is not JSON ({})", one_line(&e.to_string())),
                ROLES_FORM,
            ));
            return None;
        }
    };
    let Value::Object(top) = value else {
        refuse(origin.refusal("is not a JSON object", ROLES_FORM));
        return None;
    };
    for key in top.keys() {
        if key != "imds_role" && key != "roles" {
            refuse(origin.refusal(
                format!("has {key:?}, which is not a key of the roles JSON"),
                "imds_role or roles",
            ));
        }
    }
    let roles = match top.get("roles") {
        Some(Value::Object(m)) if !m.is_empty() => m,
        Some(Value::Object(_)) | None => {
            refuse(origin.refusal("names no role (\"roles\" is missing or empty)", ROLES_FORM));
            return None;
        }
        Some(_) => {
            refuse(origin.refusal("has \"roles\" that is not an object", ROLES_FORM));
            return None;
        }
    };
    let mut out = Vec::new();
    for (name, spec) in roles {
        if !is_role_name(name) {
            refuse(origin.refusal(
                format!("has a role named {name:?}, which is not a role name"),
                NAME_FORM,
            ));
            continue;
        }
        if let Some(role) = parse_role(name, spec, origin, refuse) {
            out.push(role);
        }
    }
    let imds_role = match top.get("imds_role") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if roles.contains_key(s) => Some(s.clone()),
        Some(v) => {
            refuse(origin.refusal(
                format!("has imds_role {}, which is not one of its roles", short(v)),
                format!(
                    "the name of one of its roles ({})",
                    roles.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
            None
        }
    };
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Some(Roles {
        imds_role,
        roles: out,
        token_dir: PathBuf::new(),
        origin: origin.clone(),
    })
}

/// What the roles are checked against: the rest of the configuration.
pub(crate) struct Context<'a> {
    pub source: SourceKind,
    /// `--role-arn` was given.
    pub top_role: bool,
    /// The chain settings every role shares.
    pub chain: &'a Plan,
    /// `--chain-external-id(-file)` was given.
    pub external_id: bool,
    /// `--duration` as given, with where it came from.
    pub duration: Option<(Duration, Option<&'static str>, String)>,
}

/// The checks that depend on the rest of the configuration: who names the
/// role, what needs a chain, the chained session's one-hour cap.
pub(crate) fn check_with(flags: &mut Flags<'_>, roles: &Roles, cx: Context<'_>) {
    let o = &roles.origin;
    let needs_chain: Vec<&str> = [
        (!cx.chain.tags.is_empty(), f::SESSION_TAGS.name),
        (cx.chain.source_identity.is_some(), f::SOURCE_IDENTITY.name),
        (cx.external_id, f::CHAIN_EXTERNAL_ID.name),
    ]
    .into_iter()
    .filter_map(|(given, flag)| given.then_some(flag))
    .collect();
    for r in &roles.roles {
        let name = &r.name;
        if cx.source == SourceKind::WebIdentity && r.role_arn.is_none() && !cx.top_role {
            flags.refuse(o.refusal(
                format!(
                    "has roles.{name} without role_arn, and --role-arn (AWS_ROLE_ARN) is not given"
                ),
                "role_arn in the role, or --role-arn for the roles that name none",
            ));
        }
        if cx.source == SourceKind::PodIdentity
            && !r.is_chained(cx.source)
            && !r.session_policy.is_empty()
        {
            flags.refuse(o.refusal(
                format!("has roles.{name} with a session policy and neither role_arn nor chain_role_arn, which the Pod Identity source cannot send"),
                "role_arn or chain_role_arn in the role too (its last AssumeRole carries the policy): the Pod Identity agent takes no session policy",
            ));
        }
    }
    // The chain settings go on the hops of the roles that have some; a role
    // without a chain makes only its web-identity call, which takes none.
    if !needs_chain.is_empty() && roles.roles.iter().all(|r| !r.is_chained(cx.source)) {
        flags.refuse(o.refusal(
            format!(
                "has no role with chain_role_arn, but {} need{} a chain (AssumeRoleWithWebIdentity takes no ExternalId, session tags or SourceIdentity)",
                needs_chain.join(" and "),
                if needs_chain.len() == 1 { "s" } else { "" }
            ),
            format!("chain_role_arn in a role, or none of {}", needs_chain.join(", ")),
        ));
    }
    if let (Some(r), Some((d, source, v))) = (
        roles.roles.iter().find(|r| r.is_chained(cx.source)),
        &cx.duration,
    ) {
        if *d > f::CHAINED_DURATION_CAP {
            flags.refuse(FlagError::refused(
                f::DURATION.name,
                *source,
                v,
                flags::Refusal::new(
                    format!(
                        "is longer than the 1h AWS allows a session obtained by role chaining (roles.{}.{})",
                        r.name,
                        if r.hops.is_empty() { "role_arn, assumed from the Pod Identity role" } else { "chain_role_arn" }
                    ),
                    format!(
                        "{} to {} with a chain",
                        format_duration(*f::DURATION_RANGE.start()),
                        format_duration(f::CHAINED_DURATION_CAP)
                    ),
                ),
            ));
        }
    }
}

/// `--auth-token-dir` (required with several roles) and each role's
/// `IRSA_PROXY_AUTH_TOKEN_<NAME>`; the single-role token settings are refused.
/// A token value is never quoted back: refusals name its length.
/// With `roles` `None` (the JSON was refused) only the flags are checked, so
/// that one start-up shows every problem.
pub(crate) fn read_tokens(flags: &mut Flags<'_>, args: &ServeArgs, roles: Option<&mut Roles>) {
    let dir = flags.required(
        &f::AUTH_TOKEN_DIR,
        args.auth_token_dir.as_deref(),
        "the directory where each role's token is written, as DIR/<name>/token, with several roles",
        |v| {
            let dir = PathBuf::from(v.trim());
            if dir.exists() && !dir.is_dir() {
                return Err(flags::Refusal::new("is not a directory", "a directory"));
            }
            let parent = dir
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            if !dir.exists() && !parent.is_dir() {
                return Err(flags::Refusal::new(
                    format!(
                        "is in a directory that does not exist ({})",
                        parent.display()
                    ),
                    "a directory, or one to create in an existing directory",
                ));
            }
            Ok(dir)
        },
    );
    let several = "--auth-token-dir (with several roles, each role has its own token)";
    if let Some((v, source)) = flags.raw(&f::AUTH_TOKEN_FILE, args.auth_token_file.as_deref()) {
        flags.refuse(FlagError::refused(
            f::AUTH_TOKEN_FILE.name,
            source,
            &v,
            flags::Refusal::new("is for one role", several),
        ));
    }
    if let Some((v, _)) = flags.raw(&f::AUTH_TOKEN, None) {
        flags.refuse(FlagError {
            flag: f::AUTH_TOKEN.name,
            source: None,
            value: Given::Secret {
                chars: v.trim().len(),
            },
            problem: "is for one role".into(),
            allowed: format!("{several}, and IRSA_PROXY_AUTH_TOKEN_<NAME> for a role's token"),
        });
    }
    let Some(roles) = roles else { return };
    if let Some(dir) = dir {
        roles.token_dir = dir;
    }
    for i in 0..roles.roles.len() {
        let var = roles.roles[i].token_variable();
        let Some(v) = flags.var(&var) else { continue };
        // A refusal names its flag with a `&'static str`; this one is made
        // at run time, once, on the way to exit 2.
        let flag = |var: &str| -> &'static str { Box::leak(var.to_string().into_boxed_str()) };
        match AuthToken::from_value(&v) {
            Ok(token) => {
                let same = roles.roles[..i]
                    .iter()
                    .find(|r| r.token.as_ref().is_some_and(|t| t.same_as(&token)));
                if let Some(other) = same {
                    flags.refuse(FlagError {
                        flag: flag(&var),
                        source: None,
                        value: Given::Secret {
                            chars: v.trim().len(),
                        },
                        problem: format!("is the same as {}", other.token_variable()),
                        allowed: "a different token for every role (the token decides which role a request gets)".into(),
                    });
                } else {
                    roles.roles[i].token = Some(token);
                }
            }
            Err(why) => flags.refuse(FlagError {
                flag: flag(&var),
                source: None,
                value: Given::Secret {
                    chars: v.trim().len(),
                },
                problem: why.problem,
                allowed: why.allowed,
            }),
        }
    }
}

/// One role's object.
fn parse_role(
    name: &str,
    spec: &Value,
    origin: &Origin,
    refuse: &mut dyn FnMut(FlagError),
) -> Option<RoleConfig> {
    let Value::Object(spec) = spec else {
        refuse(origin.refusal(
            format!("has roles.{name}, which is not an object"),
            format!("an object with {ROLE_KEYS}"),
        ));
        return None;
    };
    let mut ok = true;
    let bad =
        |refuse: &mut dyn FnMut(FlagError), key: &str, v: &Value, problem: &str, allowed: &str| {
            refuse(origin.refusal(
                format!("has roles.{name}.{key} {}, which {problem}", short(v)),
                allowed,
            ));
        };
    for key in spec.keys() {
        if !matches!(
            key.as_str(),
            "role_arn"
                | "chain_role_arn"
                | "session_policy"
                | "session_policy_file"
                | "session_policy_arns"
        ) {
            refuse(origin.refusal(
                format!("has roles.{name}.{key}, which is not a key of a role"),
                ROLE_KEYS,
            ));
            ok = false;
        }
    }
    let role_arn = match spec.get("role_arn") {
        None => None,
        Some(v) => match v.as_str().map(|s| RoleArn::parse(s.trim())) {
            Some(Ok(arn)) => Some(arn),
            Some(Err(form)) => {
                bad(
                    refuse,
                    "role_arn",
                    v,
                    "is not a role ARN",
                    &form.to_string(),
                );
                ok = false;
                None
            }
            None => {
                bad(refuse, "role_arn", v, "is not a string", "a role ARN");
                ok = false;
                None
            }
        },
    };
    let mut hops = Vec::new();
    match spec.get("chain_role_arn") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item.as_str().map(|s| RoleArn::parse(s.trim())) {
                    Some(Ok(arn)) => hops.push(arn),
                    Some(Err(form)) => {
                        bad(
                            refuse,
                            &format!("chain_role_arn[{i}]"),
                            item,
                            "is not a role ARN",
                            &form.to_string(),
                        );
                        ok = false;
                    }
                    None => {
                        bad(
                            refuse,
                            &format!("chain_role_arn[{i}]"),
                            item,
                            "is not a string",
                            "a role ARN",
                        );
                        ok = false;
                    }
                }
            }
        }
        Some(v) => {
            bad(
                refuse,
                "chain_role_arn",
                v,
                "is not an array",
                "an array of role ARNs, in order",
            );
            ok = false;
        }
    }
    let session_policy = session_policy(name, spec, origin, refuse).unwrap_or_else(|()| {
        ok = false;
        SessionPolicy::default()
    });
    ok.then(|| RoleConfig {
        name: name.to_string(),
        role_arn,
        hops,
        session_policy,
        token: None,
    })
}

/// `session_policy` (an object) or `session_policy_file` (read now), and
/// `session_policy_arns`, with the checks of the session-policy flags
/// ([`crate::sidecar::sts::policy`]).
fn session_policy(
    name: &str,
    spec: &Map<String, Value>,
    origin: &Origin,
    refuse: &mut dyn FnMut(FlagError),
) -> Result<SessionPolicy, ()> {
    let failed = std::cell::Cell::new(false);
    let mut refuse_key = |key: &str, shown: String, why: flags::Refusal| {
        failed.set(true);
        refuse(origin.refusal(
            format!("has roles.{name}.{key} {shown}, which {}", why.problem),
            why.allowed,
        ));
    };
    let document = match (spec.get("session_policy"), spec.get("session_policy_file")) {
        (Some(v), Some(_)) => {
            refuse_key(
                "session_policy",
                short(v),
                flags::Refusal::new("is given together with session_policy_file", "one of them"),
            );
            None
        }
        (Some(v), None) => match policy::pack_value(v) {
            Ok(d) => Some(d),
            Err(why) => {
                refuse_key("session_policy", short(v), why);
                None
            }
        },
        (None, Some(v)) => match v
            .as_str()
            .map(|p| policy::read_document(Path::new(p.trim())))
        {
            Some(Ok(d)) => Some(d),
            Some(Err(why)) => {
                refuse_key("session_policy_file", short(v), why);
                None
            }
            None => {
                refuse_key(
                    "session_policy_file",
                    short(v),
                    flags::Refusal::new(
                        "is not a string",
                        "the path of a file holding an IAM policy document",
                    ),
                );
                None
            }
        },
        (None, None) => None,
    };
    let mut arns = Vec::new();
    match spec.get("session_policy_arns") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item.as_str().map(policy::policy_arn) {
                    Some(Ok(a)) => arns.push(a),
                    Some(Err(why)) => {
                        refuse_key(&format!("session_policy_arns[{i}]"), short(item), why)
                    }
                    None => refuse_key(
                        &format!("session_policy_arns[{i}]"),
                        short(item),
                        flags::Refusal::new("is not a string", policy::ARN_FORM),
                    ),
                }
            }
        }
        Some(v) => refuse_key(
            "session_policy_arns",
            short(v),
            flags::Refusal::new("is not an array", "an array of managed policy ARNs"),
        ),
    }
    if failed.get() {
        return Err(());
    }
    SessionPolicy::new(document, arns).map_err(|why| {
        let shown = spec
            .get("session_policy_arns")
            .map(short)
            .unwrap_or_default();
        refuse_key("session_policy_arns", shown, why);
    })
}

/// A JSON value as quoted in a refusal: short and on one line.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}...", s.chars().take(77).collect::<String>())
    } else {
        s
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            flag: f::ROLES.name,
            source: None,
            value: Given::Nothing,
        }
    }

    fn parsed(text: &str) -> Result<Roles, Vec<FlagError>> {
        let mut errors = Vec::new();
        let r = parse(text, &origin(), &mut |e| errors.push(e));
        if errors.is_empty() {
            Ok(r.unwrap())
        } else {
            assert!(errors.iter().all(|e| !e.to_string().contains('\n')));
            Err(errors)
        }
    }

    #[test]
    fn the_design_example_should_parse() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.json");
        std::fs::write(
            &file,
            "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": []\n}\n",
        )
        .unwrap();
        let text = serde_json::json!({
            "imds_role": "app",
            "roles": {
                "app": {"role_arn": "arn:aws:iam::111122223333:role/app"},
                "copier": {
                    "role_arn": "arn:aws:iam::111122223333:role/s3-copy",
                    "chain_role_arn": ["arn:aws:iam::444455556666:role/other"],
                    "session_policy_file": file.display().to_string(),
                    "session_policy_arns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
                },
                "plain": {}
            }
        })
        .to_string();
        let r = parsed(&text).unwrap();
        assert_eq!(r.imds_role.as_deref(), Some("app"));
        let names: Vec<&str> = r.roles.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["app", "copier", "plain"]);
        let copier = &r.roles[1];
        assert_eq!(copier.hops[0].name, "other");
        let p = &copier.session_policy;
        // Packed: no whitespace (key order is serde_json's, whichever it keeps).
        let document = p.document.as_deref().unwrap();
        assert!(!document.contains([' ', '\n']), "{document}");
        assert_eq!(
            serde_json::from_str::<Value>(document).unwrap(),
            serde_json::json!({"Version": "2012-10-17", "Statement": []})
        );
        assert_eq!(p.arns, ["arn:aws:iam::aws:policy/ReadOnlyAccess"]);
        assert!(r.roles[2].role_arn.is_none() && r.roles[2].session_policy.is_empty());
        assert_eq!(copier.token_variable(), "IRSA_PROXY_AUTH_TOKEN_COPIER");
        assert_eq!(token_variable("s3-copy"), "IRSA_PROXY_AUTH_TOKEN_S3_COPY");
    }

    #[test]
    fn every_problem_should_be_one_line_naming_the_role_and_key() {
        let text = serde_json::json!({
            "imds_role": "nope",
            "colour": 1,
            "roles": {
                "App": {},
                "a": {"role_arn": "arn:aws:iam::1:role/x", "extra": true},
                "b": {"chain_role_arn": "arn:aws:iam::111122223333:role/x"},
                "c": {"chain_role_arn": ["arn:aws:iam::111122223333:role/ok", 7]},
                "d": {"session_policy": "text", "session_policy_arns": ["arn:aws:s3:::bucket"]},
                "e": {"session_policy": {}, "session_policy_file": "/x"},
                "f": {"session_policy_file": "/nonexistent-for-test/policy.json"},
                "g": {"session_policy_arns": vec!["arn:aws:iam::aws:policy/P"; 11]},
                "h": {"session_policy": {"Statement": "x".repeat(2100)}},
                "i": "arn:aws:iam::111122223333:role/x"
            }
        })
        .to_string();
        let all = flags::lines(&parsed(&text).unwrap_err());
        for needle in [
            "IRSA_PROXY_ROLES has \"colour\", which is not a key of the roles JSON; expected imds_role or roles",
            "IRSA_PROXY_ROLES has a role named \"App\", which is not a role name; expected 1 to 32 of [a-z0-9-]",
            "has roles.a.role_arn \"arn:aws:iam::1:role/x\", which is not a role ARN",
            "has roles.a.extra, which is not a key of a role; expected role_arn, chain_role_arn",
            "has roles.b.chain_role_arn \"arn:aws:iam::111122223333:role/x\", which is not an array",
            "has roles.c.chain_role_arn[1] 7, which is not a string",
            "has roles.d.session_policy \"text\", which is not a JSON object",
            "has roles.d.session_policy_arns[0] \"arn:aws:s3:::bucket\", which is not a managed policy ARN",
            "has roles.e.session_policy {}, which is given together with session_policy_file; expected one of them",
            "has roles.f.session_policy_file \"/nonexistent-for-test/policy.json\", which cannot be read",
            "which names 11 managed policies; expected at most 10 policy ARNs",
            "which is 2116 characters once packed; expected a JSON policy object of at most 2048",
            "has roles.i, which is not an object",
            "has imds_role \"nope\", which is not one of its roles",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in\n{all}");
        }
        for (text, needle) in [
            ("{", "IRSA_PROXY_ROLES is not JSON (EOF while parsing"),
            ("[]", "IRSA_PROXY_ROLES is not a JSON object"),
            ("{\"roles\": {}}", "IRSA_PROXY_ROLES names no role"),
        ] {
            let all = flags::lines(&parsed(text).unwrap_err());
            assert!(all.contains(needle), "missing {needle:?} in\n{all}");
        }
    }

    #[test]
    fn role_names_should_be_dns_labels_of_at_most_32() {
        for ok in ["a", "app", "s3-copy", "0", &"a".repeat(32)] {
            assert!(is_role_name(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(33)] {
            assert!(!is_role_name(bad), "{bad}");
        }
    }
}
