//! Call-ending reasons between SIP final responses and Jingle `<reason/>` conditions
//! (STOX-MAPPING.md §7 "Session signalling", XEP-0166 §7.4, XEP-0353).
//!
//! * [`JINGLE_TO_SIP`]: the reason of a `<reject/>`, or of a `session-terminate` before the
//!   call was answered, becomes the final response to the SIP caller's INVITE.
//! * [`SIP_TO_JINGLE`]: the final response to stox's INVITE becomes the reason of the
//!   `session-terminate` sent to the XMPP caller. Unlisted codes fall back by class
//!   ([`sip_to_jingle`]).
//!
//! The table in STOX-MAPPING.md is "assembled" from the XEPs (draft-ietf-stox-media expired);
//! where it gives two codes the choice is documented on the row.

use stox_xmpp::jingle::ReasonCondition;

/// One row: a Jingle condition and the SIP final response for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonRow {
    /// The Jingle condition.
    pub condition: ReasonCondition,
    /// The SIP status code.
    pub code: u16,
}

const fn row(condition: ReasonCondition, code: u16) -> ReasonRow {
    ReasonRow { condition, code }
}

/// Jingle `<reason/>` → SIP final response to an unanswered INVITE.
pub const JINGLE_TO_SIP: &[ReasonRow] = &[
    row(ReasonCondition::Decline, 603),
    row(ReasonCondition::Busy, 486),
    row(ReasonCondition::Timeout, 408),
    row(ReasonCondition::Expired, 408),
    // "410 Gone / 480 Temporarily Unavailable": the XMPP user is not reachable now (480),
    // not gone for good (410, which SIP caches).
    row(ReasonCondition::Gone, 480),
    row(ReasonCondition::UnsupportedApplications, 415),
    row(ReasonCondition::IncompatibleParameters, 488),
    row(ReasonCondition::UnsupportedTransports, 488),
    row(ReasonCondition::FailedApplication, 488),
    row(ReasonCondition::MediaError, 488),
    // "488 (or 606)": 488 lets the caller retry with another offer.
    row(ReasonCondition::SecurityError, 488),
    // "480 or 503": 503 would tell SIP the gateway itself is down.
    row(ReasonCondition::ConnectivityError, 480),
    row(ReasonCondition::FailedTransport, 480),
    row(ReasonCondition::GeneralError, 500),
    // The callee's own device cancelled (e.g. its ringing timed out): the request ended.
    row(ReasonCondition::Cancel, 487),
    // `success` before an answer: the callee ended the proposal without an error (a reject
    // sent by an old client without a reason): treat it as a decline.
    row(ReasonCondition::Success, 603),
];

/// SIP final response (3xx–6xx) → Jingle `<reason/>` for the XMPP caller.
pub const SIP_TO_JINGLE: &[(u16, ReasonCondition)] = &[
    (404, ReasonCondition::Gone),
    (408, ReasonCondition::Timeout),
    (410, ReasonCondition::Gone),
    (415, ReasonCondition::UnsupportedApplications),
    (480, ReasonCondition::Gone),
    (486, ReasonCondition::Busy),
    (487, ReasonCondition::Cancel),
    (488, ReasonCondition::IncompatibleParameters),
    (500, ReasonCondition::GeneralError),
    (503, ReasonCondition::ConnectivityError),
    (600, ReasonCondition::Busy),
    (603, ReasonCondition::Decline),
    (604, ReasonCondition::Gone),
    (606, ReasonCondition::IncompatibleParameters),
];

/// The SIP final response for a Jingle reason. No reason (XEP-0353 ≥ 0.7 makes it mandatory,
/// older clients omit it on `<reject/>`) reads as a decline, 603; unknown conditions as 500.
pub fn jingle_to_sip(condition: Option<&ReasonCondition>) -> u16 {
    let Some(condition) = condition else {
        return 603;
    };
    JINGLE_TO_SIP
        .iter()
        .find(|r| &r.condition == condition)
        .map(|r| r.code)
        .unwrap_or(500)
}

/// The Jingle reason for a SIP final response (3xx–6xx); class defaults for unlisted codes.
pub fn sip_to_jingle(code: u16) -> ReasonCondition {
    if let Some((_, c)) = SIP_TO_JINGLE.iter().find(|(c, _)| *c == code) {
        return c.clone();
    }
    match code {
        300..=399 => ReasonCondition::Gone,
        400..=499 => ReasonCondition::GeneralError,
        500..=599 => ReasonCondition::ConnectivityError,
        _ => ReasonCondition::Decline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_jingle_row_maps_to_its_code() {
        for r in JINGLE_TO_SIP {
            assert_eq!(jingle_to_sip(Some(&r.condition)), r.code, "{r:?}");
            assert!((400..700).contains(&r.code), "{r:?} is not a final error");
        }
    }

    #[test]
    fn every_sip_row_maps_to_its_condition() {
        for (code, cond) in SIP_TO_JINGLE {
            assert_eq!(&sip_to_jingle(*code), cond, "{code}");
        }
    }

    #[test]
    fn the_issue_examples_hold_both_ways() {
        // Issue 3: reject/decline → 603, busy → 486; SIP 486 → busy, 603 → decline.
        assert_eq!(jingle_to_sip(Some(&ReasonCondition::Decline)), 603);
        assert_eq!(jingle_to_sip(Some(&ReasonCondition::Busy)), 486);
        assert_eq!(sip_to_jingle(486), ReasonCondition::Busy);
        assert_eq!(sip_to_jingle(603), ReasonCondition::Decline);
        // The round trip of the common ones is stable.
        for cond in [
            ReasonCondition::Busy,
            ReasonCondition::Decline,
            ReasonCondition::Timeout,
            ReasonCondition::Gone,
            ReasonCondition::IncompatibleParameters,
            ReasonCondition::UnsupportedApplications,
            ReasonCondition::GeneralError,
            ReasonCondition::Cancel,
        ] {
            assert_eq!(sip_to_jingle(jingle_to_sip(Some(&cond))), cond, "{cond:?}");
        }
    }

    #[test]
    fn unlisted_and_missing_fall_back() {
        assert_eq!(jingle_to_sip(None), 603);
        assert_eq!(
            jingle_to_sip(Some(&ReasonCondition::Other("x".into()))),
            500
        );
        assert_eq!(sip_to_jingle(302), ReasonCondition::Gone);
        assert_eq!(sip_to_jingle(403), ReasonCondition::GeneralError);
        assert_eq!(sip_to_jingle(502), ReasonCondition::ConnectivityError);
        assert_eq!(sip_to_jingle(699), ReasonCondition::Decline);
    }
}
