//! The router: a sans-I/O core ([`Router`]: the NAT core, the router's own stacks and
//! services, control requests, counters) and the driver that feeds it from the TUN
//! devices ([`driver`]: the only code that does I/O or reads the clock).

pub mod core;
pub mod counters;
pub mod driver;
pub mod events;
pub mod explain;
pub mod local;
pub mod portctl;
pub mod state;
mod statefile;

pub use self::core::{InPlace, Router, SIDES};
pub use counters::Counters;
pub use driver::run;

#[cfg(test)]
mod test;
