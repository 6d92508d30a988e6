// Manager dashboard: today's live stats (pushed by the hub), today's call list with
// outcomes, and who is logged in with a registered phone.
import { api } from "./api.js";
import { serverNow } from "./clock.js";
import { byId as $, h } from "./dom.js";
import * as fmt from "./format.js";
import { label } from "./labels.js";
import * as live from "./live.js";
import { isShown, onShow } from "./shell.js";

// The order and grouping of the figures on the dashboard. `kind` decides the format;
// the formula text for each tooltip comes from the API (stats.formulas[key]). A figure that
// counts one code is named by that code's label (`code`: [kind, code]), plus a `note`.
const FIGURES = [
  { key: "line_state", label: "回線の状態", kind: "state" },
  { key: "offered", label: "着信数", kind: "count" },
  { key: "answered", label: "応答数", kind: "count" },
  { key: "abandoned", code: ["end_cause", "abandoned"], note: "呼出中に切断", kind: "count" },
  { key: "busy", code: ["end_cause", "busy"], kind: "count" },
  { key: "closed", code: ["end_cause", "closed"], kind: "count" },
  { key: "no_answer", code: ["end_cause", "no_answer"], kind: "count" },
  { key: "unstaffed", code: ["end_cause", "unstaffed"], note: "電話機未登録", kind: "count" },
  { key: "callbacks_waiting", code: ["callback_status", "open"], kind: "count" },
  { key: "callbacks_oldest_wait_seconds", label: "折り返し最長待ち", kind: "duration" },
  { key: "asa_seconds", label: "平均応答時間（ASA）", kind: "duration" },
  { key: "aht_seconds", label: "平均処理時間（AHT）", kind: "duration" },
  { key: "abandonment_rate", label: "放棄率", kind: "percent" },
  { key: "service_level", label: "サービスレベル", kind: "percent" },
];
const PRESENCE_POLL_MS = 30000;

let statsVersion = 0; // bumped by every pushed snapshot, so a slower GET cannot overwrite it
let presenceTimer = null;
// The business day comes from the server's clock (stats.date), never the browser's: a
// workstation with a wrong clock must not show another day's calls.
let serverDay = null;

const visible = () => isShown("manager");

// ---------------------------------------------------------------- live stats

function figureLabel(f) {
  const name = f.code ? label(...f.code) : f.label;
  return f.note ? `${name}（${f.note}）` : name;
}

function buildGrid() {
  $("stat-grid").replaceChildren(...FIGURES.map((f) => h("div", {
    class: "stat stat-" + f.kind,
    id: "stat-card-" + f.key.replace(/_/g, "-"),
    tabindex: 0,
  },
  h("span", { class: "stat-label", id: "stat-label-" + f.key.replace(/_/g, "-"), text: figureLabel(f) }),
  h("span", { class: "stat-value", id: "stat-" + f.key.replace(/_/g, "-"), text: "—" }))));
}

function format(f, v) {
  if (f.kind === "state") return label("line_state", v) || "—";
  if (f.kind === "count") return v === null || v === undefined ? "—" : String(v);
  if (f.kind === "duration") return fmt.duration(v);
  return fmt.percent(v);
}

