//! `/api/v1/accounts`: the external SIP accounts of XMPP users (issue 5, `core::accounts`).
//! stox registers each account at its provider; the listing shows the registration state,
//! its expiry and the last error. The password is written, never read back.
//!
//! The accounts live in the gateway's event loop (it registers them), so the handlers ask
//! it over the calls channel ([`AccountRequest`]).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use utoipa::{IntoParams, ToSchema};

use super::calls::{channel, CallRequest};
use super::error::{ApiError, ErrorBody};
use super::AdminState;
use crate::core::accounts::AccountTransport;
use crate::core::{AccountError, AccountRecord, AccountView, Gateway};

/// A question about accounts for the event loop.
#[derive(Debug)]
pub enum AccountRequest {
    /// Every account, of one owner when given.
    List(Option<String>, oneshot::Sender<Vec<AccountView>>),
    /// One account's full record (for an update).
    Record(String, String, oneshot::Sender<Option<AccountRecord>>),
    /// Stores an account (`create`: refused if it exists) and registers it.
    Put {
        /// The record.
        rec: Box<AccountRecord>,
        /// Creation, not an update.
        create: bool,
        /// The stored account.
        reply: oneshot::Sender<Result<AccountView, AccountError>>,
    },
    /// Removes (and unregisters) an account.
    Remove(String, String, oneshot::Sender<Result<(), AccountError>>),
    /// Makes an account its owner's default.
    SetDefault(
        String,
        String,
        oneshot::Sender<Result<AccountView, AccountError>>,
    ),
}

/// Runs a request inside the event loop.
pub fn answer(gateway: &mut Gateway, now: Instant, r: AccountRequest) {
    match r {
        AccountRequest::List(jid, reply) => {
            let _ = reply.send(gateway.accounts(now, jid.as_deref()));
        }
        AccountRequest::Record(jid, id, reply) => {
            let _ = reply.send(gateway.account_record(&jid, &id));
        }
        AccountRequest::Put { rec, create, reply } => {
            let r = if create && gateway.account_record(&rec.jid, &rec.id).is_some() {
                Err(AccountError::Exists {
                    jid: rec.jid.clone(),
                    id: rec.id.clone(),
                })
            } else {
                gateway.put_account(now, *rec)
            };
            let _ = reply.send(r);
        }
        AccountRequest::Remove(jid, id, reply) => {
            let _ = reply.send(gateway.remove_account(&jid, &id));
        }
        AccountRequest::SetDefault(jid, id, reply) => {
            let r = gateway.set_default_account(&jid, &id).and_then(|()| {
                gateway
                    .account(now, &jid, &id)
                    .ok_or(AccountError::NotFound {
                        jid: jid.clone(),
                        id: id.clone(),
                    })
            });
            let _ = reply.send(r);
        }
    }
}

/// The body of `POST /api/v1/accounts`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    /// The owner's bare JID.
    #[schema(example = "alice@localhost")]
    pub jid: String,
    /// The account id (`[a-z0-9-]`, 1 to 32), unique for the owner; made from the
    /// registrar's host when absent.
    #[schema(example = "work")]
    pub id: Option<String>,
    /// The registrar URI; its host is the AOR's domain.
    #[schema(example = "sip:provider.example")]
    pub registrar: String,
    /// The AOR's user part.
    #[schema(example = "alice")]
    pub user: String,
    /// The Digest user name, when not `user`.
    pub auth_user: Option<String>,
    /// The password (stored in clear: the Digest realm is known only when challenged; never
    /// returned).
    pub password: String,
    /// `udp` (default), `tcp` or `tls` (TLS only, the Contact on stox's `tls:` listener).
    pub transport: Option<AccountTransport>,
    /// Every request of the account goes there first.
    #[schema(example = "sip:proxy.provider.example:5060")]
    pub outbound_proxy: Option<String>,
    /// The display name of From.
    pub display_name: Option<String>,
    /// Make it the owner's default (his first account always is).
    pub default: Option<bool>,
    /// The registration expiry to ask for, within `[accounts] min_expires`..`max_expires`
    /// (default 60 to 86400 seconds; 3600 when absent).
    pub expires: Option<u32>,
}

