//! irsa-proxy: a sidecar that turns a Kubernetes projected service-account token
//! into AWS role credentials and serves them to the other containers of its pod.
//!
//! A tour of the crate, in the order a credential travels:
//!
//! - [`cli`] parses flags; [`config`] turns `serve`'s flags and their environment
//!   twins into a validated [`config::Config`] (every bad value named, exit 2).
//! - [`token`] reads the projected web-identity token (never formatting it) and
//!   decodes its claims for logs; [`token::watch`] follows kubelet's `..data`
//!   symlink swap.
//! - [`sts`] calls `AssumeRoleWithWebIdentity` through `aws-sdk-sts` behind a small
//!   trait and classifies its errors.
//! - [`credentials`] holds the credentials (redacted `Debug`), serialises each
//!   generation once, and runs the single refresher task: refresh before expiry,
//!   back off on failure, stop serving inside the safety margin.
//! - [`server`] is the hyper listener: ECS (`/v1/credentials`), IMDS v1/v2, health,
//!   readiness and metrics, with the DNS-rebinding `Host` check, header limits and
//!   graceful shutdown.
//! - [`serving`] is the server skeleton the sidecar and the emulator share:
//!   accept loop, connection limit, header timeout, signal wait and drain.
//! - [`metrics`] registers the Prometheus metrics whose names docs/contract.md §6
//!   fixes.
//! - [`emulator`] is the local STS; [`policy`] evaluates IAM trust policies for it
//!   and for [`doctor`]; [`dev`] runs emulator, rotating token and proxy together;
//!   [`inject`] adds the sidecar to Kubernetes manifests, whose exec probes run
//!   [`probe`]; [`webhook`] applies the same engine at pod creation, as a
//!   mutating admission webhook.
//! - [`duration`] and [`clock`] are small seams shared by all of the above.
//!
//! The cargo feature `tools` (default) adds the tools: [`emulator`], [`mint`],
//! [`dev`] and [`inject`]. The sidecar's core — serve, probe, link-local and
//! doctor (kept so that `kubectl exec` can explain a failing pod from inside it,
//! where the token and the role are) — builds without it, which is the proof that
//! the core never uses a tool.

// Outside tests nothing may panic on a value that could come from outside;
// tests unwrap freely (clippy.toml allows it in #[test] code).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod arn;
pub mod cli;
pub mod clock;
pub mod config;
pub mod credentials;
#[cfg(feature = "tools")]
pub mod dev;
pub mod doctor;
pub mod duration;
pub mod egress;
#[cfg(feature = "tools")]
pub mod emulator;
pub mod flags;
pub mod id;
#[cfg(feature = "tools")]
pub mod inject;
pub mod link_local;
pub mod logging;
pub mod metrics;
#[cfg(feature = "tools")]
pub mod mint;
pub mod netns;
pub mod policy;
pub mod probe;
pub mod role_credentials;
pub mod serve;
pub mod server;
pub mod serving;
pub mod sts;
pub mod token;
#[cfg(feature = "tools")]
pub mod webhook;

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
