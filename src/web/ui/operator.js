// Operator console: the call banner (screen pop, R-LINE-4), the outcome form (R-LINE-3,
// R-REP-3), open wrap-ups, the missed-call callback list and the talk script (R-LINE-6).
import { api } from "./api.js";
import * as booking from "./booking.js";
import { serverNow } from "./clock.js";
import { byId as $, h, serverHtml } from "./dom.js";
import * as fmt from "./format.js";
import { codes, label } from "./labels.js";
import { limits } from "./limits.js";
import * as live from "./live.js";
import { isShown, onShow, show } from "./shell.js";

const BASE_TITLE = document.title;
let me = null;
let bound = null; // the call the outcome form is for: { call_key, caller, arrived_at, ... }
let dirty = false; // the operator has typed or chosen something not yet saved
let tickTimer = null;
const talk = { paths: [], sections: [], chosen: null }; // paths: talk_path codes, in order
let lastCallbacksWaiting = null;

const visible = () => isShown("operator");

// ---------------------------------------------------------------- call banner

// Which call the banner shows: a ringing call first (it needs someone now), then the
// newest call in progress, else the call that just ended.
function primaryCall() {
  const all = [...live.calls.values()];
  const newest = (a, b) => Date.parse(b.arrived_at) - Date.parse(a.arrived_at);
  const ringing = all.filter((c) => c.state === "ringing").sort(newest);
  const talking = all.filter((c) => c.state === "talking").sort(newest);
  const active = ringing.concat(talking);
  if (active.length) return { call: active[0], others: active.length - 1 };
  const ended = all.filter((c) => c.state === "ended").sort((a, b) => b.endedMs - a.endedMs);
  return { call: ended[0] || null, others: 0 };
}

// A phone not linked to a staff account answers with only its extension known.
function answeredByText(c) {
  if (!c.answered_by) return c.extension ? `内線 ${c.extension}` : "—";
  const who = c.answered_by === me.user.username ? "あなた" : c.answered_by;
  return c.extension ? `${who}（内線 ${c.extension}）` : who;
}

function stateText(c) {
  if (c.state === "ringing") return label("line_state", "ringing");
  if (c.state === "talking") {
    const by = c.answered_by === me.user.username ? "あなたが応答" : `${answeredByText(c)} が応答`;
    return `${label("line_state", "talking")}（${by}）`;
  }
  const e = c.ended || {};
  const parts = [fmt.endCause(e.cause) || label("call_phase", "ended")];
  if (e.hangup_by) parts.push(label("party", e.hangup_by));
  return "終了：" + parts.join("・");
}

function timerText(c) {
  const now = serverNow();
  if (c.state === "ringing") {
    const t = Date.parse(c.arrived_at);
    return Number.isNaN(t) ? "" : "呼出 " + fmt.timer(now - t);
  }
  if (c.state === "talking") return c.answeredMs ? "通話 " + fmt.timer(now - c.answeredMs) : "";
  const e = c.ended || {};
  if (e.talk_seconds) return "通話 " + fmt.duration(e.talk_seconds);
  if (e.ring_seconds) return "呼出 " + fmt.duration(e.ring_seconds);
  return "";
}

