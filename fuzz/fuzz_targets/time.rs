#![no_main]
//! Log times and durations: no panic, no overflow, durations print and parse back.
use f2b_mailguard::model::{Span, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(t) = Timestamp::parse("time", text) {
        assert!(t.millis() >= 0);
        let _ = t.rfc3339();
    }
    if let Ok(span) = Span::parse("span", text) {
        assert!(span.millis() > 0);
        assert_eq!(Span::parse("span", &span.to_string()).expect("display parses"), span);
    }
});
