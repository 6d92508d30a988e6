use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::throttle::{LoginGuard, Refused};
use super::{AuthConfig, SessionEnds};
use crate::clock::{from_db_time, to_db_time, SharedClock};
use crate::store::Db;

use super::{
    append_audit, generate_password, hash_password, verify_password, Actor, AuditAction,
    AuditEntry, AuditOutcome, AuditTarget, PrivacyError, Role,
};

/// A staff account as the application sees it (never the hash).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct User {
    /// Account id.
    pub id: i64,
    /// Login name.
    pub username: String,
    /// Name shown to colleagues.
    pub display_name: String,
    /// What the account may do.
    pub role: Role,
    /// A disabled account cannot log in and has no sessions.
    pub disabled: bool,
    /// Set while the account is locked after failed logins.
    pub locked_until: Option<DateTime<Utc>>,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    /// The password was set by an administrator: the account must choose its own before it
    /// may do anything else (issue 18 item 7).
    pub must_change_password: bool,
}

/// What `Users::create` needs.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Login name: 3–32 of `a-z 0-9 . _ -`.
    pub username: String,
    /// Name shown to colleagues; the username when empty.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// Initial password, at least 10 characters.
    pub password: String,
    /// Whether the account must change this password at its first login (set for accounts
    /// an administrator creates on the screen; see [`User::must_change_password`]).
    pub must_change_password: bool,
}

/// Why a login was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum LoginFailure {
    /// Wrong username or password (also disabled accounts: nothing is revealed).
    InvalidCredentials {
        /// Consecutive failures so far, for slowing the answer down.
        failures: u32,
        /// Failures left before the account locks, when the account exists and is active
        /// (the login error warns at one).
        remaining: Option<u32>,
    },
    /// Too many failures: locked until then.
    Locked {
        /// When the lock ends.
        until: DateTime<Utc>,
    },
    /// Too many failures from the client's address: nothing was checked.
    Throttled {
        /// Seconds until the address may try again.
        retry_after_secs: u64,
    },
}

crate::code_enum! {
    /// Why a password check was refused (the `reason` of a failed `login` audit row).
    pub enum LoginRefusal: "login_refusal" {
        /// No account has that name.
        UnknownUser = "unknown_user" / "存在しない利用者名",
        /// The password was wrong.
        WrongPassword = "wrong_password" / "パスワード誤り",
        /// The password was wrong once too often: the account is locked from now.
        LockedNow = "locked_now" / "失敗回数超過によりロック",
        /// The account was already locked.
        Locked = "locked" / "ロック中",
        /// The account is disabled.
        Disabled = "disabled" / "無効化された利用者",
        /// Too many failed logins from the client's address (recorded once per spell).
        Throttled = "throttled" / "接続元からの失敗回数超過",
    }
}

/// The outcome of a login attempt, with the facts the audit row needs.
#[derive(Debug, Clone)]
pub struct LoginAttempt {
    /// The account, when the username exists.
    pub user_id: Option<i64>,
    /// Why it was refused (for the audit row), `None` when it succeeded.
    pub refusal: Option<LoginRefusal>,
    /// The result.
    pub result: Result<User, LoginFailure>,
}

/// The staff account store.
#[derive(Clone)]
pub struct Users {
    db: Db,
    clock: SharedClock,
    auth: AuthConfig,
    guard: Arc<LoginGuard>,
    ends: SessionEnds,
}

const USER_COLUMNS: &str =
    "id, username, display_name, role, disabled, locked_until, created_at, must_change_password";

fn user_from_row(r: &AnyRow) -> Result<User, sqlx::Error> {
    let locked: Option<String> = r.try_get("locked_until")?;
    let created: String = r.try_get("created_at")?;
    Ok(User {
        id: r.try_get("id")?,
        username: r.try_get("username")?,
        display_name: r.try_get("display_name")?,
        role: r.try_get("role")?,
        disabled: r.try_get::<i64, _>("disabled")? != 0,
        locked_until: locked.as_deref().and_then(from_db_time),
        created_at: from_db_time(&created).unwrap_or_default(),
        must_change_password: r.try_get::<i64, _>("must_change_password")? != 0,
    })
}

/// Shortest password.
pub const PASSWORD_MIN_CHARS: usize = 10;
/// Longest password.
pub const PASSWORD_MAX_CHARS: usize = 256;
/// Longest display name.
pub const DISPLAY_NAME_MAX_CHARS: usize = 64;

