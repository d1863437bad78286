//! `/api/v1/subscriptions`: presence subscriptions in both directions (RFC 8048), with their
//! state and expiry. They live in the gateway's event loop, so the handler asks it over the
//! same channel as the calls handlers.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use tokio::sync::oneshot;

use super::calls::{channel, CallRequest};
use super::error::{ApiError, ErrorBody};
use super::AdminState;
use crate::core::SubscriptionInfo;

/// Every presence subscription: XMPP users watching SIP contacts (`xmpp_to_sip`) and SIP
/// users watching XMPP users or SIP users of the component domain (`sip_to_xmpp`).
#[utoipa::path(
    get,
    path = "/api/v1/subscriptions",
    tag = "presence",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Subscriptions, both directions", body = Vec<SubscriptionInfo>),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    )
)]
pub(super) async fn list_subscriptions(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<Vec<SubscriptionInfo>>, ApiError> {
    let (tx, rx) = oneshot::channel();
    channel(&state)?
        .send(CallRequest::Subscriptions(tx))
        .map_err(|_| ApiError::Internal("the gateway is shutting down".into()))?;
    let subs = rx
        .await
        .map_err(|_| ApiError::Internal("the gateway did not answer".into()))?;
    Ok(Json(subs))
}
