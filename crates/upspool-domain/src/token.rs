//! Secrets in URLs (`tempauthtoken`): 256 random bits, base64url without padding (never `&`,
//! which the JS SDK would split on), stored only as a SHA-256 hash and compared in constant time.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A fresh random token and its hash. Hand the token to the client; keep only the hash.
pub fn generate() -> (String, Vec<u8>) {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let hash = hash(&token);
    (token, hash)
}

pub fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Constant-time check of a presented token against a stored hash.
pub fn matches(presented: &str, stored_hash: &[u8]) -> bool {
    hash(presented).ct_eq(stored_hash).into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_verify_only_against_their_own_hash() {
        let (t1, h1) = super::generate();
        let (t2, _) = super::generate();
        assert!(t1.len() >= 43 && !t1.contains(['&', '=', '+', '/']));
        assert!(super::matches(&t1, &h1));
        assert!(!super::matches(&t2, &h1));
        assert!(!super::matches("", &h1));
    }
}
