//! The one place a payload is accepted, whatever brought it (MQTT, the
//! HTTP ingest endpoint, the `ingest` command): validate → store →
//! dead-letter → tally. It returns what to ack; committing and acking are
//! the caller's, which commits before it acks (SPEC §6).
//!
//! Invariants: a payload that fails validation, or a report whose key is
//! stored with other counts, is kept in dead letters with its reason and
//! still acked, so that it is not sent forever; a store error is returned,
//! and then nothing is acked.

use anyhow::Result;
use footfall_report::topic::{self, Kind};
use footfall_report::{Status, DAY_SCHEMA, WINDOW_SCHEMA};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::calendar::now_s;
use crate::store::{AgentInfo, DeadLetter, Put, ReportStore};
use crate::validate::validate;

/// What one batch did, for logs and tests, and (as JSON) what the HTTP
/// ingest endpoint answers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub inserted: u64,
    pub duplicates: u64,
    pub conflicts: u64,
    #[serde(rename = "rejected")]
    pub dead: u64,
    #[serde(skip)]
    pub statuses: u64,
}

impl Tally {
    pub fn add(&mut self, o: &Tally) {
        self.inserted += o.inserted;
        self.duplicates += o.duplicates;
        self.conflicts += o.conflicts;
        self.dead += o.dead;
        self.statuses += o.statuses;
    }
}

/// Stores one message that came on `topic_name` (or from a file line that
/// names its topic); returns the (store, agent, seq) to ack, if any.
pub fn accept(
    store: &dyn ReportStore,
    topic_name: &str,
    payload: &[u8],
    max_payload: usize,
    tally: &mut Tally,
) -> Result<Option<(String, String, u64)>> {
    Ok(
        accept_batch(store, &[(topic_name, payload)], max_payload, tally)?
            .pop()
            .flatten(),
    )
}

/// What one message is, once read: what `read` makes of it, before the
/// store sees it.
pub enum Read {
    Report(String, String, Box<footfall_report::Report>),
    Status(String, String, Box<Status>),
    Dead(String),
}

/// Reads and validates one message; needs no store, so the MQTT side
/// reads a message as it arrives, while the batch before is stored.
pub fn read(topic_name: &str, payload: &[u8], max_payload: usize) -> Read {
    match topic::parse(topic_name) {
        Some((s, a, kind @ (Kind::Window | Kind::Day))) => {
            match validate(payload, Some((s, a, kind)), max_payload) {
                Ok(report) => Read::Report(s.to_string(), a.to_string(), Box::new(report)),
                Err(reject) => Read::Dead(reject.to_string()),
            }
        }
        Some((_, _, Kind::Status)) if payload.len() > max_payload => Read::Dead(format!(
            "status of {} bytes is larger than max_payload_bytes = {max_payload}",
            payload.len()
        )),
        Some((s, a, Kind::Status)) => match serde_json::from_slice::<Status>(payload) {
            Ok(status) => Read::Status(s.to_string(), a.to_string(), Box::new(status)),
            Err(e) => Read::Dead(format!("not a footfall status: {e}")),
        },
        _ => Read::Dead("not a footfall/v1/{store}/{agent}/{window|day|status} topic".into()),
    }
}

/// `accept` for many messages at once: the reports go to the store
/// together (`put_many`: one statement for a batch on PostgreSQL). Returns
/// what to ack for each message, in order.
pub fn accept_batch(
    store: &dyn ReportStore,
    messages: &[(&str, &[u8])],
    max_payload: usize,
    tally: &mut Tally,
) -> Result<Vec<Option<(String, String, u64)>>> {
    let read: Vec<Read> = messages
        .iter()
        .map(|(topic_name, payload)| read(topic_name, payload, max_payload))
        .collect();
    accept_read(store, messages, &read.iter().collect::<Vec<_>>(), tally)
}

