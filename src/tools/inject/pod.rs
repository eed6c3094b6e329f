//! The transformation of one pod spec: add the sidecar, its volumes, and the
//! environment and mount of the app containers.
//!
//! The engine works on the pod as the API server holds it, a JSON object
//! (`serde_json` with `preserve_order`, so that key order is kept): the webhook
//! hands it the pod of the review as it is, and `inject` converts each pod
//! spec of its YAML to JSON and back ([`super::yaml`]).
//!
//! User fields keep their values and their order; what `inject` adds is appended
//! (volumes, env entries, mounts) or, for a new `initContainers` list, placed just
//! before `containers`. A pod spec that already has a container named
//! [`SIDECAR_NAME`] is left exactly as it is, which is what makes `inject`
//! idempotent.

use serde_json::{Map, Value};

/// A JSON object: the pod spec, a container, the metadata.
type Mapping = Map<String, Value>;

use super::roles::{self, RoleProblem, RoleTokens};
use super::{Options, TokenSource};
use super::{
    AUTH_TOKEN_FILE, BINARY_PATH, LINK_LOCAL_NAME, POD_IDENTITY_AGENT_URI, POD_IDENTITY_TOKEN_DIR,
    POD_IDENTITY_TOKEN_FILE, POD_IDENTITY_VOLUME, SHARED_DIR, SHARED_VOLUME, SIDECAR_NAME,
    SKIP_CONTAINERS, TOKEN_DIR, TOKEN_FILE_NAME, TOKEN_VOLUME, WEBHOOK_TOKEN_DIR, WEBHOOK_VOLUME,
};
use crate::sidecar::addresses::DEFAULT_ADDRESSES;

/// The node labels that name a node's operating system (the beta one is
/// deprecated, but old manifests still select on it).
const OS_LABELS: [&str; 2] = ["kubernetes.io/os", "beta.kubernetes.io/os"];

/// The pair with which an SDK assumes a role by itself (web identity), before it
/// ever looks at the container endpoints.
const WEB_IDENTITY_ENV: [&str; 2] = ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"];

/// Variables of the app containers that the sidecar needs too: the role to assume
/// and the region of the STS endpoint (the EKS webhook sets all of them).
const INHERITED_ENV: [&str; 4] = [
    "AWS_ROLE_ARN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_STS_REGIONAL_ENDPOINTS",
];

