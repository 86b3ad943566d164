// footfall dashboard: three views over the gateway's /api/v1, drawn with
// plain SVG so it works with no internet. Every number shown carries its
// raw value in data-value, which the browser test compares with the API.
"use strict";

const errors = [];
function fail(msg) {
  errors.push(String(msg));
  const el = document.getElementById("errors");
  el.hidden = false;
  el.textContent = errors.join("\n");
}
window.addEventListener("error", (e) => fail(e.message));
window.addEventListener("unhandledrejection", (e) => fail(e.reason));

const COLORS = ["var(--a)", "var(--b)", "var(--c)", "var(--d)"];
const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

function token() {
  const m = location.search.match(/[?&]token=([^&]+)/);
  if (m) localStorage.setItem("footfall-token", decodeURIComponent(m[1]));
  return localStorage.getItem("footfall-token");
}

async function api(path) {
  const headers = {};
  const t = token();
  if (t) headers.Authorization = "Bearer " + t;
  const r = await fetch(path, { headers });
  if (r.status === 401) throw new Error("This gateway needs its API token: open the page with ?token=…");
  if (!r.ok) throw new Error(path + ": " + r.status + " " + (await r.text()));
  const text = await r.text();
  if ((r.headers.get("content-type") || "").includes("ndjson")) {
    return text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
  }
  return JSON.parse(text);
}

// The page's date range and store filter live in the hash, after the
// view: #/store/A?from=2026-10-01&to=2026-10-07 (&q= on the overview), so
// that a link says what it shows.
function params() {
  const i = location.hash.indexOf("?");
  return new URLSearchParams(i < 0 ? "" : location.hash.slice(i + 1));
}
function setParam(k, v) {
  const p = params();
  if (v) p.set(k, v); else p.delete(k);
  const base = location.hash.split("?")[0] || "#/";
  const q = p.toString();
  location.hash = base + (q ? "?" + q : "");
}
// An API path with the page's date range (UTC days for windows and hours,
// local dates for days, as the API reads them). Without one in the link,
// the five weeks up to the newest report of `stores`: a chain's whole
// history is millions of rows.
const DEFAULT_DAYS = 35;
function ranged(path, stores) {
  const p = params();
  const range = { from: p.get("from"), to: p.get("to") };
  if (!range.from && !range.to && stores) {
    const newest = Math.max(0, ...stores.map((s) => s.last_report_unix_s || 0));
    if (newest > 0) {
      range.to = new Date(newest * 1000).toISOString().slice(0, 10);
      range.from = dayShift(range.to, 1 - DEFAULT_DAYS);
    }
  }
  const add = ["from", "to"].filter((k) => range[k]).map((k) => `${k}=${encodeURIComponent(range[k])}`);
  return add.length ? path + (path.includes("?") ? "&" : "?") + add.join("&") : path;
}
// A CSV of what the page shows, as a download link.
function csvLink(name, rows) {
  if (!rows.length) return "";
  const keys = Object.keys(rows[0]);
  const cell = (v) => (v === null || v === undefined ? "" : /[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));
  const text = [keys.join(","), ...rows.map((r) => keys.map((k) => cell(r[k])).join(","))].join("\n") + "\n";
  return `<a id="csv" class="csv" download="${esc(name)}.csv" href="data:text/csv;charset=utf-8,${encodeURIComponent(text)}">Download CSV</a>`;
}

// Formatting
const when = (w) => (w && w.Date) || (w && w.At !== undefined ? new Date(w.At * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC" : String(w));
const nf = new Intl.NumberFormat("en");
const fmt = (v) => (v === null || v === undefined ? "–" : nf.format(Math.round(v)));
const pct = (v) => (v === null || v === undefined ? "–" : (v >= 0 ? "+" : "") + (v * 100).toFixed(1) + " %");
const money = (v) => (v === null || v === undefined ? "–" : v.toFixed(2));
// Local time of a store: its hour of the day and its date.
const hourIn = (tz, t) => Number(new Intl.DateTimeFormat("en-GB", { hour: "2-digit", hourCycle: "h23", timeZone: tz }).format(new Date(t * 1000)));
const dateIn = (tz, t) => new Intl.DateTimeFormat("en-CA", { timeZone: tz }).format(new Date(t * 1000));
const clockIn = (tz, t) => new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: tz }).format(new Date(t * 1000));
const num1 = (v) => (v === null || v === undefined ? "–" : nf.format(Math.round(v * 10) / 10));
const dayShift = (date, n) => new Date(Date.parse(date + "T00:00:00Z") + n * 86400000).toISOString().slice(0, 10);
function tile(field, label, value, shown, sub, cls) {
  const raw = value === null || value === undefined ? "" : value;
  return `<div class="tile"><div class="label">${esc(label)}</div>` +
    `<div class="value ${cls || ""}" data-field="${field}" data-value="${esc(raw)}">${esc(shown)}</div>` +
    (sub ? `<div class="sub">${esc(sub)}</div>` : "") + `</div>`;
}

