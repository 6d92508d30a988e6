//! The database: one pool over SQLite (embedded default) or PostgreSQL, and its migrations.
//!
//! Queries are written once against sqlx's `Any` driver with `$n` placeholders, which both
//! backends accept. Times are stored as fixed-width RFC 3339 UTC text (see
//! [`crate::clock::to_db_time`]) so the same text compares and sorts the same on both.
//! Where the dialects differ (DDL, triggers), both forms live side by side in `migrations/`.

pub mod backup;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// How long an unused SQLite connection stays open (issue 17). Each keeps its own page cache
/// (up to 2 MB) and prepared statements, on its own thread: after a burst has opened the
/// whole pool, the spare ones close and give that back. Under steady load the pool hands its
/// connections round, so none of them sits idle this long.
const SQLITE_IDLE_CLOSE: Duration = Duration::from_secs(20);

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no supported backend.
    #[error("unsupported database URL (expected sqlite://… or postgres://…)")]
    UnsupportedUrl,
    /// The SQLite file's directory could not be created.
    #[error("cannot create database directory {dir}: {reason}")]
    CreateDir { dir: String, reason: String },
    /// Connecting failed.
    #[error("cannot connect to the database: {0}")]
    Connect(sqlx::Error),
    /// Applying migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Any query failed.
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
}

/// Which database engine is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite in WAL mode.
    Sqlite,
    /// PostgreSQL, possibly shared by several instances.
    Postgres,
}

/// A cloneable handle to the database pool.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

