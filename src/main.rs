//! The `tunnat` command: parses options (and a config file) into a [`Config`] and runs the
//! router, or, with a subcommand, talks to a running router over its control socket.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use tunnat::control::{Request, DEFAULT_SOCKET};
use tunnat::settings::{PortSettings, Settings, Sources, TimeoutSettings};

/// A user-mode NAPT router between two TUN devices: masquerade, port forwarding, and a
/// Flash socket policy server on the router's own addresses.
#[derive(Parser, Debug)]
#[command(name = "tunnat", version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

/// Options of the router. Each can also be given in the config file; flags win.
#[derive(Args, Debug)]
struct RunArgs {
    /// TOML file with any of these options (see README); re-read on SIGHUP or `tunnat reload`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// TUN device of the inside (LAN) port; created if it does not exist.
    #[arg(long, value_name = "NAME")]
    inside_tun: Option<String>,
    /// Network namespace to open the inside TUN in: a name under /run/netns or a path.
    #[arg(long, value_name = "PATH")]
    inside_netns: Option<String>,
    /// The router's inside address and the inside network, e.g. 192.168.122.100/24.
    #[arg(long, value_name = "CIDR")]
    inside_addr: Option<String>,
    /// TUN device of the outside (WAN) port; created if it does not exist.
    #[arg(long, value_name = "NAME")]
    outside_tun: Option<String>,
    /// Network namespace to open the outside TUN in: a name under /run/netns or a path.
    #[arg(long, value_name = "PATH")]
    outside_netns: Option<String>,
    /// The router's outside address (all inside hosts appear as it), e.g. 172.16.1.186/24.
    #[arg(long, value_name = "CIDR")]
    outside_addr: Option<String>,
    /// Port forwarding PROTO:PORT[-PORT]=IP[:PORT] (tcp or udp), repeatable; replaces the
    /// config file's list.
    #[arg(long = "dnat", value_name = "RULE")]
    dnat: Vec<String>,
    /// TCP port of the Flash socket policy server on the router's addresses (0: off) [default: 843]
    #[arg(long, value_name = "PORT")]
    policy_port: Option<u16>,
    /// File holding the cross-domain policy XML to serve [default: allow all]
    #[arg(long, value_name = "FILE")]
    policy_file: Option<PathBuf>,
    /// Seconds a policy client may take to send its request [default: 3]
    #[arg(long, value_name = "SECS")]
    policy_idle_timeout: Option<f64>,
    /// Largest packet forwarded; larger DF packets get ICMP "fragmentation needed" [default: 1500]
    #[arg(long, value_name = "N")]
    mtu: Option<usize>,
    /// MTU of the inside port, overriding --mtu.
    #[arg(long, value_name = "N")]
    inside_mtu: Option<usize>,
    /// MTU of the outside port, overriding --mtu.
    #[arg(long, value_name = "N")]
    outside_mtu: Option<usize>,
    /// Lower the MSS option of forwarded SYNs to N, or to the egress MTU - 40 with 'mtu'.
    #[arg(long, value_name = "N|mtu")]
    clamp_mss: Option<String>,
    /// Idle timeout of UDP sessions, seconds (RFC 4787 REQ-5) [default: 300]
    #[arg(long, value_name = "SECS")]
    udp_timeout: Option<u64>,
    /// Idle timeout of established TCP sessions, seconds (RFC 5382 REQ-5) [default: 7440]
    #[arg(long, value_name = "SECS")]
    tcp_established_timeout: Option<u64>,
    /// Idle timeout of opening, closing and reset TCP sessions, seconds [default: 240]
    #[arg(long, value_name = "SECS")]
    tcp_transitory_timeout: Option<u64>,
    /// Idle timeout of ICMP query sessions, seconds (RFC 5508 REQ-2) [default: 60]
    #[arg(long, value_name = "SECS")]
    icmp_timeout: Option<u64>,
    /// Who may send to a mapped port: endpoint-independent, address-dependent or
    /// address-and-port-dependent (RFC 4787 section 5) [default: address-dependent]
    #[arg(long, value_name = "MODE")]
    filtering: Option<String>,
    /// Most sessions in the table; new ones beyond get ICMP "administratively prohibited" [default: 65536]
    #[arg(long, value_name = "N")]
    max_sessions: Option<usize>,
    /// Most mappings (inside endpoints with an external port) [default: 65536]
    #[arg(long, value_name = "N")]
    max_mappings: Option<usize>,
    /// Most mappings one inside address may hold; beyond, ICMP "administratively
    /// prohibited" (RFC 6888 REQ-4) [default: 65536, i.e. no limit]
    #[arg(long, value_name = "N")]
    max_mappings_per_host: Option<usize>,
    /// Seconds a released external port is kept from other hosts (RFC 6888) [default: 120]
    #[arg(long, value_name = "SECS")]
    port_hold: Option<u64>,
    /// Keep the parity of the inside port when it cannot be preserved (RFC 4787 REQ-4).
    #[arg(long)]
    port_parity: bool,
    /// Open the TUNs without offloads: one MTU-sized packet per read and write, every
    /// checksum complete (by default the kernel hands over 64 KB TCP/UDP super-packets).
    #[arg(long)]
    no_offload: bool,
    /// Print every packet on standard output in the kernel LOG target's format
    /// (PRE IN: as read, POST OUT: as written).
    #[arg(long)]
    trace: bool,
    /// Trace only tcp, udp, icmp, tcp:PORT or udp:PORT (repeatable; implies --trace).
    #[arg(long, value_name = "FILTER")]
    trace_filter: Vec<String>,
    /// Write every packet to DIR/inside.pcap and DIR/outside.pcap.
    #[arg(long, value_name = "DIR")]
    pcap_dir: Option<PathBuf>,
    /// Listen for `tunnat table|stats|dnat|reload` on this Unix socket.
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the session table (like conntrack -L).
    Table(ClientArgs),
    /// Show the counters: packets, drops by reason, sessions created and expired.
    Stats(ClientArgs),
    /// List, add or remove port forwarding rules at run time.
    Dnat {
        #[command(subcommand)]
        action: DnatAction,
    },
    /// Re-read the config file (as SIGHUP does).
    Reload(ClientArgs),
}

