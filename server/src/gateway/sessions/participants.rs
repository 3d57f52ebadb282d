//! Sharing a session: its owner invites a named person into it, to type along (`write`) or
//! watch (`read`), for pair debugging. Who may invite is the policy's `join_others`, checked
//! on the inviter's roles ([`policy::may_invite`]); the invitee's own roles must allow the
//! session's node with its document and parameters, as for a start of their own
//! ([`policy::Policy::may_join`]), and again at every attach. Invitations are rows
//! (`store::participants`), so every gateway sharing the database honours them; each change is
//! audited in the transaction that makes it (`session.participant.add` / `.remove`).
//!
//! A participant's socket always lives on the gateway that runs the session (an attach that
//! reaches another gateway is forwarded to it). A revocation, or a change of mode, takes effect
//! there at once: made on that gateway, directly
//! ([`crate::gateway::sessions::live::LiveSession::kick`], `set_mode`); made on another, the database is changed first and the running
//! gateway is then told to apply the invitation as the database now holds it
//! (`POST /internal/v1/sessions/{id}/participants`, signed, [`apply_here`]). When it cannot be
//! told (it does not answer within [`PEER_TIMEOUT`]), the change still stands — the database is
//! the truth — and the socket notices it at its next look at the table, every
//! `sessions.participant_recheck_seconds` (2 s by default); that is logged.

use serde_json::json;

use super::{Engine, Error, approvals};
use crate::gateway::cluster::PEER_TIMEOUT;
use crate::gateway::facts::{Target, User};
use crate::gateway::policy::{self, JoinMode, Parameters};
use crate::gateway::store::audit::{self, Client, Event, kind};
use crate::gateway::store::gateways;
use crate::gateway::store::participants::{self as rows, Participant};
use crate::gateway::store::sessions::{self as sessions_rows, SessionView};

/// The path of the internal request that tells the gateway running session `id` to apply an
/// invitation into it as the database holds it now ([`apply_here`]).
pub fn internal_path(id: &str) -> String {
    format!("/internal/v1/sessions/{id}/participants")
}

/// What a participant whose invitation was revoked is told (the close reason of 4005).
pub fn revoked_reason(owner: &str) -> String {
    format!("{owner} stopped sharing the session with you")
}

/// Session `id` as `user` may see it: their own, everyone's for roles that see every session,
/// or one they are invited into (with their invitation). Others are told it does not exist.
pub async fn visible_or_invited(
    engine: &Engine,
    user: &User,
    id: &str,
) -> Result<(SessionView, Option<Participant>), Error> {
    let unknown = || Error::UnknownSession(format!("no session {id:?} of yours"));
    let Some(view) = sessions_rows::load(&engine.db, id).await? else {
        return Err(unknown());
    };
    if view.user_id() == user.id {
        return Ok((view, None));
    }
    let invited = rows::find(&engine.db, id, user.id).await?;
    if invited.is_some() || policy::sees_all_sessions(user) {
        Ok((view, invited))
    } else {
        Err(unknown())
    }
}

/// The parameters session `view` was started with (from its `session.start` event).
async fn parameters_of(engine: &Engine, view: &SessionView) -> Result<Parameters, Error> {
    let start = audit::first_of(&engine.db, &view.id, kind::SESSION_START).await?;
    Ok(start
        .and_then(|e| serde_json::from_value(e.detail["parameters"].clone()).ok())
        .unwrap_or_default())
}

/// Whether `user`'s own roles (the policy in force) let them join session `view`: its node,
/// document and parameters allowed, and a grant for the node when those roles need approval.
pub async fn may_join(engine: &Engine, user: &User, view: &SessionView) -> Result<(), Error> {
    let facts = match engine.targets.find(&engine.aws, &view.target).await? {
        Some(target) => target,
        None => Target::unknown(&view.target),
    };
    let parameters = parameters_of(engine, view).await?;
    let decision = engine
        .policy
        .current()
        .may_join(user, &facts, &view.document, &parameters)
        .map_err(Error::Forbidden)?;
    if let Some(need) = &decision.approval
        && approvals::grant_for(engine, user, &view.target)
            .await?
            .is_none()
    {
        return Err(Error::Forbidden(format!(
            "{} may not join a session on this node: their roles need an approved access \
             request for it first ({})",
            user.name,
            need.describe()
        )));
    }
    Ok(())
}

