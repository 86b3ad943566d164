//! A throwaway PostgreSQL server for tests (issue 19): Debian's binaries,
//! a cluster in a temporary directory, trust authentication on a free
//! loopback port, stopped when dropped. initdb refuses root, so as root
//! (CI) the cluster belongs to the `postgres` user and its commands run
//! through `runuser`. A machine without PostgreSQL skips the test, unless
//! `FOOTFALL_REQUIRE` names `postgres`. Shared by source with the
//! gateway's unit tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::require::skip;

pub struct Postgres {
    pub port: u16,
    dir: PathBuf,
    /// A test's cluster, deleted when dropped; `None` for a kept one.
    _temp: Option<tempfile::TempDir>,
    bin: PathBuf,
    as_postgres: bool,
    running: bool,
    /// A kept cluster syncs to disk, as a real one does; a test's does not.
    durable: bool,
}

/// The directory of Debian's PostgreSQL server binaries, newest first.
fn server_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|b| b.join("initdb").is_file() && b.join("pg_ctl").is_file())
        .collect();
    found.sort();
    found.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Postgres {
    /// A new cluster, started; `None` (after printing why) when this
    /// machine has no PostgreSQL.
    pub fn start() -> Option<Postgres> {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        Postgres::start_at(dir, Some(temp))
    }

    /// The cluster kept in `dir` (created there the first time), started,
    /// with fsync on: for benchmarks whose data outlives a run.
    pub fn keep_in(dir: &Path) -> Option<Postgres> {
        std::fs::create_dir_all(dir).unwrap();
        Postgres::start_at(dir.canonicalize().unwrap(), None)
    }

    fn start_at(dir: PathBuf, temp: Option<tempfile::TempDir>) -> Option<Postgres> {
        let Some(bin) = server_bin() else {
            skip(
                "postgres",
                "PostgreSQL's server is not installed (apt-get install postgresql)",
            );
            return None;
        };
        let as_postgres = is_root();
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown of the cluster directory to postgres failed");
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let durable = temp.is_none();
        let mut pg = Postgres {
            port,
            dir,
            _temp: temp,
            bin,
            as_postgres,
            running: false,
            durable,
        };
        let data = pg.data();
        if !Path::new(&data).join("PG_VERSION").is_file() {
            pg.run(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ],
            );
        }
        pg.start_server();
        Some(pg)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// A server tool, run as the cluster's owner.
    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the server (again, after `stop`) and waits until it answers.
    pub fn start_server(&mut self) {
        let data = self.data();
        let log = self.dir.join("server.log").display().to_string();
        let fsync = if self.durable { "on" } else { "off" };
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync={fsync}",
            self.port,
            self.dir.display()
        );
        self.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-o", &opts, "-w", "start"],
        );
        self.running = true;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "PostgreSQL did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server at once (`-m immediate`: as a crash would).
    pub fn stop(&mut self) {
        if self.running {
            let data = self.data();
            self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
            self.running = false;
        }
    }

    /// A new empty database; its URL.
    pub fn database(&self, name: &str) -> String {
        let mut c = self.admin();
        c.batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .unwrap();
        self.url(name)
    }

    /// A superuser's connection to the `postgres` database.
    pub fn admin(&self) -> postgres::Client {
        postgres::Client::connect(&self.url("postgres"), postgres::NoTls).unwrap()
    }

    /// Puts `line` first in pg_hba.conf (the first matching line decides
    /// how a client authenticates) and has the server read it again.
    pub fn hba_first(&self, line: &str) {
        let hba = self.dir.join("data").join("pg_hba.conf");
        let old = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(&hba, format!("{line}\n{old}")).unwrap();
        self.admin()
            .batch_execute("SELECT pg_reload_conf()")
            .unwrap();
    }

    /// The database `name`, created when missing; its URL.
    pub fn kept_database(&self, name: &str) -> String {
        let mut c = self.admin();
        let exists = c
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .unwrap()
            .is_some();
        if !exists {
            c.batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .unwrap();
        }
        self.url(name)
    }

    /// Bytes on disk of a database: tables, indexes and TOAST.
    pub fn database_bytes(&self, name: &str) -> u64 {
        let mut c = self.admin();
        let n: i64 = c
            .query_one("SELECT pg_database_size($1)", &[&name])
            .unwrap()
            .get(0);
        n as u64
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The cluster's directory (its log is `server.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let data = self.data();
            // A kept cluster shuts down cleanly: no recovery on its next start.
            let mode = if self.durable { "fast" } else { "immediate" };
            let _ = self
                .command("pg_ctl")
                .args(["-D", &data, "-m", mode, "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
