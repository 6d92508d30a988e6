//! Issue 18 acceptance in a real browser at 1366×768 (headless Chromium, a real sipp call):
//! the operator takes a call, records its outcome, meets a server error, works the callback
//! list with the keyboard; the manager opens a past day on the dashboard and the 取扱記録;
//! an unknown page. Every screen fails the test on an error text with no Japanese in it, on
//! a phone number wrapped onto a second line, and on raw JSON shown as a page. Screenshots
//! go to `test-artifacts/` (`ui18-*.png`).

use crate::browser::{artifact, browser, login, text, tools, until};
use crate::common;
use crate::console::{answered_call, call, logged, number};

use common::rig::{jst, wait, Rig};
use common::sipp;
use fantoccini::Client;
use madoguchi::calls::{CallEvent, EndCause};

/// The checks every screen must pass; returns a description of the first failure.
const SCREEN_CHECKS: &str = r#"
  const jp = /[\u3040-\u30ff\u3400-\u9fff]/;
  const visible = (e) => e.offsetParent !== null && getComputedStyle(e).visibility !== 'hidden';
  const body = document.body.innerText.trim();
  if (body.startsWith('{') || body.startsWith('[')) return 'raw JSON shown as a page: ' + body.slice(0, 120);
  for (const e of document.querySelectorAll('.error, [role=alert], .status.error')) {
    const t = e.textContent.trim();
    if (visible(e) && t && !jp.test(t)) return 'an error with no Japanese: ' + t;
  }
  for (const e of document.querySelectorAll('.tel, #call-banner-line, #call-banner-caller')) {
    if (!visible(e) || !e.textContent.trim()) continue;
    const lh = parseFloat(getComputedStyle(e).lineHeight) || parseFloat(getComputedStyle(e).fontSize) * 1.6;
    const rects = e.getClientRects().length;
    if (rects > 1 || e.getBoundingClientRect().height > lh * 1.5) return 'a number on more than one line: ' + e.textContent + ' (' + e.getBoundingClientRect().height + 'px, line ' + lh + 'px)';
  }
  // Short Japanese words (the navigation, table headings, counts) never wrap per character.
  for (const e of document.querySelectorAll('#nav a, table.compact th, .badge')) {
    if (!visible(e) || !e.textContent.trim()) continue;
    const lh = parseFloat(getComputedStyle(e).lineHeight) || parseFloat(getComputedStyle(e).fontSize) * 1.6;
    const pad = parseFloat(getComputedStyle(e).paddingTop) + parseFloat(getComputedStyle(e).paddingBottom);
    if (e.getBoundingClientRect().height - pad > lh * 1.5) return 'a short word wrapped: ' + e.textContent;
  }
  const cw = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth > cw) {
    const wide = [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > cw && visible(e)).slice(0, 3)
      .map((e) => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right));
    return 'the page is wider than the window (' + document.documentElement.scrollWidth + ' > ' + cw + '): ' + wide.join(', ');
  }
  return '';
"#;

async fn screen_ok(c: &Client, what: &str) {
    let problem = c
        .execute(SCREEN_CHECKS, vec![])
        .await
        .unwrap()
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !problem.is_empty() {
        if let Ok(png) = c.screenshot().await {
            artifact("ui18-failure.png", &png);
        }
        panic!("{what}: {problem}");
    }
}

