//! MQTT topics of SPEC §6: `footfall/v1/{store_id}/{agent_id}/{kind}`.

use std::fmt;

pub const PREFIX: &str = "footfall/v1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Window,
    Day,
    Status,
    Live,
    Ack,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Window => "window",
            Kind::Day => "day",
            Kind::Status => "status",
            Kind::Live => "live",
            Kind::Ack => "ack",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "window" => Kind::Window,
            "day" => Kind::Day,
            "status" => Kind::Status,
            "live" => Kind::Live,
            "ack" => Kind::Ack,
            _ => return None,
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The topic for one agent's messages of one kind.
pub fn topic(store_id: &str, agent_id: &str, kind: Kind) -> String {
    format!("{PREFIX}/{store_id}/{agent_id}/{kind}")
}

/// Splits a topic into (store_id, agent_id, kind); `None` when it is not ours.
pub fn parse(topic: &str) -> Option<(&str, &str, Kind)> {
    let rest = topic.strip_prefix(PREFIX)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let (store, agent, kind) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || store.is_empty() || agent.is_empty() {
        return None;
    }
    Some((store, agent, Kind::parse(kind)?))
}

/// Store and agent ids become topic levels, so they must not contain MQTT
/// wildcards or separators; returns what is wrong with `id`, if anything.
pub fn id_problem(id: &str) -> Option<&'static str> {
    if id.is_empty() {
        Some("must not be empty")
    } else if id.len() > 64 {
        Some("must be at most 64 characters")
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        Some("may only contain ASCII letters, digits, '-', '_' and '.'")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip() {
        let t = topic("store-7", "door", Kind::Window);
        assert_eq!(t, "footfall/v1/store-7/door/window");
        assert_eq!(parse(&t), Some(("store-7", "door", Kind::Window)));
        assert_eq!(parse("footfall/v1/a/b/c/window"), None);
        assert_eq!(parse("footfall/v1/a/b/nope"), None);
        assert_eq!(parse("other/v1/a/b/window"), None);
    }

    #[test]
    fn ids_with_wildcards_are_refused() {
        assert!(id_problem("shop-1").is_none());
        assert!(id_problem("a/b").is_some());
        assert!(id_problem("a+").is_some());
        assert!(id_problem("").is_some());
    }
}
