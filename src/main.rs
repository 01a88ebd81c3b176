//! The `tunnat` command: parses options (and a config file) into a [`Config`] and runs the
//! router, or, with a subcommand, talks to a running router over its control socket.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use tunnat::cli::{Cli, Command, DnatAction, RunArgs};
use tunnat::control::{Request, DEFAULT_SOCKET};
use tunnat::options::{Settings, Sources};

/// Large blocks (a big session table) on transparent huge pages: [`tunnat::hugepages`].
#[global_allocator]
static ALLOC: tunnat::hugepages::HugePageAlloc = tunnat::hugepages::HugePageAlloc;

/// The control socket a subcommand talks to: its own `--control`, else one given before
/// the subcommand, else the `control` key of `--config FILE`, else the default. Router
/// options other than those two make no sense with a subcommand and are refused.
fn control_socket(own: Option<PathBuf>, run: &RunArgs) -> Result<PathBuf> {
    if let Some(field) = run.settings.origins.keys().find(|f| **f != "control") {
        let flag = tunnat::options::OPTIONS
            .iter()
            .find(|o| o.field == *field)
            .map_or(*field, |o| o.flag);
        anyhow::bail!(
            "--{flag} is an option of the router; before a subcommand only --control and --config may be given"
        );
    }
    if let Some(p) = own.or_else(|| run.settings.control.clone()) {
        return Ok(p);
    }
    if let Some(file) = &run.config {
        if let Some(p) = Settings::from_file(file)?.control {
            return Ok(p);
        }
    }
    Ok(PathBuf::from(DEFAULT_SOCKET))
}

/// `tunnat export`: of a running router (`--control`), or of the options given.
fn export(a: tunnat::cli::ExportArgs, run: RunArgs) -> Result<()> {
    let o = tunnat::export::Options {
        format: a.format.parse().map_err(anyhow::Error::msg)?,
        inside_if: a.inside_if,
        outside_if: a.outside_if,
        flowtable: a.flowtable,
    };
    if let Some(socket) = a.control {
        return print_message(&socket, &Request::Export(o));
    }
    print!("{}", tunnat::export::render(&load(run)?, &o));
    Ok(())
}

/// Asks a running router, and prints the message it answers.
fn print_message(socket: &std::path::Path, req: &Request) -> Result<()> {
    let m: tunnat::control::proto::Message = tunnat::control::client::call(socket, req)?;
    print!("{}", m.message);
    Ok(())
}

/// The configuration the router options given (and `--config`) make.
fn load(run: RunArgs) -> Result<tunnat::config::Config> {
    Sources {
        file: run.config,
        command_line: run.settings,
    }
    .load()
}

/// `tunnat explain`: a packet (or a capture's) through a running router (`--control`) or
/// through one made of the options given.
fn explain(a: tunnat::cli::ExplainArgs, run: RunArgs) -> Result<()> {
    use tunnat::nat::{Instant, Side};
    use tunnat::router::explain;
    let side = if a.side == "inside" {
        Side::Inside
    } else {
        Side::Outside
    };
    let packets: Vec<(Vec<u8>, u64)> = match &a.pcap {
        Some(path) => {
            let f = std::fs::File::open(path)
                .map_err(|e| anyhow::anyhow!("--pcap {}: {e}", path.display()))?;
            let mut r = pcap_file::pcap::PcapReader::new(f)
                .map_err(|e| anyhow::anyhow!("--pcap {}: {e}", path.display()))?;
            let link = r.header().datalink;
            if !matches!(
                link,
                pcap_file::DataLink::RAW | pcap_file::DataLink::IPV4 | pcap_file::DataLink::IPV6
            ) {
                anyhow::bail!(
                    "--pcap {}: link type {link:?}; raw IP captures only (tunnat --pcap-dir, tcpdump -i on a TUN)",
                    path.display()
                );
            }
            let mut v = Vec::new();
            while let Some(p) = r.next_packet() {
                let p = p.map_err(|e| anyhow::anyhow!("--pcap {}: {e}", path.display()))?;
                v.push((p.data.to_vec(), p.timestamp.as_millis() as u64));
            }
            v
        }
        None => {
            let (Some(proto), Some(src), Some(dst)) = (&a.proto, a.src, a.dst) else {
                anyhow::bail!("give PROTO SRC DST, or --pcap FILE");
            };
            vec![(
                explain::build(proto, src, dst, &a.flags).map_err(anyhow::Error::msg)?,
                0,
            )]
        }
    };
    if let Some(socket) = &a.control {
        let (p, _) = &packets[0];
        let req = Request::Explain {
            side: a.side.clone(),
            packet: explain::hex(p),
        };
        return print_message(socket, &req);
    }
    let config = load(run)?;
    let start = Instant::from_secs(30 * 86400);
    let mut router = tunnat::router::Router::new(config, start, 1);
    let t0 = packets.first().map_or(0, |p| p.1);
    for (n, (p, ms)) in packets.iter().enumerate() {
        let now = start + std::time::Duration::from_millis(ms.saturating_sub(t0));
        if packets.len() > 1 {
            println!(
                "== packet {} (+{:.3} s)",
                n + 1,
                ms.saturating_sub(t0) as f64 / 1000.0
            );
        }
        print!("{}", router.explain_here(side, p, now));
    }
    Ok(())
}

