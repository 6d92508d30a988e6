// The account views: staff accounts (list, add, disable), the 取扱記録 (audit log) and the
// own password change.
import { api } from "./api.js";
import { serverNow } from "./clock.js";
import { byId as $, h } from "./dom.js";
import * as fmt from "./format.js";
import { codes, label } from "./labels.js";
import { limits } from "./limits.js";
import { onShow } from "./shell.js";

let me = null;

function formJson(form) {
  return Object.fromEntries(new FormData(form));
}

function userState(u) {
  if (u.disabled) return "無効";
  const locked = u.locked ?? (u.locked_until && Date.parse(u.locked_until) > serverNow());
  if (locked) return "ロック中";
  return u.must_change_password ? "有効（パスワード変更待ち）" : "有効";
}

// The admin's buttons on an account row: unlock a locked one, hand out a temporary password,
// disable. Each asks first and reloads the list.
function userActions(u) {
  if (me.user.role !== "admin" || u.disabled) return [];
  const out = [];
  if (u.locked) {
    out.push(h("button", {
      type: "button", class: "small", text: "ロック解除",
      onclick: async () => {
        if (!confirm(`${u.display_name}（${u.username}）のロックを解除しますか？`)) return;
        await api("POST", `/api/users/${u.id}/unlock`, {}).catch((x) => alert(x.message));
        loadUsers();
      },
    }));
  }
  if (u.id !== me.user.id) {
    out.push(h("button", {
      type: "button", class: "small secondary", text: "パスワード再設定",
      onclick: async () => {
        if (!confirm(`${u.display_name}（${u.username}）に仮パスワードを発行しますか？本人は次のログインで変更します。`)) return;
        try {
          const r = await api("POST", `/api/users/${u.id}/password`, {});
          const box = $("user-reset-result");
          box.replaceChildren(`${u.display_name}（${u.username}）の仮パスワード: `,
            h("code", { text: r.temporary_password }),
            "　本人に直接伝えてください。この画面を離れると再表示できません。");
          box.hidden = false;
        } catch (x) { alert(x.message); }
        loadUsers();
      },
    }));
    out.push(h("button", {
      type: "button", class: "small secondary", text: "無効にする",
      onclick: async () => {
        if (!confirm(u.username + " を無効にしますか？")) return;
        await api("POST", `/api/users/${u.id}/disable`, {}).catch((x) => alert(x.message));
        loadUsers();
      },
    }));
  }
  return out;
}

let staff = [];

async function loadUsers() {
  const tbody = $("users-table").tBodies[0];
  const users = await api("GET", "/api/users");
  staff = users;
  tbody.replaceChildren(...users.map((u) => h("tr", { dataset: { username: u.username } },
    h("td", { class: "nowrap", text: u.username }),
    h("td", { text: u.display_name }),
    h("td", { class: "nowrap", text: label("role", u.role) }),
    h("td", { class: "nowrap user-state", text: userState(u) }),
    h("td", { class: "nowrap", text: u.phone || "—", title: "sip-config/phones.toml で設定（読み取り専用）" }),
    h("td", { class: "actions" }, ...userActions(u)))));
  $("user-form").hidden = me.user.role !== "admin";
}

// Automatic reads (a screen loading a list, a pop) recorded by the system for every view.
const AUTOMATIC = new Set(["call.read", "call.pop", "callback.read", "audit.read", "booking.read", "facility.read", "visit.read"]);

// A JST civil date (yyyy-mm-dd) as the instant its day starts (or, `end`, the next day's).
function dayStart(ymd, end) {
  if (!ymd) return null;
  const d = new Date(ymd + "T00:00:00+09:00");
  if (end) d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString();
}

function auditQuery() {
  const q = new URLSearchParams();
  const f = new FormData($("audit-filter"));
  for (const k of ["actor", "action"]) if (f.get(k)) q.set(k, f.get(k));
  if (f.get("from")) q.set("from", dayStart(f.get("from")));
  if (f.get("to")) q.set("to", dayStart(f.get("to"), true));
  return q;
}

function nameOf(username) {
  const u = staff.find((s) => s.username === username);
  return u ? `${u.display_name}（${u.username}）` : username || "（システム）";
}

