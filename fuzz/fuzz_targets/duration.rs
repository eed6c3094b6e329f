//! `parse_duration` on any text: never panics; what parses formats and parses back.
#![no_main]
use irsa_proxy::duration::{format_duration, parse_duration};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(d) = parse_duration(s) {
        if d.subsec_nanos() % 1_000_000 == 0 {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
});
