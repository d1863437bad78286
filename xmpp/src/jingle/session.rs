//! XEP-0166: Jingle (`<jingle>`, `<content>`, `<reason>`, §10 error conditions) and the
//! XEP-0167 §7 informational payloads of `session-info`.

use super::group::Group;
use super::ice::IceTransport;
use super::rtp::RtpDescription;
use super::{attr, expect, ns, opt_string, req_attr, JingleError};
use minidom::Element;
use std::fmt;
use std::str::FromStr;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $var,)* }
        impl $name {
            /// Every value, in XEP order.
            pub const ALL: &'static [$name] = &[$($name::$var,)*];
            /// The value as written in XML.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$var => $s,)* }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        impl FromStr for $name {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s { $($s => Ok($name::$var),)* _ => Err(()) }
            }
        }
    };
}

string_enum! {
    /// XEP-0166 §7.2 actions.
    Action {
        /// Accept a content-add.
        ContentAccept = "content-accept",
        /// Add a content.
        ContentAdd = "content-add",
        /// Change a content's `senders`.
        ContentModify = "content-modify",
        /// Reject a content-add.
        ContentReject = "content-reject",
        /// Remove a content.
        ContentRemove = "content-remove",
        /// Application description information.
        DescriptionInfo = "description-info",
        /// Security information.
        SecurityInfo = "security-info",
        /// Answer (SDP answer).
        SessionAccept = "session-accept",
        /// Informational message (ringing, hold, mute …).
        SessionInfo = "session-info",
        /// Offer (SDP offer).
        SessionInitiate = "session-initiate",
        /// End of the session.
        SessionTerminate = "session-terminate",
        /// Accept a transport-replace.
        TransportAccept = "transport-accept",
        /// Transport information (trickled candidates).
        TransportInfo = "transport-info",
        /// Reject a transport-replace.
        TransportReject = "transport-reject",
        /// Replace the transport.
        TransportReplace = "transport-replace",
    }
}

string_enum! {
    /// XEP-0166 §7.3 `creator` of a content.
    Creator {
        /// The session initiator created it.
        Initiator = "initiator",
        /// The responder created it.
        Responder = "responder",
    }
}

string_enum! {
    /// XEP-0166 §7.3 `senders`: which parties send media, seen from the session (not from
    /// the party that wrote the stanza). XEP-0294 uses the same values for `rtp-hdrext`.
    Senders {
        /// Both parties send.
        Both = "both",
        /// Only the initiator sends.
        Initiator = "initiator",
        /// Nobody sends.
        None = "none",
        /// Only the responder sends.
        Responder = "responder",
    }
}

string_enum! {
    /// XEP-0166 §10 Jingle error conditions (`urn:xmpp:jingle:errors:1`), sent beside a
    /// stanza error.
    JingleErrorCondition {
        /// The request cannot occur at this point in the state machine.
        OutOfOrder = "out-of-order",
        /// The request is rejected because it was sent while a request was pending.
        TieBreak = "tie-break",
        /// The `sid` is unknown.
        UnknownSession = "unknown-session",
        /// The session-info payload is not understood.
        UnsupportedInfo = "unsupported-info",
    }
}

impl JingleErrorCondition {
    /// The `<condition xmlns='urn:xmpp:jingle:errors:1'/>` element.
    pub fn to_element(self) -> Element {
        Element::bare(self.as_str(), ns::JINGLE_ERRORS)
    }

    /// Reads a Jingle error condition element.
    pub fn parse(el: &Element) -> Option<Self> {
        if el.ns() == ns::JINGLE_ERRORS {
            el.name().parse().ok()
        } else {
            None
        }
    }
}

/// XEP-0166 §7.4 reason conditions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReasonCondition {
    /// `<alternative-session><sid/></alternative-session>`.
    AlternativeSession(Option<String>),
    /// The party is busy.
    Busy,
    /// The initiator cancels.
    Cancel,
    /// Connectivity could not be established.
    ConnectivityError,
    /// The party declines.
    Decline,
    /// The session length has exceeded a pre-defined time limit.
    Expired,
    /// The application failed.
    FailedApplication,
    /// The transport failed.
    FailedTransport,
    /// General error.
    GeneralError,
    /// The party is gone.
    Gone,
    /// Parameters are incompatible.
    IncompatibleParameters,
    /// Media processing error.
    MediaError,
    /// Security error (e.g. DTLS required).
    SecurityError,
    /// Normal end.
    Success,
    /// Timeout.
    Timeout,
    /// No supported application.
    UnsupportedApplications,
    /// No supported transport.
    UnsupportedTransports,
    /// Any other condition name (kept so that it can be logged).
    Other(String),
}

