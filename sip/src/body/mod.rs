//! SIP message bodies (RFC 3862 CPIM, RFC 3994 isComposing, RFC 5438 IMDN, text charsets, HTML).
//!
//! Every parser here takes bytes straight from the network and returns a typed value or a
//! [`BodyError`]; none of them panics, whatever the input (each module has a property test
//! feeding it arbitrary bytes).
//!
//! * [`content_type`]: RFC 3261 §20.15 / RFC 2045 §5.1 `Content-Type` values.
//! * [`text`]: RFC 2046 §4.1.2 `charset` decoding of text bodies.
//! * [`html`]: `text/html` reduced to plain text.
//! * [`cpim`]: RFC 3862 `message/cpim`, with the RFC 5438 `imdn.` header fields.
//! * [`iscomposing`]: RFC 3994 `application/im-iscomposing+xml`.
//! * [`imdn`]: RFC 5438 `message/imdn+xml`.

pub mod content_type;
pub mod cpim;
pub mod html;
pub mod imdn;
pub mod iscomposing;
pub mod pidf;
pub mod text;
mod xml;

pub use content_type::ContentType;
pub use cpim::{CpimMessage, DispositionNotification};
pub use html::html_to_text;
pub use imdn::{DeliveryStatus, DisplayStatus, Imdn, Notification, ProcessingStatus};
pub use iscomposing::{ComposingState, IsComposing};
pub use text::decode_text;

/// Why a message body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// A `Content-Type` value is not `type "/" subtype *( ";" attribute "=" value )`
    /// (RFC 3261 §20.15, RFC 2045 §5.1). Carries the reason.
    #[error("invalid Content-Type: {0}")]
    InvalidContentType(String),

    /// The `charset` label is not one `encoding_rs` (the WHATWG Encoding Standard) knows.
    #[error("unknown charset {0:?}")]
    UnknownCharset(String),

    /// The bytes are not valid in the charset they are labelled with (for example invalid
    /// UTF-8 in a body labelled UTF-8). stox rejects them rather than guess.
    #[error("body is not valid {charset}")]
    InvalidEncoding {
        /// The charset the bytes were decoded as.
        charset: String,
    },

    /// A CPIM header section has no empty line after it (RFC 3862 §2: message headers,
    /// an empty line, then the encapsulated MIME object).
    #[error("message/cpim: no empty line after the {0} headers")]
    CpimMissingSeparator(&'static str),

    /// A CPIM message has no message headers at all (RFC 3862 §2.2 requires `From` and
    /// `To`): most likely a bare body sent with the wrong Content-Type.
    #[error("message/cpim: no message headers")]
    CpimNoHeaders,

    /// A CPIM header line is not `Name ":" value` with a token name (RFC 3862 §3.6).
    /// Carries the offending line (lossily decoded, at most 80 characters).
    #[error("message/cpim: invalid header line {0:?}")]
    CpimInvalidHeader(String),

    /// The XML is not well-formed (quick-xml's reason), or nests deeper than stox accepts.
    #[error("malformed XML: {0}")]
    Xml(String),

    /// The XML document's root element is not the one this body type defines.
    #[error("wrong root element: expected {expected}, found {found}")]
    WrongRoot {
        /// `{namespace}local-name` this body type requires.
        expected: &'static str,
        /// `{namespace}local-name` (or `local-name` when unqualified) that was found.
        found: String,
    },

    /// A mandatory element is absent (RFC 3994 `state`, RFC 5438 `message-id`, …).
    #[error("missing element <{0}>")]
    MissingElement(&'static str),

    /// An element holds a value its schema does not allow.
    #[error("invalid value {value:?} in <{element}>")]
    InvalidValue {
        /// Local name of the element.
        element: &'static str,
        /// The value found (trimmed).
        value: String,
    },
}
