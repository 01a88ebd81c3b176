//! See `tunnat::fuzz::port_control`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tunnat::fuzz::port_control(data));
