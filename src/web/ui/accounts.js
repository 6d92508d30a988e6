// The account views: staff accounts (list, add, disable), the 取扱記録 (audit log) and the
// own password change.
import { api } from "./api.js";
import { serverNow } from "./clock.js";
import { byId as $, h } from "./dom.js";
import * as fmt from "./format.js";
import { codes, label } from "./labels.js";
import { onShow } from "./shell.js";

let me = null;

function formJson(form) {
  return Object.fromEntries(new FormData(form));
}

function userState(u) {
  if (u.disabled) return "無効";
  return u.locked_until && Date.parse(u.locked_until) > serverNow() ? "ロック中" : "有効";
}

async function loadUsers() {
  const tbody = $("users-table").tBodies[0];
  const users = await api("GET", "/api/users");
  tbody.replaceChildren(...users.map((u) => h("tr", { dataset: { username: u.username } },
    h("td", { text: u.username }),
    h("td", { text: u.display_name }),
    h("td", { text: label("role", u.role) }),
    h("td", { text: userState(u) }),
    h("td", {}, me.user.role === "admin" && !u.disabled && u.id !== me.user.id
      ? h("button", {
        type: "button",
        text: "無効にする",
        onclick: async () => {
          if (!confirm(u.username + " を無効にしますか？")) return;
          await api("POST", `/api/users/${u.id}/disable`, {});
          loadUsers();
        },
      })
      : null))));
  $("user-form").hidden = me.user.role !== "admin";
}

async function loadAudit(ev) {
  if (ev) ev.preventDefault();
  const q = new URLSearchParams();
  for (const [k, v] of new FormData($("audit-filter"))) if (v) q.set(k, v);
  const data = await api("GET", "/api/audit?" + q);
  $("audit-table").tBodies[0].replaceChildren(...data.rows.map((r) => h("tr", {},
    h("td", { text: fmt.dateTime(r.at) }),
    h("td", { text: r.actor_username || "" }),
    h("td", { text: label("audit_action", r.action), title: r.action }),
    h("td", { text: label("audit_outcome", r.outcome) }),
    h("td", { text: r.target_kind ? `${label("audit_target", r.target_kind)} ${r.target_id ?? ""}` : "" }),
    h("td", { text: r.ip || "" }))));
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
  onShow("users", loadUsers);
  onShow("audit", loadAudit);
  $("audit-filter").addEventListener("submit", loadAudit);
  $("user-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    formError("user-error", null);
    try { await api("POST", "/api/users", formJson(e.target)); e.target.reset(); loadUsers(); }
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
