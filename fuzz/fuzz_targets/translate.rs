//! Packets through the NAT core from both ports; see `tunnat::fuzz::translate`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tunnat::fuzz::translate(data));
