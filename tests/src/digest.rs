//! Digest credentials (RFC 3261 §22, RFC 2617 `qop=auth`, MD5) for the raw SIP requests of
//! the tests, computed here, apart from stox's own implementation, so that a test checks stox
//! against an independent reading of the RFC.

use md5::{Digest, Md5};

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A parameter of a challenge (`WWW-Authenticate` / `Proxy-Authenticate` value).
pub fn challenge_param(challenge: &str, name: &str) -> Option<String> {
    let key = format!("{name}=");
    let start = challenge.find(&key)? + key.len();
    let rest = &challenge[start..];
    Some(match rest.strip_prefix('"') {
        Some(q) => q.split('"').next()?.to_string(),
        None => rest.split([',', ' ']).next()?.to_string(),
    })
}

/// The `Authorization` / `Proxy-Authorization` value answering an MD5 `challenge` for
/// `method uri` as `user` with `password`.
pub fn md5_credentials(
    challenge: &str,
    method: &str,
    uri: &str,
    user: &str,
    password: &str,
) -> Option<String> {
    let realm = challenge_param(challenge, "realm")?;
    let nonce = challenge_param(challenge, "nonce")?;
    let (nc, cnonce) = ("00000001", "0a4f113b");
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    Some(format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\""
    ))
}

/// Whether an MD5 `Authorization` / `Proxy-Authorization` value (qop `auth` or none) carries
/// the right `response` for `method` and `password`, computed from its own parameters.
pub fn md5_response_ok(credentials: &str, method: &str, password: &str) -> bool {
    let p = |n: &str| challenge_param(credentials, n).unwrap_or_default();
    let ha1 = md5_hex(&format!("{}:{}:{password}", p("username"), p("realm")));
    let ha2 = md5_hex(&format!("{method}:{}", p("uri")));
    let want = if p("qop").is_empty() {
        md5_hex(&format!("{ha1}:{}:{ha2}", p("nonce")))
    } else {
        md5_hex(&format!(
            "{ha1}:{}:{}:{}:auth:{ha2}",
            p("nonce"),
            p("nc"),
            p("cnonce")
        ))
    };
    p("response").eq_ignore_ascii_case(&want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_example() {
        // RFC 2617 §3.5 (HTTP, same computation).
        let c = md5_credentials(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\"",
            "GET",
            "/dir/index.html",
            "Mufasa",
            "Circle Of Life",
        )
        .unwrap();
        assert!(
            c.contains("response=\"6629fae49393a05397450978507c4ef1\""),
            "{c}"
        );
    }

    #[test]
    fn md5_response_ok_checks_what_md5_credentials_wrote() {
        let c = md5_credentials(
            "Digest realm=\"r\", nonce=\"n\", qop=\"auth\"",
            "INVITE",
            "sip:bob@x",
            "alice3",
            "pw",
        )
        .unwrap();
        assert!(md5_response_ok(&c, "INVITE", "pw"));
        assert!(!md5_response_ok(&c, "INVITE", "PW"));
        assert!(!md5_response_ok(&c, "BYE", "pw"));
    }
}
