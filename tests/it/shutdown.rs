//! Orderly shutdown of the real binary under load: 50 sipp calls in flight, SIGTERM, a new
//! call during the drain gets 503 with Retry-After, the process exits 0 once the calls have
//! ended, and after a restart every call is in the log once, `completed` (none lost, none
//! `interrupted`). Also the cap on SIP TCP connections that keeps a flood from exhausting
//! the process.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::manifest_dir;
use common::rig::{expect_final, wait, CALLER, LINE};
use common::sipp::{self, Sipp};
use serde_json::{json, Value};

const CALLS: usize = 50;
const PASSWORD: &str = "shutdown-test-password";

/// `madoguchi serve` as a service manager runs it; killed if the test ends early.
struct Served {
    child: Child,
    http: String,
    sip: String,
    log: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Starts the binary on `config` and waits for it to print where it listens.
    fn start(dir: &Path, config: &Path, run: &str) -> Served {
        let log = dir.join(format!("madoguchi-{run}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_madoguchi"));
        for k in [
            "MADOGUCHI_HTTP_ADDR",
            "MADOGUCHI_SIP_ADDR",
            "DATABASE_URL",
            "MADOGUCHI_PROFILE",
            "MADOGUCHI_SIP_CONFIG",
        ] {
            cmd.env_remove(k);
        }
        let mut child = cmd
            .current_dir(dir)
            .args(["--config"])
            .arg(config)
            // Inside the opening hours (Wednesday 10:00 JST), time running normally.
            .args(["serve", "--clock-start", "2026-11-25T10:00:00+09:00"])
            .env("MADOGUCHI_BOOTSTRAP_PASSWORD", PASSWORD)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn madoguchi");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut http, mut sip) = (String::new(), String::new());
        let deadline = Instant::now() + Duration::from_secs(30);
        while http.is_empty() || sip.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                panic!(
                    "serve did not print its addresses; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            };
            if let Some(i) = line.find("http://") {
                let url = line[i..].split_whitespace().next().unwrap();
                http = url.trim_end_matches('/').to_string();
            }
            if let Some(addr) = line.strip_prefix("SIP adapter (UDP and TCP): ") {
                sip = addr.trim().to_string();
            }
        }
        Served {
            child,
            http,
            sip,
            log,
        }
    }

    fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -TERM failed");
    }

    /// Waits for the process to end; its exit code.
    async fn exit_code(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A logged-in client and its anti-CSRF token.
    async fn login(&self, username: &str, password: &str) -> (reqwest::Client, String) {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        let login = client
            .post(format!("{}/api/login", self.http))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 200, "login as {username}");
        let body: Value = login.json().await.unwrap();
        let csrf = body["csrf_token"].as_str().unwrap().to_string();
        (client, csrf)
    }

    async fn admin(&self) -> reqwest::Client {
        self.login("admin", PASSWORD).await.0
    }

    /// A manager (who may read the call log), created by the admin.
    async fn manager(&self) -> reqwest::Client {
        let (admin, csrf) = self.login("admin", PASSWORD).await;
        let created = admin
            .post(format!("{}/api/users", self.http))
            .header("X-CSRF-Token", csrf)
            .json(&json!({ "username": "manager1", "role": "manager", "password": PASSWORD, "must_change_password": false }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201, "create manager1");
        self.login("manager1", PASSWORD).await.0
    }
}

