//! The `madoguchi` binary as an operator runs it: start-up, first login, bad configuration
//! and the `user` commands.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{manifest_dir, profile_dir};
use serde_json::{json, Value};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_madoguchi"));
    // A clean environment: only what each test sets.
    for k in [
        "MADOGUCHI_HTTP_ADDR",
        "MADOGUCHI_SIP_ADDR",
        "DATABASE_URL",
        "MADOGUCHI_PROFILE",
        "MADOGUCHI_BOOTSTRAP_PASSWORD",
        "MADOGUCHI_SIP_CONFIG",
    ] {
        c.env_remove(k);
    }
    c.env("RUST_LOG", "warn");
    c.env("MADOGUCHI_SIP_CONFIG", manifest_dir().join("sip-config"));
    c
}

struct Served {
    child: Child,
    _stdout: std::io::Lines<BufReader<std::process::ChildStdout>>,
    url: String,
    password: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `madoguchi serve` in `dir` the way the README says and reads the first lines.
fn serve_in(dir: &std::path::Path) -> Served {
    let mut child = bin()
        .current_dir(dir)
        .arg("serve")
        .env("MADOGUCHI_HTTP_ADDR", "127.0.0.1:0")
        .env("MADOGUCHI_SIP_ADDR", "127.0.0.1:0")
        .env("MADOGUCHI_PROFILE", profile_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn madoguchi");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut url, mut password) = (String::new(), String::new());
    while url.is_empty() || password.is_empty() {
        assert!(
            Instant::now() < deadline,
            "serve did not print its URL and password"
        );
        let Some(Ok(line)) = lines.next() else {
            panic!("serve exited early")
        };
        if let Some(i) = line.find("http://") {
            url = line[i..]
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches('/')
                .to_string();
        }
        if let Some(i) = line.find("password: ") {
            password = line[i + "password: ".len()..].trim().to_string();
        }
    }
    Served {
        child,
        _stdout: lines,
        url,
        password,
    }
}

#[tokio::test]
async fn fresh_start_prints_login_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve_in(dir.path());
    assert_eq!(served.password.len(), 20);
    assert!(
        dir.path().join("data/madoguchi.db").exists(),
        "embedded SQLite created under data/"
    );

    let health = reqwest::get(format!("{}/healthz", served.url))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let login = client
        .post(format!("{}/api/login", served.url))
        .json(&json!({ "username": "admin", "password": served.password }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let me: Value = client
        .get(format!("{}/api/me", served.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["role"], "admin");
    drop(served);

    // A second start finds the account and prints no new password.
    let mut again = bin()
        .current_dir(dir.path())
        .arg("serve")
        .env("MADOGUCHI_HTTP_ADDR", "127.0.0.1:0")
        .env("MADOGUCHI_SIP_ADDR", "127.0.0.1:0")
        .env("MADOGUCHI_PROFILE", profile_dir())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(again.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("http://"));
    let _ = again.kill();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let _ = again.wait();
    assert!(!rest.iter().any(|l| l.contains("password")), "{rest:?}");
}

fn run_with_config(config_text: Option<&str>, envs: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cmd.current_dir(dir.path())
        .env("MADOGUCHI_PROFILE", profile_dir());
    if let Some(text) = config_text {
        let p = dir.path().join("madoguchi.toml");
        std::fs::write(&p, text).unwrap();
        cmd.arg("--config").arg(&p);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.arg("serve").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn assert_one_clear_line(code: i32, stderr: &str, must_contain: &[&str]) {
    assert_ne!(code, 0, "{stderr}");
    let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one line: {stderr}");
    for m in must_contain {
        assert!(lines[0].contains(m), "'{m}' missing in: {}", lines[0]);
    }
}

#[test]
fn unknown_key_stops_start_up_with_one_line() {
    let (code, err) = run_with_config(Some("[http]\naddr = \"127.0.0.1:0\"\nlisten = 1\n"), &[]);
    assert_one_clear_line(code, &err, &["madoguchi.toml", "line 3", "listen"]);
}

#[test]
fn bad_address_stops_start_up_with_one_line() {
    let (code, err) = run_with_config(Some("[sip]\naddr = \"127.0.0.1:99999\"\n"), &[]);
    assert_one_clear_line(
        code,
        &err,
        &["madoguchi.toml", "sip.addr", "127.0.0.1:99999"],
    );
    let (code, err) = run_with_config(None, &[("MADOGUCHI_HTTP_ADDR", "eight-thousand")]);
    assert_one_clear_line(code, &err, &["MADOGUCHI_HTTP_ADDR", "eight-thousand"]);
}

#[test]
fn missing_profile_stops_start_up_with_one_line() {
    let (code, err) = run_with_config(None, &[("MADOGUCHI_PROFILE", "profiles/nowhere")]);
    assert_one_clear_line(code, &err, &["MADOGUCHI_PROFILE", "profiles/nowhere"]);
}

#[test]
fn broken_profile_names_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(profile_dir().join("profile.toml")).unwrap();
    std::fs::write(
        dir.path().join("profile.toml"),
        text.replace("2026-12-24", "2026-13-24"),
    )
    .unwrap();
    let (code, err) = run_with_config(None, &[("MADOGUCHI_PROFILE", dir.path().to_str().unwrap())]);
    assert_one_clear_line(code, &err, &["profile.toml", "line"]);
}

#[test]
fn missing_config_file_is_named() {
    let out = bin()
        .args(["--config", "/nonexistent/madoguchi.toml", "serve"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_one_clear_line(
        out.status.code().unwrap_or(-1),
        &err,
        &["/nonexistent/madoguchi.toml"],
    );
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["user", "--help"],
        vec!["user", "add", "--help"],
        vec!["user", "list", "--help"],
        vec!["user", "disable", "--help"],
        vec!["user", "passwd", "--help"],
        vec!["calendar", "--help"],
        vec!["calendar", "propose", "--help"],
        vec!["calendar", "import", "--help"],
        vec!["calendar", "export", "--help"],
        vec!["calendar", "show", "--help"],
        vec!["calendar", "fix", "--help"],
        vec!["bookings", "--help"],
        vec!["bookings", "export", "--help"],
    ] {
        let out = bin().args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}

#[test]
fn user_commands_manage_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/cli.db", dir.path().display());
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut cmd = bin();
        cmd.env("DATABASE_URL", &db)
            .env("MADOGUCHI_PROFILE", profile_dir())
            .current_dir(manifest_dir())
            .args(args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, out, _) = run(&["migrate"], None);
    assert!(ok, "{out}");
    let (ok, out, _) = run(
        &[
            "user",
            "add",
            "sato",
            "--role",
            "operator",
            "--display-name",
            "佐藤",
        ],
        None,
    );
    assert!(ok && out.contains("password: "), "{out}");
    let (ok, _, _) = run(
        &[
            "user",
            "add",
            "kato",
            "--role",
            "manager",
            "--password-stdin",
        ],
        Some("kato-password-1\n"),
    );
    assert!(ok);
    let (ok, _, err) = run(&["user", "add", "sato", "--role", "admin"], None);
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = run(&["user", "add", "ito", "--role", "king"], None);
    assert!(!ok && err.contains("unknown role"), "{err}");
    let (ok, _, err) = run(
        &["user", "add", "ito", "--role", "city", "--password-stdin"],
        Some("short\n"),
    );
    assert!(!ok && err.contains("10"), "{err}");
    let (ok, out, _) = run(&["user", "disable", "sato"], None);
    assert!(ok, "{out}");
    let (ok, out, _) = run(&["user", "passwd", "kato"], None);
    assert!(ok && out.contains("password: "), "{out}");
    let (ok, _, err) = run(&["user", "disable", "nobody"], None);
    assert!(!ok && err.contains("nobody"), "{err}");
    let (ok, out, _) = run(&["user", "list"], None);
    assert!(ok);
    let sato = out.lines().find(|l| l.contains("sato")).unwrap();
    assert!(
        sato.contains("operator") && sato.contains("disabled") && sato.contains("佐藤"),
        "{out}"
    );
    let kato = out.lines().find(|l| l.contains("kato")).unwrap();
    assert!(kato.contains("manager") && kato.contains("active"));
    assert!(
        !out.contains("ito"),
        "refused accounts were not created: {out}"
    );
}

#[test]
fn serve_refuses_the_shipped_phone_passwords_on_a_network_address() {
    // The shipped sip-config/phones.toml (set by bin()) and SIP on every interface.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("madoguchi.toml");
    std::fs::write(
        &config,
        "[http]\naddr = \"127.0.0.1:0\"\n\n[sip]\naddr = \"0.0.0.0:0\"\nadvertised_addr = \"192.0.2.10:5060\"\n",
    )
    .unwrap();
    let mut child = bin()
        .current_dir(dir.path())
        .env("MADOGUCHI_PROFILE", profile_dir())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/m.db", dir.path().display()),
        )
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve started with the shipped demo phone passwords on 0.0.0.0");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(code, 2, "{err}");
    assert_one_clear_line(
        code,
        &err,
        &["phones.toml", "phone.password", "op1", "demo"],
    );
}
