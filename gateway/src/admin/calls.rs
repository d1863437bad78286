//! `/api/v1/calls`: live calls (both legs, codec, state, packet counters) and hanging them up.
//!
//! The calls live in the gateway's event loop, so the handlers ask it over a channel
//! ([`CallRequest`]) and wait for the answer.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::AdminState;
use crate::core::CallInfo;
use crate::media::relay::{CallState, LegCounters};

/// A question the admin API asks the event loop (calls, and the presence subscriptions
/// that live there too).
#[derive(Debug)]
pub enum CallRequest {
    /// Every live call.
    List(oneshot::Sender<Vec<CallView>>),
    /// Hang up both legs of a call; answers whether it existed.
    Hangup(u64, oneshot::Sender<bool>),
    /// Every presence subscription, both directions.
    Subscriptions(oneshot::Sender<Vec<crate::core::SubscriptionInfo>>),
    /// About the external accounts (which the loop registers).
    Accounts(super::accounts::AccountRequest),
}

/// The channel to the event loop.
pub type CallRequests = mpsc::UnboundedSender<CallRequest>;

/// The media of a call as the relay sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MediaView {
    /// `waiting`, `connecting`, `connected` or `closing`.
    #[schema(value_type = String)]
    pub state: CallState,
    /// The relay's socket on the XMPP leg (ICE + DTLS-SRTP).
    pub xmpp_local: String,
    /// The relay's RTP socket on the SIP leg.
    pub sip_local: String,
    /// XMPP-leg counters.
    #[schema(value_type = Object)]
    pub xmpp: LegCounters,
    /// SIP-leg counters.
    #[schema(value_type = Object)]
    pub sip: LegCounters,
}

/// One live call.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallView {
    /// Signalling: both parties, direction, Jingle sid, state, codec.
    #[serde(flatten)]
    pub call: CallInfo,
    /// The relay's view, once the call has media.
    pub media: Option<MediaView>,
}

pub(super) fn channel(state: &AdminState) -> Result<&CallRequests, ApiError> {
    state
        .calls
        .as_ref()
        .ok_or_else(|| ApiError::Internal("calls are not available in this process".into()))
}

/// Every live call.
#[utoipa::path(
    get,
    path = "/api/v1/calls",
    tag = "calls",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Live calls", body = Vec<CallView>),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    )
)]
pub(super) async fn list_calls(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<Vec<CallView>>, ApiError> {
    let (tx, rx) = oneshot::channel();
    channel(&state)?
        .send(CallRequest::List(tx))
        .map_err(|_| ApiError::Internal("the gateway is shutting down".into()))?;
    let calls = rx
        .await
        .map_err(|_| ApiError::Internal("the gateway did not answer".into()))?;
    Ok(Json(calls))
}

/// Hangs up both legs of a call (BYE or CANCEL toward SIP, session-terminate or retract toward
/// XMPP) and frees its media.
#[utoipa::path(
    delete,
    path = "/api/v1/calls/{id}",
    tag = "calls",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "The call's id from GET /api/v1/calls")),
    responses(
        (status = 204, description = "Hung up"),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such call", body = ErrorBody),
    )
)]
pub(super) async fn delete_call(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("call id {id:?} is not a number")))?;
    let (tx, rx) = oneshot::channel();
    channel(&state)?
        .send(CallRequest::Hangup(id, tx))
        .map_err(|_| ApiError::Internal("the gateway is shutting down".into()))?;
    match rx.await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::NotFound(format!("no call {id}"))),
        Err(_) => Err(ApiError::Internal("the gateway did not answer".into())),
    }
}