/// Invites `invitee` (the user named `name`, resolved by the caller; `None`: no such user) into
/// session `id` with `mode`, for its owner when a role of theirs has `join_others`; audited
/// (`session.participant.add`). Inviting someone again changes their mode (an attached socket
/// of theirs follows at once). Beyond `sessions.max_participants`: 409.
pub async fn invite(
    engine: &Engine,
    inviter: &User,
    client: &Client,
    id: &str,
    name: &str,
    invitee: Option<User>,
    mode: JoinMode,
) -> Result<Participant, Error> {
    let (view, _) = visible_or_invited(engine, inviter, id).await?;
    policy::may_invite(inviter, &view.user, view.user_id()).map_err(Error::Forbidden)?;
    if !view.is_running() {
        return Err(Error::SessionEnded(format!(
            "session {id} is not running ({}): only a live session can be shared",
            view.state
        )));
    }
    let Some(invitee) = invitee else {
        return Err(Error::InvalidParticipant(format!(
            "user: there is no user named {name:?}"
        )));
    };
    policy::check_invitee(inviter, &invitee).map_err(Error::InvalidParticipant)?;
    may_join(engine, &invitee, &view).await?;
    let limit = engine.config.sessions.max_participants;
    let already = rows::find(&engine.db, id, invitee.id).await?;
    let mut tx = engine.db.begin_write().await?;
    if already.is_none() && rows::count(&mut tx, id).await? >= i64::from(limit) {
        return Err(Error::TooManyParticipants(format!(
            "session {id} already has {limit} participants (sessions.max_participants); \
             revoke one first"
        )));
    }
    rows::upsert(&mut tx, id, invitee.id, mode.as_str(), inviter.id).await?;
    audit::append(
        &mut tx.tx,
        &Event::new(kind::PARTICIPANT_ADD, &inviter.name, client)
            .session(id, &view.target)
            .detail(json!({
                "participant": invitee.name,
                "mode": mode.as_str(),
                "owner": view.user,
                "previous_mode": already.as_ref().map(|p| p.mode.clone()),
            })),
    )
    .await?;
    tx.commit().await?;
    match engine.live.get(id) {
        Some(live) => live.set_mode(&invitee.name, mode).await,
        None => tell_owner(engine, &view, &invitee.name, client).await,
    }
    rows::find(&engine.db, id, invitee.id)
        .await?
        .ok_or_else(|| Error::Internal("the new participant row vanished".into()))
}

/// Revokes the invitation of the user named `name` into session `id`, for its owner (at any
/// time, whatever their roles now); audited (`session.participant.remove`). Their socket is
/// closed at once (close code 4005): here when this gateway runs the session, else by the
/// gateway that does, once told ([`tell_owner`]).
pub async fn revoke(
    engine: &Engine,
    owner: &User,
    client: &Client,
    id: &str,
    name: &str,
    user_id: Option<i64>,
) -> Result<(), Error> {
    let (view, _) = visible_or_invited(engine, owner, id).await?;
    if !policy::may_attach(owner, view.user_id()) {
        return Err(Error::Forbidden(format!(
            "only {} may revoke invitations into this session",
            view.user
        )));
    }
    let not_invited =
        || Error::UnknownParticipant(format!("{name:?} is not invited into session {id}"));
    let user_id = user_id.ok_or_else(not_invited)?;
    let was = rows::find(&engine.db, id, user_id).await?;
    let mut tx = engine.db.begin_write().await?;
    if !rows::remove(&mut tx, id, user_id).await? {
        return Err(not_invited());
    }
    let live = engine.live.get(id);
    audit::append(
        &mut tx.tx,
        &Event::new(kind::PARTICIPANT_REMOVE, &owner.name, client)
            .session(id, &view.target)
            .detail(json!({
                "participant": name,
                "mode": was.map(|p| p.mode),
                "owner": view.user,
            })),
    )
    .await?;
    tx.commit().await?;
    match live {
        Some(live) => live.kick(name, &revoked_reason(&owner.name)).await,
        None => tell_owner(engine, &view, name, client).await,
    }
    Ok(())
}

