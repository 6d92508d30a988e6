//! The service files in deploy/ (issue 16 item 6): systemd accepts the units and rates their
//! sandbox below a stated exposure; nginx accepts the reverse-proxy example, and — run in
//! front of the real server with a throw-away certificate — carries a login and the
//! screen-pop WebSocket upgrade, while the audit log names the client nginx saw
//! (`[http] trusted_proxies`). A client talking to madoguchi directly cannot forge its address.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;
use sqlx::Row;

use crate::common::{manifest_dir, Kind, TestApp};

/// The most `systemd-analyze security` may rate madoguchi's units (0 = locked down, 10 =
/// unprotected; systemd calls below 2 "OK").
const MAX_EXPOSURE: f64 = 2.0;

fn deploy(name: &str) -> String {
    std::fs::read_to_string(manifest_dir().join("deploy").join(name))
        .unwrap_or_else(|e| panic!("deploy/{name}: {e}"))
}

/// Runs `cmd`, killed after `secs`: no test waits for ever on a tool.
fn run_bounded(mut cmd: Command, secs: u64) -> std::process::Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/test installs it)"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("{cmd:?} did not finish within {secs} s");
        }
    }
}

/// The unit files with the binary path pointing at the binary under test.
fn units_in(dir: &Path) -> Vec<PathBuf> {
    let bin = env!("CARGO_BIN_EXE_madoguchi");
    [
        "madoguchi.service",
        "madoguchi-backup.service",
        "madoguchi-backup.timer",
    ]
    .iter()
    .map(|name| {
        let text = deploy(name).replace("/usr/local/bin/madoguchi", bin);
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    })
    .collect()
}

#[test]
fn systemd_accepts_the_units_and_rates_them_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let units = units_in(dir.path());
    let mut verify = Command::new("systemd-analyze");
    verify.current_dir(dir.path()).args(["verify", "--man=no"]);
    verify.args(&units);
    let out = run_bounded(verify, 60);
    let err = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on an unknown or misspelt key and only warns: every warning fails here.
    assert!(out.status.success() && err.trim().is_empty(), "{err}");

    for unit in &units[..2] {
        let mut security = Command::new("systemd-analyze");
        security
            .current_dir(dir.path())
            .args(["security", "--offline=true", "--no-pager"])
            .arg(unit);
        let out = run_bounded(security, 60);
        let text = String::from_utf8_lossy(&out.stdout);
        let level: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(':').nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no exposure level for {}: {text}{}",
                    unit.display(),
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        assert!(
            level <= MAX_EXPOSURE,
            "{}: exposure {level} > {MAX_EXPOSURE}",
            unit.display()
        );
    }

    // systemd waits longer than the graceful shutdown before it kills the service, with both
    // the built-in default and the production example's grace.
    let unit = deploy("madoguchi.service");
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.trim_end_matches('s').parse().ok())
        .expect("TimeoutStopSec=");
    let example: toml::Value = toml::from_str(&deploy("madoguchi.toml")).unwrap();
    let grace = example["sip"]["shutdown_grace_secs"].as_integer().unwrap() as u64;
    assert!(stop > grace && stop > madoguchi::config::DEFAULT_SHUTDOWN_GRACE_SECS);
    // Port 5060 without root, and no other capability.
    assert!(unit.contains("\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n"));
    assert!(unit.contains("\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"));
}