impl ReasonCondition {
    /// The element name.
    pub fn as_str(&self) -> &str {
        use ReasonCondition::*;
        match self {
            AlternativeSession(_) => "alternative-session",
            Busy => "busy",
            Cancel => "cancel",
            ConnectivityError => "connectivity-error",
            Decline => "decline",
            Expired => "expired",
            FailedApplication => "failed-application",
            FailedTransport => "failed-transport",
            GeneralError => "general-error",
            Gone => "gone",
            IncompatibleParameters => "incompatible-parameters",
            MediaError => "media-error",
            SecurityError => "security-error",
            Success => "success",
            Timeout => "timeout",
            UnsupportedApplications => "unsupported-applications",
            UnsupportedTransports => "unsupported-transports",
            Other(s) => s,
        }
    }

    fn from_name(name: &str) -> Self {
        use ReasonCondition::*;
        match name {
            "alternative-session" => AlternativeSession(None),
            "busy" => Busy,
            "cancel" => Cancel,
            "connectivity-error" => ConnectivityError,
            "decline" => Decline,
            "expired" => Expired,
            "failed-application" => FailedApplication,
            "failed-transport" => FailedTransport,
            "general-error" => GeneralError,
            "gone" => Gone,
            "incompatible-parameters" => IncompatibleParameters,
            "media-error" => MediaError,
            "security-error" => SecurityError,
            "success" => Success,
            "timeout" => Timeout,
            "unsupported-applications" => UnsupportedApplications,
            "unsupported-transports" => UnsupportedTransports,
            other => Other(other.to_owned()),
        }
    }
}

/// XEP-0166 §7.4 `<reason><condition/><text/></reason>`, also used by XEP-0353.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// The condition.
    pub condition: ReasonCondition,
    /// Human-readable text.
    pub text: Option<String>,
}

impl Reason {
    /// A reason without text.
    pub fn new(condition: ReasonCondition) -> Self {
        Reason {
            condition,
            text: None,
        }
    }

    /// Reads a `<reason/>` in the Jingle namespace. A reason without any condition child reads
    /// as `general-error` (leniency); `<text>` is optional.
    pub fn parse(el: &Element) -> Result<Self, JingleError> {
        expect(el, "reason", ns::JINGLE)?;
        let mut condition = None;
        let mut text = None;
        for c in el.children() {
            if c.name() == "text" {
                text = Some(c.text());
            } else if condition.is_none() && c.ns() == ns::JINGLE {
                let mut cond = ReasonCondition::from_name(c.name());
                if let ReasonCondition::AlternativeSession(sid) = &mut cond {
                    *sid = c.get_child("sid", ns::JINGLE).map(Element::text);
                }
                condition = Some(cond);
            }
        }
        Ok(Reason {
            condition: condition.unwrap_or(ReasonCondition::GeneralError),
            text,
        })
    }

    /// Writes the `<reason/>` element.
    pub fn to_element(&self) -> Element {
        let mut cond = Element::builder(self.condition.as_str(), ns::JINGLE);
        if let ReasonCondition::AlternativeSession(Some(sid)) = &self.condition {
            cond = cond.append(
                Element::builder("sid", ns::JINGLE)
                    .append(sid.as_str())
                    .build(),
            );
        }
        let mut b = Element::builder("reason", ns::JINGLE).append(cond.build());
        if let Some(t) = &self.text {
            b = b.append(
                Element::builder("text", ns::JINGLE)
                    .append(t.as_str())
                    .build(),
            );
        }
        b.build()
    }
}

/// XEP-0167 §7 informational payloads of `session-info` (`urn:xmpp:jingle:apps:rtp:info:1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionInfo {
    /// The party is now actively participating (resume after hold).
    Active,
    /// On hold.
    Hold,
    /// Off hold.
    Unhold,
    /// Muted, optionally one content.
    Mute {
        /// Content creator.
        creator: Option<Creator>,
        /// Content name.
        name: Option<String>,
    },
    /// Unmuted.
    Unmute {
        /// Content creator.
        creator: Option<Creator>,
        /// Content name.
        name: Option<String>,
    },
    /// The callee is ringing.
    Ringing,
}

