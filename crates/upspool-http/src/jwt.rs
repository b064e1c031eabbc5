//! Bearer token validation: JWTs signed by a configured issuer (the embedded one, an Entra ID
//! tenant, any OIDC provider), checked with `jsonwebtoken` and turned into a [`Principal`].
//!
//! Only asymmetric keys from the issuer's JWKS are used, and each key only with its own
//! algorithm (RSA: RS256/384/512, EC P-256: ES256, P-384: ES384), so `alg: none`, HMAC tokens
//! "signed" with a public key and other algorithm confusions fail. A JWKS from a URL or file is
//! cached and read again when a token names an unknown `kid` (at most every
//! [`REFRESH_INTERVAL`]), which is how issuers rotate keys.
//!
//! Error messages say what is wrong with a token, never the token itself.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};
use upspool_domain::model::UserIdentity;
use upspool_domain::principal::Principal;

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECONDS: u64 = 60;
/// Shortest time between two reads of a JWKS for unknown `kid`s, so that tokens with made-up
/// key ids cannot make upspool hammer the issuer.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// Where an issuer's public keys come from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// Fixed keys (the embedded issuer's own).
    Static(Vec<Jwk>),
    /// A JWKS document on disk, read again on unknown `kid`s.
    File(PathBuf),
    /// A JWKS URL (an OIDC provider's `jwks_uri`), fetched again on unknown `kid`s.
    Url(String),
}

/// One trusted issuer.
#[derive(Clone, Debug)]
pub struct IssuerSettings {
    /// The exact `iss` value.
    pub issuer: String,
    /// Accepted `aud` values (any one must match).
    pub audiences: Vec<String>,
    /// When set, the `tid` claim must equal it.
    pub tenant: Option<String>,
    pub keys: KeySource,
}

struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

struct Issuer {
    settings: IssuerSettings,
    keys: RwLock<Vec<Key>>,
    /// When the keys were last loaded; `None` before the first load.
    loaded: Mutex<Option<Instant>>,
}

/// Validates bearer tokens against the configured issuers.
pub struct TokenVerifier {
    issuers: Vec<Issuer>,
    admin_group: Option<String>,
    http: reqwest::Client,
}

/// The claims upspool reads beyond those `jsonwebtoken` validates.
#[derive(Deserialize)]
struct Claims {
    iss: String,
    tid: Option<String>,
    scp: Option<String>,
    roles: Option<Vec<String>>,
    groups: Option<Vec<String>>,
    oid: Option<String>,
    upn: Option<String>,
    preferred_username: Option<String>,
    name: Option<String>,
    sub: Option<String>,
    azp: Option<String>,
    appid: Option<String>,
    app_displayname: Option<String>,
}

/// Just the issuer, read before the signature is checked to pick the issuer's keys.
#[derive(Deserialize)]
struct Unverified {
    iss: Option<String>,
}

/// The algorithm a JWK may be used with, or `None` for keys upspool never trusts (HMAC
/// secrets, unsupported curves).
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => match jwk.common.key_algorithm {
            None | Some(KeyAlgorithm::RS256) => Some(Algorithm::RS256),
            Some(KeyAlgorithm::RS384) => Some(Algorithm::RS384),
            Some(KeyAlgorithm::RS512) => Some(Algorithm::RS512),
            Some(_) => None,
        },
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        _ => None,
    }
}

/// The usable keys of a JWKS document; entries upspool cannot use are skipped.
pub fn parse_jwks(text: &str) -> Result<Vec<Jwk>, String> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_str(text).map_err(|e| format!("not a JWKS document: {e}"))?;
    Ok(set
        .keys
        .into_iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
        .filter(|k| algorithm_of(k).is_some())
        .collect())
}

fn to_keys(jwks: &[Jwk]) -> Vec<Key> {
    jwks.iter()
        .filter_map(|jwk| {
            Some(Key {
                kid: jwk.common.key_id.clone(),
                alg: algorithm_of(jwk)?,
                key: DecodingKey::from_jwk(jwk).ok()?,
            })
        })
        .collect()
}

