//! The allow-list of recipient addresses the city designated (R-PREP-2): an admin keeps it;
//! a share can only name an address on it, checked at preparation and again at the send.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::clock::{from_db_time, to_db_time};
use crate::privacy::{append_audit, Actor, AuditAction, AuditEntry, AuditTarget};

use super::SharingError;

/// One allowed address.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Recipient {
    /// Row id.
    pub id: i64,
    /// The mail address, lower-cased.
    pub address: String,
    /// Whose address it is (e.g. 小樽市戸籍住民課).
    pub label: String,
    /// When it was added.
    pub created_at: Option<DateTime<Utc>>,
}

/// The address as compared and stored: trimmed, lower-cased; `None` when it is not a single
/// plain mail address.
pub(super) fn normalise(address: &str) -> Option<String> {
    let a = address.trim().to_lowercase();
    if a.len() > 254 || a.contains(['<', '>', ',', ';', ' ']) {
        return None;
    }
    a.parse::<lettre::Address>().ok().map(|_| a)
}

pub(super) async fn list(conn: &mut AnyConnection) -> Result<Vec<Recipient>, SharingError> {
    let rows =
        sqlx::query("SELECT id, address, label, created_at FROM share_recipients ORDER BY address")
            .fetch_all(conn)
            .await?;
    rows.iter()
        .map(|r| {
            Ok(Recipient {
                id: r.try_get("id")?,
                address: r.try_get("address")?,
                label: r.try_get("label")?,
                created_at: from_db_time(&r.try_get::<String, _>("created_at")?),
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// Whether `address` (normalised) is on the list.
pub(super) async fn allowed(conn: &mut AnyConnection, address: &str) -> Result<bool, SharingError> {
    Ok(
        sqlx::query("SELECT 1 FROM share_recipients WHERE address = $1")
            .bind(address)
            .fetch_optional(conn)
            .await?
            .is_some(),
    )
}

pub(super) async fn add(
    conn: &mut AnyConnection,
    actor: &Actor,
    now: DateTime<Utc>,
    address: &str,
    label: &str,
) -> Result<Recipient, SharingError> {
    let Some(address) = normalise(address) else {
        return Err(SharingError::Invalid(
            "メールアドレスの形式が正しくありません（例: koseki@city.example.jp）。".into(),
        ));
    };
    let label = label.trim();
    if label.chars().count() > 100 || label.chars().any(char::is_control) {
        return Err(SharingError::Invalid(
            "名称は100文字以内で入力してください。".into(),
        ));
    }
    if allowed(conn, &address).await? {
        return Err(SharingError::Invalid(format!(
            "{address} は既に登録されています。"
        )));
    }
    let id: i64 = sqlx::query(
        "INSERT INTO share_recipients (address, label, created_at, created_by_user_id) \
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(&address)
    .bind(label)
    .bind(to_db_time(now))
    .bind(actor.user_id)
    .fetch_one(&mut *conn)
    .await?
    .try_get(0)?;
    let entry = AuditEntry::new(AuditAction::ShareRecipientAdd)
        .target(AuditTarget::ShareRecipient, id)
        .detail(serde_json::json!({ "address": address }));
    append_audit(conn, now, actor, &entry).await?;
    Ok(Recipient {
        id,
        address,
        label: label.to_string(),
        created_at: Some(now),
    })
}

pub(super) async fn remove(
    conn: &mut AnyConnection,
    actor: &Actor,
    now: DateTime<Utc>,
    id: i64,
) -> Result<(), SharingError> {
    let row = sqlx::query("DELETE FROM share_recipients WHERE id = $1 RETURNING address")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(SharingError::NotFound("recipient"))?;
    let address: String = row.try_get(0)?;
    let entry = AuditEntry::new(AuditAction::ShareRecipientRemove)
        .target(AuditTarget::ShareRecipient, id)
        .detail(serde_json::json!({ "address": address }));
    append_audit(conn, now, actor, &entry).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_plain_address_only() {
        assert_eq!(
            normalise(" Koseki@City.Example.JP ").as_deref(),
            Some("koseki@city.example.jp")
        );
        assert!(normalise("a@b.jp, c@d.jp").is_none());
        assert!(normalise("Name <a@b.jp>").is_none());
        assert!(normalise("not-an-address").is_none());
    }
}