impl SessionInfo {
    /// Reads a payload; `None` for an element this type does not know.
    pub fn parse(el: &Element) -> Option<Self> {
        if el.ns() != ns::RTP_INFO {
            return None;
        }
        let creator = el.attr("creator").and_then(|c| c.parse().ok());
        let name = opt_string(el, "name");
        Some(match el.name() {
            "active" => SessionInfo::Active,
            "hold" => SessionInfo::Hold,
            "unhold" => SessionInfo::Unhold,
            "mute" => SessionInfo::Mute { creator, name },
            "unmute" => SessionInfo::Unmute { creator, name },
            "ringing" => SessionInfo::Ringing,
            _ => return None,
        })
    }

    /// Writes the payload element.
    pub fn to_element(&self) -> Element {
        let (n, creator, name) = match self {
            SessionInfo::Active => ("active", None, None),
            SessionInfo::Hold => ("hold", None, None),
            SessionInfo::Unhold => ("unhold", None, None),
            SessionInfo::Mute { creator, name } => ("mute", *creator, name.as_deref()),
            SessionInfo::Unmute { creator, name } => ("unmute", *creator, name.as_deref()),
            SessionInfo::Ringing => ("ringing", None, None),
        };
        let b = Element::builder(n, ns::RTP_INFO);
        let b = attr!(b, "creator", creator.map(Creator::as_str));
        attr!(b, "name", name).build()
    }
}

/// XEP-0166 §7.3 `<content>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// Who created it; absent on input reads as `initiator`.
    pub creator: Creator,
    /// The content name (SDP `a=mid`).
    pub name: String,
    /// Who sends; absent reads as `both`.
    pub senders: Senders,
    /// The XEP-0167 RTP description (other applications read as `None`).
    pub description: Option<RtpDescription>,
    /// The XEP-0176 ICE-UDP transport (other transports read as `None`).
    pub transport: Option<IceTransport>,
}

impl Content {
    /// Reads a `<content/>`; `name` is required.
    pub fn parse(el: &Element) -> Result<Self, JingleError> {
        expect(el, "content", ns::JINGLE)?;
        let mut c = Content {
            creator: el
                .attr("creator")
                .and_then(|c| c.parse().ok())
                .unwrap_or(Creator::Initiator),
            name: req_attr(el, "content", "name")?.to_owned(),
            senders: el
                .attr("senders")
                .and_then(|c| c.parse().ok())
                .unwrap_or(Senders::Both),
            description: None,
            transport: None,
        };
        for child in el.children() {
            if child.is("description", ns::RTP) && c.description.is_none() {
                c.description = RtpDescription::parse(child).ok();
            } else if child.is("transport", ns::ICE_UDP) && c.transport.is_none() {
                c.transport = IceTransport::parse(child).ok();
            }
        }
        Ok(c)
    }

    /// Writes the `<content/>` element (`senders` omitted when `both`, the XEP default).
    pub fn to_element(&self) -> Element {
        let b = Element::builder("content", ns::JINGLE);
        let b = attr!(b, "creator", self.creator.as_str());
        let b = attr!(b, "name", self.name.as_str());
        let b = attr!(
            b,
            "senders",
            (self.senders != Senders::Both).then(|| self.senders.as_str())
        );
        b.append_all(self.description.iter().map(RtpDescription::to_element))
            .append_all(self.transport.iter().map(IceTransport::to_element))
            .build()
    }
}

/// XEP-0166 §7.1 `<jingle xmlns='urn:xmpp:jingle:1'>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jingle {
    /// The action.
    pub action: Action,
    /// Session id.
    pub sid: String,
    /// Initiator full JID (libwebrtc clients omit it: use the IQ `from`).
    pub initiator: Option<String>,
    /// Responder full JID.
    pub responder: Option<String>,
    /// Contents; a content without `name` is skipped.
    pub contents: Vec<Content>,
    /// The reason (session-terminate, content-reject, …).
    pub reason: Option<Reason>,
    /// XEP-0338 group (BUNDLE).
    pub group: Option<Group>,
    /// XEP-0167 §7 informational payload of a session-info.
    pub info: Option<SessionInfo>,
}

impl Jingle {
    /// A Jingle element with only action and sid.
    pub fn new(action: Action, sid: &str) -> Self {
        Jingle {
            action,
            sid: sid.to_owned(),
            initiator: None,
            responder: None,
            contents: Vec::new(),
            reason: None,
            group: None,
            info: None,
        }
    }

