//! Prism, AVS and PPI headers: never panic, never claim more than given.
#![no_main]
use footfall_agent::wire::{ppi, prism};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for h in [prism::Header::new_checked_119(data), prism::Header::new_checked_avs(data)]
        .into_iter()
        .flatten()
    {
        assert!(h.len() <= data.len());
    }
    if let Ok(h) = ppi::Header::new_checked(data) {
        assert!(h.len() <= data.len());
        let _ = (h.dbm_signal(), h.common_flags());
    }
});
