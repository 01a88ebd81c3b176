//! Every counter the router keeps, in one struct: `tunnat stats` sends it, the log line at
//! stop is written from it, and the tests read it. A packet that is not forwarded is
//! counted under a reason ([`crate::nat::DropReason`]), and so is every queue overflow.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::nat::nat64::{Nat64, Nat64Stats};
use crate::nat::table::TableStats;
use crate::nat::{Address, Nat, Side, Stats};
use crate::services::policy::PolicyStats;

/// All the router's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub nat: NatCounters,
    /// The IPv6 core's, on a dual-stack router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat6: Option<NatCounters>,
    /// NAT64's, when it is on (its sessions are the IPv4 core's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat64: Option<Nat64Counters>,
    pub io: IoCounters,
    pub control: ControlCounters,
    /// The policy server on each port, when it is on.
    pub policy: Vec<PolicyCounters>,
    /// The FTP helper, when it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ftp: Option<crate::nat::ftp::FtpStats>,
    /// Port control (PCP, NAT-PMP, UPnP), when it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portmap: Option<super::portctl::PortControlCounters>,
}

/// The NAT core's counters and table sizes: the core's own counter structs, flattened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NatCounters {
    #[serde(flatten)]
    pub packets: Stats,
    /// Packets not forwarded, by reason (only reasons that happened).
    pub drops: BTreeMap<String, u64>,
    #[serde(flatten)]
    pub table: TableStats,
    pub sessions: u64,
    pub mappings: u64,
    /// Sessions opened from outside through port forwards, perhaps still half-open.
    pub half_open_tracked: u64,
    pub reassembly_pending: u64,
    pub reassembly_timed_out: u64,
    pub reassembly_evicted: u64,
}

/// NAT64's counters: packets translated each way, bindings, and what was not
/// translated, by reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Nat64Counters {
    #[serde(flatten)]
    pub stats: Nat64Stats,
    pub drops: BTreeMap<String, u64>,
}

impl Nat64Counters {
    pub fn of(n: &Nat64) -> Nat64Counters {
        Nat64Counters {
            stats: n.stats(),
            drops: n
                .drop_counts()
                .map(|(r, n)| (r.name().to_string(), n))
                .collect(),
        }
    }
}

impl std::ops::Deref for Nat64Counters {
    type Target = Nat64Stats;
    fn deref(&self) -> &Nat64Stats {
        &self.stats
    }
}

/// What the driver saw of the ports, and the router's own stacks' queues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoCounters {
    pub read_inside: u64,
    pub read_outside: u64,
    /// Reads that failed other than for want of a packet.
    pub read_errors: u64,
    pub write_errors: u64,
    /// Packets dropped because a local stack's queue was full.
    pub local_queue_overflows: u64,
    /// Ports whose device was deleted while tunnat waited for it to come back
    /// (`--persist`), and the times it came back.
    pub ports_lost: u64,
    pub ports_reattached: u64,
    /// Ports without a device now (`--persist`, waiting for it).
    pub ports_down: u64,
    /// Turns of the event loop that moved packets: packets read over this is how many
    /// each wakeup carried (more under load, and with io_uring).
    #[serde(default)]
    pub batches: u64,
    /// UDP datagrams written inside another's UDP GSO super-packet (io_uring with
    /// offloads; `--no-udp-gro` turns it off): datagrams written less this is writes.
    #[serde(default)]
    pub udp_joined: u64,
    /// Waits that held out for a batch (`--coalesce-us`; io_uring on Linux 6.12 and
    /// later): only after a turn that moved eight packets or more.
    #[serde(default)]
    pub coalesced: u64,
}

/// The control socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlCounters {
    pub requests: u64,
    pub refused: u64,
    /// Clients dropped for not sending their request or taking their answer in time.
    pub clients_timed_out: u64,
}

/// One port's policy server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyCounters {
    pub side: String,
    pub served: u64,
    pub refused: u64,
    pub timed_out: u64,
    pub displaced: u64,
    pub busy: u64,
}