/// Why a pod spec cannot be injected. Each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("no pod spec at {0}")]
    NoPodSpec(String),
    #[error("the pod template has no containers")]
    NoContainers,
    #[error("{0}[{1}] is not a container with a name")]
    UnnamedContainer(&'static str, usize),
    #[error("{0} is not a list")]
    NotAList(String),
    #[error("{0} is not a mapping")]
    NotAMapping(String),
    #[error("container {container:?} already uses port {port}; choose another --port")]
    PortInUse { container: String, port: u16 },
    #[error("the pod runs on Windows nodes ({0}): the sidecar is a Linux container, and the API server refuses a Windows pod the Linux security settings it carries; leave this workload out")]
    Windows(&'static str),
    #[error("hostNetwork pods share the node's loopback, where every pod on the node could reach the credentials and the port would clash; run the pod without hostNetwork")]
    HostNetwork,
    #[error("--container {name:?} is not an app container of this pod (it has: {available})")]
    UnknownContainer { name: String, available: String },
    #[error(
        "the pod already has a volume named {0:?} but no {SIDECAR_NAME} container; remove it first"
    )]
    VolumeExists(&'static str),
    #[error("{at}: {what}, which JSON (how the API server holds a pod) cannot carry")]
    NotJson { at: String, what: String },
    #[error("container {container:?} already mounts something at {path}")]
    MountPathInUse {
        container: String,
        path: &'static str,
    },
    #[error(transparent)]
    Roles(#[from] RoleProblem),
}

/// What [`inject`] did to one pod spec.
pub(crate) struct Injected {
    /// The containers to keep from the EKS webhook: the app containers it
    /// configured, or with several roles every container of the pod's own.
    pub apps: Vec<String>,
    /// What it changed that the pod's author set: one line each, naming the
    /// container and the variable (never a value), for stderr or a webhook
    /// warning.
    pub notes: Vec<String>,
    /// The fields of the spec it changed (the webhook's patch replaces each
    /// whole); every other field is left exactly as it was.
    pub changed: Vec<&'static str>,
}

/// Injects the sidecar into one pod spec (a mapping, checked by the caller).
/// Returns what it configured, or `None` when the pod already had the sidecar
/// and was left as it was.
pub(crate) fn inject(spec: &mut Mapping, opts: &Options) -> Result<Option<Injected>, Problem> {
    let containers = named_containers(spec, "containers")?;
    if containers.is_empty() {
        return Err(Problem::NoContainers);
    }
    let init = named_containers(spec, "initContainers")?;
    if containers
        .iter()
        .chain(init.iter())
        .any(|(name, _)| name == SIDECAR_NAME)
    {
        return Ok(None);
    }
    check(spec, opts, &containers, &init)?;
    if !opts.container_roles.is_empty() {
        let names = |list: &[(String, &Mapping)]| -> Vec<String> {
            list.iter().map(|(n, _)| n.clone()).collect()
        };
        roles::check_pod(
            &opts.container_roles,
            &names(&init),
            &names(&containers),
            opts.classic,
        )?;
        for (name, c) in init.iter().chain(containers.iter()) {
            let has_role = opts.container_roles.iter().any(|r| &r.container == name);
            if has_role
                && mounts(c).any(|m| m.get("mountPath").and_then(Value::as_str) == Some(SHARED_DIR))
            {
                return Err(Problem::MountPathInUse {
                    container: name.clone(),
                    path: SHARED_DIR,
                });
            }
        }
    }

    // With several roles the containers are the roles' (below), not these.
    let selected: Vec<usize> = if !opts.container_roles.is_empty() {
        Vec::new()
    } else if opts.containers.is_empty() {
        (0..containers.len()).collect()
    } else {
        containers
            .iter()
            .enumerate()
            .filter(|(_, (name, _))| opts.containers.contains(name))
            .map(|(i, _)| i)
            .collect()
    };
    for &i in &selected {
        let (name, c) = &containers[i];
        if mounts(c).any(|m| m.get("mountPath").and_then(Value::as_str) == Some(SHARED_DIR)) {
            return Err(Problem::MountPathInUse {
                container: name.clone(),
                path: SHARED_DIR,
            });
        }
    }

    let token = token_source(spec, &containers);
    // The role comes from --role-arn, else, like the region, from what the app
    // containers were given (by hand or by the EKS webhook), copied as is.
    let mut inherited: Vec<Value> = Vec::new();
    if let Some(arn) = &opts.role_arn {
        inherited.push(env_var("AWS_ROLE_ARN", arn));
    }
    inherited.extend(opts.chain.entries());
    for name in INHERITED_ENV {
        if inherited
            .iter()
            .any(|e| e.get("name").and_then(Value::as_str) == Some(name))
        {
            continue;
        }
        let found = containers
            .iter()
            .flat_map(|(_, c)| env_entries(c))
            .find(|e| e.get("name").and_then(Value::as_str) == Some(name));
        inherited.extend(found.cloned());
    }
    // A pod the EKS Pod Identity webhook has already mutated: the sidecar
    // takes the agent's variables and token the apps were given (the apps get
    // ours below). In the other order the EKS webhook gives them to the
    // sidecar itself, as it skips only the apps (`skip_for_eks_webhook`).
    let pod_identity = pod_identity_source(spec, &containers);
    if let Some((env, _)) = &pod_identity {
        inherited.extend(env.iter().cloned());
    }
    // Each role's token, decided once for the sidecar and its container.
    let role_tokens = (!opts.container_roles.is_empty())
        .then(|| RoleTokens::new(&opts.container_roles, &opts.auth_token));
    let sidecar_auth = match &role_tokens {
        Some(tokens) => tokens.sidecar_env(pod_identity.is_some(), opts.imds_role.as_deref()),
        None => vec![opts.auth_token.env("IRSA_PROXY_AUTH_TOKEN")],
    };
    let mut sidecar = sidecar(opts, &token, sidecar_auth, inherited);
    if let Some((_, mount)) = pod_identity {
        if let Some(mounts) = sidecar
            .get_mut("volumeMounts")
            .and_then(Value::as_array_mut)
        {
            mounts.push(mount);
        }
    }
    let mut configured: Vec<String> = selected.iter().map(|&i| containers[i].0.clone()).collect();
    if role_tokens.is_some() {
        // Every container but ours, so that the EKS webhook gives none of
        // them the pod's role: a container with no role gets none at all.
        configured = init
            .iter()
            .chain(containers.iter())
            .map(|(n, _)| n.clone())
            .collect();
    }

    // Everything is checked; from here on the spec is only changed.
    let app_env = opts.app_env();
    let mut notes = Vec::new();
    let mut changed = vec!["containers"];
    let list = seq_mut(spec, "containers")?;
    for (&i, name) in selected.iter().zip(&configured) {
        if let Some(c) = list.get_mut(i).and_then(Value::as_object_mut) {
            notes.extend(configure_app(c, name, &app_env, opts, shared_mount())?);
        }
    }
    if let Some(tokens) = &role_tokens {
        for key in ["initContainers", "containers"] {
            if !spec.contains_key(key) {
                continue;
            }
            for c in seq_mut(spec, key)?.iter_mut() {
                let Some(c) = c.as_object_mut() else { continue };
                let Some(name) = c.get("name").and_then(Value::as_str).map(str::to_string) else {
                    continue;
                };
                let Some(role) = tokens.role_of(&name) else {
                    continue;
                };
                let env = opts.app_env_with(
                    tokens.env(role, "AWS_CONTAINER_AUTHORIZATION_TOKEN"),
                    roles::TOKEN_FILE,
                );
                notes.extend(configure_app(
                    c,
                    &name,
                    &env,
                    opts,
                    RoleTokens::mount(role),
                )?);
            }
        }
    }
    if opts.classic {
        seq_mut(spec, "containers")?.push(sidecar);
    } else {
        // First, so that regular init containers after it can use credentials too.
        init_first(spec, sidecar)?;
    }
    if !opts.classic || opts.link_local {
        changed.push("initContainers");
    }
    if opts.link_local {
        // Before the sidecar, which binds the addresses it adds.
        init_first(spec, link_local_container(opts))?;
    }
    changed.push("volumes");
    let volumes = seq_mut(spec, "volumes")?;
    volumes.push(map([
        ("name", SHARED_VOLUME.into()),
        (
            "emptyDir",
            map([("medium", "Memory".into()), ("sizeLimit", "1Mi".into())]),
        ),
    ]));
    if token.volume == TOKEN_VOLUME {
        volumes.push(token_volume(opts));
    }
    Ok(Some(Injected {
        apps: configured,
        notes,
        changed,
    }))
}

/// Adds the app containers to the pod annotation with which the EKS
/// pod-identity webhook leaves containers alone. Without it the webhook gives
/// them `AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE`, and every SDK that
/// knows web identity would call STS itself and bypass the sidecar without a
/// word. The sidecar is not listed: it gets the role from the webhook.
pub(crate) fn skip_for_eks_webhook(meta: &mut Mapping, apps: &[String]) -> Result<(), Problem> {
    if apps.is_empty() {
        return Ok(());
    }
    let annotations = mapping_mut(meta, "annotations", "metadata.annotations")?;
    let mut names: Vec<String> = annotations
        .get(SKIP_CONTAINERS)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    for app in apps {
        if !names.contains(app) {
            names.push(app.clone());
        }
    }
    annotations.insert(SKIP_CONTAINERS.into(), names.join(",").into());
    Ok(())
}

/// The init step of `--link-local`: `irsa-proxy link-local` as root with only
/// `NET_ADMIN`, given the pod's and the node's IP so that it refuses a
/// namespace that is not the pod's own. It adds the addresses to `lo` and
/// sends their port 80 to the sidecar's port on the same address (an nftables
/// rule in the pod's namespace), so that port 80 stays free for the apps.
fn link_local_container(opts: &Options) -> Value {
    let field = |name: &str, path: &str| {
        map([
            ("name", name.into()),
            (
                "valueFrom",
                map([("fieldRef", map([("fieldPath", path.into())]))]),
            ),
        ])
    };
    map([
        ("name", LINK_LOCAL_NAME.into()),
        ("image", opts.image.as_str().into()),
        (
            "command",
            Value::Array(vec![
                BINARY_PATH.into(),
                "link-local".into(),
                format!(
                    "{}={}",
                    crate::flags::link_local::REDIRECT_PORT.name,
                    opts.port
                )
                .into(),
            ]),
        ),
        (
            "env",
            Value::Array(vec![
                field("IRSA_PROXY_POD_IP", "status.podIP"),
                field("IRSA_PROXY_HOST_IP", "status.hostIP"),
            ]),
        ),
        (
            "resources",
            map([
                (
                    "requests",
                    map([("cpu", "10m".into()), ("memory", "16Mi".into())]),
                ),
                (
                    "limits",
                    map([("cpu", "100m".into()), ("memory", "32Mi".into())]),
                ),
            ]),
        ),
        (
            "securityContext",
            map([
                // Root, for NET_ADMIN to be effective: runtimes set no ambient
                // capabilities, so a non-root process would not have it.
                ("runAsNonRoot", false.into()),
                ("runAsUser", 0.into()),
                ("readOnlyRootFilesystem", true.into()),
                ("allowPrivilegeEscalation", false.into()),
                (
                    "capabilities",
                    map([
                        ("drop", Value::Array(vec!["ALL".into()])),
                        ("add", Value::Array(vec!["NET_ADMIN".into()])),
                    ]),
                ),
                ("seccompProfile", map([("type", "RuntimeDefault".into())])),
            ]),
        ),
    ])
}

/// The checks that need the whole pod: the node's operating system, port
/// clashes, host network, names.
fn check(
    spec: &Mapping,
    opts: &Options,
    containers: &[(String, &Mapping)],
    init: &[(String, &Mapping)],
) -> Result<(), Problem> {
    if let Some(why) = windows(spec) {
        return Err(Problem::Windows(why));
    }
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        return Err(Problem::HostNetwork);
    }
    for (name, c) in containers.iter().chain(init.iter()) {
        let ports = c.get("ports").and_then(Value::as_array);
        let clash = ports
            .into_iter()
            .flatten()
            .any(|p| p.get("containerPort").and_then(Value::as_u64) == Some(u64::from(opts.port)));
        if clash {
            return Err(Problem::PortInUse {
                container: name.clone(),
                port: opts.port,
            });
        }
    }
    for wanted in &opts.containers {
        if !containers.iter().any(|(name, _)| name == wanted) {
            let names: Vec<&str> = containers.iter().map(|(n, _)| n.as_str()).collect();
            return Err(Problem::UnknownContainer {
                name: wanted.clone(),
                available: names.join(", "),
            });
        }
    }
    let volumes = spec.get("volumes").and_then(Value::as_array);
    for v in volumes.into_iter().flatten() {
        for ours in [SHARED_VOLUME, TOKEN_VOLUME] {
            if v.get("name").and_then(Value::as_str) == Some(ours) {
                return Err(Problem::VolumeExists(ours));
            }
        }
    }
    Ok(())
}

