//! `footfall-agent doctor`: checks what usually goes wrong on a new store
//! box, one line each, and says what to do. Exit status 1 when any check
//! fails. It never prints a MAC: it counts frames, it does not parse them.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::Config;

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// What was found, and when not ok, what to do.
    pub detail: String,
}

fn ok(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok: true,
        detail: detail.into(),
    }
}

fn fail(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok: false,
        detail: detail.into(),
    }
}

/// ARPHRD types of 802.11 capture interfaces (linux/if_arp.h).
fn arphrd_name(t: u32) -> Option<&'static str> {
    match t {
        801 => Some("802.11"),
        802 => Some("prism"),
        803 => Some("radiotap"),
        804 => Some("802.11 + AVS"),
        _ => None,
    }
}

pub fn run(config: &Config, listen_s: u64) -> Vec<Check> {
    let mut out = Vec::new();
    out.push(ok(
        "config",
        format!(
            "{} is valid (params_hash {})",
            config.path.display(),
            config.params_hash()
        ),
    ));
    match (&config.interface, &config.capture_file) {
        (Some(iface), _) => out.extend(interface_checks(iface, config.snaplen, listen_s)),
        (None, Some(f)) => out.push(if f.is_file() {
            ok("capture", format!("reads the file {}", f.display()))
        } else {
            fail(
                "capture",
                format!("[capture] file {} does not exist", f.display()),
            )
        }),
        (None, None) => out.push(fail(
            "capture",
            "[capture] sets neither interface nor file: set interface = \"wlan0mon\"",
        )),
    }
    out.push(key_check(&config.key_file));
    out.push(state_check(&config.storage_path));
    out.push(clock_check());
    match &config.mqtt {
        Some(m) => out.extend(broker_checks(&m.settings)),
        None => out.push(fail(
            "broker",
            "[mqtt] url is not set: reports cannot reach HQ (set url = \"mqtts://host:8883\")",
        )),
    }
    out
}

