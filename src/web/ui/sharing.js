// 市への共有 (R-PREP-1, R-PREP-2): the weekly share of the slips for managers and admins — each
// visit week's due date and state, preparing a week's encrypted archive (the password is shown
// once), the second person's approval after checking recipient, week and count, the send (or,
// without SMTP, the two downloads and "送付済み"), and the recipients' allow-list (admin).
import { api } from "./api.js";
import { byId as $, h } from "./dom.js";
import * as fmt from "./format.js";
import { label } from "./labels.js";
import { onShow } from "./shell.js";

let me = null;
let recipients = [];

function say(text, bad) {
  const m = $("share-message");
  m.textContent = text || "";
  m.className = bad ? "error" : "muted";
  m.hidden = !text;
}

// Runs an action, then reloads the view; errors are shown, never thrown.
async function act(fn, done) {
  try {
    await fn();
    say(done, false);
  } catch (e) {
    say(e.message, true);
  }
  load();
}

function showPassword(p) {
  const box = $("share-password");
  box.replaceChildren(
    h("h3", { text: "パスワード（この画面で一度だけ表示されます）" }),
    h("p", { class: "secret", text: p.password }),
    h("p", { text: `${p.share.title}　${p.share.slip_count}件　送付先 ${p.share.recipient}` }),
    h("p", { class: "warn", text: "パスワードは保存・印刷・メモをしないでください。市へは承認後の別メール（メール設定がない場合はダウンロードしたパスワード）でのみ伝えます。画面を閉じると二度と表示されません。" }),
    h("button", { type: "button", class: "small secondary", text: "確認しました（閉じる）", onclick: () => { box.replaceChildren(); box.hidden = true; } }));
  box.hidden = false;
}

// Prepares a share: body names the week or the facility request; `what` is for the question.
async function prepare(body, what) {
  const recipient = $("share-recipient").value;
  if (!recipient) { say("送付先を選んでください（送付先はシステム管理者が登録します）。", true); return; }
  if (!confirm(`${what} を ${recipient} あてに準備しますか？`)) return;
  try {
    const p = await api("POST", "/api/shares", { ...body, recipient });
    showPassword(p);
    say(`準備しました（共有 ${p.share.id}）。別の管理者の承認が必要です。`, false);
  } catch (e) {
    say(e.message, true);
  }
  load();
}

async function approve(s) {
  // The approver checks what goes where, fresh from the server.
  const v = await api("GET", `/api/shares/${s.id}`);
  const text = `次の内容で送付を承認しますか？\n\n送付先：${v.recipient}\n内容：${label("share_kind", v.kind)}　${v.title}\n件数：${v.slip_count}件（申請者${v.applicant_count}名）\n準備者：${v.prepared_by}`;
  if (!confirm(text)) return;
  act(() => api("POST", `/api/shares/${s.id}/approve`, {}), `共有 ${s.id} を承認しました。`);
}

function involved(s) {
  return s.prepared_by === me.user.username || s.approved_by === me.user.username;
}

function actions(s) {
  if (s.status === "prepared") {
    return s.prepared_by === me.user.username
      ? h("span", { class: "muted", text: "別の管理者の承認待ち" })
      : h("button", { type: "button", class: "small", text: "確認して承認", onclick: () => approve(s) });
  }
  if (s.status !== "approved") return null;
  if (s.delivery === "smtp") {
    return h("button", {
      type: "button", class: "small", text: "メールで送付",
      onclick: () => confirm(`${s.recipient} あてに、受付票とパスワードを別々のメールで送ります。よろしいですか？`)
        && act(() => api("POST", `/api/shares/${s.id}/send`, {}), `共有 ${s.id} を送付しました。`),
    });
  }
  if (!involved(s)) return h("span", { class: "muted", text: "準備者・承認者がダウンロードします" });
  return h("span", {},
    h("a", { href: `/api/shares/${s.id}/archive`, download: s.archive_name, text: "受付票（ZIP）" }), " ",
    h("a", { href: `/api/shares/${s.id}/password`, text: "パスワード" }), " ",
    h("button", {
      type: "button", class: "small", text: "送付済みにする",
      onclick: () => confirm("ZIPとパスワードを別々のメールで送りましたか？送付済みにすると、どちらもサーバーから削除されます。")
        && act(() => api("POST", `/api/shares/${s.id}/send`, {}), `共有 ${s.id} を送付済みにしました。`),
    }));
}

