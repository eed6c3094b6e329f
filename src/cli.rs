//! Command-line surface: one `clap` parser for every subcommand.
//!
//! Flags are parsed raw here (strings, options) and turned into validated
//! configuration elsewhere (`config.rs` for `serve`), so that every bad value can
//! be named in one error line with what is allowed, and so that the environment
//! twins of `serve`'s flags are read through one seam that tests can replace.
//!
//! The doc comments of the arguments are clap's `--help` text, written for a
//! terminal (`<name>`, `[\w+=,.@-]`), not Markdown; rustdoc's HTML and link
//! lints do not apply to them.
#![allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::flags;

/// Turns a Kubernetes projected service-account token into AWS role credentials
/// and serves them on localhost as the ECS container-credentials endpoint and the
/// EC2 instance metadata service (IMDS v1 and v2).
#[derive(Debug, Parser)]
#[command(name = "irsa-proxy", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Without the tools, `serve`'s flags dwarf the other variants; the enum is built
// once at start-up, so boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The sidecar: assume the role, cache and refresh, serve ECS + IMDS + health + metrics.
    Serve(ServeArgs),
    #[cfg(feature = "tools")]
    /// Everything on one machine without AWS: STS emulator, rotating token, and serve.
    Dev(DevArgs),
    #[cfg(feature = "tools")]
    /// The local STS emulator alone (AssumeRoleWithWebIdentity, GetCallerIdentity).
    StsEmulator(EmulatorArgs),
    /// Sign a web-identity token with a private key, for trying sts-emulator by hand.
    #[cfg(feature = "tools")]
    Mint(MintArgs),
    /// Explain why a role cannot be assumed with a token.
    Doctor(DoctorArgs),
    #[cfg(feature = "tools")]
    /// Add the sidecar to Kubernetes manifests read from a file or stdin.
    Inject(InjectArgs),
    /// Exit 0 when GET URL answers 2xx: the sidecar's exec probes, as the image has no shell or curl.
    Probe(ProbeArgs),
    #[cfg(feature = "tools")]
    /// Mutating admission webhook: opted-in pods get the sidecar at creation (HTTPS; `webhook certs` makes a serving certificate)
    Webhook(WebhookArgs),
    /// Add the link-local credential addresses to this network namespace's loopback interface: the pod's init step for old SDKs (needs CAP_NET_ADMIN).
    LinkLocal(LinkLocalArgs),
}

/// Flags of `serve`. Every one has an environment twin, resolved in `config.rs`
/// (flag first, then environment, then default); they are kept as raw strings here
/// so that a bad value from either source gets the same error line.
#[derive(Debug, Default, Clone, Args)]
pub struct ServeArgs {
    /// IAM role to assume: arn:<partition>:iam::<12 digits>:role/<path/>name [env: AWS_ROLE_ARN]
    #[arg(long, value_name = "ARN")]
    pub role_arn: Option<String>,

    /// Projected service-account token, re-read before every STS call [env: AWS_WEB_IDENTITY_TOKEN_FILE]
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<String>,

    /// Role session name, for the web-identity call and every hop: text, or a template over the token's kubernetes.io claims ({namespace}, {pod}, {pod-uid}, {service-account}) fixed for the pod's life; made to fit [\w+=,.@-]{2,64}, a shortened name keeping its end and a hash of the whole [env: AWS_ROLE_SESSION_NAME] [default: irsa-proxy-<hostname>]
    #[arg(long, value_name = "NAME")]
    pub session_name: Option<String>,

    /// AWS region for the regional STS endpoint [env: AWS_REGION, AWS_DEFAULT_REGION]
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    /// STS endpoint URL, for emulators, VPC endpoints, FIPS [env: AWS_ENDPOINT_URL_STS]
    #[arg(long, value_name = "URL")]
    pub sts_endpoint: Option<String>,

    /// Address to serve on; repeat for several. Loopback, or a link-local credential address (169.254.170.2, 169.254.169.254, fd00:ec2::254) on this namespace's loopback interface (see `irsa-proxy link-local`) [env: IRSA_PROXY_LISTEN, comma-separated] [default: 127.0.0.1:9911]
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<String>,

    /// Allow --listen on an address that is not loopback
    #[arg(long)]
    pub allow_non_loopback: bool,

    /// STS DurationSeconds, 15m..12h [env: IRSA_PROXY_DURATION] [default: 1h]
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,

