//! Connection settings of the client commands: flag > environment variable > client
//! configuration file > default, like the server's settings.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use upspool_client::Settings;

use crate::cli::ConnectArgs;

/// Where the service listens when nothing says otherwise: a local `upspool serve`.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8631";

/// The client configuration file (`client.toml`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    server: Option<String>,
    /// A shell command whose standard output is the token.
    token_command: Option<String>,
    /// Relative to the file's directory.
    ca_cert: Option<PathBuf>,
}

/// A settings problem; the message names where the bad value came from.
#[derive(Debug)]
pub struct SettingsError(pub String);

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The default file: `$XDG_CONFIG_HOME/upspool/client.toml`, else `~/.config/...`.
fn default_file(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let base = env("XDG_CONFIG_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(base.join("upspool/client.toml"))
}

fn read_file(path: &Path) -> Result<ClientFile, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        SettingsError(format!(
            "cannot read client configuration {}: {e}",
            path.display()
        ))
    })?;
    let mut file: ClientFile = toml::from_str(&text).map_err(|e| {
        SettingsError(format!(
            "invalid client configuration {}: {e}",
            path.display()
        ))
    })?;
    if let (Some(ca), Some(dir)) = (&file.ca_cert, path.parent()) {
        file.ca_cert = Some(dir.join(ca));
    }
    Ok(file)
}

/// Resolves the connection settings. The token command runs only when no token is given.
pub fn resolve(
    args: &ConnectArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, SettingsError> {
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    let file = match args
        .client_config
        .clone()
        .or_else(|| env("UPSPOOL_CLIENT_CONFIG").map(PathBuf::from))
    {
        Some(path) => read_file(&path)?,
        None => match default_file(&env) {
            Some(path) if path.exists() => read_file(&path)?,
            _ => ClientFile::default(),
        },
    };
    let server = args
        .server
        .clone()
        .or_else(|| env("UPSPOOL_SERVER"))
        .or(file.server)
        .unwrap_or_else(|| DEFAULT_SERVER.to_string());
    let token = match args.token.clone().or_else(|| env("UPSPOOL_TOKEN")) {
        Some(t) => Some(t),
        None => match env("UPSPOOL_TOKEN_COMMAND").or(file.token_command) {
            Some(cmd) => Some(run_token_command(&cmd)?),
            None => None,
        },
    };
    let ca = args
        .ca_cert
        .clone()
        .or_else(|| env("UPSPOOL_CA_CERT").map(PathBuf::from))
        .or(file.ca_cert);
    let ca_cert_pem = match ca {
        Some(path) => Some(std::fs::read(&path).map_err(|e| {
            SettingsError(format!(
                "cannot read CA certificate {}: {e}",
                path.display()
            ))
        })?),
        None => None,
    };
    Ok(Settings {
        server,
        token,
        ca_cert_pem,
        read_timeout: None,
    })
}

/// Runs `sh -c COMMAND`; its trimmed standard output is the token.
fn run_token_command(cmd: &str) -> Result<String, SettingsError> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| SettingsError(format!("cannot run token_command {cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(SettingsError(format!(
            "token_command {cmd:?} failed ({})",
            out.status
        )));
    }
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if token.is_empty() {
        return Err(SettingsError(format!(
            "token_command {cmd:?} printed no token"
        )));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("client.toml");
        std::fs::write(
            &file,
            "server = \"http://file:1\"\ntoken_command = \"echo from-command\"\n",
        )
        .unwrap();
        let mut args = ConnectArgs {
            client_config: Some(file),
            ..Default::default()
        };
        let s = resolve(&args, &env_of(&[])).unwrap();
        assert_eq!(s.server, "http://file:1");
        assert_eq!(s.token.as_deref(), Some("from-command"));
        let env = env_of(&[
            ("UPSPOOL_SERVER", "http://env:2"),
            ("UPSPOOL_TOKEN", "t-env"),
        ]);
        let s = resolve(&args, &env).unwrap();
        assert_eq!(
            (s.server.as_str(), s.token.as_deref()),
            ("http://env:2", Some("t-env"))
        );
        args.server = Some("http://flag:3".into());
        args.token = Some("t-flag".into());
        let s = resolve(&args, &env).unwrap();
        assert_eq!(
            (s.server.as_str(), s.token.as_deref()),
            ("http://flag:3", Some("t-flag"))
        );
        let none = ConnectArgs::default();
        let s = resolve(&none, &env_of(&[("HOME", "/nonexistent")])).unwrap();
        assert_eq!((s.server.as_str(), s.token), (DEFAULT_SERVER, None));
    }

    #[test]
    fn bad_file_and_failing_command_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("client.toml");
        std::fs::write(&file, "srever = \"x\"\n").unwrap();
        let args = ConnectArgs {
            client_config: Some(file.clone()),
            ..Default::default()
        };
        assert!(resolve(&args, &env_of(&[]))
            .unwrap_err()
            .0
            .contains("srever"));
        std::fs::write(&file, "token_command = \"exit 3\"\n").unwrap();
        assert!(resolve(&args, &env_of(&[]))
            .unwrap_err()
            .0
            .contains("failed"));
    }
}
