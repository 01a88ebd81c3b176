//! A rate limit on the ICMP errors the router sends itself (RFC 1812 section 4.3.2.8: a
//! router should limit the rate of ICMP error messages it originates), as a token bucket
//! like Linux's `icmp_msgs_per_sec` and `icmp_msgs_burst` (defaults 1000 and 50). It
//! covers time exceeded, fragmentation needed, port unreachable from the local stacks,
//! administratively prohibited and the answers to held SYNs; echo replies are not
//! errors and are not limited. What it holds back is counted.

use super::time::Instant;

/// Linux's `net.ipv4.icmp_msgs_per_sec`.
pub const DEFAULT_RATE: u32 = 1000;
/// Linux's `net.ipv4.icmp_msgs_burst`.
pub const DEFAULT_BURST: u32 = 50;

/// How many ICMP errors may leave: `rate` a second on average, `burst` at once. A rate of
/// 0 turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpLimit {
    pub rate: u32,
    pub burst: u32,
}

impl Default for IcmpLimit {
    fn default() -> IcmpLimit {
        IcmpLimit {
            rate: DEFAULT_RATE,
            burst: DEFAULT_BURST,
        }
    }
}

/// The bucket: tokens in thousandths, refilled by the clock passed in.
#[derive(Debug)]
pub struct TokenBucket {
    limit: IcmpLimit,
    milli: u64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: IcmpLimit) -> TokenBucket {
        TokenBucket {
            limit,
            milli: u64::from(limit.burst) * 1000,
            last: Instant::ZERO,
        }
    }

    pub fn set_limit(&mut self, limit: IcmpLimit) {
        self.limit = limit;
        self.milli = self.milli.min(u64::from(limit.burst) * 1000);
    }

    /// Takes a token at `now`; false if none is left (the message is not sent).
    pub fn take(&mut self, now: Instant) -> bool {
        if self.limit.rate == 0 {
            return true;
        }
        if now > self.last {
            let ms = now.since(self.last).as_millis() as u64;
            self.milli = self
                .milli
                .saturating_add(ms.saturating_mul(u64::from(self.limit.rate)))
                .min(u64::from(self.limit.burst) * 1000);
            self.last = now;
        }
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let mut b = TokenBucket::new(IcmpLimit::default());
        let t0 = Instant::from_secs(10);
        assert_eq!((0..100).filter(|_| b.take(t0)).count(), 50, "the burst");
        // 1000 a second is one a millisecond.
        let t1 = Instant::from_millis(10_010);
        assert_eq!((0..100).filter(|_| b.take(t1)).count(), 10);
        // Over a long quiet time the bucket fills to the burst, no more.
        let t2 = Instant::from_secs(100);
        assert_eq!((0..100).filter(|_| b.take(t2)).count(), 50);
    }

    #[test]
    fn rate_zero_is_no_limit() {
        let mut b = TokenBucket::new(IcmpLimit { rate: 0, burst: 1 });
        assert!((0..10_000).all(|_| b.take(Instant::ZERO)));
    }
}
