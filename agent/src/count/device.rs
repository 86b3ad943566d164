//! One device's strong sessions and the SPEC §3 rules over them: when a
//! session is a visit, whether the device is a resident on a day, and
//! whether a visitor is new, returning or randomized.
//!
//! Invariant: only the last session can be open; a closed session's
//! `visit` was decided when it closed, with every earlier session known.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::history::History;
use super::{Params, RESIDENT_LOOKBACK_DAYS, US_PER_S};
use crate::days::LocalDays;
use crate::privacy::IdMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Session {
    pub(super) first_us: i64,
    pub(super) last_us: i64,
    pub(super) start_day: i32,
    pub(super) open: bool,
    /// For a closed session: whether it was a visit (decided when it closed).
    pub(super) visit: bool,
}

impl Session {
    pub(super) fn dwell_s(&self) -> u64 {
        ((self.last_us - self.first_us) / US_PER_S) as u64
    }
}

/// The devices in memory. Boxed: a crowd holds hundreds of thousands,
/// and a map of devices held in place doubled them all at each resize
/// (issue 20); boxed, a resize moves pointers. Stored as if unboxed.
pub(super) type Devices = IdMap<Box<Device>>;

/// Boxes of devices that left memory, for devices that come: a box is
/// 144 bytes to glibc, past its fast bins, and each new device's `malloc`
/// and each leaving one's `free` went through its sorted bins (perf: a
/// quarter of the counting thread in glibc's malloc on 1 M devices a day
/// under `loyalty`, 2.85 M boxes). Memory only; a clone holds none.
#[derive(Debug, Default)]
#[allow(clippy::vec_box, reason = "the boxes are what is kept")]
pub(super) struct Spare(Vec<Box<Device>>);

impl Spare {
    /// Boxes kept at most, 1.2 MB. This leaves 1.55 M of 1 M a day's
    /// 2.85 M boxes to `malloc` (evictions come a window at a time), but
    /// that workload's peak RSS is at the 48 MiB target: 16,384 made it
    /// 4-8 % faster and peaked at 47.5-48.x MiB, 32,768 at 48.4 (issue 20).
    const MAX: usize = 8192;

    /// `dev` in a box, a spare one if there is one.
    pub(super) fn boxed(&mut self, dev: Device) -> Box<Device> {
        match self.0.pop() {
            Some(mut b) => {
                *b = dev;
                b
            }
            None => Box::new(dev),
        }
    }

    /// Keeps `dev`'s box for the next device, if there is room.
    pub(super) fn keep(&mut self, dev: Box<Device>) {
        if self.0.len() < Spare::MAX {
            self.0.push(dev);
        }
    }
}

impl Clone for Spare {
    fn clone(&self) -> Spare {
        Spare::default()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Device {
    /// Sessions still needed by a window that is not final, oldest first;
    /// only the last can be open. Nearly every device has one, so it is
    /// held in place (stored as a list all the same).
    pub(super) sessions: SmallVec<[Session; 1]>,
    /// (window, day) of the last entry pushed, to skip the obvious repeats.
    pub(super) last_entry: (i64, i32),
    /// The newest window with a detection of this device.
    pub(super) last_window: i64,
    pub(super) hist: History,
    /// Whether the store holds a history for it: one that never was stored
    /// needs no delete when it goes (most devices are passers-by).
    pub(super) stored: bool,
    #[serde(skip)]
    pub(super) mark: Mark,
    /// Its latest frame, and its first in whole seconds (the Unix time's
    /// low 32 bits), memory only: which devices the budget spills first
    /// (`spill_over`). Taken back from a record, a device has both 0: one
    /// heard for long, the least recently.
    #[serde(skip)]
    pub(super) seen_us: i64,
    #[serde(skip)]
    pub(super) first_heard_s: u32,
}

/// What `finalize_front` learnt of a device in the window it is deciding,
/// kept on the device so that a window's entries need not be sorted to be
/// grouped by device (the sort was ~110 of a frame's instructions, issue
/// 7). Valid only for the attempt it names, so a window that waits leaves
/// nothing behind; never stored.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Mark {
    pub(super) attempt: u64,
    /// Counted in the window's `detected`.
    pub(super) detected: bool,
    /// A visit of the device overlaps the window.
    pub(super) visit: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    New,
    Returning,
    Randomized,
}

impl Device {
    pub(super) fn open_session(&self) -> Option<&Session> {
        self.sessions.last().filter(|s| s.open)
    }

