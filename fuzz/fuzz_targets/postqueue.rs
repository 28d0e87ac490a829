#![no_main]
//! `postqueue -j` output: only queue ids postsuper can take come out.
use f2b_mailguard::actions::postfix::parse_queue;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for m in parse_queue(data) {
        assert!(!m.queue_id.is_empty() && m.queue_id.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
});
