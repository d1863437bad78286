//! HTTP Digest authentication as SIP uses it (RFC 3261 §22, RFC 7616, RFC 8760 for SHA-256),
//! server side: challenges, stateless nonces, parsing `Authorization` /
//! `Proxy-Authorization`, and checking a response against a stored `HA1`; and client side
//! ([`parse_challenge`], [`authorization`]): answering a provider's `401`/`407` for the
//! external accounts stox registers (issue 5).
//!
//! Passwords are never kept: a SIP user's credential is `HA1 = H(username ":" realm ":"
//! password)` for each algorithm stox offers ([`ha1`]), which is what the response is
//! computed from (RFC 7616 §3.4.2). A leaked `HA1` lets one authenticate to this realm only.
//!
//! Nonces are stateless ([`NonceKey`]): the issue time and an HMAC-SHA-256 over it and the
//! realm, so any stox process with the same key recognises them, and an old one is `stale`
//! (RFC 7616 §3.3: the client retries with the new nonce without asking its user). Replays
//! inside a nonce's lifetime are the caller's to bound (the nonce-count, `nc`).
//!
//! ```
//! use stox_sip::digest::{self, Algorithm, NonceKey};
//!
//! let key = NonceKey::new([7; 32]);
//! let nonce = key.issue(1_800_000_000, "sip.localhost");
//! let ha1 = digest::ha1(Algorithm::Sha256, "dave", "sip.localhost", "secret");
//! // What a UA sends back (computed here the way RFC 7616 §3.4.1 says):
//! let response = digest::expected_response(
//!     Algorithm::Sha256, &ha1, &nonce, "REGISTER", "sip:sip.localhost",
//!     Some(("00000001", "c1")),
//! );
//! let header = format!(
//!     "Digest username=\"dave\", realm=\"sip.localhost\", nonce=\"{nonce}\", \
//!      uri=\"sip:sip.localhost\", response=\"{response}\", algorithm=SHA-256, \
//!      qop=auth, nc=00000001, cnonce=\"c1\""
//! );
//! let creds = digest::parse_credentials(&header).unwrap();
//! assert!(digest::verify(&creds, "REGISTER", &ha1));
//! ```

use std::fmt::Write as _;

use md5::Digest as _;

/// A digest algorithm stox offers (RFC 8760 §2: SHA-256 first, MD5 for older UAs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5` (RFC 2617; the default when `algorithm` is absent).
    Md5,
    /// `SHA-256` (RFC 7616, RFC 8760).
    Sha256,
}

impl Algorithm {
    /// Every algorithm, in the order challenges offer them (RFC 8760 §2.4: the preferred
    /// first).
    pub const ALL: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Md5];

    /// The token in `algorithm=`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// The algorithm of an `algorithm=` token (case-insensitive); `None` for what stox does
    /// not support (`-sess` variants, SHA-512-256, unknown).
    pub fn parse(token: &str) -> Option<Algorithm> {
        let t = token.trim().trim_matches('"');
        if t.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if t.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// `H(data)` in lowercase hex (RFC 7616 §3.4.1).
    pub fn hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex(&md5::Md5::digest(data)),
            Algorithm::Sha256 => hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref()),
        }
    }
}

/// Equality that takes the same time wherever the first difference is (the lengths are not
/// secret: both are hex of a fixed-size hash).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `HA1 = H(username ":" realm ":" password)`: what stox stores instead of the password.
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    alg.hex(format!("{username}:{realm}:{password}").as_bytes())
}

/// The `response` a UA computes (RFC 7616 §3.4.1; `qop=auth` when `nc_cnonce` is given,
/// RFC 2069 compatibility otherwise).
pub fn expected_response(
    alg: Algorithm,
    ha1: &str,
    nonce: &str,
    method: &str,
    uri: &str,
    nc_cnonce: Option<(&str, &str)>,
) -> String {
    let ha2 = alg.hex(format!("{method}:{uri}").as_bytes());
    match nc_cnonce {
        Some((nc, cnonce)) => alg.hex(format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}").as_bytes()),
        None => alg.hex(format!("{ha1}:{nonce}:{ha2}").as_bytes()),
    }
}

