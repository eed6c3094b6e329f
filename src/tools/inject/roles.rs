//! Several roles in one pod (issue 18): `inject --container-role
//! CONTAINER=ROLE_ARN` and the webhook's annotation
//! `irsa-proxy.io/container-roles: "copier=arn:...,api=arn:..."`.
//!
//! Each named container (an app container or an init container) gets a role of
//! its own, named after it, and nothing of any other's:
//!
//! - the sidecar gets every role as `IRSA_PROXY_ROLES` (serve's roles JSON,
//!   docs/contract.md §13), `IRSA_PROXY_AUTH_TOKEN_DIR` ([`TOKEN_DIR`]) where it
//!   writes `<role>/token` for each role, and each role's token as
//!   `IRSA_PROXY_AUTH_TOKEN_<ROLE>` (from the auth Secret's key `<role>`, or a
//!   value of its own from the webhook);
//! - the container of role R mounts the shared `emptyDir` with `subPath:
//!   roles/R` at the usual directory, so that the only token file it can open
//!   is its own ([`TOKEN_FILE`]), and gets `AWS_CONTAINER_AUTHORIZATION_TOKEN`
//!   from the Secret's key R only;
//! - a container with no role gets nothing of ours, and, like every container
//!   but the sidecar, is listed in `eks.amazonaws.com/skip-containers`, so that
//!   the EKS webhook does not give it the pod's role behind our back.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::flags::Refusal;

/// `serve`'s variable with the roles JSON.
pub(crate) const ROLES_ENV: &str = "IRSA_PROXY_ROLES";
/// `serve`'s variable naming the directory of the per-role token files.
pub(crate) const TOKEN_DIR_ENV: &str = "IRSA_PROXY_AUTH_TOKEN_DIR";
/// Prefix of the per-role token variables of the sidecar.
pub(crate) const TOKEN_ENV_PREFIX: &str = "IRSA_PROXY_AUTH_TOKEN_";
/// Sub-directory of the shared volume holding one directory per role.
pub(crate) const ROLES_SUBDIR: &str = "roles";
/// Where the sidecar writes `<role>/token` (the shared volume is mounted at
/// [`super::SHARED_DIR`] in the sidecar).
pub(crate) const TOKEN_DIR: &str = "/var/run/irsa-proxy/roles";
/// The token file as a container with a role sees it: its own `roles/<role>`
/// mounted at [`super::SHARED_DIR`].
pub(crate) const TOKEN_FILE: &str = "/var/run/irsa-proxy/token";
/// The longest role name `serve` takes (a DNS label of at most 32 characters).
pub(crate) const MAX_ROLE_NAME: usize = 32;

/// One `--container-role`: the container, which names the role, and the role
/// it assumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRole {
    pub container: String,
    pub role_arn: String,
}

impl ContainerRole {
    /// `CONTAINER=ROLE_ARN`. The container must be a name `serve` takes as a
    /// role name; whether the pod has it is checked per pod.
    pub fn parse(spec: &str) -> Result<ContainerRole, Refusal> {
        let form = "CONTAINER=ROLE_ARN, such as app=arn:aws:iam::111122223333:role/app";
        let Some((name, arn)) = spec.split_once('=') else {
            return Err(Refusal::new("has no '='", form));
        };
        let (name, arn) = (name.trim(), arn.trim());
        if name.is_empty() {
            return Err(Refusal::new("names no container", form));
        }
        if name == super::SIDECAR_NAME || name == super::LINK_LOCAL_NAME {
            return Err(Refusal::new(
                format!("names {name:?}, a container inject adds"),
                "the name of one of the pod's own containers",
            ));
        }
        role_name(name)?;
        crate::flags::role_arn(arn).map_err(|r| {
            Refusal::new(
                format!("has a role ARN that {}", r.problem),
                format!("CONTAINER={}", r.allowed),
            )
        })?;
        Ok(ContainerRole {
            container: name.to_string(),
            role_arn: arn.to_string(),
        })
    }

    /// The sidecar's variable with this role's token.
    pub(crate) fn token_env(&self) -> String {
        format!(
            "{TOKEN_ENV_PREFIX}{}",
            self.container.to_ascii_uppercase().replace('-', "_")
        )
    }

    /// The `subPath` of the shared volume the container mounts.
    pub(crate) fn sub_path(&self) -> String {
        format!("{ROLES_SUBDIR}/{}", self.container)
    }
}

