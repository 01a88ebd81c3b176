//! Filtering (RFC 4787 section 5, REQ-8; RFC 5382 REQ-3): which remotes may send to an
//! inside endpoint through its mapping. The table ([`super::table`]) applies it.

/// Which remotes may send to a mapping (RFC 4787 section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filtering {
    /// Any remote.
    EndpointIndependent,
    /// Remotes at an address the inside endpoint has sent to (RFC 4787 default here).
    #[default]
    AddressDependent,
    /// Only the exact remote endpoints the inside endpoint has sent to.
    AddressAndPortDependent,
}

impl Filtering {
    /// The name used on the command line and in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Filtering::EndpointIndependent => "endpoint-independent",
            Filtering::AddressDependent => "address-dependent",
            Filtering::AddressAndPortDependent => "address-and-port-dependent",
        }
    }
}

impl std::str::FromStr for Filtering {
    type Err = String;
    fn from_str(s: &str) -> Result<Filtering, String> {
        match s {
            "endpoint-independent" | "eif" => Ok(Filtering::EndpointIndependent),
            "address-dependent" | "adf" => Ok(Filtering::AddressDependent),
            "address-and-port-dependent" | "apdf" => Ok(Filtering::AddressAndPortDependent),
            _ => Err(format!(
                "'{s}' is not endpoint-independent, address-dependent or address-and-port-dependent"
            )),
        }
    }
}
