//! XEP-0353: Jingle Message Initiation (`urn:xmpp:jingle-message:0`).
//!
//! The children of a `<message type='chat'>` that ring a callee before any Jingle IQ:
//! `<propose>` → `<ringing>` → `<proceed>` / `<reject>` / `<retract>`, `<accept>` (carbon to the
//! caller's other devices) and `<finish>`. The XEP-0334 `<store/>` hint that goes beside them is
//! the caller's business ([`store_hint`]). `xmpp-parsers` 0.23 rejects `<ringing/>` and
//! `<finish/>`; this module reads all of them.

use super::session::Reason;
use super::{attr, ns, req_attr, JingleError};
use minidom::Element;

/// One `<description/>` of a `<propose>`: the application namespace and its media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposedDescription {
    /// Application namespace, normally `urn:xmpp:jingle:apps:rtp:1`.
    pub ns: String,
    /// `audio` or `video` for RTP.
    pub media: Option<String>,
}

impl ProposedDescription {
    /// An RTP description of `media`.
    pub fn rtp(media: &str) -> Self {
        ProposedDescription {
            ns: ns::RTP.to_owned(),
            media: Some(media.to_owned()),
        }
    }
}

/// A JMI message payload. `id` is the Jingle session id the call will use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JingleMessage {
    /// The caller proposes a session.
    Propose {
        /// Session id.
        id: String,
        /// What is proposed (audio, video).
        descriptions: Vec<ProposedDescription>,
    },
    /// The callee's device is ringing.
    Ringing {
        /// Session id.
        id: String,
    },
    /// The callee accepts on this device; the caller then sends `session-initiate` to it.
    Proceed {
        /// Session id.
        id: String,
    },
    /// The caller withdraws the proposal.
    Retract {
        /// Session id.
        id: String,
        /// Why (XEP-0353 ≥ 0.7 says it MUST be there; older clients omit it).
        reason: Option<Reason>,
    },
    /// The callee declines.
    Reject {
        /// Session id.
        id: String,
        /// Why.
        reason: Option<Reason>,
    },
    /// Sent to the callee's own other devices: accepted elsewhere.
    Accept {
        /// Session id.
        id: String,
    },
    /// The session ended.
    Finish {
        /// Session id.
        id: String,
        /// Why.
        reason: Option<Reason>,
    },
}

impl JingleMessage {
    /// The session id.
    pub fn id(&self) -> &str {
        match self {
            JingleMessage::Propose { id, .. }
            | JingleMessage::Ringing { id }
            | JingleMessage::Proceed { id }
            | JingleMessage::Retract { id, .. }
            | JingleMessage::Reject { id, .. }
            | JingleMessage::Accept { id }
            | JingleMessage::Finish { id, .. } => id,
        }
    }

    /// The element name.
    pub fn name(&self) -> &'static str {
        match self {
            JingleMessage::Propose { .. } => "propose",
            JingleMessage::Ringing { .. } => "ringing",
            JingleMessage::Proceed { .. } => "proceed",
            JingleMessage::Retract { .. } => "retract",
            JingleMessage::Reject { .. } => "reject",
            JingleMessage::Accept { .. } => "accept",
            JingleMessage::Finish { .. } => "finish",
        }
    }

    /// Reads one JMI element (`<propose/>`, `<ringing/>`, …). `id` is required; unknown
    /// children (OMEMO `<device/>`, `<migrated/>`) are ignored.
    pub fn parse(el: &Element) -> Result<Self, JingleError> {
        if el.ns() != ns::JMI {
            return Err(JingleError::WrongElement {
                expected: "propose|ringing|proceed|retract|reject|accept|finish",
                ns: ns::JMI,
                got: el.name().to_owned(),
                got_ns: el.ns(),
            });
        }
        let name: &'static str = match el.name() {
            "propose" => "propose",
            "ringing" => "ringing",
            "proceed" => "proceed",
            "retract" => "retract",
            "reject" => "reject",
            "accept" => "accept",
            "finish" => "finish",
            _ => {
                return Err(JingleError::WrongElement {
                    expected: "propose|ringing|proceed|retract|reject|accept|finish",
                    ns: ns::JMI,
                    got: el.name().to_owned(),
                    got_ns: el.ns(),
                })
            }
        };
        let id = req_attr(el, name, "id")?.to_owned();
        let reason = || {
            el.get_child("reason", ns::JINGLE)
                .and_then(|r| Reason::parse(r).ok())
        };
        Ok(match name {
            "propose" => JingleMessage::Propose {
                id,
                descriptions: el
                    .children()
                    .filter(|c| c.name() == "description")
                    .map(|c| ProposedDescription {
                        ns: c.ns(),
                        media: c.attr("media").map(str::to_owned),
                    })
                    .collect(),
            },
            "ringing" => JingleMessage::Ringing { id },
            "proceed" => JingleMessage::Proceed { id },
            "retract" => JingleMessage::Retract {
                id,
                reason: reason(),
            },
            "reject" => JingleMessage::Reject {
                id,
                reason: reason(),
            },
            "accept" => JingleMessage::Accept { id },
            _ => JingleMessage::Finish {
                id,
                reason: reason(),
            },
        })
    }

    /// Finds and reads the JMI payload of a `<message/>`; `None` when it carries none.
    pub fn from_message(message: &Element) -> Option<Result<Self, JingleError>> {
        message
            .children()
            .find(|c| c.ns() == ns::JMI)
            .map(JingleMessage::parse)
    }

    /// Writes the JMI element.
    pub fn to_element(&self) -> Element {
        let b = attr!(Element::builder(self.name(), ns::JMI), "id", self.id());
        match self {
            JingleMessage::Propose { descriptions, .. } => b
                .append_all(descriptions.iter().map(|d| {
                    attr!(
                        Element::builder("description", d.ns.as_str()),
                        "media",
                        d.media.as_deref()
                    )
                    .build()
                }))
                .build(),
            JingleMessage::Retract { reason, .. }
            | JingleMessage::Reject { reason, .. }
            | JingleMessage::Finish { reason, .. } => {
                b.append_all(reason.iter().map(Reason::to_element)).build()
            }
            _ => b.build(),
        }
    }
}