/// The shipped profile with a line that takes more calls at once than the test places.
fn wide_profile(dir: &Path) -> PathBuf {
    let out = dir.join("profile");
    crate::common::copy_profile(&out);
    let p = out.join("profile.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains("max_concurrent_calls = 1\n"));
    std::fs::write(
        &p,
        text.replace("max_concurrent_calls = 1\n", "max_concurrent_calls = 100\n"),
    )
    .unwrap();
    out
}

async fn sip_status(http: &str, admin: &reqwest::Client) -> Value {
    admin
        .get(format!("{http}/api/sip/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_calls_in_flight_drains_then_logs_every_call_once() {
    if !sipp::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let db_file = work.join("calls.db");
    let config = work.join("madoguchi.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\naddr = \"127.0.0.1:0\"\n\n[sip]\naddr = \"127.0.0.1:0\"\nconfig_dir = \"{}\"\nshutdown_grace_secs = 20\n\n[database]\nurl = \"sqlite://{}\"\n\n[profile]\npath = \"{}\"\n",
            manifest_dir().join("sip-config").display(),
            db_file.display(),
            wide_profile(work).display(),
        ),
    )
    .unwrap();

    let mut served = Served::start(work, &config, "first");
    let admin = served.admin().await;

    // op2's phone (sip-config/phones.toml, MD5): rings 0.5 s, answers, hangs up 2.5 s later.
    let phone_port = sipp::port();
    let uas = sipp::scenario(
        work,
        "phone-answer-bye",
        &[(
            "<pause milliseconds=\"1000\"/>",
            "<pause milliseconds=\"2500\"/>",
        )],
    );
    let n = CALLS.to_string();
    let mut phone = Sipp::start(
        work,
        &served.sip,
        &uas,
        "127.0.0.1",
        phone_port,
        &["-m", &n],
    );
    let reg = sipp::scenario(work, "phone-register", &[]);
    let contact = phone_port.to_string();
    let mut register = Sipp::start(
        work,
        &served.sip,
        &reg,
        "127.0.0.1",
        sipp::port(),
        &[
            "-m",
            "1",
            "-s",
            "op2",
            "-au",
            "op2",
            "-ap",
            "demo-password-op2",
            "-key",
            "contact_port",
            &contact,
            "-key",
            "expires",
            "600",
        ],
    );
    assert_eq!(
        wait(&mut register, 10).await,
        0,
        "op2 registers: {}",
        register.errors()
    );

    // The carrier places 50 calls within half a second; each lasts about 3 s.
    let place = sipp::scenario(work, "trunk-call-wait-bye", &[]);
    let mut trunk = Sipp::start(
        work,
        &served.sip,
        &place,
        "127.0.0.1",
        sipp::port(),
        &[
            "-m", &n, "-r", "100", "-l", "60", "-s", LINE, "-key", "caller", CALLER,
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = sip_status(&served.http, &admin).await;
        let (routed, open) = (
            s["counters"]["calls"].as_u64().unwrap_or(0),
            s["tables"]["calls"].as_u64().unwrap_or(0),
        );
        if routed == CALLS as u64 && open == CALLS as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "50 calls never were in flight together: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let signalled = Instant::now();
    served.sigterm();

    // A new call during the drain: 503 with Retry-After, so the carrier retries elsewhere.
    let refused = expect_final(work, 503, true);
    let mut late = Sipp::start(
        work,
        &served.sip,
        &refused,
        "127.0.0.1",
        sipp::port(),
        &["-m", "1", "-s", LINE, "-key", "caller", CALLER],
    );
    assert_eq!(
        wait(&mut late, 10).await,
        0,
        "a new INVITE while draining gets 503: {}",
        late.errors()
    );
    assert!(
        late.messages().contains("Retry-After: 30"),
        "the 503 carries Retry-After: {}",
        late.messages()
    );

    let code = served.exit_code(Duration::from_secs(25)).await;
    let took = signalled.elapsed();
    let log = served.log();
    assert_eq!(code, Some(0), "exit after SIGTERM; log:\n{log}");
    // The calls in flight held the process up (about 3 s, plus T4 = 5 s for the last BYE
    // transactions to end), not the 20 s grace period.
    assert!(
        took > Duration::from_millis(500) && took < Duration::from_secs(18),
        "stopped {took:?} after SIGTERM; log:\n{log}"
    );
    assert!(log.contains("no call in progress"), "{log}");
    assert!(log.contains("every event published was written"), "{log}");
    assert!(log.contains("stopped cleanly"), "{log}");

    // Every call ended on the wire on both sides before the process went.
    assert_eq!(
        wait(&mut trunk, 15).await,
        0,
        "all {CALLS} calls completed for the carrier: {}",
        trunk.errors()
    );
    assert_eq!(
        wait(&mut phone, 10).await,
        0,
        "all {CALLS} calls completed for the phone: {}",
        phone.errors()
    );
    drop(served);

    // The next start closes calls left open as interrupted: there must be none.
    let mut again = Served::start(work, &config, "second");
    let manager = again.manager().await;
    let body: Value = manager
        .get(format!("{}/api/calls?limit=500", again.http))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let calls = body["calls"].as_array().expect("calls");
    assert_eq!(
        calls.len(),
        CALLS,
        "every call logged, the drained one not: {body}"
    );
    for c in calls {
        assert_eq!(c["end_cause"], "completed", "{c}");
        assert_eq!(c["hangup_by"], "operator", "{c}");
    }
    again.sigterm();
    assert_eq!(
        again.exit_code(Duration::from_secs(10)).await,
        Some(0),
        "an idle server stops at once; log:\n{}",
        again.log()
    );
    assert!(
        !again.log().contains("interrupted"),
        "no call was left open: {}",
        again.log()
    );

    // Once each, by the carrier's Call-ID.
    let db = madoguchi::store::Db::connect(&format!("sqlite://{}", db_file.display()), 1)
        .await
        .unwrap();
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT sip_call_id, end_cause FROM calls")
            .fetch_all(db.pool())
            .await
            .unwrap();
    let mut ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), CALLS, "one row per call: {rows:?}");
    assert!(
        rows.iter()
            .all(|(_, cause)| cause.as_deref() == Some("completed")),
        "{rows:?}"
    );
}

#[tokio::test]
async fn a_tcp_connection_over_the_cap_is_closed_at_once_and_counted() {
    use tokio::io::AsyncReadExt;
    let app =
        common::TestApp::spawn_with(common::Kind::Sqlite, |c| c.sip_max_tcp_connections = 2).await;
    let sip = app.server.state.sip.clone().unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(
            tokio::net::TcpStream::connect(app.server.sip_addr)
                .await
                .unwrap(),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while sip.status().await.unwrap().tcp_flows < 2 {
        assert!(Instant::now() < deadline, "two connections held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut over = tokio::net::TcpStream::connect(app.server.sip_addr)
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(2), over.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the third connection is closed at once: {read:?}"
    );
    let status = sip.status().await.unwrap();
    assert_eq!(status.counters.tcp_refused, 1);
    assert_eq!(status.tcp_flows, 2);
    // A slot freed is a slot taken again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    while sip.status().await.unwrap().tcp_flows > 1 {
        assert!(
            Instant::now() < deadline,
            "the closed connection is forgotten"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _again = tokio::net::TcpStream::connect(app.server.sip_addr)
        .await
        .unwrap();
    while sip.status().await.unwrap().tcp_flows < 2 {
        assert!(Instant::now() < deadline, "a freed slot is used again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sip.status().await.unwrap().counters.tcp_refused, 1);
    app.stop().await;
}

/// issue 13, kill-9: calls completing and outcomes being saved, `kill -9`, restart → every
/// call whose hang-up was confirmed on the wire before the kill is in the log as completed,
/// and every outcome the API confirmed is there. The calls in flight are reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_confirmed_hang_up_and_no_saved_outcome() {
    use common::ua::Phone;
    use std::sync::{Arc, Mutex};

    if !sipp::available() {
        return;
    }
    const CONFIRMED_BEFORE_KILL: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let db_file = work.join("calls.db");
    let config = work.join("madoguchi.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\naddr = \"127.0.0.1:0\"\n\n[sip]\naddr = \"127.0.0.1:0\"\nconfig_dir = \"{}\"\n\n[database]\nurl = \"sqlite://{}\"\n\n[profile]\npath = \"{}\"\n",
            manifest_dir().join("sip-config").display(),
            db_file.display(),
            wide_profile(work).display(),
        ),
    )
    .unwrap();
    let mut served = Served::start(work, &config, "first");
    let (admin, csrf) = served.login("admin", PASSWORD).await;
    let created = admin
        .post(format!("{}/api/users", served.http))
        .header("X-CSRF-Token", &csrf)
        .json(&json!({ "username": "operator2", "role": "operator", "password": PASSWORD, "must_change_password": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let (operator, op_csrf) = served.login("operator2", PASSWORD).await;

    // op2 (sip-config/phones.toml) is operator2's phone: answers each call, talks a moment,
    // hangs up, and notes the Call-IDs whose BYE got its 200 — the confirmed hang-ups.
    let server: std::net::SocketAddr = served.sip.parse().unwrap();
    let mut phone = Phone::udp(server, "op2", "demo-password-op2").await;
    assert_eq!(phone.register(600).await, 200);
    let confirmed: Arc<Mutex<Vec<String>>> = Arc::default();
    let (enough_tx, enough_rx) = tokio::sync::oneshot::channel::<()>();
    let phone_task = {
        let confirmed = confirmed.clone();
        tokio::spawn(async move {
            let mut enough = Some(enough_tx);
            loop {
                let Some(invite) = phone.recv(Duration::from_secs(5)).await else {
                    return;
                };
                if invite.method() != Some("INVITE") {
                    continue;
                }
                let mut dialog = phone.answer(&invite, Duration::from_millis(30)).await;
                tokio::time::sleep(Duration::from_millis(80)).await;
                phone.in_dialog(&mut dialog, "BYE").await;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
                let mut done = false;
                while let Some(m) = phone
                    .recv(deadline.saturating_duration_since(tokio::time::Instant::now()))
                    .await
                {
                    if m.status().is_some_and(|s| s >= 200)
                        && m.header("CSeq").is_some_and(|c| c.ends_with("BYE"))
                    {
                        let mut c = confirmed.lock().unwrap();
                        c.push(m.call_id().unwrap_or_default());
                        if c.len() == CONFIRMED_BEFORE_KILL {
                            if let Some(tx) = enough.take() {
                                let _ = tx.send(());
                            }
                        }
                        done = true;
                        break;
                    }
                }
                if !done {
                    return; // the server is gone
                }
            }
        })
    };

    // The carrier keeps placing calls, one at a time.
    let place = sipp::scenario(work, "trunk-call-wait-bye", &[]);
    let trunk = Sipp::start(
        work,
        &served.sip,
        &place,
        "127.0.0.1",
        sipp::port(),
        &[
            "-m",
            "200",
            "-r",
            "10",
            "-l",
            "1",
            "-s",
            LINE,
            "-key",
            "caller",
            CALLER,
            "-recv_timeout",
            "4000",
        ],
    );

    // The operator saves an outcome for each call as it ends (wrap-up), through the API.
    let saved: Arc<Mutex<Vec<String>>> = Arc::default();
    let saver = {
        let (saved, http) = (saved.clone(), served.http.clone());
        tokio::spawn(async move {
            loop {
                let Ok(res) = operator
                    .get(format!("{http}/api/calls/wrapups"))
                    .send()
                    .await
                else {
                    return;
                };
                let Ok(body) = res.json::<Value>().await else {
                    return;
                };
                for c in body["calls"].as_array().cloned().unwrap_or_default() {
                    let key = c["call_key"].as_str().unwrap_or_default().to_string();
                    let ok = operator
                        .patch(format!("{http}/api/calls/{key}"))
                        .header("X-CSRF-Token", &op_csrf)
                        .json(&json!({ "outcome": "inquiry", "topics": ["renewal"] }))
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200);
                    if ok {
                        saved.lock().unwrap().push(key);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // Right after a hang-up was confirmed (the hardest moment for the log), or a little later
    // with the next call under way.
    tokio::time::timeout(Duration::from_secs(30), enough_rx)
        .await
        .expect("calls went through before the kill")
        .unwrap();
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_millis()
        % 200;
    tokio::time::sleep(Duration::from_millis(u64::from(jitter))).await;
    let killed = Command::new("kill")
        .args(["-KILL", &served.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(killed);
    let _ = served.exit_code(Duration::from_secs(5)).await;
    let confirmed = confirmed.lock().unwrap().clone();
    let saved = saved.lock().unwrap().clone();
    drop(trunk);
    saver.abort();
    phone_task.abort();
    drop(served);

    // The restart closes what was open then as interrupted.
    let again = Served::start(work, &config, "second");
    let db = madoguchi::store::Db::connect(&format!("sqlite://{}", db_file.display()), 1)
        .await
        .unwrap();
    let rows: Vec<(String, String, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT sip_call_id, call_key, end_cause, outcome FROM calls ORDER BY id")
            .fetch_all(db.pool())
            .await
            .unwrap();
    for id in &confirmed {
        let row = rows.iter().find(|r| &r.0 == id);
        assert!(
            row.is_some_and(|r| r.2.as_deref() == Some("completed")),
            "confirmed hang-up {id} logged as completed: {row:?}"
        );
    }
    for key in &saved {
        let row = rows.iter().find(|r| &r.1 == key);
        assert!(
            row.is_some_and(|r| r.3.as_deref() == Some("inquiry")),
            "saved outcome of {key} kept: {row:?}"
        );
    }
    let in_flight: Vec<_> = rows
        .iter()
        .filter(|r| !confirmed.contains(&r.0))
        .map(|r| (r.2.clone().unwrap_or_default(), r.3.is_some()))
        .collect();
    eprintln!(
        "kill -9 figures (killed {jitter} ms after the {CONFIRMED_BEFORE_KILL}th confirmed hang-up): {} calls logged, {} hang-ups confirmed before the kill (all completed), \
         {} outcomes saved (all kept), {} in flight at the kill, which became: {:?}",
        rows.len(),
        confirmed.len(),
        saved.len(),
        in_flight.len(),
        in_flight
    );
    assert!(
        in_flight.iter().all(|(cause, _)| !cause.is_empty()),
        "after the restart no call is left open: {in_flight:?}"
    );
    drop(again);
}
