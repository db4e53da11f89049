//! The HTTP routes. Every error is `{code, message, message_zh}` with a
//! stable snake_case code and a 4xx or 5xx status.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use checkin_ledger::headers;
use checkin_ledger::reader::StreamReader;
use checkin_projections::activity;
use checkin_projections::runner::ProjectionError;
use checkin_projections::segments::{Segment, SegmentRules};
use checkin_projections::store::ModelStore;
use chrono::{DateTime, NaiveDate};
use serde_json::{Value, json};
use tracing::warn;

use crate::views::{self, MAX_DAYS, MAX_PAGE};

/// Default page size when `limit` is not given.
const DEFAULT_PAGE: usize = 50;

/// Shared state of the handlers.
pub struct AppState {
    /// The activity model.
    pub activity: ModelStore,
    /// The frequency model.
    pub frequency: ModelStore,
    /// The ledger stream, for its head.
    pub ledger: StreamReader,
    /// Segment thresholds.
    pub rules: SegmentRules,
}

/// Builds the router over shared state.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/v1/ledger/head", get(ledger_head))
        .route("/v1/customers/{id}", get(customer))
        .route("/v1/customers/{id}/timeline", get(timeline))
        .route("/v1/sites/{id}/days", get(site_days))
        .route("/v1/segments/{name}", get(segment))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint",
                "没有这个接口",
            )
        })
        .with_state(state)
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    message_zh: String,
}

impl ApiError {
    fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        message_zh: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            message_zh: message_zh.into(),
        }
    }

    fn bad_parameter(name: &str, rule_en: &str, rule_zh: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            format!("parameter `{name}` {rule_en}"),
            format!("参数 `{name}` {rule_zh}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({"code": self.code, "message": self.message, "message_zh": self.message_zh});
        (self.status, Json(body)).into_response()
    }
}

impl From<ProjectionError> for ApiError {
    fn from(err: ProjectionError) -> Self {
        warn!(error = %err, "failed to read a read model");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "model_unavailable",
            "failed to read the read model; see the server log",
            "读取投影数据失败，请查看服务器日志",
        )
    }
}

type Params = Query<HashMap<String, String>>;

async fn ledger_head(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let unavailable = |err: &dyn std::fmt::Display| {
        warn!(error = %err, "failed to read the ledger head");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ledger_unavailable",
            "failed to read the ledger",
            "读取账本失败",
        )
    };
    let (_, last) = state
        .ledger
        .bounds()
        .await
        .map_err(|err| unavailable(&err))?;
    let record = state
        .ledger
        .get(last)
        .await
        .map_err(|err| unavailable(&err))?;
    let hash = record
        .as_ref()
        .and_then(|message| message.header(headers::HASH).map(str::to_string));
    Ok(Json(json!({"seq": last, "hash": hash})))
}

async fn customer(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(params): Params,
) -> Result<Json<Value>, ApiError> {
    let as_of_us = as_of(&state, &params)?;
    match views::customer(
        &state.frequency,
        &state.activity,
        &id,
        &state.rules,
        as_of_us,
    )? {
        Some(view) => Ok(Json(view)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "customer_not_found",
            format!("customer {id} has no check-in"),
            format!("客户 {id} 没有打卡记录"),
        )),
    }
}

async fn timeline(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(params): Params,
) -> Result<Json<Value>, ApiError> {
    let limit = limit(&params)?;
    let skip = cursor(&params)?;
    let from = instant(&params, "from")?.unwrap_or(i64::MIN);
    let to = instant(&params, "to")?.unwrap_or(i64::MAX);

    let entries: Vec<_> = activity::timeline(&state.activity, &id, 0, usize::MAX)?
        .into_iter()
        .filter(|entry| (from..=to).contains(&entry.at_us))
        .collect();
    let page: Vec<Value> = entries
        .iter()
        .skip(skip)
        .take(limit)
        .map(views::timeline_json)
        .collect();
    let next = (skip + page.len() < entries.len()).then(|| (skip + page.len()).to_string());
    Ok(Json(
        json!({"customer": id, "items": page, "next_cursor": next}),
    ))
}