function renderHistory(c) {
  const box = $("call-banner-history");
  const hist = c.history || { calls: [], bookings: [] };
  const earlier = hist.calls || [];
  const bookings = hist.bookings || [];
  const parts = [h("h3", { text: "この番号の履歴" })];
  if (c.caller && c.caller.kind === "withheld") {
    parts.push(h("p", { class: "muted", text: "番号が通知されていないため、履歴は照合できません。" }));
  } else if (!earlier.length && !bookings.length) {
    parts.push(h("p", { class: "muted", text: "過去の着信・予約はありません。" }));
  } else {
    const SHOWN = 5;
    parts.push(h("h4", { text: `過去の着信（${earlier.length}件）` }));
    if (earlier.length) {
      parts.push(h("ul", { class: "cb-list" }, earlier.slice(0, SHOWN).map((x) =>
        h("li", {}, h("span", { class: "when", text: fmt.when(x.arrived_at) }), " ",
          [fmt.endCause(x.end_cause) || "—", fmt.outcome(x.outcome)].filter(Boolean).join("・")))));
      if (earlier.length > SHOWN) parts.push(h("p", { class: "muted small", text: `ほか ${earlier.length - SHOWN} 件` }));
    }
    parts.push(h("h4", { text: `予約（${bookings.length}件）` }));
    if (bookings.length) {
      // BookingSummary objects (src/booking/bookings.rs), newest first.
      parts.push(h("ul", { class: "cb-list cb-bookings" }, bookings.map((b) => {
        const slot = b.slot || {};
        return h("li", { dataset: { receptionNumber: String(b.reception_number ?? "") }, class: b.status === "cancelled" ? "cancelled" : "" },
          h("strong", { text: `受付番号 ${b.reception_number ?? "—"}` }),
          `・訪問 ${fmt.visitDate(slot.date)} ${label("half_day", slot.half_day)}`,
          `・${label("booking_status", b.status)}`,
          b.kind && b.kind !== "home" ? `・${label("booking_kind", b.kind)}` : "");
      })));
    } else {
      parts.push(h("p", { class: "muted small", text: "この番号からの予約はありません。" }));
    }
  }
  box.replaceChildren(...parts);
}

function renderBanner() {
  const banner = $("call-banner");
  const { call: c, others } = primaryCall();
  clearInterval(tickTimer);
  tickTimer = null;
  if (!c) {
    banner.hidden = true;
    banner.dataset.callKey = "";
    document.title = BASE_TITLE;
    return;
  }
  banner.dataset.callKey = c.call_key;
  banner.dataset.state = c.state;
  banner.className = "call-banner state-" + c.state;
  $("call-banner-state").textContent = stateText(c);
  $("call-banner-caller").textContent = fmt.caller(c.caller);
  $("call-banner-arrived").textContent = fmt.clock(c.arrived_at);
  $("call-banner-line").textContent = fmt.lineNumber(c.line_number);
  $("call-banner-answered").textContent = answeredByText(c);
  $("call-banner-more").hidden = others < 1;
  $("call-banner-more").textContent = others ? `ほかに ${others} 件の着信・通話があります` : "";
  $("call-banner-dismiss").hidden = c.state !== "ended";
  const timer = $("call-banner-timer");
  timer.textContent = timerText(c);
  if (c.state !== "ended") tickTimer = setInterval(() => { timer.textContent = timerText(c); }, 1000);
  renderHistory(c);
  banner.hidden = false;
  // The title shows in the task bar, so a ringing call is noticed from another window.
  if (c.state === "ringing") document.title = "【着信】" + fmt.caller(c.caller) + " — " + BASE_TITLE;
  else if (c.state === "talking") document.title = "【通話中】" + BASE_TITLE;
  else document.title = BASE_TITLE;
  if (bound && live.calls.has(bound.call_key)) renderTarget();
}

// The banner buttons: choose the talk-script path and preset the outcome for this call.
function startFrom(path, outcome) {
  const key = $("call-banner").dataset.callKey;
  const c = key && live.calls.get(key);
  if (!visible()) show("operator");
  if (c && (!bound || bound.call_key !== c.call_key)) bind(c);
  // 予約受付 is recorded by the booking itself once it is made, never preset by hand.
  if (outcome !== "booking") $("outcome-select").value = outcome;
  dirty = true; // an explicit choice: a new ringing call must not take the form away
  syncTopics();
  setStatus("");
  chooseTalkPath(path);
}

// ---------------------------------------------------------------- outcome form

function setStatus(text, kind) {
  const el = $("outcome-status");
  el.textContent = text;
  el.className = "status" + (kind ? " " + kind : "");
}

function syncTopics() {
  $("outcome-topics").hidden = $("outcome-select").value !== "inquiry";
}

function renderTarget() {
  const el = $("outcome-target");
  if (!bound) {
    el.textContent = "対象の通話：未選択（着信すると自動で選ばれます）";
    return;
  }
  const c = live.calls.get(bound.call_key);
  let state = c ? label("call_phase", c.state) : "";
  // On a shared line several consoles pop the same call; say whose it became.
  if (c && c.answered_by) state += `・応答 ${c.answered_by === me.user.username ? "あなた" : c.answered_by}`;
  el.textContent = `対象の通話：${fmt.clock(bound.arrived_at)} 着信・${fmt.caller(bound.caller)}` + (state ? `（${state}）` : "");
  for (const li of document.querySelectorAll("#wrapups [data-call-key]")) {
    li.classList.toggle("current", li.dataset.callKey === bound.call_key);
  }
}

