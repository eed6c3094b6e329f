//! The JWT claim decoder on any text, and its log summary: never panic.
#![no_main]
use irsa_proxy::sidecar::token::Claims;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(c) = Claims::decode(s) {
        let _ = c.summary();
    }
});
