//! `irsa-proxy inject`: add the sidecar to Kubernetes manifests.
//!
//! Reads YAML documents (a file, or `-` for stdin), finds every pod template
//! ([`workload`]) and rewrites it ([`pod`]), and prints all documents back in
//! their order, `---` between them. Documents without a pod template come out
//! with the same values and key order (comments and empty documents are lost: the
//! YAML is parsed, not patched as text). Any bad document stops the run with one
//! line naming it and exit 2, before anything is written.
//!
//! One engine for `inject` and the webhook ([`pod`]), on JSON: the pod as the
//! API server holds it. `inject` hands it each pod spec and pod metadata
//! converted from YAML, and converts them back ([`yaml`]).
//!
//! What a pod gets, and how it lines up with `serve`:
//!
//! - a container named [`SIDECAR_NAME`] running the image's entrypoint
//!   (`/irsa-proxy serve`) with `--listen=127.0.0.1:<port>` and
//!   `--auth-token-file=`[`AUTH_TOKEN_FILE`]; by default a native sidecar (first
//!   `initContainers` entry with `restartPolicy: Always`), with `--classic-sidecar`
//!   the last entry of `containers`;
//! - the web-identity token: the EKS webhook's `aws-iam-token` volume when the pod
//!   already has it, else a projected service-account token volume of our own;
//! - a memory-backed `emptyDir` at [`SHARED_DIR`] where the proxy writes the
//!   authorization token (mode 0644) and the apps read it;
//! - the pod's authorization token, from an immutable Secret ([`AUTH_SECRET`],
//!   key `token`) that `inject` emits once per namespace unless the input already
//!   has it, or that `--auth-secret` names: the sidecar gets it as
//!   `IRSA_PROXY_AUTH_TOKEN` (and writes it to the shared file), the apps as
//!   `AWS_CONTAINER_AUTHORIZATION_TOKEN`, so SDKs that read the value and SDKs
//!   that read the file present the same bytes. Immutable, so that no container
//!   of a running pod can be restarted with a token its neighbours do not have;
//! - in the app containers: the token value and file, `..._FULL_URI`, and
//!   `AWS_EC2_METADATA_SERVICE_ENDPOINT` or, with `--link-local`,
//!   `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` ([`Options::app_env`]), and the
//!   shared directory mounted read-only; the pod annotation
//!   `eks.amazonaws.com/skip-containers` names them, so that the EKS pod-identity
//!   webhook gives web identity to the sidecar only and every SDK goes through it;
//! - with `--link-local`, an init container running `irsa-proxy link-local
//!   --redirect-port=<port>` (root, `NET_ADMIN` only) before the sidecar, and
//!   the sidecar listening on `169.254.170.2:<port>` and `169.254.169.254:<port>`
//!   too: the init step sends port 80 of those addresses there, so that port 80
//!   stays free for the apps.
//!
//! With `--container-role CONTAINER=ROLE_ARN` (several roles, [`roles`]) the
//! pod gets one token per role instead: the sidecar all of them, each named
//! container (init containers too) its own only, through a `subPath` of the
//! shared directory and its own Secret key; the other containers nothing.
//!
//! What a pod keeps or loses of its author's:
//!
//! - an app container that sets both `AWS_ROLE_ARN` and
//!   `AWS_WEB_IDENTITY_TOKEN_FILE` loses them (its SDK would assume the role
//!   itself and never ask the sidecar), unless `--keep-web-identity`;
//! - an endpoint variable of [`Options::app_env`] that an app container set to
//!   another value is replaced.
//!
//! Each such change is a note (stderr for `inject`, a warning for the webhook)
//! naming the container and the variable, never its value.
//!
//! Pods the sidecar cannot help are refused, one line each: `hostNetwork`, and
//! pods that run on Windows nodes (`spec.os.name`, or a node selector or
//! required node affinity for `kubernetes.io/os: windows`).

mod chain;
mod emit;
mod pod;
mod roles;
mod workload;
mod yaml;

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use serde::Deserialize;
use serde_norway::{Mapping, Value};

use crate::cli::InjectArgs;
use crate::flags::{self, inject as f, FlagError, Flags, NoEnvironment, Refusal};
use crate::Fatal;

use pod::Injected;
pub use pod::Problem;
pub use roles::{ContainerRole, RoleProblem};

