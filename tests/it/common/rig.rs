//! A running server with sipp peers: the carrier's trunk and operator phones.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use madoguchi::config::Config;
use madoguchi::sip::settings::PhoneSettings;
use serde_json::Value;

use super::sipp::{self, Sipp};
use super::{backends, Kind, TestApp};

pub const LINE: &str = "0120000000";
pub const CALLER: &str = "0134220001";

pub fn jst(y: i32, m: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    chrono_tz::Asia::Tokyo
        .with_ymd_and_hms(y, m, d, h, mi, 0)
        .unwrap()
        .with_timezone(&Utc)
}

pub fn phones(c: &mut Config) {
    for (u, op) in [("ph1", "operator1"), ("ph2", "operator2")] {
        c.sip.phones.push(PhoneSettings {
            username: u.into(),
            password: format!("password-{u}"),
            algorithms: vec!["MD5".into()],
            operator: Some(op.into()),
        });
    }
}

pub struct Rig {
    pub app: TestApp,
    pub dir: tempfile::TempDir,
    pub sip: String,
}

impl Rig {
    /// The rig on the first backend (SQLite); None when sipp is missing outside CI.
    pub async fn new(start: DateTime<Utc>, tweak: impl FnOnce(&mut Config)) -> Option<Rig> {
        Self::on(backends()[0], start, tweak).await
    }

    /// The rig on the database backend `kind`; None when sipp is missing outside CI.
    pub async fn on(
        kind: Kind,
        start: DateTime<Utc>,
        tweak: impl FnOnce(&mut Config),
    ) -> Option<Rig> {
        if !sipp::available() {
            return None;
        }
        let app = TestApp::spawn_at(kind, start, |c| {
            phones(c);
            tweak(c);
        })
        .await;
        Some(Self::around(app))
    }

    /// The rig on an existing database (a restart, or a second instance on PostgreSQL);
    /// None when sipp is missing outside CI.
    pub async fn on_db(
        db: super::TestDb,
        start: DateTime<Utc>,
        tweak: impl FnOnce(&mut Config),
    ) -> Option<Rig> {
        if !sipp::available() {
            return None;
        }
        let app = TestApp::spawn_at_on(db, start, |c| {
            phones(c);
            tweak(c);
        })
        .await;
        Some(Self::around(app))
    }

    fn around(app: TestApp) -> Rig {
        let sip = app.server.sip_addr.to_string();
        Rig {
            app,
            dir: tempfile::tempdir().unwrap(),
            sip,
        }
    }

    pub fn start(&self, scenario: &Path, ip: &str, port: u16, args: &[&str]) -> Sipp {
        Sipp::start(self.dir.path(), &self.sip, scenario, ip, port, args)
    }

    /// A sipp phone: its UAS listens on a port; a second sipp registers that port (MD5).
    pub async fn sipp_phone(&self, user: &str, scenario: &str, replace: &[(&str, &str)]) -> Sipp {
        self.sipp_phone_on(user, scenario, replace).await.0
    }

    /// [`Rig::sipp_phone`], also returning the UAS port (for a later [`Rig::uas`] there).
    pub async fn sipp_phone_on(
        &self,
        user: &str,
        scenario: &str,
        replace: &[(&str, &str)],
    ) -> (Sipp, u16) {
        let uas_port = sipp::port();
        let uas = self.uas(scenario, replace, uas_port);
        let reg = sipp::scenario(self.dir.path(), "phone-register", &[]);
        let pw = format!("password-{user}");
        let cp = uas_port.to_string();
        let mut r = self.start(
            &reg,
            "127.0.0.1",
            sipp::port(),
            &[
                "-m",
                "1",
                "-s",
                user,
                "-au",
                user,
                "-ap",
                &pw,
                "-key",
                "contact_port",
                &cp,
                "-key",
                "expires",
                "600",
            ],
        );
        let code = wait(&mut r, 10).await;
        assert_eq!(
            code,
            0,
            "{user} registers with MD5 digest (sipp): {}",
            r.errors()
        );
        (uas, uas_port)
    }

    /// A phone's UAS scenario (one call) on `port`.
    pub fn uas(&self, scenario: &str, replace: &[(&str, &str)], port: u16) -> Sipp {
        self.start(
            &sipp::scenario(self.dir.path(), scenario, replace),
            "127.0.0.1",
            port,
            &["-m", "1"],
        )
    }

    pub fn trunk(&self, scenario: &Path, ip: &str, extra: &[&str]) -> Sipp {
        let mut args = vec!["-m", "1", "-s", LINE, "-key", "caller", CALLER];
        args.extend_from_slice(extra);
        self.start(scenario, ip, sipp::port(), &args)
    }

    /// Waits until the call log holds `n` ended calls, then returns them (newest first).
    pub async fn ended_calls(&self, n: usize) -> Vec<Value> {
        let manager = self
            .app
            .user_with_role(&format!("mgr{}", sipp::port()), "manager")
            .await;
        for _ in 0..100 {
            let body: Value = manager
                .get("/api/calls")
                .await
                .json()
                .await
                .unwrap_or_default();
            if let Some(calls) = body["calls"].as_array() {
                let ended: Vec<Value> = calls
                    .iter()
                    .filter(|c| !c["end_cause"].is_null())
                    .cloned()
                    .collect();
                if ended.len() >= n {
                    return ended;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("call log did not reach {n} ended calls");
    }

    /// Creates `operator1` (operator) and `manager1` (manager), password `password-NAME`.
    pub async fn staff(&self) {
        let admin = self.app.admin().await;
        for (u, role) in [("operator1", "operator"), ("manager1", "manager")] {
            let body = serde_json::json!({
                "username": u,
                "display_name": format!("{u} さん"),
                "role": role,
                "password": format!("password-{u}"),
                "must_change_password": false,
            });
            assert_eq!(admin.post("/api/users", &body).await.status(), 201);
        }
    }

    pub async fn stop(self) {
        self.app.stop().await;
    }
}

pub async fn wait(s: &mut Sipp, secs: u64) -> i32 {
    let mut taken = std::mem::replace(s, Sipp::dummy());
    let (code, back) = tokio::task::spawn_blocking(move || {
        let c = taken.wait(Duration::from_secs(secs));
        (c, taken)
    })
    .await
    .unwrap();
    *s = back;
    code
}

/// A trunk scenario that places a call and expects `status` as the final answer.
pub fn expect_final(dir: &Path, status: u16, check_retry_after: bool) -> std::path::PathBuf {
    let action = if check_retry_after {
        r#"<action><ereg regexp="[0-9]+" search_in="hdr" header="Retry-After:" check_it="true" assign_to="ra"/><log message="retry-after [$ra]"/></action>"#
    } else {
        ""
    };
    let base =
        std::fs::read_to_string(super::manifest_dir().join("scripts/sipp/trunk-call.xml")).unwrap();
    let invite = &base[base.find("  <send retrans=\"500\">").unwrap()
        ..base.find("  <recv response=\"100\"").unwrap()];
    let xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8" ?>
<scenario name="trunk call expecting {status}">
{invite}  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="{status}">{action}</recv>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: "[caller]" <sip:[caller]@[local_ip]:[local_port];user=phone>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
</scenario>
"#
    );
    sipp::custom(dir, &format!("expect-{status}"), &xml)
}