/// A container name that `serve` takes as a role name:
/// `[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?`.
fn role_name(name: &str) -> Result<(), Refusal> {
    let allowed = "a container name that is also a role name: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 32 characters";
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_ends = !name.starts_with('-') && !name.ends_with('-');
    if !ok_chars || !ok_ends {
        return Err(Refusal::new(
            format!("names {name:?}, not a container name"),
            allowed,
        ));
    }
    if name.len() > MAX_ROLE_NAME {
        return Err(Refusal::new(
            format!(
                "names {name:?}, {} characters: longer than a role name may be",
                name.len()
            ),
            allowed,
        ));
    }
    Ok(())
}

/// The refusal for the `index`th of `roles` when an earlier one names the same
/// container: given twice (same role) or in two roles.
pub(crate) fn duplicate(roles: &[ContainerRole], index: usize) -> Option<Refusal> {
    let this = &roles[index];
    let earlier = roles[..index]
        .iter()
        .find(|r| r.container == this.container)?;
    let allowed = "one --container-role per container: a container holds one role";
    Some(if earlier.role_arn == this.role_arn {
        Refusal::new(
            format!("gives container {:?} a second time", this.container),
            allowed,
        )
    } else {
        Refusal::new(
            format!(
                "puts container {:?} in a second role (it already has {})",
                this.container, earlier.role_arn
            ),
            allowed,
        )
    })
}

/// `serve`'s roles JSON for these roles, packed, in the given order. On a pod
/// already mutated for EKS Pod Identity the agent picks the pod's role, so
/// each ARN is written as the one hop of its chain (`serve` would assume a
/// `role_arn` the same way, as the first hop: docs/contract.md §12).
/// With `imds_role`, that role is the one IMDS serves.
pub(crate) fn roles_json(
    roles: &[&ContainerRole],
    pod_identity: bool,
    imds_role: Option<&str>,
) -> String {
    // Written entry by entry: the order stays the flags' whatever order
    // serde_json's maps keep.
    let entries: Vec<String> = roles
        .iter()
        .map(|r| {
            let role = if pod_identity {
                json!({ "chain_role_arn": [r.role_arn] })
            } else {
                json!({ "role_arn": r.role_arn })
            };
            format!("{}:{role}", Value::String(r.container.clone()))
        })
        .collect();
    let imds = imds_role
        .map(|name| format!("\"imds_role\":{},", Value::String(name.to_string())))
        .unwrap_or_default();
    format!("{{{imds}\"roles\":{{{}}}}}", entries.join(","))
}

/// Fresh random tokens, one per role, for the webhook (which writes them as
/// plain values: see [`super::AuthTokenSource::Value`]).
pub(crate) fn fresh_tokens(roles: &[&ContainerRole]) -> BTreeMap<String, String> {
    roles
        .iter()
        .map(|r| {
            (
                r.container.clone(),
                crate::sidecar::endpoints::random_token(),
            )
        })
        .collect()
}

/// Why a pod cannot get its roles. Each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum RoleProblem {
    #[error(
        "--container-role {name:?}: the pod has no container of that name (it has: {available})"
    )]
    UnknownContainer { name: String, available: String },
    #[error("--container-role {name:?}: an init container runs before a --classic-sidecar starts, so it could get no credentials; leave out --classic-sidecar (the native sidecar starts before every init container)")]
    InitWithClassic { name: String },
}

