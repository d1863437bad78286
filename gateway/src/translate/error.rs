//! RFC 7247 §7: error mapping tables.
//!
//! * [`XMPP_TO_SIP`] is RFC 7247 §7.1 Table 2 (XMPP stanza error condition → SIP response
//!   code), one row per condition. Where the RFC gives two codes, the first column is for an
//!   error about a full JID (one endpoint: SIP 4xx) and the second for a bare JID (all of a
//!   user's endpoints: SIP 6xx), as §7 advises.
//! * [`SIP_TO_XMPP`] is RFC 7247 §7.2 Table 3 (SIP response code → XMPP condition), one
//!   row per code; [`sip_to_xmpp`] falls back to the class defaults for unlisted codes.
//! * [`error_type_for`] gives the usual `type` of each condition (RFC 6120 §8.3.3).
//!
//! The RFC calls this mapping "more of an art than a science": its rows are SHOULDs. The
//! choices made where it leaves one open are documented on the rows. SIP Reason-Phrase and
//! XMPP `<text/>` are carried by the caller; there is no mapping for 1xx and 2xx.

use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

/// One row of RFC 7247 Table 2.
#[derive(Debug, Clone, PartialEq)]
pub struct XmppToSip {
    /// The XMPP condition (`gone` / `redirect` listed without address).
    pub cond: DefinedCondition,
    /// The SIP code when the error is about a full JID (one endpoint).
    pub full_jid_code: u16,
    /// The SIP code when the error is about a bare JID (every endpoint of the user).
    pub bare_jid_code: u16,
}

const fn row(cond: DefinedCondition, full_jid_code: u16, bare_jid_code: u16) -> XmppToSip {
    XmppToSip {
        cond,
        full_jid_code,
        bare_jid_code,
    }
}

/// RFC 7247 §7.1 Table 2: XMPP error condition → SIP response code.
pub const XMPP_TO_SIP: &[XmppToSip] = &[
    row(DefinedCondition::BadRequest, 400, 400),
    row(DefinedCondition::Conflict, 400, 400),
    // "405 or 501": the recipient does not implement it (405) vs. nobody does (501).
    row(DefinedCondition::FeatureNotImplemented, 405, 501),
    row(DefinedCondition::Forbidden, 403, 603),
    // 410 without a new address; `xmpp_to_sip` answers 301 when there is one.
    row(DefinedCondition::Gone { new_address: None }, 410, 410),
    row(DefinedCondition::InternalServerError, 500, 500),
    row(DefinedCondition::ItemNotFound, 404, 604),
    row(DefinedCondition::JidMalformed, 400, 400),
    row(DefinedCondition::NotAcceptable, 406, 606),
    row(DefinedCondition::NotAllowed, 403, 403),
    row(DefinedCondition::NotAuthorized, 401, 401),
    row(DefinedCondition::PolicyViolation, 403, 403),
    row(DefinedCondition::RecipientUnavailable, 480, 600),
    row(DefinedCondition::Redirect { new_address: None }, 302, 302),
    row(DefinedCondition::RegistrationRequired, 407, 407),
    // "404 or 408": 404 when the domain does not exist, 408 when it cannot be reached. A
    // stanza error does not say which; 404 is the common case (the name did not resolve).
    row(DefinedCondition::RemoteServerNotFound, 404, 404),
    row(DefinedCondition::RemoteServerTimeout, 408, 408),
    row(DefinedCondition::ResourceConstraint, 500, 500),
    // The RFC: never 503 (that tells SIP the server is down); "403 or 405 are closest".
    // XMPP servers say service-unavailable for "this user/feature is not available to you"
    // (including offline users without storage, to hide whether an account exists), which
    // is SIP 403 Forbidden; for a bare JID its global form 603 Decline, as for forbidden.
    row(DefinedCondition::ServiceUnavailable, 403, 603),
    row(DefinedCondition::SubscriptionRequired, 400, 400),
    row(DefinedCondition::UndefinedCondition, 400, 400),
    // "491 or 400": 491 Request Pending is what an out-of-order request means in SIP.
    row(DefinedCondition::UnexpectedRequest, 491, 491),
];