// Charts: bars (optionally stacked) and lines, with axis and labels.
function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
function chart({ labels, series, stacked = false, lines = [], bands = [], height = 220, every = 1 }) {
  const W = 640, H = height, L = 44, B = 28, T = 8, R = 8;
  const n = labels.length || 1;
  const totals = labels.map((_, i) => stacked ? series.reduce((s, x) => s + (x.values[i] || 0), 0) : Math.max(0, ...series.map((x) => x.values[i] || 0)));
  const lineMax = Math.max(0, ...lines.flatMap((l) => l.values.filter((v) => v !== null)), ...bands.flatMap((b) => b.hi.filter((v) => v !== null)));
  const max = niceMax(Math.max(...totals, lineMax));
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const bw = (W - L - R) / n;
  let s = `<svg viewBox="0 0 ${W} ${H}" width="100%" role="img">`;
  for (let k = 0; k <= 4; k++) {
    const v = (max / 4) * k;
    s += `<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#e3e7ee"/><text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${nf.format(v)}</text>`;
  }
  labels.forEach((lab, i) => {
    let base = 0;
    series.forEach((sr, j) => {
      const v = sr.values[i] || 0;
      const w = stacked ? bw * 0.72 : (bw * 0.72) / series.length;
      const x = L + i * bw + bw * 0.14 + (stacked ? 0 : j * w);
      const top = stacked ? base + v : v;
      s += `<rect x="${x}" y="${y(top)}" width="${Math.max(w, 1)}" height="${Math.max(y(stacked ? base : 0) - y(top), 0)}" fill="${sr.color}"><title>${esc(lab)}: ${esc(sr.name)} ${nf.format(v)}</title></rect>`;
      if (stacked) base += v;
    });
    if (i % every === 0) s += `<text x="${L + i * bw + bw / 2}" y="${H - 10}" text-anchor="middle">${esc(lab)}</text>`;
  });
  for (const b of bands) {
    const at = (v, i) => (v === null || v === undefined ? null : `${L + i * bw + bw / 2},${y(v)}`);
    const top = b.hi.map(at).filter(Boolean), bottom = b.lo.map(at).filter(Boolean).reverse();
    if (top.length) s += `<polygon points="${[...top, ...bottom].join(" ")}" fill="${b.color}" fill-opacity="0.22"><title>${esc(b.name)}</title></polygon>`;
  }
  for (const l of lines) {
    const pts = l.values.map((v, i) => (v === null ? null : `${L + i * bw + bw / 2},${y(v)}`)).filter(Boolean);
    s += `<polyline points="${pts.join(" ")}" fill="none" stroke="${l.color}" stroke-width="2.5" stroke-dasharray="${l.dash || ""}"/>`;
  }
  s += `</svg>`;
  const legend = [...series, ...lines, ...bands].map((x) => `<i style="background:${x.color}"></i>${esc(x.name)}`).join("");
  return s + (series.length + lines.length + bands.length > 1 ? `<div class="legend">${legend}</div>` : "");
}
function funnel(steps) {
  const max = Math.max(1, ...steps.map((s) => s.value || 0));
  return steps.map((s, i) => {
    const w = Math.max(((s.value || 0) / max) * 100, 0.4);
    return `<div style="margin:6px 0"><div class="muted" style="font-size:12px">${esc(s.label)}</div>` +
      `<div style="display:flex;align-items:center;gap:8px"><div style="height:22px;width:${w}%;background:${COLORS[i % 4]};border-radius:3px"></div>` +
      `<b data-field="funnel_${s.key}" data-value="${s.value === null ? "" : s.value}">${fmt(s.value)}</b></div></div>`;
  }).join("");
}

