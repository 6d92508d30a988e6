// Entry module of the staff page: loads the session and the label table, wires the views
// the role may use, then opens the live link and shows the first view.
import * as accounts from "./accounts.js";
import * as calendar from "./calendar.js";
import * as handling from "./handling.js";
import { api, setCsrfToken } from "./api.js";
import { byId, h } from "./dom.js";
import { label, loadLabels } from "./labels.js";
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
  byId("who-name").textContent = me.user.display_name;
  byId("who-role").textContent = label("role", me.user.role);
  const views = buildNav(me.user.role);
  byId("logout").addEventListener("click", async () => {
    await api("POST", "/api/logout", {}).catch(() => {});
    location.href = "/login";
  });
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
