//! `GET /api/v1/audit`: the audit log for admins and auditors, filtered by time range, actor,
//! target, type and session, newest first, paged with an opaque cursor. The audit page
//! (`/audit`, in [`super::pages`]) reads the same parameters through [`Params`].
//!
//! Parameters: `from` (inclusive) and `to` (exclusive) as milliseconds since the epoch or RFC
//! 3339; `actor`, `target`, `type`, `session_id` (exact matches); `limit` (1 to 500, default
//! 100); `cursor` (the `next_cursor` of the page before). An empty value is the same as no
//! value. An unknown, repeated or malformed parameter is a 400 `invalid_request` that names
//! it. The answer is `{"events":[…],"next_cursor":null|"…"}`; `at` is milliseconds since the
//! epoch, like every time in the API.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::error::ApiError;
use super::extract::SignedIn;
use super::state::AppState;
pub use crate::gateway::policy::may_read_audit;
use crate::gateway::store::audit::{self, Filter, StoredEvent};
use crate::gateway::store::db::{Db, DbError};

/// Events per page when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 100;
/// The largest `limit`.
pub const MAX_LIMIT: i64 = 500;
/// The longest text filter (names and ids are far shorter).
const MAX_FILTER_CHARS: usize = 256;
/// What a cursor holds before the row id (base64url-encoded as a whole: opaque to clients).
const CURSOR_PREFIX: &str = "audit.v1.";

/// The parameters as given (empty: not set), so a form can show them again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    /// `from`.
    pub from: String,
    /// `to`.
    pub to: String,
    /// `actor`.
    pub actor: String,
    /// `target`.
    pub target: String,
    /// `type`.
    pub kind: String,
    /// `session_id`.
    pub session_id: String,
    /// `limit`.
    pub limit: String,
    /// `cursor`.
    pub cursor: String,
}

/// The parameters, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// What to match.
    pub filter: Filter,
    /// Only rows below this id (from the cursor).
    pub before: Option<i64>,
    /// Page size.
    pub limit: i64,
}

/// One page of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Newest first.
    pub events: Vec<StoredEvent>,
    /// The cursor of the next (older) page; `None` on the last page.
    pub next_cursor: Option<String>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_request", message)
}

impl Params {
    /// Collects the query's pairs; an unknown or repeated parameter is refused, naming it.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        let mut params = Self::default();
        let mut seen: Vec<&str> = Vec::new();
        for (key, value) in pairs {
            let slot = match key.as_str() {
                "from" => &mut params.from,
                "to" => &mut params.to,
                "actor" => &mut params.actor,
                "target" => &mut params.target,
                "type" => &mut params.kind,
                "session_id" => &mut params.session_id,
                "limit" => &mut params.limit,
                "cursor" => &mut params.cursor,
                other => {
                    let shown: String = other.chars().take(64).collect();
                    return Err(invalid(format!(
                        "unknown parameter {shown:?}; the filters are from, to, actor, \
                         target, type, session_id, limit and cursor"
                    )));
                }
            };
            if seen.contains(&key.as_str()) {
                return Err(invalid(format!("{key}: given more than once")));
            }
            seen.push(key);
            *slot = value.trim().to_owned();
        }
        Ok(params)
    }

    /// Checks the values; a bad one is a 400 `invalid_request` naming the parameter.
    pub fn parse(&self) -> Result<Request, ApiError> {
        let time = |name: &str, value: &str| -> Result<Option<i64>, ApiError> {
            if value.is_empty() {
                return Ok(None);
            }
            audit::parse_time(value)
                .map(Some)
                .map_err(|e| invalid(format!("{name}: {e}")))
        };
        let from = time("from", &self.from)?;
        let to = time("to", &self.to)?;
        if let (Some(f), Some(t)) = (from, to)
            && f >= t
        {
            return Err(invalid(
                "to: must be later than from (from is inclusive, to is exclusive)",
            ));
        }
        let text = |name: &str, value: &str| -> Result<String, ApiError> {
            let chars = value.chars().count();
            if chars > MAX_FILTER_CHARS {
                return Err(invalid(format!(
                    "{name}: at most {MAX_FILTER_CHARS} characters (got {chars})"
                )));
            }
            Ok(value.to_owned())
        };
        let limit = if self.limit.is_empty() {
            DEFAULT_LIMIT
        } else {
            match self.limit.parse::<i64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(invalid(format!(
                        "limit: a whole number from 1 to {MAX_LIMIT} (got {:?})",
                        self.limit.chars().take(32).collect::<String>()
                    )));
                }
            }
        };
        let before = if self.cursor.is_empty() {
            None
        } else {
            Some(decode_cursor(&self.cursor).ok_or_else(|| {
                invalid("cursor: not a cursor from this API (pass next_cursor unchanged)")
            })?)
        };
        Ok(Request {
            filter: Filter {
                from,
                to,
                actor: text("actor", &self.actor)?,
                target: text("target", &self.target)?,
                kind: text("type", &self.kind)?,
                session_id: text("session_id", &self.session_id)?,
            },
            before,
            limit,
        })
    }

    /// Whether any filter is set (the cursor and limit are not filters).
    pub fn filtered(&self) -> bool {
        [
            &self.from,
            &self.to,
            &self.actor,
            &self.target,
            &self.kind,
            &self.session_id,
        ]
        .iter()
        .any(|v| !v.is_empty())
    }

    /// `from=…&actor=…` of the parameters that are set, with `cursor` (for paging links).
    pub fn query_string(&self, cursor: Option<&str>) -> String {
        let pairs = [
            ("from", self.from.as_str()),
            ("to", &self.to),
            ("actor", &self.actor),
            ("target", &self.target),
            ("type", &self.kind),
            ("session_id", &self.session_id),
            ("limit", &self.limit),
            ("cursor", cursor.unwrap_or("")),
        ];
        pairs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The cursor that continues below row `id`.
pub fn encode_cursor(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{id}"))
}

/// The row id in a cursor, when it is one.
pub fn decode_cursor(cursor: &str) -> Option<i64> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor.as_bytes()).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let id: i64 = text.strip_prefix(CURSOR_PREFIX)?.parse().ok()?;
    (id > 0).then_some(id)
}

