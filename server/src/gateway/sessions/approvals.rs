//! Just-in-time access (`docs/approvals.md`): a person asks for a node for a reason and a time
//! ([`ask`]); approvers approve or deny with a comment ([`decide`]); enough approvals make a
//! grant, under which sessions start ([`grant_for`], asked by `engine::start`) until it ends
//! ([`sweep`]) or is revoked ([`revoke`], which ends its sessions). Every step is audited and
//! queued for the webhooks (`notify`) in the transaction that makes it.

use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use super::judge::{Asked, judge};
use super::{Engine, Error};
use crate::gateway::facts::{Target, User};
use crate::gateway::notify::{self, Notice, Topic};
use crate::gateway::policy::{self, ApprovalNeed};
use crate::gateway::store::audit::{self, Client, Event, kind};
use crate::gateway::store::db::{WriteTx, now_ms};
use crate::gateway::store::requests::{self as rows, Ending, NewRequest, Request, Verdict};
use crate::gateway::store::sessions::{self as session_rows, SessionView};

/// Most requests one person may have pending at once.
pub const MAX_PENDING: i64 = 10;
/// Longest comment on a decision, in characters.
pub const MAX_COMMENT: usize = 1000;
/// How often expired requests and grants are looked for.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Why a request or a decision was refused: each is one answer of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A start needs a grant and the person has none (403).
    ApprovalRequired,
    /// Nobody approves their own request (403).
    SelfApproval,
    /// The person holds none of the request's approver roles (403).
    NotAnApprover,
    /// No role of the person allows break-glass on the node (403).
    BreakGlassNotAllowed,
    /// The person already approved or denied it (409).
    AlreadyDecided,
    /// It is no longer pending (or, to revoke, no longer in force) (409).
    NotPending,
    /// A request for the node is already waiting (409).
    RequestPending,
    /// A grant for the node is already in force (409).
    GrantActive,
    /// The node needs no approval (409).
    NotRequired,
    /// Too many requests pending (409).
    TooMany,
    /// The duration is outside 1 to the longest grant (422).
    InvalidDuration,
    /// The comment is too long or has control characters (422).
    InvalidComment,
    /// No such request, or not one the person may see (404).
    UnknownRequest,
}

impl Refused {
    /// The API's error code.
    pub fn code(self) -> &'static str {
        match self {
            Self::ApprovalRequired => "approval_required",
            Self::SelfApproval => "self_approval",
            Self::NotAnApprover => "not_an_approver",
            Self::BreakGlassNotAllowed => "break_glass_not_allowed",
            Self::AlreadyDecided => "already_decided",
            Self::NotPending => "request_not_pending",
            Self::RequestPending => "request_pending",
            Self::GrantActive => "grant_active",
            Self::NotRequired => "approval_not_required",
            Self::TooMany => "too_many_requests",
            Self::InvalidDuration => "invalid_duration",
            Self::InvalidComment => "invalid_comment",
            Self::UnknownRequest => "unknown_request",
        }
    }

    fn with(self, message: impl Into<String>) -> Error {
        Error::Access(self, message.into())
    }
}

/// What a person asks for.
#[derive(Debug, Clone)]
pub struct Ask {
    /// The node's id.
    pub target: String,
    /// Why (untrimmed; the role's reason rules apply).
    pub reason: String,
    /// How long a grant, in seconds (`None`: the longest the roles allow).
    pub duration_seconds: Option<u64>,
    /// Grant it now, without an approver (roles with `break_glass`).
    pub break_glass: bool,
}