impl TokenVerifier {
    /// `admin_group`: members of this group (by object id, in the `groups` claim) are printer
    /// administrators.
    pub fn new(issuers: Vec<IssuerSettings>, admin_group: Option<String>) -> Self {
        TokenVerifier {
            issuers: issuers
                .into_iter()
                .map(|settings| Issuer {
                    keys: RwLock::new(match &settings.keys {
                        KeySource::Static(jwks) => to_keys(jwks),
                        _ => Vec::new(),
                    }),
                    loaded: Mutex::new(None),
                    settings,
                })
                .collect(),
            admin_group,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }

    /// The principal a valid token stands for, or why the token is refused.
    pub async fn verify(&self, token: &str) -> Result<Principal, String> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| "The bearer token is not a well-formed signed JWT.".to_string())?;
        let issuer = self.issuer_of(token)?;
        let key = issuer
            .key_for(header.kid.as_deref(), header.alg, &self.http)
            .await?;
        let mut validation = Validation::new(key.alg);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&issuer.settings.issuer]);
        validation.set_audience(issuer.settings.audiences.as_slice());
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind::*;
            match e.kind() {
                ExpiredSignature => "The bearer token has expired.".to_string(),
                ImmatureSignature => "The bearer token is not valid yet (nbf).".to_string(),
                InvalidAudience => {
                    "The bearer token is not meant for this service (aud).".to_string()
                }
                InvalidIssuer => "The bearer token's issuer is not trusted.".to_string(),
                InvalidSignature => "The bearer token's signature is invalid.".to_string(),
                MissingRequiredClaim(c) => format!("The bearer token lacks the '{c}' claim."),
                _ => "The bearer token is invalid.".to_string(),
            }
        })?;
        let claims = data.claims;
        if let Some(tenant) = &issuer.settings.tenant {
            if claims.tid.as_deref() != Some(tenant.as_str()) {
                return Err("The bearer token belongs to another tenant (tid).".into());
            }
        }
        debug_assert_eq!(claims.iss, issuer.settings.issuer);
        Ok(self.principal(claims))
    }

    /// Picks the issuer named by the (not yet verified) `iss` claim.
    fn issuer_of(&self, token: &str) -> Result<&Issuer, String> {
        let payload = token
            .split('.')
            .nth(1)
            .and_then(|p| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p)
                    .ok()
            })
            .and_then(|b| serde_json::from_slice::<Unverified>(&b).ok())
            .ok_or_else(|| "The bearer token is not a well-formed signed JWT.".to_string())?;
        let iss = payload
            .iss
            .ok_or_else(|| "The bearer token lacks the 'iss' claim.".to_string())?;
        self.issuers
            .iter()
            .find(|i| i.settings.issuer == iss)
            .ok_or_else(|| "The bearer token's issuer is not trusted.".to_string())
    }

    fn principal(&self, c: Claims) -> Principal {
        let groups = c.groups.unwrap_or_default();
        let is_admin = self
            .admin_group
            .as_ref()
            .is_some_and(|g| groups.iter().any(|m| m.eq_ignore_ascii_case(g)));
        let mut p = match c.scp {
            Some(scp) => {
                let upn = c.upn.or(c.preferred_username);
                let id = c
                    .oid
                    .clone()
                    .or_else(|| upn.clone())
                    .or(c.sub)
                    .unwrap_or_default();
                let mut p = Principal::user(
                    UserIdentity {
                        id,
                        display_name: c.name,
                        user_principal_name: upn,
                    },
                    scp.split_whitespace().map(str::to_string),
                    groups,
                );
                p.is_admin = is_admin;
                p
            }
            None => {
                let app = c.azp.or(c.appid).or(c.oid).or(c.sub).unwrap_or_default();
                Principal::application(
                    app,
                    c.app_displayname.or(c.name),
                    c.roles.unwrap_or_default(),
                )
            }
        };
        p.tenant = c.tid;
        p
    }
}

