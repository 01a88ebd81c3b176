//! The `tunnat` command: parses options into a [`Config`] and runs the router.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

use tunnat::config::{Config, PortConfig};
use tunnat::nat::{DnatRule, Filtering, Ipv4Cidr, Timeouts};
use tunnat::port::netns;
use tunnat::services::policy::DEFAULT_POLICY;

/// A user-mode NAPT router between two TUN devices: masquerade, port forwarding, and a
/// Flash socket policy server on the router's own addresses.
#[derive(Parser, Debug)]
#[command(name = "tunnat", version, about, long_about = None)]
struct Cli {
    /// TUN device of the inside (LAN) port; created if it does not exist.
    #[arg(long, value_name = "NAME")]
    inside_tun: String,
    /// Network namespace to open the inside TUN in: a name under /run/netns or a path.
    #[arg(long, value_name = "PATH")]
    inside_netns: Option<String>,
    /// The router's inside address and the inside network, e.g. 192.168.122.100/24.
    #[arg(long, value_name = "CIDR")]
    inside_addr: Ipv4Cidr,
    /// TUN device of the outside (WAN) port; created if it does not exist.
    #[arg(long, value_name = "NAME")]
    outside_tun: String,
    /// Network namespace to open the outside TUN in: a name under /run/netns or a path.
    #[arg(long, value_name = "PATH")]
    outside_netns: Option<String>,
    /// The router's outside address (all inside hosts appear as it), e.g. 172.16.1.186/24.
    #[arg(long, value_name = "CIDR")]
    outside_addr: Ipv4Cidr,
    /// Port forwarding PROTO:PORT[-PORT]=IP[:PORT] (tcp or udp), repeatable.
    #[arg(long = "dnat", value_name = "RULE")]
    dnat: Vec<DnatRule>,
    /// TCP port of the Flash socket policy server on the router's addresses (0: off).
    #[arg(long, value_name = "PORT", default_value_t = 843)]
    policy_port: u16,
    /// File holding the cross-domain policy XML to serve (default: allow all).
    #[arg(long, value_name = "FILE")]
    policy_file: Option<PathBuf>,
    /// Seconds a policy client may take to send its request.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    policy_idle_timeout: f64,
    /// Largest packet forwarded; larger DF packets get ICMP "fragmentation needed".
    #[arg(long, value_name = "N", default_value_t = 1500)]
    mtu: usize,
    /// Idle timeout of UDP sessions, seconds (RFC 4787 REQ-5).
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    udp_timeout: u64,
    /// Idle timeout of established TCP sessions, seconds (RFC 5382 REQ-5).
    #[arg(long, value_name = "SECS", default_value_t = 7440)]
    tcp_established_timeout: u64,
    /// Idle timeout of opening, closing and reset TCP sessions, seconds (RFC 5382 REQ-5).
    #[arg(long, value_name = "SECS", default_value_t = 240)]
    tcp_transitory_timeout: u64,
    /// Idle timeout of ICMP query sessions, seconds (RFC 5508 REQ-2).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    icmp_timeout: u64,
    /// Who may send to a mapped port: endpoint-independent, address-dependent or
    /// address-and-port-dependent (RFC 4787 section 5).
    #[arg(long, value_name = "MODE", default_value = "address-dependent")]
    filtering: Filtering,
    /// Most sessions in the table; new ones beyond get ICMP "administratively prohibited".
    #[arg(long, value_name = "N", default_value_t = 65536)]
    max_sessions: usize,
}

impl Cli {
    fn into_config(self) -> Result<Config> {
        let policy = match &self.policy_file {
            Some(p) => {
                std::fs::read(p).with_context(|| format!("--policy-file {}", p.display()))?
            }
            None => DEFAULT_POLICY.as_bytes().to_vec(),
        };
        if !(self.policy_idle_timeout > 0.0 && self.policy_idle_timeout <= 3600.0) {
            anyhow::bail!(
                "--policy-idle-timeout {}: must be above 0 and at most 3600",
                self.policy_idle_timeout
            );
        }
        Ok(Config {
            inside: PortConfig {
                tun: self.inside_tun,
                netns: self.inside_netns.as_deref().map(netns::resolve),
                cidr: self.inside_addr,
            },
            outside: PortConfig {
                tun: self.outside_tun,
                netns: self.outside_netns.as_deref().map(netns::resolve),
                cidr: self.outside_addr,
            },
            dnat: self.dnat,
            policy_port: self.policy_port,
            policy,
            policy_idle: Duration::from_secs_f64(self.policy_idle_timeout),
            mtu: self.mtu,
            timeouts: Timeouts {
                udp: Duration::from_secs(self.udp_timeout),
                tcp_established: Duration::from_secs(self.tcp_established_timeout),
                tcp_transitory: Duration::from_secs(self.tcp_transitory_timeout),
                icmp: Duration::from_secs(self.icmp_timeout),
            },
            filtering: self.filtering,
            max_sessions: self.max_sessions,
        })
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    let cli = Cli::parse();
    let run = || -> Result<()> {
        let config = cli.into_config()?;
        config.validate()?;
        for w in config.warnings() {
            log::warn!("{w}");
        }
        tunnat::router::run(config)
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tunnat: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
