//! RFC 3903: stox as the Event State Compositor (ESC) of the presentities it serves, the
//! SIP users at the component domain. Sans-IO: PUBLISH requests and `now` in, outcomes out.
//!
//! Each presentity (an AOR) has any number of publications, one per publishing device, each
//! with its entity-tag, expiry and PIDF document. The composed state is every tuple of every
//! live publication (a tuple id published twice: the newer publication wins), the person
//! element and presentity notes of the newest publication that has them (RFC 3903 leaves
//! composition to the event package; RFC 3863 §4.1 makes one document of many tuples).
//!
//! RFC 3903 §6, the ESC's processing of a PUBLISH, in the order it is done here:
//!
//! | step | condition | outcome |
//! |---|---|---|
//! | §6 step 4 | `SIP-If-Match` names no live publication | `412 Conditional Request Failed` |
//! | §6 step 4 | no `SIP-If-Match` and no body | `400` (an initial publication needs a body) |
//! | §6 step 5 | `Expires` between 0 and the minimum | `423` with `Min-Expires` (the caller) |
//! | §6 step 6 | `Expires: 0` with `SIP-If-Match` | the publication is removed, `200` |
//! | §6 step 7 | `SIP-If-Match` without a body | a refresh: new expiry, `200` |
//! | §6 step 7 | `SIP-If-Match` with a body | a modification: the body replaces the old one |
//! | §6 step 8 | any success | a new entity-tag in `SIP-ETag`, the granted `Expires` |

use std::collections::HashMap;
use std::time::{Duration, Instant};

use stox_sip::body::pidf;

/// One publication (RFC 3903 §2: "event state published by one EPA").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// The entity-tag of its current version.
    pub etag: String,
    /// When it expires unless refreshed.
    pub expires_at: Instant,
    /// The PIDF body as published (already checked to parse).
    pub body: Vec<u8>,
    /// Its `Content-Language`, if any.
    pub lang: Option<String>,
    /// Order of arrival of the last modification (newer wins in composition).
    pub version: u64,
}

/// What a successful PUBLISH did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The new entity-tag (`SIP-ETag`); `None` after a removal.
    pub etag: Option<String>,
    /// The granted expiry in seconds (`Expires`).
    pub expires: u32,
    /// Whether the composed state of the presentity changed (watchers must hear of it).
    pub changed: bool,
}

/// Why a PUBLISH failed (the SIP status to answer with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// RFC 3903 §6 step 4: `412 Conditional Request Failed`.
    UnknownEtag,
    /// An initial PUBLISH (no `SIP-If-Match`) without a body, or a removal without
    /// `SIP-If-Match`: `400`.
    NoBody,
}

impl PublishError {
    /// The SIP status code.
    pub fn code(&self) -> u16 {
        match self {
            PublishError::UnknownEtag => 412,
            PublishError::NoBody => 400,
        }
    }

    /// A reason for the `Warning` header and the log.
    pub fn reason(&self) -> &'static str {
        match self {
            PublishError::UnknownEtag => "no publication has this SIP-If-Match entity-tag",
            PublishError::NoBody => "an initial PUBLISH needs a PIDF body",
        }
    }
}

/// A PUBLISH as the compositor sees it: the checks of the request itself (Event, Expires
/// bounds, Content-Type, PIDF syntax) were done by the caller.
#[derive(Debug, Clone)]
pub struct PublishRequest<'a> {
    /// The presentity's AOR (normalized by the caller).
    pub aor: &'a str,
    /// `SIP-If-Match`.
    pub if_match: Option<&'a str>,
    /// Granted expiry in seconds (0: remove).
    pub expires: u32,
    /// The body, if any (a PIDF document that parses).
    pub body: Option<&'a [u8]>,
    /// `Content-Language`.
    pub lang: Option<&'a str>,
    /// The entity-tag to give the new version (fresh and unique, chosen by the caller).
    pub new_etag: String,
}

/// The publications of every presentity stox serves.
#[derive(Debug, Default)]
pub struct Publications {
    by_aor: HashMap<String, Vec<Publication>>,
    next_version: u64,
}

impl Publications {
    /// No publications.
    pub fn new() -> Publications {
        Publications::default()
    }

