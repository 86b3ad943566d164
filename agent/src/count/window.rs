//! Making a window final (SPEC §4): its counts are computed once every
//! device status they depend on is decided, or not at all yet.

use footfall_report::{
    dwell_bucket, round_people, PrivacyMode, Report, Sketch, WindowReport, DWELL_EDGES_S,
    WINDOW_SCHEMA,
};

use super::device::{Class, Device, Mark};
use super::history::NO_DAY;
use super::state::WindowAcc;
use super::{Counter, Finalized, HistoryError, HistoryStore, US_PER_S};
use crate::privacy::DeviceId;

impl Counter {
    /// Computes the oldest pending window, if every status it needs is known.
    pub(super) fn finalize_front(
        &mut self,
        store: &mut dyn HistoryStore,
    ) -> Result<Finalized, HistoryError> {
        let p = self.params;
        let nw = self
            .state
            .next_window
            .expect("called with a pending window");
        let (ws, we) = (nw * p.window_us, (nw + 1) * p.window_us);
        let acc = self.state.windows.pop_front().unwrap_or_default();
        self.attempt += 1;
        let attempt = self.attempt;

        // Decide everything first, so that waiting leaves no trace. The
        // entries come in detection order, with repeats; a device's
        // sessions are judged at its first entry, its days at each. A
        // spilled device is taken out for its entry and spilled again
        // with its mark: the window never brings the spill into memory.
        let mut d = Decided {
            p,
            ws,
            we,
            attempt,
            visits: Vec::new(),
            resident_days: Vec::new(),
            detected: 0,
            passersby: 0,
            dwell_counts: vec![0u64; DWELL_EDGES_S.len()],
            dwell_sum_s: 0,
        };
        let mut spilled = Vec::new();
        let mut inert = Vec::new();
        // The devices of the entries a few ahead asked for, as
        // `Counter::detections` does for frames: a crowd's window has
        // 100,000 entries, each a device out of cache.
        const AHEAD: usize = 8;
        let ask = |i: usize, c: &Counter, store: &dyn HistoryStore| {
            if i < acc.entries.len() {
                c.prefetch_device(acc.entries.get(i).0, store);
            }
        };
        for i in 0..AHEAD {
            ask(i, self, store);
        }
        for i in 0..acc.entries.len() {
            ask(i + AHEAD, self, store);
            let (id, day) = acc.entries.get(i);
            let decided = match self.state.devices.get_mut(id) {
                Some(dev) => d.entry(id, day, dev),
                None if store.inert(id, nw).is_some() => {
                    inert.push(id);
                    true
                }
                None => match self.decide_spilled(id, day, &mut d, store) {
                    Ok(decided) => {
                        spilled.push(id);
                        decided
                    }
                    Err(e) => {
                        self.state.windows.push_front(acc);
                        return Err(e);
                    }
                },
            };
            if !decided {
                return Ok(self.not_yet(acc));
            }
        }
        // Inert spilled devices (`spill::inert`): detected and passing by,
        // each once, as `Decided::entry` would have found them; those the
        // window counts have no entry in it. They are forgotten by
        // `evict_spilled` without a list of them.
        inert.sort_unstable();
        inert.dedup();
        let inert = inert.len() as u64 + acc.inert;
        d.detected += inert;
        d.passersby += inert;
        // Handed over rather than copied when nothing waits there (as a
        // rule: `evict_spilled` takes it all): a crowd's window spills a
        // hundred thousand entries, a 2 MB list, and the copy was made
        // while the window's tables are still held (issue 20).
        if self.finalized_spilled.is_empty() {
            self.finalized_spilled = spilled;
        } else {
            self.finalized_spilled.extend(spilled);
        }
        let Decided {
            visits,
            mut resident_days,
            detected,
            passersby,
            dwell_counts,
            dwell_sum_s,
            ..
        } = d;
        // Residents are few: sorting them groups each device's days.
        resident_days.sort_unstable();
        resident_days.dedup();

        // Commit.
        let mut sketch = Sketch::new();
        let (mut visitors, mut new, mut returning, mut randomized) = (0u64, 0u64, 0u64, 0u64);
        let mut last_dev = None;
        let next_day = self.state.next_day.unwrap_or(NO_DAY);
        for v in &visits {
            if last_dev != Some(v.dev) {
                last_dev = Some(v.dev);
                visitors += 1;
                sketch.insert(v.dev.0);
                match v.class {
                    Class::New => new += 1,
                    Class::Returning => returning += 1,
                    Class::Randomized => randomized += 1,
                }
            }
            if v.day < next_day {
                continue;
            }
            let first = self.with_device(v.dev, store, |dev| {
                let first = dev.hist.visitor_day != v.day;
                dev.hist.visitor_day = v.day;
                first
            })?;
            let day = self.state.days.entry(v.day).or_default();
            day.visits += 1;
            if first {
                day.unique_visitors += 1;
                match v.class {
                    Class::New => day.new += 1,
                    Class::Returning => day.returning += 1,
                    Class::Randomized => day.randomized += 1,
                }
            }
        }
        let mut residents = 0u64;
        let mut last_dev = None;
        for &(id, day) in &resident_days {
            if last_dev != Some(id) {
                last_dev = Some(id);
                residents += 1;
            }
            if day < next_day {
                continue;
            }
            let first = self.with_device(id, store, |dev| {
                let first = dev.hist.resident_day != day;
                dev.hist.resident_day = day;
                first
            })?;
            if first {
                self.state.days.entry(day).or_default().residents += 1;
            }
        }
        let people = self.people_estimate(&acc, nw, &resident_days);
        let mode = self.privacy.mode;
        let v = |x| mode.visit_figure(x);
        let a = |x| mode.across_days_figure(x);
        self.out.push(Report::Window(WindowReport {
            schema: WINDOW_SCHEMA.into(),
            store_id: self.meta.store_id.clone(),
            agent_id: self.meta.agent_id.clone(),
            seq: 0,
            window_start: ws / US_PER_S,
            window_end: we / US_PER_S,
            frames: acc.frames,
            frames_no_signal: acc.frames_no_signal,
            detected: v(detected),
            visits: v(visits.len() as u64),
            visitors: v(visitors),
            visitors_new: a(new),
            visitors_returning: a(returning),
            visitors_randomized: v(randomized),
            passersby: v(passersby),
            residents: a(residents),
            dwell_edges_s: DWELL_EDGES_S.to_vec(),
            dwell_counts: mode.visit_figure(dwell_counts),
            dwell_sum_s: v(dwell_sum_s),
            visitor_sketch: mode.visit_figure(sketch),
            present_est: people.map(|p| p.0),
            present_lo: people.map(|p| p.1),
            present_hi: people.map(|p| p.2),
            entries_est: people.map(|p| p.3),
            privacy_mode: mode,
            agent_version: self.meta.agent_version.clone(),
            params_hash: self.meta.params_hash.clone(),
        }));
        self.state.next_window = Some(nw + 1);
        // SPEC §5: a day is final once every window that overlaps it is.
        if let Some(d) = self.state.next_day {
            let mut day = d;
            while self.days.bounds(day).1 <= we {
                day += 1;
            }
            if day > d {
                self.report_days_through(day - 1);
            }
        }
        Ok(Finalized::Done)
    }

