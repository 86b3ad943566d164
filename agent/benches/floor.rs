//! The raw read floor: read a classic pcap file and walk its records
//! without looking inside them. Nothing that parses frames can beat this;
//! `scripts/bench` compares `replay` with it.
//!
//!     cargo bench -p footfall-agent --bench floor -- FILE

use std::fs::File;
use std::io::Read;
use std::time::Instant;

fn main() {
    let Some(path) = std::env::args().skip(1).find(|a| a != "--bench") else {
        eprintln!("usage: floor FILE (a classic pcap file)");
        std::process::exit(2);
    };
    let started = Instant::now();
    let (frames, bytes) = match walk(&path) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    let secs = started.elapsed().as_secs_f64();
    println!(
        "frames {frames} bytes {bytes} seconds {secs:.3} frames_per_s {:.0}",
        frames as f64 / secs
    );
}

/// Frames and captured bytes, reading 1 MiB at a time.
fn walk(path: &str) -> std::io::Result<(u64, u64)> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut have, mut at) = (0usize, 0usize);
    let mut fill =
        |buf: &mut Vec<u8>, have: &mut usize, at: &mut usize| -> std::io::Result<usize> {
            buf.copy_within(*at..*have, 0);
            *have -= *at;
            *at = 0;
            let n = f.read(&mut buf[*have..])?;
            *have += n;
            Ok(n)
        };
    fill(&mut buf, &mut have, &mut at)?;
    if have < 24 {
        return Err(bad("shorter than a pcap header"));
    }
    let big = match buf[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => false,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => true,
        _ => return Err(bad("not a classic pcap file")),
    };
    at = 24;
    let (mut frames, mut bytes) = (0u64, 0u64);
    'records: loop {
        while have - at < 16 {
            if fill(&mut buf, &mut have, &mut at)? == 0 {
                if have == at {
                    break 'records;
                }
                return Err(bad("the last record header is cut short"));
            }
        }
        let h: [u8; 4] = buf[at + 8..at + 12].try_into().expect("4 bytes");
        let caplen = if big {
            u32::from_be_bytes(h)
        } else {
            u32::from_le_bytes(h)
        } as usize;
        if caplen + 16 > buf.len() {
            return Err(bad("a record larger than 1 MiB"));
        }
        while have - at < 16 + caplen {
            if fill(&mut buf, &mut have, &mut at)? == 0 {
                return Err(bad("the last record is cut short"));
            }
        }
        at += 16 + caplen;
        frames += 1;
        bytes += caplen as u64;
    }
    Ok((frames, bytes))
}