    /// Refresh when less than min(this, lifetime/2) is left [env: IRSA_PROXY_REFRESH_BEFORE] [default: 30m]
    #[arg(long, value_name = "DURATION")]
    pub refresh_before: Option<String>,

    /// Require `Authorization: <token>` on /v1/credentials and serve /v2/credentials/<token>; the file is created if absent, or written with IRSA_PROXY_AUTH_TOKEN (the token as a value, from a Secret: no flag, so it never shows in the process list) [env: IRSA_PROXY_AUTH_TOKEN_FILE]
    #[arg(long, value_name = "PATH")]
    pub auth_token_file: Option<String>,

    /// Several roles, each with its own token, cache and refresh: a JSON file {"imds_role": NAME, "roles": {NAME: {"role_arn", "chain_role_arn", "session_policy", "session_policy_file", "session_policy_arns"}}} (docs/contract.md §13); the same JSON may be given inline in IRSA_PROXY_ROLES [env: IRSA_PROXY_ROLES_FILE]
    #[arg(long, value_name = "PATH")]
    pub roles_file: Option<String>,

    /// With several roles: each role's token is written to DIR/<name>/token, from IRSA_PROXY_AUTH_TOKEN_<NAME> when set, else kept from the file or made of 256 random bits [env: IRSA_PROXY_AUTH_TOKEN_DIR]
    #[arg(long, value_name = "DIR")]
    pub auth_token_dir: Option<String>,

    /// Serve the IMDS paths (default) [env: IRSA_PROXY_IMDS=true|false]
    #[arg(long, overrides_with = "no_imds")]
    pub imds: bool,

    /// Do not serve the IMDS paths
    #[arg(long, overrides_with = "imds")]
    pub no_imds: bool,

    /// Refuse IMDSv1 everywhere: GETs need an IMDSv2 session token; the same as --imds-v1=never [env: IRSA_PROXY_IMDS_REQUIRE_TOKEN=true|false]
    #[arg(long)]
    pub imds_require_token: bool,

    /// Where IMDSv1 (a GET without a session token) is answered: never, link-local (only on 169.254.169.254 and fd00:ec2::254, for SDKs from before Nov 2019) or always [env: IRSA_PROXY_IMDS_V1] [default: link-local]
    #[arg(long, value_name = "WHERE")]
    pub imds_v1: Option<String>,

    /// Log format: text or json; the level comes from RUST_LOG [env: IRSA_PROXY_LOG_FORMAT] [default: text]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// Keep serving this long after SIGTERM before draining [env: IRSA_PROXY_SHUTDOWN_DELAY] [default: 5s]
    #[arg(long, value_name = "DURATION")]
    pub shutdown_delay: Option<String>,

    /// A connection must send a complete request head within this long of opening or of its last answer: the idle keep-alive and slow-client limit, 1s..1h [env: IRSA_PROXY_HEADER_TIMEOUT] [default: 60s]
    #[arg(long, value_name = "DURATION")]
    pub header_timeout: Option<String>,

    /// Open connections at most; at the limit the longest-idle one is closed to admit a new one, 8..65536 [env: IRSA_PROXY_MAX_CONNECTIONS] [default: 1024]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<String>,

    #[command(flatten)]
    pub chain: ChainArgs,

    /// ExternalId sent with the last hop's AssumeRole (2-1224 of [\w+=,.@:/-]); never logged [env: IRSA_PROXY_CHAIN_EXTERNAL_ID]
    #[arg(long, value_name = "ID")]
    pub chain_external_id: Option<String>,

    /// File holding the last hop's ExternalId, re-read before every call (a mounted Secret) [env: IRSA_PROXY_CHAIN_EXTERNAL_ID_FILE]
    #[arg(long, value_name = "PATH")]
    pub chain_external_id_file: Option<String>,

    /// Session policy (JSON) sent as Policy on the role's last call (the web-identity call, or the last --chain-role-arn hop): the credentials can do only what both the role and this policy allow. Read once at start-up; at most 2048 characters once whitespace is removed [env: IRSA_PROXY_SESSION_POLICY_FILE]
    #[arg(long, value_name = "PATH")]
    pub session_policy_file: Option<String>,

    /// Managed policy ARN sent in PolicyArns on the role's last call, as a session policy with --session-policy-file; repeat for several, at most 10 [env: IRSA_PROXY_SESSION_POLICY_ARNS, comma-separated]
    #[arg(long, value_name = "ARN")]
    pub session_policy_arn: Vec<String>,

