// 受付一覧表 (R-BOOK-6, issue 14 item 8): the reception list for the manager and the
// operators, read from /api/reception-list?format=json, with the CSV (UTF-8 with BOM, opens
// in Excel) and XLSX downloads the server builds.
import { api } from "./api.js";
import { byId as $, h } from "./dom.js";
import { label } from "./labels.js";
import { onShow } from "./shell.js";

async function load() {
  const tbody = $("reception-table").tBodies[0];
  let rows;
  try {
    rows = (await api("GET", "/api/reception-list?format=json")).rows || [];
  } catch (e) {
    tbody.replaceChildren(h("tr", {}, h("td", { colspan: 9, class: "error", text: "読み込めませんでした：" + e.message })));
    return;
  }
  $("reception-count").textContent = `${rows.length}件`;
  if (!rows.length) {
    tbody.replaceChildren(h("tr", {}, h("td", { colspan: 9, class: "muted", text: "受付はまだありません。" })));
    return;
  }
  tbody.replaceChildren(...rows.map((r) => h("tr", {
    dataset: { receptionNumber: String(r.reception_number) },
    class: r.status === "cancelled" ? "cancelled" : "",
  },
  h("td", { class: "num", text: String(r.reception_number) }),
  h("td", { text: r.booked_on || "" }),
  h("td", { text: r.visit_date || "" }),
  h("td", { class: "num", text: String(r.applications ?? "") }),
  h("td", { text: label("booking_kind", r.kind) }),
  h("td", { text: label("booking_status", r.status) }),
  h("td", { text: r.shared_on || "" }),
  h("td", { text: r.visit_done_on || "" }),
  h("td", { text: r.purged_on || "" }))));
}

// Sets the view up; it reads the list each time it comes on screen.
export function init() {
  $("reception-reload").addEventListener("click", load);
  onShow("reception", load);
}
