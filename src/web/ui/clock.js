// The server's clock as seen from the browser. "Today" and running timers follow the server,
// never the workstation: a workstation with a wrong clock must not call yesterday "今日".

export const TZ = "Asia/Tokyo";

let skewMs = 0; // server clock minus ours

// Notes the server time a message was stamped with (the hub's `at`).
export function noteServerTime(iso) {
  const t = Date.parse(iso);
  if (!Number.isNaN(t)) skewMs = t - Date.now();
}

// Milliseconds since the epoch by the server's clock.
export function serverNow() {
  return Date.now() + skewMs;
}

// YYYY-MM-DD of the given instant in Japan time ("en-CA" formats dates that way).
export function jstDate(d) {
  return new Intl.DateTimeFormat("en-CA", { timeZone: TZ, year: "numeric", month: "2-digit", day: "2-digit" }).format(d);
}

// The server's day, YYYY-MM-DD in Japan time.
export function serverDay() {
  return jstDate(new Date(serverNow()));
}