/// Tells the gateway running `view` (not this one) that the invitation of `name` changed in
/// the database, so that it applies it to their socket at once. Never fails the change: when
/// there is no such gateway, or it cannot be told, the socket's own look at the table
/// (every `sessions.participant_recheck_seconds`) applies it, and that is logged.
async fn tell_owner(engine: &Engine, view: &SessionView, name: &str, client: &Client) {
    if !engine.cluster.is_clustered() || !view.is_running() {
        return;
    }
    let recheck = engine.config.sessions.participant_recheck_seconds;
    let owner = match gateways::owner_of(&engine.db, &view.id).await {
        Ok(owner) => {
            owner.filter(|g| g.id != engine.cluster.id && g.is_alive(engine.cluster.fresh_after()))
        }
        Err(e) => {
            tracing::warn!(
                session = %view.id,
                participant = %name,
                "cannot find the gateway running the session to apply an invitation change \
                 ({e}); its socket notices within {recheck} s"
            );
            return;
        }
    };
    // None: the session is moving between gateways (its taker's sockets look at the table)
    // or has just ended.
    let Some(owner) = owner else { return };
    let told = engine
        .cluster
        .post::<serde_json::Value>(
            &owner,
            &internal_path(&view.id),
            &client.addr,
            &json!({"user": name}),
            PEER_TIMEOUT,
        )
        .await;
    match told {
        Ok(_) => {
            tracing::debug!(session = %view.id, participant = %name, owner = %owner.id, "invitation change pushed");
        }
        Err(e) => tracing::warn!(
            session = %view.id,
            participant = %name,
            owner = %owner.id,
            "could not tell the gateway running the session about an invitation change \
             ({e}); the change stands, and the participant's socket notices it within \
             {recheck} s (sessions.participant_recheck_seconds)"
        ),
    }
}

/// Applies the invitation of the user named `name` into session `id`, which this gateway
/// runs, as the database holds it now (asked by another gateway that changed it): no
/// invitation closes their socket (4005, naming the owner); one with a mode makes their socket
/// follow it. Returns the mode in force (`None`: not invited).
pub async fn apply_here(engine: &Engine, id: &str, name: &str) -> Result<Option<JoinMode>, Error> {
    let Some(live) = engine.live.get(id) else {
        return Err(Error::SessionEnded(format!(
            "session {id} is not running on this gateway"
        )));
    };
    let Some(view) = sessions_rows::load(&engine.db, id).await? else {
        return Err(Error::UnknownSession(format!("no session {id:?}")));
    };
    let invited = rows::list(&engine.db, id)
        .await?
        .into_iter()
        .find(|p| p.user == name);
    match invited {
        None => {
            live.kick(name, &revoked_reason(&view.user)).await;
            Ok(None)
        }
        Some(p) => {
            let mode = mode_of(&p);
            live.set_mode(name, mode).await;
            Ok(Some(mode))
        }
    }
}

/// The people invited into session `id`, for its owner and for those invited into it (and
/// for roles that see every session).
pub async fn list(engine: &Engine, user: &User, id: &str) -> Result<Vec<Participant>, Error> {
    let (view, _) = visible_or_invited(engine, user, id).await?;
    Ok(rows::list(&engine.db, &view.id).await?)
}

/// The running sessions `user` is invited into, with their mode.
pub async fn shared_with(
    engine: &Engine,
    user: &User,
) -> Result<Vec<(SessionView, String)>, Error> {
    Ok(rows::shared_with(&engine.db, user.id).await?)
}

/// `write` or `read` for a stored mode (an unknown one is read-only).
pub fn mode_of(participant: &Participant) -> JoinMode {
    JoinMode::parse(&participant.mode).unwrap_or(JoinMode::Read)
}