function targetText(r) {
  if (!r.target_kind) return "";
  const kind = label("audit_target", r.target_kind);
  if (r.target_kind === "user") {
    const u = staff.find((s) => String(s.id) === String(r.target_id));
    if (u) return `${kind} ${u.display_name}（${u.username}）`;
  }
  return `${kind} ${r.target_id ?? ""}`;
}

async function loadAudit(ev) {
  if (ev) ev.preventDefault();
  formError("audit-error", null);
  let data;
  try {
    if (!staff.length) staff = await api("GET", "/api/users");
    data = await api("GET", "/api/audit?" + auditQuery());
  } catch (x) { formError("audit-error", x.message); return; }
  const fold = $("audit-fold").checked;
  const rows = [];
  for (const r of data.rows) {
    const prev = rows[rows.length - 1];
    // Folded: a run of automatic reads by one person counts as one line.
    if (fold && AUTOMATIC.has(r.action) && prev && prev.r.action === r.action && prev.r.actor_username === r.actor_username) {
      prev.n += 1;
      continue;
    }
    rows.push({ r, n: 1 });
  }
  $("audit-table").tBodies[0].replaceChildren(...rows.map(({ r, n }) => h("tr", { class: AUTOMATIC.has(r.action) ? "automatic" : "" },
    h("td", { class: "nowrap", text: fmt.dateTime(r.at) }),
    h("td", { text: nameOf(r.actor_username) }),
    h("td", { text: label("audit_action", r.action) + (n > 1 ? `（ほか${n - 1}件）` : ""), title: r.action }),
    h("td", { class: "nowrap", text: label("audit_outcome", r.outcome) }),
    h("td", { text: targetText(r) }),
    h("td", { class: "nowrap", text: r.ip || "" }))));
}

// Downloads the log as filtered (CSV for Excel, or XLSX); the server records the export.
function exportAudit(format) {
  const q = auditQuery();
  q.set("format", format);
  location.href = "/api/audit/export?" + q;
}

// Shows `message` in the form's error line, or hides it for null.
function formError(id, message) {
  const err = $(id);
  err.textContent = message || "";
  err.hidden = !message;
}

// Wires the account views for the signed-in user.
export function init(session) {
  me = session;
  $("user-form").elements.namedItem("role").replaceChildren(...codes("role").map(([code, text]) => h("option", { value: code }, text)));
  $("audit-filter").elements.namedItem("action").replaceChildren(h("option", { value: "" }, "すべて"),
    ...codes("audit_action").map(([code, text]) => h("option", { value: code }, text)));
  if (limits.username_rule) $("username-rule").textContent = limits.username_rule;
  if (limits.display_name_max) $("user-form").elements.namedItem("display_name").maxLength = limits.display_name_max;
  onShow("users", loadUsers);
  onShow("audit", async () => {
    if (["admin", "manager"].includes(me.user.role)) {
      try { staff = await api("GET", "/api/users"); } catch (x) { staff = []; }
      $("audit-filter").elements.namedItem("actor").replaceChildren(h("option", { value: "" }, "すべての人"),
        ...staff.map((u) => h("option", { value: u.username }, `${u.display_name}（${u.username}）`)));
    }
    loadAudit();
  });
  $("audit-filter").addEventListener("submit", loadAudit);
  $("audit-fold").addEventListener("change", () => loadAudit());
  $("audit-export-csv").addEventListener("click", () => exportAudit("csv"));
  $("audit-export-xlsx").addEventListener("click", () => exportAudit("xlsx"));
  $("user-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    formError("user-error", null);
    const body = formJson(e.target);
    body.must_change_password = e.target.elements.namedItem("must_change_password").checked;
    try { await api("POST", "/api/users", body); e.target.reset(); loadUsers(); }
    catch (x) { formError("user-error", x.message); }
  });
  $("password-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    formError("password-error", null);
    try {
      await api("POST", "/api/me/password", formJson(e.target));
      alert("変更しました。再度ログインしてください。");
      location.href = "/login";
    } catch (x) { formError("password-error", x.message); }
  });
}
