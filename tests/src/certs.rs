//! Test certificates: self-signed ones made with the `openssl` CLI (Debian `openssl`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A self-signed certificate for 127.0.0.1 and localhost (EC P-256, PKCS#8 key), not a CA:
/// each side trusts this very certificate.
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    make(dir, "cert", "127.0.0.1", "IP:127.0.0.1,DNS:localhost")
}

/// A self-signed certificate whose subjectAltName holds only `sans` (e.g.
/// `["DNS:voip.test"]` or `["IP:127.0.0.1"]`), its subject CN the first of them, written as
/// `NAME.pem` and `NAME-key.pem` in `dir`. Like [`self_signed`], an end-entity
/// certificate that the other side trusts as is.
pub fn self_signed_for(dir: &Path, name: &str, sans: &[&str]) -> (PathBuf, PathBuf) {
    let cn = sans
        .first()
        .and_then(|s| s.split_once(':'))
        .map_or(name, |(_, v)| v);
    make(dir, name, cn, &sans.join(","))
}

/// `cert` then `key` in one PEM file `NAME-bundle.pem` next to `cert`: what baresip's
/// `sip_certificate` wants.
pub fn bundle(cert: &Path, key: &Path) -> PathBuf {
    let stem = cert
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "cert".into());
    let out = cert.with_file_name(format!("{stem}-bundle.pem"));
    let pem = [
        std::fs::read(cert).expect("certificate"),
        std::fs::read(key).expect("key"),
    ]
    .concat();
    std::fs::write(&out, pem).expect("writing the bundle");
    out
}

fn make(dir: &Path, name: &str, cn: &str, san: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = if name == "cert" {
        (dir.join("cert.pem"), dir.join("key.pem"))
    } else {
        (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}-key.pem")),
        )
    };
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .arg("-subj")
        .arg(format!("/CN={cn}"))
        .arg("-addext")
        .arg(format!("subjectAltName={san}"))
        // An end-entity certificate (webpki refuses a CA certificate as a server's).
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}
