//! The operator console and the manager dashboard: WebSocket, outcomes, wrap-ups, callbacks,
//! live statistics, the talk script and presence (issue 4, R-LINE-3, R-LINE-4, R-LINE-6).

use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::calls::callbacks::{self, Callback};
use crate::calls::script::{parse_talk_script, ScriptSection};
use crate::calls::stats::LiveStats;
use crate::calls::{CallRow, CallbackResult, OutcomeInput, PresenceState, TalkPath};
use crate::privacy::{Actor, Role, Session};
use crate::sip::proxy::Transport;
use crate::sip::proxy::TrunkStatus;

use super::access::Staff;
use super::{parse_id, ApiError, Done, JsonBody};

/// The close code that tells the UI its session is over (go to the login page rather than
/// reconnect); 4000–4999 are the application's own (RFC 6455 §7.4.2).
pub const SESSION_ENDED: u16 = 4401;

/// `GET /ws`: the screen-pop and live-stats stream, for as long as the session lives.
pub async fn ws(
    State(state): State<AppState>,
    Staff { actor, session }: Staff,
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
    upgrade.on_upgrade(move |socket| client(state, actor, session, socket))
}

/// Why the server closes a socket.
enum Close {
    /// The session ended: the UI goes to the login page.
    SessionEnded,
    /// The hub dropped the client (too slow): the UI reconnects.
    Dropped,
    /// The pops could not be recorded, so they were not sent: the UI reconnects later.
    Unrecorded,
}