    /// RFC 3903 §6 processing of one PUBLISH (see the module table).
    pub fn publish(
        &mut self,
        now: Instant,
        req: PublishRequest<'_>,
    ) -> Result<Published, PublishError> {
        let before = self.composed(req.aor);
        let list = self.by_aor.entry(req.aor.to_owned()).or_default();
        // Expired publications are gone even if the sweep has not run yet.
        list.retain(|p| p.expires_at > now);
        let expires_at = now + Duration::from_secs(u64::from(req.expires));
        let outcome = match req.if_match {
            Some(tag) => {
                let Some(i) = list.iter().position(|p| p.etag == tag) else {
                    self.drop_if_empty(req.aor);
                    return Err(PublishError::UnknownEtag);
                };
                if req.expires == 0 {
                    list.remove(i);
                    None
                } else {
                    let p = &mut list[i];
                    p.etag = req.new_etag;
                    p.expires_at = expires_at;
                    if let Some(body) = req.body {
                        self.next_version += 1;
                        p.body = body.to_vec();
                        p.lang = req.lang.map(str::to_owned);
                        p.version = self.next_version;
                    }
                    Some(p.etag.clone())
                }
            }
            None => {
                let Some(body) = req.body.filter(|_| req.expires > 0) else {
                    self.drop_if_empty(req.aor);
                    return Err(PublishError::NoBody);
                };
                self.next_version += 1;
                list.push(Publication {
                    etag: req.new_etag.clone(),
                    expires_at,
                    body: body.to_vec(),
                    lang: req.lang.map(str::to_owned),
                    version: self.next_version,
                });
                Some(req.new_etag)
            }
        };
        self.drop_if_empty(req.aor);
        let changed = self.composed(req.aor) != before;
        Ok(Published {
            etag: outcome,
            expires: req.expires,
            changed,
        })
    }

    /// Brings back a stored publication (after a restart); an expired one is ignored.
    pub fn restore(&mut self, now: Instant, aor: &str, p: Publication) {
        if p.expires_at <= now {
            return;
        }
        self.next_version = self.next_version.max(p.version);
        self.by_aor.entry(aor.to_owned()).or_default().push(p);
    }

    fn drop_if_empty(&mut self, aor: &str) {
        if self.by_aor.get(aor).is_some_and(Vec::is_empty) {
            self.by_aor.remove(aor);
        }
    }

    /// The live publications of a presentity.
    pub fn of(&self, aor: &str) -> &[Publication] {
        self.by_aor.get(aor).map_or(&[], Vec::as_slice)
    }

    /// Every presentity with at least one publication.
    pub fn aors(&self) -> impl Iterator<Item = &str> {
        self.by_aor.keys().map(String::as_str)
    }

    /// The composed presence of a presentity as a PIDF document, `None` when nothing is
    /// published (the presentity is offline, as far as stox knows).
    pub fn composed_doc(&self, aor: &str) -> Option<pidf::Presence> {
        let list = self.by_aor.get(aor).filter(|l| !l.is_empty())?;
        let mut docs: Vec<(u64, pidf::Presence)> = list
            .iter()
            .filter_map(|p| pidf::parse(&p.body).ok().map(|d| (p.version, d)))
            .collect();
        if docs.is_empty() {
            return None;
        }
        docs.sort_by_key(|(v, _)| *v);
        let mut out = pidf::Presence {
            entity: aor.to_owned(),
            ..pidf::Presence::default()
        };
        for (_, d) in docs {
            for t in d.tuples {
                out.tuples.retain(|old| old.id != t.id);
                out.tuples.push(t);
            }
            if d.person.is_some() {
                out.person = d.person;
            }
            if !d.notes.is_empty() {
                out.notes = d.notes;
            }
        }
        out.tuples.truncate(pidf::MAX_TUPLES);
        Some(out)
    }

    /// [`Publications::composed_doc`] serialized, with the newest publication's language.
    pub fn composed(&self, aor: &str) -> Option<(Vec<u8>, Option<String>)> {
        let doc = self.composed_doc(aor)?;
        let lang = self
            .by_aor
            .get(aor)
            .and_then(|l| l.iter().max_by_key(|p| p.version))
            .and_then(|p| p.lang.clone());
        Some((pidf::write(&doc).into_bytes(), lang))
    }

