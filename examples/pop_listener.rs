//! A minimal screen-pop client for `scripts/bench-pop`: logs in, connects to `/ws` with the
//! session cookie, and for every `call.ringing` frame prints one line
//!
//!     <receive time, UNIX epoch microseconds> <call_key> <caller e164 or ->
//!
//! to stdout (flushed per line). The time is read from `SystemTime` as soon as the frame has
//! been read off the socket, before the JSON is parsed. Progress and errors go to stderr;
//! `ready` is written to stderr once the first message (the `snapshot`) has arrived.
//!
//!     cargo run --release --example pop_listener -- http://127.0.0.1:8080 USER [COUNT]
//!
//! The password is read from the environment variable `POP_PASSWORD` (kept off the command
//! line). With COUNT, the program exits after that many `call.ringing` frames.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("pop_listener: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let base = args
        .next()
        .ok_or("usage: pop_listener BASE_URL USERNAME [COUNT] (password in POP_PASSWORD)")?;
    let base = base.trim_end_matches('/').to_string();
    let username = args.next().ok_or("missing USERNAME")?;
    let count: Option<u64> = match args.next() {
        Some(c) => Some(
            c.parse()
                .map_err(|_| format!("COUNT '{c}' is not a number"))?,
        ),
        None => None,
    };
    let password = std::env::var("POP_PASSWORD").map_err(|_| "POP_PASSWORD is not set")?;

    let res = reqwest::Client::new()
        .post(format!("{base}/api/login"))
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await
        .map_err(|e| format!("login request: {e}"))?;
    if !res.status().is_success() {
        return Err(format!("login: HTTP {}", res.status()));
    }
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("madoguchi_session="))
        .and_then(|c| c.split(';').next())
        .ok_or("login: no madoguchi_session cookie")?
        .to_string();

    let url = base.replacen("http://", "ws://", 1) + "/ws";
    let mut req = url
        .into_client_request()
        .map_err(|e| format!("ws url: {e}"))?;
    req.headers_mut().insert(
        "Cookie",
        cookie.parse().map_err(|_| "cookie is not a header value")?,
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .map_err(|e| format!("websocket: {e}"))?;

    let stdout = std::io::stdout();
    let mut ready = false;
    let mut rings = 0u64;
    while let Some(msg) = ws.next().await {
        let msg = msg.map_err(|e| format!("websocket read: {e}"))?;
        let at = now_us();
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(_) => return Err("the server closed the socket".into()),
            _ => continue,
        };
        if !ready {
            ready = true;
            eprintln!("ready");
        }
        // Cheap pre-filter: most frames are `stats`.
        if !text.contains("\"call.ringing\"") {
            continue;
        }
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("bad frame: {e}"))?;
        if v["type"] != "call.ringing" {
            continue;
        }
        let key = v["call"]["call_key"].as_str().unwrap_or("-");
        let caller = v["call"]["caller"]["e164"].as_str().unwrap_or("-");
        let mut out = stdout.lock();
        writeln!(out, "{at} {key} {caller}").map_err(|e| format!("stdout: {e}"))?;
        out.flush().map_err(|e| format!("stdout: {e}"))?;
        rings += 1;
        if count == Some(rings) {
            return Ok(());
        }
    }
    Err("the socket ended".into())
}