/// A throw-away nginx prefix: the example site with a self-signed certificate, loopback
/// ports and the upstream moved to `upstream`.
struct NginxPrefix {
    dir: tempfile::TempDir,
    https_port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `proxy_from`: the address nginx connects to madoguchi from (`proxy_bind`), so that on
/// loopback the proxy and the client have different addresses.
fn nginx_prefix(upstream: &str, proxy_from: Option<&str>) -> NginxPrefix {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("logs")).unwrap();
    std::fs::create_dir_all(p.join("tmp")).unwrap();
    let mut req = Command::new("openssl");
    req.args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
    ])
    .arg("-keyout")
    .arg(p.join("key.pem"))
    .arg("-out")
    .arg(p.join("cert.pem"));
    let out = run_bounded(req, 60);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (http_port, https_port) = (free_port(), free_port());
    let site = deploy("nginx-madoguchi.conf")
        .replace(
            "/etc/letsencrypt/live/madoguchi.example.jp/fullchain.pem",
            &p.join("cert.pem").display().to_string(),
        )
        .replace(
            "/etc/letsencrypt/live/madoguchi.example.jp/privkey.pem",
            &p.join("key.pem").display().to_string(),
        )
        .replace("/var/log/nginx", &p.join("logs").display().to_string())
        .replace("server 127.0.0.1:8080;", &format!("server {upstream};"))
        .replace(
            "proxy_pass http://madoguchi;",
            &match proxy_from {
                Some(a) => format!("proxy_pass http://madoguchi; proxy_bind {a};"),
                None => "proxy_pass http://madoguchi;".to_string(),
            },
        )
        .replace("listen 80;", &format!("listen 127.0.0.1:{http_port};"))
        .replace(
            "listen 443 ssl;",
            &format!("listen 127.0.0.1:{https_port} ssl;"),
        )
        .lines()
        .filter(|l| !l.trim_start().starts_with("listen [::]"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(p.join("site.conf"), site).unwrap();
    let d = p.display();
    let main = format!(
        "pid {d}/nginx.pid;\nerror_log {d}/logs/error.log;\ndaemon off;\nworker_processes 1;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;\n  \
         uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n  access_log {d}/logs/access.log;\n  \
         include {d}/site.conf;\n}}\n"
    );
    std::fs::write(p.join("nginx.conf"), main).unwrap();
    NginxPrefix { dir, https_port }
}

impl NginxPrefix {
    fn command(&self, extra: &[&str]) -> Command {
        let mut c = Command::new("nginx");
        c.arg("-p")
            .arg(self.dir.path())
            .arg("-c")
            .arg(self.dir.path().join("nginx.conf"))
            .args(extra);
        c
    }
}

#[test]
fn nginx_accepts_the_reverse_proxy_example() {
    let prefix = nginx_prefix("127.0.0.1:8080", None);
    let out = run_bounded(prefix.command(&["-t"]), 30);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("test is successful"),
        "{err}"
    );
}

/// nginx in the foreground, stopped when dropped (also when the test panics).
struct Nginx(Child);

impl Drop for Nginx {
    /// SIGTERM: the master stops its workers (SIGKILL would leave them running, orphaned);
    /// SIGKILL only if it is still there after 5 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        for _ in 0..50 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One exchange over TLS through `openssl s_client`: sends `request`, returns what came back
/// within `secs` (the connection is then dropped).
fn https_exchange(port: u16, request: &str, secs: u64) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-servername", "localhost", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client");
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(request.as_bytes())
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    let mut got = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(chunk) => got.extend(chunk),
            Err(_) => break,
        }
        let text = String::from_utf8_lossy(&got);
        // A WebSocket stays open: its handshake answer is all we wait for.
        if text.starts_with("HTTP/1.1 101") && text.contains("\r\n\r\n") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    String::from_utf8_lossy(&got).into_owned()
}

