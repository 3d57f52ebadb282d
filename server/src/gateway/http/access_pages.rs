//! The pages of just-in-time access (`docs/approvals.md`):
//!
//! - `/requests`: the access requests a person made or may decide, pending first, with
//!   Approve, Deny and Revoke; its script (`requests.js`) reads and changes them through the
//!   requests API and keeps the list current.
//! - `/connect/{target}?reason=…&document=…` and `/requests/new?target=…&reason=…`: links for
//!   alerts and runbooks. They open the reason prompt (or, where the node needs an approver's
//!   yes, the request form) already filled; the person still confirms. The script
//!   (`connect.js`) decides which from the node's `approval` in `GET /api/v1/targets`.
//!
//! The data comes from the API in the browser; these handlers only check the sign-in and, for
//! the links, that the node is one the person reaches. A node they do not reach gets the same
//! answer as a node that does not exist (as `POST /api/v1/sessions` does), so a link tells
//! nobody whether a node exists.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::error::ApiError;
use super::extract::SignedIn;
use super::layout::Layout;
use super::pages::{PageError, render, require_sign_in};
use super::state::AppState;
use crate::gateway::sessions::engine;

/// The longest reason or document name a link may carry into the page; longer values are
/// dropped (the prompt then starts empty), since no rule accepts them anyway.
const MAX_PREFILL: usize = 4096;

/// The routes of these pages (under the pages' `no-store` layer).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/requests", get(requests_page))
        .route("/requests/new", get(new_request_page))
        .route("/connect/{target}", get(connect_page))
}

#[derive(Template)]
#[template(path = "requests.html")]
struct RequestsPage {
    layout: Layout,
    /// `pending` or `all`: which requests the list shows.
    filter: &'static str,
}

/// What a link asks the page to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    /// `/connect/…`: a shell (the request form when the node needs approval).
    Connect,
    /// `/requests/new`: the request form (the reason prompt when no approval is needed).
    Request,
}

impl Intent {
    fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Request => "request",
        }
    }
}

#[derive(Template)]
#[template(path = "connect.html")]
struct ConnectPage {
    layout: Layout,
    /// `connect` or `request`.
    intent: &'static str,
    target: String,
    node_name: String,
    /// The node's agent status (`Online`, `ConnectionLost`, …).
    ping_status: String,
    /// The values the link carries, to fill the prompt with.
    reason: String,
    document: String,
}

/// `/requests?state=pending|all`: the page; its script fetches the list.
async fn requests_page(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    parts: Parts,
) -> Response {
    let signed = match require_sign_in(&state, &parts).await {
        Ok(signed) => signed,
        Err(denied) => return denied.into_response(),
    };
    let filter = match query.get("state").map(String::as_str) {
        Some("pending") => "pending",
        _ => "all",
    };
    render(&RequestsPage {
        layout: Layout::signed_in(&signed, "requests", "requests.js"),
        filter,
    })
}

/// `/connect/{target}?reason=…&document=…`.
async fn connect_page(
    State(state): State<Arc<AppState>>,
    Path(target): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    parts: Parts,
) -> Response {
    let signed = match require_sign_in(&state, &parts).await {
        Ok(signed) => signed,
        Err(denied) => return denied.into_response(),
    };
    deep_link(&state, &signed, Intent::Connect, &target, &query).await
}

/// `/requests/new?target=…&reason=…`.
async fn new_request_page(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    parts: Parts,
) -> Response {
    let signed = match require_sign_in(&state, &parts).await {
        Ok(signed) => signed,
        Err(denied) => return denied.into_response(),
    };
    let Some(target) = query.get("target").filter(|t| !t.trim().is_empty()) else {
        let e = ApiError::bad_request(
            "missing_target",
            "say which node the request is for: /requests/new?target=i-…&reason=…",
        );
        return PageError::new(e, &signed).into_response();
    };
    deep_link(&state, &signed, Intent::Request, target.trim(), &query).await
}

/// The page of a link to `target`: the prompt, filled; or the neutral page when the person
/// reaches no such node.
async fn deep_link(
    state: &AppState,
    signed: &SignedIn,
    intent: Intent,
    target: &str,
    query: &HashMap<String, String>,
) -> Response {
    let listing = match engine::reachable_targets(&state.engine, &signed.user).await {
        Ok(listing) => listing,
        Err(e) => return PageError::new(e.into(), signed).into_response(),
    };
    let Some(node) = listing.targets.iter().find(|t| t.id == target) else {
        return PageError::new(not_reachable(target), signed).into_response();
    };
    let prefill = |key: &str| {
        query
            .get(key)
            .map(|v| v.trim())
            .filter(|v| v.len() <= MAX_PREFILL)
            .unwrap_or_default()
            .to_owned()
    };
    render(&ConnectPage {
        layout: Layout::signed_in(signed, "targets", "connect.js"),
        intent: intent.as_str(),
        target: node.id.clone(),
        node_name: node.name.clone(),
        ping_status: node.ping_status.clone(),
        reason: prefill("reason"),
        document: prefill("document"),
    })
}

/// The answer for a node the person does not reach, the same whether it exists or not.
fn not_reachable(target: &str) -> ApiError {
    ApiError::not_found(
        "unknown_target",
        format!(
            "There is no node {target:?} among those you may reach. Either it does not exist \
             or none of your roles reaches it; if you think it should, ask an administrator."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page of a link is escaped like every page: the link's values are the link author's.
    #[test]
    fn link_values_are_escaped() {
        let page = ConnectPage {
            layout: Layout::signed_out(""),
            intent: "connect",
            target: "i-0abc".into(),
            node_name: "web\"><script>".into(),
            ping_status: "Online".into(),
            reason: "INC-1 \"><img src=x onerror=alert(1)>".into(),
            document: "<b>doc</b>".into(),
        };
        let html = page.render().unwrap();
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<b>doc"), "{html}");
        assert!(
            html.contains("data-reason=\"INC-1 &#34;&#62;&#60;img"),
            "{html}"
        );
    }

    #[test]
    fn the_neutral_answer_names_only_what_was_asked() {
        let e = not_reachable("i-0abc");
        assert_eq!(e.status, axum::http::StatusCode::NOT_FOUND);
        assert!(e.message.contains("\"i-0abc\""), "{}", e.message);
    }
}