async fn site_days(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(params): Params,
) -> Result<Json<Value>, ApiError> {
    let from = date(&params, "from")?;
    let to = date(&params, "to")?;
    if to < from {
        return Err(ApiError::bad_parameter(
            "to",
            "must not be before `from`",
            "不能早于 `from`",
        ));
    }
    if (to - from).num_days() >= MAX_DAYS {
        return Err(ApiError::bad_parameter(
            "to",
            &format!("must be less than {MAX_DAYS} days after `from`"),
            &format!("与 `from` 的间隔必须少于 {MAX_DAYS} 天"),
        ));
    }
    let days = views::site_days(&state.activity, &id, from, to)?;
    Ok(Json(json!({"site": id, "days": days})))
}

async fn segment(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(params): Params,
) -> Result<Json<Value>, ApiError> {
    let Some(segment) = Segment::from_name(&name) else {
        let names: Vec<&str> = Segment::ALL
            .iter()
            .map(|segment| segment.as_str())
            .collect();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_segment",
            format!(
                "unknown segment {name}; expected one of {}",
                names.join(", ")
            ),
            format!("未知客群 {name}；可选：{}", names.join("、")),
        ));
    };
    let limit = limit(&params)?;
    let skip = cursor(&params)?;
    let as_of_us = as_of(&state, &params)?;

    // One extra member shows whether another page exists.
    let mut items = views::segment_members(
        &state.frequency,
        segment,
        &state.rules,
        as_of_us,
        skip,
        limit + 1,
    )?;
    let next = (items.len() > limit).then(|| (skip + limit).to_string());
    items.truncate(limit);
    Ok(Json(
        json!({"segment": name, "as_of": views::utc(as_of_us), "items": items, "next_cursor": next}),
    ))
}

fn limit(params: &HashMap<String, String>) -> Result<usize, ApiError> {
    let Some(text) = params.get("limit") else {
        return Ok(DEFAULT_PAGE);
    };
    match text.parse::<usize>() {
        Ok(limit) if (1..=MAX_PAGE).contains(&limit) => Ok(limit),
        _ => Err(ApiError::bad_parameter(
            "limit",
            &format!("must be a whole number from 1 to {MAX_PAGE}"),
            &format!("必须是 1 到 {MAX_PAGE} 之间的整数"),
        )),
    }
}

fn cursor(params: &HashMap<String, String>) -> Result<usize, ApiError> {
    let Some(text) = params.get("cursor") else {
        return Ok(0);
    };
    text.parse().map_err(|_| {
        ApiError::bad_parameter(
            "cursor",
            "must be a `next_cursor` from an earlier page",
            "必须是上一页返回的 `next_cursor`",
        )
    })
}

fn date(params: &HashMap<String, String>, name: &str) -> Result<NaiveDate, ApiError> {
    let Some(text) = params.get(name) else {
        return Err(ApiError::bad_parameter(
            name,
            "is required, as a date such as 2026-05-01",
            "为必填项，格式如 2026-05-01",
        ));
    };
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        ApiError::bad_parameter(
            name,
            "must be a date such as 2026-05-01",
            "必须是日期，格式如 2026-05-01",
        )
    })
}

fn instant(params: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ApiError> {
    let Some(text) = params.get(name) else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(text)
        .map(|at| Some(at.timestamp_micros()))
        .map_err(|_| {
            ApiError::bad_parameter(
                name,
                "must be an RFC 3339 time such as 2026-05-01T09:30:00+08:00",
                "必须是 RFC 3339 时间，格式如 2026-05-01T09:30:00+08:00",
            )
        })
}

fn as_of(state: &AppState, params: &HashMap<String, String>) -> Result<i64, ApiError> {
    match instant(params, "as_of")? {
        Some(at) => Ok(at),
        None => Ok(views::latest_visit_us(&state.frequency)?),
    }
}