    /// Where credentials come from: web-identity (IRSA: --role-arn and --token-file), pod-identity (the EKS Pod Identity agent: --pod-identity-uri and --pod-identity-token-file) or auto (web-identity when a role or web-identity token is given, else pod-identity when the agent's URI is) [env: IRSA_PROXY_SOURCE] [default: auto]
    #[arg(long, value_name = "SOURCE")]
    pub source: Option<String>,

    /// The EKS Pod Identity agent's credentials URL, as the EKS webhook sets it [env: AWS_CONTAINER_CREDENTIALS_FULL_URI]
    #[arg(long, value_name = "URL")]
    pub pod_identity_uri: Option<String>,

    /// The Pod Identity token the EKS webhook mounts, re-read before every call [env: AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE]
    #[arg(long, value_name = "PATH")]
    pub pod_identity_token_file: Option<String>,

    /// Print the STS endpoint that would be called, through which proxy and with which trust roots (from --region, --sts-endpoint and HTTPS_PROXY, NO_PROXY, AWS_CA_BUNDLE, AWS_USE_FIPS_ENDPOINT, AWS_USE_DUALSTACK_ENDPOINT, AWS_STS_REGIONAL_ENDPOINTS), then exit; calls nothing
    #[arg(long)]
    pub print_endpoint: bool,
}

/// Role chaining and what the hops carry: the same flags for `serve` (each
/// with its environment twin), `dev`, `doctor` and `inject` (which writes them
/// as the sidecar's variables). Read and checked by `crate::sidecar::chain`.
#[derive(Debug, Default, Clone, Args)]
pub struct ChainArgs {
    /// After the web-identity role, assume this role with its credentials (role chaining, e.g. a role in another account); repeat for several hops, in order. Only the last role's credentials are served. AWS caps a chained session at 1h, so --duration is at most 1h with a chain [env: IRSA_PROXY_CHAIN_ROLE_ARN, comma-separated]
    #[arg(long, value_name = "ARN")]
    pub chain_role_arn: Vec<String>,

    /// Session tags sent with the first hop's AssumeRole: pod-identity (the six EKS Pod Identity tags, from the token's kubernetes.io claims and --cluster-name/--cluster-arn; transitive) and KEY=VALUE; repeat or separate with commas [env: IRSA_PROXY_SESSION_TAGS]
    #[arg(long, value_name = "TAGS")]
    pub session_tags: Vec<String>,

    /// Keys of --session-tags that are passed on to later hops, comma-separated [env: IRSA_PROXY_TRANSITIVE_TAG_KEYS]
    #[arg(long, value_name = "KEYS")]
    pub transitive_tag_keys: Option<String>,

    /// SourceIdentity set on the first hop and kept by AWS for the rest of the chain; a template like --session-name, such as {namespace}.{pod} [env: IRSA_PROXY_SOURCE_IDENTITY]
    #[arg(long, value_name = "TEMPLATE")]
    pub source_identity: Option<String>,

    /// The cluster's name, for the eks-cluster-name tag of --session-tags pod-identity [env: IRSA_PROXY_CLUSTER_NAME]
    #[arg(long, value_name = "NAME")]
    pub cluster_name: Option<String>,

    /// The cluster's ARN, for the eks-cluster-arn tag of --session-tags pod-identity (left out without it: clusters outside EKS have none) [env: IRSA_PROXY_CLUSTER_ARN]
    #[arg(long, value_name = "ARN")]
    pub cluster_arn: Option<String>,
}

/// Flags of `dev`.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Faults on demand while dev runs: SIGUSR1 (or POST $IRSA_PROXY_DEV_CONTROL_URL/rotate-token) writes a fresh token now; SIGUSR2 (or POST .../expire-credentials) expires every valid credential set now; GET .../report is the report so far. Exit codes: 0 passed, 3 the app presented expired credentials, 4 the command failed, 130 interrupted, 2 a refused flag."
)]
pub struct DevArgs {
    /// Address the proxy serves on
    #[arg(long, value_name = "ADDR", default_value = flags::dev::DEFAULT_LISTEN)]
    pub listen: String,

    /// Lifetime of the credentials the emulator issues (10s..12h) [default: 5m; 60s with --scenario]
    #[arg(long, value_name = "DURATION")]
    pub credential_ttl: Option<String>,

