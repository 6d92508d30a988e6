// How times, durations, rates, callers and codes are written on every screen.
import { TZ, jstDate, serverDay } from "./clock.js";
import { label } from "./labels.js";

function parse(iso) {
  if (!iso) return null;
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? null : d;
}

// "10:32:05" in Japan time, whatever the workstation's clock zone is.
export function clock(iso) {
  const d = parse(iso);
  if (!d) return "—";
  return d.toLocaleTimeString("ja-JP", { timeZone: TZ, hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

// Dates in the history: "今日 10:32" for the server's today, otherwise "2026/6/3 10:32".
export function when(iso) {
  const d = parse(iso);
  if (!d) return "—";
  const time = d.toLocaleTimeString("ja-JP", { timeZone: TZ, hour: "2-digit", minute: "2-digit" });
  if (jstDate(d) === serverDay()) return "今日 " + time;
  return d.toLocaleDateString("ja-JP", { timeZone: TZ, year: "numeric", month: "numeric", day: "numeric" }) + " " + time;
}

// A date and time for logs: "2026/11/25 10:32:05".
export function dateTime(iso) {
  const d = parse(iso);
  return d ? d.toLocaleString("ja-JP", { timeZone: TZ }) : "—";
}

// Durations in words: "45秒", "3分05秒", "2時間5分", "1日3時間". Null means "no data yet".
export function duration(sec) {
  if (sec === null || sec === undefined || Number.isNaN(Number(sec))) return "—";
  // One way everywhere (issue 18 item 8): whole seconds, "15秒", "2分05秒".
  const s = Math.round(Number(sec));
  if (s < 60) return s + "秒";
  if (s < 3600) return Math.floor(s / 60) + "分" + String(s % 60).padStart(2, "0") + "秒";
  if (s < 86400) return Math.floor(s / 3600) + "時間" + Math.floor((s % 3600) / 60) + "分";
  return Math.floor(s / 86400) + "日" + Math.floor((s % 86400) / 3600) + "時間";
}

// A running timer: "0:12", "12:03", "1:02:03".
export function timer(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  return hh ? `${hh}:${two(mm)}:${two(ss)}` : `${mm}:${two(ss)}`;
}

// Rates arrive as fractions (0..1); null when nothing was offered yet.
export function percent(x) {
  if (x === null || x === undefined || Number.isNaN(Number(x))) return "—";
  return (Number(x) * 100).toFixed(1) + "%";
}

// The caller as the server wrote it (number, or 非通知 / 公衆電話 / 表示圏外), else why not.
export function caller(c) {
  if (!c) return label("caller_kind", "unknown");
  if (c.display) return c.display;
  if (c.withheld_reason) return label("withheld_reason", c.withheld_reason);
  return label("caller_kind", c.kind || "unknown");
}

// The end cause of a call, "" if it has not ended.
export function endCause(code) {
  return label("end_cause", code);
}

// The recorded outcome of a call, "" if none yet.
export function outcome(code) {
  return label("outcome", code);
}

// A civil date "2026-12-10" as "2026年12月10日（木）" (the weekday from Intl, not a table).
export function visitDate(ymd) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(ymd || "");
  if (!m) return ymd || "—";
  const d = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
  const wd = d.toLocaleDateString("ja-JP", { timeZone: "UTC", weekday: "short" });
  return `${Number(m[1])}年${Number(m[2])}月${Number(m[3])}日（${wd}）`;
}

// A visit slot: "2026年12月10日（木） 午前 10:00頃".
export function slot(s, window) {
  if (!s) return "—";
  return [visitDate(s.date), label("half_day", s.half_day), window].filter(Boolean).join(" ");
}

// The number our line was dialled on, written like callers are: "0120-000-000".
// Free-dial, navi-dial and mobile/IP numbers have fixed splits; other numbers are shown as
// they came (their area code length varies, the server formats callers).
export function lineNumber(digits) {
  const d = String(digits || "").replace(/\D/g, "");
  if (!d) return "—";
  let m;
  if ((m = /^(0120|0570)(\d{3})(\d{3})$/.exec(d))) return `${m[1]}-${m[2]}-${m[3]}`;
  if ((m = /^(0800)(\d{3})(\d{4})$/.exec(d))) return `${m[1]}-${m[2]}-${m[3]}`;
  if ((m = /^(0[5789]0)(\d{4})(\d{4})$/.exec(d))) return `${m[1]}-${m[2]}-${m[3]}`;
  if ((m = /^(0[36])(\d{4})(\d{4})$/.exec(d))) return `${m[1]}-${m[2]}-${m[3]}`;
  return String(digits);
}

// How long ago `iso` was, from the server's clock: "12分" / "2時間5分" (for waiting lists).
export function waited(iso, nowMs) {
  const d = parse(iso);
  if (!d) return "—";
  return duration(Math.max(0, (nowMs - d.getTime()) / 1000));
}

// A live character counter for a text field: "12 / 1000文字", turning red over the limit.
export function counter(field, max) {
  const out = field.ownerDocument.createTextNode("");
  const update = () => {
    const n = [...field.value].length;
    out.textContent = `${n} / ${max}文字`;
    field.setAttribute("aria-invalid", n > max ? "true" : "false");
  };
  field.setAttribute("maxlength", String(max));
  field.addEventListener("input", update);
  update();
  return { node: out, update };
}
