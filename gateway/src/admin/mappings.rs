//! `/api/v1/mappings`: the operator-provisioned JID ⇄ SIP AOR table (STOX-MAPPING.md §1,
//! "mapping store"), kept in [`stox_mappings::MappingStore`].

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use stox_mappings::{Mapping, MappingStore};
use utoipa::ToSchema;
use xmpp_parsers::jid::BareJid;

use super::error::{ApiError, ErrorBody};
use super::AdminState;

/// The body of `POST /api/v1/mappings`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMapping {
    /// A bare JID, `local@domain` (no resource).
    #[schema(example = "alice@localhost")]
    pub jid: String,
    /// A SIP URI with a user part, `sip:user@host`.
    #[schema(example = "sip:alice@pbx.example")]
    pub sip: String,
}

/// A stored mapping.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MappingView {
    /// The bare JID, as normalized by RFC 7622 stringprep.
    #[schema(example = "alice@localhost")]
    pub jid: String,
    /// The SIP address-of-record.
    #[schema(example = "sip:alice@pbx.example")]
    pub sip: String,
    /// When the mapping was created, seconds since the Unix epoch.
    pub created_unix: u64,
}

impl From<Mapping> for MappingView {
    fn from(m: Mapping) -> Self {
        MappingView {
            jid: m.jid,
            sip: m.sip,
            created_unix: m.created_unix,
        }
    }
}

/// RFC 7622 §3: a bare JID with a localpart. Returns its normalized string form.
fn parse_bare_jid(jid: &str) -> Result<String, ApiError> {
    let parsed = BareJid::new(jid.trim())
        .map_err(|e| ApiError::BadRequest(format!("jid {jid:?} is not a bare JID: {e}")))?;
    if parsed.node().is_none() {
        return Err(ApiError::BadRequest(format!(
            "jid {jid:?} has no localpart (expected local@domain)"
        )));
    }
    Ok(parsed.to_string())
}

/// RFC 3261 §19.1.1, loosely: `sip:` or `sips:`, a non-empty user, `@`, a non-empty host, and
/// no whitespace or control characters. Returns the trimmed URI.
fn parse_sip_aor(sip: &str) -> Result<String, ApiError> {
    let sip = sip.trim();
    let invalid = |why: &str| ApiError::BadRequest(format!("sip {sip:?} is not a SIP URI: {why}"));
    let rest = ["sip:", "sips:"]
        .iter()
        .find_map(|scheme| {
            sip.get(..scheme.len())
                .filter(|s| s.eq_ignore_ascii_case(scheme))
                .map(|_| &sip[scheme.len()..])
        })
        .ok_or_else(|| invalid("expected the sip: or sips: scheme"))?;
    if sip.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("whitespace or control characters"));
    }
    let (userinfo, hostport) = rest
        .split_once('@')
        .ok_or_else(|| invalid("no user part (expected sip:user@host)"))?;
    let user = userinfo.split(':').next().unwrap_or_default();
    if user.is_empty() {
        return Err(invalid("empty user part"));
    }
    let host = hostport.split([';', '?']).next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') || hostport.contains('@') {
        return Err(invalid("missing or malformed host"));
    }
    Ok(sip.to_owned())
}

/// Runs a blocking store call off the async threads (sled flushes are fsyncs).
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, stox_mappings::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::from)
}

fn store(state: &AdminState) -> Arc<dyn MappingStore> {
    Arc::clone(&state.store.mappings)
}

