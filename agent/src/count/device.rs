//! One device's strong sessions and the SPEC §3 rules over them: when a
//! session is a visit, whether the device is a resident on a day, and
//! whether a visitor is new, returning or randomized.
//!
//! Invariant: only the last session can be open; a closed session's
//! `visit` was decided when it closed, with every earlier session known.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::history::{History, NO_DAY};
use super::{Params, RESIDENT_LOOKBACK_DAYS, US_PER_S};
use crate::days::LocalDays;
use crate::privacy::IdTable;

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

/// The devices in memory, each held in place beside its id
/// (`privacy::IdTable`): a frame's lookup misses the cache once, not at
/// the map's slot and then at a box (issue 20, perf), and no device is a
/// `malloc` of its own. Stored as the map it was.
pub(super) type Devices = IdTable<Device>;

/// One device in memory. 104 bytes, 120 with its id in `Devices`: a
/// crowd holds the device budget's 100,000 of them, and at 136 bytes
/// they were the largest part of its memory (issue 20).
/// Hence the packed mark, the last entry as a step back from
/// `last_window`, and seconds where microseconds were not needed.
#[derive(Debug, Clone)]
pub(super) struct Device {
    /// Sessions still needed by a window that is not final, oldest first;
    /// only the last can be open. Nearly every device has one, so it is
    /// held in place (stored as a list all the same).
    pub(super) sessions: SmallVec<[Session; 1]>,
    /// The newest window with a detection of this device.
    pub(super) last_window: i64,
    pub(super) hist: History,
    /// The day of the last entry pushed (`has_entry`).
    last_entry_day: i32,
    /// Its latest frame, and its first, in whole seconds (the Unix time's
    /// low 32 bits), memory only: which devices the budget spills first
    /// (`spill_over`). Taken back from a record, a device has both 0: one
    /// heard for long, the least recently.
    pub(super) seen_s: u32,
    pub(super) first_heard_s: u32,
    pub(super) mark: Mark,
    /// How many windows before `last_window` the last entry pushed was;
    /// `NO_ENTRY`: none was. Past `MAX_BACK` the entry is forgotten, so
    /// the next frame of that window pushes it again (entries may repeat).
    last_entry_back: u8,
    /// Whether the store holds a history for it: one that never was stored
    /// needs no delete when it goes (most devices are passers-by).
    pub(super) stored: bool,
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Device>() == 104);

const NO_ENTRY: u8 = u8::MAX;
const MAX_BACK: i64 = NO_ENTRY as i64 - 1;

/// A device as stored (a spilled record, a checkpoint's part): the layout
/// of the device before it was packed, which postcard reads by position.
#[derive(Serialize)]
struct StoredRef<'a> {
    sessions: &'a SmallVec<[Session; 1]>,
    /// (window, day) of the last entry pushed; (`i64::MIN`, `NO_DAY`): none.
    last_entry: (i64, i32),
    last_window: i64,
    hist: &'a History,
    stored: bool,
}

#[derive(Deserialize)]
struct Stored {
    sessions: SmallVec<[Session; 1]>,
    last_entry: (i64, i32),
    last_window: i64,
    hist: History,
    stored: bool,
}