    /// Lifetime of the web-identity token; it is rotated at 80 % of it (20s..24h) [default: 10m; 1.5 x --credential-ttl with --scenario]
    #[arg(long, value_name = "DURATION")]
    pub token_ttl: Option<String>,

    /// Stop after this long: the command is sent SIGTERM, and the report is printed [default: until the command exits, or Ctrl-C; 3 x --credential-ttl with --scenario]
    #[arg(long = "for", value_name = "DURATION")]
    pub run_for: Option<String>,

    /// The report printed when dev ends: text, json, or junit (a JUnit XML test suite, one test case per check, for CI test reports)
    #[arg(long, value_name = "FORMAT", default_value = flags::DEFAULT_FORMAT)]
    pub report: String,

    /// Write the report (in the --report format) to this file; standard error then gets the text form
    #[arg(long, value_name = "PATH")]
    pub report_file: Option<String>,

    /// Fault: this share of AssumeRoleWithWebIdentity calls fails with 503 ServiceUnavailable, e.g. 20% [default: 0%; 10% with --scenario]
    #[arg(long, value_name = "PERCENT")]
    pub sts_fail: Option<String>,

    /// Fault: every AssumeRoleWithWebIdentity fails (503) for LENGTH from START after dev started, e.g. 30s@2m; repeat for several
    #[arg(long, value_name = "LENGTH@START")]
    pub sts_outage: Vec<String>,

    /// Fault: for LENGTH from START, the token file holds an expired token, which STS refuses with ExpiredTokenException; then a fresh one is written. E.g. 20s@90s; repeat for several
    #[arg(long, value_name = "LENGTH@START")]
    pub expired_token: Vec<String>,

    /// Fault: this share of credential sets is issued with 1/4 to 1/2 of --credential-ttl (their Expiration says so), e.g. 25%
    #[arg(long, value_name = "PERCENT")]
    pub early_expiry: Option<String>,

    /// A bundle of faults: hour-in-production (with T = --credential-ttl, 60s unless given: token TTL 1.5T, --sts-fail 10%, an STS outage of T/10 at 1.3T, an expired token for T/10 at 2.2T, for 3T). Flags given explicitly win
    #[arg(long, value_name = "NAME")]
    pub scenario: Option<String>,

    /// Role to assume in the emulator
    #[arg(
        long,
        value_name = "ARN",
        default_value = flags::dev::DEFAULT_ROLE_ARN
    )]
    pub role_arn: String,

    /// Log format: text or json
    #[arg(long, value_name = "FORMAT", default_value = flags::DEFAULT_FORMAT)]
    pub log_format: String,

    /// With a COMMAND (or --run), dev logs only warnings and errors, so that the command's output and the report stand out; --verbose logs everything (INFO: refreshes, rotations, faults). Without a command the log is always full. RUST_LOG, when set, wins over both
    #[arg(long, short = 'v')]
    pub verbose: bool,

    #[command(flatten)]
    pub chain: ChainArgs,

    /// As serve's --session-name: text, or a template such as {namespace}.{pod} over the dev token's claims (namespace default, service account dev, a pod named app-<random>) [default: irsa-proxy-dev]
    #[arg(long, value_name = "NAME")]
    pub session_name: Option<String>,

    /// Also serve where the oldest SDKs look: 169.254.170.2:80 (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI) and 169.254.169.254:80 (IMDS), added to lo of a network namespace with no route out. With a COMMAND, dev makes that namespace itself (as root, or as a user where unprivileged user namespaces are allowed); without one, run it in a namespace you made: `unshare --net -- sh -c 'ip link set lo up && irsa-proxy dev --link-local'`
    #[arg(long)]
    pub link_local: bool,

    /// As serve's: a session policy (JSON) sent on the role's last call; the emulator enforces it, so the app's calls outside it are AccessDenied and the report lists them
    #[arg(long, value_name = "PATH")]
    pub session_policy_file: Option<String>,

    /// As serve's (repeatable); each needs a --managed-policy with its document
    #[arg(long, value_name = "ARN")]
    pub session_policy_arn: Vec<String>,

    /// A managed policy the emulator holds, as POLICY_ARN=FILE (repeatable): what --session-policy-arn (or a role's session_policy_arns) may name
    #[arg(long, value_name = "ARN=FILE")]
    pub managed_policy: Vec<String>,

    /// Several roles, as serve's --roles-file (the JSON of docs/several-roles.md): the proxy serves each with its own token. Each role's role_arn defaults to --role-arn; the emulator lets the dev token assume any of them
    #[arg(long, value_name = "PATH")]
    pub roles_file: Option<String>,

    /// With --roles-file: the role whose variables the command gets (its token file and value), or, without a command, whose export lines are printed [default without a command: every role's, one block each]
    #[arg(long = "as", value_name = "NAME")]
    pub as_role: Option<String>,

    /// With --roles-file: run COMMAND with the variables of role NAME, as NAME=COMMAND (COMMAND split on whitespace, no shell); repeat for several, run side by side. The report names each command's role and how it ended
    #[arg(long, value_name = "NAME=COMMAND")]
    pub run: Vec<String>,

    /// Where the proxy gets credentials: web-identity (the emulator plays STS) or pod-identity (the emulator plays the EKS Pod Identity agent, with an association for the dev service account and a token for audience pods.eks.amazonaws.com)
    #[arg(long, value_name = "SOURCE", default_value = "web-identity")]
    pub source: String,

    /// Serve the emulator (STS and S3) over HTTPS with a certificate from a CA made for this run; the proxy trusts it, and the app gets AWS_CA_BUNDLE and NODE_EXTRA_CA_CERTS pointing at it
    #[arg(long)]
    pub sts_tls: bool,

    /// Run this command with the export lines set; when it ends (or --for runs out) print the report and exit 0 (passed), 3 (it presented expired credentials) or 4 (it failed)
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Flags of `sts-emulator`.
#[derive(Debug, Clone, Args)]
pub struct EmulatorArgs {
    /// Address to serve the STS Query protocol on
    #[arg(long, value_name = "ADDR", default_value = flags::emulator::DEFAULT_LISTEN)]
    pub listen: String,

