//! `footfall-agent simulate`: synthetic store traffic for demos, tests and
//! benchmarks. Same options and seed, same bytes.
//!
//! Per local day: customers arrive through opening hours (busier at lunch,
//! in the evening and at weekends), stay a log-normal while and probe in
//! bursts; a pool of regulars makes returning visitors; randomized phones
//! rotate their MAC every 10-20 minutes; staff stay all shift (and so become
//! residents); tills and printers probe all day; passers-by are brief and
//! mostly weak. Noise: beacons, probes with bad FCS, multicast senders,
//! frames cut short, frames below the floor. Radiotap layouts vary by
//! device: with or without Flags, TSFT and FCS, extra antenna namespaces.

use std::path::PathBuf;

use anyhow::{Context, Result};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::count::days::LocalDays;
use crate::wire::ieee80211;
use crate::wire::pcapfile::PcapWriter;
use crate::wire::radiotap::{self, flags};

#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Capture file to write (pcap, radiotap).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of local days.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// First local day, YYYY-MM-DD.
    #[arg(long, default_value = "2026-03-02")]
    pub start: String,
    /// IANA time zone the store's days are cut in.
    #[arg(long, default_value = "UTC")]
    pub timezone: String,
    /// Mean customers a day (before weekday and uplift factors).
    #[arg(long, default_value_t = 300)]
    pub visitors_per_day: u32,
    /// Mean passers-by a day.
    #[arg(long, default_value_t = 600)]
    pub passersby_per_day: u32,
    /// Staff phones, present every day on shift.
    #[arg(long, default_value_t = 4)]
    pub staff: u32,
    /// Fixed devices (tills, printers), probing all opening day.
    #[arg(long, default_value_t = 2)]
    pub fixed: u32,
    /// Share of customers whose phone randomizes its MAC.
    #[arg(long, default_value_t = 0.6)]
    pub randomized_share: f64,
    /// Share of non-randomized customers drawn from the regulars.
    #[arg(long, default_value_t = 0.35)]
    pub returning_share: f64,
    /// Extra customers on uplift days, as a fraction (0.3 = +30 %).
    #[arg(long, default_value_t = 0.0)]
    pub uplift: f64,
    /// First uplift day, YYYY-MM-DD (inclusive).
    #[arg(long)]
    pub uplift_from: Option<String>,
    /// Last uplift day, YYYY-MM-DD (inclusive).
    #[arg(long)]
    pub uplift_to: Option<String>,
    /// Beacon interval of the store's access point, seconds (0: none).
    #[arg(long, default_value_t = 10.0)]
    pub beacon_interval_s: f64,
}

/// What was written, for the caller to print.
#[derive(Debug, Default)]
pub struct Summary {
    pub frames: u64,
    pub customers: u64,
}

const S: i64 = 1_000_000;

fn parse_day(s: &str, what: &str) -> Result<i32> {
    let d: jiff::civil::Date = s
        .parse()
        .with_context(|| format!("{what} {s:?}: expected YYYY-MM-DD"))?;
    Ok(d.since(jiff::civil::Date::constant(1970, 1, 1))?.get_days())
}

struct Phone {
    mac: [u8; 6],
    layout: u8,
}

struct Gen {
    rng: ChaCha8Rng,
    frames: Vec<(i64, Vec<u8>, u32)>,
    seq: u16,
}

impl Gen {
    fn mac(&mut self, randomized: bool) -> [u8; 6] {
        let mut m: [u8; 6] = self.rng.random();
        m[0] &= !0x03;
        if randomized {
            m[0] |= 0x02;
        }
        m
    }

    fn phone(&mut self, randomized: bool) -> Phone {
        let mac = self.mac(randomized);
        let layout = self.rng.random_range(0..4u8);
        Phone { mac, layout }
    }

