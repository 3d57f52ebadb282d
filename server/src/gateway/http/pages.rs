//! The pages (askama templates in `web/templates/`, rendered on the server) and the browser
//! assets (`web/dist/`, built by `scripts/web-build`, embedded with rust-embed and served
//! under `/assets/`).
//!
//! Pages carry no secrets: the only per-sign-in value in them is the CSRF token (in
//! `<meta name="csrf-token">`), which the page's own script sends back in `X-CSRF-Token`.
//! Everything a script needs from the server travels in `data-*` attributes, because the
//! Content-Security-Policy forbids inline script. Pages are `Cache-Control: no-store`; assets
//! carry an `ETag` (from their SHA-256) and `Cache-Control: no-cache`, so a browser revalidates
//! them cheaply and never runs yesterday's script against today's gateway.
//!
//! Routes: `/` (to `/targets` or `/login`), `/login`, `/targets`, `/sessions`,
//! `/sessions/{id}` (the terminal), `/sessions/{id}/play[?t=SECONDS]` (the recording, in
//! asciinema-player), `/audit` (admins and auditors), `/assets/{*path}`. The pages of
//! just-in-time access (`/requests`, `/requests/new`, `/connect/{target}`) are in
//! `access_pages`, which uses this module's helpers. A page that needs a sign-in sends a
//! browser without one to `/login?next=…`, which returns it there afterwards.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use rust_embed::RustEmbed;
use tower_http::set_header::SetResponseHeaderLayer;

use super::audit::{self as audit_api, Params};
use super::error::ApiError;
use super::extract::{SignedIn, client_of, signed_in};
use super::layout::{Layout, encode_component, local_path};
use super::state::AppState;
use crate::gateway::policy;
use crate::gateway::sessions::{self, engine};
use crate::gateway::store::audit::{self, StoredEvent};
use crate::gateway::store::db::now_ms;
use crate::gateway::store::labels::Labels;
use crate::gateway::store::search;
use crate::gateway::store::sessions::{SessionView, StateFilter};

/// The browser assets: `web/dist/`, made by `scripts/web-build`. Debug builds read the folder
/// at run time; release builds embed it (`build.rs` makes cargo re-embed when it changes).
/// `allow_missing` lets the crate build before the web build ran; the pages then load
/// without their scripts, and `/assets/…` answers 404.
#[derive(RustEmbed)]
#[folder = "web/dist"]
#[allow_missing = true]
struct Assets;

/// How long a page waits for the node list (to show a node's name) before showing ids only.
const NAMES_TIMEOUT: Duration = Duration::from_secs(2);