function renderStats(s) {
  if (!s) return;
  if (s.date && s.date !== serverDay) {
    const first = serverDay === null;
    serverDay = s.date;
    if (!first) loadCalls(); // the day turned over on the server
  }
  const formulas = s.formulas || {};
  for (const f of FIGURES) {
    const id = f.key.replace(/_/g, "-");
    const card = $("stat-card-" + id);
    $("stat-" + id).textContent = format(f, s[f.key]);
    card.title = formulas[f.key] || "";
    if (f.key === "line_state") card.dataset.state = s.line_state || "";
    if (f.key === "callbacks_waiting") card.classList.toggle("alert", Number(s.callbacks_waiting) > 0);
  }
  if (s.service_level_secs !== undefined && s.service_level_secs !== null) {
    $("stat-label-service-level").textContent = `サービスレベル（${s.service_level_secs}秒以内に応答）`;
  }
  $("stats-updated").textContent = "更新 " + fmt.clock(s.at || s.computed_at || new Date(serverNow()).toISOString());
  // Keyboard and screen-reader users cannot hover a tooltip: list the formulas too.
  const list = $("stats-formulas");
  const rows = FIGURES.filter((f) => formulas[f.key]);
  if (list.childElementCount !== rows.length * 2 || list.dataset.sig !== JSON.stringify(formulas)) {
    list.dataset.sig = JSON.stringify(formulas);
    list.replaceChildren(...rows.flatMap((f) => [
      h("dt", { text: $("stat-label-" + f.key.replace(/_/g, "-")).textContent }),
      h("dd", { text: formulas[f.key] }),
    ]));
  }
}

async function loadStats() {
  const version = statsVersion;
  try {
    const data = await api("GET", "/api/stats/live");
    if (version === statsVersion) renderStats(data.stats || data);
    $("stats-error").hidden = true;
  } catch (e) {
    $("stats-error").textContent = "統計を読み込めませんでした：" + e.message;
    $("stats-error").hidden = false;
  }
}

// ---------------------------------------------------------------- today's calls

function endText(r) {
  if (!r.ended_at && !r.end_cause) return label("call_phase", r.answered_at ? "talking" : "ringing");
  const parts = [fmt.endCause(r.end_cause) || "—"];
  if (r.end_cause === "completed" && r.hangup_by) parts.push(label("party", r.hangup_by));
  return parts.join("・");
}

async function loadCalls() {
  if (!serverDay) {
    try {
      const st = await api("GET", "/api/stats/live");
      serverDay = (st.stats || st).date || null;
    } catch (e) { /* the list below reports the failure */ }
  }
  // The chosen day (a past one from the picker), else the server's today.
  const picked = $("calls-day").value;
  const date = picked && serverDay && picked <= serverDay ? picked : serverDay;
  $("calls-today-date").textContent = serverDay || "—"; // the header's 本日 is the server's day
  if (serverDay) { $("calls-day").max = serverDay; if (!picked) $("calls-day").value = serverDay; }
  const isToday = date === serverDay;
  $("calls-day-title").textContent = isToday ? "本日の通話一覧" : `${fmt.visitDate(date)}の通話一覧`;
  loadBreakdown(date);
  const tbody = $("calls-today").tBodies[0];
  if (!date) {
    tbody.replaceChildren(h("tr", {}, h("td", { colspan: 8, class: "error", text: "サーバーの日付を読み込めませんでした。" })));
    return;
  }
  let rows;
  try {
    // limit: the API pages by 50 by default; one day of one line fits in 500.
    rows = (await api("GET", `/api/calls?date=${date}&limit=500`)).calls || [];
  } catch (e) {
    tbody.replaceChildren(h("tr", {}, h("td", { colspan: 8, class: "error", text: "読み込めませんでした：" + e.message })));
    return;
  }
  $("calls-today-count").textContent = `${rows.length}件`;
  if (!rows.length) {
    tbody.replaceChildren(h("tr", {}, h("td", { colspan: 8, class: "muted", text: isToday ? "本日の着信はまだありません。" : "この日の着信はありません。" })));
    return;
  }
  tbody.replaceChildren(...rows.map((r) => h("tr", { dataset: { callKey: r.call_key }, class: r.end_cause ? "cause-" + r.end_cause : "live" },
    h("td", { class: "nowrap", text: fmt.clock(r.arrived_at) }),
    h("td", { class: "nowrap tel", text: fmt.caller(r.caller) }),
    h("td", { class: "num", text: r.ring_seconds === null || r.ring_seconds === undefined ? "—" : fmt.duration(r.ring_seconds) }),
    h("td", { text: r.answered_by ? r.answered_by + (r.answered_extension ? `（${r.answered_extension}）` : "") : "—" }),
    h("td", { class: "num", text: r.talk_seconds ? fmt.duration(r.talk_seconds) : "—" }),
    h("td", { text: endText(r), title: r.end_detail || null }),
    h("td", { class: "outcome", text: fmt.outcome(r.outcome) || (r.answered_at ? "未入力" : "") }),
    h("td", { class: "note", text: r.outcome_note || "", title: r.outcome_note || null }))));
}

