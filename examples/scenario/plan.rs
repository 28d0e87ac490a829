//! The account classes of the corpus (honest and compromised behaviours) and how many
//! accounts of each a corpus of a given size holds.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// Home ISP (IPv4, IPv6 privacy addresses), phone on carrier NAT, laptop in a café.
    MultiDevice,
    /// A phone is all they use: carrier NAT over many /24s of one carrier, IPv6
    /// privacy addresses in a new /64 at each re-attach, home Wi-Fi in the evening.
    Phone,
    /// Submits from the office NAT (one address of one owner) on weekdays.
    OfficeNat,
    /// Stays abroad: a hotel, airports, conference venues, the phone roaming.
    Traveller,
    /// Their mail provider fetches (POP3/IMAP) and sends "as" them from its pools, a
    /// small provider's: two /24s or a few IPv6 /64s.
    Provider,
    /// The same through a big provider: its send pool spans 16 /24s of one owner.
    ProviderPool,
    /// Thousands of messages in an hour from the office's mail server.
    Newsletter,
    /// Dozens of client networks of dozens of owners within minutes, many bounces.
    BotnetBurst,
    /// The same from hosts rented in one cloud provider: many /24s, one owner.
    CloudBotnet,
    /// IMAP logins from ~40 owners within minutes, spam through SMTP later.
    ImapChecker,
    /// A new address every 10-20 minutes for a day, modest sending.
    SlowDrip,
    /// One address, about 1,500 messages an hour, a third of the recipients bounce.
    SingleIpSpammer,
    /// Twelve addresses in twelve /24s of one hosting provider.
    HostingBotnet,
    /// A new residential address for each connection, for hours.
    ResidentialProxy,
    /// One hosting address, ~40 messages an hour for 10 hours, 30 % bounces.
    QuietSender,
    /// The same to a clean list: 2 % bounces.
    QuietSenderClean,
    /// IMAP logins from a dozen owners, then re-downloads; never sends.
    ImapTheft,
    /// A new address every 15-30 minutes for two days, to a clean list.
    DripTwoDays,
    /// Everything through a VPN: 3-5 hosting exits a day.
    VpnUser,
    /// Outlook.com fetching by POP3 from its big pool.
    OutlookFetch,
    /// A role mailbox five staff use from home.
    SharedMailbox,
    /// A CRM on two cloud addresses, 100-300 messages a day.
    Crm,
    /// Newsletters through the office NAT, whitelisted by the admin.
    NewsletterOffice,
}

impl Class {
    pub const ALL: [Class; 23] = [
        Class::BotnetBurst,
        Class::CloudBotnet,
        Class::ImapChecker,
        Class::SlowDrip,
        Class::SingleIpSpammer,
        Class::HostingBotnet,
        Class::ResidentialProxy,
        Class::QuietSender,
        Class::QuietSenderClean,
        Class::ImapTheft,
        Class::DripTwoDays,
        Class::VpnUser,
        Class::OutlookFetch,
        Class::SharedMailbox,
        Class::Crm,
        Class::NewsletterOffice,
        Class::MultiDevice,
        Class::Phone,
        Class::OfficeNat,
        Class::Traveller,
        Class::Provider,
        Class::ProviderPool,
        Class::Newsletter,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Class::MultiDevice => "multi_device",
            Class::Phone => "phone",
            Class::OfficeNat => "office_nat",
            Class::Traveller => "traveller",
            Class::Provider => "provider",
            Class::ProviderPool => "provider_pool",
            Class::Newsletter => "newsletter",
            Class::BotnetBurst => "botnet_burst",
            Class::CloudBotnet => "cloud_botnet",
            Class::ImapChecker => "imap_checker",
            Class::SlowDrip => "slow_drip",
            Class::SingleIpSpammer => "single_ip_spammer",
            Class::HostingBotnet => "hosting_botnet",
            Class::ResidentialProxy => "residential_proxy",
            Class::QuietSender => "quiet_sender",
            Class::QuietSenderClean => "quiet_sender_clean",
            Class::ImapTheft => "imap_theft",
            Class::DripTwoDays => "drip_two_days",
            Class::VpnUser => "vpn_user",
            Class::OutlookFetch => "outlook_fetch",
            Class::SharedMailbox => "shared_mailbox",
            Class::Crm => "crm",
            Class::NewsletterOffice => "newsletter_office",
        }
    }

    pub fn compromised(self) -> bool {
        matches!(
            self,
            Class::BotnetBurst
                | Class::CloudBotnet
                | Class::ImapChecker
                | Class::SlowDrip
                | Class::SingleIpSpammer
                | Class::HostingBotnet
                | Class::ResidentialProxy
                | Class::QuietSender
                | Class::QuietSenderClean
                | Class::ImapTheft
                | Class::DripTwoDays
        )
    }
}

/// How many accounts of each class for `users` accounts (at least 20), `without`
/// some classes.
pub fn plan(users: usize, without: &[Class]) -> Vec<(Class, usize)> {
    let n = users.max(20);
    let mut v = vec![
        (Class::BotnetBurst, (n / 30).max(1)),
        (Class::CloudBotnet, (n / 60).max(1)),
        (Class::ImapChecker, (n / 60).max(1)),
        (Class::SlowDrip, (n / 30).max(1)),
        (Class::SingleIpSpammer, (n / 40).max(1)),
        (Class::Phone, (n / 10).max(1)),
        (Class::OfficeNat, n / 6),
        (Class::Traveller, (n / 15).max(1)),
        (Class::Provider, (n / 30).max(1)),
        (Class::ProviderPool, (n / 30).max(1)),
        (Class::Newsletter, (n / 100).max(1)),
        // The harder classes from 60 accounts on: small corpora stay as they were.
        (Class::HostingBotnet, (n / 60)),
        (Class::ResidentialProxy, (n / 60)),
        (Class::QuietSender, (n / 60)),
        (Class::QuietSenderClean, (n / 60)),
        (Class::ImapTheft, (n / 60)),
        (Class::DripTwoDays, (n / 60)),
        (Class::VpnUser, (n / 30)),
        (Class::OutlookFetch, (n / 30)),
        (Class::SharedMailbox, (n / 60)),
        (Class::Crm, (n / 60)),
        (Class::NewsletterOffice, (n / 100)),
    ];
    v.retain(|(c, k)| !without.contains(c) && *k > 0);
    let rest = n - v.iter().map(|(_, k)| k).sum::<usize>();
    let at = v.iter().position(|(c, _)| !c.compromised()).unwrap_or(0);
    v.insert(at, (Class::MultiDevice, rest));
    v
}
