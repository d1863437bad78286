//! `/api/v1/sip-users`: the SIP users of stox's own registrar (issue 5). A user `dave` is
//! `sip:dave@C` to SIP and `dave@C` to XMPP. Passwords are not stored: the record holds the
//! Digest `HA1` for SHA-256 and MD5 in realm `C` (`core::registrar`).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use stox_mappings::{Table, TableStore};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::mappings::blocking;
use super::AdminState;
use crate::core::registrar::valid_user;
use crate::core::SipUserRecord;

/// The body of `POST /api/v1/sip-users`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSipUser {
    /// The user part: `dave` for `sip:dave@C`.
    #[schema(example = "dave")]
    pub user: String,
    /// The password (8 to 128 characters); only its Digest hashes are kept.
    #[schema(example = "correct horse battery")]
    pub password: String,
}

/// The body of `PUT /api/v1/sip-users/{user}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    /// The new password.
    pub password: String,
}

/// A SIP user as listed (no credentials).
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SipUserView {
    /// The user part.
    pub user: String,
    /// `sip:user@C`.
    pub aor: String,
    /// The JID XMPP users write to, `user@C`.
    pub jid: String,
    /// When it was created, seconds since the Unix epoch.
    pub created_unix: u64,
    /// Its registered contacts (as last made durable), with their expiry.
    #[serde(default)]
    pub bindings: Vec<BindingView>,
}

/// A registered contact of a SIP user.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BindingView {
    /// The contact URI.
    pub contact: String,
    /// When it expires, seconds since the Unix epoch.
    pub expires_unix: u64,
}

fn tables(state: &AdminState) -> Arc<dyn TableStore> {
    Arc::clone(&state.store.tables)
}

fn view(state: &AdminState, r: &SipUserRecord) -> SipUserView {
    SipUserView {
        user: r.user.clone(),
        aor: format!("sip:{}@{}", r.user, state.realm),
        jid: format!("{}@{}", r.user.to_lowercase(), state.realm),
        created_unix: r.created_unix,
        bindings: Vec::new(),
    }
}

/// The stored bindings of `aor` (unreadable ones skipped).
fn bindings_of(
    t: &dyn TableStore,
    aor: &str,
) -> Result<Vec<BindingView>, stox_mappings::StoreError> {
    let now = now_unix();
    Ok(t.list_prefix(Table::Bindings, &format!("{aor}|"))?
        .into_iter()
        .filter_map(|(_, b)| {
            serde_json::from_slice::<crate::core::registrar::BindingRecord>(&b).ok()
        })
        .filter(|b| b.expires_unix > now)
        .map(|b| BindingView {
            contact: b.contact,
            expires_unix: b.expires_unix,
        })
        .collect())
}

fn check_user(user: &str) -> Result<(), ApiError> {
    if valid_user(user) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "user {user:?}: 1 to 64 of letters, digits and -._~!$&'()*+,;="
        )))
    }
}

fn check_password(password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if !(8..=128).contains(&n) || password.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "password: 8 to 128 characters, no control characters".into(),
        ));
    }
    Ok(())
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn put(t: &dyn TableStore, r: &SipUserRecord) -> Result<(), stox_mappings::StoreError> {
    let bytes = serde_json::to_vec(r).map_err(|e| stox_mappings::StoreError::Corrupt {
        tree: "sip_users",
        reason: e.to_string(),
    })?;
    t.put(Table::SipUsers, &r.user, &bytes)?;
    t.flush()
}

fn read(bytes: &[u8]) -> Result<SipUserRecord, stox_mappings::StoreError> {
    serde_json::from_slice(bytes).map_err(|e| stox_mappings::StoreError::Corrupt {
        tree: "sip_users",
        reason: e.to_string(),
    })
}