/// The body of `PUT /api/v1/accounts/{jid}/{id}`: the fields to change.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountUpdate {
    /// The registrar URI.
    pub registrar: Option<String>,
    /// The AOR's user part.
    pub user: Option<String>,
    /// The Digest user name (empty: the user).
    pub auth_user: Option<String>,
    /// The password.
    pub password: Option<String>,
    /// `udp`, `tcp` or `tls`.
    pub transport: Option<AccountTransport>,
    /// The outbound proxy (empty: none).
    pub outbound_proxy: Option<String>,
    /// The display name (empty: none).
    pub display_name: Option<String>,
    /// Make it the owner's default.
    pub default: Option<bool>,
    /// The expiry to ask for.
    pub expires: Option<u32>,
}

/// `?jid=` of the listing.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AccountFilter {
    /// Only this owner's accounts.
    pub jid: Option<String>,
}

fn mapped(e: AccountError) -> ApiError {
    match e {
        AccountError::Invalid(why) => ApiError::BadRequest(why),
        e @ AccountError::NotFound { .. } => ApiError::NotFound(e.to_string()),
        e @ AccountError::Exists { .. } => ApiError::Conflict(e.to_string()),
        AccountError::Store(why) => ApiError::Internal(why),
    }
}

async fn ask<T>(
    state: &AdminState,
    make: impl FnOnce(oneshot::Sender<T>) -> AccountRequest,
) -> Result<T, ApiError> {
    let (tx, rx) = oneshot::channel();
    channel(state)?
        .send(CallRequest::Accounts(make(tx)))
        .map_err(|_| ApiError::Internal("the gateway is shutting down".into()))?;
    rx.await
        .map_err(|_| ApiError::Internal("the gateway did not answer".into()))
}

use crate::core::accounts::id_from_registrar as id_from;

/// Every account with its registration state.
#[utoipa::path(
    get,
    path = "/api/v1/accounts",
    tag = "accounts",
    security(("bearer" = [])),
    params(AccountFilter),
    responses(
        (status = 200, description = "Accounts, ordered by owner and id", body = Vec<AccountView>),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    )
)]
pub(super) async fn list_accounts(
    State(state): State<Arc<AdminState>>,
    filter: Result<Query<AccountFilter>, QueryRejection>,
) -> Result<Json<Vec<AccountView>>, ApiError> {
    let Query(filter) = filter.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    Ok(Json(
        ask(&state, |tx| AccountRequest::List(filter.jid, tx)).await?,
    ))
}

