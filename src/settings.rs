//! Settings as written by the user, in a TOML file (`--config`) or on the command line,
//! before defaults and validation. Both sources produce a [`Settings`] with every field
//! optional; [`Settings::overlay`] lets the command line override the file, and
//! [`Settings::resolve`] fills in defaults and produces a [`Config`], naming any missing or
//! malformed value.
//!
//! A reload (SIGHUP or `tunnat reload`) reads the file again, overlays the same command
//! line, resolves and validates; [`reloadable`] refuses changes that need a restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

use crate::config::{Config, PortConfig};
use crate::nat::{DnatRule, Filtering, Ipv4Cidr, Limits, Timeouts};
use crate::port::netns;
use crate::services::policy::DEFAULT_POLICY;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PortSettings {
    pub tun: Option<String>,
    pub netns: Option<String>,
    pub addr: Option<String>,
    pub mtu: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TimeoutSettings {
    pub udp: Option<u64>,
    pub tcp_established: Option<u64>,
    pub tcp_transitory: Option<u64>,
    pub icmp: Option<u64>,
}

/// Everything the command line and the config file can say.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    #[serde(default)]
    pub inside: PortSettings,
    #[serde(default)]
    pub outside: PortSettings,
    pub dnat: Option<Vec<String>>,
    pub policy_port: Option<u16>,
    pub policy_file: Option<PathBuf>,
    pub policy_idle_timeout: Option<f64>,
    pub mtu: Option<usize>,
    pub clamp_mss: Option<String>,
    #[serde(default)]
    pub timeouts: TimeoutSettings,
    pub filtering: Option<String>,
    pub max_sessions: Option<usize>,
    pub max_mappings: Option<usize>,
    pub max_mappings_per_host: Option<usize>,
    pub port_hold: Option<u64>,
    pub port_parity: Option<bool>,
    pub offload: Option<bool>,
    pub trace: Option<bool>,
    pub trace_filter: Option<Vec<String>>,
    pub pcap_dir: Option<PathBuf>,
    pub control: Option<PathBuf>,
}

macro_rules! overlay {
    ($base:expr, $top:expr, $($field:ident).+) => {
        if $top.$($field).+.is_some() {
            $base.$($field).+ = $top.$($field).+.clone();
        }
    };
}

impl Settings {
    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> Result<Settings> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("config file {}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow!("config file {}: {e}", path.display()))
    }

    /// `self` with every value that `top` sets replaced by `top`'s.
    pub fn overlay(mut self, top: &Settings) -> Settings {
        overlay!(self, top, inside.tun);
        overlay!(self, top, inside.netns);
        overlay!(self, top, inside.addr);
        overlay!(self, top, outside.tun);
        overlay!(self, top, outside.netns);
        overlay!(self, top, outside.addr);
        overlay!(self, top, inside.mtu);
        overlay!(self, top, outside.mtu);
        overlay!(self, top, clamp_mss);
        overlay!(self, top, dnat);
        overlay!(self, top, policy_port);
        overlay!(self, top, policy_file);
        overlay!(self, top, policy_idle_timeout);
        overlay!(self, top, mtu);
        overlay!(self, top, timeouts.udp);
        overlay!(self, top, timeouts.tcp_established);
        overlay!(self, top, timeouts.tcp_transitory);
        overlay!(self, top, timeouts.icmp);
        overlay!(self, top, filtering);
        overlay!(self, top, max_sessions);
        overlay!(self, top, max_mappings);
        overlay!(self, top, max_mappings_per_host);
        overlay!(self, top, port_hold);
        overlay!(self, top, port_parity);
        overlay!(self, top, offload);
        overlay!(self, top, trace);
        overlay!(self, top, trace_filter);
        overlay!(self, top, pcap_dir);
        overlay!(self, top, control);
        self
    }

