//! Offload metadata of a TUN opened with `IFF_VNET_HDR`: the `struct virtio_net_hdr` that
//! precedes every packet read or written (virtio 1.1, section 5.1.6 "Device Operation"; Linux
//! `include/uapi/linux/virtio_net.h`), in the host's byte order as TUN uses it.
//!
//! With offloads negotiated (`TUNSETOFFLOAD`), the kernel hands the router:
//! * packets whose transport checksum is *partial* (`NEEDS_CSUM`): the checksum field holds
//!   the folded, uncomplemented pseudo-header sum, and whoever finally emits the packet sums
//!   from `csum_start` to the end and stores the complement at `csum_start + csum_offset`;
//! * GSO super-packets (up to 64 KB) of TCP or UDP to be cut into `gso_size`-byte segments.
//!
//! NAT only rewrites headers, so both can be forwarded as they are, which is what makes an
//! MTU-1500 TUN router carry 64 KB per system call. [`adjust_partial`] is the RFC 1624
//! update for a partial checksum: only the addresses (pseudo-header) count, since the ports
//! lie inside the range still to be summed.

use std::net::Ipv4Addr;

use super::checksum;

/// Size of `struct virtio_net_hdr` (TUN's default `TUNSETVNETHDRSZ`).
pub const VNET_HDR_LEN: usize = 10;

const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4` (USO).
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN`, or-ed into the type when the segments carry CWR.
pub const GSO_ECN: u8 = 0x80;

/// A partial transport checksum (`CHECKSUM_PARTIAL`). Aligned so that, in an
/// [`Offload`], it and its `Option` tag make one word of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(4))]
pub struct Partial {
    pub start: u16,
    pub offset: u16,
}

/// Segmentation the receiver of a super-packet will do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gso {
    /// `GSO_TCPV4`, `GSO_TCPV6` or `GSO_UDP_L4`, possibly with `GSO_ECN`.
    pub kind: u8,
    /// Payload bytes per segment (the MSS for TCP).
    pub size: u16,
    /// Bytes of headers (IP + transport) in front of each segment's payload.
    pub hdr_len: u16,
}

/// What the kernel says about one packet, or what the router tells it. Two words, aligned
/// (issue 18): at 14 bytes it was copied by overlapping words, which stalled on the
/// narrow stores that had just built it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, align(8))]
pub struct Offload {
    pub csum: Option<Partial>,
    pub gso: Option<Gso>,
}

/// A header this router cannot handle (an unknown GSO type, or no checksum offset with
/// GSO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsupported;

impl Offload {
    pub const NONE: Offload = Offload {
        csum: None,
        gso: None,
    };

    /// Reads a `virtio_net_hdr`.
    pub fn parse(h: &[u8; VNET_HDR_LEN]) -> Result<Offload, Unsupported> {
        let u16_at = |i: usize| u16::from_ne_bytes([h[i], h[i + 1]]);
        let csum = (h[0] & F_NEEDS_CSUM != 0).then(|| Partial {
            start: u16_at(6),
            offset: u16_at(8),
        });
        let gso = match h[1] & !GSO_ECN {
            0 => None,
            GSO_TCPV4 | GSO_TCPV6 | GSO_UDP_L4 if csum.is_some() => Some(Gso {
                kind: h[1],
                size: u16_at(4),
                hdr_len: u16_at(2),
            }),
            _ => return Err(Unsupported),
        };
        Ok(Offload { csum, gso })
    }

    /// Writes it as a `virtio_net_hdr`.
    pub fn emit(&self) -> [u8; VNET_HDR_LEN] {
        let mut h = [0u8; VNET_HDR_LEN];
        if let Some(c) = self.csum {
            h[0] = F_NEEDS_CSUM;
            h[6..8].copy_from_slice(&c.start.to_ne_bytes());
            h[8..10].copy_from_slice(&c.offset.to_ne_bytes());
        }
        if let Some(g) = self.gso {
            h[1] = g.kind;
            h[2..4].copy_from_slice(&g.hdr_len.to_ne_bytes());
            h[4..6].copy_from_slice(&g.size.to_ne_bytes());
        }
        h
    }
}

/// Finishes a partial checksum in software, as a NIC would: sums `pkt` from `start` to the
/// end (the field holds the pseudo-header sum) and stores the complement. False if the
/// offsets do not fit the packet.
pub fn complete(pkt: &mut [u8], p: Partial) -> bool {
    let (start, at) = (
        usize::from(p.start),
        usize::from(p.start) + usize::from(p.offset),
    );
    if start > pkt.len() || at + 2 > pkt.len() {
        return false;
    }
    let c = !checksum::fold(checksum::sum(&pkt[start..], 0));
    pkt[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

/// The RFC 1624 update of a partial checksum (an uncomplemented pseudo-header sum) when an
/// address of the pseudo-header changes from `old` to `new`.
pub fn adjust_partial(partial: u16, old: Ipv4Addr, new: Ipv4Addr) -> u16 {
    !checksum::update_addr(!partial, old, new)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn header_round_trip() {
        let o = Offload {
            csum: Some(Partial {
                start: 20,
                offset: 16,
            }),
            gso: Some(Gso {
                kind: GSO_TCPV4 | GSO_ECN,
                size: 1448,
                hdr_len: 52,
            }),
        };
        assert_eq!(Offload::parse(&o.emit()), Ok(o));
        assert_eq!(Offload::parse(&[0; VNET_HDR_LEN]), Ok(Offload::NONE));
        let mut v6 = o.emit();
        v6[1] = GSO_TCPV6;
        assert_eq!(
            Offload::parse(&v6).map(|o| o.gso.map(|g| g.kind)),
            Ok(Some(GSO_TCPV6))
        );
        let mut unknown = o.emit();
        unknown[1] = 3; // GSO_UDP (UFO), which no kernel sends any more
        assert_eq!(Offload::parse(&unknown), Err(Unsupported));
    }

    #[test]
    fn partial_checksum_follows_an_address_change() {
        // A UDP datagram 10.0.0.1:1000 -> 10.0.0.2:53 with a partial checksum, as the
        // kernel hands it over; NAT changes the source to 172.16.1.186:2000.
        let (src, dst, new) = (
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(172, 16, 1, 186),
        );
        let mut udp = vec![0x03, 0xe8, 0, 53, 0, 12, 0, 0, b'd', b'a', b't', b'a'];
        let pseudo = checksum::fold(checksum::pseudo_header_sum(src, dst, 17, 12));
        udp[6..8].copy_from_slice(&pseudo.to_be_bytes());
        let p = Partial {
            start: 0,
            offset: 6,
        };
        // Rewrite: the port needs nothing (it is summed later), the address is adjusted.
        udp[0..2].copy_from_slice(&2000u16.to_be_bytes());
        let c = adjust_partial(u16::from_be_bytes([udp[6], udp[7]]), src, new);
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        assert!(complete(&mut udp, p));
        let verify = checksum::fold(checksum::sum(
            &udp,
            checksum::pseudo_header_sum(new, dst, 17, 12),
        ));
        assert_eq!(verify, 0xffff, "the completed checksum verifies");
        assert!(!complete(
            &mut udp,
            Partial {
                start: 4,
                offset: 7
            }
        ));
    }
}