    /// Reads a `<jingle/>`; `action` (one of XEP-0166 §7.2) and `sid` are required.
    pub fn parse(el: &Element) -> Result<Self, JingleError> {
        expect(el, "jingle", ns::JINGLE)?;
        let action_s = req_attr(el, "jingle", "action")?;
        let action = action_s
            .parse()
            .map_err(|_| JingleError::InvalidAttribute {
                element: "jingle",
                attribute: "action",
                value: action_s.to_owned(),
            })?;
        let mut j = Jingle::new(action, req_attr(el, "jingle", "sid")?);
        j.initiator = opt_string(el, "initiator").filter(|s| !s.is_empty());
        j.responder = opt_string(el, "responder").filter(|s| !s.is_empty());
        for c in el.children() {
            if c.is("content", ns::JINGLE) {
                if let Ok(content) = Content::parse(c) {
                    j.contents.push(content);
                }
            } else if c.is("reason", ns::JINGLE) {
                j.reason = Reason::parse(c).ok();
            } else if c.is("group", ns::GROUPING) {
                j.group = Group::parse(c).ok();
            } else if j.info.is_none() {
                j.info = SessionInfo::parse(c);
            }
        }
        Ok(j)
    }

    /// Writes the `<jingle/>` element.
    pub fn to_element(&self) -> Element {
        let b = Element::builder("jingle", ns::JINGLE);
        let b = attr!(b, "action", self.action.as_str());
        let b = attr!(b, "initiator", self.initiator.as_deref());
        let b = attr!(b, "responder", self.responder.as_deref());
        let b = attr!(b, "sid", self.sid.as_str());
        b.append_all(self.contents.iter().map(Content::to_element))
            .append_all(self.group.iter().map(Group::to_element))
            .append_all(self.reason.iter().map(Reason::to_element))
            .append_all(self.info.iter().map(SessionInfo::to_element))
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_round_trips_through_its_name() {
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>(), Ok(*a));
        }
        assert_eq!(Action::ALL.len(), 15);
    }

    #[test]
    fn unknown_action_and_missing_sid_are_errors() {
        let el: Element = "<jingle xmlns='urn:xmpp:jingle:1' action='dance' sid='a'/>"
            .parse()
            .unwrap();
        assert!(matches!(
            Jingle::parse(&el),
            Err(JingleError::InvalidAttribute {
                attribute: "action",
                ..
            })
        ));
        let el: Element = "<jingle xmlns='urn:xmpp:jingle:1' action='session-info'/>"
            .parse()
            .unwrap();
        assert!(matches!(
            Jingle::parse(&el),
            Err(JingleError::MissingAttribute {
                attribute: "sid",
                ..
            })
        ));
    }

    #[test]
    fn terminate_with_reason_text_and_ringing_info() {
        let el: Element = "<jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='a18'>
            <reason><busy/><text>on the phone</text></reason></jingle>"
            .parse()
            .unwrap();
        let j = Jingle::parse(&el).unwrap();
        let r = j.reason.clone().unwrap();
        assert_eq!(r.condition, ReasonCondition::Busy);
        assert_eq!(r.text.as_deref(), Some("on the phone"));
        assert_eq!(Jingle::parse(&j.to_element()).unwrap(), j);

        let el: Element = "<jingle xmlns='urn:xmpp:jingle:1' action='session-info' sid='a18'>
            <ringing xmlns='urn:xmpp:jingle:apps:rtp:info:1'/></jingle>"
            .parse()
            .unwrap();
        assert_eq!(Jingle::parse(&el).unwrap().info, Some(SessionInfo::Ringing));
    }

    #[test]
    fn alternative_session_keeps_its_sid_and_unknown_conditions_are_kept() {
        let r = Reason::new(ReasonCondition::AlternativeSession(Some("b84".into())));
        assert_eq!(Reason::parse(&r.to_element()).unwrap(), r);
        let el: Element = "<reason xmlns='urn:xmpp:jingle:1'><x-custom/></reason>"
            .parse()
            .unwrap();
        assert_eq!(
            Reason::parse(&el).unwrap().condition,
            ReasonCondition::Other("x-custom".into())
        );
        let el: Element = "<reason xmlns='urn:xmpp:jingle:1'/>".parse().unwrap();
        assert_eq!(
            Reason::parse(&el).unwrap().condition,
            ReasonCondition::GeneralError
        );
    }

    #[test]
    fn jingle_error_conditions() {
        for c in JingleErrorCondition::ALL {
            assert_eq!(JingleErrorCondition::parse(&c.to_element()), Some(*c));
        }
    }
}
