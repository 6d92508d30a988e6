//! Backup and restore (issue 16 item 6), on both backends, with the real binary: a backup
//! taken while the server runs holds the accounts and the calendar; restored into a fresh
//! database, a server started on it lets the account log in; a backup never overwrites a
//! file; a restore is refused while a server uses the database; both leave 取扱記録 rows
//! (R-PII-4).

use std::sync::Arc;

use madoguchi::app;
use madoguchi::clock::ManualClock;
use serde_json::json;
use sqlx::Row;

use crate::common::{a_working_morning, backends, cli, cli_ok, test_config, TestApp, TestDb};

async fn audit_rows(db: &madoguchi::store::Db, action: &str) -> Vec<(String, String)> {
    sqlx::query("SELECT actor_username, detail FROM audit_log WHERE action = $1 ORDER BY id")
        .bind(action)
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get::<Option<String>, _>("actor_username")
                    .unwrap()
                    .unwrap_or_default(),
                r.try_get::<Option<String>, _>("detail")
                    .unwrap()
                    .unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_backup_taken_while_serving_restores_into_a_fresh_database() {
    for kind in backends() {
        let app = TestApp::spawn(kind).await;
        // Data: an operator account (through the API) and the season's draft calendar.
        let admin = app.admin().await;
        let res = admin
            .post(
                "/api/users",
                &json!({ "username": "yamada", "role": "operator", "password": "password-of-yamada", "must_change_password": false }),
            )
            .await;
        assert_eq!(res.status(), 201);
        cli_ok(&app.db.url, &["calendar", "propose", "--write"]);
        let calendar = cli_ok(&app.db.url, &["calendar", "export", "--format", "json"]);
        assert!(calendar.contains("\"date\""), "{kind:?}: {calendar}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("madoguchi.backup");
        let file_arg = file.to_str().unwrap();
        // Online: the server keeps running (and holding its connections) meanwhile.
        let out = cli_ok(&app.db.url, &["backup", "--out", file_arg]);
        assert!(out.contains("backup written"), "{kind:?}: {out}");
        let meta = std::fs::metadata(&file).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "{kind:?}: a backup holds personal data"
        );
        // No temporary file left beside it.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["madoguchi.backup"], "{kind:?}");

        // A second backup to the same name is refused and changes nothing.
        let before = std::fs::read(&file).unwrap();
        let again = cli(&app.db.url, &["backup", "--out", file_arg]);
        assert!(!again.status.success(), "{kind:?}");
        let err = String::from_utf8_lossy(&again.stderr);
        assert!(err.contains("already exists"), "{kind:?}: {err}");
        assert_eq!(std::fs::read(&file).unwrap(), before, "{kind:?}");

        // The 取扱記録: one backup row by the command line, naming the file.
        let live = app.db.open().await;
        let rows = audit_rows(&live, "backup").await;
        assert_eq!(rows.len(), 1, "{kind:?}: {rows:?}");
        assert_eq!(rows[0].0, "(cli)");
        assert!(rows[0].1.contains("madoguchi.backup"), "{kind:?}: {rows:?}");

        // Restoring over the database the server uses is refused; the data stays.
        let refused = cli(&app.db.url, &["restore", "--from", file_arg, "--yes"]);
        assert!(!refused.status.success(), "{kind:?}");
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(err.contains("in use"), "{kind:?}: {err}");
        app.login("yamada", "password-of-yamada").await;
        live.close().await;

        // Restore into a fresh database (a new SQLite file / a new PostgreSQL database).
        let fresh = TestDb::new(kind).await;
        let out = cli_ok(&fresh.url, &["restore", "--from", file_arg, "--yes"]);
        assert!(out.contains("restored"), "{kind:?}: {out}");
        assert_eq!(
            cli_ok(&fresh.url, &["calendar", "export", "--format", "json"]),
            calendar,
            "{kind:?}: the calendar came back"
        );
        let restored = fresh.open().await;
        assert_eq!(audit_rows(&restored, "restore").await.len(), 1, "{kind:?}");
        // The account created before the backup came back with its password hash.
        let names: Vec<String> = sqlx::query_scalar("SELECT username FROM users ORDER BY id")
            .fetch_all(restored.pool())
            .await
            .unwrap();
        assert_eq!(names, ["admin", "yamada"], "{kind:?}");
        restored.close().await;

        // A server started on the restored database lets the operator log in.
        let server = app::start(
            test_config(&fresh.url),
            Arc::new(ManualClock::new(a_working_morning())),
            None,
        )
        .await
        .expect("start on the restored database");
        let res = reqwest::Client::new()
            .post(format!("http://{}/api/login", server.http_addr))
            .json(&json!({ "username": "yamada", "password": "password-of-yamada" }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{kind:?}: login on the restored copy");
        server.stop().await;
        fresh.cleanup().await;
        app.stop().await;
    }
}

#[tokio::test]
async fn a_file_that_is_no_backup_is_refused_and_changes_nothing() {
    for kind in backends() {
        let db = TestDb::new(kind).await;
        cli_ok(&db.url, &["user", "add", "sato", "--role", "operator"]);
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk");
        std::fs::write(&junk, "not a backup").unwrap();
        let out = cli(
            &db.url,
            &["restore", "--from", junk.to_str().unwrap(), "--yes"],
        );
        assert!(!out.status.success(), "{kind:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not a"), "{kind:?}: {err}");
        assert!(
            cli_ok(&db.url, &["user", "list"]).contains("sato"),
            "{kind:?}"
        );
        db.cleanup().await;
    }
    // A backup of a SQLite database that does not exist creates nothing.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/none.db", dir.path().display());
    let out = cli(
        &url,
        &["backup", "--out", dir.path().join("b").to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no SQLite database"));
    assert!(!dir.path().join("none.db").exists() && !dir.path().join("b").exists());
}
