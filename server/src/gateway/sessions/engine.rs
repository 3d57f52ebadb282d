//! Starting, listing and terminating sessions. Starting: the document and reason checked, the
//! policy asked, the row and the audit event committed before `StartSession` is called, the
//! data channel opened here and handed to the session's task. The SSM token and stream URL
//! stay in this process.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

pub use super::ending::{end_anywhere, end_here};
use super::{Engine, Error};
use super::{approvals, ending, judge, live};
use crate::gateway::aws::{self, targets};
use crate::gateway::facts::{Target, User};
use crate::gateway::policy;
use crate::gateway::store::audit::{self, Client, Event, kind};
use crate::gateway::store::db::now_ms;
use crate::gateway::store::gateways::{self, Registered};
use crate::gateway::store::recordings::{OpenError, Opened};
use crate::gateway::store::search;
use crate::gateway::store::sessions::{self as rows, NewSession, SessionView, StateFilter};
use crate::gateway::telemetry::{self, Denied};
use crate::ssm::client::{self, SessionStart};

/// What a person asks for when opening a session.
#[derive(Debug, Clone)]
pub struct StartRequest {
    /// The node's id.
    pub target: String,
    /// Why (untrimmed; the policy trims and checks it).
    pub reason: String,
    /// The SSM document; the default when `None`.
    pub document: Option<String>,
    /// The document's parameters: checked ([`policy::check_parameters`]), decided on by the
    /// roles, recorded in `session.start`, passed to `StartSession`.
    pub parameters: Option<policy::Parameters>,
}

