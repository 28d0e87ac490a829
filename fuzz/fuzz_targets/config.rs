#![no_main]
//! The config file: any text is an error or a config, and a config renders to text
//! that parses back to the same config.
use f2b_mailguard::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cfg) = Config::parse("fuzz.toml", text) {
        let rendered = cfg.render().expect("a config renders");
        let again = Config::parse("rendered.toml", &rendered).expect("rendered config parses");
        // The SMTP password is rendered as "(set)", never printed.
        if cfg.contain.mail.smtp_password.is_empty() {
            assert_eq!(again, cfg);
        }
    }
});