/// Keys of one issuer, loaded lazily and reloaded on unknown `kid`s.
impl Issuer {
    async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        http: &reqwest::Client,
    ) -> Result<KeyRef, String> {
        if let Some(k) = self.find(kid, alg).await? {
            return Ok(k);
        }
        if matches!(self.settings.keys, KeySource::Static(_)) {
            return Err("The bearer token names a signing key this issuer does not have.".into());
        }
        {
            let mut loaded = self.loaded.lock().await;
            if loaded.is_none_or(|t| t.elapsed() >= REFRESH_INTERVAL) {
                *loaded = Some(Instant::now());
                match self.load(http).await {
                    Ok(jwks) => *self.keys.write().await = to_keys(&jwks),
                    Err(e) => {
                        tracing::warn!(issuer = %self.settings.issuer, error = %e, "could not load the issuer's signing keys")
                    }
                }
            }
        }
        self.find(kid, alg).await?.ok_or_else(|| {
            "The bearer token names a signing key this issuer does not have.".to_string()
        })
    }

    /// The key for `kid` (or the only key, when the token names none), checked against the
    /// token's algorithm.
    async fn find(&self, kid: Option<&str>, alg: Algorithm) -> Result<Option<KeyRef>, String> {
        let keys = self.keys.read().await;
        let found = match kid {
            Some(kid) => keys.iter().position(|k| k.kid.as_deref() == Some(kid)),
            None if keys.len() == 1 => Some(0),
            None => None,
        };
        match found {
            None => Ok(None),
            Some(i) if keys[i].alg != alg => Err(format!(
                "The bearer token's algorithm {alg:?} does not match its signing key."
            )),
            Some(i) => Ok(Some(KeyRef {
                alg: keys[i].alg,
                key: keys[i].key.clone(),
            })),
        }
    }

    async fn load(&self, http: &reqwest::Client) -> Result<Vec<Jwk>, String> {
        let text = match &self.settings.keys {
            KeySource::Static(jwks) => return Ok(jwks.clone()),
            KeySource::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            KeySource::Url(url) => http
                .get(url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| format!("cannot fetch {url}: {e}"))?
                .text()
                .await
                .map_err(|e| format!("cannot fetch {url}: {e}"))?,
        };
        let keys = parse_jwks(&text)?;
        tracing::info!(issuer = %self.settings.issuer, keys = keys.len(), "issuer signing keys loaded");
        Ok(keys)
    }
}

struct KeyRef {
    alg: Algorithm,
    key: DecodingKey,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_parsing_keeps_only_asymmetric_keys() {
        let doc = r#"{"keys":[
            {"kty":"oct","kid":"hmac","k":"c2VjcmV0"},
            {"kty":"EC","crv":"P-256","kid":"ec","x":"WKn-ZIGevcwGIyyrzFoZNBdaq9_TsqzGl96oc0CWuis","y":"y77t-RvAHRKTsSGdIYUfweuOvwrvDD-Q3Hv5J0fSKbE"},
            {"kty":"RSA","kid":"rsa-512","alg":"RS512","n":"sXch","e":"AQAB"},
            {"kty":"RSA","kid":"rsa-ps","alg":"PS256","n":"sXch","e":"AQAB"},
            {"kty":"weird"}
        ]}"#;
        let keys = parse_jwks(doc).unwrap();
        let kids: Vec<_> = keys
            .iter()
            .map(|k| (k.common.key_id.clone().unwrap(), algorithm_of(k).unwrap()))
            .collect();
        assert_eq!(
            kids,
            vec![
                ("ec".to_string(), Algorithm::ES256),
                ("rsa-512".to_string(), Algorithm::RS512)
            ]
        );
        assert!(parse_jwks("[]").is_err());
    }
}