/// Name of the sidecar container; its presence marks a pod as already injected.
pub(crate) const SIDECAR_NAME: &str = "irsa-proxy";
/// Path of the binary in the image (see the Dockerfile); the exec probes run it.
pub(crate) const BINARY_PATH: &str = "/irsa-proxy";
/// The shared `emptyDir` holding the authorization token.
pub(crate) const SHARED_VOLUME: &str = "irsa-proxy-auth";
/// Where the shared `emptyDir` is mounted, in the sidecar and the app containers.
pub(crate) const SHARED_DIR: &str = "/var/run/irsa-proxy";
/// The authorization token file: `serve --auth-token-file` creates it, the apps'
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` points at it.
pub(crate) const AUTH_TOKEN_FILE: &str = "/var/run/irsa-proxy/auth-token";
/// Our own projected token volume, used when the pod has no `aws-iam-token`.
pub(crate) const TOKEN_VOLUME: &str = "irsa-proxy-token";
/// Where our own token volume is mounted in the sidecar.
pub(crate) const TOKEN_DIR: &str = "/var/run/secrets/irsa-proxy/serviceaccount";
/// File name of the token inside the projected volume.
pub(crate) const TOKEN_FILE_NAME: &str = "token";
/// The EKS pod-identity webhook's token volume, and where it mounts it.
pub(crate) const WEBHOOK_VOLUME: &str = "aws-iam-token";
pub(crate) const WEBHOOK_TOKEN_DIR: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
/// The EKS Pod Identity mutation's token volume, where it mounts it, and the
/// agent's address (amazon-eks-pod-identity-webhook, `main.go` flag defaults
/// `container-credentials-token-volume-name`, `...-token-mount-path`,
/// `...-token-path`, `container-credentials-full-uri`).
pub(crate) const POD_IDENTITY_VOLUME: &str = "eks-pod-identity-token";
pub(crate) const POD_IDENTITY_TOKEN_DIR: &str =
    "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount";
pub(crate) const POD_IDENTITY_TOKEN_FILE: &str = "eks-pod-identity-token";
pub(crate) const POD_IDENTITY_AGENT_URI: &str = "http://169.254.170.23/v1/credentials";
/// `serve`'s paths (docs/contract.md §3).
pub(crate) const CREDENTIALS_PATH: &str = "/v1/credentials";
pub(crate) const READY_PATH: &str = "/readyz";
pub(crate) const LIVE_PATH: &str = "/healthz";
/// What to do without `--image`: no image is published, so a default would end in
/// ImagePullBackOff.
pub(crate) const IMAGE_HINT: &str = "an image you built and pushed from this repository (none is published): docker build -t REGISTRY/irsa-proxy:TAG . && docker push REGISTRY/irsa-proxy:TAG, then --image REGISTRY/irsa-proxy:TAG";
/// The Secret holding the pod's authorization token, emitted by default.
pub(crate) const AUTH_SECRET: &str = "irsa-proxy-auth";
/// Its key.
pub(crate) const AUTH_SECRET_KEY: &str = "token";
/// The init container of `--link-local`.
pub(crate) const LINK_LOCAL_NAME: &str = "irsa-proxy-link-local";
/// The EKS pod-identity webhook's pod annotation listing the containers it leaves alone.
pub(crate) const SKIP_CONTAINERS: &str = "eks.amazonaws.com/skip-containers";
/// `serve`'s route with the token in the path, for RELATIVE_URI.
pub(crate) const PATH_TOKEN_PREFIX: &str = "/v2/credentials/";

/// Validated `inject` flags.
#[derive(Debug, Clone)]
pub struct Options {
    pub image: String,
    /// Set as `AWS_ROLE_ARN` on the sidecar; without it the sidecar takes the app
    /// containers' `AWS_ROLE_ARN` (the EKS webhook's), if any.
    pub role_arn: Option<String>,
    pub classic: bool,
    pub port: u16,
    /// App containers to configure; empty means all.
    pub containers: Vec<String>,
    pub token_audience: String,
    pub token_expiration: i64,
    /// Also remove a lone `AWS_ROLE_ARN` or `AWS_WEB_IDENTITY_TOKEN_FILE`
    /// (the pair is removed anyway unless `keep_web_identity`).
    pub strip_web_identity: bool,
    /// Leave the app containers' web-identity pair in place.
    pub keep_web_identity: bool,
    /// Where the containers read the pod's authorization token.
    pub auth_token: AuthTokenSource,
    /// Emit the Secret of [`AuthTokenSource::Secret`] (with a random token)
    /// where the input lacks it.
    pub emit_auth_secret: bool,
    pub link_local: bool,
    /// Role chaining and session attributes, as the sidecar's variables.
    pub chain: chain::ChainEnv,
    /// Several roles (`--container-role`), in flag order: empty for the
    /// single-role sidecar.
    pub container_roles: Vec<ContainerRole>,
    /// `--imds-role`: the one of `container_roles` that IMDS serves.
    pub imds_role: Option<String>,
}

impl Options {
    /// Checks every flag and reports every bad one, each on its own line.
    pub fn from_args(args: &InjectArgs) -> Result<Options, Vec<FlagError>> {
        let mut flags = Flags::new(&NoEnvironment);
        let not_empty = |what: &'static str| {
            move |v: &str| {
                if v.trim().is_empty() {
                    Err(Refusal::new("is empty", what))
                } else {
                    Ok(())
                }
            }
        };
        // Required: no image is published, so a default would end in
        // ImagePullBackOff (an empty --image is the same as none).
        let image = Some(args.sidecar.image.as_str()).filter(|i| !i.trim().is_empty());
        flags.required(
            &f::IMAGE,
            image,
            IMAGE_HINT,
            not_empty("an image reference"),
        );
        flags.parse(&f::ROLE_ARN, args.role_arn.as_deref(), flags::role_arn);
        flags.parse(
            &f::PORT,
            Some(&args.sidecar.port.to_string()),
            flags::number_in(f::PORT_RANGE),
        );
        flags.parse(
            &f::TOKEN_AUDIENCE,
            Some(&args.sidecar.token_audience),
            not_empty("an audience such as sts.amazonaws.com"),
        );
        flags.parse(
            &f::TOKEN_EXPIRATION,
            Some(&args.sidecar.token_expiration.to_string()),
            flags::number_in(f::TOKEN_EXPIRATION_RANGE),
        );
        flags.parse(&f::AUTH_SECRET, args.auth_secret.as_deref(), |name| {
            let ok = (1..=253).contains(&name.len())
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                })
                && name.starts_with(|c: char| c.is_ascii_alphanumeric())
                && name.ends_with(|c: char| c.is_ascii_alphanumeric());
            if ok {
                Ok(())
            } else {
                Err(Refusal::new(
                    "is not a Secret name",
                    "lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
                ))
            }
        });
        for name in &args.container {
            flags.parse(&f::CONTAINER, Some(name), |name| {
                if name.is_empty() || name == SIDECAR_NAME {
                    Err(Refusal::new(
                        "is not allowed",
                        "the name of an app container",
                    ))
                } else {
                    Ok(())
                }
            });
        }
        let chain = chain::ChainEnv::from_args(&mut flags, args);
        let container_roles = container_roles(&mut flags, args);
        let imds_role = imds_role(&mut flags, args);
        flags.finish(|| Some(()))?;
        Ok(Options {
            image: args.sidecar.image.trim().to_string(),
            role_arn: args.role_arn.clone(),
            classic: args.sidecar.classic_sidecar,
            port: args.sidecar.port,
            containers: args.container.clone(),
            token_audience: args.sidecar.token_audience.clone(),
            token_expiration: args.sidecar.token_expiration,
            strip_web_identity: args.strip_web_identity,
            keep_web_identity: args.keep_web_identity,
            auth_token: AuthTokenSource::Secret(
                args.auth_secret
                    .clone()
                    .unwrap_or_else(|| AUTH_SECRET.to_string()),
            ),
            emit_auth_secret: args.auth_secret.is_none(),
            link_local: args.link_local,
            chain,
            container_roles,
            imds_role,
        })
    }

    /// `serve`'s loopback host with the chosen port.
    pub fn listen(&self) -> String {
        let host = crate::flags::serve::DEFAULT_LISTEN.ip();
        format!("{host}:{}", self.port)
    }

    /// The environment every configured app container gets, in this order: the
    /// token value first, since `$(AWS_CONTAINER_AUTHORIZATION_TOKEN)` in the
    /// relative URI expands only names defined before it.
    pub(crate) fn app_env(&self) -> Vec<serde_json::Value> {
        self.app_env_with(
            self.auth_token.env("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
            AUTH_TOKEN_FILE,
        )
    }

    /// [`Options::app_env`] with this token entry and token file (a role's).
    pub(crate) fn app_env_with(
        &self,
        token: serde_json::Value,
        token_file: &str,
    ) -> Vec<serde_json::Value> {
        let base = format!("http://{}", self.listen());
        let mut env = vec![
            token,
            pod::env_var(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                &format!("{base}{CREDENTIALS_PATH}"),
            ),
            pod::env_var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token_file),
        ];
        if self.link_local {
            // Resolved against 169.254.170.2 by every SDK since 2016, which
            // sends no Authorization on this route: the token is the path.
            env.push(pod::env_var(
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                &format!("{PATH_TOKEN_PREFIX}$(AWS_CONTAINER_AUTHORIZATION_TOKEN)"),
            ));
        } else {
            // Not with --link-local: IMDS is then where every SDK looks by
            // default, and the Ruby SDK v3 reads this variable but dials port 80.
            env.push(pod::env_var("AWS_EC2_METADATA_SERVICE_ENDPOINT", &base));
        }
        env
    }
}

/// Where every container of the pod reads the authorization token from.
#[derive(Clone, PartialEq, Eq)]
pub enum AuthTokenSource {
    /// A Secret's key [`AUTH_SECRET_KEY`] (`inject`: a manifest is applied
    /// many times and outlives any one pod, so the token lives beside it).
    Secret(String),
    /// The token itself as a plain env `value` (the webhook: it sees each pod
    /// once, at creation, and a pod's spec cannot change afterwards, so every
    /// container of the pod, restarted or not, reads the same token).
    Value(String),
}

impl AuthTokenSource {
    /// The Secret's name, when the token comes from one.
    pub fn secret_name(&self) -> Option<&str> {
        match self {
            AuthTokenSource::Secret(name) => Some(name),
            AuthTokenSource::Value(_) => None,
        }
    }

    /// The env entry `name` carrying the token.
    pub(crate) fn env(&self, name: &str) -> serde_json::Value {
        match self {
            AuthTokenSource::Secret(secret) => pod::env_from_secret(name, secret, AUTH_SECRET_KEY),
            AuthTokenSource::Value(token) => pod::env_var(name, token),
        }
    }
}

// The token is a secret: never in logs or `{:?}` output.
impl std::fmt::Debug for AuthTokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthTokenSource::Secret(name) => f.debug_tuple("Secret").field(name).finish(),
            AuthTokenSource::Value(_) => f.write_str("Value(...)"),
        }
    }
}

/// Where the sidecar reads the web-identity token.
pub(crate) struct TokenSource {
    pub volume: String,
    pub dir: String,
    pub file: String,
}

impl TokenSource {
    fn path(&self) -> String {
        format!("{}/{}", self.dir, self.file)
    }
}

/// A document that could not be injected.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("document {index}: not YAML: {message}")]
    NotYaml { index: usize, message: String },
    #[error("document {index} ({object}): {problem}")]
    Pod {
        index: usize,
        object: String,
        problem: Problem,
    },
    #[error("document {index}: the Secret {secret:?} the input has in {namespace} lacks the key of each role that needs one ({missing}); add them, or leave the Secret out and inject emits it")]
    SecretKeys {
        index: usize,
        secret: String,
        namespace: String,
        missing: String,
    },
}

/// [`inject_manifests`]' documents alone.
pub fn inject_documents(input: &str, opts: &Options) -> Result<String, Error> {
    inject_manifests(input, opts).map(|m| m.text)
}

/// What [`inject_manifests`] made of its input.
#[derive(Debug)]
pub struct Manifests {
    /// The documents, `---` between them.
    pub text: String,
    /// One line per change to what a pod's author wrote, as
    /// `document N (Kind/name): container "c": ...`.
    pub notes: Vec<String>,
}

/// Injects every pod template in `input` (one or more YAML documents) and returns
/// the documents serialised again, `---` between them. The authorization
/// Secret, where it is to be emitted, goes just before the first document that
/// needs it in its namespace.
pub fn inject_manifests(input: &str, opts: &Options) -> Result<Manifests, Error> {
    let mut docs = Vec::new();
    for (i, de) in serde_norway::Deserializer::from_str(input).enumerate() {
        let index = i + 1;
        let doc = Value::deserialize(de).map_err(|e| Error::NotYaml {
            index,
            message: e.to_string(),
        })?;
        // `---` with nothing after it, or a trailing separator: nothing to keep.
        if !doc.is_null() {
            docs.push((index, doc));
        }
    }
    // Secrets of that name the input already has, by namespace.
    let given_secrets: Vec<(usize, &Value)> = docs
        .iter()
        .flat_map(|(i, d)| workload::objects(d).into_iter().map(move |o| (*i, o)))
        .filter(|(_, o)| {
            o.get("kind").and_then(Value::as_str) == Some("Secret")
                && opts
                    .auth_token
                    .secret_name()
                    .is_some_and(|s| workload::name(o) == Some(s))
        })
        .collect();
    // With several roles, each must have every role's key: a missing one would
    // stop the pod's containers at start (CreateContainerConfigError).
    if !opts.container_roles.is_empty() {
        for (index, secret) in &given_secrets {
            let has = |key: &str| {
                ["data", "stringData"]
                    .iter()
                    .any(|d| secret.get(*d).and_then(|m| m.get(key)).is_some())
            };
            let missing: Vec<&str> = secret_keys(opts).into_iter().filter(|k| !has(k)).collect();
            if !missing.is_empty() {
                return Err(Error::SecretKeys {
                    index: *index,
                    secret: workload::name(secret).unwrap_or_default().to_string(),
                    namespace: workload::namespace(secret)
                        .unwrap_or_else(|| "the namespace it is applied to".into()),
                    missing: missing.join(", "),
                });
            }
        }
    }
    let mut have_secret: Vec<Option<String>> = given_secrets
        .iter()
        .map(|(_, o)| workload::namespace(o))
        .collect();
    let mut out = String::new();
    let mut notes = Vec::new();
    let mut written = 0usize;
    for (index, mut doc) in docs {
        let (injected, doc_notes) =
            inject_document(&mut doc, opts).map_err(|(object, problem)| Error::Pod {
                index,
                object,
                problem,
            })?;
        notes.extend(
            doc_notes
                .into_iter()
                .map(|(object, note)| format!("document {index} ({object}): {note}")),
        );
        let mut texts = Vec::new();
        if let (true, Some(secret)) = (opts.emit_auth_secret, opts.auth_token.secret_name()) {
            for ns in injected {
                if !have_secret.contains(&ns) {
                    texts.push(to_text(
                        index,
                        &auth_secret(secret, ns.as_deref(), &secret_keys(opts)),
                    )?);
                    have_secret.push(ns);
                }
            }
        }
        texts.push(to_text(index, &doc)?);
        for text in texts {
            if written > 0 {
                out.push_str("---\n");
            }
            out.push_str(&text);
            written += 1;
        }
    }
    Ok(Manifests { text: out, notes })
}

/// The keys of the emitted Secret: [`AUTH_SECRET_KEY`], or with several roles
/// one per role (every injected pod has every role: see [`roles`]).
fn secret_keys(opts: &Options) -> Vec<&str> {
    if opts.container_roles.is_empty() {
        vec![AUTH_SECRET_KEY]
    } else {
        opts.container_roles
            .iter()
            .map(|r| r.container.as_str())
            .collect()
    }
}

/// `--container-role`, each checked alone, then against the earlier ones
/// (a container given twice, or in two roles), and with `--container`.
fn container_roles(flags: &mut Flags<'_>, args: &InjectArgs) -> Vec<ContainerRole> {
    let mut parsed: Vec<(ContainerRole, &str)> = Vec::new();
    for spec in &args.container_role {
        if let Some(r) = flags.parse(&f::CONTAINER_ROLE, Some(spec), ContainerRole::parse) {
            parsed.push((r, spec));
        }
    }
    let roles: Vec<ContainerRole> = parsed.iter().map(|(r, _)| r.clone()).collect();
    for (i, (_, spec)) in parsed.iter().enumerate() {
        if let Some(why) = roles::duplicate(&roles, i) {
            flags.refuse(FlagError::refused(f::CONTAINER_ROLE.name, None, spec, why));
        }
    }
    if let (Some(spec), false) = (args.container_role.first(), args.container.is_empty()) {
        flags.refuse(FlagError::refused(
            f::CONTAINER_ROLE.name,
            None,
            spec,
            Refusal::new(
                "is given with --container",
                "one or the other: --container picks the containers of the pod's one role, --container-role gives each container its own",
            ),
        ));
    }
    roles
}

/// `--imds-role`: one of the `--container-role` containers (they name the
/// roles), checked against the flags as given so that one bad
/// `--container-role` does not hide it.
fn imds_role(flags: &mut Flags<'_>, args: &InjectArgs) -> Option<String> {
    let name = args.imds_role.as_deref()?.trim();
    let containers: Vec<&str> = args
        .container_role
        .iter()
        .filter_map(|spec| spec.split_once('=').map(|(c, _)| c.trim()))
        .collect();
    let why = if containers.is_empty() {
        Refusal::new(
            "is given without --container-role",
            "the name of one of the --container-role containers (with one role for the pod, IMDS serves it already)",
        )
    } else if containers.contains(&name) {
        return Some(name.to_string());
    } else {
        Refusal::new(
            "is not one of the --container-role containers",
            format!("one of {}", containers.join(", ")),
        )
    };
    flags.refuse(FlagError::refused(f::IMDS_ROLE.name, None, name, why));
    None
}

/// A new Secret with a random token per key. Immutable: the API server refuses to
/// change it, so the token under running pods never changes; rotating means a
/// new Secret name in the pod template, which rolls the pods.
fn auth_secret(name: &str, namespace: Option<&str>, keys: &[&str]) -> Value {
    use base64::Engine;
    let mut metadata = Mapping::new();
    metadata.insert("name".into(), name.into());
    if let Some(ns) = namespace {
        metadata.insert("namespace".into(), ns.into());
    }
    let mut data = Mapping::new();
    for key in keys {
        let token = crate::sidecar::endpoints::random_token();
        data.insert(
            (*key).into(),
            base64::engine::general_purpose::STANDARD
                .encode(token)
                .into(),
        );
    }
    let mut m = Mapping::new();
    m.insert("apiVersion".into(), "v1".into());
    m.insert("kind".into(), "Secret".into());
    m.insert("metadata".into(), Value::Mapping(metadata));
    m.insert("type".into(), "Opaque".into());
    m.insert("immutable".into(), true.into());
    m.insert("data".into(), Value::Mapping(data));
    Value::Mapping(m)
}

/// One document as YAML text that reads back the same.
fn to_text(index: usize, doc: &Value) -> Result<String, Error> {
    {
        let text = match emit::document(doc) {
            Some(text) => text,
            None => serde_norway::to_string(&doc).map_err(|e| Error::NotYaml {
                index,
                message: e.to_string(),
            })?,
        };
        faithful(text, doc).ok_or_else(|| Error::NotYaml {
            index,
            message: "cannot be written back as YAML that reads the same".into(),
        })
    }
}

/// `text` if it reads back as `doc`, else `doc` as JSON (which is YAML): the
/// YAML emitter writes some values, such as a multi-line string as a whole
/// document, in a form no parser (its own included) accepts. `None` if neither
/// reads back the same.
fn faithful(text: String, doc: &Value) -> Option<String> {
    let reads_back = |t: &str| serde_norway::from_str::<Value>(t).ok().as_ref() == Some(doc);
    if reads_back(&text) {
        return Some(text);
    }
    let json = serde_json::to_string(doc).ok()? + "\n";
    reads_back(&json).then_some(json)
}

/// Injects every pod spec of one document; returns the namespace of each pod
/// that was changed (`None`: the namespace the document is applied to), and
/// the notes, each with the object it is about.
#[allow(clippy::type_complexity)]
fn inject_document(
    doc: &mut Value,
    opts: &Options,
) -> Result<(Vec<Option<String>>, Vec<(String, String)>), (String, Problem)> {
    let mut injected = Vec::new();
    let mut notes = Vec::new();
    for at in workload::find_pod_specs(doc)? {
        let fail = |p: Problem| (at.label.clone(), p);
        // find_pod_specs checked that the path leads to a mapping.
        let Some(spec) = workload::get_mut(doc, &at.path) else {
            return Err(fail(Problem::NoPodSpec("spec".into())));
        };
        // The engine's edge: the pod spec as JSON, and back only if changed.
        let mut json_spec = yaml::to_json_object(spec, "spec").map_err(fail)?;
        let Some(Injected {
            apps,
            notes: pod_notes,
            ..
        }) = pod::inject(&mut json_spec, opts).map_err(fail)?
        else {
            continue;
        };
        *spec = yaml::from_json(serde_json::Value::Object(json_spec));
        notes.extend(pod_notes.into_iter().map(|n| (at.label.clone(), n)));
        // The pod template's metadata: beside its spec.
        let meta_path = workload::metadata_path(&at.path);
        let Some(meta) = workload::get_or_insert_mapping(doc, &meta_path) else {
            return Err(fail(Problem::NoPodSpec("metadata".into())));
        };
        let mut json_meta = yaml::mapping_to_json(meta, "metadata").map_err(fail)?;
        pod::skip_for_eks_webhook(&mut json_meta, &apps).map_err(fail)?;
        *meta = yaml::mapping_from_json(json_meta);
        injected.push(at.namespace);
    }
    Ok((injected, notes))
}

/// One pod, as JSON (the API server's object), through the same engine: the
/// pod with the sidecar and the notes on what was changed of its author's (see
/// [`Manifests::notes`]), or `None` when it already has the sidecar.
pub fn inject_pod(
    pod: &serde_json::Value,
    opts: &Options,
) -> Result<Option<(serde_json::Value, Vec<String>)>, Problem> {
    let mut pod = pod.clone();
    Ok(inject_pod_in_place(&mut pod, opts)?.map(|c| (pod, c.notes)))
}

/// What [`inject_pod_in_place`] changed of a pod.
#[derive(Debug)]
pub struct PodChanges {
    /// What it changed that the pod's author wrote (see [`Manifests::notes`]).
    pub notes: Vec<String>,
    /// The fields of `spec` it changed; every other one is as it was.
    pub spec: Vec<&'static str>,
    /// It changed `metadata.annotations`.
    pub annotations: bool,
    /// It created `metadata` (absent or null before).
    pub metadata_created: bool,
}

/// The engine on the pod itself (the webhook's entry: no copy, and the patch
/// is made of the fields it names): what it changed, or `None` when the pod
/// already has the sidecar and was left as it was. On an error the pod may be
/// half changed.
pub fn inject_pod_in_place(
    pod: &mut serde_json::Value,
    opts: &Options,
) -> Result<Option<PodChanges>, Problem> {
    use serde_json::{Map, Value as Json};
    let Some(pod_map) = pod.as_object_mut() else {
        return Err(Problem::NoPodSpec("the pod (not an object)".into()));
    };
    let Some(spec) = pod_map.get_mut("spec").and_then(Json::as_object_mut) else {
        return Err(Problem::NoPodSpec("spec".into()));
    };
    let Some(Injected {
        apps,
        notes,
        changed,
    }) = pod::inject(spec, opts)?
    else {
        return Ok(None);
    };
    let metadata_created = !pod_map.get("metadata").is_some_and(Json::is_object);
    let meta = pod_map
        .entry("metadata")
        .or_insert_with(|| Json::Object(Map::new()));
    if meta.is_null() {
        *meta = Json::Object(Map::new());
    }
    let Some(meta) = meta.as_object_mut() else {
        return Err(Problem::NoPodSpec("metadata".into()));
    };
    pod::skip_for_eks_webhook(meta, &apps)?;
    Ok(Some(PodChanges {
        notes,
        spec: changed,
        annotations: !apps.is_empty(),
        metadata_created,
    }))
}

/// The subcommand: read, inject, and write only if every document succeeded.
pub async fn run(args: InjectArgs) -> Result<ExitCode, Fatal> {
    let opts = Options::from_args(&args).map_err(Fatal::Flags)?;
    let file = args.path.as_deref().unwrap_or(&args.file);
    let (source, input) = if file == "-" {
        // A terminal on stdin means nothing was piped in: say so rather than wait.
        if std::io::stdin().is_terminal() {
            return Err(Fatal::usage(
                "no manifest: give a FILE (irsa-proxy inject deploy.yaml) or pipe one in (kubectl get deploy app -o yaml | irsa-proxy inject ...)",
            ));
        }
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .map_err(|e| Fatal::usage(format!("stdin: cannot read: {e}")))?;
        ("stdin".to_string(), input)
    } else {
        let input = std::fs::read_to_string(file)
            .map_err(|e| Fatal::usage(format!("{file}: cannot read: {e}")))?;
        (file.to_string(), input)
    };
    let output = inject_manifests(&input, &opts)
        .map_err(|e| Fatal::usage(format!("{source}: {}", one_line(&e.to_string()))))?;
    for note in &output.notes {
        eprintln!("irsa-proxy: warning: {source}: {note}");
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(output.text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| Fatal::Runtime(format!("stdout: cannot write: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

/// Parser messages can span lines; the contract is one line per error.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
