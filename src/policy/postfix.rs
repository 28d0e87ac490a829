//! Postfix's policy delegation (SMTPD_POLICY_README): `name=value` lines ended by an
//! empty line, answered by `action=...` and an empty line, many requests on one
//! connection. Each message at END-OF-MESSAGE is counted (rate, one message, its
//! queue id as ticket) and answered from the account's level.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::time::Duration;

use super::{Service, Unanswerable};
use crate::actions::in_band;
use crate::detect::PostfixAnswer;
use crate::error::one_line;
use crate::model::{ClientAddr, Label, MessageCount, SaslUser, Source, Timestamp};
use crate::store::LoginEvent;

/// Postfix cuts nothing itself; these bound what one client can make us hold.
const MAX_LINE: usize = 8192;
const MAX_ATTRIBUTES: usize = 100;

/// One request's attributes, each name once.
pub struct Request(HashMap<String, String>);

impl Request {
    fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }
}

/// Reads one request; None at a clean end of the connection.
pub fn read_request(input: &mut impl BufRead) -> Result<Option<Request>, Unanswerable> {
    let mut attrs = HashMap::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = input
            .by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(Unanswerable::Io)?;
        if n == 0 {
            return if attrs.is_empty() {
                Ok(None)
            } else {
                Err(Unanswerable::Bad(
                    "the connection ended inside a request".into(),
                ))
            };
        }
        if line.last() != Some(&b'\n') {
            return Err(Unanswerable::Bad(format!(
                "a line longer than {MAX_LINE} bytes"
            )));
        }
        line.pop();
        if line.is_empty() {
            if attrs.is_empty() {
                return Err(Unanswerable::Bad("an empty request".into()));
            }
            return Ok(Some(Request(attrs)));
        }
        let text = std::str::from_utf8(&line)
            .map_err(|_| Unanswerable::Bad("an attribute that is not UTF-8".into()))?;
        let (name, value) = text
            .split_once('=')
            .ok_or_else(|| Unanswerable::Bad("a line without name=value".into()))?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Err(Unanswerable::Bad(format!("the attribute name {name:?}")));
        }
        if value.chars().any(char::is_control) {
            return Err(Unanswerable::Bad(format!("a control character in {name}")));
        }
        if attrs.len() >= MAX_ATTRIBUTES {
            return Err(Unanswerable::Bad(format!(
                "more than {MAX_ATTRIBUTES} attributes"
            )));
        }
        if attrs.insert(name.to_owned(), value.to_owned()).is_some() {
            return Err(Unanswerable::Bad(format!("{name} twice")));
        }
    }
}

impl Service {
    /// Serves one Postfix connection until it ends. On a request that cannot be
    /// answered the connection is closed without a reply, as the protocol asks:
    /// Postfix then applies its `default_action`.
    pub fn serve_postfix(
        &self,
        stream: impl Read + Write + TryCloneStream,
    ) -> Result<(), Unanswerable> {
        let mut out = stream.try_clone_stream().map_err(Unanswerable::Io)?;
        let mut input = BufReader::new(stream);
        while let Some(request) = read_request(&mut input)? {
            let action = self.postfix_action(&request)?;
            out.write_all(format!("action={action}\n\n").as_bytes())
                .map_err(Unanswerable::Io)?;
            self.stats.postfix_answers.inc();
        }
        Ok(())
    }

    /// The answer to one request; counts the message at END-OF-MESSAGE.
    pub fn postfix_action(&self, r: &Request) -> Result<String, Unanswerable> {
        if r.get("request") != "smtpd_access_policy" {
            return Err(Unanswerable::Bad(format!("request={:?}", r.get("request"))));
        }
        let raw_user = r.get("sasl_username");
        if raw_user.is_empty() {
            return Ok("DUNNO".into());
        }
        // Postfix says who authenticated; a name our store would refuse is nobody's
        // account here.
        let (Ok(user), Ok(addr)) = (
            SaslUser::parse(raw_user),
            ClientAddr::parse(r.get("client_address")),
        ) else {
            self.stats.invalid.inc();
            return Ok("DUNNO".into());
        };
        // The map's own answer, from the same stored state: the two never disagree.
        let answer =
            |svc: &Self| PostfixAnswer::of(&svc.cfg, &svc.state.account(&user), Timestamp::now());
        if r.get("protocol_state") != "END-OF-MESSAGE" {
            return Ok(self.answered(answer(self), &user, r.get("queue_id")));
        }
        let before = answer(self);
        // A refused message proves the password as a login does: counted as the
        // smtp-refused jail counts the map's refusals.
        let source = if before == PostfixAnswer::Reject {
            Source::SmtpRefused
        } else {
            Source::Rate
        };
        let fid = match r.get("queue_id") {
            "" => None,
            q => Label::fid(q).ok(),
        };
        let event = |time| LoginEvent {
            time,
            source,
            user: user.clone(),
            addr,
            jail: self.jail_postfix.clone(),
            fid,
            count: MessageCount::ONE,
        };
        match self.send(&user, event) {
            Some(ticket) if before != PostfixAnswer::Reject => {
                // Every earlier message of the account is judged before this one is
                // answered, so none slips past a level change it came after.
                let limit = Duration::from_millis(u64::from(self.cfg.policy.answer_within_ms));
                if !self.state.wait_before(&user, ticket, limit) {
                    self.stats.late.inc();
                }
            }
            _ => {}
        }
        Ok(self.answered(answer(self), &user, r.get("queue_id")))
    }

