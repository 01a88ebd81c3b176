//! Why packets are dropped, and the core's packet counters. Every reason a packet is not
//! forwarded has a name (shown by `tunnat stats` and in debug logs) and a counter.

use crate::wire::WireError;

macro_rules! drop_reasons {
    ($($name:ident => $text:literal,)*) => {
        /// Why a packet was not forwarded. Every reason has a counter in [`Stats`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DropReason { $($name,)* }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name,)*];
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$name => $text,)* }
            }
        }
    };
}

drop_reasons! {
    Truncated => "truncated",
    NotIpv4 => "not-ipv4",
    BadHeaderLength => "bad-ihl",
    BadTotalLength => "bad-total-length",
    BadIpChecksum => "bad-ip-checksum",
    BadTransportLength => "bad-transport-length",
    BadIcmpChecksum => "bad-icmp-checksum",
    BadQuotedPacket => "bad-quoted-packet",
    NotIpv6 => "not-ipv6",
    Jumbogram => "jumbogram",
    BadExtensionHeader => "bad-extension-header",
    RoutingType0 => "routing-header-type-0",
    UdpZeroChecksum => "udp-zero-checksum",
    LinkLocal => "link-local",
    SpoofedSource => "spoofed-source",
    MartianSource => "martian-source",
    SourceRoute => "source-route",
    RstOutOfWindow => "rst-out-of-window",
    NotRouted => "not-routed",
    Fragment => "fragment-for-router",
    BadFragment => "bad-fragment",
    UnsupportedProtocol => "unsupported-protocol",
    UnsupportedIcmp => "unsupported-icmp",
    BadTcpFlags => "bad-tcp-flags",
    BadOffload => "bad-offload",
    NoSession => "no-session",
    IcmpErrorNoSession => "icmp-error-no-session",
    TtlExceeded => "ttl-exceeded",
    TooBig => "too-big",
    Filtered => "filtered",
    SynHeld => "syn-held",
    SynProxied => "syn-proxy",
    BadCookie => "bad-cookie",
    TableFull => "table-full",
    HostLimit => "host-limit",
    NoPort => "no-free-port",
    Untranslatable => "nat64-untranslatable",
    NoBinding => "nat64-no-binding",
    NonGlobal => "nat64-refused-destination",
}

impl From<WireError> for DropReason {
    fn from(e: WireError) -> DropReason {
        match e {
            WireError::Truncated => DropReason::Truncated,
            WireError::NotIpv4 => DropReason::NotIpv4,
            WireError::BadHeaderLength => DropReason::BadHeaderLength,
            WireError::BadTotalLength => DropReason::BadTotalLength,
            WireError::BadIpChecksum => DropReason::BadIpChecksum,
            WireError::BadTransportLength => DropReason::BadTransportLength,
            WireError::BadIcmpChecksum => DropReason::BadIcmpChecksum,
            WireError::NotIpv6 => DropReason::NotIpv6,
            WireError::Jumbogram => DropReason::Jumbogram,
            WireError::BadExtensionHeader => DropReason::BadExtensionHeader,
            WireError::RoutingType0 => DropReason::RoutingType0,
            WireError::UdpZeroChecksum => DropReason::UdpZeroChecksum,
        }
    }
}

/// Packet counters of the core.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    pub forwarded_out: u64,
    pub forwarded_in: u64,
    pub local: u64,
    pub hairpinned: u64,
    pub fragments_held: u64,
    pub reassembled: u64,
    pub fragmented: u64,
    pub icmp_errors_sent: u64,
    /// ICMP errors not sent because of the rate limit (`--icmp-rate`, `--icmp-burst`).
    pub icmp_errors_suppressed: u64,
    pub icmp_errors_translated: u64,
    /// GSO super-packets forwarded whole (TUN offloads).
    pub gso_forwarded: u64,
    /// Held SYNs dropped unanswered because [`super::MAX_HELD_SYNS`] were held.
    pub held_syns_overflowed: u64,
    /// SYNs to port forwards answered with a cookie (`--syn-cookies`).
    #[serde(default)]
    pub syn_cookies_sent: u64,
    /// ACKs that brought a valid cookie back: connections the proxy opened to the server.
    #[serde(default)]
    pub syn_cookies_valid: u64,
    /// By reason; shown through [`Stats::drop_counts`].
    #[serde(skip)]
    drops: DropCounts,
}

/// A counter per drop reason.
#[derive(Debug, Clone, PartialEq)]
struct DropCounts([u64; DropReason::ALL.len()]);

impl Default for DropCounts {
    fn default() -> Self {
        DropCounts([0; DropReason::ALL.len()])
    }
}

impl Stats {
    pub fn drops(&self, r: DropReason) -> u64 {
        self.drops.0[r as usize]
    }
    pub(crate) fn count(&mut self, r: DropReason) {
        self.drops.0[r as usize] += 1;
    }
    /// Every drop reason with a non-zero count.
    pub fn drop_counts(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.drops.0[*r as usize]))
            .filter(|(_, n)| *n > 0)
    }
}
