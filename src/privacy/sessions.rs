use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use super::AuthConfig;
use crate::clock::{from_db_time, to_db_time, SharedClock};
use crate::store::Db;

use super::{append_audit, Actor, AuditAction, AuditEntry, PrivacyError, Role, User};

/// A live login session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Session row id.
    pub id: i64,
    /// The anti-CSRF token the UI must echo in `X-CSRF-Token`.
    pub csrf_token: String,
    /// The logged-in account.
    pub user: User,
    /// When it ends at the latest.
    pub expires_at: DateTime<Utc>,
}

/// Server-side sessions. The cookie carries a random token; only its SHA-256 is stored,
/// so a copy of the database does not let anyone log in.
#[derive(Clone)]
pub struct SessionStore {
    db: Db,
    clock: SharedClock,
    auth: AuthConfig,
    ends: SessionEnds,
}

/// Tells this process's long-lived connections (the console's WebSocket) at once that their
/// session ended here: logout, the account disabled, its password changed. Sessions ended
/// elsewhere (another instance, the command line, expiry) are found by
/// [`SessionStore::is_live`], which such a connection asks on a timer.
#[derive(Clone, Default)]
pub struct SessionEnds(Arc<Mutex<HashMap<i64, Watched>>>);

struct Watched {
    user_id: i64,
    ended: CancellationToken,
    watchers: usize,
}

/// A connection's hold on its session's end; dropping it lets go.
pub struct SessionWatch {
    ends: SessionEnds,
    session_id: i64,
    ended: CancellationToken,
}

impl SessionWatch {
    /// Completes when the session has ended in this process.
    pub async fn ended(&self) {
        self.ended.cancelled().await
    }
}

impl Drop for SessionWatch {
    fn drop(&mut self) {
        let mut map = self.ends.lock();
        if let Some(w) = map.get_mut(&self.session_id) {
            w.watchers -= 1;
            if w.watchers == 0 {
                map.remove(&self.session_id);
            }
        }
    }
}

impl SessionEnds {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Watched>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watches `session` for its end.
    pub fn watch(&self, session: &Session) -> SessionWatch {
        let mut map = self.lock();
        let w = map.entry(session.id).or_insert_with(|| Watched {
            user_id: session.user.id,
            ended: CancellationToken::new(),
            watchers: 0,
        });
        w.watchers += 1;
        SessionWatch {
            ends: self.clone(),
            session_id: session.id,
            ended: w.ended.clone(),
        }
    }

    /// Session `id` has ended.
    pub fn end_session(&self, id: i64) {
        if let Some(w) = self.lock().remove(&id) {
            w.ended.cancel();
        }
    }

