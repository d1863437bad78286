//! SIP message bodies (RFC 3862 CPIM, RFC 3994 isComposing, RFC 5438 IMDN, text charsets, HTML).
