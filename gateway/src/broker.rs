//! The embedded broker (rumqttd, MQTT v5) for a single box with no broker
//! installed: `[broker] enabled = true`. Production uses Mosquitto with TLS
//! and the ACL in gateway/deploy: the embedded one has no per-store
//! authorization.

use anyhow::Result;
use tracing::info;

/// Starts the broker on its own thread, listening on `listen`.
pub fn start(listen: &str) -> Result<()> {
    let addr: std::net::SocketAddr = listen.parse().map_err(|_| {
        anyhow::anyhow!("[broker] listen = {listen:?}: expected host:port, e.g. 127.0.0.1:1883")
    })?;
    // Bind once to say clearly when the port is taken (rumqttd would only log it).
    drop(
        std::net::TcpListener::bind(addr)
            .map_err(|e| anyhow::anyhow!("[broker] listen = {listen}: {e}"))?,
    );
    let text = format!(
        r#"
id = 0
[router]
max_connections = 10010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v5.1]
name = "footfall"
listen = "{addr}"
next_connection_delay_ms = 1
[v5.1.connections]
connection_timeout_ms = 60000
max_payload_size = 1048576
max_inflight_count = 100
dynamic_filters = true
"#
    );
    let config: rumqttd::Config = toml::from_str(&text)?;
    let mut broker = rumqttd::Broker::new(config);
    std::thread::Builder::new()
        .name("broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })?;
    info!(%addr, "embedded broker listening (MQTT v5, no TLS: for a single box)");
    Ok(())
}
