//! See `tunnat::fuzz::gro`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tunnat::fuzz::gro(data);
});