/// Why an `Authorization` header was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// Not the `Digest` scheme.
    #[error("not a Digest credential")]
    NotDigest,
    /// A required parameter is missing (RFC 7616 §3.4).
    #[error("missing {0}")]
    Missing(&'static str),
    /// `algorithm=` names something stox does not offer.
    #[error("unsupported algorithm {0:?}")]
    Algorithm(String),
    /// `qop=` other than `auth`, or `qop` without `nc`/`cnonce`.
    #[error("unsupported qop {0:?}")]
    Qop(String),
    /// The syntax is broken (unterminated quote, no `=`).
    #[error("malformed credentials")]
    Malformed,
}

/// The parameters of a Digest `Authorization` / `Proxy-Authorization` (RFC 7616 §3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `username`.
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `uri` (the digest-uri; for SIP the Request-URI).
    pub uri: String,
    /// `response`, lowercase hex.
    pub response: String,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Algorithm,
    /// `qop=auth` with its `nc` and `cnonce`; `None` for RFC 2069 style.
    pub qop_auth: Option<(String, String)>,
    /// `opaque`, echoed from the challenge.
    pub opaque: Option<String>,
}

/// Splits `k=v, k="v, w"` into pairs (RFC 7235 §2.1 auth-param list).
fn params(s: &str) -> Result<Vec<(String, String)>, DigestError> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or(DigestError::Malformed)?;
        let key = rest[..eq].trim().trim_start_matches(',').trim();
        if key.is_empty() || key.contains([' ', '"']) {
            return Err(DigestError::Malformed);
        }
        let after = rest[eq + 1..].trim_start();
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end.ok_or(DigestError::Malformed)?;
            (value, &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        out.push((key.to_ascii_lowercase(), value));
        rest = tail.trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return Err(DigestError::Malformed);
        }
    }
    Ok(out)
}

/// Parses a Digest `Authorization` / `Proxy-Authorization` header value.
pub fn parse_credentials(value: &str) -> Result<Credentials, DigestError> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(DigestError::NotDigest);
    }
    let ps = params(rest)?;
    let get = |k: &str| ps.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let algorithm = match get("algorithm") {
        None => Algorithm::Md5,
        Some(a) => Algorithm::parse(&a).ok_or(DigestError::Algorithm(a))?,
    };
    let qop_auth = match get("qop") {
        None => None,
        Some(q) if q.eq_ignore_ascii_case("auth") => Some((
            get("nc").ok_or(DigestError::Missing("nc"))?,
            get("cnonce").ok_or(DigestError::Missing("cnonce"))?,
        )),
        Some(q) => return Err(DigestError::Qop(q)),
    };
    Ok(Credentials {
        username: get("username").ok_or(DigestError::Missing("username"))?,
        realm: get("realm").ok_or(DigestError::Missing("realm"))?,
        nonce: get("nonce").ok_or(DigestError::Missing("nonce"))?,
        uri: get("uri").ok_or(DigestError::Missing("uri"))?,
        response: get("response")
            .ok_or(DigestError::Missing("response"))?
            .to_ascii_lowercase(),
        algorithm,
        qop_auth,
        opaque: get("opaque"),
    })
}

/// A Digest challenge from a `WWW-Authenticate` / `Proxy-Authenticate` header (RFC 7616
/// §3.3), as a client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Algorithm,
    /// The server offers `qop=auth` (the client then sends `qop=auth`, `nc` and `cnonce`);
    /// `false` for an RFC 2069 style challenge without `qop`.
    pub qop_auth: bool,
    /// `opaque`, to echo.
    pub opaque: Option<String>,
    /// `stale=true`: the nonce expired, the credentials were right (RFC 7616 §3.3).
    pub stale: bool,
}

/// Parses a Digest `WWW-Authenticate` / `Proxy-Authenticate` value. A challenge whose `qop`
/// list lacks `auth` (only `auth-int`) or whose algorithm stox does not know is refused.
pub fn parse_challenge(value: &str) -> Result<Challenge, DigestError> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(DigestError::NotDigest);
    }
    let ps = params(rest)?;
    let get = |k: &str| ps.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let algorithm = match get("algorithm") {
        None => Algorithm::Md5,
        Some(a) => Algorithm::parse(&a).ok_or(DigestError::Algorithm(a))?,
    };
    let qop_auth = match get("qop") {
        None => false,
        Some(q) if q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth")) => true,
        Some(q) => return Err(DigestError::Qop(q)),
    };
    Ok(Challenge {
        realm: get("realm").ok_or(DigestError::Missing("realm"))?,
        nonce: get("nonce").ok_or(DigestError::Missing("nonce"))?,
        algorithm,
        qop_auth,
        opaque: get("opaque"),
        stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
    })
}

