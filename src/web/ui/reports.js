// レポート (issue 15 items 1 and 7; R-REP-1, R-REP-3): the weekly call counts of a week with
// their chart (the server's SVG), the downloads the server builds (CSV, XLSX, SVG, printable
// HTML), sending a week's report (manager; a sent report is frozen, a later change is a new
// version), and the opinions and complaints with the manager's follow-up.
import { api } from "./api.js";
import { byId as $, h } from "./dom.js";
import { label } from "./labels.js";
import { onShow } from "./shell.js";

let role = null;

// Rows of the figures table: label, and how to read the cell from one day's figures.
const ROWS = [
  ["受付件数", (f) => f.offered],
  ["応答件数", (f) => f.answered],
  ["放棄", (f) => f.abandoned],
  ["話中", (f) => f.busy],
  ["応答なし", (f) => f.no_answer],
  ["不在", (f) => f.unstaffed],
  ["時間外", (f) => f.closed],
  ["　うち夜間", (f) => f.closed_by_reason.night],
  ["　うち土日", (f) => f.closed_by_reason.weekend],
  ["　うち祝日", (f) => f.closed_by_reason.holiday],
  ["　うち年末年始", (f) => f.closed_by_reason.year_end],
  ["　うち受付期間外・臨時休業・不明", (f) => f.closed_by_reason.outside_period + f.closed_by_reason.extra_closed + f.closed_by_reason.unknown],
  ...["booking", "facility_request", "inquiry", "opinion", "complaint", "wrong_number", "other"]
    .map((o) => ["対応：" + label("outcome", o), (f) => f.outcomes[o]]),
  ["対応：未記録", (f) => f.outcomes.none],
  ["平均応答時間（秒）", (f) => (f.asa_seconds == null ? "" : f.asa_seconds.toFixed(1))],
  ["サービスレベル", (f) => (f.service_level == null ? "" : (f.service_level * 100).toFixed(1) + "%")],
  ["放棄率", (f) => (f.abandonment_rate == null ? "" : (f.abandonment_rate * 100).toFixed(1) + "%")],
];

// The ISO week of today (Asia/Tokyo is the browser's zone at the call center).
function thisWeek() {
  const d = new Date();
  const t = new Date(Date.UTC(d.getFullYear(), d.getMonth(), d.getDate()));
  const day = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - day);
  const year = t.getUTCFullYear();
  const week = Math.ceil(((t - Date.UTC(year, 0, 1)) / 86400000 + 1) / 7);
  return `${year}-W${String(week).padStart(2, "0")}`;
}

function query(format) {
  const week = $("rep-week").value || thisWeek();
  const version = $("rep-version").value;
  return `/api/reports/weekly-calls?week=${encodeURIComponent(week)}&version=${version}&format=${format}`;
}

async function load() {
  const msg = $("rep-message");
  msg.hidden = true;
  let view;
  try {
    view = await api("GET", query("json"));
  } catch (e) {
    msg.textContent = "読み込めませんでした：" + e.message;
    msg.hidden = false;
    return;
  }
  const r = view.report;
  const note = view.sent
    ? `送付済み 第${view.sent.version}版（${view.sent.sent_by}、SHA-256 ${view.sent.sha256.slice(0, 12)}…）`
      + (view.sent.revision_of ? `　第${view.sent.revision_of}版の訂正版` : "")
    : (view.versions.length ? `現在の集計値（送付済みの最新は第${view.versions.at(-1).version}版）` : "速報値（未送付）");
  $("rep-status").textContent = note + (view.changed_since_sent ? "　※送付後に集計値が変わりました。新しい版を送付できます。" : "");
  $("rep-status").classList.toggle("warn", view.changed_since_sent);
  const table = $("rep-table");
  table.tHead.replaceChildren(h("tr", {}, h("th", { text: "項目" }),
    ...r.days.map((d) => h("th", { text: d.label_ja })), h("th", { text: "週計" })));
  table.tBodies[0].replaceChildren(...ROWS.map(([name, get]) => h("tr", {},
    h("th", { text: name }),
    ...[...r.days, r.total].map((f, i) => h("td", { class: i === 7 ? "num total" : "num", text: String(get(f) ?? "") })))));
  $("rep-chart").src = query("svg");
  $("rep-csv").href = query("csv");
  $("rep-xlsx").href = query("xlsx");
  $("rep-svg").href = query("svg");
  $("rep-html").href = query("html");
}

async function send() {
  const week = $("rep-week").value || thisWeek();
  const msg = $("rep-message");
  try {
    const sent = await api("POST", `/api/reports/weekly-calls/${encodeURIComponent(week)}/sent`, {});
    msg.textContent = `第${sent.version}版を送付済みとして記録しました。`;
  } catch (e) {
    msg.textContent = e.message;
  }
  msg.hidden = false;
  await load();
}

async function loadOpinions() {
  const from = $("op-from").value;
  const to = $("op-to").value;
  const params = new URLSearchParams();
  if (from) params.set("from", from);
  if (to) params.set("to", to);
  const tbody = $("opinions-table").tBodies[0];
  $("op-csv").href = `/api/reports/opinions?${params}&format=csv`;
  $("op-xlsx").href = `/api/reports/opinions?${params}&format=xlsx`;
  let rows;
  try {
    rows = (await api("GET", `/api/reports/opinions?${params}`)).opinions || [];
  } catch (e) {
    tbody.replaceChildren(h("tr", {}, h("td", { colspan: 5, class: "error", text: "読み込めませんでした：" + e.message })));
    return;
  }
  if (!rows.length) {
    tbody.replaceChildren(h("tr", {}, h("td", { colspan: 5, class: "muted", text: "該当する意見・苦情はありません。" })));
    return;
  }
  tbody.replaceChildren(...rows.map((o) => {
    let cell;
    if (role === "manager") {
      const input = h("textarea", { rows: 2, maxlength: 2000, "aria-label": "対応状況" });
      input.value = o.follow_up || "";
      const status = h("span", { class: "status", role: "status" });
      cell = h("td", {}, input, h("button", { type: "button", class: "small", text: "保存", onclick: async () => {
        try {
          await api("PATCH", `/api/reports/opinions/${o.call_id}`, { follow_up: input.value });
          status.textContent = "保存しました";
        } catch (e) { status.textContent = e.message; }
      } }), status);
    } else {
      cell = h("td", { text: o.follow_up || "" });
    }
    return h("tr", {}, h("td", { text: `${o.date_ja} ${o.time}` }), h("td", { text: o.kind_ja }),
      h("td", { text: o.summary }), cell);
  }));
}

// Sets the view up for `me`; it reads the week each time it comes on screen.
export function init(me) {
  role = me.user.role;
  $("rep-week").value = thisWeek();
  $("rep-form").addEventListener("submit", (e) => { e.preventDefault(); load(); });
  $("rep-send").hidden = role !== "manager";
  $("rep-send").addEventListener("click", send);
  $("op-form").addEventListener("submit", (e) => { e.preventDefault(); loadOpinions(); });
  onShow("reports", () => { load(); loadOpinions(); });
}