// Points the form at a call. `row` is a CallRow (from the wrap-up list) or a live CallState.
function bind(row) {
  const same = bound && bound.call_key === row.call_key;
  bound = { call_key: row.call_key, caller: row.caller, arrived_at: row.arrived_at };
  $("outcome-form").dataset.callKey = row.call_key;
  if (!same) {
    $("outcome-select").value = row.outcome || "";
    $("outcome-note").value = row.outcome_note || "";
    $("outcome-note").dispatchEvent(new Event("change"));
    for (const cb of document.querySelectorAll('#outcome-topics input[type="checkbox"]')) cb.checked = false;
    dirty = false;
    setStatus("");
  }
  syncTopics();
  renderTarget();
}

// A new call takes the form only if the operator is not in the middle of another one.
function maybeBind(c) {
  if (!bound || !dirty || bound.call_key === c.call_key) bind(c);
}

async function save(ev) {
  ev.preventDefault();
  if (!bound) { setStatus("対象の通話がありません。着信中の通話か、未入力の一覧から選んでください。", "error"); return; }
  const outcome = $("outcome-select").value;
  if (!outcome) { setStatus("対応結果を選んでください。", "error"); $("outcome-select").focus(); return; }
  const topics = outcome === "inquiry"
    ? [...document.querySelectorAll('#outcome-topics input[type="checkbox"]:checked')].map((cb) => cb.value)
    : [];
  const key = bound.call_key;
  const button = $("outcome-save");
  button.disabled = true;
  setStatus("保存中…");
  try {
    await api("PATCH", "/api/calls/" + encodeURIComponent(key), { outcome, note: $("outcome-note").value.trim(), topics });
    if (bound && bound.call_key === key) { dirty = false; setStatus("保存しました", "ok"); }
    loadWrapups();
    document.dispatchEvent(new CustomEvent("madoguchi:outcome-saved", { detail: { call_key: key } }));
  } catch (e) {
    setStatus(e.message || "保存できませんでした。", "error");
  } finally {
    button.disabled = false;
  }
}

// The server recorded the call's outcome as `booking` with the booking itself.
function bookingSaved(summary, key) {
  if (key && bound && bound.call_key === key) {
    $("outcome-select").value = "booking";
    dirty = false;
    syncTopics();
    setStatus(`予約（受付番号 ${summary.reception_number}）で対応記録を保存しました`, "ok");
  }
  loadWrapups();
  if (key) document.dispatchEvent(new CustomEvent("madoguchi:outcome-saved", { detail: { call_key: key } }));
}

// ---------------------------------------------------------------- wrap-ups

async function loadWrapups() {
  const list = $("wrapups-list");
  let rows;
  try {
    rows = (await api("GET", "/api/calls/wrapups")).calls || [];
  } catch (e) {
    list.replaceChildren(h("li", { class: "error", text: "読み込めませんでした：" + e.message }));
    return;
  }
  $("wrapups-count").textContent = rows.length ? String(rows.length) : "";
  if (!rows.length) {
    list.replaceChildren(h("li", { class: "muted", text: "未入力の対応記録はありません。" }));
    return;
  }
  list.replaceChildren(...rows.map((r) => h("li", { dataset: { callKey: r.call_key } },
    h("button", {
      type: "button",
      class: "linklike",
      onclick: () => { bind(r); $("outcome-select").focus(); },
    },
    h("span", { class: "when nowrap", text: fmt.dateTime(r.arrived_at) }), " ",
    h("strong", { class: "tel", text: fmt.caller(r.caller) }),
    ` 通話 ${fmt.duration(r.talk_seconds)}`,
    `・応答 ${!r.answered_by ? "—" : r.answered_by === me.user.username ? "あなた" : r.answered_by}`))));
  renderTarget();
}

// ---------------------------------------------------------------- callbacks

let callbackRetry = null;

