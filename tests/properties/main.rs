//! Property tests over everything that parses outside input: durations, role
//! ARNs, the JWT claim decoder, trust-policy evaluation, the emulator's XML and
//! its Query protocol, what a (possibly malicious) STS answers, the YAML
//! injector, and the HTTP server fed raw bytes.
//!
//! Each property runs 256 cases by default (fewer for the ones that go over the
//! network); `PROPTEST_CASES=N` raises every one of them to N, which is how the
//! long runs recorded in `docs/reliability.md` were made. The properties are:
//! never panic, and the specific invariant named on each test.

//!
//! One module per subject; the ones whose subject is a tool (the emulator, the
//! injector) build only with the `tools` feature.

// The shared harness lives beside this folder, in tests/common.
#[path = "../common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use proptest::test_runner::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `default` cases unless `PROPTEST_CASES` says otherwise.
fn config(default: u32) -> Config {
    let mut c = Config {
        // Keep failing inputs in the test output, not in files in the tree.
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var("PROPTEST_CASES").is_err() {
        c.cases = default;
    }
    c
}

/// Sends one raw HTTP/1.1 request and reads the answer until the server closes.
async fn raw_exchange(addr: SocketAddr, bytes: &[u8], limit: Duration) -> Vec<u8> {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return Vec::new();
    };
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    out
}

mod claims;
mod durations;
#[cfg(feature = "tools")]
mod emulator;
#[cfg(feature = "tools")]
mod inject;
mod policy;
mod raw_bytes;
mod role_arns;
mod sts_answers;
#[cfg(feature = "tools")]
mod xml;
