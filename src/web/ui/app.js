// Staff shell: loads the session, shows the views the role may use, and calls the API
// with the session's anti-CSRF token on every state-changing request.
"use strict";

const VIEWS = {
  operator: { label: "オペレーター", roles: ["operator", "manager"] },
  manager: { label: "ダッシュボード", roles: ["manager"] },
  city: { label: "市職員", roles: ["city"] },
  users: { label: "職員アカウント", roles: ["admin", "manager"] },
  audit: { label: "取扱記録", roles: ["admin", "manager"] },
  password: { label: "パスワード変更", roles: ["operator", "manager", "city", "admin"] },
};
const ROLE_LABEL = { operator: "オペレーター", manager: "管理者", city: "市職員", admin: "システム管理者" };
let me = null;

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (me && method !== "GET") headers["X-CSRF-Token"] = me.csrf_token;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 401) { location.href = "/login"; throw new Error("unauthenticated"); }
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.message || res.statusText);
  return data;
}

function cell(tr, text) { const td = document.createElement("td"); td.textContent = text ?? ""; tr.appendChild(td); return td; }
function fmtTime(iso) { return new Date(iso).toLocaleString("ja-JP", { timeZone: "Asia/Tokyo" }); }

function show(name) {
  document.querySelectorAll(".view").forEach((v) => { v.hidden = v.id !== "view-" + name; });
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === name));
  if (name === "operator" && typeof Operator !== "undefined") Operator.onShow();
  if (name === "manager" && typeof Manager !== "undefined") Manager.onShow();
  if (name === "users") loadUsers();
  if (name === "audit") loadAudit();
}

async function loadUsers() {
  const tbody = document.querySelector("#users-table tbody");
  tbody.replaceChildren();
  for (const u of await api("GET", "/api/users")) {
    const tr = document.createElement("tr");
    cell(tr, u.username); cell(tr, u.display_name); cell(tr, ROLE_LABEL[u.role]);
    cell(tr, u.disabled ? "無効" : (u.locked_until && new Date(u.locked_until) > new Date() ? "ロック中" : "有効"));
    const td = cell(tr, "");
    if (me.user.role === "admin" && !u.disabled && u.id !== me.user.id) {
      const b = document.createElement("button");
      b.textContent = "無効にする";
      b.addEventListener("click", async () => {
        if (!confirm(u.username + " を無効にしますか？")) return;
        await api("POST", `/api/users/${u.id}/disable`, {}); loadUsers();
      });
      td.appendChild(b);
    }
    tbody.appendChild(tr);
  }
  document.getElementById("user-form").hidden = me.user.role !== "admin";
}

async function loadAudit(ev) {
  if (ev) ev.preventDefault();
  const f = new FormData(document.getElementById("audit-filter"));
  const q = new URLSearchParams();
  for (const [k, v] of f) if (v) q.set(k, v);
  const data = await api("GET", "/api/audit?" + q);
  const tbody = document.querySelector("#audit-table tbody");
  tbody.replaceChildren();
  for (const r of data.rows) {
    const tr = document.createElement("tr");
    cell(tr, fmtTime(r.at)); cell(tr, r.actor_username); cell(tr, r.action); cell(tr, r.outcome);
    cell(tr, r.target_kind ? `${r.target_kind} ${r.target_id}` : ""); cell(tr, r.ip);
    tbody.appendChild(tr);
  }
}

function formJson(form) { return Object.fromEntries(new FormData(form)); }

async function start() {
  try { me = await api("GET", "/api/me"); } catch (e) { return; }
  document.getElementById("who-name").textContent = me.user.display_name;
  document.getElementById("who-role").textContent = me.role_label;
  const nav = document.getElementById("nav");
  const allowed = Object.entries(VIEWS).filter(([, v]) => v.roles.includes(me.user.role));
  for (const [name, v] of allowed) {
    const a = document.createElement("a");
    a.href = "#" + name; a.textContent = v.label; a.dataset.view = name;
    a.addEventListener("click", (e) => { e.preventDefault(); show(name); });
    nav.appendChild(a);
  }
  document.getElementById("logout").addEventListener("click", async () => {
    await api("POST", "/api/logout", {}).catch(() => {}); location.href = "/login";
  });
  document.getElementById("audit-filter").addEventListener("submit", loadAudit);
  document.getElementById("user-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const err = document.getElementById("user-error"); err.hidden = true;
    try { await api("POST", "/api/users", formJson(e.target)); e.target.reset(); loadUsers(); }
    catch (x) { err.textContent = x.message; err.hidden = false; }
  });
  document.getElementById("password-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const err = document.getElementById("password-error"); err.hidden = true;
    try { await api("POST", "/api/me/password", formJson(e.target)); alert("変更しました。再度ログインしてください。"); location.href = "/login"; }
    catch (x) { err.textContent = x.message; err.hidden = false; }
  });
  // Operators and managers get the live console: handlers first, then the socket, so the
  // snapshot that arrives first is never missed.
  if (["operator", "manager"].includes(me.user.role)) {
    Operator.init(me);
    if (me.user.role === "manager") Manager.init();
    Live.start();
  }
  show(allowed[0][0]);
}
start();
