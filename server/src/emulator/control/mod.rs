//! The emulator's control plane: the AWS JSON 1.1 endpoint on `POST /` that the AWS SDKs and
//! CLI call with `--endpoint-url`.
//!
//! Requests are dispatched on the `X-Amz-Target` header:
//!
//! - `AmazonSSM.StartSession`, `ResumeSession`, `TerminateSession`, `DescribeSessions`
//!   ([`sessions`]);
//! - `AmazonSSM.DescribeInstanceInformation`, `ListTagsForResource` ([`instances`]);
//! - `TrentService.GenerateDataKey`, `Decrypt` ([`kms_api`]), backed by the emulator's
//!   [`LocalKms`](super::kms::LocalKms).
//!
//! Errors have the service's shape: HTTP 400 (never 5xx for a client mistake: the SDKs retry
//! 5xx for seconds), `x-amzn-ErrorType: <Code>` and `{"__type":"<Code>","message":"…"}`.
//! Timestamps are epoch seconds as JSON numbers, as awsJson1_1 has them.
//!
//! **SigV4 signatures are not verified.** The caller is taken from the access key id in the
//! `Authorization` header's `Credential=` (owner `arn:aws:iam::000000000000:user/<AKID>`), or
//! `anonymous` without one. The emulator is a local test double: never expose it beyond
//! loopback.

mod instances;
mod kms_api;
mod sessions;
mod sts_api;

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State as AxState;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::State;

/// The largest request body accepted. The router should also set
/// `DefaultBodyLimit::max(MAX_BODY_BYTES)` on this route, so larger bodies are refused before
/// they are read; this handler checks again in case it does not.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The account id in the ARNs the emulator reports.
pub const ACCOUNT_ID: &str = crate::emulator::nodes::DEFAULT_ACCOUNT;

const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// `POST /`: dispatches on `X-Amz-Target`; a form body without it is STS's Query protocol.
pub async fn handle(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let operation = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if operation.is_empty() && form {
        return sts_api::handle(&state, &headers, &body);
    }
    let mut response = match dispatch(&state, operation, &headers, &body) {
        Ok(json) => ([("content-type", JSON_CONTENT_TYPE)], json).into_response(),
        Err(error) => {
            tracing::debug!(operation, code = error.code, message = %error.message, "refused");
            error.into_response()
        }
    };
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        response.headers_mut().insert("x-amzn-requestid", id);
    }
    response
}

fn dispatch(
    state: &Arc<State>,
    operation: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::too_large(body.len()));
    }
    let caller = Caller::resolve(headers, state)?;
    match operation {
        "AmazonSSM.StartSession" => call(operation, body, |r| sessions::start(state, &caller, r)),
        "AmazonSSM.ResumeSession" => call(operation, body, |r| sessions::resume(state, r)),
        "AmazonSSM.TerminateSession" => call(operation, body, |r| sessions::terminate(state, r)),
        "AmazonSSM.DescribeSessions" => call(operation, body, |r| sessions::describe(state, r)),
        "AmazonSSM.DescribeInstanceInformation" => {
            call(operation, body, |r| instances::describe(state, &caller, r))
        }
        "AmazonSSM.ListTagsForResource" => {
            call(operation, body, |r| instances::list_tags(state, &caller, r))
        }
        "TrentService.GenerateDataKey" => {
            call(operation, body, |r| kms_api::generate_data_key(state, r))
        }
        "TrentService.Decrypt" => call(operation, body, |r| kms_api::decrypt(state, r)),
        "" => Err(ApiError::new(
            "UnknownOperationException",
            "missing X-Amz-Target header: expected e.g. AmazonSSM.StartSession",
        )),
        other => Err(ApiError::new(
            "UnknownOperationException",
            format!("the emulator does not implement the operation {other:?}"),
        )),
    }
}

/// Parses the request, runs the operation and serialises its answer.
fn call<Req: DeserializeOwned, Resp: Serialize>(
    operation: &str,
    body: &[u8],
    op: impl FnOnce(Req) -> Result<Resp, ApiError>,
) -> Result<Vec<u8>, ApiError> {
    // An empty body is an empty input, as the SDKs send `{}` for one.
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    let request = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            "SerializationException",
            format!("cannot read the {operation} request body: {e}"),
        )
    })?;
    let response = op(request)?;
    serde_json::to_vec(&response).map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "InternalServerError",
        message: format!("cannot serialise the response: {e}"),
    })
}