/// Why the pod can only run on Windows nodes, if it can: `spec.os.name`
/// (which makes the API server refuse Linux security settings), or a node
/// selector or required node affinity that admits Windows nodes only (the
/// pod is accepted, then its Linux sidecar cannot start there).
fn windows(spec: &Mapping) -> Option<&'static str> {
    let is_windows = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("windows"))
    };
    if spec
        .get("os")
        .and_then(|os| os.get("name"))
        .is_some_and(is_windows)
    {
        return Some("spec.os.name is windows");
    }
    let selector = spec.get("nodeSelector");
    if OS_LABELS
        .iter()
        .any(|label| selector.and_then(|s| s.get(*label)).is_some_and(is_windows))
    {
        return Some("its nodeSelector kubernetes.io/os is windows");
    }
    // Terms are ORed: every one of them must admit Windows only.
    let terms = spec
        .get("affinity")
        .and_then(|a| a.get("nodeAffinity"))
        .and_then(|a| a.get("requiredDuringSchedulingIgnoredDuringExecution"))
        .and_then(|r| r.get("nodeSelectorTerms"))
        .and_then(Value::as_array)?;
    let windows_only = |term: &Value| {
        term.get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|e| {
                let values = e.get("values").and_then(Value::as_array);
                e.get("key")
                    .and_then(Value::as_str)
                    .is_some_and(|k| OS_LABELS.contains(&k))
                    && e.get("operator").and_then(Value::as_str) == Some("In")
                    && values.is_some_and(|v| !v.is_empty() && v.iter().all(is_windows))
            })
    };
    (!terms.is_empty() && terms.iter().all(windows_only))
        .then_some("its required nodeAffinity admits kubernetes.io/os windows only")
}