    /// PEM public key (or certificate) that verifies token signatures
    #[arg(long, value_name = "PEM", conflicts_with = "jwks")]
    pub issuer_key: Option<PathBuf>,

    /// JWKS file whose keys verify token signatures
    #[arg(long, value_name = "FILE")]
    pub jwks: Option<PathBuf>,

    /// Audience the token must carry
    #[arg(long, value_name = "AUD", default_value = flags::emulator::DEFAULT_AUDIENCE)]
    pub audience: String,

    /// IAM trust policy (JSON) evaluated for every AssumeRoleWithWebIdentity
    #[arg(long, value_name = "FILE")]
    pub trust_policy: Option<PathBuf>,

    /// The trust policy (JSON) of a role that AssumeRole (a chained hop) may target, as ROLE_ARN=FILE; repeat for several. A role without one may be assumed by any session the emulator issued
    #[arg(long, value_name = "ARN=FILE")]
    pub role_trust_policy: Vec<String>,

    /// A managed policy (JSON) that PolicyArns may name as a session policy, as POLICY_ARN=FILE; repeat for several. PolicyArns naming any other ARN is refused (MalformedPolicyDocument), as STS refuses one that does not exist
    #[arg(long, value_name = "ARN=FILE")]
    pub managed_policy: Vec<String>,

    /// Longest lifetime of issued credentials
    #[arg(long, value_name = "DURATION", default_value = flags::emulator::DEFAULT_CREDENTIAL_TTL)]
    pub credential_ttl: String,

    /// Log format: text or json
    #[arg(long, value_name = "FORMAT", default_value = flags::DEFAULT_FORMAT)]
    pub log_format: String,

    /// Play the EKS Pod Identity agent on GET /v1/credentials too: the service account SA of namespace NS may have the role (repeat for several)
    #[arg(long, value_name = "NS/SA=ROLE_ARN")]
    pub pod_identity_association: Vec<String>,

    /// The Pod Identity agent's limit: calls above this rate per second are answered 429, as the agent's rate limiter does
    #[arg(long, value_name = "N")]
    pub pod_identity_rate: Option<String>,

    /// STS's limit: AssumeRoleWithWebIdentity calls above this rate per second are answered 400 Throttling "Rate exceeded"
    #[arg(long, value_name = "N")]
    pub sts_rate: Option<String>,

    /// Serve HTTPS with this PEM certificate chain (with --tls-key-file); reloaded when the file changes
    #[arg(long, value_name = "PEM")]
    pub tls_cert_file: Option<PathBuf>,

