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
//! - [`metrics`] registers the Prometheus metrics whose names SPEC.md fixes.
//! - [`emulator`] is the local STS; [`policy`] evaluates IAM trust policies for it
//!   and for [`doctor`]; [`dev`] runs emulator, rotating token and proxy together;
//!   [`inject`] adds the sidecar to Kubernetes manifests, whose exec probes run
//!   [`probe`]; [`webhook`] applies the same engine at pod creation, as a
//!   mutating admission webhook.
//! - [`duration`] and [`clock`] are small seams shared by all of the above.

pub mod cli;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod dev;
pub mod doctor;
pub mod duration;
pub mod emulator;
pub mod inject;
pub mod link_local;
pub mod logging;
pub mod metrics;
pub mod netns;
pub mod policy;
pub mod probe;
pub mod serve;
pub mod server;
pub mod sts;
pub mod token;
pub mod webhook;

/// Why a subcommand stopped before doing its job; `main` turns it into an exit code.
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    /// Bad configuration or input. Each entry is one line naming the flag or file,
    /// the value and what is allowed. Exit code 2.
    #[error("{}", .0.join("\n"))]
    Usage(Vec<String>),
    /// A failure at run time (a port already bound, a file that cannot be written).
    /// Exit code 1.
    #[error("{0}")]
    Runtime(String),
}

impl Fatal {
    /// A single-line usage error.
    pub fn usage(line: impl Into<String>) -> Self {
        Fatal::Usage(vec![line.into()])
    }

    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Fatal::Usage(_) => 2,
            Fatal::Runtime(_) => 1,
        }
    }
}