    fn probe(&mut self, t_us: i64, p: &Phone, signal: i8) {
        let rt = match p.layout {
            0 => radiotap::Repr {
                flags: Some(0),
                rate: Some(2),
                channel: Some((2437, 0x00a0)),
                dbm_signal: Some(signal),
                ..Default::default()
            },
            1 => radiotap::Repr {
                tsft: Some(t_us as u64),
                flags: Some(flags::FCS_AT_END),
                rate: Some(12),
                channel: Some((5180, 0x0140)),
                dbm_signal: Some(signal),
                ..Default::default()
            },
            2 => radiotap::Repr {
                flags: Some(0),
                channel: Some((2412, 0x00a0)),
                dbm_signal: Some(signal),
                antennas: &[(-95, 0), (-60, 1)],
                ..Default::default()
            },
            _ => radiotap::Repr {
                channel: Some((2462, 0x00a0)),
                dbm_signal: Some(signal),
                ..Default::default()
            },
        };
        let mut b = Vec::with_capacity(64);
        rt.emit(&mut b);
        self.seq = self.seq.wrapping_add(1) & 0x0fff;
        ieee80211::Repr::probe_request(p.mac, self.seq).emit(&mut b);
        if rt.flags.is_some_and(|f| f & flags::FCS_AT_END != 0) {
            b.extend_from_slice(&[0x11, 0x22, 0x33, 0x44]);
        }
        let len = b.len() as u32;
        self.frames.push((t_us, b, len));
    }

    /// A burst of 1-3 probes within 40 ms, the way phones scan.
    fn burst(&mut self, t_us: i64, p: &Phone, signal: i8) {
        let n = self.rng.random_range(1..=3);
        for i in 0..n {
            let jitter: i8 = self.rng.random_range(-2..=2);
            self.probe(t_us + i * 20_000, p, signal.saturating_add(jitter));
        }
    }

    fn noise_frame(&mut self, t_us: i64, kind: u8) {
        let mut b = Vec::with_capacity(64);
        let signal = self.rng.random_range(-80..-40i8);
        let rt = radiotap::Repr {
            flags: Some(if kind == 1 { flags::BAD_FCS } else { 0 }),
            dbm_signal: Some(if kind == 4 {
                self.rng.random_range(-100..-91i8)
            } else {
                signal
            }),
            ..Default::default()
        };
        rt.emit(&mut b);
        let mut mac = self.mac(false);
        let fc0 = match kind {
            0 => 0x80, // beacon
            2 => {
                mac[0] |= 0x01; // multicast sender
                0x40
            }
            _ => 0x40,
        };
        let repr = ieee80211::Repr {
            fc0,
            addr1: [0xff; 6],
            addr2: mac,
            addr3: mac,
            seq: 0,
        };
        repr.emit(&mut b);
        let len = b.len() as u32;
        if kind == 3 {
            // Cut short by the capture: radiotap plus 20 bytes of 802.11.
            let rt_len = usize::from(u16::from_le_bytes([b[2], b[3]]));
            b.truncate(rt_len + 20);
        }
        self.frames.push((t_us, b, len));
    }

    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        // Box-Muller from two uniforms: enough for traffic shapes.
        let u1: f64 = self.rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = self.rng.random();
        mean + sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    fn poisson_like(&mut self, mean: f64) -> u32 {
        self.normal(mean, mean.sqrt()).round().max(0.0) as u32
    }
}

/// Relative arrival weight of each local hour, 09:00-20:59.
const HOURLY: [f64; 12] = [0.4, 0.6, 0.8, 1.3, 1.4, 1.0, 0.8, 0.9, 1.1, 1.4, 1.3, 0.8];