    /// Every session of account `user_id` has ended.
    pub fn end_user(&self, user_id: i64) {
        self.lock().retain(|_, w| {
            let ends = w.user_id == user_id;
            if ends {
                w.ended.cancel();
            }
            !ends
        });
    }
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

fn token_hash(token: &str) -> String {
    let d = Sha256::digest(token.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Touches of `last_seen_at` closer together than this are skipped to spare the database.
const TOUCH_EVERY_SECS: i64 = 30;

impl SessionStore {
    /// The store with the session policy from `auth`.
    pub fn new(db: Db, clock: SharedClock, auth: AuthConfig) -> Self {
        Self {
            db,
            clock,
            auth,
            ends: SessionEnds::default(),
        }
    }

    /// The end signals of this store's sessions, for whoever else ends them ([`super::Users`]).
    pub fn ends(&self) -> SessionEnds {
        self.ends.clone()
    }

    /// Watches `session` for its end in this process (see [`SessionEnds`]).
    pub fn watch(&self, session: &Session) -> SessionWatch {
        self.ends.watch(session)
    }

    /// Whether session `id` is still live: not logged out, expired or idle, and its account
    /// not disabled. Unlike [`SessionStore::lookup`] this is not activity: it does not keep
    /// the session from going idle.
    pub async fn is_live(&self, id: i64) -> Result<bool, PrivacyError> {
        let now = self.clock.now();
        let row = sqlx::query(
            "SELECT s.last_seen_at, s.expires_at, u.disabled \
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1",
        )
        .bind(id)
        .fetch_optional(self.db.pool())
        .await?;
        let Some(r) = row else { return Ok(false) };
        let last_seen = from_db_time(&r.try_get::<String, _>("last_seen_at")?).unwrap_or_default();
        let expires = from_db_time(&r.try_get::<String, _>("expires_at")?).unwrap_or_default();
        let disabled = r.try_get::<i64, _>("disabled")? != 0;
        let idle = Duration::minutes(i64::from(self.auth.session_idle_minutes));
        Ok(!disabled && now < expires && now - last_seen < idle)
    }

    /// Starts a session for `user` logging in from `ip`, with its `login` row in the same
    /// transaction; returns the cookie token and the session.
    pub async fn create(
        &self,
        user: &User,
        ip: Option<String>,
    ) -> Result<(String, Session), PrivacyError> {
        let now = self.clock.now();
        let mut tx = self.db.pool().begin().await?;
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(to_db_time(now))
            .execute(&mut *tx)
            .await?;
        let token = random_token();
        let csrf = random_token();
        let expires = now + Duration::hours(i64::from(self.auth.session_max_hours));
        let id: i64 = sqlx::query(
            "INSERT INTO sessions (token_hash, csrf_token, user_id, created_at, last_seen_at, expires_at, ip) \
             VALUES ($1, $2, $3, $4, $4, $5, $6) RETURNING id",
        )
        .bind(token_hash(&token))
        .bind(&csrf)
        .bind(user.id)
        .bind(to_db_time(now))
        .bind(to_db_time(expires))
        .bind(&ip)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let actor = Actor::user(user, ip);
        append_audit(&mut tx, now, &actor, &AuditEntry::new(AuditAction::Login)).await?;
        tx.commit().await?;
        Ok((
            token,
            Session {
                id,
                csrf_token: csrf,
                user: user.clone(),
                expires_at: expires,
            },
        ))
    }

    /// The live session for a cookie token; ends it if it went idle or expired.
    pub async fn lookup(&self, token: &str) -> Result<Option<Session>, PrivacyError> {
        let now = self.clock.now();
        let row = sqlx::query(
            "SELECT s.id AS sid, s.csrf_token, s.last_seen_at, s.expires_at, \
                    u.id, u.username, u.display_name, u.role, u.disabled, u.locked_until, u.created_at, \
                    u.must_change_password \
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1",
        )
        .bind(token_hash(token))
        .fetch_optional(self.db.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let sid: i64 = r.try_get("sid")?;
        let last_seen = from_db_time(&r.try_get::<String, _>("last_seen_at")?).unwrap_or_default();
        let expires = from_db_time(&r.try_get::<String, _>("expires_at")?).unwrap_or_default();
        let disabled = r.try_get::<i64, _>("disabled")? != 0;
        let idle = Duration::minutes(i64::from(self.auth.session_idle_minutes));
        if disabled || now >= expires || now - last_seen >= idle {
            self.revoke_id(sid).await?;
            self.ends.end_session(sid);
            return Ok(None);
        }
        if now - last_seen >= Duration::seconds(TOUCH_EVERY_SECS) {
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2")
                .bind(to_db_time(now))
                .bind(sid)
                .execute(self.db.pool())
                .await?;
        }
        let role: Role = r.try_get("role")?;
        Ok(Some(Session {
            id: sid,
            csrf_token: r.try_get("csrf_token")?,
            user: User {
                id: r.try_get("id")?,
                username: r.try_get("username")?,
                display_name: r.try_get("display_name")?,
                role,
                disabled,
                locked_until: r
                    .try_get::<Option<String>, _>("locked_until")?
                    .as_deref()
                    .and_then(from_db_time),
                created_at: from_db_time(&r.try_get::<String, _>("created_at")?)
                    .unwrap_or_default(),
                must_change_password: r.try_get::<i64, _>("must_change_password")? != 0,
            },
            expires_at: expires,
        }))
    }

    /// Accounts with a live session now (for the dashboard's presence list).
    pub async fn active_user_ids(&self) -> Result<Vec<i64>, PrivacyError> {
        let now = self.clock.now();
        let idle_since = now - Duration::minutes(i64::from(self.auth.session_idle_minutes));
        let rows = sqlx::query(
            "SELECT DISTINCT user_id FROM sessions WHERE expires_at > $1 AND last_seen_at > $2",
        )
        .bind(to_db_time(now))
        .bind(to_db_time(idle_since))
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<i64, _>(0).ok())
            .collect())
    }

    async fn revoke_id(&self, id: i64) -> Result<(), PrivacyError> {
        sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Ends `actor`'s session `id` (logout), with its `logout` row in the same transaction.
    pub async fn logout(&self, actor: &Actor, id: i64) -> Result<(), PrivacyError> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let entry = AuditEntry::new(AuditAction::Logout);
        append_audit(&mut tx, self.clock.now(), actor, &entry).await?;
        tx.commit().await?;
        self.ends.end_session(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashes_stable() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(token_hash("x"), token_hash("x"));
        assert_eq!(token_hash("x").len(), 64);
    }
}
