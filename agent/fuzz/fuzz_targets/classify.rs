//! The whole of SPEC §1 on one frame, for every link type.
#![no_main]
use footfall_agent::detect::classify;
use footfall_agent::wire::linktype::LinkType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&lt, frame)) = data.split_first() else { return };
    let link = [LinkType::Radiotap, LinkType::Ieee80211, LinkType::Prism, LinkType::Avs, LinkType::Ppi]
        [usize::from(lt) % 5];
    let _ = classify(link, frame, -90);
});
