//! Properties of durations: parsing never panics, parts add up, formats round-trip.

use std::time::Duration;

use irsa_proxy::duration::{format_duration, parse_duration};
use proptest::prelude::*;

use crate::config;

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn duration_parsing_should_never_panic(s in ".{0,40}") {
        let _ = parse_duration(&s);
    }

    #[test]
    fn duration_parts_should_add_up(
        h in proptest::option::of(0u64..100_000),
        m in proptest::option::of(0u64..100_000),
        s in proptest::option::of(0u64..10_000_000),
        ms in proptest::option::of(0u64..10_000_000),
    ) {
        let mut text = String::new();
        let mut want = Duration::ZERO;
        if let Some(h) = h { text.push_str(&format!("{h}h")); want += Duration::from_secs(h * 3600); }
        if let Some(m) = m { text.push_str(&format!("{m}m")); want += Duration::from_secs(m * 60); }
        if let Some(s) = s { text.push_str(&format!("{s}s")); want += Duration::from_secs(s); }
        if let Some(ms) = ms { text.push_str(&format!("{ms}ms")); want += Duration::from_millis(ms); }
        if text.is_empty() { text.push('0'); } // plain seconds
        prop_assert_eq!(parse_duration(&text), Ok(want));
    }

    #[test]
    fn durations_should_round_trip_through_their_format(ms in 0u64..1_000_000_000_000) {
        let d = Duration::from_millis(ms);
        prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }
}
