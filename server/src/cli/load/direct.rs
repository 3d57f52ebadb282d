//! The direct path: `ssm:StartSession` against the emulator with the AWS SDK and the core's
//! data-channel client ([`crate::ssm::client`]), as the gateway does inside, without the
//! gateway. Its round trips are the baseline the gateway's are compared with.

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_credential_types::Credentials;
use tokio::time::Instant;

use super::gateway::{Failure, GREETING, STEP_TIMEOUT};
use super::stats::Errors;
use super::typing::{DRAIN, Plan, Typing};
use crate::ssm::client::{
    self, AwsClients, ClientEvent, ClientHandle, ClientOptions, SessionStart,
};

/// AWS clients for the emulator at `url` (it accepts any key), with no retries.
pub async fn clients(url: &str) -> AwsClients {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDLOAD",
            "load",
            None,
            None,
            "porthole-load",
        ))
        .retry_config(RetryConfig::disabled())
        .load()
        .await;
    AwsClients {
        ssm: aws_sdk_ssm::Client::new(&sdk),
        kms: aws_sdk_kms::Client::new(&sdk),
    }
}

/// Starts a session on `target`, opens its data channel and waits for the greeting.
pub async fn open(
    aws: &AwsClients,
    target: &str,
    reason: &str,
) -> Result<(String, ClientHandle), Failure> {
    let ask = aws.ssm.start_session().target(target).reason(reason).send();
    let reply = tokio::time::timeout(STEP_TIMEOUT, ask)
        .await
        .map_err(|_| ("direct: start timeout".to_owned(), target.to_owned()))?
        .map_err(|e| {
            let e = aws_sdk_ssm::error::DisplayErrorContext(e).to_string();
            ("direct: start refused".to_owned(), e)
        })?;
    let (Some(id), Some(url), Some(token)) =
        (reply.session_id(), reply.stream_url(), reply.token_value())
    else {
        return Err(("direct: start incomplete".into(), target.to_owned()));
    };
    let start = SessionStart {
        session_id: id.to_owned(),
        target: target.to_owned(),
        stream_url: url.to_owned(),
        token: token.to_owned(),
    };
    let mut handle = client::start_with(start, aws.clone(), ClientOptions::default())
        .await
        .map_err(|e| ("direct: channel".to_owned(), e))?;
    let greeted = async {
        let mut seen = Vec::new();
        loop {
            match handle.events.recv().await {
                Some(ClientEvent::Output(bytes)) => {
                    seen.extend_from_slice(&bytes);
                    if memchr::memmem::find(&seen, GREETING.as_bytes()).is_some() {
                        return Ok(());
                    }
                }
                Some(ClientEvent::Closed(reason)) => {
                    return Err(("direct: closed".to_owned(), reason.to_string()));
                }
                Some(_) => {}
                None => return Err(("direct: closed".to_owned(), id.to_owned())),
            }
        }
    };
    tokio::time::timeout(STEP_TIMEOUT, greeted)
        .await
        .map_err(|_| ("direct: no greeting".to_owned(), id.to_owned()))??;
    Ok((id.to_owned(), handle))
}

/// Ends a direct session (`ssm:TerminateSession`).
pub async fn end(aws: &AwsClients, id: &str) -> Result<(), Failure> {
    let ask = aws.ssm.terminate_session().session_id(id).send();
    match tokio::time::timeout(STEP_TIMEOUT, ask).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err((
            "direct: end".to_owned(),
            aws_sdk_ssm::error::DisplayErrorContext(e).to_string(),
        )),
        Err(_) => Err(("direct: end timeout".to_owned(), id.to_owned())),
    }
}

/// Types on a direct session as `plan` says; returns what it measured.
pub async fn type_on(mut handle: ClientHandle, plan: Plan, errors: Errors) -> Typing {
    const PATH: &str = "direct";
    let mut typing = Typing::new(&plan);
    let mut tick = plan.interval();
    let drain_end = plan.end + DRAIN;
    loop {
        let typing_now = Instant::now() < plan.end;
        if !typing_now && !typing.waiting() {
            break;
        }
        tokio::select! {
            _ = tick.tick(), if typing_now => {
                let key = typing.key(Instant::now());
                if let Err(e) = handle.input(vec![key]).await {
                    errors.add("direct: send", &e);
                    break;
                }
            }
            event = handle.events.recv() => match event {
                Some(ClientEvent::Output(bytes)) => {
                    typing.received(&bytes, Instant::now(), &errors, PATH);
                }
                Some(ClientEvent::Reconnecting { error, .. }) => errors.add("direct: reconnecting", &error),
                Some(ClientEvent::Closed(reason)) => {
                    errors.add("direct: closed", &reason.to_string());
                    break;
                }
                Some(_) => {}
                None => {
                    errors.add("direct: closed", "the client ended");
                    break;
                }
            },
            _ = tokio::time::sleep_until(drain_end) => break,
        }
    }
    typing
}
