//! See `tunnat::fuzz::ftp`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tunnat::fuzz::ftp(data));
