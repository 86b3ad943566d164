//! Ground truth for SPEC §8: how many people were in the room, over time.
//!
//! Two formats, told apart by the file's name:
//! - `*.tsv`, an occupancy log (shared/data/occupancy): a header
//!   `unix_us<TAB>occupancy`, then the occupancy at every change and at
//!   the first and last frame; `-1` marks a stretch nobody counted.
//! - `*.csv`, a door counter: a header `time,in,out`, then one row per
//!   interval (typically per window): `time` in Unix seconds or RFC 3339,
//!   `in` and `out` the people who came in and went out during it. The
//!   room is empty at the first row; the last row's time ends the log.
//!
//! Truth for a window (SPEC §8) is the time-weighted mean occupancy over
//! it; truth entries are the rises (the `in`s) in it. Only windows wholly
//! inside the log, and not touching an unknown stretch, are scored.

use std::path::Path;

use anyhow::{bail, Context, Result};

const US_PER_S: i64 = 1_000_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    /// (time, occupancy from then on), sorted; occupancy < 0: unknown.
    steps: Vec<(i64, f64)>,
    /// (time, people arriving then), sorted.
    arrivals: Vec<(i64, f64)>,
    first_us: i64,
    last_us: i64,
}

impl Truth {
    pub fn load(path: &Path) -> Result<Truth> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the truth", path.display()))?;
        let name = path.display().to_string();
        match path.extension().and_then(|e| e.to_str()) {
            Some("tsv") => Truth::occupancy(&name, &text),
            Some("csv") => Truth::door(&name, &text),
            _ => bail!("{name}: a truth is an occupancy log (.tsv) or door counts (.csv)"),
        }
    }

    /// The occupancy-log format.
    pub fn occupancy(name: &str, text: &str) -> Result<Truth> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        match lines.next() {
            Some((_, h)) if h.split('\t').map(str::trim).eq(["unix_us", "occupancy"]) => {}
            _ => bail!("{name}:1: expected the header `unix_us<TAB>occupancy`"),
        }
        let mut steps: Vec<(i64, f64)> = Vec::new();
        for (i, line) in lines {
            let at = || format!("{name}:{}", i + 1);
            let mut cols = line.split('\t').map(str::trim);
            let (Some(t), Some(o), None) = (cols.next(), cols.next(), cols.next()) else {
                bail!("{}: expected two columns, unix_us and occupancy", at());
            };
            let t: i64 = t
                .parse()
                .with_context(|| format!("{}: unix_us {t:?} is not an integer", at()))?;
            let o: i64 = o
                .parse()
                .with_context(|| format!("{}: occupancy {o:?} is not an integer", at()))?;
            if o < -1 {
                bail!(
                    "{}: occupancy {o}: people are 0 or more (-1: unknown)",
                    at()
                );
            }
            if steps.last().is_some_and(|&(p, _)| t < p) {
                bail!("{}: unix_us goes back in time", at());
            }
            steps.push((t, o as f64));
        }
        let arrivals = steps
            .windows(2)
            .filter(|w| w[0].1 >= 0.0 && w[1].1 > w[0].1)
            .map(|w| (w[1].0, w[1].1 - w[0].1))
            .collect();
        Truth::new(name, steps, arrivals)
    }

    /// The door-counter format.
    pub fn door(name: &str, text: &str) -> Result<Truth> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        match lines.next() {
            Some((_, h)) if h.split(',').map(str::trim).eq(["time", "in", "out"]) => {}
            _ => bail!("{name}:1: expected the header `time,in,out`"),
        }
        let (mut steps, mut arrivals) = (Vec::new(), Vec::new());
        let mut occupancy = 0.0f64;
        for (i, line) in lines {
            let at = || format!("{name}:{}", i + 1);
            let cols: Vec<&str> = line.split(',').map(str::trim).collect();
            let [t, inn, out] = cols[..] else {
                bail!("{}: expected three columns, time, in and out", at());
            };
            let t = parse_time(t).with_context(at)?;
            let count = |what: &str, v: &str| -> Result<f64> {
                v.parse::<u32>()
                    .map(f64::from)
                    .with_context(|| format!("{}: {what} {v:?} is not a count", at()))
            };
            let (inn, out) = (count("in", inn)?, count("out", out)?);
            if steps.last().is_some_and(|&(p, _)| t < p) {
                bail!("{}: time goes back", at());
            }
            // A counter that misses an exit must not drive the room below 0.
            occupancy = (occupancy + inn - out).max(0.0);
            steps.push((t, occupancy));
            if inn > 0.0 {
                arrivals.push((t, inn));
            }
        }
        Truth::new(name, steps, arrivals)
    }

    fn new(name: &str, steps: Vec<(i64, f64)>, arrivals: Vec<(i64, f64)>) -> Result<Truth> {
        let (Some(first), Some(last)) = (steps.first(), steps.last()) else {
            bail!("{name}: no rows after the header");
        };
        let (first_us, last_us) = (first.0, last.0);
        Ok(Truth {
            steps,
            arrivals,
            first_us,
            last_us,
        })
    }

    /// (mean occupancy, entries) of [start, end), if the window is wholly
    /// inside the log and none of it is unknown.
    pub fn window(&self, start_us: i64, end_us: i64) -> Option<(f64, f64)> {
        if start_us < self.first_us || end_us > self.last_us || end_us <= start_us {
            return None;
        }
        let mut area = 0.0;
        let from = self
            .steps
            .partition_point(|s| s.0 <= start_us)
            .saturating_sub(1);
        for (i, &(t, occ)) in self.steps.iter().enumerate().skip(from) {
            if t >= end_us {
                break;
            }
            let next = self.steps.get(i + 1).map_or(self.last_us, |s| s.0);
            let (a, b) = (t.max(start_us), next.min(end_us));
            if b > a {
                if occ < 0.0 {
                    return None;
                }
                area += occ * (b - a) as f64;
            }
        }
        let entries = self
            .arrivals
            .iter()
            .filter(|a| (start_us..end_us).contains(&a.0))
            .map(|a| a.1)
            .sum();
        Some((area / (end_us - start_us) as f64, entries))
    }

    pub fn span_us(&self) -> (i64, i64) {
        (self.first_us, self.last_us)
    }
}