async function loadCallbacks() {
  const body = $("callbacks-body");
  let rows;
  try {
    rows = (await api("GET", "/api/callbacks")).callbacks || [];
  } catch (e) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: 6, class: "error", text: "読み込めませんでした：" + e.message + "（しばらくして自動で再読み込みします）" })));
    // A passing failure (a busy database) must not leave the list empty until the next call.
    clearTimeout(callbackRetry);
    callbackRetry = setTimeout(() => { if (visible()) loadCallbacks(); }, 3000);
    return;
  }
  $("callbacks-count").textContent = rows.length ? String(rows.length) : "";
  if (!rows.length) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: 6, class: "muted", text: "折り返しが必要な不在着信はありません。" })));
    return;
  }
  body.replaceChildren(...rows.map(callbackRow));
}

function callbackRow(cb) {
  const note = h("input", { type: "text", class: "cb-note", placeholder: "メモ（任意）", "aria-label": "メモ（任意・個人情報は書かない）" });
  const count = fmt.counter(note, limits.callback_note_max || 500);
  const err = h("span", { class: "error small", role: "alert" });
  const close = async (result, buttons) => {
    buttons.forEach((b) => { b.disabled = true; });
    err.textContent = "";
    try {
      await api("POST", `/api/callbacks/${encodeURIComponent(cb.id)}/close`, { result, note: note.value.trim() });
      loadCallbacks();
    } catch (e) {
      err.textContent = e.message;
      buttons.forEach((b) => { b.disabled = false; });
    }
  };
  const done = h("button", { type: "button", class: "small", onclick: () => close("called_back", [done, drop]) },
    label("callback_result", "called_back"));
  const drop = h("button", { type: "button", class: "small secondary", onclick: () => close("closed", [done, drop]) },
    label("callback_result", "closed"));
  const digits = cb.caller && cb.caller.e164;
  const number = digits
    ? h("a", { class: "tel", href: "tel:" + digits, text: fmt.caller(cb.caller) })
    : h("strong", { class: "tel", text: fmt.caller(cb.caller) });
  // A row is one stop for the keyboard: Enter moves into its actions (the memo field).
  const row = h("tr", {
    dataset: { callbackId: cb.id },
    tabindex: 0,
    class: "cb-row",
    "aria-label": `${fmt.caller(cb.caller)}、${cb.missed_count ?? 1}回、待ち ${fmt.waited(cb.first_missed_at || cb.last_missed_at, serverNow())}`,
    onkeydown: (e) => { if (e.key === "Enter" && e.target === row) { e.preventDefault(); note.focus(); } },
  },
    h("td", {}, number),
    h("td", { class: "nowrap num", text: `${cb.missed_count ?? 1}回` }),
    h("td", { class: "nowrap" }, fmt.when(cb.last_missed_at),
      cb.missed_count > 1 ? h("div", { class: "muted small", text: "初回 " + fmt.when(cb.first_missed_at) }) : null),
    h("td", { class: "nowrap num cb-waited", text: fmt.waited(cb.first_missed_at || cb.last_missed_at, serverNow()) }),
    h("td", { class: "nowrap", text: fmt.endCause(cb.last_cause) }),
    h("td", { class: "actions" }, done, " ", drop, note, h("span", { class: "muted small nowrap" }, count.node), err));
  return row;
}

// ---------------------------------------------------------------- talk script

async function loadTalkScript() {
  const body = $("talk-script-body");
  try {
    const data = await api("GET", "/api/talk-script");
    talk.sections = data.sections || [];
    // The script says which paths it has; their names come from the label table.
    const ids = (data.paths || []).map((p) => p.id).filter((id) => id !== "common");
    talk.paths = ids.length ? ids : codes("talk_path").map(([id]) => id);
  } catch (e) {
    talk.paths = codes("talk_path").map(([id]) => id);
    body.replaceChildren(h("p", { class: "error", text: "トークスクリプトを読み込めませんでした：" + e.message }));
    renderPathButtons();
    return;
  }
  renderPathButtons();
  renderTalkScript();
}

