//! `footfall-agent simulate`: synthetic store traffic for demos, tests and
//! benchmarks. Same options and seed, same bytes.
//!
//! Per local day: customers arrive through opening hours (busier at lunch,
//! in the evening and at weekends), stay a log-normal while and probe in
//! bursts; a pool of regulars makes returning visitors; staff stay all
//! shift (and so become residents); tills and printers probe all day;
//! passers-by are brief and mostly weak. Noise: beacons, probes with bad
//! FCS, multicast senders, frames cut short, frames below the floor.
//! Radiotap layouts vary by device: with or without Flags, TSFT and FCS,
//! extra antenna namespaces.
//!
//! Phones behave like today's (SPEC §8): each is one of a few `MODELS`,
//! whose probes carry that model's information elements; a randomizing
//! phone changes its MAC every scan or every few minutes as its model
//! does, and its 802.11 sequence numbers carry on across the change or
//! start afresh, also as its model does; some probes name a network the
//! phone knows (an SSID, which must never reach an output). `--truth`
//! writes the customers present over time, the occupancy log `evaluate`
//! scores against.
//!
//! `--crowd N` (issue 20) puts N phones in the store together for
//! `--crowd-hours` from opening, as a food court, a concourse or a station
//! has them, instead of the day's customers; `--randomized-share` of them
//! change MACs as their models do. Its frames are written as they are
//! made, in time order, so a crowd of any size takes memory for its phones
//! only, not for its frames.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::days::LocalDays;
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
    /// Phones present together every day (0: customers as above): they
    /// arrive in the half hour after 09:00 and stay `--crowd-hours`.
    #[arg(long, default_value_t = 0)]
    pub crowd: u32,
    /// How long the crowd stays, hours.
    #[arg(long, default_value_t = 6.0)]
    pub crowd_hours: f64,
    /// Also write the customers in the store over time, as an occupancy
    /// log (`unix_us<TAB>occupancy`) for `evaluate` and `calibrate`.
    #[arg(long)]
    pub truth: Option<PathBuf>,
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

/// How often a randomizing phone of a model changes its MAC.
#[derive(Clone, Copy)]
enum Rotation {
    /// A new MAC for every scan (iOS and many Androids while not joined).
    EveryScan,
    /// A new MAC every this many seconds, drawn uniformly.
    Every(i64, i64),
}

/// A phone model as the air sees it.
struct Model {
    elements: &'static [(u8, &'static [u8])],
    rotation: Rotation,
    /// Whether its sequence numbers carry on across a MAC change.
    seq_continues: bool,
    /// Share of phones.
    weight: f64,
}

const RATES: &[u8] = &[0x02, 0x04, 0x0b, 0x16];
const EXT_RATES: &[u8] = &[0x0c, 0x12, 0x18, 0x24, 0x30, 0x48, 0x60, 0x6c];