/// Every SIP user, ordered by user part.
#[utoipa::path(
    get,
    path = "/api/v1/sip-users",
    tag = "sip-users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "All SIP users of the component domain", body = Vec<SipUserView>),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    )
)]
pub(super) async fn list_sip_users(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<Vec<SipUserView>>, ApiError> {
    let t = tables(&state);
    let rows = blocking(move || t.list(Table::SipUsers)).await?;
    let mut out = Vec::with_capacity(rows.len());
    for (_, bytes) in rows {
        out.push(view(&state, &read(&bytes)?));
    }
    let t = tables(&state);
    let out = blocking(move || {
        for u in &mut out {
            u.bindings = bindings_of(t.as_ref(), &u.aor)?;
        }
        Ok(out)
    })
    .await?;
    Ok(Json(out))
}

/// Creates a SIP user (409 if the user exists).
#[utoipa::path(
    post,
    path = "/api/v1/sip-users",
    tag = "sip-users",
    security(("bearer" = [])),
    request_body = NewSipUser,
    responses(
        (status = 201, description = "Created", body = SipUserView),
        (status = 400, description = "Bad JSON, user or password", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 409, description = "The user exists", body = ErrorBody),
    )
)]
pub(super) async fn create_sip_user(
    State(state): State<Arc<AdminState>>,
    body: Result<Json<NewSipUser>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(new) = body.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    check_user(&new.user)?;
    check_password(&new.password)?;
    let record = SipUserRecord::new(&new.user, &state.realm, &new.password, now_unix());
    let t = tables(&state);
    let stored = record.clone();
    let created = blocking(move || {
        if t.get(Table::SipUsers, &stored.user)?.is_some() {
            return Ok(false);
        }
        put(t.as_ref(), &stored)?;
        Ok(true)
    })
    .await?;
    if !created {
        return Err(ApiError::Conflict(format!("SIP user {} exists", new.user)));
    }
    tracing::info!(user = %record.user, "SIP user created");
    Ok((StatusCode::CREATED, Json(view(&state, &record))))
}

/// Sets a SIP user's password.
#[utoipa::path(
    put,
    path = "/api/v1/sip-users/{user}",
    tag = "sip-users",
    security(("bearer" = [])),
    params(("user" = String, Path, description = "The user part", example = "dave")),
    request_body = NewPassword,
    responses(
        (status = 200, description = "Changed", body = SipUserView),
        (status = 400, description = "Bad JSON or password", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(super) async fn set_password(
    State(state): State<Arc<AdminState>>,
    user: Result<Path<String>, PathRejection>,
    body: Result<Json<NewPassword>, JsonRejection>,
) -> Result<Json<SipUserView>, ApiError> {
    let Path(user) = user.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let Json(new) = body.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    check_password(&new.password)?;
    let t = tables(&state);
    let realm = state.realm.clone();
    let key = user.clone();
    let record = blocking(move || {
        let Some(bytes) = t.get(Table::SipUsers, &key)? else {
            return Ok(None);
        };
        let old = read(&bytes)?;
        let record = SipUserRecord::new(&old.user, &realm, &new.password, old.created_unix);
        put(t.as_ref(), &record)?;
        Ok(Some(record))
    })
    .await?;
    match record {
        Some(r) => {
            tracing::info!(user = %r.user, "SIP user password changed");
            Ok(Json(view(&state, &r)))
        }
        None => Err(ApiError::NotFound(format!("no SIP user {user}"))),
    }
}

/// Deletes a SIP user (its registrations end when they expire; it can no longer
/// authenticate at once).
#[utoipa::path(
    delete,
    path = "/api/v1/sip-users/{user}",
    tag = "sip-users",
    security(("bearer" = [])),
    params(("user" = String, Path, description = "The user part", example = "dave")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(super) async fn delete_sip_user(
    State(state): State<Arc<AdminState>>,
    user: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(user) = user.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let t = tables(&state);
    let key = user.clone();
    let removed = blocking(move || {
        let was = t.remove(Table::SipUsers, &key)?;
        t.flush()?;
        Ok(was)
    })
    .await?;
    if removed {
        tracing::info!(%user, "SIP user deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no SIP user {user}")))
    }
}
