// The home-visit booking form of the operator console (issue 14 item 10; R-SLOT, R-BOOK-1..4,
// R-PREP-5): the address and household → the ranked slots from the server (or why none
// fits) → the slip items a–i with one row per applicant → the guidance checklist, whose
// items come from the server's own rule (POST /api/bookings/guidance) → save. A slot taken
// meanwhile (409) offers the fresh alternatives; refused items (422) are listed as the server
// wrote them. Labels of codes come from the label table only.
import { api, request } from "./api.js";
import { serverDay } from "./clock.js";
import { byId as $, h } from "./dom.js";
import * as fmt from "./format.js";
import { codes, label } from "./labels.js";

// chrono's weekday names, as the search body wants them; 2024-01-01 was a Monday, so the
// Japanese names come from Intl rather than a hand-written table.
const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri"];

let ctx = null; // the call the form is for: { call_key, caller } or null
let searched = null; // what the shown offers were searched for: { applicants }
let offers = [];
let guidanceSeq = 0;
let personSeq = 0;
let onSaved = () => {};

function weekdayName(i) {
  return new Date(Date.UTC(2024, 0, 1 + i)).toLocaleDateString("ja-JP", { timeZone: "UTC", weekday: "short" });
}

function status(id, text, kind) {
  const el = $(id);
  el.textContent = text;
  el.className = "status" + (kind ? " " + kind : "");
}

// ---------------------------------------------------------------- applicants

function people() {
  return [...document.querySelectorAll("#bk-people .person")];
}

function field(name, text, input, cls) {
  return h("label", { class: cls }, text, input);
}

function personRow() {
  personSeq += 1;
  const n = personSeq;
  const kind = h("select", { name: "application_kind", required: true, onchange: refreshGuidance },
    ...codes("application_kind").map(([v, t]) => h("option", { value: v }, t)));
  const age = h("span", { class: "age muted small", "aria-live": "polite" });
  const birth = h("input", { type: "date", name: "birth_date", required: true, max: serverDay() });
  birth.addEventListener("change", () => {
    const b = birth.value;
    const today = serverDay();
    if (!/^\d{4}-\d{2}-\d{2}$/.test(b) || b >= today) { age.textContent = ""; return; }
    let years = Number(today.slice(0, 4)) - Number(b.slice(0, 4));
    if (today.slice(5) < b.slice(5)) years -= 1;
    age.textContent = `満${years}歳`;
  });
  const check = (name, text, on) => h("label", { class: "check" },
    h("input", { type: "checkbox", name, checked: on }), " " + text);
  const remove = h("button", { type: "button", class: "secondary small remove-person" }, "この申請者を削除");
  const row = h("fieldset", { class: "person inner", dataset: { seq: String(n) } },
    h("legend", { class: "person-title" }),
    h("div", { class: "row3" },
      field("name", "氏名", h("input", { name: "name", required: true, autocomplete: "off", maxlength: 100 })),
      field("name_kana", "ふりがな", h("input", { name: "name_kana", autocomplete: "off", maxlength: 100 })),
      h("label", {}, "生年月日", birth, age)),
    field("application_kind", "申請区分", kind),
    h("fieldset", { class: "inner" }, h("legend", { text: "本人確認書類（持っているものすべて）" }),
      h("div", { class: "checks" }, ...codes("id_document").map(([v, t]) => h("label", { class: "check" },
        h("input", { type: "checkbox", name: "id_documents", value: v }), " " + t)))),
    field("id_documents_note", "本人確認書類の補足", h("input", { name: "id_documents_note", autocomplete: "off" })),
    h("fieldset", { class: "inner" }, h("legend", { text: "本人の状態" }),
      h("div", { class: "checks" },
        check("can_photo", "写真撮影ができる", true),
        check("can_write", "自署ができる", true),
        check("helper_present", "介助者が同席する", false))),
    field("condition_note", "状態の補足", h("input", { name: "condition_note", autocomplete: "off" })),
    h("fieldset", { class: "inner" }, h("legend", { text: "希望・その他" }),
      h("div", { class: "checks" },
        check("face_auth_only", "顔認証のみ（暗証番号なし）", false),
        check("insurance_use", "保険証として利用する", false),
        check("holds_juki_card", "住基カードを持っている", false),
        check("notice_card_lost", "通知カードを紛失", false))),
    remove);
  remove.addEventListener("click", () => {
    if (people().length <= 1) return;
    const next = row.nextElementSibling || row.previousElementSibling;
    row.remove();
    renumber();
    $("bk-applicants").value = String(people().length);
    refreshGuidance();
    if (next) next.querySelector("input").focus();
  });
  return row;
}