/// Five models with elements like real phones' (rates, HT and extended
/// capabilities, vendor elements), each set distinct.
const MODELS: [Model; 5] = [
    Model {
        elements: &[
            (1, RATES),
            (50, EXT_RATES),
            (
                45,
                &[
                    0x2d, 0x40, 0x17, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    0, 0, 0, 0, 0,
                ],
            ),
            (127, &[0x04, 0x00, 0x0a, 0x02, 0x01, 0x40, 0x40, 0x80]),
            (
                221,
                &[
                    0x00, 0x17, 0xf2, 0x0a, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00,
                ],
            ),
        ],
        rotation: Rotation::EveryScan,
        seq_continues: false,
        weight: 0.35,
    },
    Model {
        elements: &[
            (1, RATES),
            (50, EXT_RATES),
            (
                45,
                &[
                    0xef, 0x01, 0x1b, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    0, 0, 0, 0, 0, 0,
                ],
            ),
            (127, &[0x00, 0x00, 0x08, 0x04, 0x00, 0x00, 0x00, 0x40]),
            (
                191,
                &[
                    0x92, 0x71, 0x90, 0x03, 0xfa, 0xff, 0x00, 0x00, 0xfa, 0xff, 0x00, 0x00,
                ],
            ),
        ],
        rotation: Rotation::Every(600, 1200),
        seq_continues: true,
        weight: 0.25,
    },
    Model {
        elements: &[
            (1, RATES),
            (50, EXT_RATES),
            (3, &[6]),
            (
                45,
                &[
                    0x6f, 0x11, 0x17, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    0, 0, 0, 0, 0,
                ],
            ),
            (127, &[0x00, 0x00, 0x0a, 0x02, 0x01, 0x00, 0x40, 0x80]),
            (221, &[0x00, 0x90, 0x4c, 0x04, 0x08, 0xbf, 0x0c, 0x32]),
        ],
        rotation: Rotation::EveryScan,
        seq_continues: true,
        weight: 0.2,
    },
    Model {
        elements: &[
            (1, RATES),
            (50, EXT_RATES),
            (
                45,
                &[
                    0x21, 0x00, 0x17, 0xff, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    0, 0, 0, 0, 0,
                ],
            ),
            (
                255,
                &[
                    0x23, 0x01, 0x78, 0x10, 0x1a, 0x00, 0x00, 0x00, 0x20, 0x0e, 0x09,
                ],
            ),
        ],
        rotation: Rotation::Every(300, 900),
        seq_continues: false,
        weight: 0.12,
    },
    Model {
        elements: &[
            (1, RATES),
            (50, EXT_RATES),
            (
                45,
                &[
                    0x0c, 0x00, 0x1b, 0xff, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    0, 0, 0, 0, 0,
                ],
            ),
        ],
        rotation: Rotation::Every(900, 1800),
        seq_continues: true,
        weight: 0.08,
    },
];

struct Phone {
    mac: [u8; 6],
    layout: u8,
    model: usize,
    seq: u16,
    /// A network the phone knows, named in some of its probes.
    ssid: Option<String>,
}

