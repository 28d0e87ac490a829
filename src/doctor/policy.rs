//! The in-band policy service: does it answer, and are Dovecot and Postfix wired to
//! it so that its failure lets mail and logins through? Each fix is the exact lines.

use std::collections::HashMap;
use std::path::PathBuf;

use super::postfix::{pairs, postconf};
use super::{Finding, Status};
use crate::actions::exec;
use crate::config::Config;
use crate::policy::probe;

const AREA: &str = "policy";

pub fn check(cfg: &Config, out: &mut Vec<Finding>) {
    let p = &cfg.policy;
    if !p.enabled {
        out.push(Finding::ok(
            AREA,
            "in-band policy service off (policy.enabled = false); optional, see docs/policy-service.md",
        ));
        return;
    }
    for (name, answer) in probe::listeners(cfg) {
        out.push(match answer {
            Ok(took) => Finding::ok(
                AREA,
                format!("the service answers on its {name} listener ({} ms)", took.as_millis()),
            ),
            Err(e) => Finding::new(
                Status::Fail,
                AREA,
                format!("the service does not answer on its {name} listener: {e}; {name} lets everything through meanwhile"),
                Some("systemctl enable --now f2b-mailguard-policy.service; journalctl -u f2b-mailguard-policy.service".into()),
            ),
        });
    }
    if p.dovecot_listen.is_some() {
        out.push(dovecot(cfg));
    }
    if p.postfix_listen.is_some() {
        out.push(postfix(cfg));
    }
}

/// The lines Dovecot needs (conf.d/95-f2b-mailguard.conf, say).
fn dovecot_lines(cfg: &Config) -> String {
    let addr = cfg
        .policy
        .dovecot_listen
        .map(|a| a.to_string())
        .unwrap_or_default();
    format!(
        "auth_policy_server_url = http://{addr}/\n\
         auth_policy_server_api_header = X-API-Key: <policy.dovecot_api_key>\n\
         auth_policy_hash_nonce = <a random string, e.g. from: openssl rand -hex 16>\n\
         auth_policy_server_timeout_msecs = 1000\n\
         auth_policy_reject_on_fail = no\n\
         auth_policy_check_before_auth = yes\n\
         auth_policy_check_after_auth = yes\n\
         auth_policy_report_after_auth = yes"
    )
}

fn dovecot(cfg: &Config) -> Finding {
    let doveconf: PathBuf = cfg.contain.doveadm.with_file_name("doveconf");
    let names = [
        "auth_policy_server_url",
        "auth_policy_hash_nonce",
        "auth_policy_server_api_header",
        "auth_policy_reject_on_fail",
        "auth_policy_server_timeout_msecs",
        "auth_policy_check_after_auth",
    ];
    let fix = || {
        Some(format!(
            "add to Dovecot's config, then `doveadm reload`:\n{}",
            dovecot_lines(cfg)
        ))
    };
    let ran = exec::run(&doveconf, &names, None, cfg.contain.actions.command_timeout);
    let got: HashMap<String, String> = match ran {
        Ok(r) if r.success() => pairs(&String::from_utf8_lossy(&r.stdout)),
        Ok(r) => {
            return Finding::warn(
                "dovecot",
                format!(
                    "doveconf failed ({}): the auth policy wiring was not checked",
                    r.first_line()
                ),
            )
        }
        Err(e) => {
            return Finding::warn(
                "dovecot",
                format!("{e}: the auth policy wiring was not checked"),
            )
        }
    };
    let get = |n: &str| got.get(n).map_or("", String::as_str);
    let addr = cfg
        .policy
        .dovecot_listen
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut wrong = Vec::new();
    let url = get("auth_policy_server_url");
    if !url.starts_with(&format!("http://{addr}/")) {
        wrong.push(format!(
            "auth_policy_server_url is {url:?}, not http://{addr}/"
        ));
    }
    if get("auth_policy_hash_nonce").is_empty() {
        wrong.push("auth_policy_hash_nonce is empty".into());
    }
    if !get("auth_policy_server_api_header").starts_with("X-API-Key:") {
        wrong.push("auth_policy_server_api_header does not send X-API-Key".into());
    }
    if get("auth_policy_reject_on_fail") != "no" {
        wrong.push(
            "auth_policy_reject_on_fail is not no: with the service down nobody could log in"
                .into(),
        );
    }
    if get("auth_policy_check_after_auth") != "yes" {
        wrong.push("auth_policy_check_after_auth is not yes: the login that crosses a level is not stopped".into());
    }
    match get("auth_policy_server_timeout_msecs").parse::<u64>() {
        Ok(ms) if ms <= 2000 && ms > u64::from(cfg.policy.answer_within_ms) => {}
        _ => wrong.push(format!(
            "auth_policy_server_timeout_msecs is {:?}: keep it short (1000) and above policy.answer_within_ms ({})",
            get("auth_policy_server_timeout_msecs"),
            cfg.policy.answer_within_ms
        )),
    }
    if wrong.is_empty() {
        Finding::ok(
            "dovecot",
            format!("auth policy sent to http://{addr}/, failing open"),
        )
    } else {
        Finding::new(Status::Fail, "dovecot", wrong.join("; "), fix())
    }
}

