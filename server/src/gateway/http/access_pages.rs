//! The pages of just-in-time access (`docs/approvals.md`):
//!
//! - `/requests`: the access requests a person made or may decide, pending first, with
//!   Approve, Deny and Revoke; its script (`requests.js`) reads and changes them through the
//!   requests API and keeps the list current. The page carries the names of the nodes of the
//!   requests listed (JSON in a data block), since approvers often reach none of them.
//! - `/connect/{target}?reason=…&document=…` and `/requests/new?target=…&reason=…`: links for
//!   alerts and runbooks. They open the reason prompt (or, where the node needs an approver's
//!   yes, the request form) already filled; the person still confirms. The script
//!   (`connect.js`) decides which from the node's `approval` in `GET /api/v1/targets`.
//!
//! The data comes from the API in the browser; these handlers only check the sign-in and, for
//! the links, that the node is one the person reaches. A node they do not reach gets the same
//! answer as a node that does not exist (as `POST /api/v1/sessions` does), so a link tells
//! nobody whether a node exists.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderValue;
use axum::http::header::CACHE_CONTROL;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::set_header::SetResponseHeaderLayer;

use super::error::ApiError;
use super::extract::SignedIn;
use super::layout::{Layout, script_json};
use super::pages::{PageError, node_names, render, require_sign_in};
use super::state::AppState;
use crate::gateway::sessions::{approvals, engine};

/// The longest reason or document name a link may carry into the page; longer values are
/// dropped (the prompt then starts empty), since no rule accepts them anyway.
const MAX_PREFILL: usize = 4096;

/// The routes of these pages.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/requests", get(requests_page))
        .route("/requests/new", get(new_request_page))
        .route("/connect/{target}", get(connect_page))
        // Pages hold a CSRF token: never store them.
        .layer(SetResponseHeaderLayer::overriding(
            CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
}

#[derive(Template)]
#[template(path = "requests.html")]
struct RequestsPage {
    layout: Layout,
    /// `pending` or `all`: which requests the list shows.
    filter: &'static str,
    /// The names of the nodes of the requests listed now, by id, as JSON for the script
    /// ([`script_json`]): approvers often reach none of them, so their targets list has none.
    names_json: String,
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
    // Names only for the nodes of requests this person sees (best effort: the list itself
    // comes from the API, which reports its own errors).
    let names: BTreeMap<String, String> =
        match approvals::list(&state.engine, &signed.user, filter == "pending").await {
            Ok(requests) if !requests.is_empty() => {
                let all = node_names(&state).await;
                requests
                    .iter()
                    .filter_map(|r| Some((r.target.clone(), all.get(&r.target)?.clone())))
                    .collect()
            }
            Ok(_) => BTreeMap::new(),
            Err(e) => {
                tracing::debug!("node names for the requests page: {e}");
                BTreeMap::new()
            }
        };
    render(&RequestsPage {
        layout: Layout::signed_in(&signed, "requests", "requests.js"),
        filter,
        names_json: script_json(&names),
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

    /// JSON in a script element cannot end it, whatever a node is called.
    #[test]
    fn names_cannot_break_out_of_their_script_element() {
        let names = BTreeMap::from([(
            "i-0abc".to_owned(),
            "</script><script>alert(1)</script> & <!--".to_owned(),
        )]);
        let page = RequestsPage {
            layout: Layout::signed_out(""),
            filter: "all",
            names_json: script_json(&names),
        };
        let html = page.render().unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<!--"), "{html}");
        let json = html
            .split_once(r#"<script type="application/json" id="node-names">"#)
            .and_then(|(_, rest)| rest.split_once("</script>"))
            .map(|(json, _)| json)
            .unwrap();
        let back: BTreeMap<String, String> = serde_json::from_str(json).unwrap();
        assert_eq!(back, names);
    }

    #[test]
    fn the_neutral_answer_names_only_what_was_asked() {
        let e = not_reachable("i-0abc");
        assert_eq!(e.status, axum::http::StatusCode::NOT_FOUND);
        assert!(e.message.contains("\"i-0abc\""), "{}", e.message);
    }
}