// Views
async function overview() {
  const stores = await api("/api/v1/stores");
  const [days, campaigns] = await Promise.all([api(ranged("/api/v1/footfall?interval=day", stores)), api("/api/v1/campaigns")]);
  const find = (params().get("q") || "").toLowerCase();
  const dates = [...new Set(days.filter((d) => d.store_id !== "*").map((d) => d.date))].sort();
  const last = dates[dates.length - 1];
  const week = dates.slice(-7);
  $("#asof").textContent = last ? `latest reported day ${last}` : "no reports yet";
  const byStore = {};
  for (const d of days) {
    if (d.store_id === "*") continue;
    const s = (byStore[d.store_id] ||= { last: 0, week: 0 });
    if (d.date === last) s.last += d.visits;
    if (week.includes(d.date)) s.week += d.visits;
  }
  const chain = dates.slice(-28).map((dt) => days.filter((d) => d.store_id !== "*" && d.date === dt).reduce((a, d) => a + d.visits, 0));
  const offline = stores.filter((s) => s.state !== "online");
  const chainLast = days.find((d) => d.store_id === "*" && d.date === last) || {};
  let h = `<h1>Chain overview</h1><div class="tiles">` +
    tile("chain_entries_last_day", `People entering ${last || ""} (estimate)`, chainLast.entries_est ?? null, num1(chainLast.entries_est)) +
    tile("chain_visits_last_day", `Visits ${last || ""} (devices)`, chain[chain.length - 1] ?? null, fmt(chain[chain.length - 1])) +
    tile("chain_visits_7d", "Visits, last 7 days (devices)", Object.values(byStore).reduce((a, s) => a + s.week, 0), fmt(Object.values(byStore).reduce((a, s) => a + s.week, 0))) +
    tile("stores", "Store boxes", stores.length, fmt(stores.length), `${offline.length} offline or unknown`, offline.length ? "bad" : "good") +
    `</div>`;
  if (offline.length) h += `<div class="warn">Not online: ${offline.map((s) => esc(s.store_id + "/" + s.agent_id)).join(", ")}</div>`;
  const chainPeople = dates.slice(-28).map((dt) => (days.find((d) => d.store_id === "*" && d.date === dt) || {}).entries_est ?? null);
  h += `<div class="card"><h2>Visits per day, whole chain (devices), and people entering (estimate)</h2>${chart({ labels: dates.slice(-28).map((d) => d.slice(5)), series: [{ name: "visits (devices)", color: "var(--a)", values: chain }], lines: [{ name: "people entering (estimate)", color: "var(--c)", values: chainPeople }], every: 2 })}</div><br>`;
  const shown = stores.filter((s) => !find || s.store_id.toLowerCase().includes(find));
  h += `<p><input id="find" type="search" placeholder="Find a store" value="${esc(find)}"> <span class="muted" id="found" data-value="${shown.length}">${shown.length} of ${stores.length} stores</span> ` +
    csvLink("stores", shown.map((s) => ({ store_id: s.store_id, agent_id: s.agent_id, state: s.state, privacy_mode: s.privacy_mode ?? null, visits_last_day: (byStore[s.store_id] || {}).last ?? 0, visits_7d: (byStore[s.store_id] || {}).week ?? 0 }))) + `</p>`;
  h += `<table id="stores"><tr><th>Store</th><th>Agent</th><th>State</th><th>Last seen</th><th>Windows received, last 7 UTC days</th><th>Visits ${last || ""} (devices)</th><th>Visits, 7 days (devices)</th></tr>`;
  for (const s of shown) {
    const v = byStore[s.store_id] || { last: 0, week: 0 };
    const t = s.last_seen_unix_s || s.last_report_unix_s;
    const seen = t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 16) + " UTC" : "–";
    h += `<tr data-store="${esc(s.store_id)}"><td><a href="#/store/${encodeURIComponent(s.store_id)}">${esc(s.store_id)}</a></td><td>${esc(s.agent_id)}</td>` +
      `<td><span class="badge ${esc(s.state)}">${esc(s.state)}</span></td><td>${seen}</td><td class="muted">${esc(s.windows_last_7_days)}</td>` +
      `<td data-field="visits_last_day" data-value="${v.last}">${fmt(v.last)}</td><td data-field="visits_7d" data-value="${v.week}">${fmt(v.week)}</td></tr>`;
  }
  h += `</table><br><div class="card"><h2>Campaigns</h2>`;
  h += campaigns.length ? `<table>${campaigns.map((c) => `<tr><td><a href="#/campaign/${encodeURIComponent(c.campaign_id)}">${esc(c.name)}</a></td><td>${esc(c.channel)}</td><td class="muted">${esc(when(c.start))} → ${esc(when(c.end))}</td></tr>`).join("")}</table>` : `<p class="muted">None imported yet.</p>`;
  return h + `</div>`;
}

