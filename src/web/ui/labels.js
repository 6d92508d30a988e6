// Shared vocabulary and formatting for the live console and the dashboard. Codes come from
// the API in English; operators and managers only ever see the Japanese labels kept here,
// so a label is changed in one place.
"use strict";

const Labels = {
  END_CAUSE: {
    completed: "通話完了",
    abandoned: "放棄",
    busy: "話中",
    closed: "時間外",
    unstaffed: "不在",
    no_answer: "応答なし",
    refused: "拒否",
    rejected: "拒否(不正発信元)",
    interrupted: "中断",
    expired: "終話未検知（上限時間で終了）",
  },
  OUTCOME: {
    booking: "予約受付",
    facility_request: "施設依頼",
    inquiry: "一般問合せ",
    opinion: "意見",
    complaint: "苦情",
    wrong_number: "間違い電話",
    other: "その他",
  },
  TOPIC: {
    health_insurance: "マイナ保険証",
    renewal: "更新",
    loss: "紛失",
    fee: "手数料",
    other: "その他",
  },
  WITHHELD: { anonymous: "非通知", payphone: "公衆電話", unavailable: "表示圏外" },
  LINE_STATE: { idle: "待機中", ringing: "着信中", talking: "通話中" },
  HANGUP: { caller: "お客様が終話", operator: "オペレーターが終話" },
  // Booking statuses arrive with the booking issue; unknown codes are shown as they come.
  BOOKING_STATUS: {
    booked: "予約済み",
    shared: "市へ共有済み",
    visited: "訪問済み",
    done: "訪問済み",
    cancelled: "取消",
    canceled: "取消",
    deleted: "個人情報削除済み",
  },
  // Fallback when /api/talk-script sends no path list.
  TALK_PATHS: [
    { id: "new", label: "新規" },
    { id: "renewal", label: "更新" },
    { id: "loss", label: "紛失・破損" },
    { id: "facility", label: "施設" },
    { id: "inquiry", label: "一般問合せ" },
  ],
};

const TZ = "Asia/Tokyo";

const Fmt = {
  // "10:32:05" in Japan time, whatever the workstation's clock zone is.
  clock(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return "—";
    return d.toLocaleTimeString("ja-JP", { timeZone: TZ, hour: "2-digit", minute: "2-digit", second: "2-digit" });
  },
  // Dates in the history: "今日 10:32" for today, otherwise "2026/6/3 10:32".
  when(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return "—";
    const time = d.toLocaleTimeString("ja-JP", { timeZone: TZ, hour: "2-digit", minute: "2-digit" });
    if (Fmt.jstDate(d) === Fmt.jstDate(new Date())) return "今日 " + time;
    return d.toLocaleDateString("ja-JP", { timeZone: TZ, year: "numeric", month: "numeric", day: "numeric" }) + " " + time;
  },
  // YYYY-MM-DD of the given instant in Japan time ("en-CA" formats dates that way).
  jstDate(d = new Date()) {
    return new Intl.DateTimeFormat("en-CA", { timeZone: TZ, year: "numeric", month: "2-digit", day: "2-digit" }).format(d);
  },
  // Durations in words: "45秒", "3分12秒", "2時間5分", "1日3時間". Null means "no data yet".
  duration(sec) {
    if (sec === null || sec === undefined || Number.isNaN(Number(sec))) return "—";
    let s = Number(sec);
    if (s < 10 && s % 1 !== 0) return s.toFixed(1) + "秒";
    s = Math.round(s);
    if (s < 60) return s + "秒";
    if (s < 3600) return Math.floor(s / 60) + "分" + String(s % 60).padStart(2, "0") + "秒";
    if (s < 86400) return Math.floor(s / 3600) + "時間" + Math.floor((s % 3600) / 60) + "分";
    return Math.floor(s / 86400) + "日" + Math.floor((s % 86400) / 3600) + "時間";
  },
  // A running timer: "0:12", "12:03", "1:02:03".
  timer(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
    const two = (n) => String(n).padStart(2, "0");
    return hh ? `${hh}:${two(mm)}:${two(ss)}` : `${mm}:${two(ss)}`;
  },
  // Rates arrive as fractions (0..1); null when nothing was offered yet.
  percent(x) {
    if (x === null || x === undefined || Number.isNaN(Number(x))) return "—";
    return (Number(x) * 100).toFixed(1) + "%";
  },
  caller(c) {
    if (!c) return "不明";
    return c.display || Labels.WITHHELD[c.withheld_reason] || "不明";
  },
  endCause(code) {
    if (!code) return "";
    return Labels.END_CAUSE[code] || code;
  },
  outcome(code) {
    if (!code) return "";
    return Labels.OUTCOME[code] || code;
  },
};

// Small DOM builder so rendering code never goes through innerHTML with API data.
// props: class, text, dataset, on<event> handlers, true for boolean attributes, else attributes.
function h(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

// Runs fn at most once per `ms` however many events ask for it: a burst of call.ended and
// stats messages must not turn into a burst of API reads (each read of numbers is audited).
function coalesce(fn, ms = 300) {
  let timer = null;
  return () => {
    if (timer) return;
    timer = setTimeout(() => { timer = null; fn(); }, ms);
  };
}