/// The token the sidecar reads: the EKS webhook's volume when the pod has it (at
/// the path the webhook mounts it in the app containers), else our own projected
/// volume.
fn token_source(spec: &Mapping, containers: &[(String, &Mapping)]) -> TokenSource {
    let Some(volume) = volume_named(spec, WEBHOOK_VOLUME) else {
        return TokenSource {
            volume: TOKEN_VOLUME.into(),
            dir: TOKEN_DIR.into(),
            file: TOKEN_FILE_NAME.into(),
        };
    };
    let file = projected_token_path(volume).unwrap_or(TOKEN_FILE_NAME);
    let dir = mount_of(containers, WEBHOOK_VOLUME)
        .map(|(_, path)| path)
        .unwrap_or(WEBHOOK_TOKEN_DIR);
    TokenSource {
        volume: WEBHOOK_VOLUME.into(),
        dir: dir.trim_end_matches('/').into(),
        file: file.into(),
    }
}

/// The EKS Pod Identity mutation, if the pod has had it: the sidecar's
/// `AWS_CONTAINER_CREDENTIALS_FULL_URI` and `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`
/// (copied from an app container the webhook mutated, else the webhook's
/// defaults) and the mount of the webhook's token volume.
fn pod_identity_source(
    spec: &Mapping,
    containers: &[(String, &Mapping)],
) -> Option<(Vec<Value>, Value)> {
    let volume = volume_named(spec, POD_IDENTITY_VOLUME)?;
    let file = projected_token_path(volume).unwrap_or(POD_IDENTITY_TOKEN_FILE);
    let mutated = mount_of(containers, POD_IDENTITY_VOLUME);
    let dir = mutated
        .map(|(_, path)| path)
        .unwrap_or(POD_IDENTITY_TOKEN_DIR)
        .trim_end_matches('/')
        .to_string();
    let given = |name: &str| -> Option<Value> {
        mutated
            .into_iter()
            .flat_map(|(c, _)| env_entries(c))
            .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
            .cloned()
    };
    let env = vec![
        given("AWS_CONTAINER_CREDENTIALS_FULL_URI").unwrap_or_else(|| {
            env_var("AWS_CONTAINER_CREDENTIALS_FULL_URI", POD_IDENTITY_AGENT_URI)
        }),
        given("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").unwrap_or_else(|| {
            env_var(
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                &format!("{dir}/{file}"),
            )
        }),
    ];
    let mount = map([
        ("name", POD_IDENTITY_VOLUME.into()),
        ("mountPath", dir.as_str().into()),
        ("readOnly", true.into()),
    ]);
    Some((env, mount))
}

