//! tunnat: a user-mode NAPT router between two Linux TUN devices.
//!
//! One packet's path through the crate:
//! [`port`] reads it from a TUN → [`wire`] validates it → [`nat`] decides and rewrites it
//! (pure, with the time passed in) → [`port`] writes it to the other TUN, or hands it to
//! the router's own smoltcp interface ([`port::bridge`]) where [`services`] answer.
//! [`router`] is the mio event loop joining them; [`config`] is what the CLI produces.

// No unwrap, expect or panic outside tests, in the data path above all: malformed input is
// counted and dropped, never a crash. `scripts/fuzz.sh` and the netns corpus test hold the
// code to it; src/fuzz.rs, whose assertions are the point, is the one exception.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod cli;
pub mod config;
pub mod control;
pub mod export;
#[cfg(any(test, feature = "fuzz"))]
pub mod fuzz;
pub mod hugepages;
pub mod nat;
pub mod options;
pub mod port;
pub mod portmap;
pub mod router;
pub mod services;
#[cfg(test)]
mod testalloc;
#[cfg(feature = "web")]
pub mod web;
pub mod wire;