function renumber() {
  const rows = people();
  rows.forEach((r, i) => {
    r.querySelector(".person-title").textContent = `申請者 ${i + 1}`;
    r.querySelector(".remove-person").hidden = rows.length <= 1;
  });
  staleCheck();
}

// Makes the rows match `n`, adding blank rows or dropping trailing ones.
function setPeople(n) {
  const box = $("bk-people");
  n = Math.max(1, Math.min(60, Number(n) || 1));
  while (people().length < n) box.append(personRow());
  while (people().length > n) people().at(-1).remove();
  renumber();
  refreshGuidance();
}

function staleCheck() {
  const note = $("bk-stale");
  if (!note) return;
  note.hidden = !searched || searched.applicants === people().length;
}

// ---------------------------------------------------------------- guidance

async function refreshGuidance() {
  const seq = ++guidanceSeq;
  const kinds = people().map((r) => r.querySelector('[name="application_kind"]').value).filter(Boolean);
  let items;
  try {
    items = (await api("POST", "/api/bookings/guidance", { application_kinds: kinds })).guidance || [];
  } catch (e) {
    if (seq === guidanceSeq) $("bk-guidance-list").replaceChildren(h("p", { class: "error", text: "案内事項を読み込めませんでした：" + e.message }));
    return;
  }
  if (seq !== guidanceSeq) return;
  const ticked = new Set([...document.querySelectorAll('#bk-guidance-list input:checked')].map((c) => c.value));
  $("bk-guidance-list").replaceChildren(...items.map((g) => h("label", { class: "check guidance-item" },
    h("input", { type: "checkbox", name: "guidance", value: g, checked: ticked.has(g) }), " " + label("guidance", g))));
}

// ---------------------------------------------------------------- slots

function addressNote(a) {
  const el = $("bk-address-note");
  if (!a || typeof a !== "object") { el.hidden = true; el.textContent = ""; return; }
  const warnings = Array.isArray(a.warnings) ? a.warnings : [];
  const parts = [
    typeof a.matched === "string" ? label("address_match", a.matched) : null,
    a.town || null,
    a.reason || null,
    ...warnings,
  ].filter(Boolean);
  el.textContent = "住所の判定：" + (parts.join("・") || "—");
  el.className = "address-note" + (warnings.length || a.matched === "unknown_town" ? " warn" : "");
  el.hidden = false;
}

function offerNotes(o) {
  const notes = [];
  if (o.days_off_wish > 0) notes.push(`希望期間から${o.days_off_wish}日`);
  if (o.off_wish) notes.push("希望の曜日・時間帯以外");
  if (o.travel_minutes) notes.push(`移動 約${o.travel_minutes}分`);
  if (o.opens_half_day) notes.push("訪問のない半日");
  if (o.extra) notes.push("午後3件目");
  return notes.join("・");
}

// The ranked list (best first, the first one chosen); `intro` explains a 409's fresh list.
function renderOffers(list, intro) {
  offers = list || [];
  const results = $("bk-results");
  const items = offers.map((o, i) => h("li", { class: "offer" + (i === 0 ? " best" : ""), dataset: { index: String(i) } },
    h("label", { class: "check" },
      h("input", { type: "radio", name: "offer", value: String(i), checked: i === 0 }),
      " ", h("strong", { class: "offer-slot", text: fmt.slot(o.slot, o.window) }),
      i === 0 ? h("span", { class: "tag", text: "おすすめ" }) : null,
      h("span", { class: "muted small", text: " " + offerNotes(o) }))));
  results.replaceChildren(
    intro ? h("p", { class: "error", role: "alert", text: intro }) : null,
    h("fieldset", { class: "offers" }, h("legend", { text: `訪問枠を選ぶ（${offers.length}件・よい順）` }),
      h("ul", { class: "plain offer-list", id: "bk-offers" }, ...items)),
    h("p", { id: "bk-stale", class: "warn", hidden: true, text: "申請者数が変わりました。空き枠を探し直してください。" }));
  $("booking-form").hidden = false;
  staleCheck();
}

function renderWhyNone(why) {
  offers = [];
  $("bk-results").replaceChildren(h("div", { class: "why-none", id: "bk-why-none" },
    h("p", { class: "error", text: "ご希望に合う空き枠がありません。" }),
    h("ul", {}, ...(why || []).map((s) => h("li", { text: s })))));
  $("booking-form").hidden = true;
}

function minutes() {
  const v = $("bk-minutes").value.trim();
  return v === "" ? null : Number(v);
}

