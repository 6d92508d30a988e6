//! Reports for the city (R-REP-1, R-REP-3): the weekly call counts in every format, their
//! sending (frozen versions), and the opinions and complaints with their follow-up.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use chrono::NaiveDate;
use serde::Deserialize;

use crate::app::AppState;
use crate::config::Config;
use crate::reports::{
    self, opinions, FollowUpInput, IsoWeek, OpinionRow, ReportSettings, SentInfo, VersionChoice,
};

use super::access::Staff;
use super::{parse_id, ApiError, Done, JsonBody, QueryParams};

/// What the reports need of the configuration.
pub fn report_settings(config: &Config) -> ReportSettings {
    ReportSettings {
        city_ja: config.profile.city.name_ja.clone(),
        service_ja: config.profile.city.service_name_ja.clone(),
        season_start: config.profile.hours.period_start,
        season_end: config.profile.hours.period_end,
        service_level_secs: config.profile.line.service_level_secs,
    }
}

/// The query of `GET /api/reports/weekly-calls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeeklyQuery {
    /// `2026-W24`; the current week when left out.
    #[serde(default)]
    week: Option<String>,
    /// json (default), csv, xlsx, svg or html.
    #[serde(default)]
    format: Option<String>,
    /// `latest` (default: the latest sent version, else live), `live`, or a version number.
    #[serde(default)]
    version: Option<String>,
}

/// The week asked for, or the current one.
fn week_of(state: &AppState, week: Option<&str>) -> Result<IsoWeek, ApiError> {
    match week {
        Some(w) => Ok(w.parse()?),
        None => Ok(IsoWeek::of(
            state
                .clock
                .now()
                .with_timezone(&chrono_tz::Asia::Tokyo)
                .date_naive(),
        )),
    }
}

/// A file download, or a page shown inline.
fn file(body: impl IntoResponse, mime: &'static str, name: &str, inline: bool) -> Response {
    if inline {
        download::inline(body, mime, name)
    } else {
        download::attachment(body, mime, name)
    }
}

use super::download::{self, XLSX};

/// `GET /api/reports/weekly-calls?week=2026-W24&format=json|csv|xlsx|svg|html&version=…`.
pub async fn weekly_calls(
    State(state): State<AppState>,
    Staff { .. }: Staff,
    QueryParams(q): QueryParams<WeeklyQuery>,
) -> Result<Response, ApiError> {
    let week = week_of(&state, q.week.as_deref())?;
    let choice: VersionChoice = q.version.as_deref().unwrap_or("latest").parse()?;
    let format = q.format.as_deref().unwrap_or("json");
    if !["json", "csv", "xlsx", "svg", "html"].contains(&format) {
        return Err(ApiError::invalid(format!(
            "出力形式「{format}」は指定できません（json、csv、xlsx、svg、html のいずれか）。"
        )));
    }
    let settings = report_settings(&state.config);
    let view = reports::weekly_view(&state.db, &settings, week, choice, state.clock.now()).await?;
    let name = match &view.sent {
        Some(s) => format!("weekly-calls-{week}-v{}", s.version),
        None => format!("weekly-calls-{week}"),
    };
    Ok(match format {
        "csv" => file(
            reports::weekly_csv(&view.report),
            "text/csv; charset=utf-8",
            &format!("{name}.csv"),
            false,
        ),
        "xlsx" => file(
            reports::weekly_xlsx(&view.report)?,
            XLSX,
            &format!("{name}.xlsx"),
            false,
        ),
        "svg" => file(
            reports::weekly_svg(&view.report),
            "image/svg+xml",
            &format!("{name}.svg"),
            true,
        ),
        "html" => Html(reports::weekly_html(&view.report, &view.note(), false)).into_response(),
        _ => Json(view).into_response(),
    })
}

/// `POST /api/reports/weekly-calls/{week}/sent`: records the week's report as sent to the
/// city (frozen; a new version when the figures changed since the last one).
pub async fn weekly_calls_sent(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    Path(week): Path<String>,
) -> Result<(StatusCode, Json<SentInfo>), ApiError> {
    let week: IsoWeek = week.parse()?;
    let settings = report_settings(&state.config);
    let sent = reports::mark_sent(&state.db, &settings, &actor, week, state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(sent)))
}

/// The query of `GET /api/reports/opinions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpinionQuery {
    /// First day (JST), inclusive.
    #[serde(default)]
    from: Option<NaiveDate>,
    /// Last day (JST), inclusive.
    #[serde(default)]
    to: Option<NaiveDate>,
    /// json (default), csv or xlsx.
    #[serde(default)]
    format: Option<String>,
}

/// The opinions and complaints.
#[derive(serde::Serialize)]
pub struct OpinionList {
    opinions: Vec<OpinionRow>,
}

/// `GET /api/reports/opinions?from=&to=&format=json|csv|xlsx`: opinions and complaints with
/// their follow-up (the read of their notes is audited).
pub async fn opinion_list(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    QueryParams(q): QueryParams<OpinionQuery>,
) -> Result<Response, ApiError> {
    let format = q.format.as_deref().unwrap_or("json");
    if !["json", "csv", "xlsx"].contains(&format) {
        return Err(ApiError::invalid(format!(
            "出力形式「{format}」は指定できません（json、csv、xlsx のいずれか）。"
        )));
    }
    let rows = opinions::read(&state.db, &actor, q.from, q.to, state.clock.now()).await?;
    Ok(match format {
        "csv" => file(
            reports::opinions_csv(&rows),
            "text/csv; charset=utf-8",
            "opinions.csv",
            false,
        ),
        "xlsx" => file(reports::opinions_xlsx(&rows)?, XLSX, "opinions.xlsx", false),
        _ => Json(OpinionList { opinions: rows }).into_response(),
    })
}

/// `PATCH /api/reports/opinions/{call_id}`: the manager's follow-up (audited).
pub async fn opinion_follow_up(
    State(state): State<AppState>,
    Staff { actor, .. }: Staff,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<FollowUpInput>,
) -> Result<Json<Done>, ApiError> {
    let id = parse_id(&id)?;
    opinions::set_follow_up(&state.db, &actor, id, &input, state.clock.now()).await?;
    Ok(Json(Done::OK))
}

/// The query of `GET /api/reports/completion`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletionQuery {
    /// json (default), xlsx or html.
    #[serde(default)]
    format: Option<String>,
}

/// `GET /api/reports/completion?format=json|xlsx|html`: the completion report (R-REP-2).
pub async fn completion(
    State(state): State<AppState>,
    Staff { .. }: Staff,
    QueryParams(q): QueryParams<CompletionQuery>,
) -> Result<Response, ApiError> {
    let format = q.format.as_deref().unwrap_or("json");
    if !["json", "xlsx", "html"].contains(&format) {
        return Err(ApiError::invalid(format!(
            "出力形式「{format}」は指定できません（json、xlsx、html のいずれか）。"
        )));
    }
    let settings = report_settings(&state.config);
    let report = reports::completion(&state.db, &settings, state.clock.now()).await?;
    Ok(match format {
        "xlsx" => file(
            reports::completion_xlsx(&report)?,
            XLSX,
            "completion-report.xlsx",
            false,
        ),
        "html" => Html(reports::completion_html(&report, false)).into_response(),
        _ => Json(report).into_response(),
    })
}