    /// The action for `answer`; a message held is noted first, so that `release`
    /// finds it whenever this server's map began to hold the account.
    fn answered(&self, answer: PostfixAnswer, user: &SaslUser, queue_id: &str) -> String {
        if answer == PostfixAnswer::Hold && !queue_id.is_empty() {
            if let Err(e) = in_band::note(&self.cfg, user, queue_id) {
                self.stats.store_errors.inc();
                eprintln!(
                    "f2b-mailguard serve: held {queue_id} of {user} but could not note it for release: {}; release it with postsuper -H",
                    one_line(&e)
                );
            }
        }
        self.action_text(answer)
    }

    fn action_text(&self, a: PostfixAnswer) -> String {
        match a {
            PostfixAnswer::Dunno => "DUNNO".into(),
            PostfixAnswer::Hold => "HOLD quarantined by f2b-mailguard".into(),
            PostfixAnswer::Reject => self.cfg.contain.postfix.reject.clone(),
        }
    }
}

/// A connection whose writing half can be split off (TCP and Unix sockets).
pub trait TryCloneStream: Sized {
    fn try_clone_stream(&self) -> io::Result<Self>;
}

impl TryCloneStream for std::net::TcpStream {
    fn try_clone_stream(&self) -> io::Result<Self> {
        self.try_clone()
    }
}

impl TryCloneStream for std::os::unix::net::UnixStream {
    fn try_clone_stream(&self) -> io::Result<Self> {
        self.try_clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<Request>, Unanswerable> {
        read_request(&mut io::Cursor::new(text.as_bytes().to_vec()))
    }

    #[test]
    fn requests_parse_strictly() {
        let r = parse("request=smtpd_access_policy\nsasl_username=a@b\nsender=\n\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.get("sasl_username"), "a@b");
        assert_eq!(r.get("sender"), "");
        assert!(parse("").unwrap().is_none());
        for bad in [
            "\n",
            "request=x\n",
            "noequals\n\n",
            "Upper=x\n\n",
            "a=1\na=2\n\n",
            "a=\u{7f}\n\n",
            "a=\u{85}\n\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let long = format!("a={}\n\n", "x".repeat(MAX_LINE));
        assert!(parse(&long).is_err());
        let many: String = (0..=MAX_ATTRIBUTES)
            .map(|i| {
                format!(
                    "a{}=1\n",
                    char::from(b'a' + (i % 26) as u8)
                        .to_string()
                        .repeat(i / 26 + 1)
                )
            })
            .collect::<String>()
            + "\n";
        assert!(parse(&many).is_err());
    }

    /// The service answers what the check_sasl_access map says for the same stored
    /// state: quarantine holds at notify, block refuses only with `sasl_block`, and a
    /// notify past its quiet period no longer holds.
    #[test]
    fn the_answer_is_the_maps_for_every_level_and_setting() {
        use super::super::Known;
        use crate::config::Config;
        use crate::detect::AccountState;
        use crate::model::{ActionKind, Level, Mode, Timestamp};
        use crate::ownership::Ownership;
        use std::sync::Arc;

        let alice = SaslUser::parse("alice@example.org").unwrap();
        let request = Request(
            [
                ("request", "smtpd_access_policy"),
                ("protocol_state", "RCPT"),
                ("sasl_username", "alice@example.org"),
                ("client_address", "192.0.2.1"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        );
        let mut held = 0;
        for mode in [Mode::Warn, Mode::Enforce] {
            for quarantine in [false, true] {
                for refuses in [false, true] {
                    let mut cfg = Config {
                        mode,
                        ..Config::default()
                    };
                    let a = &mut cfg.contain.actions;
                    a.quarantine = quarantine;
                    a.block = refuses
                        .then_some(ActionKind::SaslBlock)
                        .into_iter()
                        .collect();
                    a.lock = a.block.clone();
                    let cfg = Arc::new(cfg);
                    let (svc, _jobs) =
                        Service::new(cfg.clone(), Arc::new(Ownership::none()), 1).unwrap();
                    let now = Timestamp::now();
                    let quiet_over = now.minus(cfg.detection.notify_quiet);
                    for level in [Level::Ok, Level::Notify, Level::Block, Level::Lock] {
                        for enforced in [false, true] {
                            for last_hit in [Some(now), Some(quiet_over)] {
                                let account = AccountState {
                                    level,
                                    enforced,
                                    last_hit,
                                    ..AccountState::default()
                                };
                                svc.state.set(
                                    &alice,
                                    Some(Known {
                                        account: account.clone(),
                                        ..Known::default()
                                    }),
                                );
                                let got = svc.postfix_action(&request).unwrap();
                                let map = PostfixAnswer::of(&cfg, &account, now);
                                assert_eq!(got, svc.action_text(map), "{account:?} {mode:?}");
                                let fresh_notify = level == Level::Notify && last_hit == Some(now);
                                if fresh_notify && mode == Mode::Enforce && quarantine {
                                    assert!(got.starts_with("HOLD"), "{got}");
                                    held += 1;
                                }
                                if level >= Level::Block && enforced {
                                    assert_eq!(got.starts_with("550"), refuses, "{got}");
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(held > 0);
    }
}