#[derive(Subcommand, Debug)]
enum DnatAction {
    List(ClientArgs),
    Add {
        /// PROTO:PORT[-PORT]=IP[:PORT]
        rule: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    Del {
        /// The rule as listed
        rule: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args, Debug)]
struct ClientArgs {
    /// The router's control socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    control: PathBuf,
    /// Print the JSON answer instead of a table.
    #[arg(long)]
    json: bool,
}

impl RunArgs {
    fn settings(self) -> (Option<PathBuf>, Settings) {
        let s = Settings {
            inside: PortSettings {
                tun: self.inside_tun,
                netns: self.inside_netns,
                addr: self.inside_addr,
                mtu: self.inside_mtu,
            },
            outside: PortSettings {
                tun: self.outside_tun,
                netns: self.outside_netns,
                addr: self.outside_addr,
                mtu: self.outside_mtu,
            },
            dnat: (!self.dnat.is_empty()).then_some(self.dnat),
            policy_port: self.policy_port,
            policy_file: self.policy_file,
            policy_idle_timeout: self.policy_idle_timeout,
            mtu: self.mtu,
            clamp_mss: self.clamp_mss,
            timeouts: TimeoutSettings {
                udp: self.udp_timeout,
                tcp_established: self.tcp_established_timeout,
                tcp_transitory: self.tcp_transitory_timeout,
                icmp: self.icmp_timeout,
            },
            filtering: self.filtering,
            max_sessions: self.max_sessions,
            max_mappings: self.max_mappings,
            max_mappings_per_host: self.max_mappings_per_host,
            port_hold: self.port_hold,
            port_parity: self.port_parity.then_some(true),
            offload: self.no_offload.then_some(false),
            trace: self.trace.then_some(true),
            trace_filter: (!self.trace_filter.is_empty()).then_some(self.trace_filter),
            pcap_dir: self.pcap_dir,
            control: self.control,
        };
        (self.config, s)
    }
}

fn client(cmd: Command) -> Result<()> {
    let (args, req) = match cmd {
        Command::Table(a) => (a, Request::Table),
        Command::Stats(a) => (a, Request::Stats),
        Command::Reload(a) => (a, Request::Reload),
        Command::Dnat { action } => match action {
            DnatAction::List(a) => (a, Request::DnatList),
            DnatAction::Add { rule, client } => (client, Request::DnatAdd { rule }),
            DnatAction::Del { rule, client } => (client, Request::DnatDel { rule }),
        },
    };
    use tunnat::control::client::{call, call_raw, format_stats, format_table};
    use tunnat::control::proto::{Done, Message, Rules, Sessions};
    let socket = &args.control;
    if args.json {
        println!("{}", call_raw(socket, &req)?);
        return Ok(());
    }
    match req {
        Request::Table => {
            let t: Sessions = call(socket, &req)?;
            print!("{}", format_table(&t.sessions));
        }
        Request::Stats => {
            let c: tunnat::router::Counters = call(socket, &req)?;
            print!("{}", format_stats(&serde_json::to_value(&c)?));
        }
        Request::DnatList => {
            let r: Rules = call(socket, &req)?;
            for rule in r.rules {
                println!("{rule}");
            }
        }
        Request::Reload => println!("{}", call::<Message>(socket, &req)?.message),
        Request::DnatAdd { .. } | Request::DnatDel { .. } => {
            call::<Done>(socket, &req)?;
            println!("ok");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(cmd) => client(cmd),
        None => {
            let (file, command_line) = cli.run.settings();
            let sources = Sources { file, command_line };
            sources.load().and_then(|config| {
                for w in config.warnings() {
                    log::warn!("{w}");
                }
                tunnat::router::run(config, sources)
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tunnat: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