async fn nav(c: &Client, view: &str) {
    c.execute(
        &format!("document.querySelector('#nav a[data-view=\"{view}\"]').click();"),
        vec![],
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_and_manager_walk_through_a_day_in_japanese_at_1366() {
    let Some((chrome, chromedriver)) = tools() else {
        return;
    };
    let Some(rig) = Rig::new(jst(2026, 11, 25, 10, 0), |_| {}).await else {
        return;
    };
    rig.staff().await;
    let base = rig.app.base.clone();
    let (_d1, op) = browser(&chrome, &chromedriver).await;
    let size = op.get_window_size().await.unwrap();
    assert_eq!((size.0, size.1), (1366, 768), "the screen size under test");
    login(&op, &base, "operator1", "password-operator1").await;
    until(
        &op,
        "the live connection",
        "/リアルタイム接続中/.test(document.getElementById('ws-status').textContent)",
    )
    .await;
    // The header names the person and the role once.
    let who = text(&op, "document.querySelector('.who').innerText").await;
    assert_eq!(who.matches("オペレーター").count(), 1, "{who}");

    // A real call: rings, is answered, ends.
    let mut phone = rig
        .sipp_phone(
            "ph1",
            "phone-answer",
            &[("timeout=\"500\"", "timeout=\"2500\"")],
        )
        .await;
    let mut trunk = rig.trunk(
        &sipp::scenario(rig.dir.path(), "trunk-call", &[]),
        "127.0.0.1",
        &["-d", "2000"],
    );
    until(
        &op,
        "the call banner",
        "!document.getElementById('call-banner').hidden",
    )
    .await;
    let line = text(
        &op,
        "document.getElementById('call-banner-line').textContent",
    )
    .await;
    assert!(
        !line.chars().all(|c| c.is_ascii_digit()),
        "the line number is formatted: {line}"
    );
    screen_ok(&op, "the ringing call").await;
    artifact("ui18-banner.png", &op.screenshot().await.unwrap());
    assert_eq!(wait(&mut trunk, 20).await, 0, "{}", trunk.errors());
    assert_eq!(wait(&mut phone, 10).await, 0);
    let key = rig.ended_calls(1).await[0]["call_key"]
        .as_str()
        .unwrap()
        .to_string();

    // The wrap-up: time to the second and who answered; a live note counter with the
    // server's limit.
    until(
        &op,
        "the wrap-up entry",
        &format!("document.querySelector('#wrapups-list [data-call-key=\"{key}\"]')"),
    )
    .await;
    let wrap = text(
        &op,
        &format!("document.querySelector('#wrapups-list [data-call-key=\"{key}\"]').textContent"),
    )
    .await;
    assert!(wrap.contains("応答"), "{wrap}");
    assert!(regex_like_seconds(&wrap), "arrival to the second: {wrap}");
    assert!(!wrap.contains(".0秒"), "one duration format: {wrap}");
    op.execute(
        &format!(
            "document.querySelector('#wrapups-list [data-call-key=\"{key}\"] button').click();"
        ),
        vec![],
    )
    .await
    .unwrap();
    let counter = text(
        &op,
        "document.getElementById('outcome-note-count').textContent",
    )
    .await;
    assert!(
        counter.contains("/ 1000文字"),
        "the counter shows the server's limit: {counter}"
    );

    // An error from the server (a note past the limit, forced past the field's maxlength):
    // shown in Japanese, not as JSON.
    op.execute(
        "const s = document.getElementById('outcome-select'); s.value = 'inquiry'; s.dispatchEvent(new Event('change', {bubbles: true}));\
         const n = document.getElementById('outcome-note'); n.removeAttribute('maxlength'); n.value = 'あ'.repeat(1001);\
         document.getElementById('outcome-save').click();",
        vec![],
    )
    .await
    .unwrap();
    until(
        &op,
        "the server's refusal",
        "document.getElementById('outcome-status').classList.contains('error')",
    )
    .await;
    let refusal = text(&op, "document.getElementById('outcome-status').textContent").await;
    assert!(
        refusal.contains("メモ") && refusal.contains("1000"),
        "{refusal}"
    );
    screen_ok(&op, "the refused outcome").await;
    artifact("ui18-error.png", &op.screenshot().await.unwrap());
    op.execute(
        "const n = document.getElementById('outcome-note'); n.value = '更新時期の問合せ'; document.getElementById('outcome-save').click();",
        vec![],
    )
    .await
    .unwrap();
    until(
        &op,
        "the saved message",
        "/保存しました/.test(document.getElementById('outcome-status').textContent)",
    )
    .await;

    // Missed calls for the callback list (one caller twice), and a call yesterday.
    let events = &rig.app.server.state.events;
    for (k, minute) in [("k-missed-1", 20), ("k-missed-2", 40)] {
        let c = call(k, number("0134228888"), jst(2026, 11, 25, 9, minute));
        events.publish(CallEvent::Ringing {
            call: c.clone(),
            at: c.arrived_at,
        });
        events.publish(CallEvent::Ended {
            call: c.clone(),
            at: c.arrived_at,
            cause: EndCause::Abandoned,
            hangup_by: None,
            rang_at: Some(c.arrived_at),
            answered_at: None,
        });
        logged(&rig.app, k).await;
    }
    let past = call(
        "k-yesterday",
        number("0134220005"),
        jst(2026, 11, 24, 14, 5),
    );
    answered_call(&rig.app, &past, "operator1").await;

    until(
        &op,
        "the callback row",
        "document.querySelector('#callbacks-body tr.cb-row')",
    )
    .await;
    let row = text(
        &op,
        "document.querySelector('#callbacks-body tr.cb-row').textContent",
    )
    .await;
    assert!(row.contains("0134-22-8888") && row.contains("2回"), "{row}");
    let tel = text(
        &op,
        "document.querySelector('#callbacks-body a.tel').getAttribute('href')",
    )
    .await;
    assert_eq!(tel, "tel:+81134228888");
    let waited = text(
        &op,
        "document.querySelector('#callbacks-body .cb-waited').textContent",
    )
    .await;
    assert!(waited.contains('分'), "how long it has waited: {waited}");
    // The keyboard: the row takes focus (visibly), Enter moves into its memo field.
    let focus = op
        .execute(
            "const r = document.querySelector('#callbacks-body tr.cb-row'); r.focus();\
             const outline = getComputedStyle(r).outlineStyle;\
             r.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', bubbles: true}));\
             return [outline, document.activeElement.className];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(focus[0], "solid", "visible focus: {focus}");
    assert_eq!(focus[1], "cb-note", "Enter opens the row: {focus}");
    screen_ok(&op, "the callback list").await;
    artifact("ui18-callbacks.png", &op.screenshot().await.unwrap());

    // The manager: yesterday on the dashboard, with the breakdown.
    let (_d2, mgr) = browser(&chrome, &chromedriver).await;
    login(&mgr, &base, "manager1", "password-manager1").await;
    nav(&mgr, "manager").await;
    until(
        &mgr,
        "today's list",
        "document.getElementById('calls-day').value === '2026-11-25'",
    )
    .await;
    mgr.execute(
        "const d = document.getElementById('calls-day'); d.value = '2026-11-24'; d.dispatchEvent(new Event('change'));",
        vec![],
    )
    .await
    .unwrap();
    until(
        &mgr,
        "yesterday's call",
        "document.querySelector('#calls-today [data-call-key=\"k-yesterday\"]')",
    )
    .await;
    until(
        &mgr,
        "the breakdown by hour",
        "document.getElementById('day-by-hour')",
    )
    .await;
    let by_hour = text(&mgr, "document.getElementById('day-by-hour').textContent").await;
    assert!(by_hour.contains("14時台"), "{by_hour}");
    let title = text(
        &mgr,
        "document.getElementById('calls-day-title').textContent",
    )
    .await;
    assert!(title.contains("2026年11月24日"), "{title}");
    assert!(
        text(&mgr, "document.getElementById('calls-today').textContent")
            .await
            .contains("0134-22-0005"),
        "only that day's calls"
    );
    screen_ok(&mgr, "the dashboard for a past day").await;
    artifact(
        "ui18-dashboard-past-day.png",
        &mgr.screenshot().await.unwrap(),
    );

    // The 取扱記録: Japanese actions and the people's names.
    nav(&mgr, "audit").await;
    until(
        &mgr,
        "the saved outcome in the audit log",
        "/対応記録の保存/.test(document.getElementById('audit-table').textContent)",
    )
    .await;
    let audit = text(&mgr, "document.getElementById('audit-table').textContent").await;
    assert!(
        audit.contains("operator1 さん（operator1）"),
        "the actor's name: {}",
        &audit[..audit.len().min(400)]
    );
    assert!(
        !audit.contains("call.outcome"),
        "codes are not shown as text"
    );
    screen_ok(&mgr, "the audit log").await;
    artifact("ui18-audit.png", &mgr.screenshot().await.unwrap());

    // An unknown page: a Japanese page with a way back, not JSON.
    mgr.goto(&format!("{base}/no/such/page")).await.unwrap();
    let page = text(&mgr, "document.body.innerText").await;
    assert!(page.contains("ページが見つかりません"), "{page}");
    assert!(text(&mgr, "document.querySelector('a[href=\"/\"]') !== null").await == "true");
    screen_ok(&mgr, "the unknown page").await;
    artifact("ui18-not-found.png", &mgr.screenshot().await.unwrap());

    let _ = op.close().await;
    let _ = mgr.close().await;
    rig.stop().await;
}

/// Whether `s` holds a time with seconds, like `10:00:03`.
fn regex_like_seconds(s: &str) -> bool {
    s.as_bytes().windows(8).any(|w| {
        w[2] == b':' && w[5] == b':' && [0, 1, 3, 4, 6, 7].iter().all(|&i| w[i].is_ascii_digit())
    })
}

/// Item 7 on screen: the admin sees a locked account as ロック中 and unlocks it, sees the
/// phone linked to an account, the header names the admin once; a new account can do
/// nothing but change its password, and the old one is refused as the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_lock_unlock_phone_link_and_first_password_change_on_screen() {
    use crate::common::{backends, TestApp};
    use serde_json::json;
    let Some((chrome, chromedriver)) = tools() else {
        return;
    };
    let app = TestApp::spawn(backends()[0]).await;
    app.user_with_role("operator1", "operator").await;
    app.user_with_role("ito", "operator").await;
    let admin_api = app.admin().await;
    let created = admin_api
        .post(
            "/api/users",
            &json!({ "username": "sato", "display_name": "佐藤", "role": "operator", "password": "first-password-1" }),
        )
        .await;
    assert_eq!(created.status(), 201);
    for _ in 0..5 {
        let _ = app
            .client()
            .post(app.url("/api/login"))
            .json(&json!({ "username": "ito", "password": "wrong-password" }))
            .send()
            .await
            .unwrap();
    }

    let (_d1, admin) = browser(&chrome, &chromedriver).await;
    login(&admin, &app.base, "admin", common::ADMIN_PASSWORD).await;
    let who = text(&admin, "document.querySelector('.who').innerText").await;
    assert_eq!(
        who.matches("システム管理者").count(),
        1,
        "name and role once: {who}"
    );
    admin
        .execute("window.confirm = () => true; document.querySelector('#nav a[data-view=\"users\"]').click();", vec![])
        .await
        .unwrap();
    until(&admin, "ito locked", "/ロック中/.test((document.querySelector('#users-table tr[data-username=\"ito\"]')||{}).textContent||'')").await;
    let phone = text(
        &admin,
        "document.querySelector('#users-table tr[data-username=\"operator1\"]').textContent",
    )
    .await;
    assert!(phone.contains("op1"), "the linked phone: {phone}");
    let rule = text(
        &admin,
        "document.getElementById('username-rule').textContent",
    )
    .await;
    assert!(rule.contains("3〜32文字"), "{rule}");
    screen_ok(&admin, "the accounts screen").await;
    artifact(
        "ui18-accounts-locked.png",
        &admin.screenshot().await.unwrap(),
    );
    admin
        .execute(
            "[...document.querySelectorAll('#users-table tr[data-username=\"ito\"] button')].find((b) => b.textContent === 'ロック解除').click();",
            vec![],
        )
        .await
        .unwrap();
    until(&admin, "ito unlocked", "/^有効/.test(document.querySelector('#users-table tr[data-username=\"ito\"] .user-state').textContent)").await;
    app.login("ito", "password-of-ito").await;

    // The new account: only the password form, until it has its own password.
    let (_d2, sato) = browser(&chrome, &chromedriver).await;
    login(&sato, &app.base, "sato", "first-password-1").await;
    until(&sato, "the password form", "!document.getElementById('view-password').hidden && !document.getElementById('password-required').hidden").await;
    assert_eq!(
        text(&sato, "document.querySelectorAll('#nav a').length").await,
        "0"
    );
    sato.execute(
        "window.alert = () => {}; const f = document.getElementById('password-form');\
         f.elements.current_password.value = 'first-password-1'; f.elements.new_password.value = 'first-password-1';\
         f.requestSubmit();",
        vec![],
    )
    .await
    .unwrap();
    until(
        &sato,
        "the refusal",
        "!document.getElementById('password-error').hidden",
    )
    .await;
    let refusal = text(
        &sato,
        "document.getElementById('password-error').textContent",
    )
    .await;
    assert!(refusal.contains("同じ"), "{refusal}");
    screen_ok(&sato, "the first password change").await;
    artifact("ui18-first-password.png", &sato.screenshot().await.unwrap());
    sato.execute(
        "const f = document.getElementById('password-form'); f.elements.new_password.value = 'my-own-password-2'; f.requestSubmit();",
        vec![],
    )
    .await
    .unwrap();
    until(
        &sato,
        "back at the login page",
        "location.pathname === '/login'",
    )
    .await;
    let s = app.login("sato", "my-own-password-2").await;
    assert_eq!(s.get("/api/callbacks").await.status(), 200);
    let _ = admin.close().await;
    let _ = sato.close().await;
    app.stop().await;
}
