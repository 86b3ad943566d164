//! The picture `evaluate` writes: per file, the estimate with its 90 %
//! interval as a band against the truth over time, so a person can see
//! where it is wrong. Plain SVG, written directly: a dozen shapes do not
//! need a plotting library on a store box's binary.

use std::fmt::Write;

use super::{Errors, FileScore};

const WIDTH: f64 = 960.0;
const PANEL: f64 = 170.0;
const LEFT: f64 = 48.0;
const TOP: f64 = 28.0;
const PLOT_H: f64 = 110.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn render(files: &[FileScore]) -> String {
    let shown: Vec<&FileScore> = files.iter().filter(|f| !f.windows.is_empty()).collect();
    let height = PANEL * shown.len().max(1) as f64 + 30.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="#fff"/>
<text x="{LEFT}" y="16" font-size="12"><tspan fill="#1f5fae">estimate (band: 90 % interval)</tspan>  <tspan fill="#222">truth</tspan>  people present per window</text>
"##
    );
    for (i, f) in shown.iter().enumerate() {
        panel(&mut s, f, 20.0 + PANEL * i as f64);
    }
    s.push_str("</svg>\n");
    s
}

fn panel(s: &mut String, f: &FileScore, y0: f64) {
    let w = &f.windows;
    let t0 = w.first().map_or(0, |x| x.start_s) as f64;
    let t1 = w.last().map_or(0, |x| x.start_s + f.window_s) as f64;
    let ymax = w
        .iter()
        .map(|x| x.hi.max(x.truth))
        .fold(1.0f64, f64::max)
        .ceil();
    let plot_w = WIDTH - LEFT - 12.0;
    let x = |t: f64| LEFT + (t - t0) / (t1 - t0).max(1.0) * plot_w;
    let y = |v: f64| y0 + TOP + PLOT_H - v / ymax * PLOT_H;
    let e = Errors::of(w.iter(), f.window_s);
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="{:.1}" font-weight="bold">{} — MAE {:.2}, person-hours {:.1} of {:.1}</text>"##,
        y0 + 18.0,
        esc(&f.name),
        e.present_mae,
        e.person_hours_est,
        e.person_hours_truth
    );
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#999"/><text x="{:.1}" y="{:.1}" text-anchor="end">{ymax}</text><text x="{:.1}" y="{:.1}" text-anchor="end">0</text>"##,
        y(0.0),
        LEFT + plot_w,
        y(0.0),
        LEFT - 4.0,
        y(ymax) + 4.0,
        LEFT - 4.0,
        y(0.0)
    );
    let mid = |v: &super::Window| x(v.start_s as f64 + f.window_s as f64 / 2.0);
    let mut band = String::new();
    for v in w {
        let _ = write!(band, "{:.1},{:.1} ", mid(v), y(v.hi));
    }
    for v in w.iter().rev() {
        let _ = write!(band, "{:.1},{:.1} ", mid(v), y(v.lo));
    }
    let _ = writeln!(
        s,
        r##"<polygon points="{band}" fill="#1f5fae" fill-opacity="0.18"/>"##
    );
    let line = |value: &dyn Fn(&super::Window) -> f64| {
        w.iter()
            .map(|v| format!("{:.1},{:.1}", mid(v), y(value(v))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#222" stroke-width="1.5"/>"##,
        line(&|v| v.truth)
    );
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#1f5fae" stroke-width="1.5"/>"##,
        line(&|v| v.present)
    );
}