/// The page and asset routes.
pub fn routes() -> Router<Arc<AppState>> {
    let pages = Router::new()
        .route("/", get(index))
        .route("/login", get(login))
        .route("/targets", get(targets_page))
        .route("/sessions", get(sessions_page))
        .route("/sessions/{id}", get(terminal_page))
        .route("/sessions/{id}/play", get(play_page))
        .route("/audit", get(audit_page))
        .route("/search", get(search_page))
        .route("/live", get(live_page))
        // Pages hold a CSRF token: never store them.
        .layer(SetResponseHeaderLayer::overriding(
            CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    Router::new()
        .merge(pages)
        .route("/assets/{*path}", get(asset))
}

// ---------------------------------------------------------------------------------------------
// Shared layout

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    /// Where to go after signing in (a local path, checked).
    next: String,
    /// "Sign in with …" and where it goes, with `[auth.oidc]`.
    sso: Option<(String, String)>,
    /// Whether the password form is shown open (`auth.local`); with `local = false` and
    /// break-glass names it is folded away, without them it is not shown at all.
    local: bool,
    /// Whether break-glass names exist (`auth.local_break_glass`).
    break_glass: bool,
    /// Just signed out (`?signed_out`): said, and behind a proxy a link signs in again.
    signed_out: bool,
    /// Behind a proxy that signs people in (`[auth.proxy]`): where "Sign in again" goes.
    proxy_again: Option<String>,
}

#[derive(Template)]
#[template(path = "targets.html")]
struct TargetsPage {
    layout: Layout,
    /// Whether this user may open sessions at all (roles).
    can_open: bool,
    /// Why not, when they may not.
    cannot_open_why: String,
    /// Whether the person holds no role at all (single sign-on: no group of theirs maps to one).
    no_roles: bool,
}

/// One row of the sessions table.
#[derive(Debug)]
struct SessionRow {
    view: SessionView,
    node_name: String,
    started: String,
    started_iso: String,
    ended: String,
    ended_iso: String,
    duration: String,
    live: bool,
    can_attach: bool,
    can_terminate: bool,
}

#[derive(Template)]
#[template(path = "sessions.html")]
struct SessionsPage {
    layout: Layout,
    /// `active`, `ended` or `all`.
    filter: &'static str,
    /// Whether the table has a user column (the user sees everyone's sessions).
    all_users: bool,
    rows: Vec<SessionRow>,
}

#[derive(Template)]
#[template(path = "terminal.html")]
struct TerminalPage {
    layout: Layout,
    view: SessionView,
    node_name: String,
    /// The node's platform (Linux, Windows, MacOS; empty when not known): file transfer works
    /// on Linux nodes only, which the Files panel says.
    node_platform: String,
    live: bool,
    can_attach: bool,
    can_terminate: bool,
    /// Whether the page observes (read-only) rather than attaches (`?mode=observe`).
    observe: bool,
    /// Whether the page is one tab of another terminal page (`?embed=1`, in its frame): no top
    /// bar and no tab strip of its own.
    embed: bool,
    /// `write` or `read` when the person was invited into someone else's session; else empty.
    join_mode: String,
    /// Whether the page offers Share (the owner, with a role that has `join_others`).
    can_share: bool,
    /// The server's clock (ms), so the page's elapsed time does not depend on the browser's.
    now_ms: i64,
    ended_at: i64,
    end_reason: String,
}

#[derive(Template)]
#[template(path = "play.html")]
struct PlayPage {
    layout: Layout,
    view: SessionView,
    node_name: String,
    live: bool,
    started: String,
    started_iso: String,
    /// Where playback starts, in seconds (`?t=`), as the player takes it.
    start_at: String,
    /// The session's tags and note.
    labels: Labels,
    /// The tags joined by spaces, for the form.
    labels_text: String,
    /// Each tag and the search for it.
    tag_links: Vec<(String, String)>,
    /// Whether the viewer may change them.
    can_label: bool,
}

/// One row of the audit table.
#[derive(Debug)]
struct AuditRow {
    event: StoredEvent,
    /// UTC, to the second, and RFC 3339 with milliseconds.
    at: String,
    at_iso: String,
    /// The detail as key/value pairs to read ([`detail_pairs`]); empty for `{}`.
    detail: Vec<(String, String)>,
}

/// An audit event's detail as pairs a person reads down a list rather than JSON wrapping a
/// few characters a line: each key of the object with its value (a string as itself, a list
/// of strings joined with commas, anything else as compact JSON). A detail that is not an
/// object is one pair under `detail`; `{}` and `null` give none.
fn detail_pairs(detail: &serde_json::Value) -> Vec<(String, String)> {
    use serde_json::Value;
    let text = |value: &Value| match value {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    match detail {
        Value::Null => Vec::new(),
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        other => vec![("detail".to_owned(), text(other))],
    }
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    /// The filters as given, to fill the form again.
    params: Params,
    /// What is wrong with them, if anything.
    error: String,
    rows: Vec<AuditRow>,
    /// Whether a filter is set.
    filtered: bool,
    /// The first page with these filters, when this is a later page; else empty.
    newest_href: String,
    /// The next (older) page; empty on the last.
    older_href: String,
    /// Suggestions for the type filter.
    kinds: &'static [&'static str],
}

/// One row of the live-sessions table.
#[derive(Debug)]
struct LiveRow {
    view: SessionView,
    node_name: String,
    started: String,
    started_iso: String,
    duration: String,
    /// "12.3 KiB", or "?" when another gateway runs it.
    bytes_out: String,
    /// Whether the owner's browser is attached.
    attached: bool,
    /// "attached", "detached", with observers, or "?".
    browser: String,
    can_observe: bool,
    can_terminate: bool,
}

/// A running session shared with the person (they were invited into it).
#[derive(Debug)]
struct SharedRow {
    view: SessionView,
    node_name: String,
    started: String,
    started_iso: String,
    /// `write` or `read`.
    mode: String,
}

#[derive(Template)]
#[template(path = "live.html")]
struct LivePage {
    layout: Layout,
    /// Whether the person oversees everyone's live sessions (the table of all of them).
    oversees: bool,
    rows: Vec<LiveRow>,
    /// The running sessions others invited the person into.
    shared: Vec<SharedRow>,
}

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage {
    layout: Layout,
    /// The query as typed.
    q: String,
    /// Whether a search ran (a query was given).
    searched: bool,
    /// What is wrong with the query, if anything.
    error: String,
    matches: Vec<search::Match>,
    /// Whether there were more than shown.
    more: bool,
    /// Sessions whose tags or note contain the text.
    labelled: Vec<(SessionView, Labels)>,
    /// Whether the user reads everyone's sessions.
    all_users: bool,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    status: u16,
    title: String,
    message: String,
}

/// A page that could not be shown: an HTML error page with the status of the API error.
#[derive(Debug)]
pub(super) struct PageError {
    error: ApiError,
    layout: Box<Layout>,
}

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            layout: Box::new(Layout::signed_out("")),
        }
    }
}

