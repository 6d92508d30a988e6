// 訪問日程 (the visit calendar, R-CAL-1..3) for the manager: the days month by month with
// their kind and the PM-3rd switch, the counts and warnings, propose / import / fix, add and
// remove a day, and the export links.
import { api, apiText } from "./api.js";
import { byId as $, h } from "./dom.js";
import { label } from "./labels.js";
import { onShow } from "./shell.js";

const WEEKDAYS = ["月", "火", "水", "木", "金"];

function say(text, bad) {
  const m = $("cal-message");
  m.textContent = text || "";
  m.className = bad ? "error" : "muted";
  m.hidden = !text;
}

// Runs a change and redraws from the calendar it returns; errors are shown, never thrown.
async function change(fn, done) {
  try {
    const r = await fn();
    render(r.calendar);
    const w = (r.warnings || []).map((p) => p.message);
    say([done, ...w].filter(Boolean).join("\n"), false);
  } catch (e) {
    say(e.message, true);
  }
}

function dayRow(d, fixed) {
  const path = "/api/calendar/days/" + d.date;
  return h("tr", { dataset: { date: d.date } },
    h("td", { text: `${d.date}（${d.weekday}）` }),
    h("td", {}, h("select", {
      "aria-label": d.date + " の種別",
      onchange: (e) => change(() => api("PUT", path, { kind: e.target.value, pm_extra_open: false }), d.date + " を変更しました。"),
    }, ...["home", "facility"].map((k) => h("option", { value: k, text: label("visit_day_kind", k) || k, selected: k === d.kind })))),
    h("td", {}, d.kind === "home" ? h("label", {},
      h("input", {
        type: "checkbox",
        checked: d.pm_extra_open,
        onchange: (e) => change(() => api("PUT", path, { kind: d.kind, pm_extra_open: e.target.checked }),
          d.date + (e.target.checked ? " の午後3件目を開けました。" : " の午後3件目を閉じました。")),
      }), " 午後3件目") : h("span", { class: "muted", text: "—" })),
    h("td", { class: "num", text: String(d.booked) }),
    h("td", {}, h("button", {
      type: "button",
      class: "small secondary",
      text: "外す",
      onclick: () => {
        if (!confirm(d.date + " を訪問日から外しますか？" + (fixed ? "（確定後の変更として記録されます）" : ""))) return;
        change(() => api("DELETE", path), d.date + " を外しました。");
      },
    })));
}

function render(cal) {
  $("cal-state").textContent = cal.fixed
    ? `確定済み（${cal.fixed_by || ""}）：変更は1日ずつ、取扱記録に残ります。`
    : "下書き（未確定）";
  $("cal-propose").disabled = cal.fixed;
  $("cal-import").disabled = cal.fixed;
  $("cal-fix").disabled = cal.fixed || cal.days.length === 0;
  const s = cal.season;
  const home = cal.days.filter((d) => d.kind === "home").length;
  $("cal-summary").textContent =
    `訪問期間 ${s.start}〜${s.end}：自宅訪問日 ${home}/${s.home_days} 日・施設訪問日 ${cal.days.length - home}/${s.facility_days} 日（毎週 ${s.min_days_per_week}〜${s.max_days_per_week} 日）`;
  $("cal-problems").replaceChildren(...cal.problems.map((p) => h("li", { class: p.severity === "error" ? "error" : "", text: p.message })));
  $("cal-months").replaceChildren(...cal.counts.months.map((m) => h("section", { class: "panel", dataset: { month: m.month } },
    h("h3", { text: `${m.month}　自宅 ${m.home} 日・施設 ${m.facility} 日　（${WEEKDAYS.map((w, i) => w + m.weekdays[i]).join(" ")}）` }),
    h("table", {},
      h("thead", {}, h("tr", {}, ...["日付", "種別", "午後3件目", "予約", ""].map((t) => h("th", { text: t })))),
      h("tbody", {}, ...cal.days.filter((d) => d.date.startsWith(m.month)).map((d) => dayRow(d, cal.fixed)))))));
}

async function load() {
  try {
    render(await api("GET", "/api/calendar"));
  } catch (e) {
    say(e.message, true);
  }
}

export function init() {
  onShow("calendar", load);
  $("cal-propose").addEventListener("click", () => {
    if (!confirm("提案で下書きを置き換えますか？")) return;
    change(() => api("POST", "/api/calendar/propose", {}), "提案を下書きにしました。");
  });
  $("cal-fix").addEventListener("click", () => {
    if (!confirm("訪問日程を確定しますか？確定後は1日ずつの変更だけになります。")) return;
    change(() => api("POST", "/api/calendar/fix", {}), "確定しました。");
  });
  $("cal-import").addEventListener("click", () => $("cal-file").click());
  $("cal-file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    e.target.value = "";
    if (!file) return;
    const text = await file.text();
    change(() => apiText("POST", "/api/calendar/import", text), file.name + " を取り込みました。");
  });
  $("cal-add").addEventListener("submit", (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const date = f.get("date");
    change(() => api("PUT", "/api/calendar/days/" + date, { kind: f.get("kind"), pm_extra_open: false }), date + " を追加しました。");
  });
}
