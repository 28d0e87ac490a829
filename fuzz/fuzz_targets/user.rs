#![no_main]
//! A SASL login from a log: accepted names keep every promise the type makes.
use f2b_mailguard::model::{SaslUser, MAX_USER_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(user) = SaslUser::parse(text) {
        let s = user.as_str();
        assert!(!s.is_empty() && s.len() <= MAX_USER_BYTES);
        assert!(!s.chars().any(|c| c.is_whitespace() || c.is_control()));
        assert_eq!(s, text);
    }
});
