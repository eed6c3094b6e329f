//! The emulator's XML: whatever the text, an error document carries exactly the
//! template's tags and only characters XML 1.0 allows.
#![no_main]
use irsa_proxy::tools::emulator::xml::{escape, StsFault};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let e = escape(s);
    assert!(!e.contains(['<', '>', '"', '\'']));
    let xml = StsFault::validation(s).to_xml(s);
    assert_eq!(xml.matches('<').count(), 12);
});