/// A request as the API shows it to one person.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RequestView {
    /// Its id.
    pub id: String,
    /// `pending`, `approved`, `denied`, `expired` or `revoked`.
    pub state: String,
    /// Who asked.
    pub user: String,
    /// The node.
    pub target: String,
    /// Why.
    pub reason: String,
    /// How long a grant.
    pub duration_seconds: i64,
    /// When it was asked (milliseconds since the epoch).
    pub created_at: i64,
    /// Pending: when it lapses; approved: when the grant ends.
    pub expires_at: i64,
    /// When it was approved or denied.
    pub decided_at: Option<i64>,
    /// Self-granted under a break-glass role.
    pub break_glass: bool,
    /// The roles whose holders may decide it.
    pub approvers: Vec<String>,
    /// How many different people must approve.
    pub min_approvals: i64,
    /// The approvals so far.
    #[schema(value_type = Vec<Object>)]
    pub approvals: Vec<Verdict>,
    /// The denials.
    #[schema(value_type = Vec<Object>)]
    pub denials: Vec<Verdict>,
    /// Who revoked it.
    pub ended_by: Option<String>,
    /// What they said when they revoked it.
    pub end_comment: Option<String>,
    /// When it was revoked or expired.
    pub ended_at: Option<i64>,
    /// Whether the person asking may approve or deny it now.
    pub may_decide: bool,
    /// Whether the person asking may revoke it now.
    pub may_revoke: bool,
}

/// Whether `user` may see `request`: their own, one they may decide, or any for auditors.
fn visible(user: &User, request: &Request) -> bool {
    request.user_id == user.id
        || policy::holds_any(user, &request.approvers)
        || policy::may_read_audit(user)
}

fn view(request: &Request, user: &User, now: i64) -> RequestView {
    let state = request.state_at(now).to_owned();
    let approver = policy::holds_any(user, &request.approvers);
    let open = state == rows::PENDING || state == rows::APPROVED;
    RequestView {
        may_decide: state == rows::PENDING
            && approver
            && request.user_id != user.id
            && !request.verdicts.iter().any(|v| v.user_id == user.id),
        may_revoke: open && (approver || request.user_id == user.id),
        id: request.id.clone(),
        state,
        user: request.user.clone(),
        target: request.target.clone(),
        reason: request.reason.clone(),
        duration_seconds: request.duration_seconds,
        created_at: request.created_at,
        expires_at: request.expires_at,
        decided_at: request.decided_at,
        break_glass: request.break_glass,
        approvers: request.approvers.clone(),
        min_approvals: request.min_approvals,
        approvals: request.approvals().cloned().collect(),
        denials: request.denials().cloned().collect(),
        ended_by: request.ended_by.clone(),
        end_comment: request.end_comment.clone(),
        ended_at: request.ended_at,
    }
}