/// RFC 7247 §7.2 Table 3: SIP response code → XMPP error condition. `gone` and `redirect`
/// are listed without address: the caller fills it in from the `Contact` header.
pub const SIP_TO_XMPP: &[(u16, DefinedCondition)] = &[
    (300, DefinedCondition::Redirect { new_address: None }),
    (301, DefinedCondition::Gone { new_address: None }),
    (302, DefinedCondition::Redirect { new_address: None }),
    (305, DefinedCondition::Redirect { new_address: None }),
    (380, DefinedCondition::NotAcceptable),
    (400, DefinedCondition::BadRequest),
    (401, DefinedCondition::NotAuthorized),
    // payment-required was removed from XMPP (RFC 6120).
    (402, DefinedCondition::BadRequest),
    (403, DefinedCondition::Forbidden),
    (404, DefinedCondition::ItemNotFound),
    (405, DefinedCondition::FeatureNotImplemented),
    (406, DefinedCondition::NotAcceptable),
    (407, DefinedCondition::RegistrationRequired),
    (408, DefinedCondition::RemoteServerTimeout),
    (410, DefinedCondition::Gone { new_address: None }),
    (413, DefinedCondition::PolicyViolation),
    (414, DefinedCondition::PolicyViolation),
    (415, DefinedCondition::NotAcceptable),
    (416, DefinedCondition::NotAcceptable),
    (420, DefinedCondition::FeatureNotImplemented),
    (421, DefinedCondition::NotAcceptable),
    (423, DefinedCondition::ResourceConstraint),
    (430, DefinedCondition::RecipientUnavailable),
    (439, DefinedCondition::FeatureNotImplemented),
    (440, DefinedCondition::PolicyViolation),
    (480, DefinedCondition::RecipientUnavailable),
    (481, DefinedCondition::ItemNotFound),
    (482, DefinedCondition::NotAcceptable),
    (483, DefinedCondition::NotAcceptable),
    (484, DefinedCondition::ItemNotFound),
    (485, DefinedCondition::ItemNotFound),
    (486, DefinedCondition::RecipientUnavailable),
    (487, DefinedCondition::RecipientUnavailable),
    (488, DefinedCondition::NotAcceptable),
    (489, DefinedCondition::PolicyViolation),
    (491, DefinedCondition::UnexpectedRequest),
    (493, DefinedCondition::BadRequest),
    (500, DefinedCondition::InternalServerError),
    (501, DefinedCondition::FeatureNotImplemented),
    (502, DefinedCondition::RemoteServerNotFound),
    // Not service-unavailable: see the note on Table 2.
    (503, DefinedCondition::InternalServerError),
    (504, DefinedCondition::RemoteServerTimeout),
    (505, DefinedCondition::NotAcceptable),
    (513, DefinedCondition::PolicyViolation),
    (600, DefinedCondition::RecipientUnavailable),
    (603, DefinedCondition::RecipientUnavailable),
    (604, DefinedCondition::ItemNotFound),
    (606, DefinedCondition::NotAcceptable),
];

/// The XMPP condition for a SIP final error response: the Table 3 row, else the class
/// default (3xx `redirect`, 4xx `bad-request`, 5xx `internal-server-error`, 6xx
/// `recipient-unavailable`). Codes outside 300–699 are not errors and have no mapping;
/// they yield `undefined-condition`.
pub fn sip_to_xmpp(code: u16) -> DefinedCondition {
    if let Some((_, cond)) = SIP_TO_XMPP.iter().find(|(c, _)| *c == code) {
        return cond.clone();
    }
    match code {
        300..=399 => DefinedCondition::Redirect { new_address: None },
        400..=499 => DefinedCondition::BadRequest,
        500..=599 => DefinedCondition::InternalServerError,
        600..=699 => DefinedCondition::RecipientUnavailable,
        _ => DefinedCondition::UndefinedCondition,
    }
}

/// The SIP response code for an XMPP error condition (Table 2). `to_full_jid`: the error is
/// about one resource (4xx) rather than the bare JID (6xx, where the table has one).
/// `gone` becomes 301 when the error carries a new address (`has_new_address`, or an
/// address inside the condition), 410 otherwise.
pub fn xmpp_to_sip(cond: &DefinedCondition, to_full_jid: bool, has_new_address: bool) -> u16 {
    if let DefinedCondition::Gone { new_address } = cond {
        if has_new_address || new_address.as_deref().is_some_and(|a| !a.is_empty()) {
            return 301;
        }
    }
    let name = condition_name(cond);
    XMPP_TO_SIP
        .iter()
        .find(|row| condition_name(&row.cond) == name)
        .map_or(500, |row| {
            if to_full_jid {
                row.full_jid_code
            } else {
                row.bare_jid_code
            }
        })
}