/// `accept_batch` of messages already read (`read[i]` is `messages[i]`
/// read); a batch the store refused is offered again as it is.
pub fn accept_read(
    store: &dyn ReportStore,
    messages: &[(&str, &[u8])],
    read: &[&Read],
    tally: &mut Tally,
) -> Result<Vec<Option<(String, String, u64)>>> {
    let dead = |store: &dyn ReportStore,
                topic_name: &str,
                payload: &[u8],
                reason: String,
                tally: &mut Tally|
     -> Result<()> {
        tally.dead += 1;
        warn!(topic = topic_name, %reason, "dead letter");
        store.dead_letter(&DeadLetter {
            received_unix_s: now_s(),
            source: topic_name.to_string(),
            reason,
            payload: String::from_utf8_lossy(&payload[..payload.len().min(4096)]).into_owned(),
        })?;
        Ok(())
    };
    let reports: Vec<footfall_report::Report> = read
        .iter()
        .filter_map(|r| match r {
            Read::Report(_, _, report) => Some((**report).clone()),
            _ => None,
        })
        .collect();
    let mut puts = store.put_many(&reports)?.into_iter();
    let mut acks = Vec::with_capacity(messages.len());
    for (r, (topic_name, payload)) in read.iter().zip(messages) {
        acks.push(match *r {
            Read::Report(s, a, report) => {
                match puts.next().expect("one result per report") {
                    Put::Inserted => tally.inserted += 1,
                    Put::Duplicate => tally.duplicates += 1,
                    Put::Conflict => {
                        tally.conflicts += 1;
                        dead(
                            store,
                            topic_name,
                            payload,
                            format!(
                                "conflict: {:?} is stored with other counts; the first is kept",
                                report.key().period
                            ),
                            tally,
                        )?;
                    }
                }
                Some((s.clone(), a.clone(), report.seq()))
            }
            Read::Status(s, a, status) => {
                tally.statuses += 1;
                store.set_status(&AgentInfo {
                    store_id: s.clone(),
                    agent_id: a.clone(),
                    last_seen_unix_s: now_s(),
                    status: (**status).clone(),
                })?;
                None
            }
            Read::Dead(reason) => {
                dead(store, topic_name, payload, reason.clone(), tally)?;
                None
            }
        });
    }
    Ok(acks)
}

