//! The rig's own promise: a test's PostgreSQL database is gone after the test, even when the
//! test panics with connections still open (issue 12, item 7).

use sqlx::{Connection, PgConnection};

use crate::common::{backends, Kind, TestDb};

/// Whether the PostgreSQL server holds a database called `name`.
async fn pg_has(name: &str) -> bool {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let mut conn = PgConnection::connect(&url).await.expect("connect");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    n == 1
}

#[tokio::test]
async fn a_postgres_test_database_is_dropped_even_when_its_test_panics() {
    if !backends().contains(&Kind::Postgres) {
        return;
    }
    // A "test" on its own thread and runtime, as #[tokio::test] runs one: it creates its
    // database, opens it (migrations, a pool with live connections) and panics mid-way.
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let test_db = TestDb::new(Kind::Postgres).await;
            let name = test_db.pg_name().unwrap().to_string();
            let db = test_db.open().await;
            sqlx::query("SELECT 1").execute(db.pool()).await.unwrap();
            tx.send((name.clone(), pg_has(&name).await)).unwrap();
            panic!("deliberate panic: a failing test with its database open");
        })
    })
    .join();
    assert!(outcome.is_err(), "the test thread panicked");
    let (name, existed) = rx.recv().unwrap();
    assert!(existed, "{name} existed while the test ran");
    assert!(!pg_has(&name).await, "{name} was dropped during the unwind");
}
