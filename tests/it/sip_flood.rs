//! The flood test (issue 13, acceptance): while a host outside the trunk sends INVITEs and
//! REGISTERs as fast as it can (UDP from 127.0.0.2, TCP from 127.0.0.3, never reading), the
//! carrier's calls still go through (≥ 99 % of 100 sipp calls at 10/s) and the server's memory
//! stays bounded. The server is the real binary (`madoguchi serve`), so its RSS is its own.

use crate::common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::manifest_dir;
use common::rig::{wait, CALLER, LINE};
use common::sipp::{self, Sipp};
use serde_json::{json, Value};

const CALLS: usize = 100;
const PASSWORD: &str = "flood-test-password";
/// The server's resident memory must stay under this during the flood. Idle (the debug build
/// the tests run, after the first logins) it is about 90 MiB; the limits bound what a flood can
/// add (the transaction table, the datagram budget, the per-flow queues) far below the rest.
const RSS_LIMIT_KB: u64 = 150 * 1024;

/// `madoguchi serve`; killed when dropped.
struct Served {
    child: Child,
    http: String,
    sip: SocketAddr,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn start(dir: &Path, config: &Path) -> Served {
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
            .arg("--config")
            .arg(config)
            .args(["serve", "--clock-start", "2026-11-25T10:00:00+09:00"])
            .env("MADOGUCHI_BOOTSTRAP_PASSWORD", PASSWORD)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("madoguchi.log")).unwrap())
            .spawn()
            .expect("spawn madoguchi");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut http, mut sip) = (String::new(), String::new());
        while http.is_empty() || sip.is_empty() {
            let line = lines.next().expect("serve printed its addresses").unwrap();
            if let Some(i) = line.find("http://") {
                let url = line[i..].split_whitespace().next().unwrap();
                http = url.trim_end_matches('/').to_string();
            }
            if let Some(addr) = line.strip_prefix("SIP adapter (UDP and TCP): ") {
                sip = addr.trim().to_string();
            }
        }
        // Keep reading stdout so the server never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Served {
            child,
            http,
            sip: sip.parse().unwrap(),
        }
    }

    /// Resident memory of the server process, in KiB.
    fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// CPU seconds the server has used (user + system).
    fn cpu_secs(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split(' ').collect();
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        ticks as f64 / 100.0
    }

    async fn login(&self, username: &str) -> reqwest::Client {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        let res = client
            .post(format!("{}/api/login", self.http))
            .json(&json!({ "username": username, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "login as {username}");
        client
    }

    /// A manager (who may read the call log and the SIP status), created by the admin.
    async fn manager(&self) -> reqwest::Client {
        let admin = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        let login: Value = admin
            .post(format!("{}/api/login", self.http))
            .json(&json!({ "username": "admin", "password": PASSWORD }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let created = admin
            .post(format!("{}/api/users", self.http))
            .header("X-CSRF-Token", login["csrf_token"].as_str().unwrap())
            .json(&json!({ "username": "manager1", "role": "manager", "password": PASSWORD, "must_change_password": false }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        self.login("manager1").await
    }
}

/// The shipped profile with a line that takes every call of the test at once.
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

fn flood_request(method: &str, server: SocketAddr, local: SocketAddr, t: &str, n: u64) -> Vec<u8> {
    let uri = if method == "INVITE" {
        format!("sip:{LINE}@{server}")
    } else {
        format!("sip:{server}")
    };
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/{t} {local};branch=z9hG4bKflood{n}\r\nFrom: <sip:op1@{server}>;tag=f{n}\r\nTo: <sip:op1@{server}>\r\nCall-ID: flood-{n}@{local}\r\nCSeq: 1 {method}\r\nContact: <sip:op1@{local}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Datagrams the kernel dropped for full receive buffers, machine-wide (`/proc/net/snmp`).
fn udp_buffer_drops() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let udp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
    if udp.len() < 2 {
        return 0;
    }
    let names: Vec<&str> = udp[0].split_whitespace().collect();
    let values: Vec<&str> = udp[1].split_whitespace().collect();
    names
        .iter()
        .position(|n| *n == "RcvbufErrors")
        .and_then(|i| values.get(i)?.parse().ok())
        .unwrap_or(0)
}

/// Sends INVITEs and REGISTERs from 127.0.0.2 over UDP as fast as it can until `stop`.
fn udp_flood(server: SocketAddr, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    let sock = UdpSocket::bind("127.0.0.2:0").unwrap();
    let local = sock.local_addr().unwrap();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let method = if n.is_multiple_of(2) {
            "INVITE"
        } else {
            "REGISTER"
        };
        if sock
            .send_to(&flood_request(method, server, local, "UDP", n), server)
            .is_ok()
        {
            sent.fetch_add(1, Ordering::Relaxed);
        }
        n += 1;
    }
}

/// Streams REGISTERs and INVITEs over TCP from 127.0.0.3 without ever reading, reconnecting
/// whenever the server closes the connection, until `stop`.
fn tcp_flood(server: SocketAddr, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    use tokio::io::AsyncWriteExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.bind("127.0.0.3:0".parse().unwrap()).unwrap();
            let Ok(mut stream) = sock.connect(server).await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let local = stream.local_addr().unwrap();
            while !stop.load(Ordering::Relaxed) {
                let method = if n.is_multiple_of(2) {
                    "INVITE"
                } else {
                    "REGISTER"
                };
                n += 1;
                let req = flood_request(method, server, local, "TCP", n);
                match tokio::time::timeout(Duration::from_millis(500), stream.write_all(&req)).await
                {
                    Ok(Ok(())) => sent.fetch_add(1, Ordering::Relaxed),
                    _ => break,
                };
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_calls_go_through_a_flood_from_elsewhere_with_bounded_memory() {
    if !sipp::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let config = work.join("madoguchi.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\naddr = \"127.0.0.1:0\"\n\n[sip]\naddr = \"127.0.0.1:0\"\nconfig_dir = \"{}\"\n\n[database]\nurl = \"sqlite://{}\"\n\n[profile]\npath = \"{}\"\n",
            manifest_dir().join("sip-config").display(),
            work.join("calls.db").display(),
            wide_profile(work).display(),
        ),
    )
    .unwrap();
    let served = Served::start(work, &config);
    let sip = served.sip.to_string();
    let manager = served.manager().await;
    let idle_rss = served.rss_kb();
    let (cpu0, drops0) = (served.cpu_secs(), udp_buffer_drops());

    // op2's phone (sip-config/phones.toml): rings 0.5 s, answers, waits for the caller's BYE.
    let phone_port = sipp::port();
    let n = CALLS.to_string();
    let uas = sipp::scenario(work, "phone-answer", &[]);
    let mut phone = Sipp::start(work, &sip, &uas, "127.0.0.1", phone_port, &["-m", &n]);
    let reg = sipp::scenario(work, "phone-register", &[]);
    let contact = phone_port.to_string();
    let mut register = Sipp::start(
        work,
        &sip,
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
    assert_eq!(wait(&mut register, 10).await, 0, "{}", register.errors());

    // The flood, for 12 s: over UDP from one host, over TCP from another.
    let stop = Arc::new(AtomicBool::new(false));
    let (udp_sent, tcp_sent) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let flooders = [
        std::thread::spawn({
            let (stop, sent, served_sip) = (stop.clone(), udp_sent.clone(), served.sip);
            move || udp_flood(served_sip, stop, sent)
        }),
        std::thread::spawn({
            let (stop, sent, sip) = (stop.clone(), tcp_sent.clone(), served.sip);
            move || tcp_flood(sip, stop, sent)
        }),
    ];
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Meanwhile the carrier places 100 calls at 10 a second, each held 1 s.
    let place = sipp::scenario(work, "trunk-call", &[]);
    let mut trunk = Sipp::start(
        work,
        &served.sip.to_string(),
        &place,
        "127.0.0.1",
        sipp::port(),
        &[
            "-m", &n, "-r", "10", "-d", "1000", "-l", "100", "-s", LINE, "-key", "caller", CALLER,
        ],
    );
    let started = Instant::now();
    let mut peak_rss = idle_rss;
    while started.elapsed() < Duration::from_secs(12) {
        peak_rss = peak_rss.max(served.rss_kb());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.join().unwrap();
    }
    let (cpu, kernel_drops) = (served.cpu_secs() - cpu0, udp_buffer_drops() - drops0);
    let code = wait(&mut trunk, 20).await;
    peak_rss = peak_rss.max(served.rss_kb());
    let _ = wait(&mut phone, 5).await;

    // How the calls ended, from the server's own log.
    let mut completed = 0;
    for _ in 0..50 {
        let body: Value = manager
            .get(format!("{}/api/calls?limit=500", served.http))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // A read of the call log is audited (a write); SQLite may be busy: try again.
        let Some(calls) = body["calls"].as_array() else {
            eprintln!("GET /api/calls: {body}");
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        completed = calls
            .iter()
            .filter(|c| c["end_cause"] == "completed")
            .count();
        if completed >= CALLS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status: Value = manager
        .get(format!("{}/api/sip/status", served.http))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rate = completed as f64 / CALLS as f64 * 100.0;
    println!(
        "flood: {} UDP and {} TCP requests from outside the trunk in 12 s; {completed}/{CALLS} trunk calls completed ({rate:.1} %), sipp exit {code}; server RSS idle {} MiB, peak {} MiB (limit {} MiB); server CPU {cpu:.1} s, UDP datagrams dropped by the kernel machine-wide (incl. the flooder's own unread 403s) {kernel_drops}; counters {}",
        udp_sent.load(Ordering::Relaxed),
        tcp_sent.load(Ordering::Relaxed),
        idle_rss / 1024,
        peak_rss / 1024,
        RSS_LIMIT_KB / 1024,
        status["counters"],
    );
    assert!(
        completed * 100 >= CALLS * 99,
        "{completed} of {CALLS} calls completed under the flood; sipp: {}",
        trunk.errors()
    );
    assert!(
        peak_rss < RSS_LIMIT_KB,
        "peak RSS {peak_rss} KiB over the {RSS_LIMIT_KB} KiB bound"
    );
    assert!(
        status["counters"]["rate_limited"].as_u64().unwrap_or(0) > 1000,
        "the flood was limited: {status}"
    );
}