    /// The PEM private key of --tls-cert-file
    #[arg(long, value_name = "PEM")]
    pub tls_key_file: Option<PathBuf>,
}

/// Flags of `mint`.
#[derive(Debug, Clone, Args)]
pub struct MintArgs {
    /// PEM private key to sign with (e.g. from `openssl genrsa`): RSA (RS256) or EC P-256 (ES256)
    #[arg(long, value_name = "PEM")]
    pub issuer_key: PathBuf,

    /// The token's `iss`
    #[arg(
        long,
        value_name = "URL",
        default_value = "https://oidc.eks.us-east-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
    )]
    pub issuer: String,

    /// The token's `sub`, e.g. system:serviceaccount:NAMESPACE:SERVICE-ACCOUNT
    #[arg(long, value_name = "SUB")]
    pub sub: String,

    /// The token's `aud`
    #[arg(long, value_name = "AUD", default_value = flags::DEFAULT_AUDIENCE)]
    pub aud: String,

    /// How long the token is valid (90s, 20m, 1h or seconds)
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub ttl: String,
}

/// Flags of `doctor`.
#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// Web-identity token to decode [default: $AWS_WEB_IDENTITY_TOKEN_FILE]
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Role the token should assume [default: $AWS_ROLE_ARN]
    #[arg(long, value_name = "ARN")]
    pub role_arn: Option<String>,

    /// The role's trust policy (JSON), to evaluate as IAM would
    #[arg(long, value_name = "FILE")]
    pub trust_policy: Option<PathBuf>,

    /// Audience STS expects
    #[arg(long, value_name = "AUD", default_value = flags::doctor::DEFAULT_AUDIENCE)]
    pub audience: String,

    /// Output: text for people, json for scripts
    #[arg(long, value_name = "FORMAT", default_value = flags::DEFAULT_FORMAT)]
    pub output: String,

    #[command(flatten)]
    pub chain: ChainArgs,

    /// The trust policy (JSON) of each --chain-role-arn, in the same order, evaluated for the AssumeRole by the hop before
    #[arg(long, value_name = "FILE")]
    pub chain_trust_policy: Vec<PathBuf>,

    /// As serve's: the last hop's ExternalId; never printed [env: IRSA_PROXY_CHAIN_EXTERNAL_ID]
    #[arg(long, value_name = "ID")]
    pub chain_external_id: Option<String>,

    /// As serve's [env: IRSA_PROXY_CHAIN_EXTERNAL_ID_FILE]
    #[arg(long, value_name = "PATH")]
    pub chain_external_id_file: Option<String>,

    /// As serve's --duration, checked against the 1h chained-session cap [env: IRSA_PROXY_DURATION]
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,

    /// As serve's: checked as serve checks it, and named in the report [env: IRSA_PROXY_SESSION_POLICY_FILE]
    #[arg(long, value_name = "PATH")]
    pub session_policy_file: Option<String>,

    /// As serve's [env: IRSA_PROXY_SESSION_POLICY_ARNS, comma-separated]
    #[arg(long, value_name = "ARN")]
    pub session_policy_arn: Vec<String>,

    /// Fetch the token's issuer documents (discovery and JWKS) over HTTPS as STS would, and check them
    #[arg(long)]
    pub issuer: bool,

    /// With --issuer: CA certificates (PEM) trusted besides the system's and AWS_CA_BUNDLE's
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// With --issuer: connect to ADDR for HOST instead of asking DNS (repeatable)
    #[arg(long, value_name = "HOST=ADDR")]
    pub resolve: Vec<String>,
}

