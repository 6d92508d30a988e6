//! Backup and restore of the whole database (issue 16 item 6).
//!
//! SQLite: `VACUUM INTO` on a pool connection writes a consistent snapshot while the service
//! runs (WAL lets it read beside the writers). PostgreSQL: `pg_dump -Fc`, restored with
//! `pg_restore --clean --if-exists`. The password of the URL reaches the PostgreSQL tools
//! through `PGPASSWORD`, never their command line (which `ps` shows to every local user).
//!
//! A backup holds personal data: it is created with mode 0600, written under a temporary
//! name beside the target and linked into place only when complete, and never replaces an
//! existing file.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sqlx::{Connection, Executor};

use super::{Backend, Db};

/// The longest a `pg_dump` or `pg_restore` may run before it is stopped.
const TOOL_TIMEOUT: Duration = Duration::from_secs(3600);

/// Backup and restore failures.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The target file exists; a backup never replaces one.
    #[error("{0} already exists: a backup never overwrites a file (choose a new name)")]
    Exists(PathBuf),
    /// Creating, writing or moving a file failed.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The SQLite database named by the URL does not exist.
    #[error("no SQLite database at {0}")]
    NoDatabase(String),
    /// The file to restore is not a backup of this backend.
    #[error("{path} is not a {what}")]
    NotABackup {
        /// The file.
        path: String,
        /// What it should be.
        what: &'static str,
    },
    /// Another process (a running `madoguchi serve`) uses the database.
    #[error("the database is in use ({0}): stop the service (systemctl stop madoguchi) before restoring")]
    InUse(String),
    /// `pg_dump` / `pg_restore` could not be started.
    #[error("cannot run {tool} (Debian package postgresql-client): {reason}")]
    ToolMissing {
        /// The tool.
        tool: &'static str,
        /// Why.
        reason: String,
    },
    /// `pg_dump` / `pg_restore` failed.
    #[error("{tool} failed ({status}): {stderr}")]
    ToolFailed {
        /// The tool.
        tool: &'static str,
        /// Its exit status.
        status: String,
        /// What it printed on standard error.
        stderr: String,
    },
    /// A query failed.
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> BackupError {
    BackupError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// The backup file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// `sqlite` (a database file) or `postgres` (a `pg_dump -Fc` archive).
    pub format: &'static str,
}

/// Writes a consistent copy of `db` (opened from `url`) to `out`, which must not exist.
pub async fn backup(db: &Db, url: &str, out: &Path) -> Result<BackupReport, BackupError> {
    if out.symlink_metadata().is_ok() {
        return Err(BackupError::Exists(out.to_path_buf()));
    }
    let partial = Partial::create(out)?;
    let format = match db.backend() {
        Backend::Sqlite => {
            let mut conn = db.pool().acquire().await?;
            // VACUUM INTO fills an existing file only when it is empty, which ours is; it
            // keeps the 0600 mode it was created with.
            sqlx::query("VACUUM INTO $1")
                .bind(partial.path.display().to_string())
                .execute(&mut *conn)
                .await?;
            "sqlite"
        }
        Backend::Postgres => {
            let file = OpenOptions::new()
                .write(true)
                .open(&partial.path)
                .map_err(|e| io_err(&partial.path, e))?;
            let (url, password) = split_password(url);
            let mut cmd = tokio::process::Command::new("pg_dump");
            cmd.args(["--format=custom", "--no-password", "--dbname", &url])
                .stdout(Stdio::from(file));
            run_tool("pg_dump", cmd, password).await?;
            "postgres"
        }
    };
    let bytes = partial.commit(out)?;
    Ok(BackupReport {
        path: out.to_path_buf(),
        bytes,
        format,
    })
}

/// Replaces the content of the database at `url` with the backup `from`. Refused while
/// another process (a running service) is connected to it.
pub async fn restore(url: &str, from: &Path) -> Result<(), BackupError> {
    std::fs::metadata(from).map_err(|e| io_err(from, e))?;
    if url.starts_with("sqlite:") {
        restore_sqlite(url, from).await
    } else {
        restore_postgres(url, from).await
    }
}

async fn restore_sqlite(url: &str, from: &Path) -> Result<(), BackupError> {
    let mut head = [0u8; 16];
    let ok = std::fs::File::open(from)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok();
    if !ok || &head != b"SQLite format 3\0" {
        return Err(BackupError::NotABackup {
            path: from.display().to_string(),
            what: "SQLite database file",
        });
    }
    let target = PathBuf::from(sqlite_path(url));
    if target.exists() {
        // Leaving WAL mode needs the only connection to the file: any other (the service's
        // pool holds its connections open) makes it fail at once. Afterwards no -wal file is
        // left that SQLite would replay over the restored copy.
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&target)
            .busy_timeout(Duration::ZERO);
        let mut conn = sqlx::SqliteConnection::connect_with(&opts).await?;
        let left_wal = conn.execute("PRAGMA journal_mode = DELETE").await;
        let _ = conn.close().await;
        if let Err(e) = left_wal {
            return Err(BackupError::InUse(e.to_string()));
        }
    }
    let partial = Partial::create(&target)?;
    std::fs::copy(from, &partial.path).map_err(|e| io_err(&partial.path, e))?;
    partial.replace(&target)?;
    for suffix in ["-wal", "-shm"] {
        let mut side = target.clone().into_os_string();
        side.push(suffix);
        let _ = std::fs::remove_file(side);
    }
    Ok(())
}