/// The user-name rule as users read it (also shown next to the field).
pub const USERNAME_RULE_JA: &str =
    "ユーザー名は半角の英小文字・数字・「.」「_」「-」で3〜32文字にしてください。";

/// Checks a username: lower-case ASCII letters, digits, `.`, `_`, `-`; 3–32 long.
pub fn validate_username(u: &str) -> Result<(), PrivacyError> {
    let ok_chars = u
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if (3..=32).contains(&u.len()) && ok_chars {
        Ok(())
    } else {
        Err(PrivacyError::Invalid(USERNAME_RULE_JA.into()))
    }
}

/// Checks a new password's length (10–256 characters).
pub fn validate_password(p: &str) -> Result<(), PrivacyError> {
    let n = p.chars().count();
    if (PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&n) {
        Ok(())
    } else {
        Err(PrivacyError::Invalid(
            "パスワードは10〜256文字にしてください。".into(),
        ))
    }
}

impl Users {
    /// The store on `db` with the login policy `auth`.
    pub fn new(db: Db, clock: SharedClock, auth: AuthConfig) -> Self {
        let guard = Arc::new(LoginGuard::new(
            auth.max_failed_logins_per_address,
            Duration::minutes(i64::from(auth.address_window_minutes)),
        ));
        Self {
            db,
            clock,
            auth,
            guard,
            ends: SessionEnds::default(),
        }
    }

    /// Tells the connections of `ends` when this store ends an account's sessions (disable,
    /// password change); without it they learn on their next check.
    pub fn with_session_ends(mut self, ends: SessionEnds) -> Self {
        self.ends = ends;
        self
    }

    async fn hash(&self, password: String) -> Result<String, PrivacyError> {
        self.guard
            .argon2(move || hash_password(&password))
            .await
            .ok_or(PrivacyError::Hash)?
    }

    async fn verify(&self, password: &str, hash: Option<String>) -> Result<bool, PrivacyError> {
        let password = password.to_string();
        self.guard
            .argon2(move || verify_password(&password, hash.as_deref().unwrap_or(dummy_hash())))
            .await
            .ok_or(PrivacyError::Hash)
    }

    /// Number of accounts.
    pub async fn count(&self) -> Result<i64, PrivacyError> {
        let r = sqlx::query("SELECT COUNT(*) FROM users")
            .fetch_one(self.db.pool())
            .await?;
        Ok(r.try_get::<i64, _>(0)?)
    }