/// An AWS error: its `__type` code, a message and the HTTP status (400 unless stated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    fn validation(message: impl Into<String>) -> Self {
        Self::new("ValidationException", message)
    }

    /// A Smithy-style constraint message naming the member, e.g.
    /// `1 validation error detected: Value null at 'target' failed to satisfy constraint: …`.
    fn constraint(value: &str, member: &str, constraint: &str) -> Self {
        Self::validation(format!(
            "1 validation error detected: Value {value} at '{member}' failed to satisfy \
             constraint: {constraint}"
        ))
    }

    fn too_large(len: usize) -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "SerializationException",
            message: format!(
                "the request body has {len} bytes; the emulator accepts at most {MAX_BODY_BYTES}"
            ),
        }
    }

    /// The error code (`__type`).
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "__type": self.code, "message": self.message });
        (
            self.status,
            [
                ("content-type", JSON_CONTENT_TYPE),
                ("x-amzn-ErrorType", self.code),
            ],
            body.to_string(),
        )
            .into_response()
    }
}

/// Who is calling, from the SigV4 `Authorization` header (not verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The access key id, or `anonymous`: the first part of session ids.
    pub name: String,
    /// `arn:aws:iam::000000000000:user/<name>`: the sessions' Owner.
    pub arn: String,
    /// The account it calls from: its assumed role's, else [`ACCOUNT_ID`]. It sees only the
    /// nodes of that account.
    pub account: String,
}

impl Caller {
    /// The caller named by the `Credential=` of the `Authorization` header: keys the emulator's
    /// STS issued stand for their assumed role (`ExpiredTokenException` once expired).
    pub fn resolve(headers: &HeaderMap, state: &State) -> Result<Self, ApiError> {
        let caller = Self::from_headers(headers);
        match state.sts.lookup(&caller.name) {
            None => Ok(caller),
            Some(Ok(assumed)) => Ok(Self {
                account: assumed
                    .arn
                    .split(':')
                    .nth(4)
                    .unwrap_or(ACCOUNT_ID)
                    .to_owned(),
                name: assumed.session_name,
                arn: assumed.arn,
            }),
            Some(Err(e)) => Err(ApiError::new(e.code, e.message)),
        }
    }

    /// The caller named by the `Credential=` of the `Authorization` header.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let name = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(access_key_id)
            .unwrap_or_else(|| "anonymous".to_owned());
        let arn = format!("arn:aws:iam::{ACCOUNT_ID}:user/{name}");
        Self {
            name,
            arn,
            account: ACCOUNT_ID.to_owned(),
        }
    }
}

/// `AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/ssm/aws4_request, …` → `AKID`,
/// keeping only the characters an IAM user name may have.
fn access_key_id(authorization: &str) -> Option<String> {
    let (_, rest) = authorization.split_once("Credential=")?;
    let akid: String = rest
        .split(['/', ',', ' '])
        .next()?
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(*c))
        .take(64)
        .collect();
    (!akid.is_empty()).then_some(akid)
}

/// A required member: `ValidationException` naming it when it is absent.
fn required<T>(value: Option<T>, member: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::constraint("null", member, "Member must not be null"))
}

/// `MaxResults`: `default` when absent, `ValidationException` outside `range`.
fn max_results(
    value: Option<i64>,
    range: RangeInclusive<i64>,
    default: usize,
) -> Result<usize, ApiError> {
    let Some(n) = value else { return Ok(default) };
    if n < *range.start() {
        let c = format!(
            "Member must have value greater than or equal to {}",
            range.start()
        );
        return Err(ApiError::constraint(&format!("'{n}'"), "maxResults", &c));
    }
    if n > *range.end() {
        let c = format!(
            "Member must have value less than or equal to {}",
            range.end()
        );
        return Err(ApiError::constraint(&format!("'{n}'"), "maxResults", &c));
    }
    usize::try_from(n).map_err(|_| ApiError::constraint(&format!("'{n}'"), "maxResults", "range"))
}