impl Db {
    /// Opens the pool; creates the SQLite file and its directory when missing.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(url)?,
            Backend::Postgres => url.to_string(),
        };
        let options = AnyConnectOptions::from_str(&url).map_err(StoreError::Connect)?;
        let mut pool = AnyPoolOptions::new();
        // An in-memory database lives only as long as its connection: never closed idle.
        if backend == Backend::Sqlite && !url.contains(":memory:") && !url.contains("mode=memory") {
            pool = pool.idle_timeout(SQLITE_IDLE_CLOSE);
        }
        let pool = pool
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            // An embedded SQLite connection cannot hang up: no ping (a trip to its thread)
            // before each use (issue 17). A PostgreSQL server can go away, so its
            // connections are tested before they are handed out.
            .test_before_acquire(backend == Backend::Postgres)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers (screen pops, stats) run beside the call-log writer;
                        // the busy timeout queues writers instead of failing them.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        // Deleted or overwritten content is zeroed in the page (and in free
                        // pages) instead of left behind: the purge of personal data relies
                        // on it (R-PII-5). Set on every connection: it is per connection.
                        conn.execute("PRAGMA secure_delete = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(StoreError::Connect)?;
        Ok(Db { pool, backend })
    }

    /// Opens the pool and brings the schema up to date.
    pub async fn connect_and_migrate(url: &str, max_connections: u32) -> Result<Db, StoreError> {
        let db = Db::connect(url, max_connections).await?;
        db.migrate().await?;
        Ok(db)
    }

    /// Applies the pending migrations of this backend.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// The pool, for the domains' queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Which engine this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Makes deleted rows unrecoverable from the database's files after a purge of personal
    /// data (R-PII-5). SQLite (every connection runs with `secure_delete`): checkpoints the WAL
    /// into the database and truncates it, rebuilds the file with `VACUUM` (no free pages
    /// left; its temporary copy in memory), and truncates the WAL again. PostgreSQL: `VACUUM FULL` rewrites each of `tables`
    /// (with its TOAST table and indexes) into new files and removes the old ones, which held
    /// the dead tuples. `tables` are plain identifiers chosen by the caller, never input.
    ///
    /// `after` is what [`Db::transaction_mark`] returned inside the transaction that deleted
    /// the rows: on PostgreSQL `VACUUM FULL` must keep row versions a still-running older
    /// transaction may see, so the scrub first waits (up to 15 s) until no other session
    /// of this database holds a snapshot or transaction from before that one ended.
    pub async fn scrub(
        &self,
        tables: &[&str],
        after: Option<&str>,
    ) -> Result<ScrubReport, StoreError> {
        let mut conn = self.pool.acquire().await?;
        match self.backend {
            Backend::Sqlite => {
                let first = checkpoint_truncate(&mut conn).await?;
                // VACUUM copies the database through a temporary one: keep that in memory so
                // no temporary file with the old rows is written (and left in free blocks).
                conn.execute("PRAGMA temp_store = MEMORY").await?;
                let vacuumed = conn.execute("VACUUM").await;
                conn.execute("PRAGMA temp_store = DEFAULT").await?;
                vacuumed?;
                let last = checkpoint_truncate(&mut conn).await?;
                Ok(ScrubReport {
                    complete: first && last,
                    tables_rewritten: 0,
                })
            }
            Backend::Postgres => {
                let mut clear = true;
                if let Some(xid) = after {
                    clear = false;
                    // At most 15 s: the HTTP purge must answer inside the 30 s request limit.
                    for _ in 0..150 {
                        // Sessions of this database whose snapshot or transaction is not newer
                        // than the purge, plus (as 1) any transaction anywhere on the server
                        // not newer than it: a snapshot taken from now on would inherit it.
                        let older: i64 = sqlx::query_scalar(
                            "SELECT (SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                               AND pid <> pg_backend_pid() \
                               AND ((backend_xmin IS NOT NULL AND age(backend_xmin) >= age(($1::bigint % 4294967296)::text::xid)) \
                                 OR (backend_xid IS NOT NULL AND age(backend_xid) >= age(($1::bigint % 4294967296)::text::xid)))) \
                             + (CASE WHEN txid_snapshot_xmin(txid_current_snapshot()) <= $1::bigint THEN 1 ELSE 0 END)",
                        )
                        .bind(xid)
                        .fetch_one(&mut *conn)
                        .await?;
                        if older == 0 {
                            clear = true;
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                for t in tables {
                    assert!(
                        t.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                        "table name {t:?}"
                    );
                    conn.execute(format!("VACUUM (FULL, ANALYZE) {t}").as_str())
                        .await?;
                }
                Ok(ScrubReport {
                    complete: clear,
                    tables_rewritten: tables.len(),
                })
            }
        }
    }

    /// An identifier of the running transaction on `conn`, for [`Db::scrub`]'s `after`
    /// (PostgreSQL: its transaction id; SQLite: none is needed).
    pub async fn transaction_mark(
        &self,
        conn: &mut sqlx::AnyConnection,
    ) -> Result<Option<String>, StoreError> {
        match self.backend {
            Backend::Sqlite => Ok(None),
            Backend::Postgres => {
                // The epoch-extended transaction id.
                let xid: String = sqlx::query_scalar("SELECT txid_current()::text")
                    .fetch_one(conn)
                    .await?;
                Ok(Some(xid))
            }
        }
    }

    /// Closes every connection (used before a test drops its database).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// What [`Db::scrub`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrubReport {
    /// SQLite: the WAL was checkpointed and truncated to zero bytes. PostgreSQL: no older
    /// transaction could still see the deleted row versions when the tables were rewritten.
    /// False when readers kept it busy through every try: run it again.
    pub complete: bool,
    /// PostgreSQL: tables rewritten by `VACUUM FULL`.
    pub tables_rewritten: usize,
}

/// `PRAGMA wal_checkpoint(TRUNCATE)`, retried while readers keep it from finishing.
async fn checkpoint_truncate(conn: &mut sqlx::AnyConnection) -> Result<bool, StoreError> {
    use sqlx::Row;
    for _ in 0..50 {
        let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut *conn)
            .await?;
        let busy: i64 = row.try_get(0)?;
        if busy == 0 {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(false)
}

/// Makes sure the SQLite file can be created: its directory exists and `mode=rwc` is set.
fn prepare_sqlite_url(url: &str) -> Result<String, StoreError> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if path != ":memory:" && !path.is_empty() {
        if let Some(dir) = Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::CreateDir {
                dir: dir.display().to_string(),
                reason: e.to_string(),
            })?;
        }
    }
    Ok(match query {
        Some(q) if q.contains("mode=") => url.to_string(),
        Some(_) => format!("{url}&mode=rwc"),
        None => format!("{url}?mode=rwc"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_url_gets_create_mode() {
        let d = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/sub/x.db", d.path().display());
        let prepared = prepare_sqlite_url(&url).unwrap();
        assert!(prepared.ends_with("x.db?mode=rwc"));
        assert!(d.path().join("sub").is_dir());
        assert_eq!(
            prepare_sqlite_url("sqlite://a.db?mode=ro").unwrap(),
            "sqlite://a.db?mode=ro"
        );
    }
}
