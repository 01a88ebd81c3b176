//! Who may map which ports: ordered allow/deny rules in miniupnpd's form
//! (`allow 1024-65535 192.168.122.0/24 1024-65535`: external ports, the inside host's
//! network, inside ports). The first rule that matches decides; a request no rule matches
//! is refused. Without rules, the inside network may map ports 1024-65535 to its ports
//! 1024-65535, and nothing else (ports below 1024 are refused, as in miniupnpd's sample).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::nat::Ipv4Cidr;

/// One rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub external: (u16, u16),
    pub hosts: Ipv4Cidr,
    pub internal: (u16, u16),
}

impl Rule {
    fn matches(&self, external: u16, host: Ipv4Addr, internal: u16) -> bool {
        (self.external.0..=self.external.1).contains(&external)
            && self.hosts.contains(host)
            && (self.internal.0..=self.internal.1).contains(&internal)
    }
}

fn ports(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let p = |x: &str| {
        x.parse::<u16>()
            .map_err(|_| format!("'{x}' is not a port number (0-65535)"))
    };
    let (a, b) = (p(a)?, p(b)?);
    if b < a {
        return Err(format!("port range {a}-{b} is empty"));
    }
    Ok((a, b))
}

impl FromStr for Rule {
    type Err = String;
    fn from_str(s: &str) -> Result<Rule, String> {
        let usage = "expected 'allow|deny EXT-PORTS ADDR/PREFIX INT-PORTS', e.g. 'allow 1024-65535 192.168.122.0/24 1024-65535'";
        let w: Vec<&str> = s.split_whitespace().collect();
        let [verb, ext, net, int] = w[..] else {
            return Err(format!("'{s}': {usage}"));
        };
        let allow = match verb {
            "allow" => true,
            "deny" => false,
            v => return Err(format!("'{s}': '{v}' is not allow or deny")),
        };
        let hosts = if net.contains('/') {
            net.parse::<Ipv4Cidr>()
        } else {
            net.parse::<Ipv4Addr>()
                .map(|addr| Ipv4Cidr { addr, prefix: 32 })
                .map_err(|e| e.to_string())
        }
        .map_err(|e| format!("'{s}': {net}: {e}"))?;
        Ok(Rule {
            allow,
            external: ports(ext).map_err(|e| format!("'{s}': {e}"))?,
            hosts,
            internal: ports(int).map_err(|e| format!("'{s}': {e}"))?,
        })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = |(a, b): (u16, u16)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        };
        write!(
            f,
            "{} {} {}/{} {}",
            if self.allow { "allow" } else { "deny" },
            r(self.external),
            self.hosts.network(),
            self.hosts.prefix,
            r(self.internal)
        )
    }
}

/// The ordered rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

impl Policy {
    /// `rules`, or without any, the default for the inside network `inside`.
    pub fn new(rules: Vec<Rule>, inside: Ipv4Cidr) -> Policy {
        if !rules.is_empty() {
            return Policy { rules };
        }
        Policy {
            rules: vec![
                Rule {
                    allow: true,
                    external: (1024, 65535),
                    hosts: Ipv4Cidr {
                        addr: inside.network(),
                        prefix: inside.prefix,
                    },
                    internal: (1024, 65535),
                },
                Rule {
                    allow: false,
                    external: (0, 65535),
                    hosts: Ipv4Cidr {
                        addr: Ipv4Addr::UNSPECIFIED,
                        prefix: 0,
                    },
                    internal: (0, 65535),
                },
            ],
        }
    }

    /// May `host` map external port `external` to its port `internal`?
    pub fn allows(&self, external: u16, host: Ipv4Addr, internal: u16) -> bool {
        (self.rules.iter())
            .find(|r| r.matches(external, host, internal))
            .is_some_and(|r| r.allow)
    }

    /// The external port ranges `host` may map `internal` to, in rule order (for the
    /// search for a free port).
    pub fn allowed_ranges(&self, host: Ipv4Addr, internal: u16) -> Vec<(u16, u16)> {
        (self.rules.iter())
            .filter(|r| r.allow && r.hosts.contains(host))
            .filter(|r| (r.internal.0..=r.internal.1).contains(&internal))
            .map(|r| (r.external.0.max(1), r.external.1))
            .collect()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn lab() -> Ipv4Cidr {
        "192.168.122.100/24".parse().unwrap()
    }

    #[test]
    fn default_allows_high_ports_of_the_inside_network_only() {
        let p = Policy::new(vec![], lab());
        let h = Ipv4Addr::new(192, 168, 122, 73);
        assert!(p.allows(5000, h, 5000));
        assert!(!p.allows(80, h, 8080));
        assert!(!p.allows(8080, h, 80));
        assert!(!p.allows(5000, Ipv4Addr::new(10, 0, 0, 1), 5000));
    }

    #[test]
    fn first_match_decides() {
        let rules = vec![
            "deny 6000-6010 192.168.122.73 0-65535".parse().unwrap(),
            "allow 1024-65535 192.168.122.0/24 1024-65535"
                .parse()
                .unwrap(),
        ];
        let p = Policy::new(rules, lab());
        let h = Ipv4Addr::new(192, 168, 122, 73);
        assert!(!p.allows(6005, h, 6005));
        assert!(p.allows(6005, Ipv4Addr::new(192, 168, 122, 74), 6005));
        assert!(p.allows(7000, h, 7000));
        // No rule matches: refused.
        assert!(!p.allows(80, h, 80));
    }

    #[test]
    fn parse_and_show() {
        let r: Rule = "allow 1024-65535 192.168.122.0/24 1024-65535"
            .parse()
            .unwrap();
        assert_eq!(
            r.to_string(),
            "allow 1024-65535 192.168.122.0/24 1024-65535"
        );
        for bad in [
            "",
            "permit 1-2 10.0.0.0/8 1-2",
            "allow 2-1 10.0.0.0/8 1-2",
            "allow 1-2 10.0.0.0/33 1-2",
            "allow 1-70000 10.0.0.0/8 1-2",
            "allow 1-2 10.0.0.0/8",
        ] {
            assert!(bad.parse::<Rule>().is_err(), "{bad}");
        }
    }
}
