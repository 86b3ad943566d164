//! The file transport of `replay`: final reports as JSON lines, appended
//! to a file (or stdout), synced before the outbox lets them go.
//!
//! Invariant: the file is one report per line. A last line cut short by a
//! crash is trimmed on open; the reports it held are still in the outbox
//! (it is emptied only after the sync) and are written again.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context, Result};
use footfall_report::Report;

/// Where final reports go: one JSON line each.
pub struct Emit {
    out: Box<dyn Write>,
    /// A regular file, synced after each write; `None` for stdout, a pipe
    /// or a device such as /dev/null, which cannot be synced.
    file: Option<File>,
    name: String,
}

impl Emit {
    /// `-` is stdout; a path is appended to. A last line cut short by a
    /// crash is trimmed first, so the file stays one report per line.
    pub fn open(path: &Path) -> Result<Emit> {
        let name = path.display().to_string();
        if path == Path::new("-") {
            return Ok(Emit {
                out: Box::new(io::stdout()),
                file: None,
                name,
            });
        }
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("{name}: cannot open the emit file"))?;
        let writer = f.try_clone()?;
        let regular = f.metadata()?.file_type().is_file();
        if regular {
            trim_torn_line(&mut f)
                .with_context(|| format!("{name}: cannot repair the emit file"))?;
        }
        Ok(Emit {
            out: Box::new(BufWriter::new(writer)),
            file: regular.then_some(f),
            name,
        })
    }

    pub fn write(&mut self, reports: &[Report]) -> Result<()> {
        let written = (|| -> io::Result<()> {
            for r in reports {
                serde_json::to_writer(&mut self.out, r)?;
                self.out.write_all(b"\n")?;
            }
            self.out.flush()?;
            if let Some(f) = &self.file {
                f.sync_data()?;
            }
            Ok(())
        })();
        written.with_context(|| format!("{}: cannot write reports", self.name))
    }
}

fn trim_torn_line(f: &mut File) -> io::Result<()> {
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8];
    f.seek(SeekFrom::Start(len - 1))?;
    f.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    // Find the last newline; everything after it is a torn write.
    let mut pos = len;
    let mut buf = vec![0u8; 64 * 1024];
    while pos > 0 {
        let start = pos.saturating_sub(buf.len() as u64);
        let n = (pos - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            f.set_len(start + i as u64 + 1)?;
            return Ok(());
        }
        pos = start;
    }
    f.set_len(0)
}
