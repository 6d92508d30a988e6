//! Running sipp (Debian `sip-tester`) as the carrier's trunk and as operator phones.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// Whether sipp can run. Under `CI=true` a missing sipp is a failure, never a skip.
pub fn available() -> bool {
    let ok = Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("sipp (Debian package sip-tester) is missing under CI=true");
        }
        eprintln!("note: sipp not installed; the sipp part of this test is skipped (scripts/test installs it)");
    }
    ok
}

/// A free-ish UDP/TCP port for a sipp instance, distinct per test process run.
pub fn port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20000 + (std::process::id() % 200) as u16 * 100;
    loop {
        let p = base + NEXT.fetch_add(1, Ordering::Relaxed) % 100;
        let udp = std::net::UdpSocket::bind(("127.0.0.1", p));
        let tcp = std::net::TcpListener::bind(("127.0.0.1", p));
        if udp.is_ok() && tcp.is_ok() {
            return p;
        }
    }
}

/// The shipped scenario `name` (scripts/sipp/NAME.xml), optionally with text replaced.
pub fn scenario(dir: &Path, name: &str, replace: &[(&str, &str)]) -> PathBuf {
    let src = super::manifest_dir()
        .join("scripts/sipp")
        .join(format!("{name}.xml"));
    let mut text = std::fs::read_to_string(&src).expect("scenario");
    for (a, b) in replace {
        assert!(text.contains(a), "{name}.xml has no '{a}'");
        text = text.replace(a, b);
    }
    let out = dir.join(format!("{name}-{}.xml", port()));
    std::fs::write(&out, text).unwrap();
    out
}

/// A scenario written by the test itself.
pub fn custom(dir: &Path, name: &str, xml: &str) -> PathBuf {
    let out = dir.join(format!("{name}-{}.xml", port()));
    std::fs::write(&out, xml).unwrap();
    out
}

/// A running sipp; killed when dropped.
pub struct Sipp {
    child: Option<Child>,
    name: String,
    dir: PathBuf,
}

impl Sipp {
    /// Starts sipp against `target` with `scenario` on local `port` and extra args.
    pub fn start(
        dir: &Path,
        target: &str,
        scenario: &Path,
        local_ip: &str,
        port: u16,
        args: &[&str],
    ) -> Sipp {
        Self::start_cmd(
            Command::new("sipp"),
            dir,
            target,
            scenario,
            local_ip,
            port,
            args,
        )
    }

    /// [`Sipp::start`] inside the network namespace `netns` (`ip netns exec`, which execs
    /// sipp, so killing the child kills sipp).
    pub fn start_in_netns(
        netns: &str,
        dir: &Path,
        target: &str,
        scenario: &Path,
        local_ip: &str,
        port: u16,
        args: &[&str],
    ) -> Sipp {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns, "sipp"]);
        Self::start_cmd(cmd, dir, target, scenario, local_ip, port, args)
    }

    fn start_cmd(
        mut cmd: Command,
        dir: &Path,
        target: &str,
        scenario: &Path,
        local_ip: &str,
        port: u16,
        args: &[&str],
    ) -> Sipp {
        cmd.current_dir(dir)
            .arg(target)
            .arg("-sf")
            .arg(scenario)
            .args([
                "-i",
                local_ip,
                "-p",
                &port.to_string(),
                "-nostdin",
                "-trace_err",
                "-trace_msg",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = cmd.spawn().expect("spawn sipp");
        Sipp {
            child: Some(child),
            name: scenario.file_stem().unwrap().to_string_lossy().to_string(),
            dir: dir.to_path_buf(),
        }
    }

    /// A placeholder with no process (to move a `Sipp` in and out of a blocking task).
    pub fn dummy() -> Sipp {
        Sipp {
            child: None,
            name: String::new(),
            dir: PathBuf::new(),
        }
    }

    /// Waits up to `timeout` for sipp to end; returns its exit code (0 = every call passed).
    pub fn wait(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        let Some(mut child) = self.child.take() else {
            return -1;
        };
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let code = status.code().unwrap_or(-1);
                if code != 0 {
                    eprintln!(
                        "sipp {} exited {code}; errors: {}",
                        self.name,
                        self.errors()
                    );
                }
                return code;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!("sipp {} timed out; errors: {}", self.name, self.errors());
                return -1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The text sipp wrote to its error log(s).
    pub fn errors(&self) -> String {
        self.logs("_errors.log")
    }

    /// Every message sipp sent and received.
    pub fn messages(&self) -> String {
        self.logs("_messages.log")
    }

    fn logs(&self, suffix: &str) -> String {
        let mut out = String::new();
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                if n.starts_with(&self.name) && n.ends_with(suffix) {
                    out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        out
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