/// List every mapping, ordered by JID.
#[utoipa::path(
    get,
    path = "/api/v1/mappings",
    tag = "mappings",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "All mappings", body = Vec<MappingView>),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    )
)]
pub(super) async fn list_mappings(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<Vec<MappingView>>, ApiError> {
    let store = store(&state);
    let list = blocking(move || store.list()).await?;
    Ok(Json(list.into_iter().map(MappingView::from).collect()))
}

/// Create a mapping (or replace the pairs that held this JID or this SIP URI).
#[utoipa::path(
    post,
    path = "/api/v1/mappings",
    tag = "mappings",
    security(("bearer" = [])),
    request_body = NewMapping,
    responses(
        (status = 201, description = "Stored", body = MappingView),
        (status = 400, description = "Bad JSON or an invalid address", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
    )
)]
pub(super) async fn create_mapping(
    State(state): State<Arc<AdminState>>,
    body: Result<Json<NewMapping>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(new) = body.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let mapping = Mapping {
        jid: parse_bare_jid(&new.jid)?,
        sip: parse_sip_aor(&new.sip)?,
        created_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let store = store(&state);
    let stored = mapping.clone();
    let replaced = blocking(move || store.put(&stored)).await?;
    tracing::info!(jid = %mapping.jid, sip = %mapping.sip, replaced = ?replaced, "mapping stored");
    Ok((StatusCode::CREATED, Json(MappingView::from(mapping))))
}

/// The mapping of one JID.
#[utoipa::path(
    get,
    path = "/api/v1/mappings/{jid}",
    tag = "mappings",
    security(("bearer" = [])),
    params(("jid" = String, Path, description = "Bare JID", example = "alice@localhost")),
    responses(
        (status = 200, description = "The mapping", body = MappingView),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No mapping for this JID", body = ErrorBody),
    )
)]
pub(super) async fn get_mapping(
    State(state): State<Arc<AdminState>>,
    jid: Result<Path<String>, PathRejection>,
) -> Result<Json<MappingView>, ApiError> {
    let Path(jid) = jid.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let store = store(&state);
    let key = jid.clone();
    match blocking(move || store.by_jid(&key)).await? {
        Some(m) => Ok(Json(m.into())),
        None => Err(ApiError::NotFound(format!("no mapping for {jid}"))),
    }
}

/// Delete the mapping of one JID.
#[utoipa::path(
    delete,
    path = "/api/v1/mappings/{jid}",
    tag = "mappings",
    security(("bearer" = [])),
    params(("jid" = String, Path, description = "Bare JID", example = "alice@localhost")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No mapping for this JID", body = ErrorBody),
    )
)]
pub(super) async fn delete_mapping(
    State(state): State<Arc<AdminState>>,
    jid: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(jid) = jid.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let store = store(&state);
    let key = jid.clone();
    match blocking(move || store.remove_jid(&key)).await? {
        Some(m) => {
            tracing::info!(jid = %m.jid, sip = %m.sip, "mapping deleted");
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(ApiError::NotFound(format!("no mapping for {jid}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_jids_with_a_localpart_are_accepted_and_normalized() {
        assert_eq!(
            parse_bare_jid("alice@localhost").unwrap(),
            "alice@localhost"
        );
        assert_eq!(
            parse_bare_jid(" Alice@LocalHost ").unwrap(),
            "alice@localhost"
        );
        for bad in [
            "localhost",
            "alice@localhost/phone",
            "@localhost",
            "alice@",
            "",
            "a b@h",
        ] {
            assert!(
                matches!(parse_bare_jid(bad), Err(ApiError::BadRequest(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn sip_uris_need_a_scheme_a_user_and_a_host() {
        for good in [
            "sip:alice@pbx.example",
            "SIP:alice@PBX.example:5070;transport=tcp",
            "sips:alice:pw@[2001:db8::1]:5061",
            "sip:bob%40example.net@sip.localhost",
        ] {
            assert_eq!(parse_sip_aor(good).unwrap(), good);
        }
        for bad in [
            "alice@pbx.example",
            "tel:+123",
            "sip:pbx.example",
            "sip:@pbx.example",
            "sip:alice@",
            "sip:alice@;lr",
            "sip:alice@:5060",
            "sip:al ice@pbx",
            "sip:a@b@c",
            "sip:",
            "",
        ] {
            assert!(
                matches!(parse_sip_aor(bad), Err(ApiError::BadRequest(_))),
                "{bad:?} accepted"
            );
        }
    }
}
