// Entry module of the staff page: loads the session and the label table, wires the views
// the role may use, then opens the live link and shows the first view.
import * as accounts from "./accounts.js";
import * as calendar from "./calendar.js";
import * as handling from "./handling.js";
import { api, setCsrfToken } from "./api.js";
import { byId, h } from "./dom.js";
import { label, loadLabels } from "./labels.js";
import { loadLimits } from "./limits.js";
import * as live from "./live.js";
import * as manager from "./manager.js";
import * as operator from "./operator.js";
import * as reception from "./reception.js";
import * as sharing from "./sharing.js";
import * as reports from "./reports.js";
import { buildNav, show } from "./shell.js";
import * as visits from "./visits.js";

async function start() {
  let me;
  try { me = await api("GET", "/api/me"); } catch (e) { return; } // 401 went to /login
  setCsrfToken(me.csrf_token);
  try {
    await loadLabels();
  } catch (e) {
    // Without the label table no code could be named: say so instead of a half-empty page.
    byId("main").replaceChildren(h("p", { class: "error", role: "alert",
      text: "画面の表示に必要なデータを読み込めませんでした。再読み込みしてください：" + e.message }));
    return;
  }
  await loadLimits();
  // The name and the role once: an account named after its role shows the role alone.
  const roleLabel = label("role", me.user.role);
  byId("who-name").textContent = me.user.display_name;
  byId("who-role").textContent = roleLabel;
  if (me.user.display_name === roleLabel) byId("who-role-wrap").hidden = true;
  byId("logout").addEventListener("click", async () => {
    await api("POST", "/api/logout", {}).catch(() => {});
    location.href = "/login";
  });
  // A password an administrator set must be replaced before anything else (the server
  // answers 403 password_change_required to every other call meanwhile).
  if (me.user.must_change_password) {
    accounts.init(me);
    byId("nav").replaceChildren();
    byId("password-required").hidden = false;
    show("password");
    return;
  }
  const views = buildNav(me.user.role);
  accounts.init(me);
  if (["city", "manager"].includes(me.user.role)) visits.init();
  if (["admin", "manager"].includes(me.user.role)) handling.init(me);
  if (["manager", "admin"].includes(me.user.role)) sharing.init(me);
  // Operators and managers get the live console: handlers first, then the socket, so the
  // snapshot that arrives first is never missed.
  if (["operator", "manager"].includes(me.user.role)) {
    operator.init(me);
    if (me.user.role === "manager") {
      manager.init();
      calendar.init();
    }
    reception.init();
    live.start();
  }
  if (["manager", "admin"].includes(me.user.role)) reports.init(me);
  show(views[0]);
}

start();