async function search(ev) {
  ev.preventDefault();
  const address = $("bk-address").value.trim();
  const applicants = Number($("bk-applicants").value);
  if (!address) { status("bk-search-status", "住所を入力してください。", "error"); $("bk-address").focus(); return; }
  if (!Number.isInteger(applicants) || applicants < 1) {
    status("bk-search-status", "申請者数を入力してください。", "error"); $("bk-applicants").focus(); return;
  }
  const body = { address, applicants };
  const m = minutes();
  if (m !== null) body.manual_travel_minutes = m;
  if ($("bk-from").value) body.from = $("bk-from").value;
  if ($("bk-to").value) body.to = $("bk-to").value;
  const days = [...document.querySelectorAll('#bk-weekdays input:checked')].map((c) => c.value);
  if (days.length) body.weekdays = days;
  if ($("bk-half-day").value) body.half_day = $("bk-half-day").value;
  setPeople(applicants);
  status("bk-search-status", "検索中…");
  $("bk-search").disabled = true;
  try {
    const res = await request("POST", "/api/slots/search", body);
    if (!res.ok) {
      status("bk-search-status", res.data.message || "検索できませんでした。", "error");
      return;
    }
    searched = { applicants };
    addressNote(res.data.address);
    const found = res.data.offers || [];
    if (found.length) {
      renderOffers(found);
      status("bk-search-status", `${found.length}件の枠があります`, "ok");
    } else {
      renderWhyNone(res.data.why_none);
      status("bk-search-status", "空き枠がありません", "error");
    }
  } catch (e) {
    status("bk-search-status", "検索できませんでした：" + e.message, "error");
  } finally {
    $("bk-search").disabled = false;
  }
}

// ---------------------------------------------------------------- save

function applicant(r, i, errors) {
  const v = (name) => r.querySelector(`[name="${name}"]`).value.trim();
  const on = (name) => r.querySelector(`[name="${name}"]`).checked;
  const birth = v("birth_date");
  if (!/^\d{4}-\d{2}-\d{2}$/.test(birth)) errors.push(`申請者${i + 1}の生年月日を入力してください。`);
  return {
    name: v("name"),
    name_kana: v("name_kana"),
    birth_date: birth,
    application_kind: v("application_kind"),
    id_documents: [...r.querySelectorAll('[name="id_documents"]:checked')].map((c) => c.value),
    id_documents_note: v("id_documents_note"),
    can_photo: on("can_photo"),
    can_write: on("can_write"),
    helper_present: on("helper_present"),
    condition_note: v("condition_note"),
    face_auth_only: on("face_auth_only"),
    insurance_use: on("insurance_use"),
    holds_juki_card: on("holds_juki_card"),
    notice_card_lost: on("notice_card_lost"),
  };
}

function showErrors(lines) {
  const box = $("bk-errors");
  box.replaceChildren(...(lines.length ? [h("ul", {}, ...lines.map((l) => h("li", { text: l })))] : []));
}

async function callId() {
  if (!ctx || !ctx.call_key) return null;
  const row = await api("GET", "/api/calls/" + encodeURIComponent(ctx.call_key));
  return row.id ?? null;
}

async function save(ev) {
  ev.preventDefault();
  const errors = [];
  const chosen = document.querySelector('#bk-offers input[name="offer"]:checked');
  if (!chosen || !offers[Number(chosen.value)]) errors.push("訪問枠を選んでください。");
  if (searched && searched.applicants !== people().length) errors.push("申請者数が変わりました。空き枠を探し直してください。");
  const applicants = people().map((r, i) => applicant(r, i, errors));
  if (!$("bk-relation").value) errors.push("電話の相手を選んでください。");
  if (errors.length) { showErrors(errors); status("bk-save-status", "入力を確認してください", "error"); return; }
  const parking = (document.querySelector('#booking-form input[name="parking"]:checked') || {}).value;
  const body = {
    slot: offers[Number(chosen.value)].slot,
    address: $("bk-address").value.trim(),
    contact_phone: $("bk-phone").value.trim(),
    caller_relation: $("bk-relation").value,
    caller_name: $("bk-caller-name").value.trim(),
    going_out_difficulty: $("bk-difficulty").value.trim(),
    wished: $("bk-wished").value.trim(),
    parking: parking === "true" ? true : parking === "false" ? false : null,
    care_notes: $("bk-care").value.trim(),
    other: $("bk-other").value.trim(),
    applicants,
    guidance_given: [...document.querySelectorAll('#bk-guidance-list input:checked')].map((c) => c.value),
  };
  const m = minutes();
  if (m !== null) body.manual_travel_minutes = m;
  showErrors([]);
  status("bk-save-status", "保存中…");
  $("bk-save").disabled = true;
  try {
    const id = await callId().catch(() => null);
    if (id !== null) body.call_id = id;
    const res = await request("POST", "/api/bookings", body);
    if (res.status === 201) {
      done(res.data);
    } else if (res.status === 409 && res.data.error === "slot_taken") {
      status("bk-save-status", "", "");
      renderOffers(res.data.alternatives || [], (res.data.message || "この枠は先に埋まりました。") + " 別の枠を選んで、もう一度「予約を確定」を押してください。");
      if (!offers.length) renderWhyNone([res.data.message || "空き枠がありません。"]);
      document.querySelector('#bk-offers input') && document.querySelector('#bk-offers input').focus();
    } else {
      const lines = String(res.data.message || `保存できませんでした（${res.status}）`).split("\n").filter(Boolean);
      showErrors(lines);
      status("bk-save-status", "保存できませんでした", "error");
    }
  } catch (e) {
    showErrors(["保存できませんでした：" + e.message]);
    status("bk-save-status", "", "");
  } finally {
    $("bk-save").disabled = false;
  }
}