/// The pod's volume of this name.
fn volume_named<'a>(spec: &'a Mapping, name: &str) -> Option<&'a Value> {
    spec.get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(name))
}

/// The file name of a projected volume's service-account token.
fn projected_token_path(volume: &Value) -> Option<&str> {
    volume
        .get("projected")
        .and_then(|p| p.get("sources"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find_map(|s| s.get("serviceAccountToken")?.get("path")?.as_str())
}

/// The first container that mounts the volume `name`, and where.
fn mount_of<'a>(
    containers: &[(String, &'a Mapping)],
    name: &str,
) -> Option<(&'a Mapping, &'a str)> {
    containers.iter().find_map(|(_, c)| {
        mounts(c)
            .find(|m| m.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|m| m.get("mountPath")?.as_str())
            .map(|path| (*c, path))
    })
}

fn token_volume(opts: &Options) -> Value {
    let token = map([
        ("audience", opts.token_audience.as_str().into()),
        ("expirationSeconds", opts.token_expiration.into()),
        ("path", TOKEN_FILE_NAME.into()),
    ]);
    map([
        ("name", TOKEN_VOLUME.into()),
        (
            "projected",
            map([(
                "sources",
                Value::Array(vec![map([("serviceAccountToken", token)])]),
            )]),
        ),
    ])
}

/// The sidecar container. `restartPolicy: Always` makes it a native sidecar when
/// it sits in `initContainers`; kubelet then starts the app containers only once
/// its startup probe has passed, i.e. once credentials are cached.
fn sidecar(opts: &Options, token: &TokenSource, auth: Vec<Value>, inherited: Vec<Value>) -> Value {
    let mut c = Mapping::new();
    c.insert("name".into(), SIDECAR_NAME.into());
    c.insert("image".into(), opts.image.as_str().into());
    if !opts.classic {
        c.insert("restartPolicy".into(), "Always".into());
    }
    let mut args: Vec<Value> = vec![format!("--listen={}", opts.listen()).into()];
    if opts.link_local {
        // The same port as on loopback: the init step redirects port 80 of
        // each address here, and the address still tells which route it was.
        for ip in DEFAULT_ADDRESSES {
            args.push(format!("--listen={ip}:{}", opts.port).into());
        }
    }
    // With several roles, the token files are under IRSA_PROXY_AUTH_TOKEN_DIR.
    if opts.container_roles.is_empty() {
        args.push(format!("--auth-token-file={AUTH_TOKEN_FILE}").into());
    }
    // A flag, not AWS_WEB_IDENTITY_TOKEN_FILE: the EKS webhook gives a
    // container AWS_ROLE_ARN only if it has neither variable yet.
    args.push(format!("--token-file={}", token.path()).into());
    c.insert("args".into(), Value::Array(args));
    // The tokens as values, from the same source as the apps' (no flag: a
    // secret in args would show in the process list).
    let mut env = auth;
    env.extend(inherited);
    c.insert("env".into(), Value::Array(env));
    // `resources` first, then the mounts, then the rest: the order of the
    // keys as `inject` writes them.
    let (resources, rest) = constant_parts(opts);
    c.insert("resources".into(), resources);
    c.insert(
        "volumeMounts".into(),
        Value::Array(vec![
            map([
                ("name", token.volume.as_str().into()),
                ("mountPath", token.dir.as_str().into()),
                ("readOnly", true.into()),
            ]),
            map([
                ("name", SHARED_VOLUME.into()),
                ("mountPath", SHARED_DIR.into()),
            ]),
        ]),
    );
    c.extend(rest);
    Value::Object(c)
}

/// The parts of the sidecar that depend on nothing but its port: `resources`,
/// and after `volumeMounts` the three probes and `securityContext`. Built once
/// per port and thread and cloned for each pod (the webhook builds a sidecar
/// per review; a clone copies the maps without hashing their keys again).
fn constant_parts(opts: &Options) -> (Value, Vec<(String, Value)>) {
    type Parts = (u16, Value, Vec<(String, Value)>);
    thread_local! {
        static PARTS: std::cell::RefCell<Option<Parts>> = const { std::cell::RefCell::new(None) };
    }
    PARTS.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().is_some_and(|(port, _, _)| *port != opts.port) {
            *cell = None;
        }
        let (_, resources, rest) =
            cell.get_or_insert_with(|| (opts.port, resources(), rest_of_sidecar(opts)));
        (resources.clone(), rest.clone())
    })
}

fn resources() -> Value {
    map([
        (
            "requests",
            map([("cpu", "10m".into()), ("memory", "32Mi".into())]),
        ),
        (
            "limits",
            map([("cpu", "200m".into()), ("memory", "64Mi".into())]),
        ),
    ])
}

fn rest_of_sidecar(opts: &Options) -> Vec<(String, Value)> {
    let mut c = Mapping::new();
    // Exec probes: kubelet's httpGet probes connect to the pod IP, which a
    // loopback-only listener does not answer; the binary probes 127.0.0.1 itself.
    // Startup: up to 2 minutes for the first STS answer, checked every second.
    c.insert(
        "startupProbe".into(),
        probe(opts, super::READY_PATH, 1, 120),
    );
    c.insert(
        "readinessProbe".into(),
        probe(opts, super::READY_PATH, 10, 3),
    );
    c.insert("livenessProbe".into(), probe(opts, super::LIVE_PATH, 10, 3));
    c.insert(
        "securityContext".into(),
        map([
            ("runAsNonRoot", true.into()),
            // Numeric, so that kubelet can check runAsNonRoot whatever USER the
            // image declares; 65532 is distroless' nonroot.
            ("runAsUser", 65532.into()),
            ("runAsGroup", 65532.into()),
            ("readOnlyRootFilesystem", true.into()),
            ("allowPrivilegeEscalation", false.into()),
            (
                "capabilities",
                map([("drop", Value::Array(vec!["ALL".into()]))]),
            ),
            ("seccompProfile", map([("type", "RuntimeDefault".into())])),
        ]),
    );
    c.into_iter().collect()
}

fn probe(opts: &Options, path: &str, period: u32, failures: u32) -> Value {
    let url = format!("http://{}{path}", opts.listen());
    map([
        (
            "exec",
            map([(
                "command",
                Value::Array(vec![BINARY_PATH.into(), "probe".into(), url.into()]),
            )]),
        ),
        ("periodSeconds", period.into()),
        ("timeoutSeconds", 2.into()),
        ("failureThreshold", failures.into()),
    ])
}

/// Sets the endpoint variables (entries of the same name are removed, and ours
/// appended in order, so that `$(...)` references resolve), removes the
/// web-identity pair unless kept, and mounts the shared directory read-only.
/// Returns a note for each variable of the author's it replaced or removed.
fn configure_app(
    c: &mut Mapping,
    name: &str,
    app_env: &[Value],
    opts: &Options,
    mount: Value,
) -> Result<Vec<String>, Problem> {
    let env = seq_mut(c, "env")?;
    let named = |e: &Value, n: &str| e.get("name").and_then(Value::as_str) == Some(n);
    let mut notes = Vec::new();
    // With both set, an SDK assumes the role itself and never asks the sidecar.
    let both = WEB_IDENTITY_ENV
        .iter()
        .all(|n| env.iter().any(|e| named(e, n)));
    let strip: &[&str] = if !opts.keep_web_identity && (both || opts.strip_web_identity) {
        &WEB_IDENTITY_ENV
    } else {
        &[]
    };
    let stripped: Vec<&str> = strip
        .iter()
        .copied()
        .filter(|n| env.iter().any(|e| named(e, n)))
        .collect();
    if !stripped.is_empty() {
        env.retain(|e| !stripped.iter().any(|n| named(e, n)));
        notes.push(format!(
            "container {name:?}: removed {}: with them its SDK assumes the role itself and bypasses the sidecar (--keep-web-identity keeps them)",
            stripped.join(" and ")
        ));
    }
    for ours in app_env {
        let Some(var) = ours.get("name").and_then(Value::as_str) else {
            continue;
        };
        // Only a different value is news: never the value itself, which may
        // be a token.
        if env.iter().any(|e| named(e, var) && e != ours) {
            notes.push(format!(
                "container {name:?}: its {var} is replaced by the sidecar's"
            ));
        }
        env.retain(|e| !named(e, var));
    }
    env.extend(app_env.iter().cloned());
    seq_mut(c, "volumeMounts")?.push(mount);
    Ok(notes)
}

/// The read-only mount of the whole shared directory (one role).
fn shared_mount() -> Value {
    map([
        ("name", SHARED_VOLUME.into()),
        ("mountPath", SHARED_DIR.into()),
        ("readOnly", true.into()),
    ])
}

// ---- small helpers over JSON values ----

fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    let mut m = Mapping::with_capacity(N);
    for (k, v) in pairs {
        m.insert(k.into(), v);
    }
    Value::Object(m)
}

