//! HTTPS certificates: the operator's PEM files, or a self-signed certificate for
//! localhost/127.0.0.1/::1 kept in `{data_dir}/tls` and reused across starts.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use axum_server::tls_rustls::RustlsConfig;

use crate::config::TlsIdentity;
use crate::serve::create_private_dir;

/// Names the self-signed certificate is valid for.
pub const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The server configuration and what it was made from.
pub struct LoadedTls {
    pub config: RustlsConfig,
    pub cert_path: PathBuf,
    /// Whether a new self-signed certificate was written on this start.
    pub generated: bool,
}

/// rustls needs one process-wide crypto provider. axum-server enables aws-lc-rs, while other
/// crates in the build (reqwest in tests) enable ring too, and with both present rustls cannot
/// choose on its own, so the binary installs aws-lc-rs explicitly before any TLS set-up.
pub fn install_crypto_provider() {
    // Err only means a provider is installed already, which is fine.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

pub async fn load(identity: &TlsIdentity, data_dir: &Path) -> anyhow::Result<LoadedTls> {
    install_crypto_provider();
    match identity {
        TlsIdentity::Files { cert, key } => {
            let config = RustlsConfig::from_pem_file(cert, key)
                .await
                .with_context(|| {
                    format!(
                        "cannot load the TLS certificate {} with the key {}",
                        cert.display(),
                        key.display()
                    )
                })?;
            Ok(LoadedTls {
                config,
                cert_path: cert.clone(),
                generated: false,
            })
        }
        TlsIdentity::SelfSigned => self_signed(&data_dir.join("tls")).await,
    }
}

async fn self_signed(dir: &Path) -> anyhow::Result<LoadedTls> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.exists() || key_path.exists() {
        match reuse(&cert_path, &key_path).await {
            Ok(config) => {
                return Ok(LoadedTls {
                    config,
                    cert_path,
                    generated: false,
                })
            }
            Err(e) => tracing::warn!(
                dir = %dir.display(),
                error = format!("{e:#}"),
                "the stored self-signed certificate is unusable; generating a new one"
            ),
        }
    }
    create_private_dir(dir)?;
    let (cert_pem, key_pem) = generate()?;
    write_file(&key_path, key_pem.as_bytes(), 0o600)?;
    write_file(&cert_path, cert_pem.as_bytes(), 0o644)?;
    let config = RustlsConfig::from_pem(cert_pem.into_bytes(), key_pem.into_bytes())
        .await
        .context("cannot use the generated self-signed certificate")?;
    Ok(LoadedTls {
        config,
        cert_path,
        generated: true,
    })
}

async fn reuse(cert_path: &Path, key_path: &Path) -> anyhow::Result<RustlsConfig> {
    let cert =
        std::fs::read(cert_path).with_context(|| format!("reading {}", cert_path.display()))?;
    let key = std::fs::read(key_path).with_context(|| format!("reading {}", key_path.display()))?;
    Ok(RustlsConfig::from_pem(cert, key).await?)
}

/// A new self-signed certificate and its private key, both PEM.
fn generate() -> anyhow::Result<(String, String)> {
    let names: Vec<String> = SELF_SIGNED_NAMES.iter().map(|s| s.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "upspool self-signed certificate");
    let key = rcgen::KeyPair::generate()?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| anyhow!("cannot generate a self-signed certificate: {e}"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes a file whole (through a temporary file and a rename) with the given unix mode.
pub(crate) fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension("pem.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let write = || -> std::io::Result<()> {
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn generates_once_then_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let first = load(&TlsIdentity::SelfSigned, dir.path()).await.unwrap();
        assert!(first.generated);
        assert_eq!(first.cert_path, dir.path().join("tls/cert.pem"));
        let cert = std::fs::read(&first.cert_path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("tls/key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let second = load(&TlsIdentity::SelfSigned, dir.path()).await.unwrap();
        assert!(!second.generated);
        assert_eq!(std::fs::read(&second.cert_path).unwrap(), cert);
    }

    #[tokio::test]
    async fn regenerates_an_unreadable_pair() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tls")).unwrap();
        std::fs::write(dir.path().join("tls/cert.pem"), "garbage").unwrap();
        let loaded = load(&TlsIdentity::SelfSigned, dir.path()).await.unwrap();
        assert!(loaded.generated);
        assert_ne!(std::fs::read(&loaded.cert_path).unwrap(), b"garbage");
        assert!(dir.path().join("tls/key.pem").exists());
    }

    #[tokio::test]
    async fn bad_files_name_their_paths() {
        let dir = tempfile::tempdir().unwrap();
        let identity = TlsIdentity::Files {
            cert: dir.path().join("missing-cert.pem"),
            key: dir.path().join("missing-key.pem"),
        };
        let e = format!("{:#}", load(&identity, dir.path()).await.err().unwrap());
        assert!(
            e.contains("missing-cert.pem") && e.contains("missing-key.pem"),
            "{e}"
        );
    }
}