/// Flags of `inject`.
#[derive(Debug, Clone, Args)]
pub struct InjectArgs {
    /// Manifest file, or - for standard input
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE",
        default_value = "-"
    )]
    pub file: String,

    /// Manifest file, as `linkerd inject FILE` takes it; the same as -f FILE
    #[arg(value_name = "FILE", conflicts_with = "file")]
    pub path: Option<String>,

    /// The sidecar: the flags `webhook` shares.
    #[command(flatten)]
    pub sidecar: SidecarArgs,

    /// Role to assume (sets AWS_ROLE_ARN on the sidecar; not needed with the EKS webhook)
    #[arg(long, value_name = "ARN")]
    pub role_arn: Option<String>,

    /// App container to configure; repeat for several [default: all]
    #[arg(long, value_name = "NAME")]
    pub container: Vec<String>,

    /// Give this container (an app or an init container) a role of its own, named after it; repeat for several. Each such container sees only its own token; containers named in none get nothing. Not with --container
    #[arg(long, value_name = "CONTAINER=ROLE_ARN", conflicts_with = "container")]
    pub container_role: Vec<String>,

    /// With --container-role: the container whose role IMDS serves (the sidecar's imds_role). IMDS cannot tell containers apart, so every container of the pod that asks IMDS (old SDKs with no other way) gets this role, whatever token it holds; without it IMDS serves no credentials
    #[arg(long, value_name = "CONTAINER")]
    pub imds_role: Option<String>,

    /// Also remove a lone AWS_ROLE_ARN or AWS_WEB_IDENTITY_TOKEN_FILE from app containers (the pair is removed by default)
    #[arg(long, conflicts_with = "keep_web_identity")]
    pub strip_web_identity: bool,

    /// Leave AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE in app containers that set both (by default they are removed, with a warning: with them an SDK assumes the role itself and bypasses the sidecar)
    #[arg(long)]
    pub keep_web_identity: bool,

    /// Take the pod's authorization token from this existing Secret (key `token`) and emit none [default: emit an immutable Secret irsa-proxy-auth with a random token, unless the input has it]
    #[arg(long, value_name = "NAME")]
    pub auth_secret: Option<String>,

    /// Also serve the oldest SDKs where they look: 169.254.170.2:80 (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI) and 169.254.169.254:80 (IMDS). An init container with NET_ADMIN adds the addresses to the pod's lo and redirects their port 80 to the sidecar's --port, so the apps keep port 80
    #[arg(long)]
    pub link_local: bool,

    #[command(flatten)]
    pub chain: ChainArgs,

    /// The Secret (key external-id) holding the last hop's ExternalId, read into the sidecar's IRSA_PROXY_CHAIN_EXTERNAL_ID
    #[arg(long, value_name = "NAME")]
    pub chain_external_id_secret: Option<String>,

    /// The sidecar's role session name, text or a template such as {namespace}.{pod} (AWS_ROLE_SESSION_NAME)
    #[arg(long, value_name = "NAME")]
    pub session_name: Option<String>,
}

impl InjectArgs {
    /// `inject` with no flag given but `sidecar`: what the webhook starts every
    /// pod from before its annotations apply. The other flags take their
    /// `inject` defaults from clap itself, so a flag added to `inject` reaches
    /// the webhook with the same default; a setting that makes sense
    /// cluster-wide belongs in [`SidecarArgs`], which makes it a webhook flag.
    pub fn with_sidecar(sidecar: SidecarArgs) -> Result<InjectArgs, clap::Error> {
        use clap::FromArgMatches;
        let matches = InjectArgs::augment_args(clap::Command::new("inject"))
            .try_get_matches_from(["inject"])?;
        let mut args = InjectArgs::from_arg_matches(&matches)?;
        args.sidecar = sidecar;
        Ok(args)
    }
}

/// The sidecar every pod gets: `inject`'s flags that `webhook` takes too, as
/// the defaults its pod annotations override.
#[derive(Debug, Clone, Args)]
pub struct SidecarArgs {
    /// Sidecar image (required: none is published; build and push one from this repository's Dockerfile: docker build -t REGISTRY/irsa-proxy:TAG . && docker push REGISTRY/irsa-proxy:TAG)
    // No clap `required`: a missing --image is reported with the other bad flags,
    // one line each, by `inject::Options::from_args`.
    #[arg(
        long,
        value_name = "IMAGE",
        default_value = "",
        hide_default_value = true
    )]
    pub image: String,

    /// Add the sidecar as an ordinary container instead of a native sidecar (clusters before 1.29)
    #[arg(long)]
    pub classic_sidecar: bool,

    /// Port the sidecar serves on (loopback)
    #[arg(long, value_name = "N", default_value_t = flags::inject::DEFAULT_PORT)]
    pub port: u16,

    /// Audience of the projected token
    #[arg(long, value_name = "AUD", default_value = flags::inject::DEFAULT_TOKEN_AUDIENCE)]
    pub token_audience: String,

    /// Lifetime of the projected token, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = flags::inject::DEFAULT_TOKEN_EXPIRATION)]
    pub token_expiration: i64,
}

/// Flags of `webhook`.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct WebhookArgs {
    #[command(subcommand)]
    pub command: Option<WebhookCommand>,

    #[command(flatten)]
    pub serve: ServeWebhookArgs,
}

