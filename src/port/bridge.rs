//! The smoltcp device bridge: packets for the router's own addresses are queued into a
//! [`QueueDevice`], which smoltcp's `Interface` polls like a NIC; what smoltcp transmits
//! is queued for the event loop to write to the same TUN. This lets one TUN carry both
//! forwarded traffic and the router's local stack (ping, RST, port unreachable, port 843).

use std::collections::VecDeque;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Most packets queued each way before the oldest is dropped.
pub const QUEUE_LIMIT: usize = 256;

#[derive(Debug, Default)]
pub struct QueueDevice {
    pub rx: VecDeque<Vec<u8>>,
    pub tx: VecDeque<Vec<u8>>,
    mtu: usize,
    /// Most packets queued each way.
    limit: usize,
    /// Packets dropped because a queue was full.
    pub overflows: u64,
}

impl QueueDevice {
    pub fn new(mtu: usize) -> QueueDevice {
        QueueDevice::with_limit(mtu, QUEUE_LIMIT)
    }

    /// A device whose queues hold up to `limit` packets each way.
    pub fn with_limit(mtu: usize, limit: usize) -> QueueDevice {
        QueueDevice {
            mtu,
            limit,
            ..Default::default()
        }
    }

    /// Queues a packet for the local stack.
    pub fn deliver(&mut self, pkt: &[u8]) {
        if self.rx.len() >= self.limit {
            self.rx.pop_front();
            self.overflows += 1;
        }
        self.rx.push_back(pkt.to_vec());
    }
}

pub struct RxToken(Vec<u8>);
pub struct TxToken<'a>(&'a mut QueueDevice);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        if self.0.tx.len() >= self.0.limit {
            self.0.tx.pop_front();
            self.0.overflows += 1;
        }
        self.0.tx.push_back(buf);
        r
    }
}

impl Device for QueueDevice {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _t: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let pkt = self.rx.pop_front()?;
        Some((RxToken(pkt), TxToken(self)))
    }

    fn transmit(&mut self, _t: Instant) -> Option<TxToken<'_>> {
        Some(TxToken(self))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        caps
    }
}