fn interface_checks(iface: &str, snaplen: u32, listen_s: u64) -> Vec<Check> {
    let sys = Path::new("/sys/class/net").join(iface);
    if !sys.exists() {
        return vec![fail(
            "interface",
            format!("{iface} does not exist: run `firmware-config/monitor-mode PHY --name {iface}` (iw dev lists the cards)"),
        )];
    }
    let mut out = vec![ok("interface", format!("{iface} exists"))];
    let t: u32 = std::fs::read_to_string(sys.join("type"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    match arphrd_name(t) {
        Some(name) => out.push(ok(
            "monitor mode",
            format!("{iface} captures {name} frames"),
        )),
        None => {
            out.push(fail(
                "monitor mode",
                format!("{iface} is not in monitor mode (ARPHRD type {t}): run `firmware-config/monitor-mode {iface} --name {iface}mon` and capture on that"),
            ));
            return out;
        }
    }
    if t != 803 {
        out.push(fail("link type", format!("{iface} gives {} headers, not radiotap: no signal strength, so every frame counts as strong; prefer a driver with radiotap", arphrd_name(t).unwrap_or("?"))));
    }
    let cap = pcap::Capture::from_device(iface).and_then(|c| {
        c.snaplen(snaplen as i32)
            .timeout(250)
            .immediate_mode(true)
            .open()
    });
    let mut cap = match cap {
        Ok(c) => {
            out.push(ok("permission", "may capture"));
            c
        }
        Err(e) => {
            out.push(fail(
                "permission",
                format!("cannot capture on {iface}: {e}; run as root or grant CAP_NET_RAW and CAP_NET_ADMIN (the systemd unit does; by hand: setcap cap_net_raw,cap_net_admin+eip /usr/bin/footfall-agent)"),
            ));
            return out;
        }
    };
    if cap.get_datalink().0 == 127 {
        out.push(ok("link type", "radiotap (127)"));
    }
    let started = Instant::now();
    let mut frames = 0u64;
    while started.elapsed() < Duration::from_secs(listen_s) {
        if cap.next_packet().is_ok() {
            frames += 1;
        }
    }
    out.push(if frames > 0 {
        ok("frames", format!("{frames} frames in {listen_s} s"))
    } else {
        fail("frames", format!("no frames in {listen_s} s: is the card on a busy channel (iw dev {iface} set channel 6) and the antenna attached?"))
    });
    out
}

fn key_check(path: &Path) -> Check {
    match std::fs::metadata(path) {
        Ok(m) => {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                fail(
                    "key file",
                    format!(
                        "{} is readable by others (mode {mode:04o}): chmod 600 {}",
                        path.display(),
                        path.display()
                    ),
                )
            } else if m.len() != 32 {
                fail("key file", format!("{} holds {} bytes, not 32: restore it from a backup (a new key makes every device new)", path.display(), m.len()))
            } else {
                ok("key file", format!("{} (mode {mode:04o})", path.display()))
            }
        }
        Err(_) => {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if writable(dir) {
                ok(
                    "key file",
                    format!("{} will be created at first start", path.display()),
                )
            } else {
                fail("key file", format!("{} is missing and {} is not writable: create the directory for the agent's user", path.display(), dir.display()))
            }
        }
    }
}

fn writable(dir: &Path) -> bool {
    let probe = dir.join(format!(".footfall-doctor-{}", std::process::id()));
    let ok = std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

fn state_check(path: &Path) -> Check {
    let dir = if path.exists() {
        path
    } else {
        path.parent().unwrap_or(Path::new("."))
    };
    if writable(dir) {
        ok("state directory", format!("{} is writable", path.display()))
    } else {
        fail("state directory", format!("{} is not writable by this user: chown it to the agent's user (the package uses /var/lib/footfall)", dir.display()))
    }
}

fn clock_check() -> Check {
    // adjtimex with no mode bits only reads; it returns TIME_ERROR (5)
    // while the kernel clock is not disciplined by NTP (or PTP/GPS).
    // (glibc's ntp_adjtime is the same call but musl lacks it.)
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state == libc::TIME_ERROR {
        fail("clock", "the clock is not synchronised: windows and local days would be wrong; enable NTP (timedatectl set-ntp true, or sysntpd on OpenWrt)")
    } else {
        ok("clock", "synchronised")
    }
}

fn broker_checks(s: &footfall_report::mqtt::Settings) -> Vec<Check> {
    let mut out = Vec::new();
    for (what, f) in [
        ("ca_file", &s.ca_file),
        ("cert_file", &s.cert_file),
        ("key_file", &s.key_file),
        ("password_file", &s.password_file),
    ] {
        if let Some(p) = f {
            if std::fs::read(p).is_err() {
                out.push(fail(
                    "TLS files",
                    format!("[mqtt] {what} {} cannot be read", p.display()),
                ));
                return out;
            }
        }
    }
    let options = match s.options() {
        Ok(o) => o,
        Err(e) => {
            out.push(fail("broker", format!("{e}")));
            return out;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            out.push(fail("broker", format!("cannot start a runtime: {e}")));
            return out;
        }
    };
    let url = s.url.clone();
    let result = rt.block_on(async move {
        let (_client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 8);
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::v5::Event::Incoming(
                        rumqttc::v5::mqttbytes::v5::Packet::ConnAck(_),
                    )) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
        })
        .await
        .unwrap_or_else(|_| Err("no answer in 5 s".into()))
    });
    out.push(match result {
        Ok(()) => ok("broker", format!("{url} accepted the connection")),
        Err(e) => fail("broker", format!("{url}: {e}; check the address, the firewall, and that the certificates are this store's")),
    });
    out
}

pub fn render(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        let _ = writeln!(
            s,
            "{} {:<16} {}",
            if c.ok { "ok  " } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    s
}