// The chosen day by outcome and by hour (GET /api/stats/day).
async function loadBreakdown(date) {
  const box = $("day-breakdown");
  if (!date) { box.replaceChildren(); return; }
  let d;
  try { d = await api("GET", "/api/stats/day?date=" + encodeURIComponent(date)); }
  catch (e) { box.replaceChildren(h("p", { class: "error", role: "alert", text: e.message })); return; }
  const outcomes = Object.entries(d.by_outcome).map(([code, n]) =>
    h("li", {}, code === "none" ? "対応記録なし" : fmt.outcome(code), " ", h("span", { class: "num nowrap", text: `${n}件` })));
  const hours = d.by_hour.filter((x) => x.calls > 0).map((x) =>
    h("tr", {}, h("td", { class: "nowrap", text: `${x.hour}時台` }),
      h("td", { class: "num nowrap", text: `${x.calls}件` }),
      h("td", { class: "num nowrap", text: `${x.answered}件` }),
      h("td", { class: "num nowrap", text: `${x.abandoned}件` })));
  box.replaceChildren(
    h("p", {}, `着信 ${d.calls}件・応答 ${d.answered}件`),
    h("div", { class: "breakdown-grid" },
      h("section", { "aria-label": "対応結果別" }, h("h4", { text: "対応結果別（応答した通話）" }),
        outcomes.length ? h("ul", { class: "plain", id: "day-by-outcome" }, ...outcomes) : h("p", { class: "muted", text: "応答した通話はありません。" })),
      h("section", { "aria-label": "時間帯別" }, h("h4", { text: "時間帯別" }),
        hours.length
          ? h("table", { class: "compact", id: "day-by-hour" },
            h("thead", {}, h("tr", {}, h("th", { text: "時間帯" }), h("th", { text: "着信" }), h("th", { text: "応答" }), h("th", { text: label("end_cause", "abandoned") }))),
            h("tbody", {}, ...hours))
          : h("p", { class: "muted", text: "着信はありません。" }))));
}

// ---------------------------------------------------------------- presence

async function loadPresence() {
  const tbody = $("presence-table").tBodies[0];
  let staff;
  try {
    const presence = await api("GET", "/api/presence");
    staff = presence.staff || [];
    renderTrunk(presence.trunk || {});
  } catch (e) {
    tbody.replaceChildren(h("tr", {}, h("td", { colspan: 4, class: "error", text: "読み込めませんでした：" + e.message })));
    return;
  }
  // Only people who can take calls matter for "is the line staffed"; the others are listed for completeness.
  // One row per extension: its name and state (受付可 / 通話中 / 未登録), never raw contacts.
  const live = (s) => (s.phones || []).filter((p) => p.state !== "unregistered");
  const ready = staff.filter((s) => s.logged_in && live(s).length).length;
  $("presence-summary").textContent = `ログイン中 ${staff.filter((s) => s.logged_in).length}名・受電可能（ログイン中かつ電話機登録あり） ${ready}名`;
  tbody.replaceChildren(...staff.map((s) => {
    const phones = s.phones || [];
    const warn = (s.logged_in && !live(s).length && s.role === "operator") || (!s.logged_in && live(s).length);
    return h("tr", { class: warn ? "warn" : "", dataset: { username: s.username } },
      h("td", {}, h("strong", { text: s.display_name || s.username }), h("div", { class: "muted small", text: s.username })),
      h("td", { text: label("role", s.role) }),
      h("td", { text: s.logged_in ? "ログイン中" : "—" }),
      h("td", {}, phones.length
        ? h("ul", { class: "plain" }, phones.map((p) => h("li", {
          class: `small presence-${p.state}`,
          dataset: { extension: p.username, state: p.state },
          title: p.registrations > 1 ? `登録 ${p.registrations}件（複数の回線）` : "",
          text: `内線 ${p.username}：${label("presence_state", p.state)}`,
        })))
        : h("span", { class: "muted", text: "電話機なし" })));
  }));
}