impl PageError {
    pub(super) fn new(error: ApiError, signed: &SignedIn) -> Self {
        Self {
            error,
            layout: Box::new(Layout::signed_in(signed, "", "")),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.error.status;
        let page = ErrorPage {
            layout: *self.layout,
            status: status.as_u16(),
            title: status
                .canonical_reason()
                .unwrap_or("Something went wrong")
                .to_owned(),
            message: self.error.message,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => ApiError::internal(format!("rendering the error page: {e}")).into_response(),
        }
    }
}

pub(super) fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            PageError::from(ApiError::internal(format!("rendering a page: {e}"))).into_response()
        }
    }
}

/// Why a page is not shown to a request.
#[derive(Debug)]
pub(super) enum Denied {
    /// Not signed in: to the sign-in page, which comes back here.
    SignIn(Redirect),
    /// The sign-in could not be checked.
    Error(ApiError),
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Self::SignIn(redirect) => redirect.into_response(),
            Self::Error(e) => PageError::from(e).into_response(),
        }
    }
}

/// The signed-in user of a page request.
pub(super) async fn require_sign_in(state: &AppState, parts: &Parts) -> Result<SignedIn, Denied> {
    match signed_in(state, &parts.headers, client_of(parts)).await {
        Ok(Some(signed)) => Ok(signed),
        Ok(None) => {
            let here = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
            let to = format!("/login?next={}", encode_component(here));
            Err(Denied::SignIn(Redirect::to(&to)))
        }
        Err(e) => Err(Denied::Error(e)),
    }
}

/// Node names by id, best effort: an empty map when AWS is slow or failing (pages then show
/// ids only; the targets page reports such errors itself).
pub(super) async fn node_names(state: &AppState) -> HashMap<String, String> {
    node_facts(state)
        .await
        .into_iter()
        .map(|(id, (name, _))| (id, name))
        .collect()
}

/// Each node's name and platform (Linux, Windows, MacOS), by id; as [`node_names`].
async fn node_facts(state: &AppState) -> HashMap<String, (String, String)> {
    let engine = &state.engine;
    match tokio::time::timeout(NAMES_TIMEOUT, engine.targets.all(&engine.aws)).await {
        Ok(Ok(list)) => list
            .targets
            .iter()
            .map(|t| (t.id.clone(), (t.name.clone(), t.platform.clone())))
            .collect(),
        Ok(Err(e)) => {
            tracing::debug!("node names for a page: {e}");
            HashMap::new()
        }
        Err(_) => HashMap::new(),
    }
}

/// `2026-11-27 10:22:33 UTC` and its ISO 8601 form, from milliseconds since the epoch.
fn times(ms: i64) -> (String, String) {
    let Ok(at) =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms).saturating_mul(1_000_000))
    else {
        return (String::new(), String::new());
    };
    let (y, mo, d) = (at.year(), u8::from(at.month()), at.day());
    let (h, mi, s) = (at.hour(), at.minute(), at.second());
    (
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC"),
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
    )
}