function done(b) {
  const key = ctx && ctx.call_key;
  $("booking-search").hidden = true;
  $("booking-form").hidden = true;
  $("bk-results").replaceChildren();
  $("bk-address-note").hidden = true;
  const forms = b.forms || [];
  const box = $("bk-done");
  box.replaceChildren(
    h("p", { class: "done-title", text: "予約を受け付けました" }),
    h("p", { class: "reception" }, "受付番号 ", h("strong", { id: "bk-reception-number", text: String(b.reception_number ?? "—") })),
    h("p", { class: "done-slot", text: "訪問：" + fmt.slot(b.slot, b.window) }),
    h("p", { class: "muted small", text: `申請者 ${b.applicants}名・受付日 ${b.booked_on}` }),
    h("h4", { text: "訪問で必要な申請書類" }),
    h("ul", { id: "bk-forms" }, ...forms.map((f) => h("li", { text: `${label("form_kind", f.form)} × ${f.count}` }))),
    key ? h("p", { class: "muted small", text: "この通話の対応結果は「" + label("outcome", "booking") + "」として記録されました。" }) : null,
    h("button", { type: "button", class: "secondary", onclick: close }, "閉じる"));
  box.hidden = false;
  box.focus();
  onSaved(b, key);
}

// ---------------------------------------------------------------- open / close

function reset() {
  $("booking-search").reset();
  $("booking-form").reset();
  $("booking-search").hidden = false;
  $("booking-form").hidden = true;
  $("bk-done").hidden = true;
  $("bk-done").replaceChildren();
  $("bk-results").replaceChildren();
  $("bk-address-note").hidden = true;
  $("bk-people").replaceChildren();
  showErrors([]);
  status("bk-search-status", "");
  status("bk-save-status", "");
  searched = null;
  offers = [];
  setPeople(1);
}

function close() {
  $("booking").hidden = true;
  ctx = null;
}

// Opens the form for `call` (a live CallState, or null for a booking without a call), with
// the caller's number as the contact phone.
export function open(call) {
  const panel = $("booking");
  const same = !panel.hidden && ctx && call && ctx.call_key === call.call_key && $("bk-done").hidden;
  if (!same) {
    reset();
    ctx = call ? { call_key: call.call_key, caller: call.caller } : null;
    const c = call && call.caller;
    if (c && c.e164 && c.display) $("bk-phone").value = c.display;
  }
  $("booking-call").textContent = ctx
    ? `通話：${fmt.clock(call.arrived_at)} 着信・${fmt.caller(ctx.caller)}（予約を確定すると対応結果が「${label("outcome", "booking")}」になります）`
    : "通話なしの予約受付";
  panel.hidden = false;
  $("bk-address").focus();
}

// Wires the form; `saved(summary, call_key)` runs after a booking is made.
export function init({ saved }) {
  onSaved = saved || (() => {});
  $("bk-half-day").replaceChildren(h("option", { value: "" }, "指定なし"),
    ...codes("half_day").map(([v, t]) => h("option", { value: v }, t)));
  $("bk-relation").replaceChildren(h("option", { value: "" }, "選択してください"),
    ...codes("caller_relation").map(([v, t]) => h("option", { value: v }, t)));
  $("bk-weekdays").replaceChildren(...WEEKDAYS.map((d, i) => h("label", { class: "check" },
    h("input", { type: "checkbox", name: "weekdays", value: d }), " " + weekdayName(i))));
  $("booking-search").addEventListener("submit", search);
  $("booking-form").addEventListener("submit", save);
  $("bk-applicants").addEventListener("change", () => setPeople($("bk-applicants").value));
  $("bk-add-person").addEventListener("click", () => {
    setPeople(people().length + 1);
    $("bk-applicants").value = String(people().length);
    people().at(-1).querySelector("input").focus();
  });
  $("booking-close").addEventListener("click", close);
}
