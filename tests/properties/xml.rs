//! Properties of the emulator's XML: escaped text carries no markup, error documents hold one message.

use irsa_proxy::tools::emulator::xml::{escape, StsFault};
use proptest::prelude::*;

use crate::config;

/// The inverse of `escape` for the five entities it writes.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c as u32 >= 0x20 && c != '\u{fffe}' && c != '\u{ffff}')
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn escaped_text_should_carry_no_markup_and_round_trip(s in any::<String>()) {
        let e = escape(&s);
        prop_assert!(!e.contains(['<', '>', '"', '\'']));
        for (i, _) in e.match_indices('&') {
            let rest = &e[i..];
            prop_assert!(["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].iter().any(|ent| rest.starts_with(ent)), "{}", e);
        }
        prop_assert!(e.chars().all(xml_char));
        let kept: String = s.chars().filter(|c| xml_char(*c)).collect();
        prop_assert_eq!(unescape(&e), kept);
    }

    #[test]
    fn error_documents_should_hold_exactly_one_message(message in any::<String>(), rid in ".{0,20}") {
        let xml = StsFault::validation(message).to_xml(&rid);
        prop_assert_eq!(xml.matches("<Message>").count(), 1);
        prop_assert_eq!(xml.matches("</Message>").count(), 1);
        // The twelve tags of the template, and not one more from the message.
        prop_assert_eq!(xml.matches('<').count(), 12, "{}", xml);
    }
}
