//! The policy's verdict on a person reaching a node, shared by a session start and an access
//! request: the node looked up (an unlisted node is judged by its id alone), the decision
//! asked of the policy, a refusal audited (`session.denied`) and answered so that nobody
//! learns of a node they cannot reach.

use serde_json::json;

use super::{Engine, Error};
use crate::gateway::facts::{Target, User};
use crate::gateway::policy::{self, Decision, Parameters, Refusal};
use crate::gateway::store::audit::{self, Client, Event, kind};
use crate::gateway::telemetry::{self, Denied};

/// What is asked of the policy.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    /// The node's id.
    pub target: &'a str,
    /// The SSM document.
    pub document: &'a str,
    /// Its parameters.
    pub parameters: &'a Parameters,
    /// Why (untrimmed).
    pub reason: &'a str,
    /// `Some` when it is not a start (`"access request"`), recorded with a refusal.
    pub by: Option<&'a str>,
}

/// The listed node and the policy's decision, or the refusal: a node no role of `user`
/// reaches is 404 like a node that does not exist (the detail goes to the audit log and
/// `porthole policy check`), one they reach is 403 with why, a reason that breaks a rule 422.
pub async fn judge(
    engine: &Engine,
    user: &User,
    client: &Client,
    asked: Asked<'_>,
) -> Result<(Target, Decision), Error> {
    let found = engine.targets.find(&engine.aws, asked.target).await?;
    let in_force = engine.policy.current();
    let facts = found
        .clone()
        .unwrap_or_else(|| Target::unknown(asked.target));
    let decided =
        in_force.decide_start(user, &facts, asked.document, asked.parameters, asked.reason);
    let not_found = || {
        Error::UnknownTarget(format!(
            "no managed node {:?} in the configured regions",
            asked.target
        ))
    };
    if let Err(Refusal::Denied(why)) = &decided {
        let mut detail = json!({
            "why": why, "target": asked.target, "document": asked.document,
            "parameters": asked.parameters,
            "roles": user.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "policy": in_force.hash(),
        });
        if let Some(by) = asked.by {
            detail["asked"] = json!(by);
        }
        record_denial(
            engine,
            user,
            client,
            asked.target,
            asked.reason.trim(),
            detail,
        )
        .await?;
        // Who may open no session at all is told so, without a word about the node.
        policy::may_open_session(user, asked.target).map_err(Error::Forbidden)?;
        if !in_force.reaches(user, &facts) {
            return Err(not_found());
        }
        // The node is in the person's list: say why (the document, its parameters).
        return Err(Error::Forbidden(why.clone()));
    }
    // A node that is not listed is unknown, whatever the reason.
    let Some(target) = found else {
        return Err(not_found());
    };
    let decision = decided.map_err(|refusal| Error::InvalidReason(refusal.message().to_owned()))?;
    Ok((target, decision))
}

/// Audits a refused start (`session.denied`) and counts it.
pub async fn record_denial(
    engine: &Engine,
    user: &User,
    client: &Client,
    target: &str,
    reason: &str,
    detail: serde_json::Value,
) -> Result<(), Error> {
    telemetry::denied(Denied::Start);
    let mut tx = engine.db.begin_write().await?;
    audit::append(
        &mut tx.tx,
        &Event::new(kind::SESSION_DENIED, &user.name, client)
            .target(target)
            .reason(reason)
            .detail(detail),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