impl NatCounters {
    pub fn of<A: Address>(nat: &Nat<A>) -> NatCounters {
        let s = nat.stats();
        let t = nat.table();
        let r = nat.reassembler();
        NatCounters {
            packets: s.clone(),
            drops: s
                .drop_counts()
                .map(|(r, n)| (r.name().to_string(), n))
                .collect(),
            table: t.stats,
            sessions: t.len() as u64,
            mappings: t.mapping_count() as u64,
            half_open_tracked: t.half_open_tracked() as u64,
            reassembly_pending: r.pending() as u64,
            reassembly_timed_out: r.timed_out,
            reassembly_evicted: r.evicted,
        }
    }
}

impl PolicyCounters {
    pub fn of(side: Side, s: &PolicyStats) -> PolicyCounters {
        PolicyCounters {
            side: side.name().to_string(),
            served: s.served,
            refused: s.refused,
            timed_out: s.timed_out,
            displaced: s.displaced,
            busy: s.busy,
        }
    }
}

impl Counters {
    /// The summary logged when the router stops, one line each.
    pub fn log_lines(&self) -> Vec<String> {
        let n = &self.nat;
        let p = &n.packets;
        let mut lines = vec![format!(
            "forwarded out {} in {}, local {}, ICMP errors sent {} translated {}, sessions {} (created {}, expired {}, evicted {})",
            p.forwarded_out,
            p.forwarded_in,
            p.local,
            p.icmp_errors_sent,
            p.icmp_errors_translated,
            n.sessions,
            n.table.sessions_created,
            n.table.sessions_expired,
            n.table.sessions_evicted,
        )];
        for (r, count) in &n.drops {
            lines.push(format!("dropped {r}: {count}"));
        }
        let io = &self.io;
        let c = &self.control;
        lines.push(format!(
            "read inside {} outside {} in {} batches ({} coalesced), UDP datagrams joined {}, read errors {}, write errors {}, ports lost {} (reattached {}), local queue overflows {}, held SYNs overflowed {}, control requests {} (refused {}, timed out {})",
            io.read_inside,
            io.read_outside,
            io.batches,
            io.coalesced,
            io.udp_joined,
            io.read_errors,
            io.write_errors,
            io.ports_lost,
            io.ports_reattached,
            io.local_queue_overflows,
            p.held_syns_overflowed,
            c.requests,
            c.refused,
            c.clients_timed_out,
        ));
        if let Some(x) = &self.nat64 {
            lines.push(format!(
                "NAT64: translated 6to4 {} 4to6 {} (copied {}), fragmented {}, bindings {} (created {}, released {})",
                x.translated_6to4,
                x.translated_4to6,
                x.copied_4to6,
                x.fragmented,
                x.bindings,
                x.bindings_created,
                x.bindings_released
            ));
            for (r, count) in &x.drops {
                lines.push(format!("NAT64 dropped {r}: {count}"));
            }
        }
        for p in &self.policy {
            lines.push(format!(
                "policy server ({}): served {}, refused {}, timed out {}, displaced {}, busy {}",
                p.side, p.served, p.refused, p.timed_out, p.displaced, p.busy
            ));
        }
        if let Some(m) = &self.portmap {
            lines.push(format!(
                "port control: {} mapping(s) (created {}, refreshed {}, deleted {}, expired {}, refused {}); requests PCP {}, NAT-PMP {}, SSDP {}, UPnP {}, ignored {}",
                m.mappings, m.table.created, m.table.refreshed, m.table.deleted, m.table.expired, m.table.refused,
                m.pcp_requests, m.nat_pmp_requests, m.ssdp_searches, m.upnp_requests, m.ignored
            ));
        }
        if let Some(f) = &self.ftp {
            lines.push(format!(
                "FTP helper: lines rewritten {}, expected {}, data connections {}, expired {}, split lines held {}, third-party lines {}",
                f.rewritten, f.expected, f.data_connections, f.expired, f.held_split, f.third_party
            ));
        }
        lines
    }
}