impl Serialize for Device {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let last_entry = self.last_entry().unwrap_or((i64::MIN, NO_DAY));
        StoredRef {
            sessions: &self.sessions,
            last_entry,
            last_window: self.last_window,
            hist: &self.hist,
            stored: self.stored,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Device, D::Error> {
        let s = Stored::deserialize(d)?;
        let mut dev = Device::new(s.last_window, s.hist, 0);
        dev.sessions = s.sessions;
        dev.stored = s.stored;
        let (w, day) = s.last_entry;
        if w != i64::MIN {
            dev.note_entry(w, day);
        }
        Ok(dev)
    }
}

/// What `finalize_front` learnt of a device in the window it is deciding,
/// kept on the device so that a window's entries need not be sorted to be
/// grouped by device (the sort was ~110 of a frame's instructions, issue
/// 7). Valid only for the attempt it names, so a window that waits leaves
/// nothing behind; never stored. Packed: 10 bytes in place of 16, for
/// `Device`'s size (its fields are read and written by value).
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, packed)]
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
    /// A device first heard at `t_s` (whole seconds), newest in window
    /// `window`, with no sessions nor entries yet.
    pub(super) fn new(window: i64, hist: History, t_s: u32) -> Device {
        Device {
            sessions: SmallVec::new(),
            last_window: window,
            hist,
            last_entry_day: NO_DAY,
            seen_s: t_s,
            first_heard_s: t_s,
            mark: Mark::default(),
            last_entry_back: NO_ENTRY,
            stored: false,
        }
    }

    /// Whether the last entry pushed for this device is (`window`, `day`),
    /// so that another would repeat it.
    pub(super) fn has_entry(&self, window: i64, day: i32) -> bool {
        self.last_entry_back != NO_ENTRY
            && self.last_entry_day == day
            && self.last_window - i64::from(self.last_entry_back) == window
    }

    /// (window, day) of the last entry pushed, if it is remembered.
    pub(super) fn last_entry(&self) -> Option<(i64, i32)> {
        (self.last_entry_back != NO_ENTRY).then(|| {
            (
                self.last_window - i64::from(self.last_entry_back),
                self.last_entry_day,
            )
        })
    }

    /// Notes a detection in `window` on `day`, whose entry was pushed.
    pub(super) fn note_entry(&mut self, window: i64, day: i32) {
        self.last_window = self.last_window.max(window);
        let back = self.last_window - window;
        self.last_entry_back = if back <= MAX_BACK {
            back as u8
        } else {
            NO_ENTRY
        };
        self.last_entry_day = day;
    }

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
                    u64::from(self.hist.presence_s)
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
        let dwell_s = u32::try_from(s.dwell_s()).unwrap_or(u32::MAX);
        if h.presence_day == s.start_day {
            h.presence_s = h.presence_s.saturating_add(dwell_s);
        } else if s.start_day > h.presence_day {
            h.presence_day = s.start_day;
            h.presence_s = dwell_s;
        }
        if h.presence_day == s.start_day && u64::from(h.presence_s) >= p.resident_presence_s {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn session(first_us: i64, open: bool) -> Session {
        Session {
            first_us,
            last_us: first_us + 5,
            start_day: 3,
            open,
            visit: false,
        }
    }

    /// Records and checkpoints written before the device was packed read
    /// the same, and the packed device writes what they hold.
    #[test]
    fn a_device_is_stored_in_the_layout_it_always_had() {
        let hist = History {
            presence_day: 3,
            presence_s: 70_000,
            ..History::default()
        };
        let mut dev = Device::new(10, hist, 7);
        dev.sessions.push(session(1, false));
        dev.sessions.push(session(20, true));
        dev.stored = true;
        dev.note_entry(10, 3);
        dev.note_entry(8, 4);
        let bytes = postcard::to_allocvec(&dev).unwrap();
        let before = (&dev.sessions, (8i64, 4i32), 10i64, &hist, true);
        assert_eq!(bytes, postcard::to_allocvec(&before).unwrap());
        // 64-bit presence, as histories were stored, reads the same.
        assert_eq!(
            postcard::to_allocvec(&70_000u64).unwrap(),
            postcard::to_allocvec(&70_000u32).unwrap()
        );

        let back: Device = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.sessions, dev.sessions);
        assert_eq!((back.last_window, back.hist, back.stored), (10, hist, true));
        assert!(back.has_entry(8, 4));
        assert!(!back.has_entry(10, 3) && !back.has_entry(8, 3));
        assert_eq!((back.seen_s, back.first_heard_s), (0, 0));

        let none = Device::new(10, hist, 7);
        let bytes = postcard::to_allocvec(&none).unwrap();
        let before = (&none.sessions, (i64::MIN, NO_DAY), 10i64, &hist, false);
        assert_eq!(bytes, postcard::to_allocvec(&before).unwrap());
        let back: Device = postcard::from_bytes(&bytes).unwrap();
        assert!(!back.has_entry(10, NO_DAY) && !back.has_entry(10, 3));
    }

    /// An entry further back than the step can say is forgotten: the next
    /// frame of its window pushes it again, which entries allow.
    #[test]
    fn an_entry_far_back_is_pushed_again() {
        let mut dev = Device::new(1000, History::default(), 0);
        assert!(!dev.has_entry(1000, 1));
        dev.note_entry(1000, 1);
        assert!(dev.has_entry(1000, 1));
        dev.note_entry(1000 - MAX_BACK, 1);
        assert!(dev.has_entry(1000 - MAX_BACK, 1));
        dev.note_entry(1000 - MAX_BACK - 1, 1);
        assert_eq!(dev.last_window, 1000);
        assert!(!dev.has_entry(1000 - MAX_BACK - 1, 1));
        assert!(!dev.has_entry(1000, 1));
        dev.note_entry(1001, 2);
        assert!(dev.has_entry(1001, 2) && !dev.has_entry(1001, 1));
    }
}
