// 取扱記録の照会 and 個人情報の削除 (issue 15 items 5, 6): the handling record of one booking
// or number (who read, changed, exported, sent or deleted it, when), the monthly handling
// report (取扱状況報告) download, and for managers the purge with its preview.
import { api, request } from "./api.js";
import { byId as $, h } from "./dom.js";
import { label } from "./labels.js";
import { dateTime } from "./format.js";
import { onShow } from "./shell.js";

async function lookup(e) {
  e.preventDefault();
  const subject = new FormData($("handling-form")).get("subject").trim();
  const out = $("handling-result");
  if (!subject) return;
  const res = await request("GET", "/api/audit?subject=" + encodeURIComponent(subject));
  if (!res.ok) {
    out.replaceChildren(h("p", { class: "error", role: "alert", text: res.data.message || `HTTP ${res.status}` }));
    return;
  }
  const s = res.data.subject;
  const rows = res.data.rows || [];
  out.replaceChildren(
    h("p", { class: "muted", text: `予約 ${s.booking_ids.join(", ") || "なし"} ／ 通話 ${s.call_ids.join(", ") || "なし"} ／ ${rows.length}件` }),
    h("table", { class: "compact" },
      h("thead", {}, h("tr", {}, ...["日時", "操作者", "操作", "結果", "対象", "接続元"].map((t) => h("th", { text: t })))),
      h("tbody", {}, ...rows.map((r) => h("tr", {},
        h("td", { text: dateTime(r.at) }),
        h("td", { text: r.actor_username || "" }),
        h("td", { text: label("audit_action", r.action), title: r.action }),
        h("td", { text: label("audit_outcome", r.outcome) }),
        h("td", { text: r.target_kind ? `${label("audit_target", r.target_kind)} ${r.target_id ?? ""}` : "一覧の閲覧" }),
        h("td", { text: r.ip || "" }))))));
}

function setReportLinks() {
  const month = $("handling-month").value;
  const ok = /^\d{4}-\d{2}$/.test(month);
  $("handling-xlsx").hidden = !ok;
  if (ok) $("handling-xlsx").href = `/api/reports/handling?month=${month}&format=xlsx`;
}

function planText(p) {
  return `予約 ${p.bookings.length}件、通話の発信者番号 ${p.calls}件、折り返し ${p.callbacks}件、施設申込 ${p.facility_requests}件`;
}

async function preview() {
  const out = $("purge-preview");
  let p;
  try { p = await api("GET", "/api/purge/preview"); } catch (e) {
    out.replaceChildren(h("p", { class: "error", text: e.message }));
    return;
  }
  $("purge-run").disabled = p.bookings.length === 0 && p.calls === 0;
  out.replaceChildren(
    h("p", { text: "削除予定：" + planText(p) }),
    h("table", { class: "compact" },
      h("thead", {}, h("tr", {}, ...["受付番号", "種別", "訪問日", "共有日", "訪問完了日"].map((t) => h("th", { text: t })))),
      h("tbody", {}, ...p.bookings.map((b) => h("tr", {},
        h("td", { class: "num", text: b.reception_number == null ? "" : String(b.reception_number) }),
        h("td", { text: label("booking_kind", b.kind) }),
        h("td", { text: b.visit_date }),
        h("td", { text: b.shared_on || "" }),
        h("td", { text: b.visit_done_on || "" }))))));
}

async function runPurge() {
  if (!confirm("共有済みかつ訪問完了の予約の個人情報を削除します。元に戻せません。よろしいですか？")) return;
  const msg = $("purge-message");
  try {
    const p = await api("POST", "/api/purge", {});
    msg.textContent = "削除しました：" + planText(p);
    msg.className = "status";
  } catch (e) {
    msg.textContent = e.message;
    msg.className = "status error";
  }
  preview();
}

// Sets the views up for `me` (the purge panel only for managers).
export function init(me) {
  $("handling-form").addEventListener("submit", lookup);
  const now = new Date();
  $("handling-month").value = `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, "0")}`;
  $("handling-month").addEventListener("input", setReportLinks);
  setReportLinks();
  if (me.user.role === "manager") {
    $("purge-run").addEventListener("click", runPurge);
    onShow("purge", preview);
  }
}
