//! The sidecar: everything the image ships, built without the `tools` feature.
//! The crate's tour ([`crate`]) says what each module does.

pub mod addresses;
pub mod cache;
pub mod chain;
pub mod config;
pub mod credentials;
pub mod doctor;
pub mod egress;
pub mod endpoints;
pub mod http_server;
pub mod link_local;
pub mod metrics;
pub mod netns;
pub mod port_redirect;
pub mod probe;
pub mod roles;
pub mod serve;
pub mod source;
pub mod sts;
pub mod token;