/// Opens a session for `user` (who asked from `client`): the policy decides, a refusal is
/// audited (`session.denied`), an allowed start is recorded (`session.start`, committed with
/// the row) before AWS is asked; the session's task is running when this returns.
pub async fn start(
    engine: &Arc<Engine>,
    user: &User,
    client: &Client,
    request: StartRequest,
) -> Result<SessionView, Error> {
    if engine.is_draining() {
        return Err(Error::Draining(
            "this gateway is stopping and takes no new sessions; try again (another gateway \
             will take it)"
                .into(),
        ));
    }
    let document = request
        .document
        .unwrap_or_else(|| policy::DEFAULT_DOCUMENT.to_owned());
    policy::check_document(&document).map_err(Error::InvalidDocument)?;
    let parameters = request.parameters.unwrap_or_default();
    policy::check_parameters(&parameters).map_err(Error::InvalidParameters)?;
    // The policy decides on the node's name, region and tags; a node that is not listed is
    // judged by its id alone, so that who may not reach it learns nothing of whether it exists.
    let asked = judge::Asked {
        target: &request.target,
        document: &document,
        parameters: &parameters,
        reason: &request.reason,
        by: None,
    };
    let (target, decision) = judge::judge(engine, user, client, asked).await?;
    let reason = decision.reason.clone();
    // A role that needs approval: the start runs under the person's grant for the node, and
    // ends with it at the latest.
    let grant = match &decision.approval {
        None => None,
        Some(need) => match approvals::grant_for(engine, user, &target.id).await? {
            Some(grant) => Some(grant),
            None => {
                let why = format!(
                    "sessions on {} need an approved access request ({}); ask for one on the \
                     targets page or with POST /api/v1/requests",
                    policy::describe_target(&target),
                    need.describe()
                );
                let detail = json!({
                    "why": why, "target": target.id, "document": document,
                    "roles": decision.roles, "policy": decision.policy_hash,
                });
                judge::record_denial(engine, user, client, &target.id, &reason, detail).await?;
                return Err(Error::Access(approvals::Refused::ApprovalRequired, why));
            }
        },
    };
    let max_duration = match &grant {
        None => decision.max_duration,
        Some(grant) => {
            let left = Duration::from_millis(
                u64::try_from(grant.expires_at.saturating_sub(now_ms())).unwrap_or(0),
            );
            Some(decision.max_duration.map_or(left, |m| m.min(left)))
        }
    };
    let clients = engine
        .clients(&target.account, &target.region)
        .cloned()
        .ok_or_else(|| {
            Error::Internal(format!(
                "no AWS clients for account {:?} in {}",
                target.account, target.region
            ))
        })?;

    // As whom AWS is asked: the person, when a role of theirs names an AWS role.
    let as_person = decision.aws_role.as_ref().map(|role| {
        let name = aws::assume::session_name(&user.name);
        (
            role.clone(),
            aws::assume::assumed_arn(&role.arn, &name),
            name,
        )
    });
    // The row and the audit event are committed before AWS is asked.
    let id = uuid::Uuid::new_v4().to_string();
    let mut tx = engine.db.begin_write().await?;
    let cap = i64::from(engine.config.sessions.max_per_user);
    let inserted = rows::insert_starting(
        &mut tx,
        &NewSession {
            id: &id,
            user_id: user.id,
            target: &target.id,
            region: &target.region,
            account: &target.account,
            document: &document,
            reason: &reason,
            gateway_id: &engine.config.server.gateway_id,
            request_id: grant.as_ref().map(|g| g.id.as_str()),
            clipboard: decision.clipboard,
            file_transfer: decision.file_transfer.as_str(),
        },
        cap,
    )
    .await?;
    if !inserted {
        // Only when refused: the count for the message.
        let live_count = rows::count_live(&mut tx, user.id).await?;
        return Err(Error::TooManySessions(format!(
            "you already have {live_count} live sessions (the limit is {cap}); end one first"
        )));
    }
    audit::append(
        &mut tx.tx,
        &Event::new(kind::SESSION_START, &user.name, client)
            .session(&id, &target.id)
            .reason(&reason)
            .detail(json!({
                "document": document, "parameters": parameters, "region": target.region,
                "account": target.account,
                "roles": decision.roles, "policy": decision.policy_hash,
                "max_duration_seconds": decision.max_duration.map(|d| d.as_secs()),
                "idle_timeout_seconds": decision.idle_timeout.map(|d| d.as_secs()),
                "clipboard": decision.clipboard,
                "file_transfer": decision.file_transfer.as_str(),
                "aws_role_arn": as_person.as_ref().map(|(role, ..)| role.arn.clone()),
                "assumed_role_arn": as_person.as_ref().map(|(_, arn, _)| arn.clone()),
                "source_identity": as_person.as_ref().map(|(.., name)| name.clone()),
                "request_id": grant.as_ref().map(|g| g.id.clone()),
                "approvers": grant.as_ref().map(|g| {
                    g.approvals().map(|v| v.user.clone()).collect::<Vec<_>>()
                }),
                "break_glass": grant.as_ref().map(|g| g.break_glass),
                "grant_expires_at": grant.as_ref().map(|g| g.expires_at),
            })),
    )
    .await?;
    if let Some(grant) = &grant {
        approvals::tell_session(&mut tx, engine, grant, &id).await?;
    }
    tx.commit().await?;
    let clients = match &as_person {
        None => clients,
        Some((role, ..)) => {
            use sha2::Digest as _;
            let tags = aws::assume::Tags {
                session_id: id.clone(),
                reason_sha256: hex::encode(sha2::Sha256::digest(reason.as_bytes())),
            };
            match engine
                .assumer
                .as_person(&clients, &user.name, role, tags)
                .await
            {
                Ok(person) => person.clients,
                Err(failure) => {
                    fail(engine, &id, &user.name, &target.id, &failure).await?;
                    return Err(Error::Upstream(failure));
                }
            }
        }
    };

    let mut ask = clients
        .ssm
        .start_session()
        .target(&target.id)
        .document_name(&document)
        // AWS takes 1 to 256 characters or none (a role may make the reason optional).
        .set_reason((!reason.is_empty()).then(|| policy::aws_reason(&reason)));
    if !parameters.is_empty() {
        ask = ask.set_parameters(Some(parameters.into_iter().collect()));
    }
    let asked = tokio::time::Instant::now();
    let started = match ask.send().await {
        Ok(reply) => reply,
        Err(e) => {
            let failure = aws::Failure::of("StartSession", &e);
            let error = match e.as_service_error() {
                Some(se) if se.is_target_not_connected() => Error::TargetNotConnected(format!(
                    "the node {} is not connected to Session Manager (TargetNotConnected): its \
                     SSM agent is stopped or cannot reach AWS",
                    target.id
                )),
                Some(se) if se.is_invalid_document() => Error::InvalidDocument(format!(
                    "AWS does not know the document {document} (InvalidDocument), or it is not \
                     a Session Manager document"
                )),
                _ => Error::Upstream(failure.clone()),
            };
            fail(engine, &id, &user.name, &target.id, &failure).await?;
            return Err(error);
        }
    };
    let (Some(ssm_id), Some(stream_url), Some(token)) = (
        started.session_id(),
        started.stream_url(),
        started.token_value(),
    ) else {
        let failure =
            aws::Failure::ours("StartSession answered without a session id, stream URL or token");
        fail(engine, &id, &user.name, &target.id, &failure).await?;
        return Err(Error::Upstream(failure));
    };
    let start = SessionStart {
        session_id: ssm_id.to_owned(),
        target: target.id.clone(),
        stream_url: stream_url.to_owned(),
        token: token.to_owned(),
    };
    let options = client::ClientOptions {
        give_up_after: Duration::from_secs(engine.config.sessions.retransmit_give_up_seconds),
        ..client::ClientOptions::default()
    };
    let handle = match client::start_with(start, clients.clone(), options).await {
        Ok(handle) => handle,
        Err(message) => {
            // The message names the stream URL (the SSM session id holds the caller's name).
            let failure = aws::Failure {
                summary: "the session's data channel could not be opened".into(),
                detail: message,
            };
            abandon(
                engine, &clients, ssm_id, &id, &user.name, &target.id, &failure,
            )
            .await?;
            return Err(Error::Upstream(failure));
        }
    };
    if let Err(e) = rows::activate(&engine.db, &id, ssm_id).await {
        drop(handle);
        let failure = aws::Failure {
            summary: "the session could not be recorded as started; try again".into(),
            detail: format!("recording the start failed: {e}"),
        };
        // The database just failed: recording the failure may fail too; the start's error
        // is the one to report.
        let _ = abandon(
            engine, &clients, ssm_id, &id, &user.name, &target.id, &failure,
        )
        .await;
        return Err(e.into());
    }
    live::spawn_timed(
        engine.clone(),
        live::Spawn {
            id: id.clone(),
            user_id: user.id,
            user_name: user.name.clone(),
            target: target.id.clone(),
            region: target.region.clone(),
            account: target.account.clone(),
            ssm_session_id: ssm_id.to_owned(),
            handle,
            aws: clients.clone(),
            max_duration,
            idle_timeout: decision.idle_timeout,
        },
        Some(asked),
    );
    telemetry::session_started(true);
    rows::load(&engine.db, &id)
        .await?
        .ok_or_else(|| Error::Internal("the new session row vanished".into()))
}

