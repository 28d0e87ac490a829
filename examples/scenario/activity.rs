//! What happens, before it is rendered as log lines: submissions, logins, noise.

use std::net::IpAddr;

use super::rng::Rng;
use super::world::World;
use super::SEC;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Delivered remotely (postfix/smtp).
    Sent,
    /// 550 5.1.1 from the remote server.
    Bounced,
    /// 4xx or unreachable: stays in the queue.
    Deferred,
    /// Local mailbox (postfix/lmtp to Dovecot).
    Local,
}

#[derive(Debug, Clone)]
pub struct Msg {
    pub t: i64,
    pub from: String,
    pub rcpts: Vec<(String, Outcome)>,
    pub size: u32,
    pub spam: bool,
}

#[derive(Debug, Clone)]
pub enum Act {
    /// One authenticated SMTP connection carrying one or more messages.
    Submit {
        t: i64,
        user: String,
        addr: IpAddr,
        name: String,
        service: &'static str,
        method: &'static str,
        msgs: Vec<Msg>,
    },
    /// A successful Dovecot login and its logout.
    Login {
        t: i64,
        user: String,
        addr: IpAddr,
        pop3: bool,
        secs: i64,
    },
    /// Noise: wrong password over SMTP AUTH.
    SmtpAuthFail { t: i64, user: String, addr: IpAddr },
    /// Noise: wrong password over IMAP/POP3.
    LoginFail {
        t: i64,
        user: String,
        addr: IpAddr,
        pop3: bool,
    },
    /// Noise: inbound mail from another server, no SASL.
    Inbound {
        t: i64,
        addr: IpAddr,
        name: String,
        from: String,
        to: String,
    },
}

impl Act {
    pub fn time(&self) -> i64 {
        match self {
            Act::Submit { t, .. }
            | Act::Login { t, .. }
            | Act::SmtpAuthFail { t, .. }
            | Act::LoginFail { t, .. }
            | Act::Inbound { t, .. } => *t,
        }
    }
}

impl Act {
    /// The client's address (every act has one).
    pub fn addr(&self) -> IpAddr {
        match self {
            Act::Submit { addr, .. }
            | Act::Login { addr, .. }
            | Act::SmtpAuthFail { addr, .. }
            | Act::LoginFail { addr, .. }
            | Act::Inbound { addr, .. } => *addr,
        }
    }
}

/// The PTR name Postfix logs: a third of IPv4 clients have a forward-confirmed one,
/// always the same for one address.
pub fn client_name(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            if Rng::new(u32::from(a) as u64).next_u64().is_multiple_of(3) {
                format!("{}-{}-{}-{}.dyn.isp.example", o[0], o[1], o[2], o[3])
            } else {
                "unknown".to_owned()
            }
        }
        IpAddr::V6(_) => "unknown".to_owned(),
    }
}

pub struct Gen {
    pub world: World,
    pub acts: Vec<Act>,
}

impl Gen {
    pub fn submit(
        &mut self,
        rng: &mut Rng,
        user: &str,
        addr: IpAddr,
        service: &'static str,
        msgs: Vec<Msg>,
    ) {
        self.submit_as(rng, user, addr, service, "PLAIN", msgs);
    }

    pub fn submit_as(
        &mut self,
        rng: &mut Rng,
        user: &str,
        addr: IpAddr,
        service: &'static str,
        method: &'static str,
        msgs: Vec<Msg>,
    ) {
        let Some(first) = msgs.first() else { return };
        if first.t >= self.world.end || first.t < self.world.start {
            return;
        }
        let t = first.t - rng.span(300, 3 * SEC);
        let name = client_name(addr);
        self.acts.push(Act::Submit {
            t,
            user: user.to_owned(),
            addr,
            name,
            service,
            method,
            msgs,
        });
    }

    pub fn login(&mut self, t: i64, user: &str, addr: IpAddr, pop3: bool, rng: &mut Rng) {
        if t < self.world.start || t >= self.world.end {
            return;
        }
        let secs = if pop3 {
            rng.range(1, 8)
        } else {
            rng.range(2, 1800)
        };
        self.acts.push(Act::Login {
            t,
            user: user.to_owned(),
            addr,
            pop3,
            secs,
        });
    }
}

pub fn outcome_for(r: String, rng: &mut Rng, bounce: f64, defer: f64) -> (String, Outcome) {
    if World::is_local(&r) {
        return (r, Outcome::Local);
    }
    let x = rng.f64();
    let o = if x < bounce {
        Outcome::Bounced
    } else if x < bounce + defer {
        Outcome::Deferred
    } else {
        Outcome::Sent
    };
    (r, o)
}
