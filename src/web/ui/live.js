// The live link to the hub (/ws): keeps the calls that are ringing, in progress or just
// ended, and tells the views when they change or new live stats arrive. The server's first
// message after every (re)connect is a snapshot, so a page refresh or a dropped link loses
// nothing: we rebuild from it instead of trusting what we had.
import { api } from "./api.js";
import { noteServerTime, serverNow } from "./clock.js";
import { byId } from "./dom.js";

// How long an ended call stays on the banner, so the operator sees how it ended.
const LINGER_MS = 30000;
// Stats come at least every 5 s; this much silence means the link is dead even if
// the browser has not noticed (sleeping laptop, dropped Wi-Fi, stuck proxy).
const WATCHDOG_MS = 20000;
const MIN_DELAY_MS = 1000;
const MAX_DELAY_MS = 10000;
// The close code of a socket whose session ended (src/web/console_api.rs SESSION_ENDED).
const SESSION_ENDED = 4401;

const handlers = new Map();
// call_key → entry (CallState plus local fields): the calls ringing, talking or just ended.
export const calls = new Map();
let ws = null;
let delay = MIN_DELAY_MS;
let failures = 0;
let retryTimer = null;
let watchdogTimer = null;
let started = false;

// Calls fn(payload) on every message of `type` (snapshot, call.ringing, call.answered,
// call.ended, stats) and on "calls" whenever the set of calls changed.
export function on(type, fn) {
  if (!handlers.has(type)) handlers.set(type, []);
  handlers.get(type).push(fn);
}

function emit(type, payload) {
  for (const fn of handlers.get(type) || []) {
    // One view's bug must not stop the others from updating.
    try { fn(payload); } catch (e) { console.error("live handler", type, e); }
  }
}

function setStatus(state, waitMs) {
  const el = byId("ws-status");
  if (!el) return;
  el.hidden = false;
  el.dataset.state = state;
  if (state === "open") el.textContent = "● リアルタイム接続中";
  else if (state === "connecting") el.textContent = "接続中…";
  else if (waitMs) el.textContent = `再接続中…（${Math.round(waitMs / 1000)}秒後に再試行）`;
  else el.textContent = "再接続中…";
}

function url() {
  return (location.protocol === "https:" ? "wss" : "ws") + "://" + location.host + "/ws";
}

function connect() {
  clearTimeout(retryTimer);
  retryTimer = null;
  if (ws) return;
  setStatus(failures ? "retry" : "connecting");
  let sock;
  try {
    sock = new WebSocket(url());
  } catch (e) {
    scheduleRetry();
    return;
  }
  ws = sock;
  // Handlers check `ws === sock` so a socket we already gave up on cannot act later.
  sock.addEventListener("open", () => { if (ws === sock) armWatchdog(sock); });
  sock.addEventListener("message", (ev) => {
    if (ws !== sock) return;
    armWatchdog(sock);
    handle(ev.data);
  });
  sock.addEventListener("close", (ev) => {
    if (ws !== sock) return;
    ws = null;
    clearTimeout(watchdogTimer);
    // 4401: the session ended (logout, disabled, expired); the API sends us to the login
    // page on its 401 instead of a reconnect that would fail.
    if (ev.code === SESSION_ENDED) api("GET", "/api/me").catch(() => {});
    scheduleRetry();
  });
}

function scheduleRetry() {
  failures += 1;
  const wait = delay;
  delay = Math.min(delay * 2, MAX_DELAY_MS);
  setStatus("retry", wait);
  // The upgrade of an expired session fails without telling us why; ask the API,
  // which sends the browser to the login page on 401.
  if (failures >= 2) api("GET", "/api/me").catch(() => {});
  retryTimer = setTimeout(connect, wait);
}

function armWatchdog(sock) {
  clearTimeout(watchdogTimer);
  watchdogTimer = setTimeout(() => {
    if (ws !== sock) return;
    ws = null;
    try { sock.close(); } catch (e) { /* already closing */ }
    scheduleRetry();
  }, WATCHDOG_MS);
}