    /// Applies defaults and parses every value into a [`Config`] (not yet validated).
    pub fn resolve(&self) -> Result<Config> {
        let port = |p: &PortSettings, side: &str| -> Result<PortConfig> {
            let tun = p.tun.clone().ok_or_else(|| {
                anyhow!("--{side}-tun is required (or 'tun' under [{side}] in the config file)")
            })?;
            let addr = p.addr.as_deref().ok_or_else(|| {
                anyhow!("--{side}-addr is required (or 'addr' under [{side}] in the config file)")
            })?;
            let cidr: Ipv4Cidr = addr.parse().map_err(|e| anyhow!("--{side}-addr: {e}"))?;
            Ok(PortConfig {
                tun,
                netns: p.netns.as_deref().map(netns::resolve),
                cidr,
            })
        };
        let dnat = self
            .dnat
            .iter()
            .flatten()
            .map(|r| r.parse::<DnatRule>().map_err(|e| anyhow!("--dnat {e}")))
            .collect::<Result<Vec<_>>>()?;
        let policy = match &self.policy_file {
            Some(p) => {
                std::fs::read(p).with_context(|| format!("--policy-file {}", p.display()))?
            }
            None => DEFAULT_POLICY.as_bytes().to_vec(),
        };
        let idle = self.policy_idle_timeout.unwrap_or(3.0);
        if !(idle > 0.0 && idle <= 3600.0) {
            bail!("--policy-idle-timeout {idle}: must be above 0 and at most 3600");
        }
        let d = Timeouts::default();
        let secs = |v: Option<u64>, def: Duration| v.map(Duration::from_secs).unwrap_or(def);
        let filtering: Filtering = match &self.filtering {
            Some(f) => f.parse().map_err(|e| anyhow!("--filtering {e}"))?,
            None => Filtering::default(),
        };
        let trace_filters = self
            .trace_filter
            .iter()
            .flatten()
            .map(|f| f.parse().map_err(|e| anyhow!("--trace-filter {e}")))
            .collect::<Result<Vec<_>>>()?;
        Ok(Config {
            inside: port(&self.inside, "inside")?,
            outside: port(&self.outside, "outside")?,
            dnat,
            policy_port: self.policy_port.unwrap_or(843),
            policy,
            policy_idle: Duration::from_secs_f64(idle),
            mtu: self.mtu.unwrap_or(1500),
            inside_mtu: self.inside.mtu,
            outside_mtu: self.outside.mtu,
            clamp_mss: match &self.clamp_mss {
                Some(c) => Some(c.parse().map_err(|e| anyhow!("--clamp-mss {e}"))?),
                None => None,
            },
            timeouts: Timeouts {
                udp: secs(self.timeouts.udp, d.udp),
                tcp_established: secs(self.timeouts.tcp_established, d.tcp_established),
                tcp_transitory: secs(self.timeouts.tcp_transitory, d.tcp_transitory),
                icmp: secs(self.timeouts.icmp, d.icmp),
            },
            filtering,
            limits: {
                let d = Limits::default();
                Limits {
                    max_sessions: self.max_sessions.unwrap_or(d.max_sessions),
                    max_mappings: self.max_mappings.unwrap_or(d.max_mappings),
                    max_mappings_per_host: self
                        .max_mappings_per_host
                        .unwrap_or(d.max_mappings_per_host),
                }
            },
            port_hold: Duration::from_secs(self.port_hold.unwrap_or(120)),
            port_parity: self.port_parity.unwrap_or(false),
            offload: self.offload.unwrap_or(true),
            trace: self.trace.unwrap_or(false) || !trace_filters.is_empty(),
            trace_filters,
            pcap_dir: self.pcap_dir.clone(),
            control: self.control.clone(),
        })
    }
}

/// Where the configuration came from, kept for reloads.
#[derive(Debug, Clone)]
pub struct Sources {
    pub file: Option<PathBuf>,
    pub command_line: Settings,
}

impl Sources {
    /// Reads the file (if any), overlays the command line, resolves and validates.
    pub fn load(&self) -> Result<Config> {
        let base = match &self.file {
            Some(f) => Settings::from_file(f)?,
            None => Settings::default(),
        };
        let cfg = base.overlay(&self.command_line).resolve()?;
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Refuses a reload that changes what only a restart can change.
pub fn reloadable(old: &Config, new: &Config) -> Result<()> {
    let same_port =
        |a: &PortConfig, b: &PortConfig| a.tun == b.tun && a.netns == b.netns && a.cidr == b.cidr;
    if !same_port(&old.inside, &new.inside) || !same_port(&old.outside, &new.outside) {
        bail!("the ports (tun, netns, addr) changed: that needs a restart");
    }
    if old.policy_port != new.policy_port
        || old.port_mtus() != new.port_mtus()
        || old.offload != new.offload
    {
        bail!("policy-port, mtu or offload changed: that needs a restart");
    }
    if old.trace != new.trace
        || old.trace_filters != new.trace_filters
        || old.pcap_dir != new.pcap_dir
        || old.control != new.control
    {
        bail!("trace, trace-filter, pcap-dir or control changed: that needs a restart");
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;

    const FILE: &str = r#"
dnat = ["tcp:8888=192.168.122.73:9999"]
filtering = "endpoint-independent"

[inside]
tun = "nat-in"
netns = "lan"
addr = "192.168.122.100/24"

[outside]
tun = "nat-out"
addr = "172.16.1.186/24"

[timeouts]
udp = 30
"#;

    #[test]
    fn file_then_flags() {
        let file: Settings = toml::from_str(FILE).unwrap();
        let flags = Settings {
            filtering: Some("address-and-port-dependent".into()),
            ..Default::default()
        };
        let c = file.overlay(&flags).resolve().unwrap();
        assert_eq!(c.inside.netns.as_deref(), Some(Path::new("/run/netns/lan")));
        assert_eq!(c.dnat.len(), 1);
        assert_eq!(c.filtering, Filtering::AddressAndPortDependent);
        assert_eq!(c.timeouts.udp, Duration::from_secs(30));
        assert_eq!(c.timeouts.icmp, Duration::from_secs(60), "default kept");
    }

    #[test]
    fn unknown_keys_and_missing_values_are_named() {
        let e = toml::from_str::<Settings>("mtuu = 3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mtuu"), "{e}");
        let e = Settings::default().resolve().unwrap_err().to_string();
        assert!(e.contains("--inside-tun is required"), "{e}");
    }

    #[test]
    fn reload_refuses_port_changes() {
        let a: Settings = toml::from_str(FILE).unwrap();
        let old = a.resolve().unwrap();
        let mut b = a.clone();
        b.timeouts.udp = Some(60);
        reloadable(&old, &b.resolve().unwrap()).unwrap();
        b.outside.addr = Some("172.16.1.187/24".into());
        assert!(reloadable(&old, &b.resolve().unwrap())
            .unwrap_err()
            .to_string()
            .contains("restart"));
    }
}
