//! Internet checksum: full computation (RFC 1071) and incremental update (RFC 1624).
//!
//! NAT rewrites a handful of 16-bit words (an address, a port, the TTL) in packets that
//! already carry a valid checksum. RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`, updates the
//! checksum from the old and new values of those words alone, so translation never
//! re-reads the payload. All helpers work on host-order `u16` words taken big-endian from
//! the wire.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Folds a 32-bit one's complement accumulator into 16 bits.
#[inline]
pub fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// One's complement sum of `data` as big-endian 16-bit words (odd tail padded with zero),
/// added to `initial`. Not complemented; folded into 16 bits (zero only for zeros).
///
/// Eight bytes at a time (RFC 1071 section 2, "parallel summation"): four words read
/// as one big-endian `u64` add as its two 32-bit halves, since a carry out of bit 15 is
/// worth one in bit 0 once folded. A datagram checked before it joins a super-packet is
/// summed whole, so this is on the path of every UDP datagram joined.
pub fn sum(data: &[u8], initial: u32) -> u32 {
    let mut acc = u64::from(initial);
    let mut quads = data.chunks_exact(8);
    for q in &mut quads {
        let mut b = [0u8; 8];
        b.copy_from_slice(q);
        let w = u64::from_be_bytes(b);
        // Each addend is below 2^33: no overflow before 2^31 of them (16 GiB).
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    let mut pairs = quads.remainder().chunks_exact(2);
    for c in &mut pairs {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u32
}

/// The Internet checksum (RFC 1071) of `data`, ready to store.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

/// One's complement sum of the IPv4 pseudo-header used by TCP and UDP (RFC 793, RFC 768).
pub fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u32 {
    let mut acc = sum(&src.octets(), 0);
    acc = sum(&dst.octets(), acc);
    acc + protocol as u32 + length as u32
}

/// The sum of the IPv6 pseudo-header (RFC 8200 section 8.1): both addresses, the
/// upper-layer length as 32 bits, and the next-header value.
pub fn pseudo_header_sum_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, length: u32) -> u32 {
    let mut s = sum(&src.octets(), 0);
    s = sum(&dst.octets(), s);
    s += length >> 16;
    s += length & 0xffff;
    s + u32::from(next_header)
}

/// Updates checksum `hc` for an IPv6 address changed from `old` to `new` (in a
/// pseudo-header: TCP, UDP and ICMPv6 checksums cover the addresses).
pub fn update_addr_v6(hc: u16, old: Ipv6Addr, new: Ipv6Addr) -> u16 {
    let (o, n) = (old.segments(), new.segments());
    o.iter()
        .zip(n.iter())
        .fold(hc, |c, (a, b)| update16(c, *a, *b))
}

/// RFC 1624 eqn. 3: the checksum `hc` after one 16-bit word changed from `old` to `new`.
#[inline]
pub fn update16(hc: u16, old: u16, new: u16) -> u16 {
    let sum = (!hc as u32) + (!old as u32) + (new as u32);
    !fold(sum)
}

/// The checksum `hc` after a 32-bit value (an IPv4 address) changed from `old` to `new`.
#[inline]
pub fn update32(hc: u16, old: u32, new: u32) -> u16 {
    let hc = update16(hc, (old >> 16) as u16, (new >> 16) as u16);
    update16(hc, old as u16, new as u16)
}

/// The checksum `hc` after an IPv4 address changed from `old` to `new`.
#[inline]
pub fn update_addr(hc: u16, old: Ipv4Addr, new: Ipv4Addr) -> u16 {
    update32(hc, u32::from(old), u32::from(new))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn ipv6_pseudo_header_and_an_address_rewritten() {
        let src: Ipv6Addr = "fd00:122::101".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
        let new: Ipv6Addr = "2001:db8:1::186".parse().unwrap();
        // A UDP header (ports 5353 -> 53, length 12, checksum 0) and 4 bytes of data.
        let mut udp = vec![
            0x14, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0, 0, b'd', b'a', b't', b'a',
        ];
        let full = |s: Ipv6Addr, udp: &[u8]| !fold(sum(udp, pseudo_header_sum_v6(s, dst, 17, 12)));
        let c = full(src, &udp);
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(
            fold(sum(&udp, pseudo_header_sum_v6(src, dst, 17, 12))),
            0xffff,
            "verifies"
        );
        // RFC 1624 over the 8 words of an address gives what a full recount gives.
        udp[6..8].copy_from_slice(&[0, 0]);
        assert_eq!(update_addr_v6(c, src, new), full(new, &udp));
    }

    // RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to ddf2.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data, 0)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    /// The sum word by word, as RFC 1071 defines it, for comparison.
    fn sum_by_words(data: &[u8], initial: u32) -> u16 {
        let mut acc = u64::from(initial);
        for c in data.chunks(2) {
            acc += u64::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]));
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn eight_at_a_time_is_the_sum_by_words() {
        // Every length up to 70 (each remainder of 8 and of 2), data whose words carry
        // (0xff..), and initial values up to the largest.
        let mut x = 0x1234_5678_u32;
        let data: Vec<u8> = (0..70)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if i % 3 == 0 {
                    0xff
                } else {
                    (x >> 16) as u8
                }
            })
            .collect();
        for len in 0..=data.len() {
            for initial in [0, 1, 0xffff, 0x1_fffe, 0xffff_ffff] {
                let got = sum(&data[..len], initial);
                assert!(got <= 0xffff, "folded");
                assert_eq!(
                    fold(got),
                    sum_by_words(&data[..len], initial),
                    "len {len}, initial {initial:#x}"
                );
            }
        }
        assert_eq!(sum(&[0xff; 64], 0), 0xffff);
        assert_eq!(sum(&[0; 64], 0), 0, "zero only for zeros");
    }

    #[test]
    fn odd_length_is_zero_padded() {
        assert_eq!(checksum(&[0xab]), checksum(&[0xab, 0x00]));
    }

    // A real IPv4 header (20 bytes) whose checksum field is 0xb861.
    const HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, // version/IHL, TOS, total length 115
        0x00, 0x00, 0x40, 0x00, // ID 0, DF
        0x40, 0x11, 0xb8, 0x61, // TTL 64, UDP, checksum
        0xc0, 0xa8, 0x00, 0x01, // 192.168.0.1
        0xc0, 0xa8, 0x00, 0xc7, // 192.168.0.199
    ];

    #[test]
    fn valid_header_sums_to_zero() {
        assert_eq!(checksum(&HEADER), 0);
    }

    #[test]
    fn incremental_equals_full_recompute() {
        let mut h = HEADER;
        let hc = u16::from_be_bytes([h[10], h[11]]);
        // Rewrite the source address and decrement the TTL, as NAT does.
        let old_src = Ipv4Addr::new(192, 168, 0, 1);
        let new_src = Ipv4Addr::new(172, 16, 1, 186);
        h[12..16].copy_from_slice(&new_src.octets());
        let hc = update_addr(hc, old_src, new_src);
        let old_word = u16::from_be_bytes([h[8], h[9]]);
        h[8] -= 1;
        let hc = update16(hc, old_word, u16::from_be_bytes([h[8], h[9]]));
        h[10..12].copy_from_slice(&hc.to_be_bytes());
        assert_eq!(checksum(&h), 0);
        h[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(checksum(&h), hc);
    }

    // RFC 1624 section 4: the update never produces 0x0000 from a non-zero sum where the
    // full recompute gives 0xffff, and vice versa it agrees with the recomputation.
    #[test]
    fn rfc1624_minus_zero_case() {
        // Header whose words sum to 0xfffe except the one we change.
        let old = 0x5555u16;
        let new = 0x3285u16;
        let other = 0xffffu16.wrapping_sub(old).wrapping_sub(1);
        let before = [other.to_be_bytes(), old.to_be_bytes()].concat();
        let after = [other.to_be_bytes(), new.to_be_bytes()].concat();
        assert_eq!(update16(checksum(&before), old, new), checksum(&after));
    }

    #[test]
    fn exhaustive_small_updates_match() {
        let base = [0x12u8, 0x34, 0xab, 0xcd, 0x00, 0x00, 0xff, 0xff];
        for new in (0u16..=0xffff).step_by(251) {
            let mut after = base;
            after[2..4].copy_from_slice(&new.to_be_bytes());
            assert_eq!(
                update16(checksum(&base), 0xabcd, new),
                checksum(&after),
                "new word {new:#06x}"
            );
        }
    }
}