    /// When the next publication expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.by_aor
            .values()
            .flat_map(|l| l.iter().map(|p| p.expires_at))
            .min()
    }

    /// Drops what expired by `now`; returns the presentities whose composed state changed,
    /// with the entity-tags that went away (to delete from the store).
    pub fn expire(&mut self, now: Instant) -> Vec<(String, Vec<String>)> {
        let due: Vec<String> = self
            .by_aor
            .iter()
            .filter(|(_, l)| l.iter().any(|p| p.expires_at <= now))
            .map(|(a, _)| a.clone())
            .collect();
        let mut changed = Vec::new();
        for aor in due {
            let before = self.composed(&aor);
            let mut gone = Vec::new();
            if let Some(list) = self.by_aor.get_mut(&aor) {
                list.retain(|p| {
                    let live = p.expires_at > now;
                    if !live {
                        gone.push(p.etag.clone());
                    }
                    live
                });
            }
            self.drop_if_empty(&aor);
            if self.composed(&aor) != before || !gone.is_empty() {
                changed.push((aor, gone));
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AOR: &str = "sip:carol@sip.localhost";

    fn body(id: &str, basic: &str, note: &str) -> Vec<u8> {
        format!(
            "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='{AOR}'>\
             <tuple id='{id}'><status><basic>{basic}</basic></status><note>{note}</note></tuple>\
             </presence>"
        )
        .into_bytes()
    }

    fn req<'a>(
        if_match: Option<&'a str>,
        expires: u32,
        body: Option<&'a [u8]>,
        etag: &str,
    ) -> PublishRequest<'a> {
        PublishRequest {
            aor: AOR,
            if_match,
            expires,
            body,
            lang: None,
            new_etag: etag.to_owned(),
        }
    }

    fn notes(p: &Publications) -> Vec<String> {
        p.composed_doc(AOR)
            .map(|d| {
                d.tuples
                    .iter()
                    .map(|t| format!("{}:{}", t.id, t.notes[0].text))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn initial_refresh_modify_remove() {
        let t = Instant::now();
        let mut p = Publications::new();
        let b1 = body("t1", "open", "in");
        let r = p
            .publish(t, req(None, 60, Some(&b1), "e1"))
            .expect("initial");
        assert_eq!(
            r,
            Published {
                etag: Some("e1".into()),
                expires: 60,
                changed: true
            }
        );
        assert_eq!(notes(&p), vec!["t1:in"]);
        // Refresh: new tag, same state.
        let r = p
            .publish(t, req(Some("e1"), 120, None, "e2"))
            .expect("refresh");
        assert_eq!((r.etag.as_deref(), r.changed), (Some("e2"), false));
        assert_eq!(p.next_expiry(), Some(t + Duration::from_secs(120)));
        // The old tag is gone (RFC 3903 §6 step 8: every success gets a new one).
        assert_eq!(
            p.publish(t, req(Some("e1"), 120, None, "x")),
            Err(PublishError::UnknownEtag)
        );
        // Modify.
        let b2 = body("t1", "open", "out");
        let r = p
            .publish(t, req(Some("e2"), 120, Some(&b2), "e3"))
            .expect("modify");
        assert!(r.changed);
        assert_eq!(notes(&p), vec!["t1:out"]);
        // Remove.
        let r = p
            .publish(t, req(Some("e3"), 0, None, "e4"))
            .expect("remove");
        assert_eq!((r.etag, r.changed), (None, true));
        assert!(p.composed(AOR).is_none());
        assert_eq!(p.aors().count(), 0);
    }

    #[test]
    fn failures() {
        let t = Instant::now();
        let mut p = Publications::new();
        assert_eq!(
            p.publish(t, req(None, 60, None, "e")),
            Err(PublishError::NoBody)
        );
        let b = body("t", "open", "x");
        // A removal needs the tag of what it removes.
        assert_eq!(
            p.publish(t, req(None, 0, Some(&b), "e")),
            Err(PublishError::NoBody)
        );
        assert_eq!(
            p.publish(t, req(Some("nope"), 60, Some(&b), "e")),
            Err(PublishError::UnknownEtag)
        );
        assert_eq!(PublishError::UnknownEtag.code(), 412);
        assert_eq!(PublishError::NoBody.code(), 400);
        assert_eq!(p.aors().count(), 0, "failures leave nothing behind");
    }

    #[test]
    fn two_devices_compose_and_expire() {
        let t = Instant::now();
        let mut p = Publications::new();
        let desk = body("desk", "open", "at desk");
        let mobile = body("mobile", "closed", "off");
        p.publish(t, req(None, 60, Some(&desk), "d1"))
            .expect("desk");
        p.publish(t, req(None, 30, Some(&mobile), "m1"))
            .expect("mobile");
        assert_eq!(notes(&p), vec!["desk:at desk", "mobile:off"]);
        // The same tuple id from a newer publication wins.
        let mobile2 = body("desk", "open", "on the move");
        p.publish(t, req(Some("m1"), 30, Some(&mobile2), "m2"))
            .expect("modify");
        assert_eq!(notes(&p), vec!["desk:on the move"]);
        // The mobile publication expires: the desk one shows again.
        assert_eq!(p.next_expiry(), Some(t + Duration::from_secs(30)));
        let changed = p.expire(t + Duration::from_secs(30));
        assert_eq!(changed, vec![(AOR.to_string(), vec!["m2".to_string()])]);
        assert_eq!(notes(&p), vec!["desk:at desk"]);
        let changed = p.expire(t + Duration::from_secs(60));
        assert_eq!(changed, vec![(AOR.to_string(), vec!["d1".to_string()])]);
        assert!(p.composed(AOR).is_none());
        assert!(p.expire(t + Duration::from_secs(90)).is_empty());
    }

    #[test]
    fn restored_publications_compose_and_expired_ones_are_dropped() {
        let t = Instant::now() + Duration::from_secs(10);
        let mut p = Publications::new();
        p.restore(
            t,
            AOR,
            Publication {
                etag: "old".into(),
                expires_at: t,
                body: body("a", "open", "gone"),
                lang: None,
                version: 3,
            },
        );
        p.restore(
            t,
            AOR,
            Publication {
                etag: "live".into(),
                expires_at: t + Duration::from_secs(5),
                body: body("b", "open", "here"),
                lang: Some("en".into()),
                version: 7,
            },
        );
        assert_eq!(notes(&p), vec!["b:here"]);
        let (_, lang) = p.composed(AOR).expect("composed");
        assert_eq!(lang.as_deref(), Some("en"));
        // New versions are newer than restored ones.
        let b = body("b", "open", "newer");
        p.publish(t, req(None, 60, Some(&b), "n")).expect("publish");
        assert_eq!(notes(&p), vec!["b:newer"]);
    }
}