/// Reads one page: one row more than asked says whether there is a next page.
pub async fn read_page(db: &Db, request: &Request) -> Result<Page, DbError> {
    let mut events = audit::page(db, &request.filter, request.before, request.limit + 1).await?;
    let more = events.len() > usize::try_from(request.limit).unwrap_or(usize::MAX);
    events.truncate(usize::try_from(request.limit).unwrap_or(usize::MAX));
    let next_cursor = if more {
        events.last().map(|e| encode_cursor(e.id))
    } else {
        None
    };
    Ok(Page {
        events,
        next_cursor,
    })
}

/// `GET /api/v1/audit`.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    operation_id = "list_audit_events",
    security(("cookie" = [])),
    params(
        ("from" = Option<String>, Query, description = "RFC 3339 time or milliseconds since the epoch"),
        ("to" = Option<String>, Query, description = "Likewise"),
        ("actor" = Option<String>, Query, description = "Exactly this actor"),
        ("target" = Option<String>, Query, description = "Exactly this node"),
        ("type" = Option<String>, Query, description = "Exactly this event type"),
        ("session_id" = Option<String>, Query, description = "Exactly this session"),
        ("limit" = Option<String>, Query, description = "1 to 500 (default 100)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the page before"),
    ),
    responses(
        (status = 200, description = "A page of events, newest first", body = super::schemas::AuditPage),
        (status = 400, description = "A bad parameter", body = super::schemas::ErrorBody),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 403, description = "No role of yours reads the audit log", body = super::schemas::ErrorBody),
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    signed: SignedIn,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !may_read_audit(&signed.user) {
        crate::gateway::telemetry::denied(crate::gateway::telemetry::Denied::Audit);
        return Err(ApiError::forbidden(format!(
            "{} may not read the audit log: only the admin and auditor roles may",
            signed.user.name
        )));
    }
    let Query(pairs) = query.map_err(|e| invalid(format!("the query string is malformed: {e}")))?;
    let request = Params::from_pairs(&pairs)?.parse()?;
    let page = read_page(&state.engine.db, &request).await?;
    Ok(Json(json!({
        "events": page.events,
        "next_cursor": page.next_cursor,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn error_of(list: &[(&str, &str)]) -> String {
        match Params::from_pairs(&pairs(list)).and_then(|p| p.parse()) {
            Ok(r) => panic!("accepted: {r:?}"),
            Err(e) => {
                assert_eq!(e.code, "invalid_request");
                e.message
            }
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let cursor = encode_cursor(4711);
        assert!(!cursor.contains("4711"), "opaque: {cursor}");
        assert_eq!(decode_cursor(&cursor), Some(4711));
        for bad in ["", "4711", "!!", &URL_SAFE_NO_PAD.encode("audit.v1.-3")] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn parameters_are_checked_and_named() {
        let ok = Params::from_pairs(&pairs(&[
            ("from", "2026-11-18T11:06:40Z"),
            ("to", "1795000000001"),
            ("type", "login"),
            ("actor", ""),
        ]))
        .unwrap()
        .parse()
        .unwrap();
        assert_eq!(ok.filter.from, Some(1_795_000_000_000));
        assert_eq!(ok.filter.to, Some(1_795_000_000_001));
        assert_eq!(ok.filter.kind, "login");
        assert_eq!(ok.filter.actor, "");
        assert_eq!((ok.limit, ok.before), (DEFAULT_LIMIT, None));

        assert!(error_of(&[("from", "yesterday")]).starts_with("from: "));
        assert!(error_of(&[("to", "2026-02-30")]).starts_with("to: "));
        assert!(error_of(&[("from", "20"), ("to", "10")]).starts_with("to: "));
        assert!(error_of(&[("limit", "0")]).starts_with("limit: "));
        assert!(error_of(&[("limit", "501")]).starts_with("limit: "));
        assert!(error_of(&[("limit", "ten")]).starts_with("limit: "));
        assert!(error_of(&[("cursor", "abc")]).starts_with("cursor: "));
        assert!(error_of(&[("actor", &"x".repeat(257))]).starts_with("actor: "));
        assert!(error_of(&[("user", "alice")]).contains("\"user\""));
        assert!(error_of(&[("type", "a"), ("type", "b")]).starts_with("type: "));
    }

    #[test]
    fn links_keep_the_filters() {
        let params = Params::from_pairs(&pairs(&[
            ("actor", "a&b c"),
            ("type", "login"),
            ("cursor", "old"),
        ]))
        .unwrap();
        assert!(params.filtered());
        assert_eq!(
            params.query_string(Some("next")),
            "actor=a%26b%20c&type=login&cursor=next"
        );
        assert_eq!(params.query_string(None), "actor=a%26b%20c&type=login");
    }
}
