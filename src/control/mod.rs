//! The control socket: `tunnat table`, `stats`, `dnat` and `reload` talk to a running
//! router over a Unix stream socket.
//!
//! * [`proto`]: the typed, versioned request and answer types (JSON lines);
//! * [`server`]: the router's non-blocking listener (driven by the driver's event loop);
//! * [`client`]: the subcommands' side, and the human-readable formatting.

pub mod client;
pub mod proto;
pub mod server;

pub use client::DEFAULT_SOCKET;
pub use proto::{Request, Response, Row};