/// The `type` RFC 6120 §8.3.3 gives each condition (the first where it names two).
pub fn error_type_for(cond: &DefinedCondition) -> ErrorType {
    use DefinedCondition as C;
    match cond {
        C::BadRequest => ErrorType::Modify,
        C::Conflict => ErrorType::Cancel,
        C::FeatureNotImplemented => ErrorType::Cancel,
        C::Forbidden => ErrorType::Auth,
        C::Gone { .. } => ErrorType::Cancel,
        C::InternalServerError => ErrorType::Cancel,
        C::ItemNotFound => ErrorType::Cancel,
        C::JidMalformed => ErrorType::Modify,
        C::NotAcceptable => ErrorType::Modify,
        C::NotAllowed => ErrorType::Cancel,
        C::NotAuthorized => ErrorType::Auth,
        C::PolicyViolation => ErrorType::Modify,
        C::RecipientUnavailable => ErrorType::Wait,
        C::Redirect { .. } => ErrorType::Modify,
        C::RegistrationRequired => ErrorType::Auth,
        C::RemoteServerNotFound => ErrorType::Cancel,
        C::RemoteServerTimeout => ErrorType::Wait,
        C::ResourceConstraint => ErrorType::Wait,
        C::ServiceUnavailable => ErrorType::Cancel,
        C::SubscriptionRequired => ErrorType::Auth,
        C::UndefinedCondition => ErrorType::Cancel,
        C::UnexpectedRequest => ErrorType::Wait,
    }
}

/// The element name of a condition (`item-not-found`), RFC 6120 §8.3.3.
pub fn condition_name(cond: &DefinedCondition) -> &'static str {
    use DefinedCondition as C;
    match cond {
        C::BadRequest => "bad-request",
        C::Conflict => "conflict",
        C::FeatureNotImplemented => "feature-not-implemented",
        C::Forbidden => "forbidden",
        C::Gone { .. } => "gone",
        C::InternalServerError => "internal-server-error",
        C::ItemNotFound => "item-not-found",
        C::JidMalformed => "jid-malformed",
        C::NotAcceptable => "not-acceptable",
        C::NotAllowed => "not-allowed",
        C::NotAuthorized => "not-authorized",
        C::PolicyViolation => "policy-violation",
        C::RecipientUnavailable => "recipient-unavailable",
        C::Redirect { .. } => "redirect",
        C::RegistrationRequired => "registration-required",
        C::RemoteServerNotFound => "remote-server-not-found",
        C::RemoteServerTimeout => "remote-server-timeout",
        C::ResourceConstraint => "resource-constraint",
        C::ServiceUnavailable => "service-unavailable",
        C::SubscriptionRequired => "subscription-required",
        C::UndefinedCondition => "undefined-condition",
        C::UnexpectedRequest => "unexpected-request",
    }
}

