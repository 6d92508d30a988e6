// The staff shell: the views a role may use, the navigation between them, and what each
// view does when it comes on screen.
import { byId, h } from "./dom.js";

// View name → its navigation label and the roles that may open it. Order is the nav order;
// the first allowed view opens at start.
const VIEWS = {
  operator: { label: "オペレーター", roles: ["operator", "manager"] },
  manager: { label: "ダッシュボード", roles: ["manager"] },
  calendar: { label: "訪問日程", roles: ["manager"] },
  reception: { label: "受付一覧表", roles: ["operator", "manager"] },
  visits: { label: "訪問予定", roles: ["city", "manager"] },
  share: { label: "市への共有", roles: ["manager", "admin"] },
  reports: { label: "レポート", roles: ["manager", "admin"] },
  users: { label: "職員アカウント", roles: ["admin", "manager"] },
  audit: { label: "取扱記録", roles: ["admin", "manager"] },
  handling: { label: "取扱照会", roles: ["admin", "manager"] },
  purge: { label: "個人情報削除", roles: ["manager"] },
  password: { label: "パスワード変更", roles: ["operator", "manager", "city", "admin"] },
};

const shownHooks = new Map();

// Runs fn every time the view `name` is shown.
export function onShow(name, fn) {
  if (!shownHooks.has(name)) shownHooks.set(name, []);
  shownHooks.get(name).push(fn);
}

// Shows one view and hides the others.
export function show(name) {
  document.querySelectorAll(".view").forEach((v) => { v.hidden = v.id !== "view-" + name; });
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === name));
  for (const fn of shownHooks.get(name) || []) fn();
}

// Whether the view `name` is on screen.
export function isShown(name) {
  const v = byId("view-" + name);
  return !!v && !v.hidden;
}

// Fills the navigation with the views `role` may use; returns their names in order.
export function buildNav(role) {
  const allowed = Object.entries(VIEWS).filter(([, v]) => v.roles.includes(role));
  byId("nav").replaceChildren(...allowed.map(([name, v]) => h("a", {
    href: "#" + name,
    text: v.label,
    dataset: { view: name },
    onclick: (e) => { e.preventDefault(); show(name); },
  })));
  return allowed.map(([name]) => name);
}