pub fn simulate(args: &SimulateArgs) -> Result<Summary> {
    let tz = jiff::tz::TimeZone::get(&args.timezone)
        .with_context(|| format!("--timezone {:?}: not an IANA time zone", args.timezone))?;
    let days = LocalDays::new(tz);
    let first = parse_day(&args.start, "--start")?;
    let uplift_from = args
        .uplift_from
        .as_deref()
        .map(|s| parse_day(s, "--uplift-from"))
        .transpose()?;
    let uplift_to = args
        .uplift_to
        .as_deref()
        .map(|s| parse_day(s, "--uplift-to"))
        .transpose()?;
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.randomized_share),
        "--randomized-share must be 0..1"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.returning_share),
        "--returning-share must be 0..1"
    );
    anyhow::ensure!(args.uplift > -1.0, "--uplift must be above -1");

    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(args.seed),
        frames: Vec::new(),
        seq: 0,
    };
    let regulars: Vec<Phone> = (0..(args.visitors_per_day as usize * 2).max(10))
        .map(|_| g.phone(false))
        .collect();
    let staff: Vec<Phone> = (0..args.staff).map(|_| g.phone(false)).collect();
    let fixed: Vec<Phone> = (0..args.fixed).map(|_| g.phone(false)).collect();
    let mut writer = PcapWriter::create(&args.out, 127)?;
    let mut summary = Summary::default();
    let hour_total: f64 = HOURLY.iter().sum();

    for day in first..first + args.days as i32 {
        let (start, _) = days.bounds(day);
        let at = |h: f64| start + (h * 3600.0 * S as f64) as i64;
        let weekday = (day + 3).rem_euclid(7); // 0 = Monday
        let mut factor = if weekday >= 5 { 1.3 } else { 1.0 };
        if uplift_from.is_some_and(|f| day >= f) && uplift_to.is_some_and(|t| day <= t) {
            factor *= 1.0 + args.uplift;
        }

        // Customers.
        let n = g.poisson_like(f64::from(args.visitors_per_day) * factor);
        summary.customers += u64::from(n);
        for _ in 0..n {
            let mut pick = g.rng.random_range(0.0..hour_total);
            let mut hour = 0;
            while hour < HOURLY.len() - 1 && pick >= HOURLY[hour] {
                pick -= HOURLY[hour];
                hour += 1;
            }
            let arrive = at(9.0 + hour as f64 + g.rng.random::<f64>());
            let dwell_min = g.normal(2.9, 0.6).exp().clamp(2.0, 150.0);
            let leave = arrive + (dwell_min * 60.0 * S as f64) as i64;
            let randomized = g.rng.random_bool(args.randomized_share);
            let mut phone = if randomized {
                g.phone(true)
            } else if g.rng.random_bool(args.returning_share) {
                let i = g.rng.random_range(0..regulars.len());
                Phone {
                    mac: regulars[i].mac,
                    layout: regulars[i].layout,
                }
            } else {
                g.phone(false)
            };
            let base_signal = g.rng.random_range(-66..-45i8);
            let mut rotate_at = arrive + g.rng.random_range(600..1200) * S;
            let mut t = arrive;
            while t < leave {
                if randomized && t >= rotate_at {
                    phone = g.phone(true);
                    rotate_at = t + g.rng.random_range(600..1200) * S;
                }
                let signal = if g.rng.random_bool(0.1) {
                    g.rng.random_range(-85..-72i8)
                } else {
                    base_signal
                };
                g.burst(t, &phone, signal);
                t += g.rng.random_range(20..150) * S + g.rng.random_range(0..S);
            }
        }

        // Passers-by: a minute or three near the door, mostly weak.
        let n = g.poisson_like(f64::from(args.passersby_per_day) * factor);
        for _ in 0..n {
            let t0 = at(g.rng.random_range(8.0..22.0));
            let randomized = g.rng.random_bool(args.randomized_share);
            let phone = g.phone(randomized);
            let strong = g.rng.random_bool(0.25);
            for i in 0..g.rng.random_range(1..4) {
                let signal = if strong {
                    g.rng.random_range(-69..-55i8)
                } else {
                    g.rng.random_range(-89..-71i8)
                };
                let t = t0 + i * g.rng.random_range(20..60) * S;
                g.burst(t, &phone, signal);
            }
        }

        // Staff: a shift of about nine hours, every day.
        for p in &staff {
            let from = at(8.5 + g.normal(0.0, 0.25));
            let to = at(17.5 + g.normal(0.0, 0.25));
            let mut t = from;
            while t < to {
                let signal = g.rng.random_range(-60..-45i8);
                g.burst(t, p, signal);
                t += g.rng.random_range(60..300) * S;
            }
        }

        // Tills and printers: on from 07:00 to 22:00.
        for p in &fixed {
            let mut t = at(7.0) + g.rng.random_range(0..60) * S;
            while t < at(22.0) {
                g.probe(t, p, -50);
                t += 60 * S + g.rng.random_range(0..S);
            }
        }

        // Noise.
        if args.beacon_interval_s > 0.0 {
            let step = (args.beacon_interval_s * S as f64) as i64;
            let mut t = start;
            while t < days.bounds(day).1 {
                g.noise_frame(t, 0);
                t += step;
            }
        }
        let probes = g.frames.len();
        for kind in 1..=4u8 {
            for _ in 0..probes / 200 {
                let t = at(g.rng.random_range(0.0..24.0));
                g.noise_frame(t, kind);
            }
        }

        g.frames.sort_by_key(|f| f.0);
        for (t, b, len) in g.frames.drain(..) {
            writer.write(t, &b, len);
            summary.frames += 1;
        }
    }
    writer.finish()?;
    Ok(summary)
}