/// Quotes a value for an auth-param (RFC 7230 §3.2.6 quoted-string).
fn quoted(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// The `Authorization` / `Proxy-Authorization` value a client sends in answer to `ch`
/// (RFC 7616 §3.4): `uri` is the Request-URI, `nc` the count of requests sent with this
/// nonce (from 1), `cnonce` a fresh client nonce (used only when the server offers
/// `qop=auth`).
pub fn authorization(
    ch: &Challenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> String {
    let ha1 = ha1(ch.algorithm, username, &ch.realm, password);
    let nc = format!("{nc:08x}");
    let qop = ch.qop_auth.then_some((nc.as_str(), cnonce));
    let response = expected_response(ch.algorithm, &ha1, &ch.nonce, method, uri, qop);
    let mut v = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, response=\"{response}\", algorithm={}",
        quoted(username),
        quoted(&ch.realm),
        quoted(&ch.nonce),
        quoted(uri),
        ch.algorithm.name(),
    );
    if let Some(o) = &ch.opaque {
        v.push_str(&format!(", opaque={}", quoted(o)));
    }
    if ch.qop_auth {
        v.push_str(&format!(", qop=auth, nc={nc}, cnonce={}", quoted(cnonce)));
    }
    v
}

/// Whether `creds` carries the right response for `method` given the stored `ha1` of its
/// algorithm. Compares in constant time.
pub fn verify(creds: &Credentials, method: &str, ha1: &str) -> bool {
    let want = expected_response(
        creds.algorithm,
        ha1,
        &creds.nonce,
        method,
        &creds.uri,
        creds
            .qop_auth
            .as_ref()
            .map(|(nc, cn)| (nc.as_str(), cn.as_str())),
    );
    same(want.as_bytes(), creds.response.as_bytes())
}

/// A `WWW-Authenticate` / `Proxy-Authenticate` value (RFC 7616 §3.3, RFC 3261 §22.4).
pub fn challenge(realm: &str, nonce: &str, alg: Algorithm, stale: bool) -> String {
    let mut v = format!(
        "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"",
        realm.replace(['"', '\\'], ""),
        alg.name()
    );
    if stale {
        v.push_str(", stale=true");
    }
    v
}

/// What [`NonceKey::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Issued by this key for this realm, within its lifetime.
    Fresh,
    /// Issued by this key, but too old (or from the future): challenge again with
    /// `stale=true`.
    Stale,
    /// Not one of ours.
    Foreign,
}

/// Issues and recognises stateless nonces: `<issue time, hex>.<HMAC-SHA-256, hex>`.
pub struct NonceKey {
    key: ring::hmac::Key,
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey(..)")
    }
}