#[derive(Debug, Clone, Subcommand)]
pub enum WebhookCommand {
    /// Make a CA and a serving certificate: print them as a Secret with the caBundle patch (clusters without cert-manager), or write PEM files with --out-dir
    Certs(WebhookCertsArgs),
}

/// Flags of the webhook server.
#[derive(Debug, Clone, Args)]
pub struct ServeWebhookArgs {
    /// Address to serve HTTPS on
    #[arg(long, value_name = "ADDR", default_value = flags::webhook::DEFAULT_LISTEN)]
    pub listen: String,

    /// PEM certificate chain, serving certificate first; reloaded when it changes
    #[arg(long, value_name = "PATH")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key of the certificate; reloaded when it changes
    #[arg(long, value_name = "PATH")]
    pub tls_key_file: Option<PathBuf>,

    /// A request head (and the TLS handshake, and the body) must arrive within this long, 1s..10m
    #[arg(long, value_name = "DURATION", default_value = flags::webhook::DEFAULT_HEADER_TIMEOUT)]
    pub header_timeout: String,

    /// Open connections at most, 8..65536
    #[arg(long, value_name = "N", default_value_t = flags::webhook::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Log format: text or json; the level comes from RUST_LOG
    #[arg(long, value_name = "FORMAT", default_value = flags::DEFAULT_FORMAT)]
    pub log_format: String,

    /// The sidecar every pod gets, as `inject` adds it; the pod annotations irsa-proxy.io/image, /port and /audience override it per pod
    #[command(flatten)]
    pub sidecar: SidecarArgs,
}

/// Flags of `webhook certs`.
#[derive(Debug, Clone, Args)]
pub struct WebhookCertsArgs {
    /// The webhook's Service name
    #[arg(long, value_name = "NAME", default_value = flags::webhook_certs::DEFAULT_SERVICE)]
    pub service: String,

    /// The webhook's namespace
    #[arg(long, value_name = "NS", default_value = flags::webhook_certs::DEFAULT_NAMESPACE)]
    pub namespace: String,

    /// Name of the Secret to print (the Deployment mounts this one)
    #[arg(long, value_name = "NAME", default_value = flags::webhook_certs::DEFAULT_SECRET)]
    pub secret: String,

    /// The MutatingWebhookConfiguration whose caBundle the patch sets
    #[arg(long, value_name = "NAME", default_value = flags::webhook_certs::DEFAULT_CONFIGURATION)]
    pub configuration: String,

    /// Validity of the certificates in days, 1..=3650
    #[arg(long, value_name = "DAYS", default_value_t = flags::webhook_certs::DEFAULT_DAYS)]
    pub days: u32,

    /// Write tls.crt, tls.key and ca.crt (PEM) into this directory, made if missing, instead of printing the Secret
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,

    /// Also name localhost, 127.0.0.1 and ::1 in the serving certificate, to try the webhook on this machine
    #[arg(long)]
    pub localhost: bool,
}

/// Flags of `probe`.
#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// URL to GET, on loopback: http://127.0.0.1:9911/readyz
    #[arg(value_name = "URL")]
    pub url: String,

    /// Give up after this long
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    pub timeout: String,
}

/// Flags of `link-local`.
#[derive(Debug, Clone, Args)]
pub struct LinkLocalArgs {
    /// Address to add to lo; repeat for several: 169.254.170.2, 169.254.169.254, fd00:ec2::254 [default: 169.254.170.2 and 169.254.169.254]
    #[arg(long, value_name = "IP")]
    pub address: Vec<String>,

    /// The pod's IP (downward API status.podIP); with --host-ip it proves the namespace is the pod's own [env: IRSA_PROXY_POD_IP]
    #[arg(long, value_name = "IP")]
    pub pod_ip: Option<String>,

    /// The node's IP (downward API status.hostIP): equal to the pod's IP only for hostNetwork pods, which are refused [env: IRSA_PROXY_HOST_IP]
    #[arg(long, value_name = "IP")]
    pub host_ip: Option<String>,

    /// Also redirect TCP to port 80 of each IPv4/IPv6 address to this port on the same address (an nftables nat rule in this network namespace), so that the sidecar serves old SDKs without taking port 80 from the apps [default: no redirect; the sidecar binds port 80]
    #[arg(long, value_name = "PORT")]
    pub redirect_port: Option<String>,
}