/// The condition named `name` (`gone` / `redirect` without address); `None` for a name
/// RFC 6120 does not define.
pub fn condition_from_name(name: &str) -> Option<DefinedCondition> {
    XMPP_TO_SIP
        .iter()
        .map(|row| &row.cond)
        .find(|cond| condition_name(cond) == name)
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Table 2 as printed in RFC 7247 §7.1 (full JID / bare JID code), written out
    /// independently of the const table.
    const RFC_TABLE_2: &[(&str, u16, u16)] = &[
        ("bad-request", 400, 400),
        ("conflict", 400, 400),
        ("feature-not-implemented", 405, 501),
        ("forbidden", 403, 603),
        ("gone", 410, 410),
        ("internal-server-error", 500, 500),
        ("item-not-found", 404, 604),
        ("jid-malformed", 400, 400),
        ("not-acceptable", 406, 606),
        ("not-allowed", 403, 403),
        ("not-authorized", 401, 401),
        ("policy-violation", 403, 403),
        ("recipient-unavailable", 480, 600),
        ("redirect", 302, 302),
        ("registration-required", 407, 407),
        ("remote-server-not-found", 404, 404),
        ("remote-server-timeout", 408, 408),
        ("resource-constraint", 500, 500),
        ("service-unavailable", 403, 603),
        ("subscription-required", 400, 400),
        ("undefined-condition", 400, 400),
        ("unexpected-request", 491, 491),
    ];

    #[test]
    fn table_2_every_row() {
        assert_eq!(XMPP_TO_SIP.len(), RFC_TABLE_2.len());
        for (row, (name, full, bare)) in XMPP_TO_SIP.iter().zip(RFC_TABLE_2) {
            assert_eq!(condition_name(&row.cond), *name);
            let cond = condition_from_name(name).expect(name);
            assert_eq!(cond, row.cond);
            assert_eq!(xmpp_to_sip(&cond, true, false), *full, "{name} full");
            assert_eq!(xmpp_to_sip(&cond, false, false), *bare, "{name} bare");
            // Never 503 for anything (RFC 7247 §7.1 on service-unavailable).
            assert_ne!(*full, 503);
            assert_ne!(*bare, 503);
        }
    }

    #[test]
    fn gone_with_a_new_address_is_301() {
        let gone = DefinedCondition::Gone { new_address: None };
        assert_eq!(xmpp_to_sip(&gone, true, true), 301);
        assert_eq!(xmpp_to_sip(&gone, false, true), 301);
        assert_eq!(xmpp_to_sip(&gone, true, false), 410);
        let gone = DefinedCondition::Gone {
            new_address: Some("xmpp:juliet@capulet.example".into()),
        };
        assert_eq!(xmpp_to_sip(&gone, true, false), 301);
        let redirect = DefinedCondition::Redirect {
            new_address: Some("xmpp:juliet@capulet.example".into()),
        };
        assert_eq!(xmpp_to_sip(&redirect, true, true), 302);
    }

    /// Table 3 as printed in RFC 7247 §7.2, written out independently.
    const RFC_TABLE_3: &[(u16, &str)] = &[
        (300, "redirect"),
        (301, "gone"),
        (302, "redirect"),
        (305, "redirect"),
        (380, "not-acceptable"),
        (400, "bad-request"),
        (401, "not-authorized"),
        (402, "bad-request"),
        (403, "forbidden"),
        (404, "item-not-found"),
        (405, "feature-not-implemented"),
        (406, "not-acceptable"),
        (407, "registration-required"),
        (408, "remote-server-timeout"),
        (410, "gone"),
        (413, "policy-violation"),
        (414, "policy-violation"),
        (415, "not-acceptable"),
        (416, "not-acceptable"),
        (420, "feature-not-implemented"),
        (421, "not-acceptable"),
        (423, "resource-constraint"),
        (430, "recipient-unavailable"),
        (439, "feature-not-implemented"),
        (440, "policy-violation"),
        (480, "recipient-unavailable"),
        (481, "item-not-found"),
        (482, "not-acceptable"),
        (483, "not-acceptable"),
        (484, "item-not-found"),
        (485, "item-not-found"),
        (486, "recipient-unavailable"),
        (487, "recipient-unavailable"),
        (488, "not-acceptable"),
        (489, "policy-violation"),
        (491, "unexpected-request"),
        (493, "bad-request"),
        (500, "internal-server-error"),
        (501, "feature-not-implemented"),
        (502, "remote-server-not-found"),
        (503, "internal-server-error"),
        (504, "remote-server-timeout"),
        (505, "not-acceptable"),
        (513, "policy-violation"),
        (600, "recipient-unavailable"),
        (603, "recipient-unavailable"),
        (604, "item-not-found"),
        (606, "not-acceptable"),
    ];

    #[test]
    fn table_3_every_row() {
        assert_eq!(SIP_TO_XMPP.len(), RFC_TABLE_3.len());
        for ((code, cond), (rfc_code, name)) in SIP_TO_XMPP.iter().zip(RFC_TABLE_3) {
            assert_eq!(code, rfc_code);
            assert_eq!(condition_name(cond), *name, "{code}");
            assert_eq!(condition_name(&sip_to_xmpp(*code)), *name, "{code}");
        }
        // Rows are sorted and unique.
        assert!(SIP_TO_XMPP.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn class_defaults() {
        for (code, name) in [
            (399, "redirect"),
            (409, "bad-request"),
            (422, "bad-request"),
            (499, "bad-request"),
            (580, "internal-server-error"),
            (607, "recipient-unavailable"),
            (699, "recipient-unavailable"),
            (200, "undefined-condition"),
            (180, "undefined-condition"),
            (0, "undefined-condition"),
            (700, "undefined-condition"),
        ] {
            assert_eq!(condition_name(&sip_to_xmpp(code)), name, "{code}");
        }
        // 503 is never service-unavailable.
        assert_eq!(sip_to_xmpp(503), DefinedCondition::InternalServerError);
    }

    #[test]
    fn error_types_follow_rfc6120() {
        use DefinedCondition as C;
        assert_eq!(error_type_for(&C::BadRequest), ErrorType::Modify);
        assert_eq!(error_type_for(&C::Forbidden), ErrorType::Auth);
        assert_eq!(error_type_for(&C::ItemNotFound), ErrorType::Cancel);
        assert_eq!(error_type_for(&C::RecipientUnavailable), ErrorType::Wait);
        assert_eq!(error_type_for(&C::RemoteServerTimeout), ErrorType::Wait);
        assert_eq!(
            error_type_for(&C::Gone {
                new_address: Some("x".into())
            }),
            ErrorType::Cancel
        );
        // Every row of Table 2 has a type and a name that parses back.
        for row in XMPP_TO_SIP {
            let _ = error_type_for(&row.cond);
            assert_eq!(
                condition_from_name(condition_name(&row.cond)).as_ref(),
                Some(&row.cond)
            );
        }
        assert_eq!(condition_from_name("payment-required"), None);
        assert_eq!(condition_from_name(""), None);
    }

    #[test]
    fn round_trip_through_both_tables_keeps_the_class() {
        // A SIP error mapped to XMPP and back stays an error of a sensible class.
        for (code, _) in SIP_TO_XMPP {
            let back = xmpp_to_sip(&sip_to_xmpp(*code), true, *code == 301);
            assert!((300..700).contains(&back), "{code} -> {back}");
            assert_ne!(back, 503);
        }
    }
}
