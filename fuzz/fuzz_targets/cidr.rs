#![no_main]
//! A whitelist CIDR: what is accepted prints and parses back to itself.
use f2b_mailguard::model::Cidr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cidr) = Cidr::parse("cidr", text) {
        assert_eq!(Cidr::parse("cidr", &cidr.to_string()).expect("display parses"), cidr);
    }
});