pub(crate) fn env_var(name: &str, value: &str) -> Value {
    map([("name", name.into()), ("value", value.into())])
}

/// An env entry read from a Secret's key when the container starts.
pub(crate) fn env_from_secret(name: &str, secret: &str, key: &str) -> Value {
    map([
        ("name", name.into()),
        (
            "valueFrom",
            map([(
                "secretKeyRef",
                map([("name", secret.into()), ("key", key.into())]),
            )]),
        ),
    ])
}

/// The named containers of `containers` or `initContainers` (empty when absent).
fn named_containers<'a>(
    spec: &'a Mapping,
    key: &'static str,
) -> Result<Vec<(String, &'a Mapping)>, Problem> {
    let list = match spec.get(key) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(Problem::NotAList(key.into())),
    };
    list.iter()
        .enumerate()
        .map(|(i, c)| {
            let m = c.as_object().ok_or(Problem::UnnamedContainer(key, i))?;
            let name = m
                .get("name")
                .and_then(Value::as_str)
                .ok_or(Problem::UnnamedContainer(key, i))?;
            Ok((name.to_string(), m))
        })
        .collect()
}

fn mounts(c: &Mapping) -> impl Iterator<Item = &Value> {
    c.get("volumeMounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn env_entries(c: &Mapping) -> impl Iterator<Item = &Value> {
    c.get("env").and_then(Value::as_array).into_iter().flatten()
}

/// The value at `key`, set to `empty()` when absent or an explicit null.
fn slot_mut<'a>(m: &'a mut Mapping, key: &str, empty: fn() -> Value) -> &'a mut Value {
    let slot = m.entry(key).or_insert_with(empty);
    if slot.is_null() {
        *slot = empty();
    }
    slot
}