fn client(cmd: Command, run: &RunArgs) -> Result<()> {
    // As Unix tools do: when the reader of our output goes away (`tunnat table | head`),
    // end quietly on SIGPIPE instead of failing on the write. Only the client does this;
    // the router keeps SIGPIPE ignored and sees EPIPE on a control socket instead.
    // SAFETY: sets a signal disposition; the client has no other threads.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let (args, req) = match cmd {
        Command::Table(a) => (a, Request::Table),
        Command::Stats(a) => (a, Request::Stats),
        Command::Reload(a) => (a, Request::Reload),
        Command::Dnat { action } => match action {
            DnatAction::List(a) => (a, Request::DnatList),
            DnatAction::Add { rule, client } => (client, Request::DnatAdd { rule }),
            DnatAction::Del { rule, client } => (client, Request::DnatDel { rule }),
        },
        #[cfg(feature = "web")]
        Command::Web(_) => anyhow::bail!("not a client request"),
        Command::Export(_) | Command::Explain(_) => {
            anyhow::bail!("not a client request")
        }
    };
    use tunnat::control::client::{call, call_raw, format_stats, format_table};
    use tunnat::control::proto::{Done, Message, Rules, Sessions};
    let socket = &control_socket(args.control, run)?;
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
                if r.runtime.contains(&rule) {
                    println!("{rule}  (added at run time)");
                } else {
                    println!("{rule}");
                }
            }
            for m in r.mapped {
                let left = m
                    .remaining
                    .map_or("until deleted".to_string(), |s| format!("{s} s left"));
                println!(
                    "{}  ({} by {}, {left}{})",
                    m.rule,
                    m.source,
                    m.owner,
                    if m.description.is_empty() {
                        String::new()
                    } else {
                        format!(", \"{}\"", m.description.escape_default())
                    }
                );
            }
        }
        Request::Reload => println!("{}", call::<Message>(socket, &req)?.message),
        Request::DnatAdd { .. } | Request::DnatDel { .. } => {
            call::<Done>(socket, &req)?;
            println!("ok");
        }
        Request::Export(_) | Request::Explain { .. } | Request::Events { .. } => {}
    }
    Ok(())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Export(a)) => export(a, cli.run),
        Some(Command::Explain(a)) => explain(a, cli.run),
        #[cfg(feature = "web")]
        Some(Command::Web(a)) => control_socket(a.control, &cli.run).and_then(|control| {
            tunnat::web::serve(&tunnat::web::WebConfig {
                listen: a.listen,
                control,
                allow_changes: a.allow_changes,
            })
        }),
        Some(cmd) => client(cmd, &cli.run),
        None => {
            let sources = Sources {
                file: cli.run.config,
                command_line: cli.run.settings,
            };
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
