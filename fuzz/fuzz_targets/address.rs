#![no_main]
//! A client address: what is accepted prints and parses back to itself.
use f2b_mailguard::model::{ClientAddr, NetPrefixes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(addr) = ClientAddr::parse(text) {
        let again = ClientAddr::parse(&addr.to_string()).expect("display parses");
        assert_eq!(addr, again);
        let net = addr.net(NetPrefixes { v4: 24, v6: 64 });
        assert_eq!(net, again.net(NetPrefixes { v4: 24, v6: 64 }));
    }
});
