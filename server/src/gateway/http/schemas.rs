//! The shapes of the API's JSON envelopes, for its OpenAPI document (`openapi.rs`): the
//! handlers build these answers with `json!`, and `tests/api_contract.rs` checks every answer
//! against them. Nothing here imports a handler, so handlers can name them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::gateway::aws::targets::Unavailable;
use crate::gateway::facts::Target;
use crate::gateway::sessions::live::Stats;
use crate::gateway::store::audit::StoredEvent;
use crate::gateway::store::labels::Labels;
use crate::gateway::store::notices::Delivery;
use crate::gateway::store::search::Match;
use crate::gateway::store::sessions::SessionView;

/// Every error: a stable code, words for a person, and the request's id (also in the
/// `x-request-id` header) under which the gateway's log has the details.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// `snake_case`: `forbidden`, `invalid_reason`, `unknown_target`, `upstream`, …
    pub code: String,
    /// For a person.
    pub message: String,
    /// The request's id.
    pub request_id: Option<String>,
}

/// `POST /api/v1/auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

/// A person as the API shows them.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserInfo {
    /// The user name.
    pub name: String,
    /// Their roles.
    pub roles: Vec<String>,
}

/// The signed-in person and the CSRF token their state-changing requests must carry in
/// `X-CSRF-Token`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// Who.
    pub user: UserInfo,
    /// The CSRF token of this sign-in.
    pub csrf_token: String,
    /// Whether some role of theirs approves access requests (`/api/v1/me` only).
    pub approver: Option<bool>,
}

/// `POST /api/v1/auth/logout`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignedOut {
    /// Always true.
    pub signed_out: bool,
    /// Where the browser goes next to sign out at the identity provider too (its
    /// `end_session_endpoint`); null for a password sign-in or a provider without one.
    pub redirect: Option<String>,
}

/// `GET /api/v1/targets`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TargetList {
    /// The managed nodes some role of this person reaches.
    pub targets: Vec<TargetEntry>,
    /// The accounts and regions whose nodes could not be listed, and why; empty when every
    /// one answered.
    pub unavailable: Vec<Unavailable>,
}

/// A node of the targets list, with what its sessions need first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TargetEntry {
    /// The node.
    #[serde(flatten)]
    pub target: Target,
    /// Null when no approval is needed.
    pub approval: Option<ApprovalState>,
}

/// What a node's sessions need first, for this person.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalState {
    /// Whether the person may grant themselves access (break-glass).
    pub break_glass: bool,
    /// The roles whose holders may approve.
    pub approvers: Vec<String>,
    /// How many different people must approve.
    pub min_approvals: u32,
    /// The longest grant one may ask for, in seconds.
    pub grant_seconds: u64,
    /// The grant in force, if any.
    pub grant: Option<GrantRef>,
    /// The person's newest pending request for the node, if any.
    pub request: Option<RequestRef>,
}

/// A grant in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct GrantRef {
    /// The request that made it.
    pub request_id: String,
    /// When it ends (milliseconds since the epoch).
    pub expires_at: i64,
}

/// A pending request.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestRef {
    /// Its id.
    pub id: String,
    /// `pending`.
    pub state: String,
}

/// `POST /api/v1/requests`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AskAccess {
    /// The node's id.
    pub target: String,
    /// Why (the roles' reason rules apply; break-glass always needs one).
    #[serde(default)]
    pub reason: Option<String>,
    /// How long a grant, in seconds (1 to the roles' `grant_seconds`; the longest when left
    /// out).
    #[serde(default)]
    pub duration_seconds: Option<u64>,
    /// Grant it now, without an approver (roles that allow break-glass).
    #[serde(default)]
    pub break_glass: Option<bool>,
}

/// `POST /api/v1/requests/{id}/approve`, `/deny`, `/revoke` (the body may be left out).
#[derive(Debug, Deserialize, ToSchema)]
pub struct Decide {
    /// Why (at most 1000 characters).
    #[serde(default)]
    pub comment: Option<String>,
}

/// `GET /api/v1/requests`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestList {
    /// Pending first, then newest.
    pub requests: Vec<crate::gateway::sessions::approvals::RequestView>,
}

/// `POST /api/v1/sessions`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct StartSession {
    /// The node's id.
    pub target: String,
    /// Why (the roles' reason rules decide what is required).
    #[serde(default)]
    pub reason: Option<String>,
    /// The SSM document (default `SSM-SessionManagerRunShell`).
    #[serde(default)]
    pub document: Option<String>,
    /// The document's parameters.
    #[serde(default)]
    pub parameters: Option<BTreeMap<String, Vec<String>>>,
}

/// A session in a listing; `live` only with `scope=all`, for sessions running in this
/// gateway.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListedSession {
    /// The session.
    #[serde(flatten)]
    pub session: SessionView,
    /// Its counters (null: not running here).
    pub live: Option<Stats>,
}

