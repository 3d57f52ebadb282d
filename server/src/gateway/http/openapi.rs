//! The API's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations
//! and the answer types (`schemas.rs`), and served at `GET /api/v1/openapi.json`.
//! `tests/api_contract.rs` fuzzes the running gateway against it with schemathesis, so an
//! answer that breaks it fails the suite.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    attach, audit, auth, files, labels, notifications, participants, requests, search, sessions,
    settings, targets,
};

/// The API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Porthole",
        description = "Browser shells on AWS managed nodes through SSM Session Manager. \
            Signed-in requests carry the sign-in cookie; state-changing ones also the \
            `X-CSRF-Token` of the sign-in and an `Origin` equal to the gateway's."
    ),
    paths(
        auth::login,
        auth::logout,
        auth::me,
        settings::get_settings,
        settings::put_settings,
        targets::list,
        sessions::create,
        sessions::list,
        sessions::get_one,
        sessions::terminate,
        sessions::recording,
        files::upload,
        files::download,
        labels::get_labels,
        labels::put_labels,
        labels::search_labels,
        participants::list,
        participants::invite,
        participants::revoke,
        attach::attach,
        requests::create,
        requests::list,
        requests::get_one,
        requests::approve,
        requests::deny,
        requests::revoke,
        audit::list,
        notifications::list,
        search::search,
        openapi_json,
    ),
    modifiers(&SignIn),
    tags((name = "porthole"))
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The security schemes: the sign-in cookie and the CSRF header.
struct SignIn;

impl Modify for SignIn {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "porthole_session",
                "The sign-in cookie (`__Host-porthole_session` behind https).",
            ))),
        );
        components.add_security_scheme(
            "csrf",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-CSRF-Token",
                "The CSRF token of the sign-in, on state-changing requests.",
            ))),
        );
    }
}

/// `GET /api/v1/openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"))
)]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