/// `1h 02m 03s`, `2m 03s`, `3s`.
fn duration_text(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

fn is_live(view: &SessionView) -> bool {
    matches!(view.state.as_str(), "starting" | "active")
}

// ---------------------------------------------------------------------------------------------
// Pages

/// `/`: the targets when signed in, else the sign-in page.
async fn index(State(state): State<Arc<AppState>>, parts: Parts) -> Result<Response, PageError> {
    let signed = signed_in(&state, &parts.headers, client_of(&parts)).await?;
    Ok(Redirect::to(if signed.is_some() {
        "/targets"
    } else {
        "/login"
    })
    .into_response())
}

/// `/login?next=/path`.
async fn login(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    parts: Parts,
) -> Result<Response, PageError> {
    let next = local_path(query.get("next")).unwrap_or_else(|| "/targets".to_owned());
    if signed_in(&state, &parts.headers, client_of(&parts))
        .await?
        .is_some()
    {
        return Ok(Redirect::to(&next).into_response());
    }
    // Just signed out: the proxy still sends its headers, so signing in from them now would
    // undo the sign-out; the page offers it instead.
    let signed_out = query.contains_key("signed_out");
    if state.identity.proxy.is_some()
        && !signed_out
        && let Some(answer) = super::sso::proxy_login(&state, &parts, &next).await
    {
        return Ok(answer);
    }
    let sso = state.identity.oidc.as_deref().map(|oidc| {
        (
            format!("Sign in with {}", oidc.display_name()),
            format!("/auth/oidc/login?next={}", encode_component(&next)),
        )
    });
    let auth = &state.config.auth;
    let proxy_again = state
        .identity
        .proxy
        .is_some()
        .then(|| format!("/login?next={}", encode_component(&next)));
    Ok(render(&LoginPage {
        layout: Layout::signed_out("login.js"),
        next,
        sso,
        local: auth.local,
        break_glass: !auth.local_break_glass.is_empty(),
        proxy_again,
        signed_out,
    }))
}

/// `/targets`: the nodes (fetched by the page from the API) and the reason prompt.
async fn targets_page(State(state): State<Arc<AppState>>, parts: Parts) -> Response {
    let signed = match require_sign_in(&state, &parts).await {
        Ok(signed) => signed,
        Err(denied) => return denied.into_response(),
    };
    let (can_open, cannot_open_why) = match policy::may_open_session(&signed.user, "") {
        Ok(()) => (true, String::new()),
        Err(why) => (false, why),
    };
    render(&TargetsPage {
        layout: Layout::signed_in(&signed, "targets", "targets.js"),
        can_open,
        cannot_open_why,
        no_roles: signed.user.roles.is_empty(),
    })
}

/// `/sessions?state=active|ended|all`: the sessions this user may see, rendered here.
async fn sessions_page(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    parts: Parts,
) -> Response {
    let signed = match require_sign_in(&state, &parts).await {
        Ok(signed) => signed,
        Err(denied) => return denied.into_response(),
    };
    let filter = match query.get("state").map(String::as_str) {
        Some("active") => "active",
        Some("ended") => "ended",
        _ => "all",
    };
    let state_filter = StateFilter::parse(filter).unwrap_or(StateFilter::All);
    let views = match engine::list(&state.engine, &signed.user, state_filter).await {
        Ok(views) => views,
        Err(e) => return PageError::new(e.into(), &signed).into_response(),
    };
    let names = node_names(&state).await;
    let now = now_ms();
    let rows = views
        .into_iter()
        .map(|view| {
            let (started, started_iso) = times(view.started_at);
            let (ended, ended_iso) = view.ended_at.map(times).unwrap_or_default();
            let live = is_live(&view);
            SessionRow {
                node_name: names.get(&view.target).cloned().unwrap_or_default(),
                started,
                started_iso,
                ended,
                ended_iso,
                duration: duration_text(view.ended_at.unwrap_or(now) - view.started_at),
                live,
                can_attach: live && policy::may_attach(&signed.user, view.user_id()),
                can_terminate: live && policy::may_terminate(&signed.user, view.user_id()),
                view,
            }
        })
        .collect();
    render(&SessionsPage {
        layout: Layout::signed_in(&signed, "sessions", "sessions.js"),
        filter,
        all_users: policy::sees_all_sessions(&signed.user),
        rows,
    })
}

/// What a page about one session needs: the signed-in user, the session as they may see it,
/// and its node's name; or the page that says why not (sign-in, not found, not allowed).
async fn session_for_page(
    state: &AppState,
    parts: &Parts,
    id: &str,
) -> Result<(SignedIn, SessionView, String), Response> {
    let signed = require_sign_in(state, parts)
        .await
        .map_err(IntoResponse::into_response)?;
    let view = match engine::visible_one(&state.engine, &signed.user, id).await {
        Ok(view) => view,
        Err(e) => return Err(PageError::new(e.into(), &signed).into_response()),
    };
    let node_name = node_names(state)
        .await
        .remove(&view.target)
        .unwrap_or_default();
    Ok((signed, view, node_name))
}

/// `/sessions/{id}[?mode=observe][?embed=1][?tabs=ID,…]`: the terminal; read-only for an
/// observer. `embed=1` is the same page as one tab of another terminal page (in a frame of the
/// gateway's own pages only: [`EMBED_CSP`]); `tabs` is read by the page's script (tabs.js).
async fn terminal_page(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    parts: Parts,
) -> Response {
    let signed = match require_sign_in(&state, &parts).await {
        Ok(signed) => signed,
        Err(denied) => return denied.into_response(),
    };
    // The people invited into a session open it here too.
    let (view, invited) =
        match sessions::participants::visible_or_invited(&state.engine, &signed.user, &id).await {
            Ok(found) => found,
            Err(e) => return PageError::new(e.into(), &signed).into_response(),
        };
    let (node_name, node_platform) = node_facts(&state)
        .await
        .remove(&view.target)
        .unwrap_or_default();
    // Whether it runs is the row's word (another gateway may hold it), not this process's.
    let live = is_live(&view);
    let observe = query.get("mode").map(String::as_str) == Some("observe")
        && policy::may_observe(&signed.user, view.user_id());
    let embed = query.get("embed").map(String::as_str) == Some("1");
    let join_mode = match (&invited, observe) {
        (Some(p), false) if !policy::may_attach(&signed.user, view.user_id()) => p.mode.clone(),
        _ => String::new(),
    };
    let mut response = render(&TerminalPage {
        layout: Layout::signed_in(&signed, "", "terminal.js"),
        node_name,
        node_platform,
        live,
        observe,
        can_share: policy::may_invite(&signed.user, &view.user, view.user_id()).is_ok(),
        join_mode,
        can_attach: policy::may_attach(&signed.user, view.user_id()),
        can_terminate: policy::may_terminate(&signed.user, view.user_id()),
        now_ms: now_ms(),
        ended_at: view.ended_at.unwrap_or(0),
        end_reason: view.end_reason.clone().unwrap_or_default(),
        embed,
        view,
    });
    if embed {
        response.headers_mut().insert(
            axum::http::header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(EMBED_CSP),
        );
        response.headers_mut().insert(
            axum::http::header::X_FRAME_OPTIONS,
            HeaderValue::from_static("SAMEORIGIN"),
        );
    }
    // The ligatures addon would ask the browser for the computer's fonts (a permission
    // prompt); the terminal uses the fonts the gateway ships, so the page may not ask.
    response.headers_mut().insert(
        axum::http::HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("local-fonts=()"),
    );
    response
}

/// The Content-Security-Policy of a terminal page shown as a tab (`?embed=1`): the gateway's
/// ([`super::CSP`]) except that the gateway's own pages may frame it (`frame-ancestors
/// 'self'`); no other site can.
pub const EMBED_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'self'";

/// The Content-Security-Policy of the playback page: the gateway's ([`super::CSP`]) with
/// `'wasm-unsafe-eval'`, because asciinema-player's terminal emulator is WebAssembly (compiled
/// from bytes inside the player's own script: no other source, and still no inline script).
pub const PLAYER_CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
    font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// `?t=SECONDS` of the playback page: a finite, non-negative number of seconds (fractions
/// allowed); anything else starts at the beginning.
fn start_at(t: Option<&String>) -> f64 {
    t.and_then(|t| t.trim().parse::<f64>().ok())
        .filter(|t| t.is_finite() && *t >= 0.0)
        .map_or(0.0, |t| (t * 1000.0).round() / 1000.0)
}

/// `/sessions/{id}/play[?t=SECONDS]`: the session's recording in asciinema-player, for whoever
/// may read the recording (its owner; those who see every session once it has ended).
async fn play_page(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    parts: Parts,
) -> Response {
    let (signed, view, node_name) = match session_for_page(&state, &parts, &id).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    if !policy::may_read_recording(&signed.user, view.user_id(), view.is_running()) {
        let refusal = sessions::Error::SessionRunning(format!(
            "session {id} of {} is still running: watch it live from the live sessions page \
             (observing is audited and shown to {}); its recording opens to you once it has \
             ended",
            view.user, view.user
        ));
        return PageError::new(refusal.into(), &signed).into_response();
    }
    let labels = match sessions::labels::get(&state.engine, &signed.user, &view.id).await {
        Ok(labels) => labels,
        Err(e) => return PageError::new(e.into(), &signed).into_response(),
    };
    let (started, started_iso) = times(view.started_at);
    let page = PlayPage {
        layout: Layout::signed_in(&signed, "sessions", "play.js"),
        can_label: policy::may_label(&signed.user, view.user_id(), view.is_running()),
        labels_text: labels.tags.join(" "),
        tag_links: labels
            .tags
            .iter()
            .map(|t| (t.clone(), format!("/search?q={}", encode_component(t))))
            .collect(),
        labels,
        node_name,
        live: is_live(&view),
        started,
        started_iso,
        start_at: start_at(query.get("t")).to_string(),
        view,
    };
    let mut response = render(&page);
    response.headers_mut().insert(
        axum::http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PLAYER_CSP),
    );
    response
}

