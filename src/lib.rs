//! irsa-proxy: a sidecar that turns a Kubernetes projected service-account token
//! into AWS role credentials and serves them to the other containers of its pod.
//!
//! # Two layers, one direction
//!
//! - [`sidecar`] is what the image ships: built without cargo features, it must
//!   compile and be clippy-clean alone (`.ci/run` proves it), so the core never
//!   uses a tool.
//! - `tools` (the default `tools` feature; last in this tour) is what a
//!   developer, CI or a cluster admin runs beside it. A tool may use the
//!   sidecar, never the reverse.
//! - The files at the root are nouns both layers need.
//!
//! One crate, with the layers as folders and the feature as the fence, rather
//! than a workspace: across crates every `pub(crate)` item shared between the
//! layers would have to become `pub`, and the dead-code lint would stop seeing
//! what is unused; and on two cores one crate with fat LTO builds no slower.
//!
//! # The sidecar, in the order a credential travels
//!
//! - [`sidecar::config`] turns `serve`'s flags and their environment twins into
//!   a validated [`sidecar::config::Config`] (every bad value named, exit 2);
//!   [`sidecar::roles`] reads the roles JSON of a pod with several roles, each
//!   then served with its own token, cache and refresher (docs/contract.md §13).
//! - [`sidecar::token`] reads the projected web-identity token (never formatting
//!   it) and decodes its claims for logs; [`sidecar::token::watch`] follows
//!   kubelet's `..data` symlink swap.
//! - [`sidecar::sts`] calls `AssumeRoleWithWebIdentity` behind a small trait:
//!   the SDK client ([`sidecar::sts::SdkSts`]) and the diagnosis of what went
//!   wrong on the way out, through [`sidecar::egress`] (proxy, private CA, FIPS
//!   and dual-stack endpoints); [`sidecar::sts::policy`] is a role's session
//!   policy (document and managed ARNs, AWS's limits checked at start-up).
//! - [`sidecar::chain`] runs role chaining on top of it: one `AssumeRole` per
//!   hop after the web-identity role, with session tags, SourceIdentity and a
//!   session name from the token's claims; only the last role's credentials
//!   come out.
//! - [`sidecar::source`] is where the refresher gets base credentials: web
//!   identity through `sts`, or the EKS Pod Identity agent (`source::pod_identity`).
//! - [`sidecar::credentials`] is the secret itself (redacted `Debug`);
//!   [`sidecar::cache`] holds it, serialises each generation once, and runs the
//!   single refresher: refresh before expiry, back off on failure, stop serving
//!   inside the safety margin.
//! - [`sidecar::endpoints`] answers ECS (`/v1/credentials`), IMDS v1/v2, health,
//!   readiness and metrics from the cache, with the DNS-rebinding `Host` check
//!   and the authorization token (with several roles, the token picks the
//!   role); [`sidecar::http_server`] is the HTTP skeleton it shares with the
//!   tools' servers: accept loop, connection limit, header timeout, signal wait
//!   and drain.
//! - [`sidecar::metrics`] registers the Prometheus metrics whose names
//!   docs/contract.md §6 fixes.
//! - [`sidecar::serve`] is the `serve` subcommand that wires all of the above.
//! - [`sidecar::addresses`] names the link-local credential addresses;
//!   [`sidecar::netns`] puts them on the pod's loopback over rtnetlink, and
//!   [`sidecar::port_redirect`] sends their port 80 to the sidecar's port (an
//!   nftables rule), for the `link-local` init step ([`sidecar::link_local`]).
//! - [`sidecar::probe`] is the exec probe of the distroless image (no shell, no
//!   curl); [`sidecar::doctor`] explains, from inside a pod, why a token cannot
//!   assume a role, and what each chained role's trust policy refuses;
//!   `doctor --issuer` (`sidecar::doctor::issuer`) fetches the token's OIDC
//!   discovery document and JWKS as STS would.
//!
//! # Shared nouns
//!
//! [`cli`] (every subcommand's clap arguments), [`flags`] (every flag's name,
//! variable, default and range, and the one error type for a refused value),
//! [`arn`], [`duration`], [`clock`] (the time seam), [`id`] (stable ids from
//! names), [`logging`], and [`policy`] (IAM trust-policy evaluation, for the
//! emulator and for doctor).
//!
// The tools come last, and only in a build that has them: the core build's
// docs link to nothing it lacks.
#![cfg_attr(
    feature = "tools",
    doc = "# The tools

[`tools`], in order:

- [`tools::emulator`] is a local STS (and a small S3) that checks tokens and
  trust policies as AWS does (`AssumeRole` for a chain's hops too), and
  records every call in a ledger.
- [`tools::dev`] runs the emulator, a rotating token and the sidecar in one
  process, runs the app, and reports whether it lived through refreshes.
- [`tools::mint`] signs a service-account token for the emulator.
- [`tools::inject`] adds the sidecar to Kubernetes manifests;
  [`tools::webhook`] applies the same engine at pod creation, as a mutating
  admission webhook; [`tools::tls`] is the HTTPS of the emulator and the
  webhook, and the throwaway CA of `webhook certs` and `dev --sts-tls`."
)]
#![cfg_attr(
    not(feature = "tools"),
    doc = "# The tools\n\nNot in this build: they come with the `tools` feature."
)]
// These docs are for the crate's maintainers (the library serves one binary):
// a module's tour links to its private parts, which `cargo doc
// --document-private-items` renders (and `.ci/run` checks).
#![allow(rustdoc::private_intra_doc_links)]
// Outside tests nothing may panic on a value that could come from outside;
// tests unwrap freely (clippy.toml allows it in #[test] code).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod arn;
pub mod cli;
pub mod clock;
pub mod duration;
pub mod flags;
pub mod id;
pub mod logging;
pub mod policy;
pub mod sidecar;
#[cfg(feature = "tools")]
pub mod tools;

/// Why a subcommand stopped before doing its job; `main` turns it into an exit code.
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    /// Refused flags, each one line naming the flag, the value and what is
    /// allowed. Exit code 2.
    #[error("{}", flags::lines(.0))]
    Flags(Vec<flags::FlagError>),
    /// Bad input that is not a flag (a manifest, a command that cannot run, a
    /// listen address that is not where it must be). Exit code 2.
    #[error("{0}")]
    Usage(String),
    /// A failure at run time (a port already bound, a file that cannot be written).
    /// Exit code 1.
    #[error("{0}")]
    Runtime(String),
}

impl Fatal {
    /// A single-line usage error.
    pub fn usage(line: impl Into<String>) -> Self {
        Fatal::Usage(line.into())
    }

    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Fatal::Flags(_) | Fatal::Usage(_) => 2,
            Fatal::Runtime(_) => 1,
        }
    }
}
