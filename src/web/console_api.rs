//! The operator console and the manager dashboard: WebSocket, outcomes, wrap-ups, callbacks,
//! live statistics, the talk script and presence (issue 4, R-LINE-3, R-LINE-4, R-LINE-6).

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::calls::{callbacks, Outcome, OutcomeError};
use crate::privacy::{AuditEntry, Role};

use super::access::ClientIp;
use super::{ApiError, CurrentUser, JsonBody};

/// `GET /ws`: the screen-pop and live-stats stream.
pub async fn ws(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    // SameSite=Strict keeps the cookie off cross-site sockets; the Origin check says so twice.
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let (Some(o), Some(h)) = (origin, host) {
        if o.split_once("://").map(|(_, rest)| rest) != Some(h) {
            return ApiError::new(StatusCode::FORBIDDEN, "csrf", "Origin が一致しません。")
                .into_response();
        }
    }
    upgrade.on_upgrade(move |socket| client(state, socket))
}

async fn client(state: AppState, socket: WebSocket) {
    let hub = state.hub.clone();
    let (id, snapshot, mut rx) = hub.connect();
    let (mut sink, mut stream) = socket.split();
    let writer = async {
        if sink
            .send(Message::Text(snapshot.as_ref().into()))
            .await
            .is_err()
        {
            return;
        }
        let mut ping = tokio::time::interval(Duration::from_secs(30));
        ping.tick().await;
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(text) => {
                        if sink.send(Message::Text(text.as_ref().into())).await.is_err() {
                            return;
                        }
                    }
                    // The hub dropped us (too slow): close so the browser reconnects.
                    None => {
                        let _ = sink.send(Message::Close(None)).await;
                        return;
                    }
                },
                _ = ping.tick() => {
                    if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let reader = async {
        while let Some(Ok(m)) = stream.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    };
    tokio::select! {
        _ = writer => {},
        _ = reader => {},
    }
    hub.disconnect(id);
}

/// `GET /api/stats/live`: today's figures (Asia/Tokyo).
pub async fn stats_live(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let s = state
        .hub
        .compute_stats()
        .await
        .ok_or_else(|| ApiError::internal("statistics unavailable"))?;
    Ok(Json(json!(s)))
}

/// `PATCH /api/calls/{id}`: the operator's outcome and note (id or call key).
pub async fn set_outcome(
    State(state): State<AppState>,
    CurrentUser(s): CurrentUser,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    JsonBody(outcome): JsonBody<Outcome>,
) -> Result<Json<Value>, ApiError> {
    let row_id = state
        .calls
        .resolve(&id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("call"))?;
    let row = state
        .calls
        .set_outcome(row_id, &outcome, s.user.id, state.clock.now())
        .await
        .map_err(|e| match e {
            OutcomeError::Invalid(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m)
            }
            OutcomeError::NotFound => ApiError::not_found("call"),
            OutcomeError::NotAnswered => ApiError::new(
                StatusCode::CONFLICT,
                "not_answered",
                "応答していない通話には対応記録を付けられません。",
            ),
            OutcomeError::Calls(e) => ApiError::internal(e),
        })?;
    state
        .audit
        .record(
            AuditEntry::new("call.outcome")
                .actor(Some(s.user.id), &s.user.username)
                .target("call", row_id)
                .ip(ip.clone())
                .detail(json!({ "outcome": outcome.outcome })),
        )
        .await?;
    Ok(Json(json!(row)))
}

/// `GET /api/calls/wrapups`: answered calls still without an outcome (an operator's own;
/// a manager sees everyone's).
pub async fn wrapups(
    State(state): State<AppState>,
    CurrentUser(s): CurrentUser,
    ClientIp(ip): ClientIp,
) -> Result<Json<Value>, ApiError> {
    let all = s.user.role == Role::Manager;
    let rows = state
        .calls
        .wrapups(&s.user.username, all)
        .await
        .map_err(ApiError::internal)?;
    super::calls_api::audit_call_reads(&state, &s, ip, &rows).await?;
    Ok(Json(json!({ "calls": rows })))
}

