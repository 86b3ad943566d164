//! 802.11 management header: never panics on any bytes.
#![no_main]
use footfall_agent::wire::ieee80211::{kind, ProbeRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kind(data);
    if let Ok(p) = ProbeRequest::new_checked(data) {
        let m = p.transmitter();
        let _ = (m.is_group(), m.is_local());
    }
});
