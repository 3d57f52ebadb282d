//! A correlation id for every request: made here (an `X-Request-Id` sent by the client is not
//! trusted, so that an id in the log always names one request of ours), answered in the
//! `x-request-id` header of every response, put in the body of every API error, and carried
//! by the log lines written while the request is handled. A person who quotes it lets an
//! operator find the full error (an AWS message naming accounts and roles, a database error)
//! that the answer left out.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

/// The header.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being handled by this task, when there is one.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// A new id: 16 hex digits (64 random bits), short enough to read out loud.
fn new_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    id[..16].to_owned()
}

/// Middleware: gives the request an id, handles it within that id (see [`current`]) and a
/// log span naming it, and answers the id in [`HEADER`].
pub async fn assign(request: Request, next: Next) -> Response {
    let id = new_id();
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = CURRENT
        .scope(id.clone(), next.run(request).instrument(span))
        .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_and_distinct() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn the_id_is_known_inside_its_scope_only() {
        assert_eq!(current(), None);
        let seen = CURRENT.scope("abc".into(), async { current() }).await;
        assert_eq!(seen.as_deref(), Some("abc"));
    }
}