impl NonceKey {
    /// A key from 32 secret bytes (random per process, or shared by a cluster).
    pub fn new(secret: [u8; 32]) -> NonceKey {
        NonceKey {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret),
        }
    }

    fn mac(&self, issued: u64, realm: &str) -> String {
        let tag = ring::hmac::sign(&self.key, format!("{issued:x}:{realm}").as_bytes());
        hex(&tag.as_ref()[..16])
    }

    /// A nonce for `realm`, issued at `now_unix`.
    pub fn issue(&self, now_unix: u64, realm: &str) -> String {
        format!("{now_unix:x}.{}", self.mac(now_unix, realm))
    }

    /// Checks a nonce of `realm` at `now_unix`, valid for `lifetime_secs`.
    pub fn check(&self, nonce: &str, now_unix: u64, realm: &str, lifetime_secs: u64) -> NonceCheck {
        let Some((ts, mac)) = nonce.split_once('.') else {
            return NonceCheck::Foreign;
        };
        let Ok(issued) = u64::from_str_radix(ts, 16) else {
            return NonceCheck::Foreign;
        };
        let want = self.mac(issued, realm);
        if !same(want.as_bytes(), mac.as_bytes()) {
            return NonceCheck::Foreign;
        }
        if issued > now_unix + 5 || now_unix - issued.min(now_unix) > lifetime_secs {
            NonceCheck::Stale
        } else {
            NonceCheck::Fresh
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_md5_example() {
        // RFC 2617 §3.5 (HTTP, but the same computation): Mufasa / Circle Of Life.
        let ha1 = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        let r = expected_response(
            Algorithm::Md5,
            &ha1,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "GET",
            "/dir/index.html",
            Some(("00000001", "0a4f113b")),
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn rfc7616_sha256_example() {
        // RFC 7616 §3.9.1: SHA-256, qop=auth.
        let ha1 = ha1(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        let r = expected_response(
            Algorithm::Sha256,
            &ha1,
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            "GET",
            "/dir/index.html",
            Some(("00000001", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")),
        );
        assert_eq!(
            r,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        // And the MD5 variant of the same example.
        let ha1 = super::ha1(
            Algorithm::Md5,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        let r = expected_response(
            Algorithm::Md5,
            &ha1,
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            "GET",
            "/dir/index.html",
            Some(("00000001", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")),
        );
        assert_eq!(r, "8ca523f5e9506fed4657c9700eebdbec");
    }

    #[test]
    fn parses_what_sip_uas_send() {
        // baresip / SIPp style, quoted and unquoted values, odd spacing and case.
        let c = parse_credentials(
            "Digest username=\"dave\",realm=\"sip.localhost\", nonce=\"n1\", \
             uri=\"sip:sip.localhost\", response=\"ABCDEF\", algorithm=MD5, \
             cnonce=\"x,y\", qop=auth, nc=00000001",
        )
        .expect("parses");
        assert_eq!(c.username, "dave");
        assert_eq!(c.realm, "sip.localhost");
        assert_eq!(c.uri, "sip:sip.localhost");
        assert_eq!(c.response, "abcdef");
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert_eq!(
            c.qop_auth,
            Some(("00000001".to_string(), "x,y".to_string()))
        );
        // RFC 2069 style, no algorithm: MD5.
        let c = parse_credentials(
            "digest username=\"a\\\"b\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"00\"",
        )
        .expect("parses");
        assert_eq!(c.username, "a\"b");
        assert_eq!((c.algorithm, c.qop_auth), (Algorithm::Md5, None));
    }

    #[test]
    fn refuses_what_it_cannot_check() {
        for (v, e) in [
            ("Basic dXNlcjpwYXNz", DigestError::NotDigest),
            (
                "Digest realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\"",
                DigestError::Missing("username"),
            ),
            (
                "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\", algorithm=SHA-512-256",
                DigestError::Algorithm("SHA-512-256".into()),
            ),
            (
                "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\", qop=auth-int, nc=1, cnonce=\"c\"",
                DigestError::Qop("auth-int".into()),
            ),
            (
                "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\", qop=auth",
                DigestError::Missing("nc"),
            ),
            ("Digest username=\"u", DigestError::Malformed),
            ("Digest username", DigestError::Malformed),
        ] {
            assert_eq!(parse_credentials(v), Err(e), "{v}");
        }
    }

    #[test]
    fn verify_right_and_wrong() {
        let key = NonceKey::new([1; 32]);
        let nonce = key.issue(1000, "sip.localhost");
        for alg in Algorithm::ALL {
            let good = ha1(alg, "dave", "sip.localhost", "pw");
            let bad = ha1(alg, "dave", "sip.localhost", "PW");
            for qop in [Some(("00000001", "abc")), None] {
                let response =
                    expected_response(alg, &good, &nonce, "REGISTER", "sip:sip.localhost", qop);
                let creds = Credentials {
                    username: "dave".into(),
                    realm: "sip.localhost".into(),
                    nonce: nonce.clone(),
                    uri: "sip:sip.localhost".into(),
                    response,
                    algorithm: alg,
                    qop_auth: qop.map(|(a, b)| (a.into(), b.into())),
                    opaque: None,
                };
                assert!(verify(&creds, "REGISTER", &good), "{alg:?} {qop:?}");
                assert!(!verify(&creds, "REGISTER", &bad));
                assert!(!verify(&creds, "INVITE", &good), "the method is covered");
                let mut other_uri = creds.clone();
                other_uri.uri = "sip:elsewhere".into();
                assert!(!verify(&other_uri, "REGISTER", &good));
            }
        }
    }

    #[test]
    fn nonces_are_recognised_and_go_stale() {
        let key = NonceKey::new([9; 32]);
        let n = key.issue(1000, "sip.localhost");
        assert_eq!(key.check(&n, 1000, "sip.localhost", 300), NonceCheck::Fresh);
        assert_eq!(key.check(&n, 1300, "sip.localhost", 300), NonceCheck::Fresh);
        assert_eq!(key.check(&n, 1301, "sip.localhost", 300), NonceCheck::Stale);
        assert_eq!(key.check(&n, 900, "sip.localhost", 300), NonceCheck::Stale);
        assert_eq!(key.check(&n, 1000, "other", 300), NonceCheck::Foreign);
        let other = NonceKey::new([8; 32]);
        assert_eq!(
            other.check(&n, 1000, "sip.localhost", 300),
            NonceCheck::Foreign
        );
        for junk in ["", ".", "zz.00", "3e8.", "3e8.0000"] {
            assert_eq!(
                key.check(junk, 1000, "sip.localhost", 300),
                NonceCheck::Foreign
            );
        }
        let c = challenge("sip.localhost", &n, Algorithm::Sha256, true);
        assert_eq!(
            c,
            format!("Digest realm=\"sip.localhost\", nonce=\"{n}\", algorithm=SHA-256, qop=\"auth\", stale=true")
        );
    }

    #[test]
    fn rfc2617_client_answers_its_challenge() {
        // RFC 2617 §3.5: the server's challenge and the client's answer.
        let ch = parse_challenge(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .expect("parses");
        assert_eq!(
            (ch.algorithm, ch.qop_auth, ch.stale),
            (Algorithm::Md5, true, false)
        );
        let v = authorization(
            &ch,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            1,
            "0a4f113b",
        );
        let c = parse_credentials(&v).expect("our header parses");
        assert_eq!(c.response, "6629fae49393a05397450978507c4ef1");
        assert_eq!(c.qop_auth, Some(("00000001".into(), "0a4f113b".into())));
        assert_eq!(
            c.opaque.as_deref(),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
        assert_eq!(
            (c.username.as_str(), c.uri.as_str()),
            ("Mufasa", "/dir/index.html")
        );
    }

    #[test]
    fn rfc7616_client_answers_sha256() {
        // RFC 7616 §3.9.1.
        let ch = parse_challenge(
            "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=SHA-256, \
             nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
        )
        .expect("parses");
        assert_eq!(ch.algorithm, Algorithm::Sha256);
        let v = authorization(
            &ch,
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            1,
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        );
        let c = parse_credentials(&v).expect("parses");
        assert_eq!(
            c.response,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        assert_eq!(c.algorithm, Algorithm::Sha256);
    }

    #[test]
    fn client_and_server_agree() {
        // stox's own challenge answered by stox's client: the server accepts, in both
        // algorithms, and a wrong password is refused; a quote in the user name survives.
        let key = NonceKey::new([3; 32]);
        let nonce = key.issue(1000, "sip2.localhost");
        for alg in Algorithm::ALL {
            let ch =
                parse_challenge(&challenge("sip2.localhost", &nonce, alg, true)).expect("parses");
            assert!(ch.stale);
            let v = authorization(
                &ch,
                "al\"ice",
                "pw",
                "REGISTER",
                "sip:sip2.localhost",
                7,
                "c",
            );
            let c = parse_credentials(&v).expect("parses");
            assert_eq!(c.username, "al\"ice");
            assert_eq!(c.qop_auth, Some(("00000007".into(), "c".into())));
            assert!(verify(
                &c,
                "REGISTER",
                &ha1(alg, "al\"ice", "sip2.localhost", "pw")
            ));
            assert!(!verify(
                &c,
                "REGISTER",
                &ha1(alg, "al\"ice", "sip2.localhost", "PW")
            ));
        }
        // RFC 2069 style (no qop): no nc/cnonce sent.
        let ch = parse_challenge("Digest realm=\"r\", nonce=\"n\"").expect("parses");
        let v = authorization(&ch, "u", "p", "MESSAGE", "sip:x@r", 1, "c");
        assert!(!v.contains("qop") && !v.contains("cnonce"), "{v}");
        let c = parse_credentials(&v).expect("parses");
        assert!(verify(&c, "MESSAGE", &ha1(Algorithm::Md5, "u", "r", "p")));
        // What stox cannot answer.
        assert_eq!(
            parse_challenge("Basic realm=\"r\""),
            Err(DigestError::NotDigest)
        );
        assert_eq!(
            parse_challenge("Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\""),
            Err(DigestError::Qop("auth-int".into()))
        );
        assert_eq!(
            parse_challenge("Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256"),
            Err(DigestError::Algorithm("SHA-512-256".into()))
        );
        assert_eq!(
            parse_challenge("Digest nonce=\"n\""),
            Err(DigestError::Missing("realm"))
        );
    }
}