    /// SPEC §8 for the window being made final: (present, lo, hi,
    /// entries), rounded as reported, added to the window's day; `None`
    /// when the counter estimates no people or the window was only partly
    /// observed. Residents (`resident_days`, sorted) are not people.
    fn people_estimate(
        &mut self,
        acc: &WindowAcc,
        nw: i64,
        resident_days: &[(DeviceId, i32)],
    ) -> Option<(f64, f64, f64, f64)> {
        let calibration = self.people.as_ref()?;
        let day = self.days.day_of(nw * self.params.window_us);
        let before = self.state.people_before.take();
        let unreported = self.state.next_day.is_some_and(|n| day >= n);
        if !acc.people.available() {
            if unreported {
                self.state.days.entry(day).or_default().people_missing = true;
            }
            return None;
        }
        let features = if self.privacy.mode == PrivacyMode::Ephemeral {
            self.epoch_features(&acc.epochs)
        } else {
            acc.people.features(self.params.window_us, |id| {
                resident_days.binary_search_by_key(&id, |r| r.0).is_ok()
            })
        };
        if let Some(log) = &mut self.features {
            log.push((nw * self.params.window_us / US_PER_S, features));
        }
        let e = calibration.estimate(&features);
        let present = round_people(e.present);
        let before = before.filter(|(w, _)| *w == nw - 1).map(|(_, p)| p);
        let entries = round_people(calibration.entries(present, before));
        self.state.people_before = Some((nw, present));
        if unreported {
            let d = self.state.days.entry(day).or_default();
            d.person_hours += present * self.params.window_us as f64 / (3600.0 * US_PER_S as f64);
            d.entries += entries;
            d.people_windows += 1;
        }
        Some((present, round_people(e.lo), round_people(e.hi), entries))
    }