function renderPathButtons() {
  $("talk-paths").replaceChildren(...talk.paths.map((id) => h("button", {
    type: "button",
    class: "path",
    dataset: { path: id },
    "aria-pressed": String(talk.chosen === id),
    onclick: () => chooseTalkPath(talk.chosen === id ? null : id),
  }, label("talk_path", id))));
}

function chooseTalkPath(id) {
  talk.chosen = id;
  for (const b of document.querySelectorAll("#talk-paths button")) {
    b.setAttribute("aria-pressed", String(b.dataset.path === id));
  }
  renderTalkScript();
}

function renderTalkScript() {
  const body = $("talk-script-body");
  const chosen = talk.chosen;
  const shown = talk.sections.filter((s) => (s.paths || []).includes("common") || (chosen && (s.paths || []).includes(chosen)));
  const hint = chosen
    ? null
    : h("p", { class: "muted small", text: "用件が分かったら上のボタンで種類を選ぶと、該当する案内が表示されます。" });
  body.replaceChildren(...[hint].filter(Boolean), ...shown.map((s) => {
    // Rendered from the approved Markdown and sanitised by the server; it holds no call data.
    const content = h("div", { class: "ts-body" }, serverHtml(s.html));
    const onlyHere = !(s.paths || []).includes("common");
    return h("article", { class: "ts-section" + (onlyHere ? " ts-specific" : ""), dataset: { section: s.id } },
      h("h4", { text: s.title }), content);
  }));
  if (!shown.length) body.append(h("p", { class: "muted", text: "表示する項目がありません。" }));
}

// ---------------------------------------------------------------- wiring

const refreshLists = live.coalesce(() => { if (visible()) { loadWrapups(); loadCallbacks(); } }, 500);

// Sets the console up for the signed-in operator or manager; call before live.start().
export function init(session) {
  me = session;
  const select = $("outcome-select");
  select.replaceChildren(h("option", { value: "" }, "選択してください"),
    ...codes("outcome").map(([v, text]) => v === "booking"
      ? h("option", { value: v, disabled: true }, text + "（予約の登録で自動記録）")
      : h("option", { value: v }, text)));
  $("outcome-topics-list").replaceChildren(...codes("topic").map(([v, text]) =>
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "topics", value: v }), " " + text)));
  select.addEventListener("change", () => { dirty = true; syncTopics(); setStatus(""); });
  $("outcome-form").addEventListener("input", () => { dirty = true; if ($("outcome-status").classList.contains("ok")) setStatus(""); });
  $("outcome-form").addEventListener("submit", save);
  const noteCount = fmt.counter($("outcome-note"), limits.call_note_max || 1000);
  $("outcome-note-count").replaceChildren(noteCount.node);
  $("outcome-note").addEventListener("change", noteCount.update);
  $("banner-start-booking").addEventListener("click", () => {
    const key = $("call-banner").dataset.callKey;
    startFrom("new", "booking");
    booking.open((key && live.calls.get(key)) || null);
  });
  booking.init({ saved: bookingSaved });
  $("banner-start-facility").addEventListener("click", () => startFrom("facility", "facility_request"));
  $("call-banner-dismiss").addEventListener("click", () => live.dismiss($("call-banner").dataset.callKey));
  renderTarget();

  live.on("calls", renderBanner);
  // A ringing call does not take the form: it may end unanswered (an abandoned call cannot
  // take an outcome). The form follows the call this operator answers.
  live.on("call.answered", (m) => {
    if (m.call.answered_by === me.user.username) maybeBind(live.calls.get(m.call.call_key));
  });
  live.on("call.ended", refreshLists);
  live.on("snapshot", (m) => {
    // After a reconnect, pick up a call already in progress and anything missed meanwhile.
    const mine = (m.calls || []).find((c) => c.state !== "ended" && c.answered_by === me.user.username);
    if (mine) maybeBind(live.calls.get(mine.call_key));
    refreshLists();
  });
  live.on("stats", (s) => {
    // Another operator may have closed a callback: the count is our cue to re-read.
    if (s.callbacks_waiting !== lastCallbacksWaiting) {
      if (lastCallbacksWaiting !== null) refreshLists();
      lastCallbacksWaiting = s.callbacks_waiting;
    }
  });
  onShow("operator", () => { loadWrapups(); loadCallbacks(); });
  loadTalkScript();
}