/// The mapping at `key`, created when absent; `what` names it when it is
/// something else.
fn mapping_mut<'a>(m: &'a mut Mapping, key: &str, what: &str) -> Result<&'a mut Mapping, Problem> {
    slot_mut(m, key, || Value::Object(Mapping::new()))
        .as_object_mut()
        .ok_or_else(|| Problem::NotAMapping(what.to_string()))
}

/// The list at `key`, created when absent.
fn seq_mut<'a>(m: &'a mut Mapping, key: &str) -> Result<&'a mut Vec<Value>, Problem> {
    slot_mut(m, key, || Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or_else(|| Problem::NotAList(key.into()))
}

/// Puts `container` first in `initContainers`, creating the list (just before
/// `containers`, where people write it) when the pod has none.
fn init_first(spec: &mut Mapping, container: Value) -> Result<(), Problem> {
    if !spec.contains_key("initContainers") {
        insert_before(
            spec,
            "initContainers",
            Value::Array(Vec::new()),
            "containers",
        );
    }
    seq_mut(spec, "initContainers")?.insert(0, container);
    Ok(())
}

/// Inserts `key` just before `before` (or at the end when `before` is absent),
/// keeping the order of every other key.
fn insert_before(m: &mut Mapping, key: &str, value: Value, before: &str) {
    let old = std::mem::take(m);
    let mut value = Some(value);
    for (k, v) in old {
        if k == before {
            if let Some(value) = value.take() {
                m.insert(key.into(), value);
            }
        }
        m.insert(k, v);
    }
    if let Some(value) = value {
        m.insert(key.into(), value);
    }
}