    /// SPEC §3 resident status on `day`; `None` while an open session that
    /// started in the seven days before could still tip it.
    pub(super) fn resident_on(&self, day: i32, p: &Params) -> Option<bool> {
        if self.hist.randomized {
            return Some(false);
        }
        let window = day - RESIDENT_LOOKBACK_DAYS..day;
        let mut count = window
            .clone()
            .filter(|&d| self.hist.qualified_on(d))
            .count() as u32;
        let mut pending = false;
        if let Some(open) = self.open_session() {
            if window.contains(&open.start_day) && !self.hist.qualified_on(open.start_day) {
                let before = if self.hist.presence_day == open.start_day {
                    self.hist.presence_s
                } else {
                    0
                };
                if before + open.dwell_s() >= p.resident_presence_s {
                    count += 1;
                } else {
                    pending = true;
                }
            }
        }
        if count >= p.resident_days {
            Some(true)
        } else if pending && count + 1 >= p.resident_days {
            None
        } else {
            Some(false)
        }
    }

    /// Whether a session is (or, open, already is certain to be) a visit.
    pub(super) fn is_visit(&self, s: &Session, p: &Params) -> Option<bool> {
        if !s.open {
            return Some(s.visit);
        }
        if s.last_us - s.first_us < p.min_dwell_us {
            return Some(false);
        }
        self.resident_on(s.start_day, p).map(|r| !r)
    }

    pub(super) fn class(&self, day: i32, p: &Params) -> Class {
        if self.hist.randomized {
            Class::Randomized
        } else if (day - p.loyalty_days..day).any(|d| self.hist.visited_on(d)) {
            Class::Returning
        } else {
            Class::New
        }
    }

    /// Closes the open session and folds it into the history.
    pub(super) fn close(&mut self, p: &Params) {
        let Some(idx) = self
            .sessions
            .len()
            .checked_sub(1)
            .filter(|&i| self.sessions[i].open)
        else {
            return;
        };
        // Every earlier session is closed, so status on the start day is known.
        let s = self.sessions[idx];
        let resident = self.resident_on(s.start_day, p) == Some(true);
        let visit = s.last_us - s.first_us >= p.min_dwell_us && !resident;
        let h = &mut self.hist;
        if h.presence_day == s.start_day {
            h.presence_s += s.dwell_s();
        } else if s.start_day > h.presence_day {
            h.presence_day = s.start_day;
            h.presence_s = s.dwell_s();
        }
        if h.presence_day == s.start_day && h.presence_s >= p.resident_presence_s {
            h.set(s.start_day, false);
        }
        if visit {
            h.set(s.start_day, true);
        }
        let s = &mut self.sessions[idx];
        s.open = false;
        s.visit = visit;
    }

    pub(super) fn strong(&mut self, t_us: i64, days: &LocalDays, p: &Params) {
        match self.sessions.last_mut() {
            Some(s) if s.open => {
                if t_us >= s.last_us {
                    if t_us - s.last_us <= p.gap_us {
                        s.last_us = t_us;
                        return;
                    }
                    self.close(p);
                } else if t_us >= s.first_us {
                    return;
                } else {
                    let prev_last = self.sessions.iter().rev().nth(1).map(|q| q.last_us);
                    let s = self.sessions.last_mut().expect("matched above");
                    if s.first_us - t_us <= p.gap_us
                        && prev_last.is_none_or(|l| t_us - l > p.gap_us)
                    {
                        s.first_us = t_us;
                        s.start_day = days.day_of(t_us);
                    }
                    return;
                }
            }
            Some(s) if t_us <= s.last_us => return,
            _ => {}
        }
        self.sessions.push(Session {
            first_us: t_us,
            last_us: t_us,
            start_day: days.day_of(t_us),
            open: true,
            visit: false,
        });
    }
}
