//! The embedded token issuer: a P-256 signing key kept in `{data_dir}/identity/` (mode 0600),
//! created on first use, that signs the tokens `upspool token` prints and whose public half
//! the server trusts. External issuers (Entra ID, any OIDC provider) are configured instead of
//! or beside it; see `docs/identity.md`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use upspool_http::jwt::{IssuerSettings, KeySource, TokenVerifier};

use crate::config::{Config, IdentityConfig, JwksLocation};

/// The `iss` of embedded tokens. Fixed, so that tokens do not depend on the public URL.
pub const EMBEDDED_ISSUER: &str = "upspool:embedded";
/// The `aud` of embedded tokens.
pub const EMBEDDED_AUDIENCE: &str = "api://upspool";

const KEY_FILE: &str = "signing-key.pem";

/// The embedded issuer's signing key.
pub struct SigningKey {
    pub kid: String,
    encoding: EncodingKey,
    pub jwk: Jwk,
}

pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("identity").join(KEY_FILE)
}

/// Reads the data directory's signing key, creating it first if there is none. Two processes
/// creating it at once agree on one key: the file is published with a hard link, which fails
/// if the other was first.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<SigningKey> {
    let path = key_path(data_dir);
    if !path.exists() {
        crate::serve::create_private_dir(path.parent().unwrap_or(data_dir))?;
        let pem = rcgen::KeyPair::generate()
            .context("cannot generate a signing key")?
            .serialize_pem();
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        crate::tls::write_file(&tmp, pem.as_bytes(), 0o600)?;
        match std::fs::hard_link(&tmp, &path) {
            Ok(()) => {
                tracing::info!(key = %path.display(), "created the embedded issuer's signing key")
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e).with_context(|| format!("cannot write {}", path.display()));
            }
        }
        let _ = std::fs::remove_file(&tmp);
    }
    let pem = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the signing key {}", path.display()))?;
    parse(&pem).with_context(|| format!("the signing key {} is unusable", path.display()))
}

fn parse(pem: &str) -> anyhow::Result<SigningKey> {
    let pair = rcgen::KeyPair::from_pem(pem)?;
    let raw = pair.public_key_raw();
    anyhow::ensure!(
        raw.len() == 65 && raw[0] == 4,
        "not an uncompressed P-256 public key"
    );
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let kid = b64(&upspool_domain::token::hash(&b64(raw))[..12]);
    let jwk = Jwk {
        common: CommonParameters {
            key_id: Some(kid.clone()),
            ..CommonParameters::default()
        },
        algorithm: AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
            key_type: EllipticCurveKeyType::EC,
            curve: EllipticCurve::P256,
            x: b64(&raw[1..33]),
            y: b64(&raw[33..65]),
        }),
    };
    Ok(SigningKey {
        kid,
        encoding: EncodingKey::from_ec_pem(pem.as_bytes())?,
        jwk,
    })
}

/// Who a minted token is for.
pub enum Subject {
    User {
        upn: String,
        scopes: Vec<String>,
        groups: Vec<String>,
    },
    App {
        name: String,
        roles: Vec<String>,
    },
}

impl SigningKey {
    /// A token from the embedded issuer, valid from now for `ttl`.
    pub fn mint(&self, subject: &Subject, ttl: Duration) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({
            "iss": EMBEDDED_ISSUER,
            "aud": EMBEDDED_AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2)),
        });
        let extra: Value = match subject {
            Subject::User {
                upn,
                scopes,
                groups,
            } => json!({
                "sub": upn, "upn": upn, "preferred_username": upn,
                "scp": scopes.join(" "), "groups": groups,
            }),
            Subject::App { name, roles } => json!({
                "sub": name, "azp": name, "app_displayname": name, "roles": roles, "idtyp": "app",
            }),
        };
        if let (Value::Object(c), Value::Object(e)) = (&mut claims, extra) {
            c.extend(e);
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, &claims, &self.encoding)?)
    }
}

/// The verifier for `serve`: the embedded issuer (unless disabled) and the external one.
pub fn verifier(config: &Config, data_dir: &Path) -> anyhow::Result<TokenVerifier> {
    let IdentityConfig {
        embedded,
        external,
        admin_group,
    } = &config.identity;
    let mut issuers = Vec::new();
    if *embedded {
        let key = load_or_create(data_dir)?;
        issuers.push(IssuerSettings {
            issuer: EMBEDDED_ISSUER.into(),
            audiences: vec![EMBEDDED_AUDIENCE.into()],
            tenant: None,
            keys: KeySource::Static(vec![key.jwk]),
        });
    }
    if let Some(ext) = external {
        issuers.push(IssuerSettings {
            issuer: ext.issuer.clone(),
            audiences: ext.audiences.clone(),
            tenant: ext.tenant.clone(),
            keys: match &ext.jwks {
                JwksLocation::File(p) => KeySource::File(p.clone()),
                JwksLocation::Url(u) => KeySource::Url(u.clone()),
            },
        });
        tracing::info!(issuer = %ext.issuer, "external token issuer trusted");
    }
    Ok(TokenVerifier::new(issuers, admin_group.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_once_private_and_verifies_its_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(a.kid, b.kid);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(key_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let token = a
            .mint(
                &Subject::App {
                    name: "x".into(),
                    roles: vec!["PrintJob.Read.All".into()],
                },
                Duration::from_secs(60),
            )
            .unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(&b.jwk).unwrap();
        let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
        v.set_audience(&[EMBEDDED_AUDIENCE]);
        v.set_issuer(&[EMBEDDED_ISSUER]);
        jsonwebtoken::decode::<Value>(&token, &key, &v).unwrap();
    }
}
