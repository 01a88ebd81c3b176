//! Packets through a NAT64 router from both ports; see `tunnat::fuzz::nat64`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tunnat::fuzz::nat64(data));
