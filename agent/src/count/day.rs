//! Reporting local days (SPEC §5) once every window that overlaps them is
//! final.

use footfall_report::{round_people, DayReport, Report, DAY_SCHEMA};

use super::Counter;

impl Counter {
    pub(super) fn report_days_through(&mut self, last: i32) {
        let Some(mut day) = self.state.next_day else {
            return;
        };
        while day <= last {
            let acc = self.state.days.remove(&day).unwrap_or_default();
            let mode = self.privacy.mode;
            let v = |x| mode.visit_figure(x);
            let a = |x| mode.across_days_figure(x);
            self.out.push(Report::Day(DayReport {
                schema: DAY_SCHEMA.into(),
                store_id: self.meta.store_id.clone(),
                agent_id: self.meta.agent_id.clone(),
                seq: 0,
                date: self.days.date_string(day),
                visits: v(acc.visits),
                unique_visitors: v(acc.unique_visitors),
                visitors_new: a(acc.new),
                visitors_returning: a(acc.returning),
                visitors_randomized: v(acc.randomized),
                residents: a(acc.residents),
                person_hours_est: (acc.people_windows > 0 && !acc.people_missing)
                    .then(|| round_people(acc.person_hours)),
                entries_est: (acc.people_windows > 0 && !acc.people_missing)
                    .then(|| round_people(acc.entries)),
                privacy_mode: mode,
                agent_version: self.meta.agent_version.clone(),
                params_hash: self.meta.params_hash.clone(),
            }));
            day += 1;
        }
        self.state.next_day = Some(day);
        self.state.randomized_visitors.keep_from(day);
    }
}
