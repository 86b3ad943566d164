//! MQTT connection settings shared by agent and gateway: `mqtt://host:port`
//! or `mqtts://host:port`, a CA file, a client certificate and key for
//! mutual TLS, a user name and a password file. MQTT v5, so that a broker
//! refusing a publish answers with a reason code instead of dropping it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rumqttc::v5::MqttOptions;
use rumqttc::Transport;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub url: String,
    pub client_id: String,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub keepalive_s: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("url {0:?}: expected mqtt://host:port or mqtts://host:port")]
    Url(String),
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cert_file and key_file go together: set both or neither")]
    HalfClientAuth,
}

/// (tls, host, port) of a broker URL; the port defaults to 1883 / 8883.
pub fn parse_url(url: &str) -> Result<(bool, String, u16), SettingsError> {
    let bad = || SettingsError::Url(url.to_string());
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else {
        return Err(bad());
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
        None => (rest, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() || host.contains('/') {
        return Err(bad());
    }
    Ok((tls, host.to_string(), port))
}

fn read(path: &Path) -> Result<Vec<u8>, SettingsError> {
    std::fs::read(path).map_err(|source| SettingsError::File {
        path: path.to_path_buf(),
        source,
    })
}

impl Settings {
    /// Client options: a persistent session (clean start off, long expiry)
    /// so QoS 1 messages wait in the broker while a client is away.
    pub fn options(&self) -> Result<MqttOptions, SettingsError> {
        let (tls, host, port) = parse_url(&self.url)?;
        let mut o = MqttOptions::new(self.client_id.clone(), host, port);
        o.set_keep_alive(Duration::from_secs(self.keepalive_s.max(5)))
            .set_clean_start(false)
            .set_session_expiry_interval(Some(7 * 24 * 3600))
            .set_max_packet_size(Some(1 << 20));
        if let Some(user) = &self.username {
            let password = match &self.password_file {
                Some(p) => String::from_utf8_lossy(&read(p)?).trim_end().to_string(),
                None => String::new(),
            };
            o.set_credentials(user.clone(), password);
        }
        if tls {
            let ca = match &self.ca_file {
                Some(p) => read(p)?,
                None => Vec::new(),
            };
            let client_auth = match (&self.cert_file, &self.key_file) {
                (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
                (None, None) => None,
                _ => return Err(SettingsError::HalfClientAuth),
            };
            o.set_transport(Transport::tls(ca, client_auth, None));
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("mqtt://localhost:1884").unwrap(),
            (false, "localhost".into(), 1884)
        );
        assert_eq!(
            parse_url("mqtts://hq.example").unwrap(),
            (true, "hq.example".into(), 8883)
        );
        assert!(parse_url("http://x").is_err());
        assert!(parse_url("mqtt://:1").is_err());
        assert!(parse_url("mqtt://h:99999").is_err());
    }
}