/// `/search?q=TEXT`: lines the user's readable sessions printed, each a link to the recording
/// at that moment. Same rules as `GET /api/v1/recordings/search`; a bad query is shown with
/// status 422 above the form as typed.
async fn search_page(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    parts: Parts,
) -> Response {
    let signed = match require_sign_in(&state, &parts).await {
        Ok(signed) => signed,
        Err(denied) => return denied.into_response(),
    };
    let q = query.get("q").cloned().unwrap_or_default();
    let mut page = SearchPage {
        layout: Layout::signed_in(&signed, "search", ""),
        searched: query.contains_key("q"),
        q,
        error: String::new(),
        matches: Vec::new(),
        more: false,
        labelled: Vec::new(),
        all_users: policy::sees_all_sessions(&signed.user),
    };
    if !page.searched {
        return render(&page);
    }
    let q = match search::check_query(&page.q) {
        Ok(q) => q,
        Err(message) => {
            page.error = message;
            return (StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response();
        }
    };
    match engine::search(
        &state.engine,
        &signed.user,
        &signed.client,
        &q,
        search::DEFAULT_LIMIT,
    )
    .await
    {
        Ok((matches, more)) => {
            page.matches = matches;
            page.more = more;
        }
        Err(e) => return PageError::new(e.into(), &signed).into_response(),
    }
    match sessions::labels::find(&state.engine, &signed.user, &q).await {
        Ok(labelled) => page.labelled = labelled,
        Err(e) => return PageError::new(e.into(), &signed).into_response(),
    }
    render(&page)
}

/// `1.2 MiB`, `3.4 KiB`, `56 B`.
fn bytes_text(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// `/live`: everyone's running sessions with their counters, to observe or terminate them
/// (roles that may observe or terminate others' sessions; others get 403).
async fn live_page(State(state): State<Arc<AppState>>, parts: Parts) -> Response {
    let signed = match require_sign_in(&state, &parts).await {
        Ok(signed) => signed,
        Err(denied) => return denied.into_response(),
    };
    let shared = match sessions::participants::shared_with(&state.engine, &signed.user).await {
        Ok(shared) => shared,
        Err(e) => return PageError::new(e.into(), &signed).into_response(),
    };
    let oversees = policy::oversees_live_sessions(&signed.user);
    if !oversees && shared.is_empty() {
        let e = ApiError::forbidden(
            "only roles that may observe or terminate others' sessions see everyone's live \
             sessions, and nobody has shared a running session with you",
        );
        return PageError::new(e, &signed).into_response();
    }
    let views = if oversees {
        match engine::list(&state.engine, &signed.user, StateFilter::Active).await {
            Ok(views) => views,
            Err(e) => return PageError::new(e.into(), &signed).into_response(),
        }
    } else {
        Vec::new()
    };
    let stats = engine::live_stats(&state.engine, &views).await;
    let names = node_names(&state).await;
    let shared = shared
        .into_iter()
        .map(|(view, mode)| {
            let (started, started_iso) = times(view.started_at);
            SharedRow {
                node_name: names.get(&view.target).cloned().unwrap_or_default(),
                started,
                started_iso,
                mode,
                view,
            }
        })
        .collect();
    let now = now_ms();
    let rows = views
        .into_iter()
        .zip(stats)
        .map(|(view, stats)| {
            let (started, started_iso) = times(view.started_at);
            let browser = match &stats {
                None => "?".to_owned(),
                Some(s) => {
                    let mut text = if s.attached { "attached" } else { "detached" }.to_owned();
                    if !s.observers.is_empty() {
                        text.push_str(&format!("; observed by {}", s.observers.join(", ")));
                    }
                    if !s.participants.is_empty() {
                        text.push_str(&format!("; shared with {}", s.participants.join(", ")));
                    }
                    text
                }
            };
            LiveRow {
                node_name: names.get(&view.target).cloned().unwrap_or_default(),
                started,
                started_iso,
                duration: duration_text(now - view.started_at),
                bytes_out: stats
                    .as_ref()
                    .map_or_else(|| "?".to_owned(), |s| bytes_text(s.bytes_out)),
                attached: stats.as_ref().is_some_and(|s| s.attached),
                browser,
                can_observe: policy::may_observe(&signed.user, view.user_id()),
                can_terminate: policy::may_terminate(&signed.user, view.user_id()),
                view,
            }
        })
        .collect();
    render(&LivePage {
        layout: Layout::signed_in(&signed, "live", "sessions.js"),
        oversees,
        rows,
        shared,
    })
}

/// `/audit?from=…&to=…&actor=…&target=…&type=…&session_id=…&limit=…&cursor=…`: the audit log,
/// newest first, with the API's filters and paging (admins and auditors).
async fn audit_page(
    State(state): State<Arc<AppState>>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
    parts: Parts,
) -> Response {
    let signed = match require_sign_in(&state, &parts).await {
        Ok(signed) => signed,
        Err(denied) => return denied.into_response(),
    };
    if !audit_api::may_read_audit(&signed.user) {
        crate::gateway::telemetry::denied(crate::gateway::telemetry::Denied::Audit);
        let e = ApiError::forbidden("only the admin and auditor roles may read the audit log");
        return PageError::new(e, &signed).into_response();
    }
    let pairs = query.map(|Query(p)| p).unwrap_or_default();
    let (params, request) = match Params::from_pairs(&pairs) {
        Ok(params) => {
            let request = params.parse();
            (params, request)
        }
        Err(e) => (Params::default(), Err(e)),
    };
    let mut page = AuditPage {
        layout: Layout::signed_in(&signed, "audit", ""),
        filtered: params.filtered(),
        params,
        error: String::new(),
        rows: Vec::new(),
        newest_href: String::new(),
        older_href: String::new(),
        kinds: audit::kind::ALL,
    };
    let request = match request {
        Ok(request) => request,
        Err(e) => {
            page.error = e.message;
            return (StatusCode::BAD_REQUEST, render(&page)).into_response();
        }
    };
    let result = match audit_api::read_page(&state.engine.db, &request).await {
        Ok(result) => result,
        Err(e) => return PageError::new(e.into(), &signed).into_response(),
    };
    let link = |cursor: Option<&str>| {
        let query = page.params.query_string(cursor);
        if query.is_empty() {
            "/audit".to_owned()
        } else {
            format!("/audit?{query}")
        }
    };
    let older_href = result
        .next_cursor
        .as_deref()
        .map(|c| link(Some(c)))
        .unwrap_or_default();
    let newest_href = if request.before.is_some() {
        link(None)
    } else {
        String::new()
    };
    page.older_href = older_href;
    page.newest_href = newest_href;
    page.rows = result
        .events
        .into_iter()
        .map(|event| {
            let (at, _) = times(event.at);
            let detail = detail_pairs(&event.detail);
            AuditRow {
                at,
                at_iso: audit::rfc3339_ms(event.at),
                detail,
                event,
            }
        })
        .collect();
    render(&page)
}

// ---------------------------------------------------------------------------------------------
// Assets

/// Whether `path` is a plain relative path (no `..`, no hidden or empty segments).
fn safe_asset_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 256
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && !seg.starts_with('.') && !seg.contains('\\'))
}

