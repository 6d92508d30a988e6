// 訪問予定 (issue 15 item 4): the city staff's view of a week's visits — date, half-day,
// window, reception number, town, applicants, kind, and the names, address and phone needed
// at the door (each load is recorded in the 取扱記録) — with a 完了 button per visit that
// records the visit ended (date, applications taken, note). A second mark is refused by the
// server; the form offers it as a correction then.
import { request } from "./api.js";
import { byId as $, h } from "./dom.js";
import { label } from "./labels.js";
import { onShow } from "./shell.js";

// The ISO week (2026-W30) of a Date, as the API takes it.
function isoWeek(d) {
  const t = new Date(Date.UTC(d.getFullYear(), d.getMonth(), d.getDate()));
  const day = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - day);
  const y = t.getUTCFullYear();
  const w = Math.ceil(((t - Date.UTC(y, 0, 1)) / 86400000 + 1) / 7);
  return `${y}-W${String(w).padStart(2, "0")}`;
}

function shiftWeek(week, by) {
  const [y, w] = week.split("-W").map(Number);
  // The Monday of week w, then `by` weeks on.
  const jan4 = new Date(Date.UTC(y, 0, 4));
  const monday = new Date(jan4);
  monday.setUTCDate(jan4.getUTCDate() - ((jan4.getUTCDay() || 7) - 1) + (w - 1 + by) * 7);
  return isoWeek(new Date(monday.getUTCFullYear(), monday.getUTCMonth(), monday.getUTCDate()));
}

// The week shown; null until the server says which week is "now" (its clock decides).
let week = null;

function doneForm(v, correction) {
  const msg = h("span", { class: "status", role: "status" });
  const form = h("form", { class: "inline visit-done", "aria-label": `受付番号${v.reception_number ?? ""}の訪問完了` },
    h("label", {}, "訪問日 ", h("input", { type: "date", name: "date", required: true, value: v.done_on || v.date })),
    h("label", {}, "申請件数 ", h("input", { type: "number", name: "applications_taken", min: 0, max: 200, required: true, value: v.applications_taken ?? v.applicants })),
    h("label", {}, "備考 ", h("input", { name: "note", maxlength: 1000, value: v.visit_note || "" })),
    h("button", { type: "submit", class: "small" }, correction ? "訂正して保存" : "完了を記録"),
    msg);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const body = {
      date: f.get("date"),
      applications_taken: Number(f.get("applications_taken")),
      note: f.get("note") || "",
      correction,
    };
    const res = await request("POST", `/api/visits/${v.booking_id}/done`, body);
    if (res.ok) { load(); return; }
    msg.textContent = res.data.message || `HTTP ${res.status}`;
    msg.className = "status error";
  });
  return form;
}

function row(v) {
  const cell = h("td", {});
  if (v.purged_on) {
    cell.append(h("span", { class: "muted", text: `完了 ${v.done_on || ""}（個人情報削除済み）` }));
  } else if (v.done_on) {
    cell.append(h("span", { text: `完了 ${v.done_on}（${v.applications_taken ?? 0}件）` }), " ",
      h("button", { type: "button", class: "secondary small", onclick: () => cell.replaceChildren(doneForm(v, true)) }, "訂正"));
  } else {
    cell.append(h("button", { type: "button", class: "small", onclick: () => cell.replaceChildren(doneForm(v, false)) }, "完了"));
  }
  const who = v.kind === "facility"
    ? [v.facility_name, v.contact_person].filter(Boolean).join(" ／ ")
    : (v.names || []).join("、");
  return h("tr", { dataset: { bookingId: String(v.booking_id) }, class: v.done_on ? "done" : "" },
    h("td", { text: v.date_ja }),
    h("td", { text: `${label("half_day", v.half_day)} ${v.window}` }),
    h("td", { class: "num", text: v.reception_number == null ? "" : String(v.reception_number) }),
    h("td", { text: label("booking_kind", v.kind) }),
    h("td", { text: v.town || "" }),
    h("td", { class: "num", text: String(v.applicants) }),
    h("td", { text: who }),
    h("td", { text: v.address || "" }),
    h("td", { text: v.phone || "" }),
    cell);
}

async function load() {
  const tbody = $("visits-table").tBodies[0];
  const res = await request("GET", "/api/visits" + (week ? `?week=${encodeURIComponent(week)}` : ""));
  if (!res.ok) {
    tbody.replaceChildren(h("tr", {}, h("td", { colspan: 10, class: "error", text: "読み込めませんでした：" + (res.data.message || res.status) })));
    return;
  }
  week = res.data.week;
  $("visits-week").value = week;
  $("visits-heading").textContent = res.data.heading;
  const visits = res.data.visits || [];
  tbody.replaceChildren(...(visits.length ? visits.map(row)
    : [h("tr", {}, h("td", { colspan: 10, class: "muted", text: "この週の訪問はありません。" }))]));
}

// Sets the view up; it reads the week each time it comes on screen.
export function init() {
  $("visits-prev").addEventListener("click", () => { if (week) week = shiftWeek(week, -1); load(); });
  $("visits-next").addEventListener("click", () => { if (week) week = shiftWeek(week, 1); load(); });
  $("visits-week").addEventListener("change", (e) => { if (e.target.value) { week = e.target.value; load(); } });
  onShow("visits", load);
}