/// `GET /api/v1/sessions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    /// Newest first.
    pub sessions: Vec<ListedSession>,
}

/// `DELETE /api/v1/sessions/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Terminating {
    /// The session.
    pub id: String,
    /// `terminating`.
    pub state: String,
}

/// `GET /api/v1/audit`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub events: Vec<StoredEvent>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/notifications`.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationList {
    /// Newest first.
    pub deliveries: Vec<Delivery>,
}

/// `GET /api/v1/recordings/search`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResult {
    /// The matching lines.
    pub matches: Vec<Match>,
    /// Whether there were more than `limit`.
    pub more: bool,
}

/// `PUT /api/v1/sessions/{id}/labels`: the new tags and note (both replace the old ones; one
/// left out is empty).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelsChange {
    /// Up to 20 tags of up to 40 letters, digits and `- _ . : / #` (stored in lower case).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Up to 2,000 characters (line breaks and tabs allowed).
    #[serde(default)]
    pub note: String,
}

/// The body of `POST /api/v1/sessions/{id}/participants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Invitation {
    /// The user name of the person invited.
    pub user: String,
    /// `write`: they type along; `read`: they watch.
    #[schema(example = "write")]
    pub mode: String,
}

/// The people invited into a session.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParticipantList {
    /// In the order they were invited.
    pub participants: Vec<crate::gateway::store::participants::Participant>,
}

/// One session found by its labels.
#[derive(Debug, Serialize, ToSchema)]
pub struct LabelledSession {
    /// The session.
    pub session: SessionView,
    /// Its labels.
    pub labels: Labels,
}

/// `GET /api/v1/recordings/labels`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LabelSearchResult {
    /// Newest first, at most 50.
    pub sessions: Vec<LabelledSession>,
}

/// `dark` or `light`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Theme {
    /// Light text on a dark background.
    Dark,
    /// Dark text on a light background.
    Light,
}

/// The cursor's shape.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CursorStyle {
    /// A block.
    Block,
    /// A vertical bar.
    Bar,
    /// A line under the character.
    Underline,
}

/// What the terminal's bell does.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Bell {
    /// Nothing.
    None,
    /// The terminal flashes.
    Visual,
    /// A short tone.
    Sound,
}

/// When the terminal page shows its on-screen key bar.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyBar {
    /// On touch screens.
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

/// `GET` and `PUT /api/v1/me/settings`: the person's terminal settings, every key.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsView {
    /// Font size in CSS pixels.
    #[schema(minimum = 8, maximum = 32)]
    pub font_size: i64,
    /// The colours.
    pub theme: Theme,
    /// The cursor's shape.
    pub cursor_style: CursorStyle,
    /// Lines kept above the screen.
    #[schema(minimum = 100, maximum = 100000)]
    pub scrollback: i64,
    /// What the bell does.
    pub bell: Bell,
    /// xterm.js's screen reader mode.
    pub screen_reader: bool,
    /// A selection is copied to the clipboard as it is made.
    pub copy_on_select: bool,
    /// When the on-screen key bar (Esc, Tab, Ctrl, arrows) shows.
    pub key_bar: KeyBar,
    /// The terminal's font.
    pub font_family: FontFamily,
}

/// `PUT /api/v1/me/settings`: some of the keys; one left out keeps its value, `null` puts it
/// back to its default.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsChange {
    /// Font size in CSS pixels (default 14).
    #[schema(minimum = 8, maximum = 32)]
    #[serde(default)]
    pub font_size: Option<i64>,
    /// The colours (default `dark`).
    #[serde(default)]
    pub theme: Option<Theme>,
    /// The cursor's shape (default `block`).
    #[serde(default)]
    pub cursor_style: Option<CursorStyle>,
    /// Lines kept above the screen (default 5000).
    #[schema(minimum = 100, maximum = 100000)]
    #[serde(default)]
    pub scrollback: Option<i64>,
    /// What the bell does (default `none`).
    #[serde(default)]
    pub bell: Option<Bell>,
    /// xterm.js's screen reader mode (default false).
    #[serde(default)]
    pub screen_reader: Option<bool>,
    /// Copy a selection as it is made (default false).
    #[serde(default)]
    pub copy_on_select: Option<bool>,
    /// When the on-screen key bar shows (default `auto`).
    #[serde(default)]
    pub key_bar: Option<KeyBar>,
    /// The terminal's font (default `system`).
    #[serde(default)]
    pub font_family: Option<FontFamily>,
}

/// The terminal's font.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FontFamily {
    /// The machine's own monospace fonts (DejaVu Sans Mono, Cascadia Mono, Menlo, Consolas…).
    System,
    /// JetBrains Mono, shipped by the gateway (SIL OFL 1.1), with programming ligatures where
    /// the browser gives xterm.js the font's data, and the Nerd Font symbols beside it.
    JetbrainsMono,
}