function renderDue(data) {
  $("share-today").textContent = `${data.today} 現在・送付方法：${label("share_sent_via", data.delivery)}`;
  const tbody = $("share-due").tBodies[0];
  if (!data.weeks.length) {
    tbody.replaceChildren(h("tr", {}, h("td", { colspan: 6, class: "muted", text: "自宅訪問の予約はまだありません。" })));
    return;
  }
  tbody.replaceChildren(...data.weeks.map((w) => h("tr", { dataset: { week: w.week_start, state: w.state } },
    h("td", { text: w.week_label }),
    h("td", { text: w.due_label }),
    h("td", { class: "num", text: String(w.bookings) }),
    h("td", { class: "num", text: String(w.not_yet_shared) }),
    h("td", { class: w.state === "late" || w.state === "sent_late" ? "error" : "", text: label("share_due_state", w.state) }),
    h("td", {}, me.user.role === "manager" && w.bookings > 0 && !["prepared", "approved"].includes(w.state)
      && (w.not_yet_shared > 0 || !w.state.startsWith("sent"))
      ? h("button", { type: "button", class: "small secondary", text: "準備",
        onclick: () => prepare({ week: w.week_start }, `${w.week_label} の受付票（${w.bookings}件）`) })
      : null))));
}

function renderFacilities(facilities) {
  const tbody = $("share-facilities").tBodies[0];
  if (!facilities.length) {
    tbody.replaceChildren(h("tr", {}, h("td", { colspan: 6, class: "muted", text: "施設訪問の予定はまだありません。" })));
    return;
  }
  tbody.replaceChildren(...facilities.map((f) => h("tr", { dataset: { facility: String(f.facility_request_id), state: f.state } },
    h("td", { text: f.facility_name }),
    h("td", { text: f.visit_label }),
    h("td", { text: f.due_label }),
    h("td", { class: "num", text: f.applicants_listed ? `${f.applicants_listed}名` : "未登録" }),
    h("td", { class: f.state === "late" || f.state === "sent_late" ? "error" : "", text: label("share_due_state", f.state) }),
    h("td", {}, me.user.role === "manager" && f.applicants_listed > 0 && !["prepared", "approved"].includes(f.state)
      ? h("button", { type: "button", class: "small secondary", text: "準備",
        onclick: () => prepare({ facility_request: f.facility_request_id }, `${f.facility_name} の申請者一覧（${f.applicants_listed}名）`) })
      : null))));
}

function renderShares(shares) {
  const tbody = $("share-list").tBodies[0];
  if (!shares.length) {
    tbody.replaceChildren(h("tr", {}, h("td", { colspan: 8, class: "muted", text: "共有はまだありません。" })));
    return;
  }
  tbody.replaceChildren(...shares.map((s) => h("tr", { dataset: { share: String(s.id), status: s.status } },
    h("td", { class: "num", text: String(s.id) }),
    h("td", { text: `${label("share_kind", s.kind)}：${s.title}` }),
    h("td", { text: s.recipient }),
    h("td", { class: "num", text: String(s.slip_count) }),
    h("td", { text: label("share_status", s.status) }),
    h("td", { text: `${s.prepared_by} ${s.prepared_at ? fmt.dateTime(s.prepared_at) : ""}` }),
    h("td", { text: s.approved_by ? `${s.approved_by} ${fmt.dateTime(s.approved_at)}` : "" }),
    h("td", {}, s.sent_at ? `${fmt.dateTime(s.sent_at)}（${label("share_sent_via", s.sent_via)}）` : actions(s)))));
}

function renderRecipients() {
  $("share-recipient").replaceChildren(h("option", { value: "", text: "送付先を選ぶ" }),
    ...recipients.map((r) => h("option", { value: r.address, text: r.label ? `${r.label}（${r.address}）` : r.address })));
  $("share-recipients").tBodies[0].replaceChildren(...recipients.map((r) => h("tr", {},
    h("td", { text: r.address }),
    h("td", { text: r.label }),
    h("td", {}, me.user.role === "admin"
      ? h("button", {
        type: "button", class: "small secondary", text: "削除",
        onclick: () => confirm(r.address + " を送付先リストから削除しますか？")
          && act(() => api("DELETE", `/api/shares/recipients/${r.id}`), "削除しました。"),
      })
      : null))));
  $("share-recipient-form").hidden = me.user.role !== "admin";
}

async function load() {
  try {
    const [due, list, rec] = await Promise.all([
      api("GET", "/api/shares/due"), api("GET", "/api/shares"), api("GET", "/api/shares/recipients")]);
    recipients = rec.recipients;
    renderRecipients();
    renderDue(due);
    renderFacilities(due.facilities);
    renderShares(list.shares);
  } catch (e) {
    say("読み込めませんでした：" + e.message, true);
  }
}

// Wires the view for the signed-in manager or admin.
export function init(session) {
  me = session;
  $("share-prepare-row").hidden = me.user.role !== "manager";
  $("share-recipient-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const body = Object.fromEntries(new FormData(e.target));
    act(() => api("POST", "/api/shares/recipients", body).then(() => e.target.reset()), "送付先を登録しました。");
  });
  onShow("share", load);
}
