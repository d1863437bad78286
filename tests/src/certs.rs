//! Test certificates made with the `openssl` CLI (Debian `openssl`): self-signed ones, and
//! a test CA with end-entity certificates it signs.

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

/// A test certificate authority made with `openssl` (EC P-256, `CA:TRUE`, one day), to
/// sign end-entity certificates for servers that verify each other (mutual TLS).
#[derive(Debug, Clone)]
pub struct TestCa {
    /// The CA certificate (PEM): the trust anchor to configure.
    pub cert: PathBuf,
    key: PathBuf,
    dir: PathBuf,
}

fn openssl(args: &[&std::ffi::OsStr]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {:?}: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCa {
    /// A new CA named `name`, its files in `dir` (prefixed with `name`).
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let cert = dir.join(format!("{name}-ca.pem"));
        let key = dir.join(format!("{name}-ca-key.pem"));
        let subject = format!("/CN={name} test CA");
        openssl(&[
            "req".as_ref(),
            "-x509".as_ref(),
            "-newkey".as_ref(),
            "ec".as_ref(),
            "-pkeyopt".as_ref(),
            "ec_paramgen_curve:prime256v1".as_ref(),
            "-nodes".as_ref(),
            "-days".as_ref(),
            "1".as_ref(),
            "-subj".as_ref(),
            subject.as_ref(),
            "-addext".as_ref(),
            "basicConstraints=critical,CA:TRUE".as_ref(),
            "-addext".as_ref(),
            "keyUsage=critical,keyCertSign,cRLSign".as_ref(),
            "-keyout".as_ref(),
            key.as_os_str(),
            "-out".as_ref(),
            cert.as_os_str(),
        ]);
        TestCa {
            cert,
            key,
            dir: dir.to_path_buf(),
        }
    }

    /// An end-entity certificate named `name` signed by this CA, with `san` as its
    /// subjectAltName (e.g. `IP:127.0.0.1,DNS:localhost`) and no extended key usage (so
    /// good as a server's and a client's): (certificate, key) PEM files.
    pub fn leaf(&self, name: &str, san: &str) -> (PathBuf, PathBuf) {
        let cert = self.dir.join(format!("{name}.pem"));
        let key = self.dir.join(format!("{name}-key.pem"));
        let csr = self.dir.join(format!("{name}.csr"));
        let ext = self.dir.join(format!("{name}.ext"));
        let serial = self.dir.join(format!("{name}.srl"));
        std::fs::write(
            &ext,
            format!("subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\n"),
        )
        .expect("writing the extensions");
        let subject = format!("/CN={name}");
        openssl(&[
            "req".as_ref(),
            "-new".as_ref(),
            "-newkey".as_ref(),
            "ec".as_ref(),
            "-pkeyopt".as_ref(),
            "ec_paramgen_curve:prime256v1".as_ref(),
            "-nodes".as_ref(),
            "-subj".as_ref(),
            subject.as_ref(),
            "-keyout".as_ref(),
            key.as_os_str(),
            "-out".as_ref(),
            csr.as_os_str(),
        ]);
        openssl(&[
            "x509".as_ref(),
            "-req".as_ref(),
            "-in".as_ref(),
            csr.as_os_str(),
            "-CA".as_ref(),
            self.cert.as_os_str(),
            "-CAkey".as_ref(),
            self.key.as_os_str(),
            "-CAcreateserial".as_ref(),
            "-CAserial".as_ref(),
            serial.as_os_str(),
            "-days".as_ref(),
            "1".as_ref(),
            "-extfile".as_ref(),
            ext.as_os_str(),
            "-out".as_ref(),
            cert.as_os_str(),
        ]);
        (cert, key)
    }
}