async function storePage(id) {
  const stores = await api("/api/v1/stores");
  const allDays = await api(ranged("/api/v1/footfall?interval=day", stores));
  const tz = (stores.find((s) => s.store_id === id && s.timezone) || {}).timezone || "UTC";
  const mode = (stores.find((s) => s.store_id === id && s.privacy_mode) || {}).privacy_mode || null;
  const days = allDays.filter((d) => d.store_id === id);
  const dates = days.map((d) => d.date);
  const last7 = dates.slice(-7);
  const lastDay = days[days.length - 1] || {};
  const [hours, windows, dwell] = await Promise.all([
    last7.length ? api(`/api/v1/footfall?interval=hour&store=${encodeURIComponent(id)}&from=${dayShift(last7[0], -1)}&to=${dayShift(last7[last7.length - 1], 1)}`) : [],
    lastDay.date ? api(`/api/v1/footfall?interval=window&store=${encodeURIComponent(id)}&from=${dayShift(lastDay.date, -1)}&to=${dayShift(lastDay.date, 1)}`) : [],
    api(ranged(`/api/v1/dwell?store=${encodeURIComponent(id)}`, stores)),
  ]);
  // The store against the chain: people entering over the range, against
  // the average store's (the chain's sum over the stores reporting).
  const chainDays = allDays.filter((d) => d.store_id !== "*" && dates.includes(d.date));
  const sumEntries = (rows) => rows.reduce((a, d) => (a === null || d.entries_est === null || d.entries_est === undefined ? null : a + d.entries_est), 0);
  const storeCount = new Set(chainDays.map((d) => d.store_id)).size || 1;
  const mine = sumEntries(days), chainSum = sumEntries(chainDays);
  const vsChain = mine === null || chainSum === null || chainSum === 0 ? null : mine / (chainSum / storeCount) - 1;
  const avgPerDay = dates.map((dt) => {
    const rows = chainDays.filter((d) => d.date === dt);
    const s = sumEntries(rows);
    return s === null || !rows.length ? null : s / rows.length;
  });
  const inWeek = hours.filter((w) => last7.includes(dateIn(tz, w.hour_start)));
  const profile = Array(24).fill(0);
  for (const w of inWeek) profile[hourIn(tz, w.hour_start)] += w.visits;
  const today = windows.filter((w) => dateIn(tz, w.window_start) === lastDay.date);
  const recent = days.slice(-28);
  const labels = recent.map((d) => d.date.slice(5));
  // A figure the store's privacy mode does not count is null: shown as "–",
  // never as 0 (docs/privacy.md).
  const modeNote = mode ? ` · privacy mode ${esc(mode)}${mode === "loyalty" ? "" : ": device figures it does not count show as –"}` : "";
  let h = `<h1>Store ${esc(id)}</h1><p class="muted" id="store-mode">local time ${esc(tz)}${modeNote} ${csvLink("store-" + id, days.map((d) => { const r = { ...d }; delete r.agent_id; return r; }))}</p><div class="tiles">` +
    tile("entries_last_day", `People entering ${lastDay.date || ""} (estimate)`, lastDay.entries_est ?? null, num1(lastDay.entries_est)) +
    tile("person_hours_last_day", "Person-hours that day (estimate)", lastDay.person_hours_est ?? null, num1(lastDay.person_hours_est)) +
    tile("visits_last_day", `Visits ${lastDay.date || ""} (devices)`, lastDay.visits ?? null, fmt(lastDay.visits)) +
    tile("unique_last_day", "Unique visitors that day (devices)", lastDay.unique_visitors ?? null, fmt(lastDay.unique_visitors)) +
    tile("returning_last_day", "Returning that day (devices)", lastDay.visitors_returning ?? null, fmt(lastDay.visitors_returning)) +
    tile("vs_chain", "People entering vs the average store", vsChain, pct(vsChain), `over ${dates.length} days, ${storeCount} stores`, vsChain === null ? "" : vsChain >= 0 ? "good" : "bad") +
    tile("mean_dwell_min", `Mean dwell (${params().get("from") || params().get("to") ? "the dates chosen" : "all time"}, devices)`, dwell.mean_dwell_s === null ? null : dwell.mean_dwell_s / 60, dwell.mean_dwell_s === null ? "–" : (dwell.mean_dwell_s / 60).toFixed(1) + " min") +
    `</div><div class="grid">` +
    `<div class="card"><h2>People present ${esc(lastDay.date || "")} (estimate, band: 90 % interval)</h2>${chart({ labels: today.map((w) => clockIn(tz, w.window_start)), series: [], every: 8,
      lines: [{ name: "people present", color: "var(--a)", values: today.map((w) => w.present_est) }],
      bands: [{ name: "90 % interval", color: "var(--a)", lo: today.map((w) => w.present_lo), hi: today.map((w) => w.present_hi) }] })}</div>` +
    `<div class="card"><h2>People entering per day (estimate), this store and the average store</h2>${chart({ labels, series: [{ name: "people entering", color: "var(--c)", values: recent.map((d) => d.entries_est) }], lines: [{ name: "average store", color: "var(--b)", values: avgPerDay.slice(-recent.length) }], every: 2 })}</div>` +
    `<div class="card"><h2>Visits per day (devices)</h2>${chart({ labels, series: [{ name: "visits", color: "var(--a)", values: recent.map((d) => d.visits) }], every: 2 })}</div>` +
    `<div class="card"><h2>Visits by hour of day (${esc(tz)}), last 7 days (devices)</h2>${chart({ labels: profile.map((_, i) => String(i)), series: [{ name: "visits", color: "var(--b)", values: profile }], every: 2 })}</div>` +
    `<div class="card"><h2>New vs returning visitors (devices)</h2>${chart({ labels, stacked: true, every: 2, series: [
      { name: "new", color: "var(--a)", values: recent.map((d) => d.visitors_new) },
      { name: "returning", color: "var(--c)", values: recent.map((d) => d.visitors_returning) },
      { name: "randomized MAC", color: "var(--d)", values: recent.map((d) => d.visitors_randomized) }] })}</div>` +
    `<div class="card"><h2>How long visits last (devices)</h2>${chart({ labels: ["5–10 min", "10–20", "20–30", "30–60", "1–2 h", "2 h+"], series: [{ name: "visits", color: "var(--c)", values: dwell.dwell_counts || [] }] })}</div>`;
  const perDay = {};
  for (const w of inWeek) {
    const p = (perDay[dateIn(tz, w.hour_start)] ||= { visitors: 0, passersby: 0 });
    p.visitors += w.visitors;
    p.passersby += w.passersby;
  }
  const pd = Object.keys(perDay).sort();
  h += `<div class="card"><h2>Visitors vs passers-by, last 7 days (devices)</h2>${chart({ labels: pd.map((d) => d.slice(5)), series: [
    { name: "visitors", color: "var(--a)", values: pd.map((d) => perDay[d].visitors) },
    { name: "passers-by", color: "var(--d)", values: pd.map((d) => perDay[d].passersby) }] })}</div></div>`;
  return h;
}

