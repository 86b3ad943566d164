//! Radiotap: `new_checked` never panics, and after `Ok` no accessor does.
#![no_main]
use footfall_agent::wire::radiotap::Header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Header::new_checked(data) {
        assert!(h.len() <= data.len());
        let _ = (h.flags(), h.dbm_signal());
    }
});