function handle(data) {
  let msg;
  try { msg = JSON.parse(data); } catch (e) { return; }
  if (!msg || typeof msg.type !== "string") return;
  noteServerTime(msg.at);
  switch (msg.type) {
    case "snapshot": {
      // Only now is the link really up (the upgrade alone could still be refused).
      delay = MIN_DELAY_MS;
      failures = 0;
      setStatus("open");
      const present = new Set();
      for (const c of msg.calls || []) {
        upsert(c, c.state === "talking" ? "talking" : "ringing", msg);
        present.add(c.call_key);
      }
      // Active calls missing from the snapshot ended while we were away.
      for (const [key, e] of calls) {
        if (!present.has(key) && e.state !== "ended") calls.delete(key);
      }
      if (msg.stats) emit("stats", msg.stats);
      emit("alarms", msg.alarms || []);
      emit("snapshot", msg);
      emit("calls");
      break;
    }
    case "call.ringing":
      if (!msg.call) return;
      upsert(msg.call, "ringing", msg);
      emit(msg.type, msg);
      emit("calls");
      break;
    case "call.answered":
      if (!msg.call) return;
      upsert(msg.call, "talking", msg);
      emit(msg.type, msg);
      emit("calls");
      break;
    case "call.ended":
      if (!msg.call) return;
      ended(msg);
      emit(msg.type, msg);
      emit("calls");
      break;
    case "stats":
      if (!msg.stats) return;
      emit("stats", msg.stats);
      break;
    case "alarms":
      emit("alarms", msg.alarms || []);
      break;
    default:
      // Unknown types are ignored so the server can add messages before the UI knows them.
      break;
  }
}

function upsert(call, state, msg) {
  const prev = calls.get(call.call_key) || {};
  const prevHistory = prev.history;
  const entry = Object.assign(prev, call, { state });
  // call.answered / call.ended may carry no history; keep the one from ringing.
  if (!call.history && prevHistory) entry.history = prevHistory;
  if (state === "talking" && !entry.answeredMs) {
    const t = Date.parse(call.answered_at || (msg.type === "call.answered" ? msg.at : ""));
    entry.answeredMs = Number.isNaN(t) ? null : t;
  }
  calls.set(call.call_key, entry);
  return entry;
}

function ended(msg) {
  const entry = upsert(msg.call, "ended", msg);
  entry.ended = {
    cause: msg.cause || msg.call.end_cause || null,
    hangup_by: msg.hangup_by || null,
    ring_seconds: msg.ring_seconds ?? null,
    talk_seconds: msg.talk_seconds ?? null,
  };
  const t = Date.parse(msg.at);
  entry.endedMs = Number.isNaN(t) ? serverNow() : t;
  clearTimeout(entry.lingerTimer);
  entry.lingerTimer = setTimeout(() => dismiss(entry.call_key), LINGER_MS);
}

// Removes an ended call from the banner before its linger time is up.
export function dismiss(key) {
  const e = calls.get(key);
  if (!e || e.state !== "ended") return;
  clearTimeout(e.lingerTimer);
  calls.delete(key);
  emit("calls");
}

// Opens the link once; it reconnects by itself from then on.
export function start() {
  if (started) return;
  started = true;
  // Skip the remaining back-off when the network or the tab comes back.
  const kick = () => { if (!ws && retryTimer) connect(); };
  window.addEventListener("online", kick);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) kick(); });
  connect();
}


// Runs fn at most once per `ms` however many events ask for it: a burst of call.ended and
// stats messages must not turn into a burst of API reads (each read of numbers is audited).
export function coalesce(fn, ms = 300) {
  let timer = null;
  return () => {
    if (timer) return;
    timer = setTimeout(() => { timer = null; fn(); }, ms);
  };
}
