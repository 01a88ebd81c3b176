//! A client's bytes to the policy server; see `tunnat::fuzz::policy_session`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tunnat::fuzz::policy_session(data));