fn parse_time(s: &str) -> Result<i64> {
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs * US_PER_S);
    }
    let t: jiff::Timestamp = s
        .parse()
        .with_context(|| format!("time {s:?} is neither Unix seconds nor RFC 3339"))?;
    Ok(t.as_microsecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = US_PER_S;

    #[test]
    fn occupancy_log_gives_time_weighted_means_and_rises() {
        let t = Truth::occupancy(
            "d.tsv",
            "unix_us\toccupancy\n0\t0\n300000000\t3\n600000000\t1\n1800000000\t1\n",
        )
        .unwrap();
        // 0 for 300 s, 3 for 300 s, 1 for 300 s.
        let (mean, entries) = t.window(0, 900 * S).unwrap();
        assert!((mean - 4.0 / 3.0).abs() < 1e-9);
        assert_eq!(entries, 3.0);
        assert_eq!(t.window(900 * S, 1800 * S), Some((1.0, 0.0)));
        assert_eq!(t.window(1800 * S, 2700 * S), None, "past the log's end");
    }

    #[test]
    fn unknown_stretches_are_not_scored_and_bad_rows_are_named() {
        let t = Truth::occupancy(
            "d.tsv",
            "unix_us\toccupancy\n0\t2\n100000000\t-1\n200000000\t2\n1800000000\t2\n",
        )
        .unwrap();
        assert_eq!(t.window(0, 900 * S), None);
        assert_eq!(t.window(900 * S, 1800 * S), Some((2.0, 0.0)));
        let e = Truth::occupancy("d.tsv", "unix_us\toccupancy\n0\t2\n5\tmany\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("d.tsv:3") && e.contains("many"), "{e}");
        let e = Truth::occupancy("d.tsv", "time\tpeople\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("d.tsv:1"), "{e}");
    }

    #[test]
    fn door_counts_build_the_occupancy() {
        let t = Truth::door(
            "door.csv",
            "time,in,out\n0,4,0\n900,2,3\n1970-01-01T00:10:00Z,0,0\n",
        )
        .unwrap_err()
        .to_string();
        assert!(t.contains("door.csv:4") && t.contains("back"), "{t}");
        let t = Truth::door(
            "door.csv",
            "time,in,out\n0,4,0\n900,2,3\n1800,0,9\n2700,0,0\n",
        )
        .unwrap();
        assert_eq!(t.window(0, 900 * S), Some((4.0, 4.0)));
        assert_eq!(t.window(900 * S, 1800 * S), Some((3.0, 2.0)));
        assert_eq!(
            t.window(1800 * S, 2700 * S),
            Some((0.0, 0.0)),
            "never below 0"
        );
    }
}