/// The XEP-0334 `<store xmlns='urn:xmpp:hints'/>` hint XEP-0353 asks for on every JMI message.
pub fn store_hint() -> Element {
    Element::bare("store", ns::HINTS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jingle::ReasonCondition;

    #[test]
    fn xep_0353_propose_and_retract() {
        let msg: Element = "<message xmlns='jabber:client' from='romeo@montague.example/orchard' to='juliet@capulet.example' type='chat'>
            <propose xmlns='urn:xmpp:jingle-message:0' id='ca3cf894-5325-482f-a412-a6e9f832298d'>
              <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/>
            </propose><store xmlns='urn:xmpp:hints'/></message>"
            .parse()
            .unwrap();
        let m = JingleMessage::from_message(&msg).unwrap().unwrap();
        assert_eq!(
            m,
            JingleMessage::Propose {
                id: "ca3cf894-5325-482f-a412-a6e9f832298d".into(),
                descriptions: vec![ProposedDescription::rtp("audio")]
            }
        );
        assert_eq!(JingleMessage::parse(&m.to_element()).unwrap(), m);

        let el: Element = "<retract xmlns='urn:xmpp:jingle-message:0' id='x'>
            <reason xmlns='urn:xmpp:jingle:1'><cancel/><text>Retracted</text></reason></retract>"
            .parse()
            .unwrap();
        let m = JingleMessage::parse(&el).unwrap();
        match &m {
            JingleMessage::Retract {
                reason: Some(r), ..
            } => {
                assert_eq!(r.condition, ReasonCondition::Cancel)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(JingleMessage::parse(&m.to_element()).unwrap(), m);
    }

    #[test]
    fn ringing_and_finish_parse_and_missing_id_is_an_error() {
        let el: Element = "<ringing xmlns='urn:xmpp:jingle-message:0' id='a'/>"
            .parse()
            .unwrap();
        assert_eq!(
            JingleMessage::parse(&el).unwrap(),
            JingleMessage::Ringing { id: "a".into() }
        );
        let el: Element = "<finish xmlns='urn:xmpp:jingle-message:0' id='a'><reason xmlns='urn:xmpp:jingle:1'><success/></reason><migrated to='b'/></finish>".parse().unwrap();
        assert!(matches!(
            JingleMessage::parse(&el).unwrap(),
            JingleMessage::Finish {
                reason: Some(_),
                ..
            }
        ));
        let el: Element = "<proceed xmlns='urn:xmpp:jingle-message:0'/>"
            .parse()
            .unwrap();
        assert!(JingleMessage::parse(&el).is_err());
        let msg: Element = "<message xmlns='jabber:client'><body>hi</body></message>"
            .parse()
            .unwrap();
        assert!(JingleMessage::from_message(&msg).is_none());
    }
}
