//! STS over the AWS Query protocol: `Action=AssumeRole` and `Action=GetCallerIdentity` in a
//! form body, answered in XML (`<AssumeRoleResponse>`, `<ErrorResponse>`), backed by the
//! emulator's [`Sts`](crate::emulator::sts::Sts).

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{ACCOUNT_ID, Caller, MAX_BODY_BYTES};
use crate::emulator::State;
use crate::emulator::sts::{StsError, iso8601, xml_escape};

const NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

fn xml(status: StatusCode, body: String, request_id: &str) -> Response {
    let mut response = (status, [("content-type", "text/xml")], body).into_response();
    if let Ok(id) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-amzn-requestid", id);
    }
    response
}

fn error(e: &StsError, request_id: &str) -> Response {
    let kind = if e.status >= 500 {
        "Receiver"
    } else {
        "Sender"
    };
    let body = format!(
        "<ErrorResponse xmlns=\"{NS}\"><Error><Type>{kind}</Type><Code>{}</Code>\
         <Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
        e.code,
        xml_escape(&e.message)
    );
    xml(
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
        body,
        request_id,
    )
}

/// Handles one Query-protocol request.
pub fn handle(state: &State, headers: &HeaderMap, body: &[u8]) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    if body.len() > MAX_BODY_BYTES {
        return error(
            &StsError {
                code: "ValidationError",
                message: format!(
                    "the request body has {} bytes; at most {MAX_BODY_BYTES}",
                    body.len()
                ),
                status: 413,
            },
            &request_id,
        );
    }
    let form: HashMap<String, String> = match serde_urlencoded::from_bytes(body) {
        Ok(form) => form,
        Err(e) => {
            return error(
                &StsError {
                    code: "MalformedInput",
                    message: format!("cannot read the form body: {e}"),
                    status: 400,
                },
                &request_id,
            );
        }
    };
    let caller = match Caller::resolve(headers, state) {
        Ok(caller) => caller,
        Err(e) => {
            return error(
                &StsError {
                    code: if e.code() == "ExpiredTokenException" {
                        "ExpiredToken"
                    } else {
                        e.code()
                    },
                    message: e.message().to_owned(),
                    status: 400,
                },
                &request_id,
            );
        }
    };
    match form.get("Action").map(String::as_str) {
        Some("AssumeRole") => match state.sts.assume_role(&state.config.sts, &caller.arn, &form) {
            Ok((key_id, secret, token, assumed)) => {
                let (account, _) = assumed
                    .arn
                    .trim_start_matches("arn:aws:sts::")
                    .split_once(':')
                    .unwrap_or((ACCOUNT_ID, ""));
                let role_id = format!("AROA{}:{}", account, assumed.session_name);
                let source = assumed
                    .source_identity
                    .as_deref()
                    .map(|s| format!("<SourceIdentity>{}</SourceIdentity>", xml_escape(s)))
                    .unwrap_or_default();
                let body = format!(
                    "<AssumeRoleResponse xmlns=\"{NS}\"><AssumeRoleResult>{source}\
                         <AssumedRoleUser><AssumedRoleId>{}</AssumedRoleId><Arn>{}</Arn></AssumedRoleUser>\
                         <Credentials><AccessKeyId>{key_id}</AccessKeyId>\
                         <SecretAccessKey>{secret}</SecretAccessKey>\
                         <SessionToken>{token}</SessionToken>\
                         <Expiration>{}</Expiration></Credentials>\
                         <PackedPolicySize>{}</PackedPolicySize></AssumeRoleResult>\
                         <ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>\
                         </AssumeRoleResponse>",
                    xml_escape(&role_id),
                    xml_escape(&assumed.arn),
                    iso8601(assumed.expires),
                    assumed.tags.len() * 3,
                );
                xml(StatusCode::OK, body, &request_id)
            }
            Err(e) => {
                tracing::debug!(code = e.code, message = %e.message, "AssumeRole refused");
                error(&e, &request_id)
            }
        },
        Some("GetCallerIdentity") => {
            let account = caller
                .arn
                .split(':')
                .nth(4)
                .filter(|a| !a.is_empty())
                .unwrap_or(ACCOUNT_ID)
                .to_owned();
            let body = format!(
                "<GetCallerIdentityResponse xmlns=\"{NS}\"><GetCallerIdentityResult>\
                 <Arn>{}</Arn><UserId>{}</UserId><Account>{account}</Account>\
                 </GetCallerIdentityResult><ResponseMetadata><RequestId>{request_id}</RequestId>\
                 </ResponseMetadata></GetCallerIdentityResponse>",
                xml_escape(&caller.arn),
                xml_escape(&caller.name),
            );
            xml(StatusCode::OK, body, &request_id)
        }
        other => error(
            &StsError {
                code: "InvalidAction",
                message: format!(
                    "the emulator's STS does not implement the action {:?}",
                    other.unwrap_or("")
                ),
                status: 400,
            },
            &request_id,
        ),
    }
}