/// Epoch seconds with milliseconds, as awsJson1_1 timestamps are written.
fn epoch_seconds(t: SystemTime) -> f64 {
    let millis = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    millis as f64 / 1000.0
}

/// A timestamp in a filter value: RFC 3339 (`2018-08-29T00:00:00Z`, fractions and offsets
/// allowed), a date (`2018-08-29`, midnight UTC) or epoch seconds.
fn parse_timestamp(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        let d = Duration::try_from_secs_f64(secs).ok()?;
        return UNIX_EPOCH.checked_add(d);
    }
    let number = |s: &str| -> Option<u32> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    let (date, rest) = (text.get(..10)?, text.get(10..)?);
    let [y, m, d]: [&str; 3] = date.split('-').collect::<Vec<_>>().try_into().ok()?;
    let month = time::Month::try_from(u8::try_from(number(m)?).ok()?).ok()?;
    let year = i32::try_from(number(y)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, u8::try_from(number(d)?).ok()?).ok()?;
    let (clock, offset) = if rest.is_empty() {
        (time::Time::MIDNIGHT, time::UtcOffset::UTC)
    } else {
        let rest = rest.strip_prefix(['T', 't', ' '])?;
        // Without a zone, UTC.
        let split = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
        let (clock, zone) = rest.split_at(split);
        let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
        let [h, mi, s]: [&str; 3] = hms.split(':').collect::<Vec<_>>().try_into().ok()?;
        let nanos = if fraction.is_empty() {
            0
        } else {
            let digits: String = fraction
                .chars()
                .chain(std::iter::repeat('0'))
                .take(9)
                .collect();
            number(&digits)?
        };
        let clock = time::Time::from_hms_nano(
            u8::try_from(number(h)?).ok()?,
            u8::try_from(number(mi)?).ok()?,
            u8::try_from(number(s)?).ok()?,
            nanos,
        )
        .ok()?;
        let offset = if zone.is_empty() || zone.eq_ignore_ascii_case("z") {
            time::UtcOffset::UTC
        } else {
            let sign: i8 = if zone.starts_with('-') { -1 } else { 1 };
            let (oh, om) = zone.get(1..)?.split_once(':')?;
            let oh = i8::try_from(number(oh)?).ok()?;
            let om = i8::try_from(number(om)?).ok()?;
            time::UtcOffset::from_hms(sign * oh, sign * om, 0).ok()?
        };
        (clock, offset)
    };
    let at = time::PrimitiveDateTime::new(date, clock).assume_offset(offset);
    Some(SystemTime::from(at))
}

/// One page of `items` for a `NextToken` scheme: the items are ordered by `key` (unique per
/// item), the token holds the last key returned, and the next page starts after it, so pages
/// stay consistent when items are added between calls. Tokens are opaque to callers; one that
/// was not made here for `kind` is `InvalidNextToken`.
fn page<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
    kind: &str,
    max: usize,
    next_token: Option<&str>,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    items.sort_by_cached_key(&key);
    let start = match next_token.filter(|t| !t.is_empty()) {
        None => 0,
        Some(token) => {
            let after = decode_token(kind, token).ok_or_else(|| {
                ApiError::new("InvalidNextToken", "The specified token is not valid.")
            })?;
            items.partition_point(|item| key(item) <= after)
        }
    };
    let mut rest = items.split_off(start.min(items.len()));
    let more = rest.len() > max;
    rest.truncate(max);
    let token = if more {
        rest.last().map(|last| encode_token(kind, &key(last)))
    } else {
        None
    };
    Ok((rest, token))
}

const TOKEN_ENGINE: base64::engine::GeneralPurpose =
    base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn encode_token(kind: &str, cursor: &str) -> String {
    TOKEN_ENGINE.encode(format!("porthole-v1\n{kind}\n{cursor}"))
}