/// Checks the roles against the pod's containers: every named container
/// exists, and an init container has a role only with the native sidecar.
pub(crate) fn check_pod(
    roles: &[ContainerRole],
    init: &[String],
    apps: &[String],
    classic: bool,
) -> Result<(), RoleProblem> {
    for r in roles {
        let is_init = init.contains(&r.container);
        if !is_init && !apps.contains(&r.container) {
            return Err(RoleProblem::UnknownContainer {
                name: r.container.clone(),
                available: init
                    .iter()
                    .chain(apps)
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        if is_init && classic {
            return Err(RoleProblem::InitWithClassic {
                name: r.container.clone(),
            });
        }
    }
    Ok(())
}

/// Each role's token for one pod, decided once so that the sidecar and the
/// container of the role carry the same one: a key of the auth Secret (named
/// after the role), or a fresh value (the webhook).
pub(crate) struct RoleTokens {
    roles: Vec<(ContainerRole, Origin)>,
}

enum Origin {
    SecretKey(String),
    Value(String),
}

impl RoleTokens {
    pub(crate) fn new(roles: &[ContainerRole], source: &super::AuthTokenSource) -> RoleTokens {
        let all: Vec<&ContainerRole> = roles.iter().collect();
        let mut fresh = match source {
            super::AuthTokenSource::Secret(_) => BTreeMap::new(),
            super::AuthTokenSource::Value(_) => fresh_tokens(&all),
        };
        let roles = roles
            .iter()
            .map(|r| {
                let origin = match source {
                    super::AuthTokenSource::Secret(name) => Origin::SecretKey(name.clone()),
                    super::AuthTokenSource::Value(_) => {
                        Origin::Value(fresh.remove(&r.container).unwrap_or_default())
                    }
                };
                (r.clone(), origin)
            })
            .collect();
        RoleTokens { roles }
    }

    /// The role of `container`, if it has one.
    pub(crate) fn role_of(&self, container: &str) -> Option<&ContainerRole> {
        self.roles
            .iter()
            .map(|(r, _)| r)
            .find(|r| r.container == container)
    }

    /// The env entry `name` with the token of `role`.
    pub(crate) fn env(&self, role: &ContainerRole, name: &str) -> Value {
        match self.roles.iter().find(|(r, _)| r == role).map(|(_, o)| o) {
            Some(Origin::SecretKey(secret)) => json!({
                "name": name,
                "valueFrom": {"secretKeyRef": {"name": secret, "key": role.container}},
            }),
            Some(Origin::Value(token)) => json!({"name": name, "value": token}),
            None => json!({"name": name}),
        }
    }

    /// The sidecar's variables: the roles JSON, the token directory, and each
    /// role's token, in this order.
    pub(crate) fn sidecar_env(&self, pod_identity: bool, imds_role: Option<&str>) -> Vec<Value> {
        let roles: Vec<&ContainerRole> = self.roles.iter().map(|(r, _)| r).collect();
        let mut env = vec![
            json!({"name": ROLES_ENV, "value": roles_json(&roles, pod_identity, imds_role)}),
            json!({"name": TOKEN_DIR_ENV, "value": TOKEN_DIR}),
        ];
        env.extend(roles.iter().map(|r| self.env(r, &r.token_env())));
        env
    }

    /// The read-only mount of the role's own directory of the shared volume.
    pub(crate) fn mount(role: &ContainerRole) -> Value {
        json!({
            "name": super::SHARED_VOLUME,
            "mountPath": super::SHARED_DIR,
            "subPath": role.sub_path(),
            "readOnly": true,
        })
    }
}

// Tokens are secrets: never in logs or `{:?}` output.
impl std::fmt::Debug for RoleTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.roles.iter().map(|(r, _)| &r.container))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cr(container: &str, arn: &str) -> ContainerRole {
        ContainerRole {
            container: container.into(),
            role_arn: arn.into(),
        }
    }

    const ARN: &str = "arn:aws:iam::111122223333:role/app";

    #[test]
    fn a_container_and_a_role_arn_should_parse() {
        assert_eq!(
            ContainerRole::parse(&format!("copier={ARN}")),
            Ok(cr("copier", ARN))
        );
        assert_eq!(
            ContainerRole::parse(&format!(" api = {ARN} ")),
            Ok(cr("api", ARN))
        );
    }

    #[test]
    fn bad_specs_should_be_refused_saying_what_is_allowed() {
        for (spec, problem) in [
            ("copier", "has no '='"),
            (&format!("={ARN}") as &str, "names no container"),
            (&format!("irsa-proxy={ARN}"), "a container inject adds"),
            (
                &format!("irsa-proxy-link-local={ARN}"),
                "a container inject adds",
            ),
            (&format!("Api={ARN}"), "not a container name"),
            (&format!("api_1={ARN}"), "not a container name"),
            (&format!("-api={ARN}"), "not a container name"),
            (&format!("{}={ARN}", "a".repeat(33)), "33 characters"),
            ("api=arn:aws:iam::111122223333:user/bob", "role ARN"),
            ("api=", "role ARN"),
        ] {
            let refusal = ContainerRole::parse(spec).expect_err(spec);
            assert!(
                refusal.problem.contains(problem),
                "{spec}: {}",
                refusal.problem
            );
            assert!(!refusal.allowed.is_empty());
        }
        assert!(ContainerRole::parse(&format!("{}={ARN}", "a".repeat(32))).is_ok());
    }

    #[test]
    fn a_container_given_twice_or_in_two_roles_should_be_told_apart() {
        let other = "arn:aws:iam::111122223333:role/other";
        let roles = [
            cr("api", ARN),
            cr("worker", ARN),
            cr("api", ARN),
            cr("api", other),
        ];
        assert!(duplicate(&roles, 0).is_none());
        assert!(duplicate(&roles, 1).is_none());
        let twice = duplicate(&roles, 2).expect("twice");
        assert!(twice.problem.contains("a second time"), "{twice}");
        let two = duplicate(&roles, 3).expect("two roles");
        assert!(two.problem.contains("second role"), "{two}");
        assert!(two.problem.contains(ARN), "{two}");
    }

    #[test]
    fn names_should_become_serves_variables_and_sub_paths() {
        let r = cr("s3-copier-2", ARN);
        assert_eq!(r.token_env(), "IRSA_PROXY_AUTH_TOKEN_S3_COPIER_2");
        assert_eq!(r.sub_path(), "roles/s3-copier-2");
    }

    #[test]
    fn the_roles_json_should_be_serves_with_the_order_kept() {
        let a = cr("copier", "arn:aws:iam::111122223333:role/s3-copy");
        let b = cr("api", ARN);
        assert_eq!(
            roles_json(&[&a, &b], false, None),
            r#"{"roles":{"copier":{"role_arn":"arn:aws:iam::111122223333:role/s3-copy"},"api":{"role_arn":"arn:aws:iam::111122223333:role/app"}}}"#
        );
        assert_eq!(
            roles_json(&[&a, &b], false, Some("api")),
            r#"{"imds_role":"api","roles":{"copier":{"role_arn":"arn:aws:iam::111122223333:role/s3-copy"},"api":{"role_arn":"arn:aws:iam::111122223333:role/app"}}}"#
        );
        assert_eq!(
            roles_json(&[&b], true, None),
            r#"{"roles":{"api":{"chain_role_arn":["arn:aws:iam::111122223333:role/app"]}}}"#
        );
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn roles_should_name_containers_the_pod_has() {
        let init = names(&["copier"]);
        let apps = names(&["api", "metrics"]);
        let ok = [cr("copier", ARN), cr("api", ARN)];
        assert!(check_pod(&ok, &init, &apps, false).is_ok());
        let err = check_pod(&[cr("apx", ARN)], &init, &apps, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--container-role \"apx\": the pod has no container of that name (it has: copier, api, metrics)"
        );
        let err = check_pod(&ok, &init, &apps, true).unwrap_err();
        assert!(err.to_string().contains("--classic-sidecar"), "{err}");
        assert!(check_pod(&[cr("api", ARN)], &init, &apps, true).is_ok());
    }

    #[test]
    fn a_secret_should_give_each_role_its_own_key() {
        let roles = [cr("copier", ARN), cr("api", ARN)];
        let t = RoleTokens::new(
            &roles,
            &super::super::AuthTokenSource::Secret("auth".into()),
        );
        assert_eq!(
            t.env(&roles[1], "AWS_CONTAINER_AUTHORIZATION_TOKEN"),
            json!({"name": "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                   "valueFrom": {"secretKeyRef": {"name": "auth", "key": "api"}}})
        );
        let env = t.sidecar_env(false, None);
        let names: Vec<&str> = env.iter().filter_map(|e| e["name"].as_str()).collect();
        assert_eq!(
            names,
            [
                "IRSA_PROXY_ROLES",
                "IRSA_PROXY_AUTH_TOKEN_DIR",
                "IRSA_PROXY_AUTH_TOKEN_COPIER",
                "IRSA_PROXY_AUTH_TOKEN_API"
            ]
        );
        assert_eq!(env[2]["valueFrom"]["secretKeyRef"]["key"], "copier");
        assert_eq!(t.role_of("api"), Some(&roles[1]));
        assert_eq!(t.role_of("metrics"), None);
        assert_eq!(
            RoleTokens::mount(&roles[0]),
            json!({"name": "irsa-proxy-auth", "mountPath": "/var/run/irsa-proxy",
                   "subPath": "roles/copier", "readOnly": true})
        );
    }

    #[test]
    fn values_should_be_the_same_for_the_sidecar_and_the_container_and_never_debug_printed() {
        let roles = [cr("copier", ARN), cr("api", ARN)];
        let t = RoleTokens::new(&roles, &super::super::AuthTokenSource::Value("x".into()));
        let env = t.sidecar_env(false, None);
        let api = t.env(&roles[1], "AWS_CONTAINER_AUTHORIZATION_TOKEN");
        assert_eq!(env[3]["value"], api["value"]);
        assert_ne!(env[2]["value"], env[3]["value"]);
        let token = api["value"].as_str().unwrap().to_string();
        assert_eq!(token.len(), 64);
        assert!(!format!("{t:?}").contains(&token));
    }

    #[test]
    fn fresh_tokens_should_differ_per_role() {
        let a = cr("a", ARN);
        let b = cr("b", ARN);
        let t = fresh_tokens(&[&a, &b]);
        assert_eq!(t.len(), 2);
        assert_ne!(t["a"], t["b"]);
        assert_eq!(t["a"].len(), 64);
    }
}