fn postfix(cfg: &Config) -> Finding {
    let Some(listen) = &cfg.policy.postfix_listen else {
        return Finding::ok(AREA, "no Postfix listener");
    };
    let main = match postconf(
        cfg,
        &["-x", "queue_directory", "smtpd_end_of_data_restrictions"],
    ) {
        Ok(t) => pairs(&t),
        Err(e) => {
            return Finding::warn(
                "postfix",
                format!("postconf did not run ({e}): the policy wiring was not checked"),
            )
        }
    };
    let queue = PathBuf::from(
        main.get("queue_directory")
            .map_or("/var/spool/postfix", String::as_str),
    );
    let endpoint = listen.for_postfix(&queue);
    let line = format!(
        "smtpd_end_of_data_restrictions = check_policy_service {{ {endpoint}, timeout=1s, try_limit=1, default_action=DUNNO }}"
    );
    let fix = Some(format!("postconf -e '{line}' && postfix reload   (on a service with its own -o smtpd_end_of_data_restrictions, add it there)"));
    let have = main
        .get("smtpd_end_of_data_restrictions")
        .map_or("", String::as_str);
    let absolute = listen.to_string();
    let wired = have.contains("check_policy_service")
        && (have.contains(&endpoint) || have.contains(&absolute));
    if !wired {
        return Finding::new(
            Status::Fail,
            "postfix",
            format!(
                "smtpd_end_of_data_restrictions does not ask the service ({endpoint}): {have:?}; no message is counted (a rate jail's tickets are not while policy.postfix_listen is set)"
            ),
            fix,
        );
    }
    // Per-client default_action, or the global one: anything but DUNNO defers mail
    // while the service is down.
    let global =
        postconf(cfg, &["-x", "-h", "smtpd_policy_service_default_action"]).unwrap_or_default();
    if !(have.contains("default_action=DUNNO") || global.trim() == "DUNNO") {
        return Finding::new(
            Status::Fail,
            "postfix",
            "the policy's default_action is not DUNNO: while the service is down Postfix would defer every message",
            fix,
        );
    }
    Finding::ok(
        "postfix",
        format!("every message is counted and answered at end of data ({endpoint}), failing open"),
    )
}

/// A Fail2ban jail counting messages (`source=rate`) beside the service, which counts
/// each one in-band: its tickets are not stored (`LoginEvent::counted_in_band`), so
/// nothing counts twice, but Fail2ban reads and hands over every message for nothing.
pub(super) fn rate_jail(cfg: &Config, jail: &str) -> Finding {
    let local = cfg.fail2ban.config_dir.join("jail.d/mailguard.local");
    let enabled_there = std::fs::read_to_string(&local).is_ok_and(|text| {
        super::jails::sections(&text)
            .get(jail)
            .is_some_and(|keys| keys.contains_key("enabled"))
    });
    // A second [jail] section in the same file would stop Fail2ban from loading it.
    let change = if enabled_there {
        format!(
            "sed -i '/^\\[{jail}\\]/,/^\\[/ s/^enabled *=.*/enabled = false/' {}",
            local.display()
        )
    } else {
        format!(
            "printf '[{jail}]\\nenabled = false\\n' >> {}",
            local.display()
        )
    };
    Finding::new(
        Status::Warn,
        "fail2ban",
        format!("jail {jail} counts the messages the policy service counts in-band (policy.postfix_listen): its tickets are not counted again, so disable it"),
        Some(format!("{change} && fail2ban-client reload")),
    )
}