/// `30 min`, `2 h`, `90 s`: a duration for people.
fn human(seconds: i64) -> String {
    match seconds {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// Queues a notice about `request` for the webhooks.
async fn tell(
    tx: &mut WriteTx,
    engine: &Engine,
    topic: Topic,
    text: String,
    request: &Request,
    now: i64,
) -> Result<(), Error> {
    let mut data = serde_json::to_value(view(request, &nobody(), now)).unwrap_or_default();
    if let Some(map) = data.as_object_mut() {
        map.remove("may_decide");
        map.remove("may_revoke");
        map.insert(
            "url".into(),
            json!(format!(
                "{}/requests#{}",
                engine.config.server.public_url.trim_end_matches('/'),
                request.id
            )),
        );
    }
    notify::enqueue(tx, &engine.config, &Notice { topic, text, data }).await?;
    Ok(())
}

/// A user who holds nothing (views rendered for notices).
fn nobody() -> User {
    User {
        id: 0,
        name: String::new(),
        roles: Vec::new(),
        disabled: true,
        grants: policy::Grants::default(),
    }
}

/// Records `user`'s request for access (or, with `break_glass`, their grant to themselves),
/// audits it and tells the approvers.
pub async fn ask(
    engine: &Engine,
    user: &User,
    client: &Client,
    ask: Ask,
) -> Result<RequestView, Error> {
    // Asked for the node, whatever the document its sessions will use.
    let asked = Asked {
        target: &ask.target,
        document: policy::DEFAULT_DOCUMENT,
        parameters: &policy::Parameters::new(),
        reason: &ask.reason,
        by: Some("access request"),
    };
    let (target, decision) = judge(engine, user, client, asked).await?;
    let (need, reason) = (decision.approval, decision.reason);
    let described = policy::describe_target(&target);
    let Some(need) = need else {
        return Err(Refused::NotRequired.with(format!(
            "{described} needs no approval for you: start the session directly"
        )));
    };
    let longest = need.grant.as_secs();
    let duration = ask.duration_seconds.unwrap_or(longest);
    if !(1..=longest).contains(&duration) {
        return Err(Refused::InvalidDuration.with(format!(
            "duration_seconds: 1 to {longest} (the longest grant your roles allow), got {duration}"
        )));
    }
    if ask.break_glass && !need.break_glass {
        return Err(Refused::BreakGlassNotAllowed.with(format!(
            "no role of yours allows break-glass access to {described}; ask for approval \
             ({})",
            need.describe()
        )));
    }
    if ask.break_glass && reason.is_empty() {
        return Err(Error::InvalidReason(
            "break-glass access needs a reason: the approvers are told it".into(),
        ));
    }
    let duration = i64::try_from(duration).unwrap_or(i64::MAX);
    let now = now_ms();
    let mut tx = engine.db.begin_write().await?;
    let pending = rows::count_pending(&mut tx, user.id).await?;
    if pending >= MAX_PENDING && !ask.break_glass {
        return Err(Refused::TooMany.with(format!(
            "you have {pending} requests waiting (the limit is {MAX_PENDING}); withdraw one \
             or wait for its decision"
        )));
    }
    for open in rows::open_for(&mut *tx.tx, user.id, &target.id).await? {
        match open.state_at(now) {
            rows::PENDING if !ask.break_glass => {
                return Err(Refused::RequestPending.with(format!(
                    "your request {} for {described} is waiting for approval",
                    open.id
                )));
            }
            rows::APPROVED => {
                return Err(Refused::GrantActive.with(format!(
                    "you already have access to {described} until {} (request {})",
                    audit::rfc3339_ms(open.expires_at),
                    open.id
                )));
            }
            _ => {}
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    let (state, expires_at) = if ask.break_glass {
        (rows::APPROVED, now.saturating_add(duration * 1000))
    } else {
        let pending = i64::try_from(need.pending.as_millis()).unwrap_or(i64::MAX);
        (rows::PENDING, now.saturating_add(pending))
    };
    let min_approvals = i64::from(need.min_approvals);
    rows::insert(
        &mut tx,
        &NewRequest {
            id: &id,
            user_id: user.id,
            target: &target.id,
            reason: &reason,
            duration_seconds: duration,
            break_glass: ask.break_glass,
            approvers: &need.approvers,
            min_approvals,
            state,
            created_at: now,
            expires_at,
        },
    )
    .await?;
    let event = if ask.break_glass {
        kind::ACCESS_BREAK_GLASS
    } else {
        kind::ACCESS_REQUEST
    };
    audit::append(
        &mut tx.tx,
        &Event::new(event, &user.name, client)
            .target(&target.id)
            .reason(&reason)
            .detail(json!({
                "request_id": id, "duration_seconds": duration, "expires_at": expires_at,
                "approvers": need.approvers, "min_approvals": min_approvals,
                "roles": need.roles, "break_glass": ask.break_glass,
            })),
    )
    .await?;
    let request = rows::load_in(&mut tx, &id)
        .await?
        .ok_or_else(|| Error::Internal("the new access request vanished".into()))?;
    let (topic, text) = if ask.break_glass {
        (
            Topic::BreakGlass,
            format!(
                "BREAK-GLASS: {} granted themselves access to {described} for {} without an \
                 approver: {reason}",
                user.name,
                human(duration)
            ),
        )
    } else {
        (
            Topic::Request,
            format!(
                "{} asks for access to {described} for {}: {reason} (needs {} by {})",
                user.name,
                human(duration),
                need.min_approvals,
                need.approvers.join(" or ")
            ),
        )
    };
    tell(&mut tx, engine, topic, text, &request, now).await?;
    tx.commit().await?;
    Ok(view(&request, user, now))
}

/// The requests `user` may see (their own, those they may decide, or all for auditors):
/// pending first, then newest.
pub async fn list(
    engine: &Engine,
    user: &User,
    pending_only: bool,
) -> Result<Vec<RequestView>, Error> {
    let now = now_ms();
    let mut views: Vec<RequestView> = rows::recent(&engine.db, pending_only)
        .await?
        .iter()
        .filter(|r| visible(user, r))
        .map(|r| view(r, user, now))
        .filter(|v| !pending_only || v.state == rows::PENDING)
        .collect();
    views.sort_by(|a, b| {
        (b.state == rows::PENDING)
            .cmp(&(a.state == rows::PENDING))
            .then(b.created_at.cmp(&a.created_at))
    });
    Ok(views)
}

/// One request, if `user` may see it.
pub async fn get(engine: &Engine, user: &User, id: &str) -> Result<RequestView, Error> {
    let request = rows::load(&engine.db, id)
        .await?
        .filter(|r| visible(user, r))
        .ok_or_else(|| unknown(id))?;
    Ok(view(&request, user, now_ms()))
}

/// Request `id` read in a new write transaction (to change it there), if `user` may see it.
async fn load_visible(engine: &Engine, user: &User, id: &str) -> Result<(WriteTx, Request), Error> {
    let mut tx = engine.db.begin_write().await?;
    let request = rows::load_in(&mut tx, id)
        .await?
        .filter(|r| visible(user, r))
        .ok_or_else(|| unknown(id))?;
    Ok((tx, request))
}

fn unknown(id: &str) -> Error {
    Refused::UnknownRequest.with(format!("no access request {id:?} that you may see"))
}

/// Checks a comment: at most [`MAX_COMMENT`] characters, no control characters but newlines.
pub fn check_comment(comment: &str) -> Result<(), Error> {
    let n = comment.chars().count();
    if n > MAX_COMMENT {
        return Err(Refused::InvalidComment.with(format!(
            "comment: at most {MAX_COMMENT} characters (got {n})"
        )));
    }
    if let Some(c) = comment.chars().find(|c| c.is_control() && *c != '\n') {
        return Err(Refused::InvalidComment.with(format!(
            "comment: no control characters (found U+{:04X})",
            u32::from(c)
        )));
    }
    Ok(())
}

/// `user` approves (`approve`) or denies request `id` with `comment`. Enough approvals make
/// the grant; one denial ends the request.
pub async fn decide(
    engine: &Engine,
    user: &User,
    client: &Client,
    id: &str,
    approve: bool,
    comment: &str,
) -> Result<RequestView, Error> {
    check_comment(comment)?;
    let comment = comment.trim();
    let now = now_ms();
    let (mut tx, request) = load_visible(engine, user, id).await?;
    let verb = if approve { "approve" } else { "deny" };
    if request.user_id == user.id {
        return Err(Refused::SelfApproval.with(format!(
            "you cannot {verb} your own request: another approver ({}) must",
            request.approvers.join(" or ")
        )));
    }
    if !policy::holds_any(user, &request.approvers) {
        return Err(Refused::NotAnApprover.with(format!(
            "to {verb} this request you need one of the roles {}",
            request.approvers.join(", ")
        )));
    }
    let state = request.state_at(now);
    if state != rows::PENDING {
        return Err(Refused::NotPending.with(format!("request {id} is {state}, not pending")));
    }
    if !rows::add_verdict(&mut tx, id, user.id, &user.name, approve, comment, now).await? {
        return Err(Refused::AlreadyDecided.with(format!(
            "you already decided request {id}; it needs {} different approvers",
            request.min_approvals
        )));
    }
    audit::append(
        &mut tx.tx,
        &Event::new(
            if approve {
                kind::ACCESS_APPROVE
            } else {
                kind::ACCESS_DENY
            },
            &user.name,
            client,
        )
        .target(&request.target)
        .detail(json!({"request_id": id, "requester": request.user, "comment": comment})),
    )
    .await?;
    let approvals =
        i64::try_from(request.approvals().count()).unwrap_or(i64::MAX) + i64::from(approve);
    let target = request.target.clone();
    let decided = if !approve {
        rows::decide(&mut tx, id, rows::DENIED, now, request.expires_at).await?;
        Some(format!(
            "{}: your request for access to {target} was denied by {}{}",
            request.user,
            user.name,
            said(comment)
        ))
    } else if approvals >= request.min_approvals {
        let until = now.saturating_add(request.duration_seconds.saturating_mul(1000));
        rows::decide(&mut tx, id, rows::APPROVED, now, until).await?;
        let mut by: Vec<String> = request.approvals().map(|v| v.user.clone()).collect();
        by.push(user.name.clone());
        audit::append(
            &mut tx.tx,
            &Event::new(kind::ACCESS_GRANT, &request.user, client)
                .target(&target)
                .reason(&request.reason)
                .detail(json!({
                    "request_id": id, "approved_by": by, "expires_at": until,
                    "duration_seconds": request.duration_seconds,
                })),
        )
        .await?;
        Some(format!(
            "{}: your access to {target} was approved by {} until {}{}",
            request.user,
            by.join(" and "),
            audit::rfc3339_ms(until),
            said(comment)
        ))
    } else {
        None
    };
    let request = rows::load_in(&mut tx, id)
        .await?
        .ok_or_else(|| unknown(id))?;
    if let Some(text) = decided {
        tell(&mut tx, engine, Topic::Decision, text, &request, now).await?;
    }
    tx.commit().await?;
    Ok(view(&request, user, now))
}

fn said(comment: &str) -> String {
    if comment.is_empty() {
        String::new()
    } else {
        format!(": {comment}")
    }
}

/// `user` (the requester, or an approver) withdraws a pending request or revokes a grant; the
/// sessions started under it are ended.
pub async fn revoke(
    engine: &Engine,
    user: &User,
    client: &Client,
    id: &str,
    comment: &str,
) -> Result<RequestView, Error> {
    check_comment(comment)?;
    let comment = comment.trim();
    let now = now_ms();
    let (mut tx, request) = load_visible(engine, user, id).await?;
    if request.user_id != user.id && !policy::holds_any(user, &request.approvers) {
        return Err(Refused::NotAnApprover.with(format!(
            "to revoke {}'s access you need one of the roles {}",
            request.user,
            request.approvers.join(", ")
        )));
    }
    let state = request.state_at(now);
    if state != rows::PENDING && state != rows::APPROVED {
        return Err(Refused::NotPending.with(format!(
            "request {id} is {state}: there is nothing to revoke"
        )));
    }
    let was = request.state.clone();
    let ending = Ending {
        state: rows::REVOKED,
        by: Some(&user.name),
        comment: (!comment.is_empty()).then_some(comment),
        at: now,
    };
    if !rows::end(&mut tx, id, &was, ending).await? {
        return Err(Refused::NotPending.with(format!("request {id} changed meanwhile; look again")));
    }
    audit::append(
        &mut tx.tx,
        &Event::new(kind::ACCESS_REVOKE, &user.name, client)
            .target(&request.target)
            .detail(json!({
                "request_id": id, "requester": request.user, "was": was, "comment": comment,
            })),
    )
    .await?;
    let request = rows::load_in(&mut tx, id)
        .await?
        .ok_or_else(|| unknown(id))?;
    let text = if request.user_id == user.id {
        format!(
            "{} withdrew their access to {}{}",
            user.name,
            request.target,
            said(comment)
        )
    } else {
        format!(
            "{}: your access to {} was revoked by {}{}",
            request.user,
            request.target,
            user.name,
            said(comment)
        )
    };
    tell(&mut tx, engine, Topic::Decision, text, &request, now).await?;
    tx.commit().await?;
    end_sessions(engine, id, &format!("access revoked by {}", user.name)).await;
    Ok(view(&request, user, now))
}

/// Ends the live sessions started under request `id` (wherever they run).
async fn end_sessions(engine: &Engine, id: &str, how: &str) {
    let sessions: Vec<SessionView> = match session_rows::live_under_request(&engine.db, id).await {
        Ok(sessions) => sessions,
        Err(e) => {
            tracing::warn!(request = %id, "cannot list the sessions of a grant: {e}");
            return;
        }
    };
    for session in sessions {
        if let Err(e) = super::ending::end_anywhere(engine, &session, how).await {
            tracing::warn!(session = %session.id, request = %id, "ending a grant's session: {e}");
        }
    }
}

/// The grant under which `user` may start a session on `target` now, if any.
pub async fn grant_for(
    engine: &Engine,
    user: &User,
    target: &str,
) -> Result<Option<Request>, Error> {
    let now = now_ms();
    let open = rows::open_for(engine.db.pool(), user.id, target).await?;
    let Some(grant) = open.into_iter().find(|r| r.grants_at(now)) else {
        return Ok(None);
    };
    // With its approvers, for the session's audit event.
    Ok(rows::load(&engine.db, &grant.id).await?)
}

/// The notice of a session started under `grant`.
pub async fn tell_session(
    tx: &mut WriteTx,
    engine: &Engine,
    grant: &Request,
    session_id: &str,
) -> Result<(), Error> {
    let by: Vec<&str> = grant.approvals().map(|v| v.user.as_str()).collect();
    let under = if grant.break_glass {
        "break-glass access".to_owned()
    } else {
        format!("access approved by {}", by.join(" and "))
    };
    let text = format!(
        "{} started session {session_id} on {} under {under}: {}",
        grant.user, grant.target, grant.reason
    );
    tell(tx, engine, Topic::Session, text, grant, now_ms()).await
}

/// Ends what ran out: pending requests nobody decided in time, and grants past their end
/// (their sessions are ended). Each is claimed by one conditional UPDATE, so that several
/// gateways sweeping at once record it once. How many it ended.
pub async fn sweep(engine: &Engine) -> Result<usize, Error> {
    let now = now_ms();
    let mut ended = 0;
    for request in rows::due(&engine.db, now).await? {
        let mut tx = engine.db.begin_write().await?;
        let ending = Ending {
            state: rows::EXPIRED,
            by: None,
            comment: None,
            at: now,
        };
        if !rows::end(&mut tx, &request.id, &request.state, ending).await? {
            continue;
        }
        let client = Client::default();
        audit::append(
            &mut tx.tx,
            &Event::new(kind::ACCESS_EXPIRE, "porthole", &client)
                .target(&request.target)
                .detail(json!({
                    "request_id": request.id, "requester": request.user, "was": request.state,
                    "expires_at": request.expires_at,
                })),
        )
        .await?;
        let text = if request.state == rows::APPROVED {
            format!(
                "{}: your access to {} has ended (granted until {})",
                request.user,
                request.target,
                audit::rfc3339_ms(request.expires_at)
            )
        } else {
            format!(
                "{}: your request for access to {} expired undecided",
                request.user, request.target
            )
        };
        let mut expired = request.clone();
        expired.state = rows::EXPIRED.to_owned();
        expired.ended_at = Some(now);
        tell(&mut tx, engine, Topic::Decision, text, &expired, now).await?;
        tx.commit().await?;
        if request.state == rows::APPROVED {
            end_sessions(engine, &request.id, "access grant expired").await;
        }
        ended += 1;
    }
    Ok(ended)
}

/// Sweeps every [`SWEEP_EVERY`] until aborted.
pub async fn run(engine: std::sync::Arc<Engine>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = sweep(&engine).await {
            tracing::warn!("expiring access requests: {e}");
        }
    }
}

/// What the targets list shows of each node's approval for `user`: `None` when it needs
/// none, else whether break-glass is allowed, the grant in force and the newest pending
/// request.
pub async fn approval_states(
    engine: &Engine,
    user: &User,
    targets: &[Target],
) -> Result<Vec<Option<serde_json::Value>>, Error> {
    let in_force = engine.policy.current();
    let needs: Vec<Option<ApprovalNeed>> = targets
        .iter()
        .map(|t| {
            in_force
                .explain(
                    user,
                    t,
                    policy::DEFAULT_DOCUMENT,
                    &policy::Parameters::new(),
                    None,
                )
                .outcome()
                .ok()
                .and_then(|d| d.approval)
        })
        .collect();
    if needs.iter().all(Option::is_none) {
        return Ok(vec![None; targets.len()]);
    }
    let now = now_ms();
    let open = rows::open_of(&engine.db, user.id).await?;
    Ok(targets
        .iter()
        .zip(needs)
        .map(|(t, need)| {
            let need = need?;
            let mine = || open.iter().filter(|r| r.target == t.id);
            let grant = mine().find(|r| r.grants_at(now));
            let pending = mine().find(|r| r.state_at(now) == rows::PENDING);
            Some(json!({
                "break_glass": need.break_glass,
                "approvers": need.approvers,
                "min_approvals": need.min_approvals,
                "grant_seconds": need.grant.as_secs(),
                "grant": grant.map(|g| json!({"request_id": g.id, "expires_at": g.expires_at})),
                "request": pending.map(|p| json!({"id": p.id, "state": rows::PENDING})),
            }))
        })
        .collect())
}