/// The Content-Type of an asset by its extension (`.mjs` is JavaScript: browsers refuse a
/// module script of any other type, and `nosniff` is on).
fn content_type(path: &str, guessed: &str) -> String {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    match ext {
        "js" | "mjs" => "text/javascript; charset=utf-8".into(),
        "css" => "text/css; charset=utf-8".into(),
        "svg" => "image/svg+xml".into(),
        "png" => "image/png".into(),
        "json" | "map" => "application/json".into(),
        "woff2" => "font/woff2".into(),
        "woff" => "font/woff".into(),
        _ if path.contains("/LICENSE") => "text/plain; charset=utf-8".into(),
        _ => guessed.to_owned(),
    }
}

/// `GET /assets/{*path}`.
async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let not_found = || ApiError::not_found("not_found", "no such asset").into_response();
    if !safe_asset_path(&path) {
        return not_found();
    }
    let Some(file) = Assets::get(&path) else {
        return not_found();
    };
    let hash = file.metadata.sha256_hash();
    let etag = format!("\"{}\"", hex::encode(hash.get(..16).unwrap_or(&hash)));
    let etag_value = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\""));
    let cache = HeaderValue::from_static("no-cache");
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if fresh {
        return (
            StatusCode::NOT_MODIFIED,
            [(ETAG, etag_value), (CACHE_CONTROL, cache)],
        )
            .into_response();
    }
    let kind = content_type(&path, file.metadata.mimetype());
    let kind = HeaderValue::from_str(&kind)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    (
        [
            (CONTENT_TYPE, kind),
            (ETAG, etag_value),
            (CACHE_CONTROL, cache),
        ],
        file.data.into_owned(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_must_be_a_local_path() {
        let ok = |s: &str| local_path(Some(&s.to_owned()));
        assert_eq!(ok("/sessions/abc").as_deref(), Some("/sessions/abc"));
        assert_eq!(ok("/targets?q=web").as_deref(), Some("/targets?q=web"));
        assert_eq!(ok("//evil.example/"), None);
        assert_eq!(ok("/\\evil.example/"), None);
        assert_eq!(ok("https://evil.example/"), None);
        assert_eq!(ok("javascript:alert(1)"), None);
        assert_eq!(ok("/a\nb"), None);
        assert_eq!(local_path(None), None);
    }

    #[test]
    fn next_is_encoded_for_the_query() {
        assert_eq!(
            encode_component("/targets?q=a b&x=1"),
            "/targets%3Fq%3Da%20b%26x%3D1"
        );
    }

    #[test]
    fn audit_detail_reads_as_pairs() {
        use serde_json::json;
        let pairs = detail_pairs(&json!({
            "approvers": ["bob", "carol"],
            "break_glass": false,
            "limits": {"idle": 900},
            "why": "role operator",
        }));
        let want = [
            ("approvers", "bob, carol"),
            ("break_glass", "false"),
            ("limits", r#"{"idle":900}"#),
            ("why", "role operator"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(pairs, want);
        assert!(detail_pairs(&json!({})).is_empty());
        assert!(detail_pairs(&json!(null)).is_empty());
        assert_eq!(
            detail_pairs(&json!([1, 2])),
            vec![("detail".to_owned(), "[1,2]".to_owned())]
        );
    }

    #[test]
    fn asset_paths() {
        assert!(safe_asset_path("vendor/xterm/xterm.mjs"));
        assert!(safe_asset_path("porthole.css"));
        assert!(!safe_asset_path("../Cargo.toml"));
        assert!(!safe_asset_path("vendor/../../x"));
        assert!(!safe_asset_path("vendor//x"));
        assert!(!safe_asset_path(".hidden"));
        assert!(!safe_asset_path(""));
    }

    #[test]
    fn asset_types() {
        assert_eq!(
            content_type("vendor/xterm/xterm.mjs", "x"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            content_type("terminal.js", "x"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("porthole.css", "x"), "text/css; charset=utf-8");
        assert_eq!(content_type("favicon.svg", "x"), "image/svg+xml");
        assert_eq!(
            content_type("a.bin", "application/octet-stream"),
            "application/octet-stream"
        );
    }

    #[test]
    fn playback_start_times() {
        let t = |s: &str| start_at(Some(&s.to_owned()));
        assert_eq!(t("12"), 12.0);
        assert_eq!(t(" 1.5 "), 1.5);
        assert_eq!(t("0.12345"), 0.123);
        assert_eq!(t("-3"), 0.0);
        assert_eq!(t("NaN"), 0.0);
        assert_eq!(t("inf"), 0.0);
        assert_eq!(t("1:02"), 0.0);
        assert_eq!(start_at(None), 0.0);
        // The player's CSP is the gateway's plus WebAssembly, nothing else.
        assert_eq!(
            PLAYER_CSP
                .replace(" 'wasm-unsafe-eval'", "")
                .split_whitespace()
                .collect::<Vec<_>>(),
            crate::gateway::http::CSP
                .split_whitespace()
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_embedded_terminal_may_be_framed_by_the_gateway_only() {
        // The gateway's CSP with frame-ancestors 'self' instead of 'none', nothing else.
        assert_eq!(
            EMBED_CSP
                .replace("frame-ancestors 'self'", "frame-ancestors 'none'")
                .split_whitespace()
                .collect::<Vec<_>>(),
            crate::gateway::http::CSP
                .split_whitespace()
                .collect::<Vec<_>>()
        );
        assert_eq!(content_type("vendor/fonts/a.woff", "x"), "font/woff");
    }

    #[test]
    fn times_and_durations() {
        assert_eq!(
            times(1_795_000_000_123),
            (
                "2026-11-18 11:06:40 UTC".into(),
                "2026-11-18T11:06:40Z".into()
            )
        );
        assert_eq!(duration_text(3_400), "3s");
        assert_eq!(duration_text(123_000), "2m 03s");
        assert_eq!(duration_text(3_723_000), "1h 02m 03s");
        assert_eq!(duration_text(-5), "0s");
        assert_eq!(bytes_text(56), "56 B");
        assert_eq!(bytes_text(3 * 1024 + 512), "3.5 KiB");
        assert_eq!(bytes_text(5 << 20), "5.0 MiB");
    }

    /// User text is escaped by askama (numeric entities); the browser test checks a reason on
    /// the sessions page.
    #[test]
    fn templates_escape_user_text() {
        let page = ErrorPage {
            layout: Layout::signed_out(""),
            status: 400,
            title: "Bad".into(),
            message: "<script>alert(1)</script>".into(),
        };
        let html = page.render().unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(
            html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{html}"
        );
    }
}