struct Gen {
    rng: ChaCha8Rng,
    frames: Vec<(i64, Vec<u8>, u32)>,
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
        let mut pick = self
            .rng
            .random_range(0.0..MODELS.iter().map(|m| m.weight).sum::<f64>());
        let mut model = 0;
        while model < MODELS.len() - 1 && pick >= MODELS[model].weight {
            pick -= MODELS[model].weight;
            model += 1;
        }
        let seq = self.rng.random_range(0..4096u16);
        let ssid = self
            .rng
            .random_bool(0.3)
            .then(|| format!("home-{:06x}", self.rng.random_range(0..1u32 << 24)));
        Phone {
            mac,
            layout,
            model,
            seq,
            ssid,
        }
    }

    /// A customer's phone: a new one, or (fixed MACs only, by
    /// `returning_share`) one of the regulars', with a fresh sequence.
    fn customer_phone(
        &mut self,
        randomized: bool,
        returning_share: f64,
        regulars: &[Phone],
    ) -> Phone {
        if randomized || !self.rng.random_bool(returning_share) {
            return self.phone(randomized);
        }
        let r = &regulars[self.rng.random_range(0..regulars.len())];
        Phone {
            mac: r.mac,
            layout: r.layout,
            model: r.model,
            seq: self.rng.random_range(0..4096u16),
            ssid: r.ssid.clone(),
        }
    }

    /// A randomizing phone's next MAC: its model says whether the
    /// sequence numbers go on or start afresh.
    fn rotate(&mut self, p: &mut Phone) {
        p.mac = self.mac(true);
        if !MODELS[p.model].seq_continues {
            p.seq = self.rng.random_range(0..4096u16);
        }
    }

    fn probe(&mut self, t_us: i64, p: &mut Phone, signal: i8, directed: bool) {
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
        p.seq = p.seq.wrapping_add(1) & 0x0fff;
        let ssid = match (&p.ssid, directed) {
            (Some(s), true) => s.as_bytes(),
            _ => b"",
        };
        ieee80211::Repr::probe_request(p.mac, p.seq).emit_with(
            ssid,
            MODELS[p.model].elements,
            &mut b,
        );
        if rt.flags.is_some_and(|f| f & flags::FCS_AT_END != 0) {
            b.extend_from_slice(&[0x11, 0x22, 0x33, 0x44]);
        }
        let len = b.len() as u32;
        self.frames.push((t_us, b, len));
    }

    /// A burst of 1-3 probes within 40 ms, the way phones scan; now and
    /// then the last one names the phone's network.
    fn burst(&mut self, t_us: i64, p: &mut Phone, signal: i8) {
        let n = self.rng.random_range(1..=3);
        let directed = self.rng.random_bool(0.2);
        for i in 0..n {
            let jitter: i8 = self.rng.random_range(-2..=2);
            self.probe(
                t_us + i * 20_000,
                p,
                signal.saturating_add(jitter),
                directed && i == n - 1,
            );
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

/// A phone of the crowd while it is in the store.
struct Member {
    phone: Phone,
    randomized: bool,
    leave: i64,
    signal: i8,
    /// Probes left in the burst it is sending.
    burst_left: u8,
    /// Whether the burst's last probe names the phone's network.
    directed: bool,
    rotate_at: i64,
}

/// The crowd's day, written in time order with the day's other frames
/// (`rest`, sorted): each phone's next probe waits in a heap, so memory
/// holds the phones, not their frames.
fn crowd_day(
    g: &mut Gen,
    args: &SimulateArgs,
    open: i64,
    regulars: &[Phone],
    rest: Vec<(i64, Vec<u8>, u32)>,
    presence: &mut Vec<(i64, i32)>,
    out: &mut Sink,
) {
    let stay = (args.crowd_hours * 3600.0 * S as f64) as i64;
    let mut members: Vec<Member> = Vec::with_capacity(args.crowd as usize);
    let mut heap: BinaryHeap<Reverse<(i64, u32)>> = BinaryHeap::with_capacity(args.crowd as usize);
    for i in 0..args.crowd {
        let arrive = open + g.rng.random_range(0..1800 * S);
        let leave = arrive + stay + g.rng.random_range(0..600 * S);
        presence.push((arrive, 1));
        presence.push((leave, -1));
        let randomized = g.rng.random_bool(args.randomized_share);
        let phone = g.customer_phone(randomized, args.returning_share, regulars);
        members.push(Member {
            phone,
            randomized,
            leave,
            signal: g.rng.random_range(-66..-45i8),
            burst_left: 0,
            directed: false,
            rotate_at: arrive,
        });
        heap.push(Reverse((arrive, i)));
    }
    out.summary.customers += u64::from(args.crowd);
    let mut rest = rest.into_iter().peekable();
    while let Some(Reverse((t, i))) = heap.pop() {
        while let Some(f) = rest.next_if(|f| f.0 <= t) {
            out.write(f);
        }
        let m = &mut members[i as usize];
        if m.burst_left == 0 {
            // A new scan: a rotating phone may have a new MAC for it.
            if m.randomized && t >= m.rotate_at {
                if t > m.rotate_at {
                    g.rotate(&mut m.phone);
                }
                m.rotate_at = match MODELS[m.phone.model].rotation {
                    Rotation::EveryScan => t + 1,
                    Rotation::Every(a, b) => t + g.rng.random_range(a..b) * S,
                };
            }
            m.burst_left = g.rng.random_range(1..=3);
            m.directed = g.rng.random_bool(0.2);
        }
        m.burst_left -= 1;
        let jitter: i8 = g.rng.random_range(-2..=2);
        let directed = m.directed && m.burst_left == 0;
        g.probe(t, &mut m.phone, m.signal.saturating_add(jitter), directed);
        for f in g.frames.drain(..) {
            out.write(f);
        }
        let next = if m.burst_left > 0 {
            t + 20_000
        } else {
            t + g.rng.random_range(20..150) * S + g.rng.random_range(0..S)
        };
        if next < m.leave {
            heap.push(Reverse((next, i)));
        }
    }
    for f in rest {
        out.write(f);
    }
}

/// Where frames go, counted.
struct Sink {
    writer: PcapWriter,
    summary: Summary,
}

impl Sink {
    fn write(&mut self, (t, b, len): (i64, Vec<u8>, u32)) {
        self.writer.write(t, &b, len);
        self.summary.frames += 1;
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
    anyhow::ensure!(
        args.crowd_hours > 0.0 && args.crowd_hours <= 14.0,
        "--crowd-hours must be above 0 and at most 14 (from 09:00, within the day)"
    );

    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(args.seed),
        frames: Vec::new(),
    };
    let regulars: Vec<Phone> = (0..((args.visitors_per_day.max(args.crowd)) as usize * 2).max(10))
        .map(|_| g.phone(false))
        .collect();
    let mut staff: Vec<Phone> = (0..args.staff).map(|_| g.phone(false)).collect();
    let mut fixed: Vec<Phone> = (0..args.fixed).map(|_| g.phone(false)).collect();
    // Customers in the store: +1 at an arrival, -1 at a departure.
    let mut presence: Vec<(i64, i32)> = Vec::new();
    let mut out = Sink {
        writer: PcapWriter::create(&args.out, 127)?,
        summary: Summary::default(),
    };
    let hour_total: f64 = HOURLY.iter().sum();

    for day in first..first + args.days as i32 {
        let (start, _) = days.bounds(day);
        let at = |h: f64| start + (h * 3600.0 * S as f64) as i64;
        let weekday = (day + 3).rem_euclid(7); // 0 = Monday
        let mut factor = if weekday >= 5 { 1.3 } else { 1.0 };
        if uplift_from.is_some_and(|f| day >= f) && uplift_to.is_some_and(|t| day <= t) {
            factor *= 1.0 + args.uplift;
        }

        // Customers, unless a crowd stands in for them.
        let n = if args.crowd > 0 {
            0
        } else {
            g.poisson_like(f64::from(args.visitors_per_day) * factor)
        };
        out.summary.customers += u64::from(n);
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
            presence.push((arrive, 1));
            presence.push((leave, -1));
            let randomized = g.rng.random_bool(args.randomized_share);
            let mut phone = g.customer_phone(randomized, args.returning_share, &regulars);
            let base_signal = g.rng.random_range(-66..-45i8);
            let next_rotation =
                |g: &mut Gen, phone: &Phone, t: i64| match MODELS[phone.model].rotation {
                    Rotation::EveryScan => t,
                    Rotation::Every(a, b) => t + g.rng.random_range(a..b) * S,
                };
            let mut rotate_at = next_rotation(&mut g, &phone, arrive);
            let mut t = arrive;
            while t < leave {
                if randomized && t >= rotate_at {
                    if t > arrive {
                        g.rotate(&mut phone);
                    }
                    rotate_at = next_rotation(&mut g, &phone, t);
                }
                let signal = if g.rng.random_bool(0.1) {
                    g.rng.random_range(-85..-72i8)
                } else {
                    base_signal
                };
                g.burst(t, &mut phone, signal);
                t += g.rng.random_range(20..150) * S + g.rng.random_range(0..S);
            }
        }

        // Passers-by: a minute or three near the door, mostly weak.
        let n = g.poisson_like(f64::from(args.passersby_per_day) * factor);
        for _ in 0..n {
            let t0 = at(g.rng.random_range(8.0..22.0));
            let randomized = g.rng.random_bool(args.randomized_share);
            let mut phone = g.phone(randomized);
            let strong = g.rng.random_bool(0.25);
            for i in 0..g.rng.random_range(1..4) {
                let signal = if strong {
                    g.rng.random_range(-69..-55i8)
                } else {
                    g.rng.random_range(-89..-71i8)
                };
                let t = t0 + i * g.rng.random_range(20..60) * S;
                if randomized
                    && i > 0
                    && matches!(MODELS[phone.model].rotation, Rotation::EveryScan)
                {
                    g.rotate(&mut phone);
                }
                g.burst(t, &mut phone, signal);
            }
        }

        // Staff: a shift of about nine hours, every day.
        for p in &mut staff {
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
        for p in &mut fixed {
            let mut t = at(7.0) + g.rng.random_range(0..60) * S;
            while t < at(22.0) {
                g.probe(t, p, -50, false);
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
        if args.crowd > 0 {
            let rest = std::mem::take(&mut g.frames);
            crowd_day(
                &mut g,
                args,
                at(9.0),
                &regulars,
                rest,
                &mut presence,
                &mut out,
            );
        }
        for f in g.frames.drain(..) {
            out.write(f);
        }
    }
    out.writer.finish()?;
    if let Some(path) = &args.truth {
        let (from, _) = days.bounds(first);
        let (_, to) = days.bounds(first + args.days as i32 - 1);
        write_truth(path, from, to, &mut presence)?;
    }
    Ok(out.summary)
}

/// The occupancy log of `evaluate`: customers present at every change,
/// and at the first and last instant of the simulated days.
fn write_truth(
    path: &std::path::Path,
    from: i64,
    to: i64,
    presence: &mut [(i64, i32)],
) -> Result<()> {
    use std::fmt::Write;
    presence.sort_unstable();
    let mut out = String::from("unix_us\toccupancy\n");
    let mut occupancy = 0i32;
    let _ = writeln!(out, "{from}\t0");
    let mut i = 0;
    while i < presence.len() {
        let t = presence[i].0;
        while i < presence.len() && presence[i].0 == t {
            occupancy += presence[i].1;
            i += 1;
        }
        if t > from && t < to {
            let _ = writeln!(out, "{t}\t{occupancy}");
        }
    }
    let _ = writeln!(out, "{to}\t{occupancy}");
    std::fs::write(path, out).with_context(|| format!("{}: cannot write the truth", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::pcapfile::CaptureFile;
    use crate::wire::radiotap;
    use std::collections::HashSet;

    fn args(dir: &std::path::Path, crowd: u32) -> SimulateArgs {
        SimulateArgs {
            out: dir.join("crowd.pcap"),
            days: 1,
            seed: 5,
            start: "2026-03-02".into(),
            timezone: "UTC".into(),
            visitors_per_day: 300,
            passersby_per_day: 100,
            staff: 2,
            fixed: 1,
            randomized_share: 0.3,
            returning_share: 0.0,
            uplift: 0.0,
            uplift_from: None,
            uplift_to: None,
            beacon_interval_s: 10.0,
            crowd,
            crowd_hours: 2.0,
            truth: Some(dir.join("crowd.tsv")),
        }
    }

    /// A crowd is there together (the truth peaks at its size), its frames
    /// are in time order with the day's others, and its rotating phones
    /// show many MACs.
    #[test]
    fn a_crowd_is_present_together_in_time_order() {
        let dir = tempfile::tempdir().unwrap();
        let a = args(dir.path(), 500);
        let summary = simulate(&a).unwrap();
        assert_eq!(summary.customers, 500);
        let mut cap = CaptureFile::open(&a.out).unwrap();
        let (mut last, mut macs, mut frames) = (i64::MIN, HashSet::new(), 0u64);
        while let Some(r) = cap.next_record() {
            let r = r.unwrap();
            assert!(r.ts_us >= last, "frames in time order");
            last = r.ts_us;
            frames += 1;
            if let Ok(h) = radiotap::Header::new_checked(r.data) {
                let f = &r.data[h.len()..];
                // Probe requests (subtype 4) only: their transmitters.
                if f.first() == Some(&0x40) {
                    if let Some(mac) = f.get(10..16) {
                        macs.insert(<[u8; 6]>::try_from(mac).unwrap());
                    }
                }
            }
        }
        assert_eq!(frames, summary.frames);
        // Two hours of 500 phones at a burst a minute or so: well over
        // 20 k frames; the rotating 30 % alone make far more MACs than
        // the phones.
        assert!(frames > 20_000, "{frames}");
        assert!(macs.len() > 500 * 3, "{} MACs", macs.len());
        let truth = std::fs::read_to_string(dir.path().join("crowd.tsv")).unwrap();
        let peak = truth
            .lines()
            .skip(1)
            .filter_map(|l| l.split('\t').nth(1)?.parse::<i32>().ok())
            .max();
        assert_eq!(peak, Some(500));
    }
}