async fn restore_postgres(url: &str, from: &Path) -> Result<(), BackupError> {
    let mut head = [0u8; 5];
    let ok = std::fs::File::open(from)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok();
    if !ok || &head != b"PGDMP" {
        return Err(BackupError::NotABackup {
            path: from.display().to_string(),
            what: "pg_dump custom-format archive (pg_dump -Fc)",
        });
    }
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let others: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(&mut conn)
    .await?;
    let _ = conn.close().await;
    if others > 0 {
        return Err(BackupError::InUse(format!(
            "{others} other session(s) connected"
        )));
    }
    let (url, password) = split_password(url);
    let mut cmd = tokio::process::Command::new("pg_restore");
    cmd.args([
        "--clean",
        "--if-exists",
        "--no-owner",
        "--single-transaction",
        "--exit-on-error",
        "--no-password",
        "--dbname",
        &url,
    ])
    .arg(from)
    .stdout(Stdio::null());
    run_tool("pg_restore", cmd, password).await
}

/// Runs a PostgreSQL client tool with the password in its environment.
async fn run_tool(
    tool: &'static str,
    mut cmd: tokio::process::Command,
    password: Option<String>,
) -> Result<(), BackupError> {
    cmd.stdin(Stdio::null())
        .stderr(Stdio::piped())
        .env_remove("PGPASSWORD")
        .env("PGCONNECT_TIMEOUT", "10")
        .kill_on_drop(true);
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let child = cmd.spawn().map_err(|e| BackupError::ToolMissing {
        tool,
        reason: e.to_string(),
    })?;
    let out = tokio::time::timeout(TOOL_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| BackupError::ToolFailed {
            tool,
            status: "timed out".into(),
            stderr: String::new(),
        })?
        .map_err(|e| BackupError::ToolFailed {
            tool,
            status: "not waited for".into(),
            stderr: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(BackupError::ToolFailed {
            tool,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// A file being written under a temporary name beside its target; removed unless committed.
struct Partial {
    path: PathBuf,
    done: bool,
}

impl Partial {
    /// Creates `.NAME.partial-PID` beside `target`, empty, mode 0600.
    fn create(target: &Path) -> Result<Partial, BackupError> {
        let name = target
            .file_name()
            .ok_or_else(|| io_err(target, "not a file name"))?;
        let dir = target
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let path = dir.join(format!(
            ".{}.partial-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        opts.open(&path).map_err(|e| io_err(&path, e))?;
        Ok(Partial { path, done: false })
    }

    fn sync(&self) -> Result<u64, BackupError> {
        let f = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|e| io_err(&self.path, e))?;
        f.sync_all().map_err(|e| io_err(&self.path, e))?;
        Ok(f.metadata().map_err(|e| io_err(&self.path, e))?.len())
    }

    /// Links the file in as `target`, refusing an existing one (atomically: a file that
    /// appeared meanwhile is not replaced either); returns its size.
    fn commit(mut self, target: &Path) -> Result<u64, BackupError> {
        let bytes = self.sync()?;
        match std::fs::hard_link(&self.path, target) {
            Ok(()) => {
                let _ = std::fs::remove_file(&self.path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(BackupError::Exists(target.to_path_buf()));
            }
            // A file system without hard links (vfat, some network mounts): check, then
            // rename — a file created in between would be replaced, which link never does.
            Err(_) if target.symlink_metadata().is_err() => {
                std::fs::rename(&self.path, target).map_err(|e| io_err(target, e))?;
            }
            Err(e) => return Err(io_err(target, e)),
        }
        self.done = true;
        sync_dir(target);
        Ok(bytes)
    }

    /// Renames the file over `target`.
    fn replace(mut self, target: &Path) -> Result<(), BackupError> {
        self.sync()?;
        std::fs::rename(&self.path, target).map_err(|e| io_err(target, e))?;
        self.done = true;
        sync_dir(target);
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn sync_dir(file: &Path) {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// The file of a `sqlite://PATH?…` URL.
pub fn sqlite_path(url: &str) -> &str {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    rest.split_once('?').map_or(rest, |(p, _)| p)
}

/// Whether the SQLite database of `url` exists (backups and restores never create one).
pub fn sqlite_exists(url: &str) -> Result<(), BackupError> {
    let path = sqlite_path(url);
    if Path::new(path).is_file() {
        Ok(())
    } else {
        Err(BackupError::NoDatabase(path.to_string()))
    }
}

/// `postgres://user:pass@host/db` → (`postgres://user@host/db`, the decoded password).
fn split_password(url: &str) -> (String, Option<String>) {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return (url.to_string(), None);
    };
    let authority_end = url[scheme_end..]
        .find(['/', '?'])
        .map_or(url.len(), |i| i + scheme_end);
    let authority = &url[scheme_end..authority_end];
    let Some(at) = authority.rfind('@') else {
        return (url.to_string(), None);
    };
    let Some((user, password)) = authority[..at].split_once(':') else {
        return (url.to_string(), None);
    };
    let stripped = format!(
        "{}{}{}{}",
        &url[..scheme_end],
        user,
        &authority[at..],
        &url[authority_end..]
    );
    (stripped, Some(percent_decode(password)))
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_leaves_the_url_for_the_environment() {
        assert_eq!(
            split_password("postgres://mdg:s%40cr%3At@db.example:5432/madoguchi?sslmode=require"),
            (
                "postgres://mdg@db.example:5432/madoguchi?sslmode=require".to_string(),
                Some("s@cr:t".to_string())
            )
        );
        assert_eq!(
            split_password("postgres://mdg@127.0.0.1/test"),
            ("postgres://mdg@127.0.0.1/test".to_string(), None)
        );
        assert_eq!(
            sqlite_path("sqlite:///var/lib/m/x.db?mode=rwc"),
            "/var/lib/m/x.db"
        );
        assert_eq!(sqlite_path("sqlite://data/x.db"), "data/x.db");
    }
}