fn decode_token(kind: &str, token: &str) -> Option<String> {
    let bytes = TOKEN_ENGINE.decode(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let rest = text
        .strip_prefix("porthole-v1\n")?
        .strip_prefix(kind)?
        .strip_prefix('\n')?;
    Some(rest.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caller_comes_from_the_credential_scope() {
        let mut headers = HeaderMap::new();
        assert_eq!(Caller::from_headers(&headers).name, "anonymous");
        headers.insert(
            "authorization",
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AKIDTEST/20260101/us-east-1/ssm/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature=abc",
            ),
        );
        let caller = Caller::from_headers(&headers);
        assert_eq!(caller.name, "AKIDTEST");
        assert_eq!(caller.arn, "arn:aws:iam::000000000000:user/AKIDTEST");
        assert_eq!(access_key_id("Credential=a<b>/x"), Some("ab".to_owned()));
        assert_eq!(access_key_id("Credential=/x"), None);
        assert_eq!(access_key_id("Basic abc"), None);
    }

    #[test]
    fn pages_cover_everything_once_and_respect_the_size() {
        let items: Vec<u32> = (0..23).rev().collect();
        let key = |n: &u32| format!("{n:04}");
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let (page, next) = page(items.clone(), key, "t", 5, token.as_deref()).unwrap();
            assert!(page.len() <= 5);
            pages += 1;
            seen.extend(page);
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(pages, 5);
        assert_eq!(seen, (0..23).collect::<Vec<_>>());
        // An exact multiple has no trailing empty page.
        let (first, next) = page((0..5).collect::<Vec<u32>>(), key, "t", 5, None).unwrap();
        assert_eq!((first.len(), next), (5, None));
    }

    #[test]
    fn pages_survive_insertions_and_refuse_foreign_tokens() {
        let key = |n: &u32| format!("{n:04}");
        let (_, token) = page(vec![1, 2, 3, 4], key, "t", 2, None).unwrap();
        let token = token.unwrap();
        let (second, _) = page(vec![0, 1, 2, 3, 4], key, "t", 2, Some(&token)).unwrap();
        assert_eq!(second, vec![3, 4]);
        for bad in ["garbage!", "Zm9v", &encode_token("other", "0002")] {
            let err = page(vec![1, 2], key, "t", 2, Some(bad)).unwrap_err();
            assert_eq!(err.code(), "InvalidNextToken", "{bad}");
        }
        // An empty token is no token.
        assert_eq!(
            page(vec![1, 2], key, "t", 2, Some("")).unwrap().0,
            vec![1, 2]
        );
    }

    #[test]
    fn max_results_is_checked_against_its_range() {
        assert_eq!(max_results(None, 5..=50, 50).unwrap(), 50);
        assert_eq!(max_results(Some(5), 5..=50, 50).unwrap(), 5);
        let err = max_results(Some(51), 5..=50, 50).unwrap_err();
        assert_eq!(err.code(), "ValidationException");
        assert!(err.message().contains("'maxResults'"), "{}", err.message());
        assert!(
            err.message().contains("less than or equal to 50"),
            "{}",
            err.message()
        );
        assert!(max_results(Some(4), 5..=50, 50).is_err());
        assert!(max_results(Some(-1), 1..=200, 20).is_err());
    }

    #[test]
    fn timestamps_parse_in_the_forms_people_type() {
        let at = |s: &str| parse_timestamp(s).map(epoch_seconds);
        assert_eq!(at("2018-08-29T00:00:00Z"), Some(1_535_500_800.0));
        assert_eq!(at("2018-08-29"), Some(1_535_500_800.0));
        assert_eq!(at("2018-08-29T02:00:00+02:00"), Some(1_535_500_800.0));
        assert_eq!(at("2018-08-28T22:30:00.250-01:30"), Some(1_535_500_800.25));
        assert_eq!(at("1535500800"), Some(1_535_500_800.0));
        for bad in [
            "",
            "yesterday",
            "2018-13-01",
            "2018-08-29T25:00:00Z",
            "2018-08-29T00:00Z",
        ] {
            assert_eq!(at(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn errors_have_the_aws_shape() {
        let response = ApiError::new("InvalidTarget", "nope").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()["x-amzn-ErrorType"], "InvalidTarget");
        assert_eq!(response.headers()["content-type"], JSON_CONTENT_TYPE);
    }
}
