//! Resume state: one small JSON file per interrupted upload, so that running the same
//! command again continues the same session instead of sending everything again.
//!
//! The file name is a hash of what makes two runs "the same": the file's content hash, the
//! server, the target and the job options. Files are written whole to a temporary name and
//! renamed, so a crash never leaves half a state behind; an unreadable one is ignored.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ClientError, Result};

/// The format version written; other versions are ignored.
pub const VERSION: u32 = 1;

/// What is needed to continue an upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResumeState {
    pub version: u32,
    pub server: String,
    /// `shares/{id}` or `printers/{id}`.
    pub scope: String,
    pub job_id: String,
    pub document_id: String,
    /// Carries its own credential: the file is created readable by its owner only.
    pub upload_url: String,
    /// RFC 3339, as the session last reported it.
    pub expiration: Option<String>,
    pub size: u64,
    pub content_type: String,
    pub file_sha256: String,
}

/// The key of a state: SHA-256 over the parts, each length-prefixed so that no two
/// different part lists give the same input.
pub fn key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// A directory of state files.
#[derive(Clone, Debug)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StateStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("upload-{key}.json"))
    }

    /// The state under `key`, if there is a readable one of this version.
    pub fn load(&self, key: &str) -> Option<ResumeState> {
        let bytes = std::fs::read(self.path(key)).ok()?;
        serde_json::from_slice::<ResumeState>(&bytes)
            .ok()
            .filter(|s| s.version == VERSION)
    }

    /// Writes the state atomically (temporary file, fsync, rename), mode 0600 on Unix.
    pub fn save(&self, key: &str, state: &ResumeState) -> Result<()> {
        let what = || format!("writing resume state in {}", self.dir.display());
        std::fs::create_dir_all(&self.dir).map_err(|e| ClientError::io(what(), e))?;
        let tmp = self
            .dir
            .join(format!(".upload-{key}.{}.tmp", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let write = || -> std::io::Result<()> {
            let mut f = options.open(&tmp)?;
            f.write_all(&serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.path(key))
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            ClientError::io(what(), e)
        })
    }

    /// Forgets the state (a missing file is fine).
    pub fn remove(&self, key: &str) {
        let _ = std::fs::remove_file(self.path(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("nested"));
        let k = key(&["abc", "http://x", "shares/1"]);
        assert!(store.load(&k).is_none());
        let s = ResumeState {
            version: VERSION,
            server: "http://x".into(),
            scope: "shares/1".into(),
            job_id: "j".into(),
            document_id: "d".into(),
            upload_url: "http://x/u?t=1".into(),
            expiration: None,
            size: 10,
            content_type: "text/plain".into(),
            file_sha256: "abc".into(),
        };
        store.save(&k, &s).unwrap();
        assert_eq!(store.load(&k), Some(s));
        store.remove(&k);
        assert!(store.load(&k).is_none());
    }

    #[test]
    fn keys_separate_their_parts() {
        assert_ne!(key(&["ab", "c"]), key(&["a", "bc"]));
        assert_eq!(key(&["a", "b"]), key(&["a", "b"]));
    }

    #[test]
    fn a_corrupt_state_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        std::fs::write(store.path("k"), b"{not json").unwrap();
        assert!(store.load("k").is_none());
    }
}