    /// `Decided::entry` for a spilled device, which is spilled again.
    fn decide_spilled(
        &mut self,
        id: DeviceId,
        day: i32,
        d: &mut Decided,
        store: &mut dyn HistoryStore,
    ) -> Result<bool, HistoryError> {
        let mut dev = self
            .take_spilled(id, store)?
            .expect("a device with an entry in a pending window is in memory or spilled");
        let decided = d.entry(id, day, &mut dev);
        self.put_spilled(id, &dev, store)?;
        Ok(decided)
    }

    pub(super) fn not_yet(&mut self, acc: WindowAcc) -> Finalized {
        self.state.windows.push_front(acc);
        Finalized::NotYet
    }
}

struct Visit {
    dev: DeviceId,
    day: i32,
    class: Class,
}

/// What a window's entries decided so far in one attempt.
struct Decided {
    p: super::Params,
    ws: i64,
    we: i64,
    attempt: u64,
    visits: Vec<Visit>,
    resident_days: Vec<(DeviceId, i32)>,
    detected: u64,
    passersby: u64,
    dwell_counts: Vec<u64>,
    dwell_sum_s: u64,
}

impl Decided {
    /// One entry (device `id` detected on local `day`); false while a
    /// status it needs is not decided yet.
    fn entry(&mut self, id: DeviceId, day: i32, dev: &mut Device) -> bool {
        let (p, ws, we) = (&self.p, self.ws, self.we);
        if dev.mark.attempt != self.attempt {
            let mut visit_in_w = false;
            for s in &dev.sessions {
                if s.last_us < ws || s.first_us >= we {
                    continue;
                }
                match dev.is_visit(s, p) {
                    None => return false,
                    Some(false) => continue,
                    Some(true) => {}
                }
                visit_in_w = true;
                if s.first_us >= ws {
                    self.visits.push(Visit {
                        dev: id,
                        day: s.start_day,
                        class: dev.class(s.start_day, p),
                    });
                }
                if s.last_us < we && !s.open {
                    self.dwell_counts[dwell_bucket(s.dwell_s())] += 1;
                    self.dwell_sum_s += s.dwell_s();
                }
            }
            dev.mark = Mark {
                attempt: self.attempt,
                detected: false,
                visit: visit_in_w,
            };
        }
        match dev.resident_on(day, p) {
            None => return false,
            Some(true) => self.resident_days.push((id, day)),
            Some(false) if !dev.mark.detected => {
                dev.mark.detected = true;
                self.detected += 1;
                self.passersby += u64::from(!dev.mark.visit);
            }
            Some(false) => {}
        }
        true
    }
}