async fn client(state: AppState, actor: Actor, session: Session, socket: WebSocket) {
    // Watch first, then check: a session ended between the upgrade and here is found by the
    // first check, which runs at once.
    let watch = state.sessions.watch(&session);
    let mut pops = state.hub.subscribe_with_history(actor).await;
    let (mut sink, mut stream) = socket.split();
    let writer = async {
        let mut recheck = tokio::time::interval(Duration::from_secs(u64::from(
            state.config.auth.session_recheck_secs,
        )));
        let mut ping = tokio::time::interval(Duration::from_secs(30));
        ping.tick().await;
        loop {
            // The session's end comes first: nothing is sent once it is known.
            tokio::select! {
                biased;
                () = watch.ended() => return Some(Close::SessionEnded),
                _ = recheck.tick() => match state.sessions.is_live(session.id).await {
                    Ok(true) => {}
                    Ok(false) => return Some(Close::SessionEnded),
                    // Unable to tell: the screen shows personal data, so it closes; the
                    // browser reconnects, and the upgrade checks the session again.
                    Err(e) => {
                        tracing::warn!(error = %e, "session check failed; closing the screen-pop socket");
                        return Some(Close::Dropped);
                    }
                },
                next = pops.next() => match next {
                    Ok(Some(texts)) => {
                        for text in texts {
                            if sink.send(Message::Text(text.as_ref().into())).await.is_err() {
                                return None;
                            }
                        }
                    }
                    Ok(None) => return Some(Close::Dropped),
                    Err(e) => {
                        tracing::error!(error = %e, "screen pops could not be recorded; not sent");
                        return Some(Close::Unrecorded);
                    }
                },
                _ = ping.tick() => {
                    if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                        return None;
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
    let close = tokio::select! {
        close = writer => close,
        () = reader => None,
    };
    drop(pops);
    let frame = match close {
        Some(Close::SessionEnded) => Some(CloseFrame {
            code: SESSION_ENDED,
            reason: "session ended".into(),
        }),
        Some(Close::Unrecorded) => Some(CloseFrame {
            code: close_code::ERROR,
            reason: "unavailable".into(),
        }),
        Some(Close::Dropped) => None,
        None => return,
    };
    let _ = sink.send(Message::Close(frame)).await;
}

/// `GET /api/stats/live`: today's figures (Asia/Tokyo).
pub async fn stats_live(State(state): State<AppState>) -> Result<Json<LiveStats>, ApiError> {
    let s = state
        .hub
        .compute_stats()
        .await
        .ok_or_else(|| ApiError::internal("statistics unavailable"))?;
    Ok(Json(s))
}

/// `PATCH /api/calls/{id}`: the operator's outcome and note (id or call key).
pub async fn set_outcome(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    Path(id): Path<String>,
    JsonBody(outcome): JsonBody<OutcomeInput>,
) -> Result<Json<CallRow>, ApiError> {
    let row = state
        .calls
        .set_outcome(&actor, &id, &outcome, state.clock.now())
        .await?;
    state.hub.outcome_saved(row.id).await;
    Ok(Json(row))
}

/// A list of calls.
#[derive(Serialize)]
pub struct CallList {
    calls: Vec<CallRow>,
}

/// `GET /api/calls/wrapups`: answered calls still without an outcome (an operator's own;
/// a manager sees everyone's).
pub async fn wrapups(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
) -> Result<Json<CallList>, ApiError> {
    let calls = state.calls.read_wrapups(&actor, state.clock.now()).await?;
    Ok(Json(CallList { calls }))
}

/// The open callbacks.
#[derive(Serialize)]
pub struct CallbackList {
    callbacks: Vec<Callback>,
}

/// `GET /api/callbacks`: numbers waiting for a callback, longest waiting first.
pub async fn callback_list(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
) -> Result<Json<CallbackList>, ApiError> {
    let callbacks = callbacks::read_open(&state.db, &actor, state.clock.now()).await?;
    Ok(Json(CallbackList { callbacks }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseCallback {
    result: CallbackResult,
    #[serde(default)]
    note: String,
}

/// `POST /api/callbacks/{id}/close`: called back, or closed without a call.
pub async fn callback_close(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<CloseCallback>,
) -> Result<Json<Done>, ApiError> {
    let id = parse_id(&id)?;
    callbacks::close(
        &state.db,
        &actor,
        id,
        req.result,
        &req.note,
        state.clock.now(),
    )
    .await?;
    state.hub.callbacks_changed();
    Ok(Json(Done::OK))
}

/// One path button of the console.
#[derive(Serialize)]
pub struct PathView {
    id: TalkPath,
    label: &'static str,
}

/// The talk script: the paths and the sections.
#[derive(Serialize)]
pub struct TalkScript {
    paths: Vec<PathView>,
    sections: Vec<ScriptSection>,
}

/// `GET /api/talk-script`: the profile's script in sections, by path (R-LINE-6).
pub async fn talk_script(State(state): State<AppState>) -> Json<TalkScript> {
    let paths = TalkPath::ALL
        .iter()
        .map(|&id| PathView {
            id,
            label: id.label_ja(),
        })
        .collect();
    Json(TalkScript {
        paths,
        sections: parse_talk_script(&state.config.profile.talk_script),
    })
}

/// One staff member on the presence list.
#[derive(Serialize)]
pub struct StaffPresence {
    username: String,
    display_name: String,
    role: Role,
    logged_in: bool,
    /// The person's phones (extensions), each once, with its state (issue 18 item 5).
    phones: Vec<PhonePresence>,
}

/// One extension on the presence list.
#[derive(Serialize)]
pub struct PhonePresence {
    /// The phone's SIP username: its extension.
    username: String,
    /// 受付可 / 通話中 / 未登録.
    state: PresenceState,
    /// Live registrations of it (a binding replaced by a newer one from the same phone is
    /// gone; two lines on one phone are two).
    registrations: usize,
    /// The transport of its registration, if any.
    transport: Option<Transport>,
}

/// The presence list.
#[derive(Serialize)]
pub struct Presence {
    staff: Vec<StaffPresence>,
    /// The carrier side: registration and keep-alive (issue 16 item 2).
    trunk: TrunkStatus,
}

/// `GET /api/presence`: staff, whether logged in, and their phones with their state.
pub async fn presence(State(state): State<AppState>) -> Result<Json<Presence>, ApiError> {
    let users = state.users.list().await?;
    let active = state.sessions.active_user_ids().await?;
    let (registered, trunk) = match &state.sip {
        Some(sip) => sip
            .status()
            .await
            .map(|s| (s.phones, s.trunk))
            .unwrap_or_default(),
        None => Default::default(),
    };
    let talking = state.hub.talking();
    // Every configured phone once (registered or not), then any registered one the
    // configuration does not name (it cannot ring for an account, but it is there).
    let mut extensions: Vec<(String, Option<String>)> = state
        .config
        .sip
        .phones
        .iter()
        .map(|p| (p.username.clone(), p.operator.clone()))
        .collect();
    for r in &registered {
        if !extensions.iter().any(|(u, _)| *u == r.username) {
            extensions.push((r.username.clone(), r.operator.clone()));
        }
    }
    extensions.sort();
    let phones_of = |user: &str| -> Vec<PhonePresence> {
        extensions
            .iter()
            .filter(|(_, op)| op.as_deref() == Some(user))
            .map(|(ext, _)| {
                let bindings: Vec<_> = registered.iter().filter(|r| r.username == *ext).collect();
                let state = if bindings.is_empty() {
                    PresenceState::Unregistered
                } else if talking.contains(ext) {
                    PresenceState::Talking
                } else {
                    PresenceState::Available
                };
                PhonePresence {
                    username: ext.clone(),
                    state,
                    registrations: bindings.len(),
                    transport: bindings.first().map(|b| b.transport),
                }
            })
            .collect()
    };
    let staff = users
        .into_iter()
        .filter(|u| !u.disabled && matches!(u.role, Role::Operator | Role::Manager))
        .map(|u| StaffPresence {
            phones: phones_of(&u.username),
            logged_in: active.contains(&u.id),
            username: u.username,
            display_name: u.display_name,
            role: u.role,
        })
        .collect();
    Ok(Json(Presence { staff, trunk }))
}