    /// Creates an account; refuses a taken username or bad input without writing anything.
    pub async fn create(&self, actor: &Actor, new: NewUser) -> Result<User, PrivacyError> {
        validate_username(&new.username)?;
        validate_password(&new.password)?;
        let display = new.display_name.trim();
        if display.chars().count() > DISPLAY_NAME_MAX_CHARS {
            return Err(PrivacyError::Invalid(
                "表示名は64文字以内で入力してください。".into(),
            ));
        }
        let display = if display.is_empty() {
            new.username.clone()
        } else {
            display.to_string()
        };
        if self.find_by_username(&new.username).await?.is_some() {
            return Err(PrivacyError::DuplicateUsername(new.username));
        }
        let hash = self.hash(new.password).await?;
        let at = self.clock.now();
        let now = to_db_time(at);
        let mut tx = self.db.pool().begin().await?;
        let res = sqlx::query(&format!(
            "INSERT INTO users (username, display_name, role, password_hash, disabled, failed_logins, created_at, updated_at, must_change_password) \
             VALUES ($1, $2, $3, $4, $5, 0, $6, $6, $7) RETURNING {USER_COLUMNS}"
        ))
        .bind(&new.username)
        .bind(display)
        .bind(new.role)
        .bind(hash)
        .bind(0_i64)
        .bind(now)
        .bind(i64::from(new.must_change_password))
        .fetch_one(&mut *tx)
        .await;
        match res {
            Ok(row) => {
                let user = user_from_row(&row)?;
                let entry = AuditEntry::new(AuditAction::UserCreate)
                    .target(AuditTarget::User, user.id)
                    .detail(serde_json::json!({ "role": user.role }));
                append_audit(&mut tx, at, actor, &entry).await?;
                tx.commit().await?;
                Ok(user)
            }
            // Lost a race with another instance creating the same name.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(PrivacyError::DuplicateUsername(new.username))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Every account, by username.
    pub async fn list(&self) -> Result<Vec<User>, PrivacyError> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY username"
        ))
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.iter().map(user_from_row).collect::<Result<_, _>>()?)
    }

    /// One account by id.
    pub async fn get(&self, id: i64) -> Result<Option<User>, PrivacyError> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    /// One account by username.
    pub async fn find_by_username(&self, username: &str) -> Result<Option<User>, PrivacyError> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE username = $1"
        ))
        .bind(username)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    /// Disables an account and ends its sessions.
    pub async fn disable(&self, actor: &Actor, id: i64) -> Result<User, PrivacyError> {
        if actor.user_id == Some(id) {
            return Err(PrivacyError::SelfDisable);
        }
        let at = self.clock.now();
        let mut tx = self.db.pool().begin().await?;
        let n = sqlx::query("UPDATE users SET disabled = $1, updated_at = $2 WHERE id = $3")
            .bind(1_i64)
            .bind(to_db_time(at))
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(PrivacyError::UnknownUser);
        }
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let entry = AuditEntry::new(AuditAction::UserDisable).target(AuditTarget::User, id);
        append_audit(&mut tx, at, actor, &entry).await?;
        tx.commit().await?;
        self.ends.end_user(id);
        self.get(id).await?.ok_or(PrivacyError::UnknownUser)
    }

    /// Sets a new password, clears any lock and ends the account's sessions. A password set
    /// by someone else (an administrator, the CLI) must be changed at the account's next
    /// login; one's own change clears that. The current password is refused as the new one.
    pub async fn set_password(
        &self,
        actor: &Actor,
        id: i64,
        password: &str,
    ) -> Result<(), PrivacyError> {
        validate_password(password)?;
        let row = sqlx::query("SELECT password_hash FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        let Some(row) = row else {
            return Err(PrivacyError::UnknownUser);
        };
        let current: String = row.try_get(0)?;
        if self.verify(password, Some(current)).await? {
            return Err(PrivacyError::Invalid(
                "新しいパスワードが現在のパスワードと同じです。別のパスワードにしてください。"
                    .into(),
            ));
        }
        let must_change = actor.user_id != Some(id);
        let hash = self.hash(password.to_string()).await?;
        let at = self.clock.now();
        let mut tx = self.db.pool().begin().await?;
        sqlx::query(
            "UPDATE users SET password_hash = $1, failed_logins = 0, locked_until = NULL, updated_at = $2, \
             must_change_password = $3 WHERE id = $4",
        )
        .bind(hash)
        .bind(to_db_time(at))
        .bind(i64::from(must_change))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let entry = AuditEntry::new(AuditAction::UserPassword)
            .target(AuditTarget::User, id)
            .detail(serde_json::json!({ "temporary": must_change }));
        append_audit(&mut tx, at, actor, &entry).await?;
        tx.commit().await?;
        self.ends.end_user(id);
        Ok(())
    }

    /// Lifts an account's lock after failed logins (an administrator; audited). The password
    /// and sessions stay as they are.
    pub async fn unlock(&self, actor: &Actor, id: i64) -> Result<User, PrivacyError> {
        let at = self.clock.now();
        let mut tx = self.db.pool().begin().await?;
        let n = sqlx::query(
            "UPDATE users SET failed_logins = 0, locked_until = NULL, updated_at = $1 WHERE id = $2",
        )
        .bind(to_db_time(at))
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(PrivacyError::UnknownUser);
        }
        let entry = AuditEntry::new(AuditAction::UserUnlock).target(AuditTarget::User, id);
        append_audit(&mut tx, at, actor, &entry).await?;
        tx.commit().await?;
        self.get(id).await?.ok_or(PrivacyError::UnknownUser)
    }

    /// Checks `password` for `username` under the lock-out policy. A failure is counted and
    /// recorded as `action` (failed, or denied when locked) in one transaction; a success
    /// records nothing here — the operation it opens (a session, a password change) does.
    ///
    /// Every limit is applied before the password is checked: the client address's allowance
    /// (and its delay), then one of the account's guesses is reserved in the database, so
    /// parallel attempts — from one address or many, on one instance or several — never check
    /// more passwords than the lock-out allows.
    pub async fn authenticate(
        &self,
        username: &str,
        password: &str,
        ip: Option<String>,
        action: AuditAction,
    ) -> Result<LoginAttempt, PrivacyError> {
        let ticket = match self.guard.admit(ip.as_deref(), self.clock.now()) {
            Ok(ticket) => ticket,
            Err(refused) => return self.throttled(username, ip, action, refused).await,
        };
        // The delay grows with the address's failures and is waited before any work, so it
        // slows a guesser down without holding a place for an Argon2 run.
        let delay = self
            .auth
            .failed_login_delay_ms
            .saturating_mul(ticket.earlier.min(10) as u64);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        let now = self.clock.now();
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = $1"
        ))
        .bind(username)
        .fetch_optional(self.db.pool())
        .await?;
        let Some(row) = row else {
            // Spend the same time as a real check so timing does not reveal usernames.
            self.verify(password, None).await?;
            let attempt = LoginAttempt {
                user_id: None,
                refusal: Some(LoginRefusal::UnknownUser),
                result: Err(LoginFailure::InvalidCredentials {
                    failures: 1,
                    remaining: None,
                }),
            };
            return self.failed(None, ip, action, attempt).await;
        };
        let user = user_from_row(&row)?;
        let hash: String = row.try_get("password_hash")?;
        if let Some(until) = user.locked_until.filter(|u| *u > now) {
            let attempt = LoginAttempt {
                user_id: Some(user.id),
                refusal: Some(LoginRefusal::Locked),
                result: Err(LoginFailure::Locked { until }),
            };
            return self.failed(Some(&user), ip, action, attempt).await;
        }
        if user.disabled {
            self.verify(password, Some(hash)).await?;
            let attempt = LoginAttempt {
                user_id: Some(user.id),
                refusal: Some(LoginRefusal::Disabled),
                result: Err(LoginFailure::InvalidCredentials {
                    failures: 1,
                    remaining: None,
                }),
            };
            return self.failed(Some(&user), ip, action, attempt).await;
        }
        // Counted as a failure before the check, given back on success: attempts in flight
        // hold their guesses, and once the allowance is taken the rest are not checked.
        let reserved = sqlx::query(
            "UPDATE users SET failed_logins = failed_logins + 1 \
             WHERE id = $1 AND failed_logins < $2 AND (locked_until IS NULL OR locked_until <= $3) \
             RETURNING failed_logins",
        )
        .bind(user.id)
        .bind(i64::from(self.auth.max_failed_logins))
        .bind(to_db_time(now))
        .fetch_optional(self.db.pool())
        .await?;
        let Some(reserved) = reserved else {
            let until = self.lock_end(user.id, now).await?;
            let attempt = LoginAttempt {
                user_id: Some(user.id),
                refusal: Some(LoginRefusal::Locked),
                result: Err(LoginFailure::Locked { until }),
            };
            return self.failed(Some(&user), ip, action, attempt).await;
        };
        let failures: i64 = reserved.try_get(0)?;
        if self.verify(password, Some(hash)).await? {
            sqlx::query("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1")
                .bind(user.id)
                .execute(self.db.pool())
                .await?;
            self.guard.succeeded(ticket);
            let user = User {
                locked_until: None,
                ..user
            };
            return Ok(LoginAttempt {
                user_id: Some(user.id),
                refusal: None,
                result: Ok(user),
            });
        }
        let mut tx = self.db.pool().begin().await?;
        let attempt = if failures >= i64::from(self.auth.max_failed_logins) {
            let until = now + Duration::minutes(i64::from(self.auth.lockout_minutes));
            // The count restarts so that after the lock the full allowance applies again.
            sqlx::query("UPDATE users SET failed_logins = 0, locked_until = $1 WHERE id = $2")
                .bind(to_db_time(until))
                .bind(user.id)
                .execute(&mut *tx)
                .await?;
            LoginAttempt {
                user_id: Some(user.id),
                refusal: Some(LoginRefusal::LockedNow),
                result: Err(LoginFailure::Locked { until }),
            }
        } else {
            LoginAttempt {
                user_id: Some(user.id),
                refusal: Some(LoginRefusal::WrongPassword),
                result: Err(LoginFailure::InvalidCredentials {
                    failures: u32::try_from(failures).unwrap_or(u32::MAX),
                    remaining: u32::try_from(i64::from(self.auth.max_failed_logins) - failures)
                        .ok(),
                }),
            }
        };
        self.record_failure(&mut tx, Some(&user), ip, action, &attempt)
            .await?;
        tx.commit().await?;
        Ok(attempt)
    }

    /// When the account's lock ends: as set, or — while the attempts that used up the
    /// allowance are still being checked — one lock-out from now.
    async fn lock_end(&self, id: i64, now: DateTime<Utc>) -> Result<DateTime<Utc>, PrivacyError> {
        let locked: Option<String> = sqlx::query("SELECT locked_until FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(self.db.pool())
            .await?
            .try_get(0)?;
        Ok(locked
            .as_deref()
            .and_then(from_db_time)
            .filter(|u| *u > now)
            .unwrap_or_else(|| now + Duration::minutes(i64::from(self.auth.lockout_minutes))))
    }

    /// Records a refused attempt on its own and returns it.
    async fn failed(
        &self,
        account: Option<&User>,
        ip: Option<String>,
        action: AuditAction,
        attempt: LoginAttempt,
    ) -> Result<LoginAttempt, PrivacyError> {
        let mut tx = self.db.pool().begin().await?;
        self.record_failure(&mut tx, account, ip, action, &attempt)
            .await?;
        tx.commit().await?;
        Ok(attempt)
    }

    /// An attempt refused by the address limit: nothing is checked, and only the first
    /// refusal of a spell is recorded, so a flood cannot fill the append-only log.
    async fn throttled(
        &self,
        username: &str,
        ip: Option<String>,
        action: AuditAction,
        refused: Refused,
    ) -> Result<LoginAttempt, PrivacyError> {
        let attempt = LoginAttempt {
            user_id: None,
            refusal: Some(LoginRefusal::Throttled),
            result: Err(LoginFailure::Throttled {
                retry_after_secs: refused.retry_after_secs,
            }),
        };
        if !refused.first {
            return Ok(attempt);
        }
        tracing::warn!(
            ip = ip.as_deref().unwrap_or("-"),
            retry_after_secs = refused.retry_after_secs,
            "too many failed logins from one address; refusing its attempts for now"
        );
        let account = self.find_by_username(username).await?;
        let attempt = LoginAttempt {
            user_id: account.as_ref().map(|u| u.id),
            ..attempt
        };
        self.failed(account.as_ref(), ip, action, attempt).await
    }

    async fn record_failure(
        &self,
        conn: &mut sqlx::AnyConnection,
        account: Option<&User>,
        ip: Option<String>,
        action: AuditAction,
        attempt: &LoginAttempt,
    ) -> Result<(), PrivacyError> {
        let outcome = match attempt.result {
            Err(LoginFailure::Locked { .. } | LoginFailure::Throttled { .. }) => {
                AuditOutcome::Denied
            }
            _ => AuditOutcome::Failed,
        };
        let mut entry = AuditEntry::new(action)
            .outcome(outcome)
            .detail(serde_json::json!({ "reason": attempt.refusal }));
        if let (AuditAction::UserPassword, Some(id)) = (action, attempt.user_id) {
            entry = entry.target(AuditTarget::User, id);
        }
        let actor = Actor::unauthenticated(account, ip);
        append_audit(conn, self.clock.now(), &actor, &entry).await?;
        Ok(())
    }
}

/// A real argon2id hash to verify against when the username is unknown, made once.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&generate_password()).unwrap_or_default())
}

/// Creates the first `admin` when there are no accounts; returns its password once.
///
/// The password is `preset` (from `MADOGUCHI_BOOTSTRAP_PASSWORD`) or a random one.
pub async fn bootstrap_admin(
    users: &Users,
    preset: Option<String>,
) -> Result<Option<(User, String)>, PrivacyError> {
    if users.count().await? > 0 {
        return Ok(None);
    }
    let password = preset.unwrap_or_else(generate_password);
    match users
        .create(
            &Actor::system("(bootstrap)"),
            NewUser {
                username: "admin".into(),
                display_name: "システム管理者".into(),
                role: Role::Admin,
                password: password.clone(),
                must_change_password: false,
            },
        )
        .await
    {
        Ok(u) => Ok(Some((u, password))),
        // Another instance sharing the database bootstrapped first.
        Err(PrivacyError::DuplicateUsername(_)) => Ok(None),
        Err(e) => Err(e),
    }
}
