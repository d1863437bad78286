//! The admin HTTP API (axum): health, Prometheus metrics, and the mapping table.
//!
//! | route | auth | answer |
//! |---|---|---|
//! | `GET /health` | none | 200 `{"status":"ok","xmpp_link":"up"}`, or 503 with `"xmpp_link":"down"` |
//! | `GET /metrics` | none | Prometheus text exposition format 0.0.4 |
//! | `GET /api/v1/mappings` | bearer | 200, every mapping |
//! | `POST /api/v1/mappings` | bearer | 201 with the stored mapping, 400 on an invalid address |
//! | `GET /api/v1/mappings/{jid}` | bearer | 200, or 404 |
//! | `DELETE /api/v1/mappings/{jid}` | bearer | 204, or 404 |
//! | `GET /api/v1/calls` | bearer | 200, every live call with both legs, codec, state and counters |
//! | `DELETE /api/v1/calls/{id}` | bearer | 204 after hanging up both legs, or 404 |
//! | `GET /api/v1/sip-users` | bearer | 200, the SIP users of the component domain (no credentials) |
//! | `POST /api/v1/sip-users` | bearer | 201 `{"user","password"}` creates one (only Digest HA1s are kept), 409 if it exists |
//! | `PUT /api/v1/sip-users/{user}` | bearer | 200 `{"password"}` changes the password, or 404 |
//! | `DELETE /api/v1/sip-users/{user}` | bearer | 204, or 404 |
//! | `GET /api/v1/accounts[?jid=]` | bearer | 200, the external SIP accounts of XMPP users with their registration state (no passwords) |
//! | `POST /api/v1/accounts` | bearer | 201, creates an account and registers it; 400 on a bad field, 409 if the owner has that id |
//! | `GET /api/v1/accounts/{jid}/{id}` | bearer | 200, or 404 |
//! | `PUT /api/v1/accounts/{jid}/{id}` | bearer | 200, changes the fields given and registers again, or 404 |
//! | `DELETE /api/v1/accounts/{jid}/{id}` | bearer | 204 (unregistered at the provider), or 404 |
//! | `POST /api/v1/accounts/{jid}/{id}/default` | bearer | 200, now the owner's default account, or 404 |
//! | `GET /api/v1/subscriptions` | bearer | 200, every presence subscription (both directions) with state and expiry |
//! | `GET /api/v1/openapi.json` | bearer | the OpenAPI 3.1 document of all of the above |
//!
//! Authentication is RFC 6750 §2.1 (`Authorization: Bearer <token>`); a failure is 401 with
//! `WWW-Authenticate: Bearer` (RFC 6750 §3). Every error, including bad JSON, a wrong content
//! type and an unknown route, is a JSON body `{"error": "..."}`.
//!
//! Stored data goes through the [`stox_mappings`] traits directly (ARCHITECTURE.md "Admin
//! API"); blocking store calls run on tokio's blocking pool.

pub mod accounts;
mod auth;
pub mod calls;
mod error;
mod mappings;
mod sip_users;
mod subscriptions;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{middleware, Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, ErrorBody};
pub use mappings::{MappingView, NewMapping};

/// The content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// What the admin handlers share.
#[derive(Clone)]
pub struct AdminState {
    /// The bearer token every `/api` request must present. Empty: every `/api` request is
    /// refused.
    pub token: String,
    /// Persistent state (mappings).
    pub store: stox_mappings::Store,
    /// Whether the XEP-0114 component connection is up (set by the io layer).
    pub link_up: Arc<AtomicBool>,
    /// Renders the process's metrics.
    pub metrics: PrometheusHandle,
    /// Questions about calls, answered by the event loop (`None`: no calls here).
    pub calls: Option<calls::CallRequests>,
    /// The Digest realm of the SIP users: the component domain.
    pub realm: String,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("token", &"<redacted>")
            .field("link_up", &self.link_up.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The body of `GET /health`.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` when the gateway can bridge, `degraded` otherwise.
    #[schema(example = "ok")]
    pub status: String,
    /// `up` or `down`: the component connection to the XMPP server.
    #[schema(example = "up")]
    pub xmpp_link: String,
}

/// Adds the `bearer` security scheme that the `/api` paths refer to.
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "stox admin API", description = "Health, metrics and the JID ⇄ SIP mapping table of the stox SIP ⇄ XMPP gateway."),
    modifiers(&BearerScheme),
    tags(
        (name = "status", description = "Health and metrics, without authentication"),
        (name = "mappings", description = "The operator-provisioned JID ⇄ SIP AOR table"),
        (name = "calls", description = "Live calls and hanging them up"),
        (name = "presence", description = "Presence subscriptions (RFC 8048)"),
        (name = "sip-users", description = "SIP users of the component domain (the registrar)"),
        (name = "accounts", description = "External SIP accounts of XMPP users, registered by stox"),
    )
)]
struct ApiDoc;

/// The OpenAPI document of the admin API (what `GET /api/v1/openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented().2
}

/// The documented routes, before state and authentication are attached: the public ones, the
/// `/api` ones, and the document describing both.
fn documented() -> (
    Router<Arc<AdminState>>,
    Router<Arc<AdminState>>,
    utoipa::openapi::OpenApi,
) {
    let (public, public_doc) = OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(metrics))
        .split_for_parts();
    let (api, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(mappings::list_mappings, mappings::create_mapping))
        .routes(routes!(mappings::get_mapping, mappings::delete_mapping))
        .routes(routes!(calls::list_calls))
        .routes(routes!(calls::delete_call))
        .routes(routes!(subscriptions::list_subscriptions))
        .routes(routes!(
            sip_users::list_sip_users,
            sip_users::create_sip_user
        ))
        .routes(routes!(sip_users::set_password, sip_users::delete_sip_user))
        .routes(routes!(accounts::list_accounts, accounts::create_account))
        .routes(routes!(
            accounts::get_account,
            accounts::update_account,
            accounts::delete_account
        ))
        .routes(routes!(accounts::set_default))
        .split_for_parts();
    doc.merge(public_doc);
    (public, api, doc)
}

/// The admin router; the daemon serves it with `axum::serve`.
pub fn router(state: AdminState) -> Router {
    let state = Arc::new(state);
    let (public, api, doc) = documented();
    let api = api
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json(doc) }
            }),
        )
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::require_bearer,
        ));
    public
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Liveness and readiness: 200 while the XMPP link is up, 503 while it is down.
#[utoipa::path(
    get,
    path = "/health",
    tag = "status",
    responses(
        (status = 200, description = "The XMPP link is up", body = Health),
        (status = 503, description = "The XMPP link is down", body = Health),
    )
)]
async fn health(State(state): State<Arc<AdminState>>) -> (StatusCode, Json<Health>) {
    let (code, status, link) = if state.link_up.load(Ordering::Acquire) {
        (StatusCode::OK, "ok", "up")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "degraded", "down")
    };
    (
        code,
        Json(Health {
            status: status.into(),
            xmpp_link: link.into(),
        }),
    )
}

/// Prometheus metrics, text exposition format 0.0.4.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "status",
    responses((status = 200, description = "Metrics", body = String, content_type = "text/plain; version=0.0.4"))
)]
async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
        state.metrics.render(),
    )
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}

#[cfg(test)]
mod tests;