/// Report lines as agents' `--emit` writes them, each accepted like an
/// MQTT message on the topic its agent would use, then committed: what
/// the `ingest` command and the HTTP ingest endpoint do. `source` names
/// the input in dead letters (`file:line`).
pub fn accept_jsonl(
    store: &dyn ReportStore,
    source: &str,
    text: &[u8],
    max: usize,
) -> Result<Tally> {
    let mut tally = Tally::default();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let topic = serde_json::from_slice::<serde_json::Value>(line)
            .ok()
            .and_then(|v| {
                let kind = match v.get("schema")?.as_str()? {
                    WINDOW_SCHEMA => Kind::Window,
                    DAY_SCHEMA => Kind::Day,
                    _ => return None,
                };
                Some(topic::topic(
                    v.get("store_id")?.as_str()?,
                    v.get("agent_id")?.as_str()?,
                    kind,
                ))
            })
            .unwrap_or_else(|| format!("{source}:{}", i + 1));
        accept(store, &topic, line, max, &mut tally)?;
    }
    store.commit()?;
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Query, SledStore};
    use footfall_report::testing;

    fn store() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("g"), 1 << 20).unwrap();
        (dir, s)
    }

    fn payload(w: &footfall_report::WindowReport) -> Vec<u8> {
        serde_json::to_vec(w).unwrap()
    }

    const TOPIC: &str = "footfall/v1/s1/a1/window";

    #[test]
    fn a_report_is_stored_once_and_acked_each_time_it_comes() {
        let (_dir, s) = store();
        let mut w = testing::window("s1", "a1", 900, 900);
        w.seq = 7;
        let mut t = Tally::default();
        let ack = accept(&s, TOPIC, &payload(&w), 65_536, &mut t).unwrap();
        assert_eq!(ack, Some(("s1".into(), "a1".into(), 7)));
        let ack = accept(&s, TOPIC, &payload(&w), 65_536, &mut t).unwrap();
        assert_eq!(ack, Some(("s1".into(), "a1".into(), 7)));
        assert_eq!((t.inserted, t.duplicates, t.dead), (1, 1, 0));
        assert_eq!(s.windows(&Query::default()).unwrap(), vec![w]);
        assert!(s.dead_letters().unwrap().is_empty());
    }

    #[test]
    fn a_conflict_keeps_the_first_report_dead_letters_the_second_and_acks_it() {
        let (_dir, s) = store();
        let first = testing::window("s1", "a1", 900, 900);
        let mut second = first.clone();
        second.frames = 3;
        second.seq = 1;
        let mut t = Tally::default();
        accept(&s, TOPIC, &payload(&first), 65_536, &mut t).unwrap();
        let ack = accept(&s, TOPIC, &payload(&second), 65_536, &mut t).unwrap();
        assert_eq!(ack, Some(("s1".into(), "a1".into(), 1)));
        assert_eq!((t.inserted, t.conflicts, t.dead), (1, 1, 1));
        assert_eq!(s.windows(&Query::default()).unwrap(), vec![first]);
        let dead = s.dead_letters().unwrap();
        assert!(dead[0].reason.starts_with("conflict:"), "{dead:?}");
        assert_eq!(dead[0].source, TOPIC);
    }

    #[test]
    fn an_invalid_payload_is_dead_lettered_with_its_reason_and_not_acked() {
        let (_dir, s) = store();
        let mut t = Tally::default();
        let mut w = testing::window("s1", "a1", 900, 900);
        w.visitors = Some(1);
        let ack = accept(&s, TOPIC, &payload(&w), 65_536, &mut t).unwrap();
        assert_eq!(ack, None);
        let ack = accept(&s, "footfall/v1/s1/a1/nonsense", b"{}", 65_536, &mut t).unwrap();
        assert_eq!(ack, None);
        assert_eq!((t.inserted, t.dead), (0, 2));
        let dead = s.dead_letters().unwrap();
        assert!(dead[0].reason.contains("must equal visitors"), "{dead:?}");
        assert!(dead[1].reason.contains("not a footfall/v1/"), "{dead:?}");
        assert!(s.windows(&Query::default()).unwrap().is_empty());
    }

    #[test]
    fn a_status_is_kept_typed_and_a_malformed_one_is_dead_lettered() {
        let (_dir, s) = store();
        let mut t = Tally::default();
        let status = testing::online("s1", "a1", "Asia/Kolkata");
        let topic = "footfall/v1/s1/a1/status";
        accept(
            &s,
            topic,
            &serde_json::to_vec(&status).unwrap(),
            65_536,
            &mut t,
        )
        .unwrap();
        accept(&s, topic, b"[1, 2]", 65_536, &mut t).unwrap();
        assert_eq!((t.statuses, t.dead), (1, 1));
        assert_eq!(s.agents().unwrap()[0].status, status);
        assert!(s.dead_letters().unwrap()[0]
            .reason
            .starts_with("not a footfall status"));
    }

    #[test]
    fn report_lines_are_accepted_on_their_own_topic_and_bad_lines_named_by_line() {
        let (_dir, s) = store();
        let mut text = payload(&testing::window("s1", "a1", 0, 900));
        text.extend_from_slice(b"\n\nnot json\n");
        text.extend_from_slice(
            &serde_json::to_vec(&testing::day("s1", "a1", "1970-01-01")).unwrap(),
        );
        let t = accept_jsonl(&s, "r.jsonl", &text, 65_536).unwrap();
        assert_eq!((t.inserted, t.dead), (2, 1));
        assert_eq!(s.dead_letters().unwrap()[0].source, "r.jsonl:3");
    }
}