/// Nothing half-made: closes the SSM session `ssm_id` that was started (best effort) and marks
/// the row failed ([`fail`]).
async fn abandon(
    engine: &Engine,
    clients: &aws::AwsClients,
    ssm_id: &str,
    id: &str,
    user: &str,
    target: &str,
    failure: &aws::Failure,
) -> Result<(), Error> {
    let _ = clients
        .ssm
        .terminate_session()
        .session_id(ssm_id)
        .send()
        .await;
    fail(engine, id, user, target, failure).await
}

/// Marks a session that never started as failed: the row says why in words safe to show
/// (`failure.summary`), the end event keeps AWS's full text (`failure.detail`).
async fn fail(
    engine: &Engine,
    id: &str,
    user: &str,
    target: &str,
    failure: &aws::Failure,
) -> Result<(), Error> {
    telemetry::session_started(false);
    let mut tx = engine.db.begin_write().await?;
    rows::mark_failed(&mut tx, id, &failure.summary).await?;
    let client = Client::default();
    audit::append(
        &mut tx.tx,
        &Event::new(kind::SESSION_END, user, &client)
            .session(id, target)
            .detail(json!({
                "how": format!("failed to start: {}", failure.summary),
                "error": failure.detail,
            })),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Sessions `user` may see in `filter`: their own, or everyone's for roles that see all
/// sessions; newest first.
pub async fn list(
    engine: &Engine,
    user: &User,
    filter: StateFilter,
) -> Result<Vec<SessionView>, Error> {
    Ok(rows::visible(&engine.db, user.id, policy::sees_all_sessions(user), filter).await?)
}

/// Whether `user` may list everyone's sessions with their live counters: a role that
/// oversees live sessions ([`policy::oversees_live_sessions`]).
pub fn may_list_everyone(user: &User) -> Result<(), Error> {
    if policy::oversees_live_sessions(user) {
        Ok(())
    } else {
        Err(Error::Forbidden(format!(
            "{} may not list everyone's live sessions: no role of yours may observe or \
             terminate others' sessions",
            user.name
        )))
    }
}

/// Everyone's sessions in `filter` with the counters of those running here, for roles that
/// oversee live sessions ([`may_list_everyone`]).
pub async fn list_everyone(
    engine: &Engine,
    user: &User,
    filter: StateFilter,
) -> Result<Vec<(SessionView, Option<live::Stats>)>, Error> {
    may_list_everyone(user)?;
    let sessions = list(engine, user, filter).await?;
    let stats = live_stats(engine, &sessions).await;
    Ok(sessions.into_iter().zip(stats).collect())
}

/// The managed nodes some role of `user` reaches (the targets list), and the accounts and
/// regions that could not be listed.
pub async fn reachable_targets(engine: &Engine, user: &User) -> Result<targets::Listing, Error> {
    let policy = engine.policy.current();
    let listing = engine.targets.all(&engine.aws).await?;
    Ok(targets::Listing {
        targets: listing
            .targets
            .iter()
            .filter(|t| policy.reaches(user, t))
            .cloned()
            .collect(),
        unavailable: listing.unavailable.clone(),
    })
}

/// Lines containing `q` in the recordings `user` may read ([`policy::may_read_recording`]:
/// their own sessions', and everyone's ended sessions for roles that see all sessions), at
/// most `limit`, and whether there were more. Audited (`recording.search`) with the query and
/// the sessions whose lines were returned.
pub async fn search(
    engine: &Engine,
    user: &User,
    client: &Client,
    q: &str,
    limit: i64,
) -> Result<(Vec<search::Match>, bool), Error> {
    let reader = search::Reader {
        user_id: user.id,
        everyone: policy::sees_all_sessions(user),
    };
    let slot = engine
        .searches
        .begin(user.id, std::time::Instant::now())
        .map_err(|refused| Error::Busy {
            message: refused.message,
            retry_after: refused.retry_after,
        })?;
    let timeout = Duration::from_millis(engine.config.recordings.search_timeout_ms);
    // The query runs in a task of its own that keeps the person's slot until the database is
    // done with it, even when the answer is given up on below (SQLite cannot cancel it).
    let db = engine.db.clone();
    let text = q.to_owned();
    let running = tokio::spawn(async move {
        let found = search::find(&db, reader, &text, limit, timeout).await;
        drop(slot);
        found
    });
    let too_slow = || {
        Error::SearchTimeout(format!(
            "the search took longer than {} ms; a longer text matches fewer lines and is \
             faster",
            timeout.as_millis()
        ))
    };
    let (matches, more) = match tokio::time::timeout(timeout, running).await {
        Err(_) => return Err(too_slow()),
        Ok(Err(e)) => return Err(Error::Internal(format!("the search task failed: {e}"))),
        Ok(Ok(Err(e))) if e.is_timeout() => return Err(too_slow()),
        Ok(Ok(found)) => found?,
    };
    let mut sessions: Vec<&str> = matches.iter().map(|m| m.session_id.as_str()).collect();
    sessions.dedup();
    let mut tx = engine.db.begin_write().await?;
    audit::append(
        &mut tx.tx,
        &Event::new(kind::RECORDING_SEARCH, &user.name, client)
            .detail(json!({"q": q, "matches": matches.len(), "more": more, "sessions": sessions})),
    )
    .await?;
    tx.commit().await?;
    Ok((matches, more))
}

/// How long a listing waits for one session's counters.
const STATS_WAIT: Duration = Duration::from_secs(1);

/// The counters of each running session of `views`, in their order (`None`: ended, or its
/// gateway did not answer within [`STATS_WAIT`]): from this gateway's own sessions, and asked
/// of the gateways that run the others.
pub async fn live_stats(engine: &Engine, views: &[SessionView]) -> Vec<Option<live::Stats>> {
    let here: Vec<String> = views.iter().map(|v| v.id.clone()).collect();
    let mut found = local_stats(engine, &here).await;
    let elsewhere: Vec<&SessionView> = views
        .iter()
        .filter(|v| v.is_running() && !found.contains_key(&v.id))
        .collect();
    if !elsewhere.is_empty() && engine.cluster.is_clustered() {
        found.extend(remote_stats(engine, &elsewhere).await);
    }
    views.iter().map(|v| found.remove(&v.id)).collect()
}

/// The counters of those of `ids` running in this gateway.
pub async fn local_stats(engine: &Engine, ids: &[String]) -> BTreeMap<String, live::Stats> {
    let asks = ids.iter().map(|id| {
        let live = engine.live.get(id);
        async move {
            let live = live?;
            let stats = tokio::time::timeout(STATS_WAIT, live.stats())
                .await
                .ok()?
                .ok()?;
            Some((id.clone(), stats))
        }
    });
    futures_util::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// The counters of `views` (running elsewhere), asked of their gateways at once.
async fn remote_stats(engine: &Engine, views: &[&SessionView]) -> BTreeMap<String, live::Stats> {
    let mut by_owner: BTreeMap<String, (Registered, Vec<String>)> = BTreeMap::new();
    for view in views {
        match gateways::owner_of(&engine.db, &view.id).await {
            Ok(Some(owner)) if owner.is_alive(engine.cluster.fresh_after()) => {
                by_owner
                    .entry(owner.id.clone())
                    .or_insert_with(|| (owner, Vec::new()))
                    .1
                    .push(view.id.clone());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(session = %view.id, "finding its gateway: {e}"),
        }
    }
    let asks = by_owner.into_values().map(|(owner, ids)| async move {
        let body = json!({ "ids": ids });
        let asked = engine
            .cluster
            .post::<BTreeMap<String, BTreeMap<String, live::Stats>>>(
                &owner,
                "/internal/v1/sessions/stats",
                "",
                &body,
                STATS_WAIT,
            );
        match tokio::time::timeout(STATS_WAIT, asked).await {
            Ok(Ok(mut reply)) => reply.remove("stats").unwrap_or_default(),
            Ok(Err(e)) => {
                tracing::warn!(gateway = %owner.id, "live counters: {e}");
                BTreeMap::new()
            }
            Err(_) => BTreeMap::new(),
        }
    });
    futures_util::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// A session `user` may see (another user's session is not acknowledged to exist unless the
/// user sees all sessions).
pub async fn visible_one(engine: &Engine, user: &User, id: &str) -> Result<SessionView, Error> {
    match rows::load(&engine.db, id).await? {
        Some(view) if view.user_id() == user.id || policy::sees_all_sessions(user) => Ok(view),
        _ => Err(Error::UnknownSession(format!("no session {id:?} of yours"))),
    }
}

/// Ends the live sessions of `user` (with the roles they hold now) on nodes their roles no
/// longer reach, recorded as ended by `why`; how many.
pub async fn revoke_unreachable(engine: &Engine, user: &User, why: &str) -> usize {
    let in_force = engine.policy.current();
    let mut ended = 0;
    for live in engine.live.all() {
        if live.user_id != user.id {
            continue;
        }
        let facts = match engine.targets.find(&engine.aws, &live.target).await {
            Ok(Some(target)) => target,
            // Not listed any more: judged by its id alone, as a start would be.
            Ok(None) => Target::unknown(&live.target),
            // AWS failed for a moment: its tags are unknown, so nothing is decided on them
            // (the access sweep looks again in a few seconds).
            Err(e) => {
                tracing::warn!(session = %live.id, "cannot check what its owner reaches: {e}");
                continue;
            }
        };
        if !in_force.reaches(user, &facts) {
            super::upkeep::revoke(engine, &live, why).await;
            ended += 1;
        }
    }
    ended
}

/// Terminates a running session for `user` (its owner, or a role that terminates others'):
/// `session.terminate` is audited before `TerminateSession` is called; the session's task
/// records the end.
pub async fn terminate(
    engine: &Engine,
    user: &User,
    client: &Client,
    id: &str,
) -> Result<(), Error> {
    let view = visible_one(engine, user, id).await?;
    if !policy::may_terminate(user, view.user_id()) {
        telemetry::denied(Denied::Terminate);
        return Err(Error::Forbidden(format!(
            "{} may not terminate {}'s session",
            user.name, view.user
        )));
    }
    let Some(live) = engine.live.get(id) else {
        return terminate_elsewhere(engine, user, client, &view).await;
    };
    let mut tx = engine.db.begin_write().await?;
    audit::append(
        &mut tx.tx,
        &Event::new(kind::SESSION_TERMINATE, &user.name, client)
            .session(id, &view.target)
            .detail(json!({"ssm_session_id": live.ssm_session_id})),
    )
    .await?;
    tx.commit().await?;
    end_here(engine, id, &format!("terminated by {}", user.name)).await
}

/// Terminates `view`, which another gateway runs: audited here, then asked of its gateway.
async fn terminate_elsewhere(
    engine: &Engine,
    user: &User,
    client: &Client,
    view: &SessionView,
) -> Result<(), Error> {
    let id = &view.id;
    let not_running =
        || Error::SessionEnded(format!("session {id} is not running ({})", view.state));
    if !view.is_running() || !engine.cluster.is_clustered() {
        return Err(not_running());
    }
    let owner = gateways::owner_of(&engine.db, id)
        .await?
        .filter(|g| g.id != engine.cluster.id && g.is_alive(engine.cluster.fresh_after()))
        .ok_or_else(not_running)?;
    let mut tx = engine.db.begin_write().await?;
    audit::append(
        &mut tx.tx,
        &Event::new(kind::SESSION_TERMINATE, &user.name, client)
            .session(id, &view.target)
            .detail(json!({"gateway": owner.id})),
    )
    .await?;
    tx.commit().await?;
    ending::ask_owner_to_end(
        engine,
        &owner,
        id,
        &client.addr,
        &format!("terminated by {}", user.name),
    )
    .await
}

/// The recording of a session for `user` (who asked from `client`): the owner's at any time
/// (as written so far while it runs), anyone's who sees every session once it has ended
/// ([`policy::may_read_recording`]); streamed from S3 once uploaded there. Each read is
/// audited (`recording.read`) before a byte is served.
pub async fn recording(
    engine: &Engine,
    user: &User,
    client: &Client,
    id: &str,
) -> Result<(SessionView, Opened), Error> {
    let view = visible_one(engine, user, id).await?;
    if !policy::may_read_recording(user, view.user_id(), view.is_running()) {
        return Err(Error::SessionRunning(format!(
            "session {id} of {} is still running: watch it live (observing is audited and \
             shown to {}); its recording opens to you once it has ended",
            view.user, view.user
        )));
    }
    let opened = match engine.recordings.open(&view.id).await {
        Ok(Some(opened)) => opened,
        Ok(None) => return Err(Error::NoRecording(format!("session {id} has no recording"))),
        Err(OpenError::Local(e)) => return Err(Error::Internal(e)),
        Err(OpenError::S3(e)) => return Err(Error::Upstream(e)),
    };
    let mut tx = engine.db.begin_write().await?;
    audit::append(
        &mut tx.tx,
        &Event::new(kind::RECORDING_READ, &user.name, client)
            .session(id, &view.target)
            .detail(json!({"owner": view.user, "state": view.state, "bytes": opened.length})),
    )
    .await?;
    tx.commit().await?;
    Ok((view, opened))
}
