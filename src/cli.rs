//! The command line's shape (clap): the router's options ([`crate::options`]) and the
//! subcommands that talk to a running router. `main.rs` parses it and wires things
//! together; the man page and the shell completions in `contrib/` are generated from it
//! (a test keeps them current).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::options::Settings;

/// A user-mode NAPT router between two TUN devices: masquerade, port forwarding, and a
/// Flash socket policy server on the router's own addresses.
#[derive(Parser, Debug)]
#[command(name = "tunnat", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Options of the router. Each can also be given in the config file; flags win. The
/// options themselves are defined once, in `tunnat::options`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// TOML file with any of these options (see README); re-read on SIGHUP or `tunnat reload`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Subcommand, Debug)]
pub enum Command {
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
    /// Print the router as the kernel's equivalent ruleset (nft or iptables), with a comment
    /// for each thing the kernel cannot express. Of the router options given before the
    /// subcommand (or `--config FILE`), or of a running router with `--control`.
    Export(ExportArgs),
    /// Say, step by step, what the router does with a packet: the rule or mapping, the
    /// port chosen and why, filtering, the rewritten fields, the timeout, where netfilter
    /// differs. Of a running router with `--control` (changing nothing), else of the
    /// router options given before the subcommand. E.g. `tunnat explain inside tcp
    /// 192.168.122.101:5000 172.16.1.1:80 syn`.
    Explain(ExplainArgs),
    /// Serve the live web view of a router: sessions, counters, port forwards, and a
    /// ladder diagram of a session's packets (start the router with `--event-ring N` for
    /// those). A separate process on the control socket; read-only unless
    /// `--allow-changes`.
    #[cfg(feature = "web")]
    Web(WebArgs),
}

#[cfg(feature = "web")]
#[derive(Args, Debug)]
pub struct WebArgs {
    /// Address and port to serve on
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// The router's control socket (default as for the other subcommands)
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Let the page add and remove port forwards
    #[arg(long)]
    pub allow_changes: bool,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The port the packet comes in by: inside or outside
    #[arg(value_parser = ["inside", "outside"])]
    pub side: String,
    /// tcp, udp or icmp (an echo request whose identifier is the source port)
    #[arg(required_unless_present = "pcap")]
    pub proto: Option<String>,
    /// Source ADDR:PORT ([ADDR]:PORT for IPv6)
    #[arg(required_unless_present = "pcap")]
    pub src: Option<std::net::SocketAddr>,
    /// Destination ADDR:PORT
    #[arg(required_unless_present = "pcap")]
    pub dst: Option<std::net::SocketAddr>,
    /// TCP flags, comma-separated: syn (the default), ack, fin, rst, psh, synack
    #[arg(default_value = "")]
    pub flags: String,
    /// Explain each packet of this capture (pcap, raw IP as tunnat's --pcap-dir and
    /// tcpdump on a TUN write it) in turn, as read from SIDE, offline
    #[arg(long, value_name = "FILE", conflicts_with = "control")]
    pub pcap: Option<PathBuf>,
    /// Ask the running router with this control socket
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// nft (a script for `nft -f`) or iptables (a shell script of iptables commands)
    #[arg(value_parser = ["nft", "iptables"])]
    pub format: String,
    /// The kernel's interface on the inside (default: the inside TUN's name)
    #[arg(long, value_name = "NAME")]
    pub inside_if: Option<String>,
    /// The kernel's interface on the outside (default: the outside TUN's name)
    #[arg(long, value_name = "NAME")]
    pub outside_if: Option<String>,
    /// Add a flowtable: the kernel's fast path for established flows (nft only)
    #[arg(long)]
    pub flowtable: bool,
    /// Export the running router (its port forwards added at run time too) through this
    /// control socket
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum DnatAction {
    /// List the rules (those added at run time are marked).
    List(ClientArgs),
    /// Add a rule; it is kept across reloads, and in the state file.
    Add {
        /// PROTO:PORT[-PORT]=IP[:PORT]
        rule: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a rule; its open sessions run on until they expire.
    Del {
        /// The rule as listed
        rule: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args, Debug)]
pub struct ClientArgs {
    /// The router's control socket; may also come before the subcommand, or from the
    /// `control` key of `--config FILE`. Default: /run/tunnat.sock.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Print the JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
}
