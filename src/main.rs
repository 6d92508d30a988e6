//! The `madoguchi` command line.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use madoguchi::booking::bookings::{BookingList, Bookings};
use madoguchi::booking::purge::{PurgePlan, PurgeScope};
use madoguchi::booking::{calendar, Places};
use madoguchi::clock::SystemClock;
use madoguchi::config::{self, Config, EnvOverrides};
use madoguchi::privacy::{generate_password, Actor, Auditor, NewUser, Role, Users};
use madoguchi::sharing::Sharing;
use madoguchi::store::Db;

/// madoguchi — call-center backend for municipal outreach lines (SIP adapter, screen pop,
/// bookings, reports).
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Configuration file (default: ./madoguchi.toml if present, else built-in defaults).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: the SIP adapter (UDP and TCP), the web UI and the API.
    Serve {
        /// Start the service clock at this instant (RFC 3339, e.g. 2026-11-25T10:00:00+09:00)
        /// instead of now; time runs normally from there. For demos and tests only: opening
        /// hours and holidays are decided on this clock.
        #[arg(long, value_name = "RFC3339")]
        clock_start: Option<String>,
        /// Log format: `text` (default) or `json` (one JSON object per line, for a log
        /// collector). The start-up lines on stdout follow the same format.
        #[arg(long, value_enum, env = "MADOGUCHI_LOG_FORMAT", default_value = "text")]
        log_format: LogFormat,
    },
    /// Create or update the database schema, then exit.
    Migrate,
    /// Manage staff accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// The visit calendar (R-CAL): propose, import, export, show, fix.
    #[command(subcommand)]
    Calendar(CalendarCommand),
    /// Bookings (R-BOOK): export the visits for checking.
    #[command(subcommand)]
    Bookings(BookingsCommand),
    /// Delete the personal data of every booking shared with the city whose visit ended
    /// (R-PII-5), or with --contract-end every piece of personal data left (第10).
    Purge {
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Everything left at the end of the contract: every booking, call number, callback
        /// and facility list. Prints the dry run first and asks for confirmation.
        #[arg(long)]
        contract_end: bool,
        /// Do not ask for confirmation (--contract-end).
        #[arg(long)]
        yes: bool,
    },
    /// Reports for the city (R-REP, 第15).
    #[command(subcommand)]
    Report(ReportCommand),
    /// The weekly share of the slips to the city (R-PREP-1, R-PREP-2).
    #[command(subcommand)]
    Share(ShareCommand),
    /// Write a consistent copy of the whole database to a new file (mode 0600; it holds
    /// personal data) while the service keeps running: SQLite `VACUUM INTO`, PostgreSQL
    /// `pg_dump -Fc`.
    Backup {
        /// The file to create; an existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Replace the database's whole content with a backup. Refused while the service (or
    /// anything else) is connected to the database: stop it first.
    Restore {
        /// The backup file (`madoguchi backup --out`).
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// How the service writes its log.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand)]
enum ReportCommand {
    /// The monthly handling report (取扱状況報告, 第15): counts per action and per staff
    /// member, deletions done.
    Handling {
        /// The month, e.g. 2026-07 (Asia/Tokyo).
        #[arg(long)]
        month: String,
        /// json or xlsx.
        #[arg(long, default_value = "json")]
        format: HandlingFormat,
        /// Write to this file (xlsx needs one).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// The weekly call counts (受電件数) of one week, as `GET /api/reports/weekly-calls`.
    WeeklyCalls {
        /// The ISO week, e.g. 2026-W24.
        #[arg(long)]
        week: String,
        /// json, csv (UTF-8 with BOM), xlsx, svg or html (printable, A4).
        #[arg(long, default_value = "json")]
        format: ReportFormat,
        /// latest (the latest version sent, else live), live, or a version number.
        #[arg(long, default_value = "latest")]
        version: String,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// The completion report (委託業務完了報告書) of the whole call-center period, as
    /// `GET /api/reports/completion`.
    Completion {
        /// json, xlsx or html (printable, A4).
        #[arg(long, default_value = "html")]
        format: CompletionFormat,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ShareCommand {
    /// Every visit week with home visits: its due date (the Tuesday of the week before), the
    /// live bookings, how many are not yet shared, and its state; then every facility's
    /// applicant list (due the 7th day before its first visit). As `GET /api/shares/due`.
    Due {
        /// text (one line a week) or json.
        #[arg(long, default_value = "text")]
        format: DueFormat,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CompletionFormat {
    Json,
    Xlsx,
    Html,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum HandlingFormat {
    Json,
    Xlsx,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Json,
    Csv,
    Xlsx,
    Svg,
    Html,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DueFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum BookingsCommand {
    /// Every visit (home, facility, pre-meeting) with its reception number, dates, half-day,
    /// position, window, applicants, town, status, facility and pre-meeting — no names,
    /// addresses or phone numbers. The same rows as `GET /api/bookings`.
    Export {
        /// json or csv (UTF-8 with BOM).
        #[arg(long, default_value = "json")]
        format: ExportFormat,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CalendarCommand {
    /// Propose the season's visit days from the profile; prints them, stores them as the
    /// draft with --write.
    Propose {
        /// Store the proposal as the draft calendar (refused once the calendar is fixed).
        #[arg(long)]
        write: bool,
    },
    /// Replace the draft calendar with a file (CSV `date,kind` or JSON [{"date","kind"}]);
    /// a file with an error changes nothing.
    Import {
        /// The file to read.
        file: PathBuf,
    },
    /// Write the calendar as CSV (UTF-8 with BOM) or JSON.
    Export {
        /// csv or json.
        #[arg(long, default_value = "csv")]
        format: ExportFormat,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Show the calendar month by month with the counts and warnings.
    Show,
    /// Fix the calendar (agreed with the city); afterwards only audited edits change it.
    Fix,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    Csv,
    Json,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add an account; prints a generated password unless --password-stdin is given.
    Add {
        /// Login name (3–32 of a-z 0-9 . _ -).
        username: String,
        /// Role: operator, manager, city or admin.
        #[arg(long)]
        role: Role,
        /// Name shown to colleagues.
        #[arg(long, default_value = "")]
        display_name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts with their roles.
    List,
    /// Disable an account and end its sessions.
    Disable {
        /// Login name.
        username: String,
    },
    /// Set a new password (also lifts a lock); prints a generated one unless --password-stdin.
    Passwd {
        /// Login name.
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match &cli.command {
        Command::Serve { log_format, .. } => {
            madoguchi::app::tune_heap();
            *log_format
        }
        _ => LogFormat::Text,
    };
    init_tracing(format);
    let config = match config::load(cli.config.as_deref(), &EnvOverrides::from_env()) {
        Ok(c) => c,
        Err(e) if format == LogFormat::Json => {
            let line = serde_json::json!({"level": "ERROR", "message": e.to_string()});
            eprintln!("{line}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if format == LogFormat::Json => {
            let line = serde_json::json!({"level": "ERROR", "message": format!("{e:#}")});
            eprintln!("{line}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        // Spans flattened into each line: `request_id`, `method`, `path` sit beside the event.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve {
            clock_start,
            log_format,
        } => {
            let clock: madoguchi::clock::SharedClock = match clock_start {
                None => Arc::new(SystemClock),
                Some(s) => {
                    let start = chrono::DateTime::parse_from_rfc3339(&s)
                        .with_context(|| format!("--clock-start: '{s}' is not an RFC 3339 time"))?;
                    tracing::warn!(start = %start, "service clock shifted (--clock-start): for demos and tests only");
                    Arc::new(madoguchi::clock::OffsetClock::starting_at(
                        start.with_timezone(&chrono::Utc),
                    ))
                }
            };
            serve(config, clock, log_format).await
        }
        Command::Migrate => {
            Db::connect_and_migrate(&config.database_url, 1).await?;
            println!(
                "database is up to date: {}",
                config::redact_url(&config.database_url)
            );
            Ok(())
        }
        Command::User(cmd) => user_command(cmd, config).await,
        Command::Calendar(cmd) => calendar_command(cmd, config).await,
        Command::Bookings(cmd) => bookings_command(cmd, config).await,
        Command::Purge {
            dry_run,
            contract_end,
            yes,
        } => purge_command(config, dry_run, contract_end, yes).await,
        Command::Report(cmd) => report_command(cmd, config).await,
        Command::Share(cmd) => share_command(cmd, config).await,
        Command::Backup { out } => backup_command(config, out).await,
        Command::Restore { from, yes } => restore_command(config, from, yes).await,
    }
}

async fn serve(
    config: Config,
    clock: madoguchi::clock::SharedClock,
    format: LogFormat,
) -> anyhow::Result<()> {
    let preset = std::env::var("MADOGUCHI_BOOTSTRAP_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    let profile = config.profile.city.service_name_ja.clone();
    let grace = config.sip_shutdown_grace;
    let mut server = madoguchi::app::start(config, clock, preset).await?;
    // A closed stdout (a supervisor that stopped reading) must not stop the service, so
    // these writes ignore errors where println! would panic.
    let mut out = std::io::stdout();
    if format == LogFormat::Json {
        // The same facts as the text lines, one JSON object per line like the log.
        let mut lines = vec![serde_json::json!({
            "level": "INFO",
            "message": "madoguchi is running",
            "http": format!("http://{}/", server.http_addr),
            "sip": server.sip_addr.to_string(),
            "service": profile,
        })];
        if let Some((user, password)) = &server.bootstrap {
            lines.push(serde_json::json!({
                "level": "WARN",
                "message": "first start: created the admin account; log in and change its password under パスワード変更; it is not shown again",
                "username": user.username,
                "password": password,
            }));
        }
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
    } else {
        let _ = writeln!(
            out,
            "madoguchi is running: http://{}/  ({profile})",
            server.http_addr
        );
        let _ = writeln!(out, "SIP adapter (UDP and TCP): {}", server.sip_addr);
        if let Some((user, password)) = &server.bootstrap {
            let _ = writeln!(
                out,
                "first start: created the account '{}' (admin) with the password: {password}",
                user.username
            );
            let _ = writeln!(
                out,
                "  log in and change it under パスワード変更; it is not shown again."
            );
        }
    }
    let _ = out.flush();
    // A task that fails (a panic in the SIP core, the call log writer, the hub, the HTTP
    // server) stops the process with an error, so the service manager restarts it.
    let failure = tokio::select! {
        () = shutdown_signal() => None,
        failure = server.failure() => Some(failure),
    };
    match &failure {
        None => tracing::info!(
            grace_secs = grace.as_secs(),
            "shutting down: no new calls; waiting for the calls in progress (a second signal stops at once)"
        ),
        Some(f) => tracing::error!(failure = %f, "shutting down after a failure"),
    }
    let stopped = server.shutdown(grace, shutdown_signal()).await;
    if let Some(f) = failure {
        anyhow::bail!("{f}; stopped after it (see the log above)");
    }
    stopped.context("unclean stop")?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn read_password_stdin() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password: ");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

async fn user_command(cmd: UserCommand, config: Config) -> anyhow::Result<()> {
    let db = Db::connect_and_migrate(&config.database_url, 2).await?;
    let clock: madoguchi::clock::SharedClock = Arc::new(SystemClock);
    let users = Users::new(db, clock, config.auth.clone());
    let cli = Actor::cli();
    let find = |username: String| {
        let users = users.clone();
        async move {
            users
                .find_by_username(&username)
                .await?
                .with_context(|| format!("no account named '{username}'"))
        }
    };
    match cmd {
        UserCommand::Add {
            username,
            role,
            display_name,
            password_stdin,
        } => {
            let (password, generated) = if password_stdin {
                (read_password_stdin()?, false)
            } else {
                (generate_password(), true)
            };
            let user = users
                .create(
                    &cli,
                    NewUser {
                        username,
                        display_name,
                        role,
                        password: password.clone(),
                        must_change_password: false,
                    },
                )
                .await?;
            println!("created '{}' ({})", user.username, user.role);
            if generated {
                println!("password: {password}");
            }
        }
        UserCommand::List => {
            println!(
                "{:<6} {:<20} {:<10} {:<9} display name",
                "id", "username", "role", "state"
            );
            for u in users.list().await? {
                let state = if u.disabled { "disabled" } else { "active" };
                println!(
                    "{:<6} {:<20} {:<10} {:<9} {}",
                    u.id, u.username, u.role, state, u.display_name
                );
            }
        }
        UserCommand::Disable { username } => {
            let u = find(username).await?;
            users.disable(&cli, u.id).await?;
            println!("disabled '{}'", u.username);
        }
        UserCommand::Passwd {
            username,
            password_stdin,
        } => {
            let u = find(username).await?;
            let (password, generated) = if password_stdin {
                (read_password_stdin()?, false)
            } else {
                (generate_password(), true)
            };
            users.set_password(&cli, u.id, &password).await?;
            println!("password changed for '{}'", u.username);
            if generated {
                println!("password: {password}");
            }
        }
    }
    Ok(())
}

fn season(config: &Config) -> anyhow::Result<calendar::Season> {
    let profile = &config.profile;
    Ok(calendar::Season {
        rules: profile.booking.clone(),
        start: profile.period.visits_start,
        end: profile.period.visits_end,
        hours: madoguchi::hours::OpeningHours::new(&profile.hours)?,
    })
}

/// The booking domain on `db` as the profile sets it up.
fn bookings_on(db: Db, config: &Config) -> anyhow::Result<Bookings> {
    let profile = &config.profile;
    let hours = madoguchi::hours::OpeningHours::new(&profile.hours)?;
    let places = Places::new(profile.gazetteer.clone(), profile.travel.clone());
    Ok(Bookings::new(
        db,
        profile.booking.clone(),
        Arc::new(places.travel().clone()),
        hours.timezone(),
    ))
}

fn print_purge_plan(plan: &PurgePlan) {
    let what = match plan.scope {
        PurgeScope::Due => "共有済みかつ訪問完了の予約",
        PurgeScope::ContractEnd => "契約終了: 残っているすべての個人情報",
    };
    let head = if plan.dry_run {
        "削除予定（dry run）"
    } else {
        "削除しました"
    };
    println!("{head}: {what}");
    println!("受付番号\t種別\t状態\t訪問日\t共有日\t訪問完了日");
    for b in &plan.bookings {
        let opt =
            |d: Option<chrono::NaiveDate>| d.map(|d| d.to_string()).unwrap_or_else(|| "-".into());
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            b.reception_number
                .map(|n| n.to_string())
                .unwrap_or_else(|| format!("(id {})", b.booking_id)),
            b.kind.label_ja(),
            b.status.label_ja(),
            b.visit_date,
            opt(b.shared_on),
            opt(b.visit_done_on),
        );
    }
    println!(
        "予約 {} 件、通話の発信者番号 {} 件、折り返し {} 件、施設申込 {} 件、通話記録の保留イベント {} 件",
        plan.bookings.len(),
        plan.calls,
        plan.callbacks,
        plan.facility_requests,
        plan.dead_letters
    );
}

async fn purge_command(
    config: Config,
    dry_run: bool,
    contract_end: bool,
    yes: bool,
) -> anyhow::Result<()> {
    let db = Db::connect_and_migrate(&config.database_url, 2).await?;
    let bookings = bookings_on(db, &config)?;
    let scope = if contract_end {
        PurgeScope::ContractEnd
    } else {
        PurgeScope::Due
    };
    let plan = bookings.purge_preview(scope).await?;
    print_purge_plan(&plan);
    if dry_run {
        return Ok(());
    }
    if contract_end && !yes {
        print!("これらの個人情報を完全に削除します。元に戻せません。よろしいですか？ [yes/no]: ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "yes" | "y" | "はい") {
            anyhow::bail!("cancelled: nothing was deleted");
        }
    }
    let done = bookings
        .purge(&Actor::cli(), chrono::Utc::now(), scope)
        .await?;
    print_purge_plan(&done);
    if done.scrub_complete == Some(false) {
        anyhow::bail!("busy readers kept the old bytes from being scrubbed from the database files: run the purge again to finish");
    }
    Ok(())
}

async fn backup_command(config: Config, out: PathBuf) -> anyhow::Result<()> {
    use madoguchi::privacy::{AuditAction, AuditEntry};
    use madoguchi::store::backup;
    let url = &config.database_url;
    if url.starts_with("sqlite:") {
        backup::sqlite_exists(url)?;
    }
    // No migration: a backup copies the database as it is.
    let db = Db::connect(url, 2).await?;
    let report = backup::backup(&db, url, &out).await?;
    let audit = Auditor::new(db.clone(), Arc::new(SystemClock));
    let entry = AuditEntry::new(AuditAction::Backup).detail(serde_json::json!({
        "file": report.path.display().to_string(),
        "bytes": report.bytes,
        "format": report.format,
    }));
    // A backup nobody can account for must not exist: without its 取扱記録 row it goes.
    if let Err(e) = audit.record(&Actor::cli(), entry).await {
        let _ = std::fs::remove_file(&report.path);
        return Err(e).context("recording the backup in the audit log (backup removed)");
    }
    db.close().await;
    println!(
        "backup written: {} ({} bytes, {})",
        report.path.display(),
        report.bytes,
        report.format
    );
    Ok(())
}

async fn restore_command(config: Config, from: PathBuf, yes: bool) -> anyhow::Result<()> {
    use madoguchi::privacy::{AuditAction, AuditEntry};
    use madoguchi::store::backup;
    let url = &config.database_url;
    if !yes {
        print!(
            "{} の内容をすべて {} の内容で置き換えます。よろしいですか？ [yes/no]: ",
            config::redact_url(url),
            from.display()
        );
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "yes" | "y" | "はい") {
            anyhow::bail!("cancelled: nothing was changed");
        }
    }
    backup::restore(url, &from).await?;
    // The restored copy may predate this version's schema.
    let db = Db::connect_and_migrate(url, 2).await?;
    let audit = Auditor::new(db.clone(), Arc::new(SystemClock));
    let entry = AuditEntry::new(AuditAction::Restore)
        .detail(serde_json::json!({ "file": from.display().to_string() }));
    audit
        .record(&Actor::cli(), entry)
        .await
        .context("recording the restore in the audit log")?;
    db.close().await;
    println!(
        "restored {} from {}",
        config::redact_url(url),
        from.display()
    );
    Ok(())
}

async fn report_command(cmd: ReportCommand, config: Config) -> anyhow::Result<()> {
    use madoguchi::reports;
    let db = Db::connect_and_migrate(&config.database_url, 2).await?;
    let tz = madoguchi::hours::OpeningHours::new(&config.profile.hours)?.timezone();
    let settings = madoguchi::web::report_settings(&config);
    let audit = Auditor::new(db.clone(), Arc::new(SystemClock));
    match cmd {
        ReportCommand::Handling { month, format, out } => {
            let report = audit.handling_report(&Actor::cli(), &month, tz).await?;
            let bytes = match format {
                HandlingFormat::Json => {
                    (serde_json::to_string_pretty(&report)? + "\n").into_bytes()
                }
                HandlingFormat::Xlsx => report.xlsx()?,
            };
            match (out, format) {
                (Some(path), _) => std::fs::write(&path, bytes)
                    .with_context(|| format!("writing {}", path.display()))?,
                (None, HandlingFormat::Json) => std::io::stdout().write_all(&bytes)?,
                (None, HandlingFormat::Xlsx) => anyhow::bail!("--format xlsx needs --out FILE"),
            }
        }
        ReportCommand::WeeklyCalls {
            week,
            format,
            version,
            out,
        } => {
            let week: reports::IsoWeek = week.parse()?;
            let choice: reports::VersionChoice = version.parse()?;
            let view =
                reports::weekly_view(&db, &settings, week, choice, chrono::Utc::now()).await?;
            let bytes = match format {
                ReportFormat::Json => (serde_json::to_string_pretty(&view)? + "\n").into_bytes(),
                ReportFormat::Csv => reports::weekly_csv(&view.report).into_bytes(),
                ReportFormat::Xlsx => reports::weekly_xlsx(&view.report)?,
                ReportFormat::Svg => reports::weekly_svg(&view.report).into_bytes(),
                ReportFormat::Html => {
                    reports::weekly_html(&view.report, &view.note(), true).into_bytes()
                }
            };
            write_out(out, &bytes)?;
        }
        ReportCommand::Completion { format, out } => {
            let report = reports::completion(&db, &settings, chrono::Utc::now()).await?;
            let bytes = match format {
                CompletionFormat::Json => {
                    (serde_json::to_string_pretty(&report)? + "\n").into_bytes()
                }
                CompletionFormat::Xlsx => reports::completion_xlsx(&report)?,
                CompletionFormat::Html => reports::completion_html(&report, true).into_bytes(),
            };
            write_out(out, &bytes)?;
        }
    }
    Ok(())
}

async fn bookings_command(cmd: BookingsCommand, config: Config) -> anyhow::Result<()> {
    let db = Db::connect_and_migrate(&config.database_url, 2).await?;
    let bookings = bookings_on(db, &config)?;
    match cmd {
        BookingsCommand::Export { format, out } => {
            let list = bookings.list().await?;
            let text = match format {
                ExportFormat::Csv => madoguchi::booking::reception::bookings_csv(&list),
                ExportFormat::Json => {
                    serde_json::to_string_pretty(&BookingList { bookings: list })? + "\n"
                }
            };
            match out {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{text}"),
            }
        }
    }
    Ok(())
}

async fn share_command(cmd: ShareCommand, config: Config) -> anyhow::Result<()> {
    let db = Db::connect_and_migrate(&config.database_url, 2).await?;
    let profile = &config.profile;
    let hours = madoguchi::hours::OpeningHours::new(&profile.hours)?;
    let places = Places::new(profile.gazetteer.clone(), profile.travel.clone());
    let bookings = Bookings::new(
        db.clone(),
        profile.booking.clone(),
        Arc::new(places.travel().clone()),
        hours.timezone(),
    );
    let sharing = Sharing::new(
        db,
        Arc::new(SystemClock),
        config.sharing.clone(),
        bookings,
        hours.timezone(),
    )
    .for_city(&config.profile.city.name_ja);
    match cmd {
        ShareCommand::Due { format } => {
            let weeks = sharing.due().await?;
            let facilities = sharing.facility_due().await?;
            match format {
                DueFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "weeks": weeks, "facilities": facilities })
                    )?
                ),
                DueFormat::Text => {
                    if weeks.is_empty() {
                        println!("自宅訪問の予約はまだありません。");
                    }
                    for w in weeks {
                        println!(
                            "{}〜{}  期限 {}  予約 {}件  未共有 {}件  {}",
                            w.week_start,
                            w.week_end,
                            w.due_label,
                            w.bookings,
                            w.not_yet_shared,
                            w.state.label_ja()
                        );
                    }
                    for f in facilities {
                        println!(
                            "施設 {}（初回訪問 {}）  期限 {}  申請者一覧 {}名  {}",
                            f.facility_name,
                            f.visit_label,
                            f.due_label,
                            f.applicants_listed,
                            f.state.label_ja()
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// Writes a report to `out`, or to standard output.
fn write_out(out: Option<PathBuf>, bytes: &[u8]) -> anyhow::Result<()> {
    match out {
        Some(path) => {
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
        }
        None => Ok(std::io::stdout().write_all(bytes)?),
    }
}

fn print_problems(problems: &[calendar::Problem]) {
    for p in problems {
        let tag = if p.is_error() { "エラー" } else { "注意" };
        println!("{tag}: {}", p.message);
    }
}

async fn calendar_command(cmd: CalendarCommand, config: Config) -> anyhow::Result<()> {
    let season = season(&config)?;
    let db = Db::connect_and_migrate(&config.database_url, 2).await?;
    let cli = Actor::cli();
    let now = chrono::Utc::now();
    match cmd {
        CalendarCommand::Propose { write } => {
            let days = season.propose()?;
            print!("{}", calendar::render_text(&days, &season));
            if write {
                let warnings = calendar::replace(
                    &db,
                    &cli,
                    &season,
                    &days,
                    calendar::ReplaceSource::Proposal,
                    now,
                )
                .await?;
                print_problems(&warnings);
                println!("stored as the draft calendar ({} days)", days.len());
            }
        }
        CalendarCommand::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let days = match calendar::parse_import(&text) {
                Ok(d) => d,
                Err(problems) => {
                    print_problems(&problems);
                    anyhow::bail!("{}: not imported, nothing changed", file.display());
                }
            };
            let warnings = calendar::replace(
                &db,
                &cli,
                &season,
                &days,
                calendar::ReplaceSource::Import,
                now,
            )
            .await?;
            print_problems(&warnings);
            println!("imported {} days from {}", days.len(), file.display());
        }
        CalendarCommand::Export { format, out } => {
            let days = calendar::load(&db).await?.pairs();
            let text = match format {
                ExportFormat::Csv => calendar::export_csv(&days),
                ExportFormat::Json => {
                    serde_json::to_string_pretty(&calendar::export_json(&days))? + "\n"
                }
            };
            match out {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{text}"),
            }
        }
        CalendarCommand::Show => {
            let cal = calendar::load(&db).await?;
            let days = cal.pairs();
            match (&cal.fixed_at, &cal.fixed_by) {
                (Some(at), by) => println!(
                    "確定済み（{} {}）",
                    at.with_timezone(&season.hours.timezone())
                        .format("%Y-%m-%d %H:%M"),
                    by.as_deref().unwrap_or("")
                ),
                (None, _) => println!("下書き（未確定）"),
            }
            print!("{}", calendar::render_text(&days, &season));
            print_problems(&season.check(&days));
        }
        CalendarCommand::Fix => {
            calendar::fix(&db, &cli, now).await?;
            println!("the calendar is fixed");
        }
    }
    Ok(())
}
