//! Key layout of the sled trees: `store \0 agent \0 time`, the time as
//! 8-byte big-endian with the sign bit flipped so that keys sort by time.

use super::Query;

pub(super) fn time_key(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

pub(super) const HOUR: i64 = 3_600;
/// Set in the default tree once `hours`, `hour_sketches` and `day_windows`
/// hold every stored window (`hours-built` marked hours that held their
/// sketches, `hours-built-2` hours without `day_windows`).
pub(super) const HOURS_BUILT: &[u8] = b"hours-built-3";

/// Set in the default tree once `local_days` holds every stored window,
/// summed in the zone its store had when the mark was set or the window came.
pub(super) const LOCAL_DAYS_BUILT: &[u8] = b"local-days-built-1";

/// The `local_days` key of a `windows` key: the same store and agent, the
/// local midnight the window's day starts at.
pub(super) fn local_day_key(window_key: &[u8], midnight: i64) -> Vec<u8> {
    let mut k = window_key[..window_key.len() - 8].to_vec();
    k.extend_from_slice(&time_key(midnight));
    k
}

/// The `day_windows` key of a `windows` key: the same store and agent, the
/// UTC day.
pub(super) fn day_key(window_key: &[u8], window_start: i64) -> Vec<u8> {
    let mut k = window_key[..window_key.len() - 8].to_vec();
    k.extend_from_slice(&time_key(window_start.div_euclid(86_400) * 86_400));
    k
}

/// The `hours` key of a `windows` key: the same store and agent, the hour.
pub(super) fn hour_key(window_key: &[u8], window_start: i64) -> Vec<u8> {
    let mut k = window_key[..window_key.len() - 8].to_vec();
    k.extend_from_slice(&time_key(window_start.div_euclid(HOUR) * HOUR));
    k
}

/// Store, agent and time of a `windows` or `hours` key.
pub(super) fn split_key(k: &[u8]) -> Option<(String, String, i64)> {
    let (names, t) = k.split_at_checked(k.len().checked_sub(8)?)?;
    let names = std::str::from_utf8(names.strip_suffix(&[0])?).ok()?;
    let (store, agent) = names.split_once('\0')?;
    let t = (u64::from_be_bytes(t.try_into().ok()?) ^ (1 << 63)) as i64;
    Some((store.to_string(), agent.to_string(), t))
}

pub(super) fn prefix(store: &str, agent: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(store.len() + agent.len() + 10);
    k.extend_from_slice(store.as_bytes());
    k.push(0);
    k.extend_from_slice(agent.as_bytes());
    k.push(0);
    k
}

/// The key prefix of the query's one store (store, then its 0 byte), or of
/// every store.
pub(super) fn store_prefix(q: &Query) -> Vec<u8> {
    q.store_id
        .as_deref()
        .map(|s| prefix(s, "")[..s.len() + 1].to_vec())
        .unwrap_or_default()
}
