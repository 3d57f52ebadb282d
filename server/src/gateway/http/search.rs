//! `GET /api/v1/recordings/search?q=TEXT[&limit=N]`: the parameters checked, then
//! `store::search::find` over the sessions the caller may read.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde_json::json;

use super::error::ApiError;
use super::extract::SignedIn;
use super::state::AppState;
use crate::gateway::sessions::engine;
use crate::gateway::store::search::{DEFAULT_LIMIT, MAX_LIMIT, check_query};

/// A search request: the query and the limit, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The text, trimmed.
    pub q: String,
    /// 1 to [`MAX_LIMIT`].
    pub limit: i64,
}

fn unprocessable(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_query", message)
}

/// Reads `q` and `limit` from a query string's pairs. Errors name the parameter.
pub fn parse(pairs: &[(String, String)]) -> Result<Request, ApiError> {
    let mut q = None;
    let mut limit = None;
    for (k, v) in pairs {
        let slot = match k.as_str() {
            "q" => &mut q,
            "limit" => &mut limit,
            other => {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    format!("{other}: not a parameter of this API (q, limit)"),
                ));
            }
        };
        if slot.replace(v.clone()).is_some() {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("{k}: given more than once"),
            ));
        }
    }
    let q = check_query(q.as_deref().unwrap_or("")).map_err(unprocessable)?;
    let limit = match limit.as_deref().map(str::trim) {
        None | Some("") => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                unprocessable(format!(
                    "limit: a whole number from 1 to {MAX_LIMIT} (got {text:?})"
                ))
            })?,
    };
    Ok(Request { q, limit })
}

/// `GET /api/v1/recordings/search?q=TEXT[&limit=N]`.
#[utoipa::path(
    get,
    path = "/api/v1/recordings/search",
    operation_id = "search_recordings",
    security(("cookie" = [])),
    params(
        ("q" = String, Query, description = "The text, 1 to 200 characters"),
        ("limit" = Option<String>, Query, description = "1 to 500 (default 50)"),
    ),
    responses(
        (status = 200, description = "Matching lines", body = super::schemas::SearchResult),
        (status = 400, description = "An unknown or repeated parameter", body = super::schemas::ErrorBody),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 422, description = "A bad query or limit", body = super::schemas::ErrorBody),
        (status = 429, description = "Too many searches", body = super::schemas::ErrorBody),
        (status = 503, description = "The search took too long", body = super::schemas::ErrorBody),
    )
)]
pub async fn search(
    State(state): State<Arc<AppState>>,
    signed: SignedIn,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(pairs) = query.map_err(|e| {
        ApiError::bad_request(
            "invalid_request",
            format!("the query string is malformed: {e}"),
        )
    })?;
    let request = parse(&pairs)?;
    let (matches, more) = engine::search(
        &state.engine,
        &signed.user,
        &signed.client,
        &request.q,
        request.limit,
    )
    .await?;
    Ok(Json(json!({ "matches": matches, "more": more })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked() {
        let pairs = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            parse(&pairs(&[("q", "x"), ("limit", "5")])).unwrap(),
            Request {
                q: "x".into(),
                limit: 5
            }
        );
        assert_eq!(parse(&pairs(&[("q", "x")])).unwrap().limit, DEFAULT_LIMIT);
        let status = |v: &[(&str, &str)]| parse(&pairs(v)).unwrap_err().status.as_u16();
        assert_eq!(status(&[]), 422);
        assert_eq!(status(&[("q", "x"), ("limit", "0")]), 422);
        assert_eq!(status(&[("q", "x"), ("limit", "501")]), 422);
        assert_eq!(status(&[("q", "x"), ("nope", "1")]), 400);
        assert_eq!(status(&[("q", "x"), ("q", "y")]), 400);
    }
}
