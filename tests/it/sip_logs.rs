//! A call at `RUST_LOG=info` never prints the caller's number (design.md, pitfall 10).

use crate::common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::sipp::{self, Sipp};
use common::{manifest_dir, profile_dir};

#[test]
fn info_logs_of_a_call_carry_no_caller_number() {
    if !sipp::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sip_port = sipp::port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_madoguchi"))
        .current_dir(dir.path())
        .args(["serve", "--clock-start", "2026-11-25T10:00:00+09:00"])
        .env("RUST_LOG", "info")
        .env("MADOGUCHI_HTTP_ADDR", "127.0.0.1:0")
        .env("MADOGUCHI_SIP_ADDR", format!("127.0.0.1:{sip_port}"))
        .env("MADOGUCHI_PROFILE", profile_dir())
        .env("MADOGUCHI_SIP_CONFIG", manifest_dir().join("sip-config"))
        .env("MADOGUCHI_BOOTSTRAP_PASSWORD", "admin-password-logs")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let target = format!("127.0.0.1:{sip_port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::UdpSocket::bind(&target).is_ok() {
        assert!(Instant::now() < deadline, "server did not bind SIP");
        std::thread::sleep(Duration::from_millis(50));
    }
    let d = dir.path();
    let uas_port = sipp::port();
    let mut phone = Sipp::start(
        d,
        &target,
        &sipp::scenario(d, "phone-answer", &[]),
        "127.0.0.1",
        uas_port,
        &["-m", "1"],
    );
    let cp = uas_port.to_string();
    let mut reg = Sipp::start(
        d,
        &target,
        &sipp::scenario(d, "phone-register", &[]),
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
            &cp,
            "-key",
            "expires",
            "600",
        ],
    );
    assert_eq!(reg.wait(Duration::from_secs(10)), 0);
    let mut trunk = Sipp::start(
        d,
        &target,
        &sipp::scenario(d, "trunk-call", &[]),
        "127.0.0.1",
        sipp::port(),
        &[
            "-m",
            "1",
            "-s",
            "0120000000",
            "-key",
            "caller",
            "0134220001",
            "-d",
            "300",
        ],
    );
    assert_eq!(trunk.wait(Duration::from_secs(20)), 0, "{}", trunk.errors());
    assert_eq!(phone.wait(Duration::from_secs(10)), 0);
    std::thread::sleep(Duration::from_millis(300));
    let _ = server.kill();
    let mut logs = String::new();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let _ = server.wait();
    assert!(
        logs.contains("call completed"),
        "the call was logged at info: {logs}"
    );
    for needle in ["0134220001", "134220001", "0134-22-0001", "+81134220001"] {
        assert!(
            !logs.contains(needle),
            "caller number '{needle}' in the info log:\n{logs}"
        );
    }
}
