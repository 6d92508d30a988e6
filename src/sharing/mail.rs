//! The two mails of a share (R-PREP-2): the archive in one, its password in another, through
//! the SMTP relay of `[sharing]`.

use std::time::Duration;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::config::{SharingConfig, SmtpTls};
use super::SharingError;

/// What the two mails say.
pub(super) struct Mails<'a> {
    pub to: &'a str,
    /// The city addressed, e.g. 小樽市 (from the profile).
    pub city: &'a str,
    /// The week, or the facility and its visit.
    pub title: String,
    /// What the archive holds, e.g. 自宅訪問3件の受付票.
    pub what: String,
    pub archive_name: &'a str,
    pub archive: Vec<u8>,
    pub password: &'a str,
}

fn transport(cfg: &SharingConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, SharingError> {
    let host = cfg.smtp_host.as_deref().unwrap_or_default();
    let builder = match cfg.smtp_tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
            .map_err(|e| SharingError::Mail(format!("SMTP: {e}")))?,
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
            .map_err(|e| SharingError::Mail(format!("SMTP: {e}")))?,
    };
    let mut builder = builder.port(cfg.port()).timeout(Some(Duration::from_secs(
        cfg.smtp_timeout_secs.unwrap_or(30),
    )));
    if let (Some(u), Some(p)) = (&cfg.smtp_username, &cfg.smtp_password) {
        builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
    }
    Ok(builder.build())
}

fn text(body: String) -> SinglePart {
    // Base64 keeps Japanese text intact through any relay.
    SinglePart::builder()
        .header(ContentType::TEXT_PLAIN)
        .header(ContentTransferEncoding::Base64)
        .body(body)
}

fn addresses(cfg: &SharingConfig, to: &str) -> Result<(Mailbox, Mailbox), SharingError> {
    let from: Mailbox = cfg
        .from
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(|e| SharingError::Mail(format!("sharing.from: {e}")))?;
    let to: Mailbox = to
        .parse()
        .map_err(|e| SharingError::Mail(format!("recipient: {e}")))?;
    Ok((from, to))
}

fn archive_mail(cfg: &SharingConfig, m: &Mails<'_>) -> Result<Message, SharingError> {
    let (from, to) = addresses(cfg, m.to)?;
    let body = format!(
        "{} ご担当者様\n\n{}：{}を添付のとおりお送りします。\n\
         添付ファイル（{}）はパスワード付きの暗号化ZIP（AES-256）です。\n\
         パスワードは別のメールでお知らせします。\n\
         7-Zip、Lhaplus、または最新のWindows 11のエクスプローラーで開けます。\n\n\
         本メールは個人情報を含みます。お心当たりのない場合は開封せず、送信元へご連絡のうえ削除してください。\n",
        m.city, m.title, m.what, m.archive_name
    );
    let attachment = Attachment::new(m.archive_name.to_string()).body(
        m.archive.clone(),
        ContentType::parse("application/zip").map_err(|e| SharingError::Mail(e.to_string()))?,
    );
    Message::builder()
        .from(from)
        .to(to)
        .subject(format!("【送付】{}　{}", m.title, m.what))
        .multipart(
            MultiPart::mixed()
                .singlepart(text(body))
                .singlepart(attachment),
        )
        .map_err(|e| SharingError::Mail(e.to_string()))
}

fn password_mail(cfg: &SharingConfig, m: &Mails<'_>) -> Result<Message, SharingError> {
    let (from, to) = addresses(cfg, m.to)?;
    let body = format!(
        "{} ご担当者様\n\n先にお送りした{}（{}、{}）のパスワードをお知らせします。\n\n\
         パスワード: {}\n\n本メールは個人情報を含むファイルのパスワードです。取扱いにご注意ください。\n",
        m.city, m.what, m.archive_name, m.title, m.password
    );
    Message::builder()
        .from(from)
        .to(to)
        .subject(format!("【パスワード】{}　{}", m.title, m.what))
        .singlepart(text(body))
        .map_err(|e| SharingError::Mail(e.to_string()))
}

/// Sends the archive mail (unless it already went) and then the password mail; the second
/// never goes out before the first was accepted. Returns after the archive mail when the
/// password mail fails, with which one went.
pub(super) async fn send(
    cfg: &SharingConfig,
    m: &Mails<'_>,
    archive_already_sent: bool,
) -> (bool, Result<(), SharingError>) {
    let go = async {
        let t = transport(cfg)?;
        let archive = archive_mail(cfg, m)?;
        let password = password_mail(cfg, m)?;
        Ok::<_, SharingError>((t, archive, password))
    };
    let (t, archive, password) = match go.await {
        Ok(x) => x,
        Err(e) => return (archive_already_sent, Err(e)),
    };
    if !archive_already_sent {
        if let Err(e) = t.send(archive).await {
            return (
                false,
                Err(SharingError::Mail(format!(
                    "受付票のメールを送信できませんでした: {e}"
                ))),
            );
        }
    }
    if let Err(e) = t.send(password).await {
        return (
            true,
            Err(SharingError::Mail(format!(
                "パスワードのメールを送信できませんでした（受付票のメールは送信済み）: {e}"
            ))),
        );
    }
    (true, Ok(()))
}

/// A plain notice to `to` through the `[sharing]` SMTP relay (the dead-line alarm uses it):
/// no attachment, Japanese text kept intact.
pub async fn send_notice(
    cfg: &SharingConfig,
    to: &str,
    subject: &str,
    body: String,
) -> Result<(), SharingError> {
    if !cfg.smtp_enabled() {
        return Err(SharingError::Mail("sharing.smtp_host is not set".into()));
    }
    let (from, to) = addresses(cfg, to)?;
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .singlepart(text(body))
        .map_err(|e| SharingError::Mail(e.to_string()))?;
    transport(cfg)?
        .send(message)
        .await
        .map_err(|e| SharingError::Mail(format!("SMTP: {e}")))?;
    Ok(())
}