/// Creates an account and registers it at once (409 if the owner has one with this id).
#[utoipa::path(
    post,
    path = "/api/v1/accounts",
    tag = "accounts",
    security(("bearer" = [])),
    request_body = NewAccount,
    responses(
        (status = 201, description = "Created; registration started", body = AccountView),
        (status = 400, description = "Bad JSON or field", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 409, description = "The owner has an account with this id", body = ErrorBody),
    )
)]
pub(super) async fn create_account(
    State(state): State<Arc<AdminState>>,
    body: Result<Json<NewAccount>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(n) = body.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let rec = AccountRecord {
        jid: n.jid,
        id: n.id.unwrap_or_else(|| id_from(&n.registrar)),
        registrar: n.registrar,
        user: n.user,
        auth_user: n.auth_user.filter(|a| !a.is_empty()),
        password: n.password,
        transport: n.transport.unwrap_or_default(),
        outbound_proxy: n.outbound_proxy.filter(|p| !p.is_empty()),
        display_name: n.display_name.filter(|d| !d.is_empty()),
        default: n.default.unwrap_or(false),
        expires: n.expires.unwrap_or(crate::core::accounts::DEFAULT_EXPIRES),
        created_unix: 0,
    };
    let view = ask(&state, |reply| AccountRequest::Put {
        rec: Box::new(rec),
        create: true,
        reply,
    })
    .await?
    .map_err(mapped)?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// One account.
#[utoipa::path(
    get,
    path = "/api/v1/accounts/{jid}/{id}",
    tag = "accounts",
    security(("bearer" = [])),
    params(
        ("jid" = String, Path, description = "The owner's bare JID"),
        ("id" = String, Path, description = "The account id"),
    ),
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
    )
)]
pub(super) async fn get_account(
    State(state): State<Arc<AdminState>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<AccountView>, ApiError> {
    let Path((jid, id)) = path.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let all = ask(&state, |tx| AccountRequest::List(Some(jid.clone()), tx)).await?;
    all.into_iter()
        .find(|a| a.id == id)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no account {id} for {jid}")))
}

/// Changes an account (the fields given); it registers again with the new settings.
#[utoipa::path(
    put,
    path = "/api/v1/accounts/{jid}/{id}",
    tag = "accounts",
    security(("bearer" = [])),
    params(
        ("jid" = String, Path, description = "The owner's bare JID"),
        ("id" = String, Path, description = "The account id"),
    ),
    request_body = AccountUpdate,
    responses(
        (status = 200, description = "Changed; registration started again", body = AccountView),
        (status = 400, description = "Bad JSON or field", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
    )
)]
pub(super) async fn update_account(
    State(state): State<Arc<AdminState>>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<AccountUpdate>, JsonRejection>,
) -> Result<Json<AccountView>, ApiError> {
    let Path((jid, id)) = path.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let Json(u) = body.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let Some(mut rec) = ask(&state, |tx| {
        AccountRequest::Record(jid.clone(), id.clone(), tx)
    })
    .await?
    else {
        return Err(ApiError::NotFound(format!("no account {id} for {jid}")));
    };
    let opt = |v: String| (!v.is_empty()).then_some(v);
    if let Some(v) = u.registrar {
        rec.registrar = v;
    }
    if let Some(v) = u.user {
        rec.user = v;
    }
    if let Some(v) = u.auth_user {
        rec.auth_user = opt(v);
    }
    if let Some(v) = u.password {
        rec.password = v;
    }
    if let Some(v) = u.transport {
        rec.transport = v;
    }
    if let Some(v) = u.outbound_proxy {
        rec.outbound_proxy = opt(v);
    }
    if let Some(v) = u.display_name {
        rec.display_name = opt(v);
    }
    if let Some(v) = u.default {
        rec.default = v;
    }
    if let Some(v) = u.expires {
        rec.expires = v;
    }
    let view = ask(&state, |reply| AccountRequest::Put {
        rec: Box::new(rec),
        create: false,
        reply,
    })
    .await?
    .map_err(mapped)?;
    Ok(Json(view))
}

/// Deletes an account; stox unregisters it at its provider (`Expires: 0`).
#[utoipa::path(
    delete,
    path = "/api/v1/accounts/{jid}/{id}",
    tag = "accounts",
    security(("bearer" = [])),
    params(
        ("jid" = String, Path, description = "The owner's bare JID"),
        ("id" = String, Path, description = "The account id"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
    )
)]
pub(super) async fn delete_account(
    State(state): State<Arc<AdminState>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((jid, id)) = path.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    ask(&state, |tx| AccountRequest::Remove(jid, id, tx))
        .await?
        .map_err(mapped)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Makes an account its owner's default (what he sends through the gateway leaves through
/// it).
#[utoipa::path(
    post,
    path = "/api/v1/accounts/{jid}/{id}/default",
    tag = "accounts",
    security(("bearer" = [])),
    params(
        ("jid" = String, Path, description = "The owner's bare JID"),
        ("id" = String, Path, description = "The account id"),
    ),
    responses(
        (status = 200, description = "Now the default", body = AccountView),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
    )
)]
pub(super) async fn set_default(
    State(state): State<Arc<AdminState>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<AccountView>, ApiError> {
    let Path((jid, id)) = path.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let view = ask(&state, |tx| AccountRequest::SetDefault(jid, id, tx))
        .await?
        .map_err(mapped)?;
    Ok(Json(view))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_from_registrars() {
        assert_eq!(super::id_from("sip:sip2.localhost"), "sip2-localhost");
        assert_eq!(
            super::id_from("sip:Provider.Example:5080;transport=tcp"),
            "provider-example"
        );
        assert_eq!(super::id_from(""), "default");
    }
}