const REG_STATE = {
  registering: "登録中",
  registered: "登録済み",
  refused: "拒否されました（認証情報・契約を確認してください）",
  unreachable: "応答なし（回線・キャリア側を確認してください）",
  failed: "失敗",
};
const KA_STATE = { unknown: "確認中", up: "応答あり", down: "応答なし（回線断の可能性）" };

function when(t) {
  return t ? fmt.dateTime(t) : "—";
}

// The carrier side: registration and OPTIONS keep-alive, with the time of the last change
// and of the next attempt (issue 16 item 2).
function renderTrunk(trunk) {
  const items = [];
  const r = trunk.registration;
  if (r) {
    const bad = r.state !== "registered" && r.state !== "registering";
    items.push(h("li", { class: bad ? "warn" : "", dataset: { trunk: "registration", state: r.state } },
      `キャリア登録（${r.registrar}）：${REG_STATE[r.state] || r.state}` +
      `　変化：${when(r.since)}　次回：${when(r.next_attempt_at)}` +
      (r.last_status ? `　最終応答：${r.last_status}` : "")));
  }
  for (const k of trunk.keepalive || []) {
    items.push(h("li", { class: k.state === "down" ? "warn" : "", dataset: { trunk: "keepalive", state: k.state } },
      `回線監視 OPTIONS（${k.target}）：${KA_STATE[k.state] || k.state}` +
      `　変化：${when(k.since)}　最終応答：${when(k.last_answer_at)}`));
  }
  $("trunk-status").replaceChildren(...items);
}

// The dead-line alarm banner: what, since when, what to check (issue 16 item 3).
function renderAlarms(alarms) {
  const banner = $("alarm-banner");
  if (!alarms.length) {
    banner.hidden = true;
    banner.replaceChildren();
    return;
  }
  banner.replaceChildren(
    h("h3", { text: `警報：回線が止まっている可能性があります（${alarms.length}件）` }),
    h("ul", { class: "plain" }, alarms.map((a) => h("li", { dataset: { alarm: a.kind } },
      h("strong", { text: a.title }),
      h("div", { class: "small", text: `発生：${fmt.dateTime(a.raised_at)}　${a.detail}` }),
      h("div", { class: "small", text: `確認：${a.check}` })))));
  banner.hidden = false;
}

// ---------------------------------------------------------------- wiring

// Reads happen only while the dashboard is on screen; otherwise it is re-read on show.
const refreshCalls = live.coalesce(() => { if (visible()) loadCalls(); }, 500);

// Sets the dashboard up; call before live.start().
export function init() {
  buildGrid();
  live.on("stats", (s) => { statsVersion += 1; renderStats(s); });
  live.on("alarms", renderAlarms);
  live.on("call.ended", refreshCalls);
  live.on("snapshot", refreshCalls);
  document.addEventListener("madoguchi:outcome-saved", refreshCalls);
  $("calls-day").addEventListener("change", () => loadCalls());
  $("calls-day-form").addEventListener("submit", (e) => { e.preventDefault(); loadCalls(); });
  $("calls-day-today").addEventListener("click", () => { $("calls-day").value = serverDay || ""; loadCalls(); });
  onShow("manager", () => {
    loadCalls();
    loadPresence();
    clearInterval(presenceTimer);
    presenceTimer = setInterval(() => {
      if (visible()) loadPresence();
      else { clearInterval(presenceTimer); presenceTimer = null; }
    }, PRESENCE_POLL_MS);
  });
  loadStats();
}
