//! Services the router itself offers on its own addresses, on top of smoltcp sockets.

pub mod policy;
