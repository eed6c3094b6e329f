//! The tools a developer, CI or a cluster admin runs beside the sidecar (the
//! `tools` feature). They may use [`crate::sidecar`]; it never uses them. The
//! crate's tour ([`crate`]) says what each module does.

pub mod dev;
pub mod emulator;
pub mod inject;
pub mod mint;
pub mod tls;
pub mod webhook;