/// `GET /api/callbacks`: numbers waiting for a callback, longest waiting first.
pub async fn callback_list(
    State(state): State<AppState>,
    CurrentUser(s): CurrentUser,
    ClientIp(ip): ClientIp,
) -> Result<Json<Value>, ApiError> {
    let list = callbacks::list_open(&state.db)
        .await
        .map_err(ApiError::internal)?;
    if !list.is_empty() {
        let ids: Vec<i64> = list.iter().map(|c| c.id).collect();
        state
            .audit
            .record(
                AuditEntry::new("callback.read")
                    .actor(Some(s.user.id), &s.user.username)
                    .ip(ip.clone())
                    .detail(json!({ "callback_ids": ids })),
            )
            .await?;
    }
    Ok(Json(json!({ "callbacks": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseCallback {
    result: String,
    #[serde(default)]
    note: String,
}

/// `POST /api/callbacks/{id}/close`: called back, or closed without a call.
pub async fn callback_close(
    State(state): State<AppState>,
    CurrentUser(s): CurrentUser,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<CloseCallback>,
) -> Result<Json<Value>, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("'{id}' is not a valid id")))?;
    if !matches!(req.result.as_str(), "called_back" | "closed") {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "result must be called_back or closed",
        ));
    }
    if req.note.chars().count() > 500 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "note must be at most 500 characters",
        ));
    }
    let closed = callbacks::close(
        &state.db,
        id,
        &req.result,
        req.note.trim(),
        s.user.id,
        state.clock.now(),
    )
    .await
    .map_err(ApiError::internal)?;
    if !closed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_open",
            "この折り返しは既に対応済みか、存在しません。",
        ));
    }
    state
        .audit
        .record(
            AuditEntry::new("callback.close")
                .actor(Some(s.user.id), &s.user.username)
                .target("callback", id)
                .ip(ip.clone())
                .detail(json!({ "result": req.result })),
        )
        .await?;
    Ok(Json(json!({ "ok": true })))
}

/// The talk-script paths the console offers.
const PATHS: &[(&str, &str)] = &[
    ("new", "新規申請"),
    ("renewal", "更新"),
    ("loss", "紛失・破損"),
    ("facility", "施設"),
    ("inquiry", "一般問合せ"),
];

fn markdown_to_html(md: &str) -> String {
    use pulldown_cmark::{html, Event, Parser};
    // Raw HTML in the script is shown as text, never rendered: the page trusts this HTML.
    let events = Parser::new(md).map(|e| match e {
        Event::Html(t) | Event::InlineHtml(t) => Event::Text(t),
        other => other,
    });
    let mut out = String::new();
    html::push_html(&mut out, events);
    out
}

/// Splits `talk-script.md` into sections: `## title`, then `paths: a, b`, then Markdown.
pub fn parse_talk_script(text: &str) -> Vec<Value> {
    let mut sections = Vec::new();
    let mut current: Option<(String, Vec<String>, String)> = None;
    let flush = |cur: Option<(String, Vec<String>, String)>, out: &mut Vec<Value>| {
        if let Some((title, paths, body)) = cur {
            let id = format!("s{}", out.len() + 1);
            out.push(json!({ "id": id, "title": title, "paths": paths, "html": markdown_to_html(&body) }));
        }
    };
    for line in text.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            flush(current.take(), &mut sections);
            current = Some((
                title.trim().to_string(),
                vec!["common".to_string()],
                String::new(),
            ));
        } else if let Some((_, paths, body)) = current.as_mut() {
            match line.trim().strip_prefix("paths:") {
                Some(p) if body.trim().is_empty() => {
                    *paths = p
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect();
                }
                _ => {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    flush(current, &mut sections);
    sections
}

/// `GET /api/talk-script`: the profile's script in sections, by path (R-LINE-6).
pub async fn talk_script(State(state): State<AppState>) -> Json<Value> {
    let paths: Vec<Value> = PATHS
        .iter()
        .map(|(id, label)| json!({ "id": id, "label": label }))
        .collect();
    Json(
        json!({ "paths": paths, "sections": parse_talk_script(&state.config.profile.talk_script) }),
    )
}

/// `GET /api/presence`: staff, whether logged in, and their registered phones.
pub async fn presence(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let users = state.users.list().await?;
    let active = state.sessions.active_user_ids().await?;
    let phones = match &state.sip {
        Some(sip) => sip.status().await.map(|s| s.phones).unwrap_or_default(),
        None => Vec::new(),
    };
    let staff: Vec<Value> = users
        .iter()
        .filter(|u| !u.disabled && matches!(u.role, Role::Operator | Role::Manager))
        .map(|u| {
            let mine: Vec<Value> = phones
                .iter()
                .filter(|p| p.operator.as_deref() == Some(u.username.as_str()))
                .map(|p| json!({ "username": p.username, "contact": p.contact, "transport": p.transport }))
                .collect();
            json!({
                "username": u.username,
                "display_name": u.display_name,
                "role": u.role,
                "logged_in": active.contains(&u.id),
                "phones": mine,
            })
        })
        .collect();
    Ok(Json(json!({ "staff": staff })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn talk_script_sections_keep_paths_and_escape_html() {
        let s = parse_talk_script("# top\n## 挨拶\npaths: common\nこんにちは **太字**\n## 更新\npaths: renewal, new\n<script>x</script>\n- 項目\n");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0]["title"], "挨拶");
        assert_eq!(s[1]["paths"], json!(["renewal", "new"]));
        assert!(s[0]["html"]
            .as_str()
            .unwrap()
            .contains("<strong>太字</strong>"));
        assert!(!s[1]["html"].as_str().unwrap().contains("<script>"));
    }
}