async function campaignPage(id) {
  const [r] = await api(`/api/v1/campaign-report?campaign=${encodeURIComponent(id)}`);
  const p = params();
  r.daily = r.daily.filter((d) => (!p.get("from") || d.date >= p.get("from")) && (!p.get("to") || d.date <= p.get("to")));
  const good = (v) => (v === null ? "" : v > 0 ? "good" : "bad");
  const csvRows = r.stores.map((s) => ({ store_id: s.store_id, entries_est: s.entries_est, entries_lift: s.entries_lift, visits: s.visits, baseline_visits: s.baseline_visits, lift: s.lift, did_lift: s.did_lift, capture_rate: s.capture_rate }));
  let h = `<h1>Campaign: ${esc(r.name)}</h1><p class="muted">${esc(r.channel)} · ${esc(r.start)} → ${esc(r.end)} · stores ${r.stores.map((s) => esc(s.store_id)).join(", ")} ${csvLink("campaign-" + id, csvRows)}</p>`;
  for (const w of r.warnings) h += `<div class="warn">${esc(w)}</div>`;
  h += `<div class="tiles">` +
    tile("entries_est", "People entering in the period (estimate)", r.entries_est, num1(r.entries_est)) +
    tile("baseline_entries_est", "Usual people entering (baseline)", r.baseline_entries_est, num1(r.baseline_entries_est)) +
    tile("entries_lift", "Lift on people", r.entries_lift, pct(r.entries_lift), "people entering vs baseline", good(r.entries_lift)) +
    tile("entries_did_lift", "Lift on people vs control stores", r.entries_did_lift, pct(r.entries_did_lift), "difference in differences", good(r.entries_did_lift)) +
    `</div><div class="tiles">` +
    tile("visits", "Visits in the period (devices)", r.visits, fmt(r.visits)) +
    tile("baseline_visits", "Usual visits (baseline, devices)", r.baseline_visits, fmt(r.baseline_visits), `mean of ${r.baseline_weeks_used} earlier weeks`) +
    tile("lift", "Lift on devices", r.lift, pct(r.lift), "visits vs baseline", good(r.lift)) +
    tile("did_lift", "Lift on devices vs control stores", r.did_lift, pct(r.did_lift), r.control_stores.length ? `controls: ${r.control_stores.join(", ")}` : "no control stores", good(r.did_lift)) +
    tile("incremental_visits", "Extra visits (devices)", r.incremental_visits, fmt(r.incremental_visits)) +
    tile("cost_per_incremental_visit", "Cost per extra visit (devices)", r.cost_per_incremental_visit, money(r.cost_per_incremental_visit), `spend ${money(r.spend)}`) +
    tile("capture_rate", "Capture rate (devices)", r.capture_rate, r.capture_rate === null ? "–" : (r.capture_rate * 100).toFixed(1) + " %", "visitors / (visitors + passers-by)") +
    tile("visits_per_1k_impressions", "Visits per 1k impressions (devices)", r.visits_per_1k_impressions, r.visits_per_1k_impressions === null ? "–" : r.visits_per_1k_impressions.toFixed(2)) +
    `</div><div class="grid"><div class="card"><h2>From exposure to the store</h2>${funnel([
      { key: "impressions", label: "Impressions", value: r.impressions },
      { key: "reach", label: "Reach", value: r.reach },
      { key: "detected", label: "Detected near the stores (devices per window)", value: r.detected },
      { key: "visitors", label: "Visitors", value: r.visitors },
      { key: "returning", label: "Returning visitors", value: r.visitors_returning }])}</div>` +
    `<div class="card"><h2>Visits per day vs usual (devices)</h2>${chart({ labels: r.daily.map((d) => d.date.slice(5)), series: [{ name: "visits", color: "var(--a)", values: r.daily.map((d) => d.visits) }], lines: [{ name: "baseline", color: "var(--b)", dash: "6 4", values: r.daily.map((d) => d.baseline_visits) }] })}</div></div>`;
  h += `<table id="campaign-stores"><tr><th>Store</th><th>People entering (est.)</th><th>Lift on people</th><th>Visits (devices)</th><th>Baseline</th><th>Weeks</th><th>Lift on devices</th><th>Lift vs control</th><th>Capture rate</th></tr>`;
  for (const s of r.stores) {
    h += `<tr data-store="${esc(s.store_id)}"><td><a href="#/store/${encodeURIComponent(s.store_id)}">${esc(s.store_id)}</a></td>` +
      `<td data-field="entries_est" data-value="${s.entries_est ?? ""}">${num1(s.entries_est)}</td><td data-field="entries_lift" data-value="${s.entries_lift ?? ""}">${pct(s.entries_lift)}</td>` +
      `<td data-field="visits" data-value="${s.visits ?? ""}">${fmt(s.visits)}</td><td>${fmt(s.baseline_visits)}</td><td>${s.baseline_weeks_used}</td>` +
      `<td data-field="lift" data-value="${s.lift ?? ""}">${pct(s.lift)}</td><td>${pct(s.did_lift)}</td><td>${s.capture_rate === null ? "–" : (s.capture_rate * 100).toFixed(1) + " %"}</td></tr>`;
  }
  return h + `</table>`;
}

async function route() {
  const main = $("#main");
  const [, view, arg] = location.hash.split("?")[0].split("/");
  const p = params();
  $("#from").value = p.get("from") || "";
  $("#to").value = p.get("to") || "";
  try {
    const html = view === "store" ? await storePage(decodeURIComponent(arg)) : view === "campaign" ? await campaignPage(decodeURIComponent(arg)) : await overview();
    main.innerHTML = html;
    main.dataset.ready = "1";
  } catch (e) {
    main.innerHTML = `<div class="warn">${esc(e.message || e)}</div>`;
    fail(e.message || e);
  }
}
window.addEventListener("hashchange", route);
for (const k of ["from", "to"]) $("#" + k).addEventListener("change", (e) => setParam(k, e.target.value));
document.addEventListener("change", (e) => {
  if (e.target.id === "find") setParam("q", e.target.value);
});
route();