async fn login_ips(app: &TestApp, username: &str) -> Vec<String> {
    let db = app.db.open().await;
    let rows = sqlx::query(
        "SELECT ip FROM audit_log WHERE action = 'login' AND actor_username = $1 ORDER BY id",
    )
    .bind(username)
    .fetch_all(db.pool())
    .await
    .unwrap();
    db.close().await;
    rows.iter()
        .map(|r| {
            r.try_get::<Option<String>, _>("ip")
                .unwrap()
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test]
async fn login_and_screen_pop_socket_through_nginx_name_the_real_client() {
    // nginx reaches madoguchi from 127.0.0.2, the only trusted proxy; the client (this test)
    // reaches nginx from 127.0.0.1.
    let app = TestApp::spawn_with(Kind::Sqlite, |c| {
        c.trusted_proxies = vec!["127.0.0.2/32".parse().unwrap()];
    })
    .await;
    let prefix = nginx_prefix(&app.server.http_addr.to_string(), Some("127.0.0.2"));
    let nginx = Nginx(
        prefix
            .command(&[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx"),
    );
    // Bounded wait for nginx to listen.
    let port = prefix.https_port;
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "nginx did not listen on {port}");

    // An operator (the role the screen pop is for), created directly.
    let res = app
        .admin()
        .await
        .post(
            "/api/users",
            &json!({ "username": "tanaka", "role": "operator", "password": "password-of-tanaka", "must_change_password": false }),
        )
        .await;
    assert_eq!(res.status(), 201);

    // The client claims an address itself; nginx appends the one it sees (loopback here), so
    // a forged left-most entry is not what the audit log shows.
    let body = json!({ "username": "tanaka", "password": "password-of-tanaka" }).to_string();
    let login = format!(
        "POST /api/login HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Type: application/json\r\n\
         X-Forwarded-For: 203.0.113.66\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = tokio::task::spawn_blocking(move || https_exchange(port, &login, 20))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let header = |name: &str| {
        answer
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&format!("{name}: ")))
            .map(|l| l[name.len() + 2..].to_string())
    };
    assert!(
        header("strict-transport-security").is_some_and(|v| v.starts_with("max-age=")),
        "{answer}"
    );
    let cookie = header("set-cookie")
        .and_then(|c| c.split(';').next().map(str::to_string))
        .unwrap_or_else(|| panic!("no session cookie: {answer}"));
    // X-Forwarded-For arrives as "203.0.113.66, 127.0.0.1": the right-most hop that is no
    // trusted proxy is the client nginx saw, not the TCP peer (127.0.0.2) and not the address
    // the client claimed for itself.
    let ips = login_ips(&app, "tanaka").await;
    assert_eq!(ips, ["127.0.0.1"], "{ips:?}");

    // The screen pop's WebSocket upgrade passes nginx.
    let ws = format!(
        "GET /ws HTTP/1.1\r\nHost: localhost:{port}\r\nOrigin: https://localhost:{port}\r\n\
         Cookie: {cookie}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let answer = tokio::task::spawn_blocking(move || https_exchange(port, &ws, 20))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{answer}"
    );
    drop(nginx);
    app.stop().await;
}

/// R-PII-4: the address in the audit log is the socket's when the peer is no trusted proxy,
/// whatever X-Forwarded-For it sends.
#[tokio::test]
async fn a_forged_forwarded_for_from_an_untrusted_peer_is_ignored() {
    for trusted in [vec![], vec!["10.0.0.0/8".parse().unwrap()]] {
        let app = TestApp::spawn_with(Kind::Sqlite, |c| c.trusted_proxies = trusted.clone()).await;
        let res = app
            .client()
            .post(app.url("/api/login"))
            .header("X-Forwarded-For", "198.51.100.7")
            .json(&json!({ "username": "admin", "password": "wrong-password" }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        assert_eq!(login_ips(&app, "admin").await, ["127.0.0.1"], "{trusted:?}");
        app.stop().await;
    }
}

/// The nightly backup service's own command (unescaped as systemd does) writes a backup and
/// keeps only the newest KEEP: run four times with KEEP=2 against a real database.
#[test]
fn the_backup_service_keeps_the_newest_copies() {
    let unit = deploy("madoguchi-backup.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart=/bin/sh -euc '"))
        .and_then(|l| l.strip_suffix('\''))
        .expect("ExecStart=/bin/sh -euc '…'")
        .replace("$$", "$")
        .replace("%%", "%");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backups = data.join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    let db_url = format!("sqlite://{}/madoguchi.db", data.display());
    crate::common::cli_ok(&db_url, &["migrate"]);
    let config = dir.path().join("madoguchi.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{db_url}\"\n[profile]\npath = \"{}\"\n[sip]\nconfig_dir = \"{}\"\n",
            crate::common::profile_dir().display(),
            manifest_dir().join("sip-config").display()
        ),
    )
    .unwrap();
    // A `date` that counts, so four runs within a second get four names.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let counter = dir.path().join("n");
    std::fs::write(
        bin.join("date"),
        format!(
            "#!/bin/sh\nn=$(cat {c} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {c}; echo 20261124T18300${{n}}Z\n",
            c = counter.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("date"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = exec
        .replace("/usr/local/bin/madoguchi", env!("CARGO_BIN_EXE_madoguchi"))
        .replace("/etc/madoguchi/madoguchi.toml", config.to_str().unwrap())
        .replace("/var/lib/madoguchi/backups", backups.to_str().unwrap());
    for _ in 0..4 {
        let mut sh = Command::new("/bin/sh");
        sh.args(["-euc", &script])
            .env("KEEP", "2")
            .env("RUST_LOG", "warn")
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .env_remove("DATABASE_URL")
            .current_dir(&data);
        let out = run_bounded(sh, 60);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut names: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "madoguchi-20261124T183003Z.backup",
            "madoguchi-20261124T183004Z.backup"
        ]
    );
}
