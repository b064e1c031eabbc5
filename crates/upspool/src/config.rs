//! Layered configuration: command-line flags over `UPSPOOL_*` environment variables over the
//! TOML file (`--config FILE` / `UPSPOOL_CONFIG`) over defaults. Every value is parsed here, and
//! an invalid one is reported with the setting's name and where the value came from.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use upspool_domain::limits::Limits;
use upspool_http::HttpLimits;

use crate::cli::{CommonArgs, ServeArgs};

/// A usage or configuration error: the process exits with code 2.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where HTTPS takes its certificate from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsIdentity {
    /// `--tls-cert` and `--tls-key`.
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed certificate kept in `{data_dir}/tls`.
    SelfSigned,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    pub identity: TlsIdentity,
}

/// Where an external issuer's JWKS is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksLocation {
    File(PathBuf),
    Url(String),
}

/// An external OIDC issuer (an Entra ID tenant, say).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalIssuer {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks: JwksLocation,
    pub tenant: Option<String>,
}

/// Which bearer tokens are accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityConfig {
    /// Trust the embedded issuer (`upspool token`).
    pub embedded: bool,
    pub external: Option<ExternalIssuer>,
    /// Members of this group are printer administrators.
    pub admin_group: Option<String>,
}

/// The resolved configuration of a run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The TOML file that was read, if any.
    pub config_file: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Configured public URL, without a trailing slash; `None` means derive it from the bound
    /// address.
    pub public_url: Option<String>,
    pub tls: Option<TlsConfig>,
    pub insecure_dev_auth: bool,
    pub identity: IdentityConfig,
    pub log_format: LogFormat,
    pub shutdown_timeout: Duration,
    pub sweep_interval: Duration,
    pub limits: Limits,
    pub http_limits: HttpLimits,
    /// Most bytes of declared document sizes the byte store holds; `None` for no quota.
    pub storage_quota: Option<u64>,
    pub header_read_timeout: Duration,
    pub max_header_size: u64,
    /// Most memory kept for upload blocks in huge pages (the byte store's block pool).
    pub upload_buffer_pool: u64,
    /// Whether the byte store writes whole pages without the page cache (`O_DIRECT`).
    pub direct_io: bool,
}

/// hyper reads request heads into a buffer that cannot be smaller than this.
pub const MIN_HEADER_SIZE: u64 = 8 * 1024;

pub const DEFAULT_DATA_DIR: &str = "./upspool-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8631";

/// The TOML file. Unknown keys are errors so that typos do not pass silently.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<String>,
    listen: Option<String>,
    public_url: Option<String>,
    tls_listen: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    insecure_dev_auth: Option<bool>,
    disable_embedded_issuer: Option<bool>,
    admin_group: Option<String>,
    #[serde(default)]
    oidc: FileOidc,
    log_format: Option<String>,
    shutdown_timeout: Option<String>,
    direct_io: Option<bool>,
    #[serde(default)]
    limits: FileLimits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOidc {
    issuer: Option<String>,
    audience: Option<String>,
    jwks: Option<String>,
    tenant: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_document_size: Option<SizeValue>,
    max_segment_size: Option<SizeValue>,
    max_session_ranges: Option<u32>,
    session_ttl: Option<String>,
    session_hard_cap: Option<String>,
    replay_grace: Option<String>,
    download_url_ttl: Option<String>,
    sweep_interval: Option<String>,
    storage_quota: Option<SizeValue>,
    header_read_timeout: Option<String>,
    max_header_size: Option<SizeValue>,
    upload_buffer_pool: Option<SizeValue>,
    body_idle_timeout: Option<String>,
    max_requests_per_session: Option<u32>,
    max_requests_per_caller: Option<u32>,
}

/// A size in TOML: a plain number of bytes or a string with a unit.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

impl SizeValue {
    fn into_string(self) -> String {
        match self {
            SizeValue::Bytes(n) => n.to_string(),
            SizeValue::Text(s) => s,
        }
    }
}

/// One setting's names in each layer.
struct Setting {
    /// TOML key, with its table (`limits.max_segment_size`).
    key: &'static str,
    flag: &'static str,
    env: &'static str,
}

macro_rules! setting {
    ($name:ident, $key:literal, $flag:literal, $env:literal) => {
        const $name: Setting = Setting {
            key: $key,
            flag: $flag,
            env: $env,
        };
    };
}

setting!(DATA_DIR, "data_dir", "--data-dir", "UPSPOOL_DATA_DIR");
setting!(LISTEN, "listen", "--listen", "UPSPOOL_LISTEN");
setting!(
    PUBLIC_URL,
    "public_url",
    "--public-url",
    "UPSPOOL_PUBLIC_URL"
);
setting!(
    TLS_LISTEN,
    "tls_listen",
    "--tls-listen",
    "UPSPOOL_TLS_LISTEN"
);
setting!(TLS_CERT, "tls_cert", "--tls-cert", "UPSPOOL_TLS_CERT");
setting!(TLS_KEY, "tls_key", "--tls-key", "UPSPOOL_TLS_KEY");
setting!(
    INSECURE_DEV_AUTH,
    "insecure_dev_auth",
    "--insecure-dev-auth",
    "UPSPOOL_INSECURE_DEV_AUTH"
);
setting!(
    DISABLE_EMBEDDED_ISSUER,
    "disable_embedded_issuer",
    "--disable-embedded-issuer",
    "UPSPOOL_DISABLE_EMBEDDED_ISSUER"
);
setting!(
    ADMIN_GROUP,
    "admin_group",
    "--admin-group",
    "UPSPOOL_ADMIN_GROUP"
);
setting!(
    OIDC_ISSUER,
    "oidc.issuer",
    "--oidc-issuer",
    "UPSPOOL_OIDC_ISSUER"
);
setting!(
    OIDC_AUDIENCE,
    "oidc.audience",
    "--oidc-audience",
    "UPSPOOL_OIDC_AUDIENCE"
);
setting!(OIDC_JWKS, "oidc.jwks", "--oidc-jwks", "UPSPOOL_OIDC_JWKS");
setting!(
    OIDC_TENANT,
    "oidc.tenant",
    "--oidc-tenant",
    "UPSPOOL_OIDC_TENANT"
);
setting!(
    LOG_FORMAT,
    "log_format",
    "--log-format",
    "UPSPOOL_LOG_FORMAT"
);
setting!(DIRECT_IO, "direct_io", "--direct-io", "UPSPOOL_DIRECT_IO");
setting!(
    SHUTDOWN_TIMEOUT,
    "shutdown_timeout",
    "--shutdown-timeout",
    "UPSPOOL_SHUTDOWN_TIMEOUT"
);
setting!(
    MAX_DOCUMENT_SIZE,
    "limits.max_document_size",
    "--max-document-size",
    "UPSPOOL_MAX_DOCUMENT_SIZE"
);
setting!(
    MAX_SEGMENT_SIZE,
    "limits.max_segment_size",
    "--max-segment-size",
    "UPSPOOL_MAX_SEGMENT_SIZE"
);
setting!(
    MAX_SESSION_RANGES,
    "limits.max_session_ranges",
    "--max-session-ranges",
    "UPSPOOL_MAX_SESSION_RANGES"
);
setting!(
    SESSION_TTL,
    "limits.session_ttl",
    "--session-ttl",
    "UPSPOOL_SESSION_TTL"
);
setting!(
    SESSION_HARD_CAP,
    "limits.session_hard_cap",
    "--session-hard-cap",
    "UPSPOOL_SESSION_HARD_CAP"
);
setting!(
    REPLAY_GRACE,
    "limits.replay_grace",
    "--replay-grace",
    "UPSPOOL_REPLAY_GRACE"
);
setting!(
    DOWNLOAD_URL_TTL,
    "limits.download_url_ttl",
    "--download-url-ttl",
    "UPSPOOL_DOWNLOAD_URL_TTL"
);
setting!(
    SWEEP_INTERVAL,
    "limits.sweep_interval",
    "--sweep-interval",
    "UPSPOOL_SWEEP_INTERVAL"
);

setting!(
    STORAGE_QUOTA,
    "limits.storage_quota",
    "--storage-quota",
    "UPSPOOL_STORAGE_QUOTA"
);
setting!(
    HEADER_READ_TIMEOUT,
    "limits.header_read_timeout",
    "--header-read-timeout",
    "UPSPOOL_HEADER_READ_TIMEOUT"
);
setting!(
    MAX_HEADER_SIZE,
    "limits.max_header_size",
    "--max-header-size",
    "UPSPOOL_MAX_HEADER_SIZE"
);
setting!(
    UPLOAD_BUFFER_POOL,
    "limits.upload_buffer_pool",
    "--upload-buffer-pool",
    "UPSPOOL_UPLOAD_BUFFER_POOL"
);
setting!(
    BODY_IDLE_TIMEOUT,
    "limits.body_idle_timeout",
    "--body-idle-timeout",
    "UPSPOOL_BODY_IDLE_TIMEOUT"
);
setting!(
    MAX_REQUESTS_PER_SESSION,
    "limits.max_requests_per_session",
    "--max-requests-per-session",
    "UPSPOOL_MAX_REQUESTS_PER_SESSION"
);
setting!(
    MAX_REQUESTS_PER_CALLER,
    "limits.max_requests_per_caller",
    "--max-requests-per-caller",
    "UPSPOOL_MAX_REQUESTS_PER_CALLER"
);

/// Where a value came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Flag(&'static str),
    Env(&'static str),
    File { key: &'static str, path: PathBuf },
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "flag {flag}"),
            Source::Env(var) => write!(f, "environment variable {var}"),
            Source::File { key, path } => write!(f, "key `{key}` in {}", path.display()),
            Source::Default => f.write_str("default"),
        }
    }
}

/// A parsed value and where it came from.
struct Sourced<T> {
    value: T,
    raw: String,
    source: Source,
}

struct Layers<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    file_path: Option<PathBuf>,
}

impl Layers<'_> {
    /// The raw value of a setting from the highest layer that has one. Empty environment
    /// variables count as unset.
    fn raw(
        &self,
        s: &Setting,
        flag: Option<&str>,
        file: Option<String>,
    ) -> Option<(String, Source)> {
        if let Some(v) = flag {
            return Some((v.to_owned(), Source::Flag(s.flag)));
        }
        if let Some(v) = (self.env)(s.env).filter(|v| !v.is_empty()) {
            return Some((v, Source::Env(s.env)));
        }
        let path = self.file_path.clone()?;
        file.map(|v| (v, Source::File { key: s.key, path }))
    }

    fn get<T>(
        &self,
        s: &Setting,
        flag: Option<&str>,
        file: Option<String>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<Sourced<T>>, ConfigError> {
        let Some((raw, source)) = self.raw(s, flag, file) else {
            return Ok(None);
        };
        match parse(&raw) {
            Ok(value) => Ok(Some(Sourced { value, raw, source })),
            Err(e) => Err(invalid(s, &raw, &source, &e)),
        }
    }

    fn get_or<T>(
        &self,
        s: &Setting,
        flag: Option<&str>,
        file: Option<String>,
        default: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Sourced<T>, ConfigError> {
        match self.get(s, flag, file, &parse)? {
            Some(v) => Ok(v),
            None => {
                let value =
                    parse(default).map_err(|e| invalid(s, default, &Source::Default, &e))?;
                Ok(Sourced {
                    value,
                    raw: default.to_owned(),
                    source: Source::Default,
                })
            }
        }
    }

    /// A path; relative paths from the file are relative to the file's directory.
    fn path(
        &self,
        s: &Setting,
        flag: Option<&str>,
        file: Option<String>,
    ) -> Result<Option<PathBuf>, ConfigError> {
        let Some(v) = self.get(s, flag, file, parse_path)? else {
            return Ok(None);
        };
        Ok(Some(match (&v.source, &self.file_path) {
            (Source::File { .. }, Some(file)) if v.value.is_relative() => {
                file.parent().unwrap_or(Path::new("")).join(&v.value)
            }
            _ => v.value,
        }))
    }
}

fn invalid(s: &Setting, raw: &str, source: &Source, why: &str) -> ConfigError {
    ConfigError(format!(
        "invalid value {raw:?} for {} ({source}): {why}",
        s.key.trim_start_matches("limits.")
    ))
}

/// Reads the configuration of `upspool serve`. `env` looks up environment variables (the real
/// process environment in production, a map in tests).
pub fn load(args: &ServeArgs, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let file_path = args.common.config.clone().or_else(|| {
        env("UPSPOOL_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let file = match &file_path {
        Some(path) => read_file(path)?,
        None => FileConfig::default(),
    };
    let layers = Layers {
        env,
        file_path: file_path.clone(),
    };
    let l = &args.limits;
    let fl = file.limits;

    let data_dir = layers
        .path(&DATA_DIR, args.common.data_dir.as_deref(), file.data_dir)?
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let listen = layers
        .get_or(
            &LISTEN,
            args.listen.as_deref(),
            file.listen,
            DEFAULT_LISTEN,
            parse_addr,
        )?
        .value;
    let public_url = layers
        .get(
            &PUBLIC_URL,
            args.public_url.as_deref(),
            file.public_url,
            parse_public_url,
        )?
        .map(|v| v.value);

    let tls_listen = layers.get(
        &TLS_LISTEN,
        args.tls_listen.as_deref(),
        file.tls_listen,
        parse_addr,
    )?;
    let tls_cert = layers.path(&TLS_CERT, args.tls_cert.as_deref(), file.tls_cert)?;
    let tls_key = layers.path(&TLS_KEY, args.tls_key.as_deref(), file.tls_key)?;
    let tls = match (tls_listen, tls_cert, tls_key) {
        (None, None, None) => None,
        (None, _, _) => return Err(ConfigError(
            "tls_cert/tls_key are set but tls_listen is not: give --tls-listen ADDR to serve HTTPS"
                .into(),
        )),
        (Some(l), None, None) => Some(TlsConfig {
            listen: l.value,
            identity: TlsIdentity::SelfSigned,
        }),
        (Some(l), Some(cert), Some(key)) => Some(TlsConfig {
            listen: l.value,
            identity: TlsIdentity::Files { cert, key },
        }),
        (Some(_), Some(_), None) | (Some(_), None, Some(_)) => {
            return Err(ConfigError(
                "give both --tls-cert and --tls-key (or neither, for a self-signed certificate)"
                    .into(),
            ))
        }
    };

    let insecure_dev_auth = layers
        .get(
            &INSECURE_DEV_AUTH,
            args.insecure_dev_auth.then_some("true"),
            file.insecure_dev_auth.map(|b| b.to_string()),
            parse_bool,
        )?
        .is_some_and(|v| v.value);
    let identity = identity(
        &layers,
        args,
        file.disable_embedded_issuer,
        file.admin_group,
        file.oidc,
    )?;
    let log_format = layers
        .get_or(
            &LOG_FORMAT,
            args.log_format.as_deref(),
            file.log_format,
            "text",
            parse_log_format,
        )?
        .value;
    let shutdown_timeout = layers
        .get_or(
            &SHUTDOWN_TIMEOUT,
            args.shutdown_timeout.as_deref(),
            file.shutdown_timeout,
            "30s",
            parse_duration,
        )?
        .value;
    let direct_io = layers
        .get_or(
            &DIRECT_IO,
            args.direct_io.as_deref(),
            file.direct_io.map(|b| b.to_string()),
            "on",
            parse_bool,
        )?
        .value;

    let size = |v: Option<SizeValue>| v.map(SizeValue::into_string);
    let max_document_size = layers.get_or(
        &MAX_DOCUMENT_SIZE,
        l.max_document_size.as_deref(),
        size(fl.max_document_size),
        "4GiB",
        parse_size,
    )?;
    let max_segment_size = layers.get_or(
        &MAX_SEGMENT_SIZE,
        l.max_segment_size.as_deref(),
        size(fl.max_segment_size),
        "60MiB",
        parse_size,
    )?;
    if max_segment_size.value > max_document_size.value {
        return Err(ConfigError(format!(
            "max_segment_size {} ({}) is larger than max_document_size {} ({})",
            max_segment_size.raw,
            max_segment_size.source,
            max_document_size.raw,
            max_document_size.source
        )));
    }
    let dur = |s: &Setting, flag: &Option<String>, file: Option<String>, default: &str| {
        layers
            .get_or(s, flag.as_deref(), file, default, parse_duration)
            .map(|v| v.value)
    };
    let count = |s: &Setting, flag: &Option<String>, file: Option<u32>, default: &str| {
        layers
            .get_or(
                s,
                flag.as_deref(),
                file.map(|n| n.to_string()),
                default,
                parse_count,
            )
            .map(|v| v.value)
    };
    let defaults = Limits::default();
    let limits = Limits {
        max_document_size: max_document_size.value,
        max_segment_size: max_segment_size.value,
        max_session_ranges: count(
            &MAX_SESSION_RANGES,
            &l.max_session_ranges,
            fl.max_session_ranges,
            "10000",
        )?,
        session_ttl: dur(&SESSION_TTL, &l.session_ttl, fl.session_ttl, "24h")?,
        session_hard_cap: dur(
            &SESSION_HARD_CAP,
            &l.session_hard_cap,
            fl.session_hard_cap,
            "7d",
        )?,
        replay_grace: dur(&REPLAY_GRACE, &l.replay_grace, fl.replay_grace, "10m")?,
        download_url_ttl: dur(
            &DOWNLOAD_URL_TTL,
            &l.download_url_ttl,
            fl.download_url_ttl,
            "10m",
        )?,
        default_page_size: defaults.default_page_size,
        max_page_size: defaults.max_page_size,
    };
    let sweep_interval = dur(&SWEEP_INTERVAL, &l.sweep_interval, fl.sweep_interval, "60s")?;
    let storage_quota = layers
        .get(
            &STORAGE_QUOTA,
            l.storage_quota.as_deref(),
            size(fl.storage_quota),
            parse_size,
        )?
        .map(|v| v.value);
    let header_read_timeout = dur(
        &HEADER_READ_TIMEOUT,
        &l.header_read_timeout,
        fl.header_read_timeout,
        "30s",
    )?;
    let max_header_size = layers
        .get_or(
            &MAX_HEADER_SIZE,
            l.max_header_size.as_deref(),
            size(fl.max_header_size),
            "64KiB",
            parse_header_size,
        )?
        .value;
    let upload_buffer_pool = layers
        .get_or(
            &UPLOAD_BUFFER_POOL,
            l.upload_buffer_pool.as_deref(),
            size(fl.upload_buffer_pool),
            "32MiB",
            parse_buffer_pool,
        )?
        .value;
    let http_limits = HttpLimits {
        body_idle_timeout: dur(
            &BODY_IDLE_TIMEOUT,
            &l.body_idle_timeout,
            fl.body_idle_timeout,
            "60s",
        )?,
        max_requests_per_session: count(
            &MAX_REQUESTS_PER_SESSION,
            &l.max_requests_per_session,
            fl.max_requests_per_session,
            "16",
        )?,
        max_requests_per_caller: count(
            &MAX_REQUESTS_PER_CALLER,
            &l.max_requests_per_caller,
            fl.max_requests_per_caller,
            "256",
        )?,
    };

    Ok(Config {
        config_file: file_path,
        data_dir,
        listen,
        public_url,
        tls,
        insecure_dev_auth,
        identity,
        log_format,
        shutdown_timeout,
        sweep_interval,
        limits,
        http_limits,
        storage_quota,
        header_read_timeout,
        max_header_size,
        upload_buffer_pool,
        direct_io,
    })
}

fn non_empty(s: &str) -> Result<String, String> {
    match s.trim() {
        "" => Err("must not be empty".into()),
        t => Ok(t.to_string()),
    }
}

/// The token issuers: the embedded one unless disabled, and an external one when
/// `oidc.issuer`, `oidc.audience` and `oidc.jwks` are all given.
fn identity(
    layers: &Layers<'_>,
    args: &ServeArgs,
    file_disable: Option<bool>,
    file_admin_group: Option<String>,
    oidc: FileOidc,
) -> Result<IdentityConfig, ConfigError> {
    let a = &args.identity;
    let disabled = layers
        .get(
            &DISABLE_EMBEDDED_ISSUER,
            a.disable_embedded_issuer.then_some("true"),
            file_disable.map(|b| b.to_string()),
            parse_bool,
        )?
        .is_some_and(|v| v.value);
    let admin_group = layers
        .get(
            &ADMIN_GROUP,
            a.admin_group.as_deref(),
            file_admin_group,
            non_empty,
        )?
        .map(|v| v.value);
    let issuer = layers.get(
        &OIDC_ISSUER,
        a.oidc_issuer.as_deref(),
        oidc.issuer,
        non_empty,
    )?;
    let audience = layers.get(
        &OIDC_AUDIENCE,
        a.oidc_audience.as_deref(),
        oidc.audience,
        |s| {
            let list: Vec<String> = s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if list.is_empty() {
                Err("give at least one audience (comma-separated)".to_string())
            } else {
                Ok(list)
            }
        },
    )?;
    let jwks = match layers.get(
        &OIDC_JWKS,
        a.oidc_jwks.as_deref(),
        oidc.jwks.clone(),
        non_empty,
    )? {
        Some(v) if v.value.starts_with("https://") || v.value.starts_with("http://") => {
            Some(JwksLocation::Url(v.value))
        }
        Some(_) => layers
            .path(&OIDC_JWKS, a.oidc_jwks.as_deref(), oidc.jwks)?
            .map(JwksLocation::File),
        None => None,
    };
    let tenant = layers
        .get(
            &OIDC_TENANT,
            a.oidc_tenant.as_deref(),
            oidc.tenant,
            non_empty,
        )?
        .map(|v| v.value);
    let external = match (issuer, audience, jwks) {
        (None, None, None) if tenant.is_none() => None,
        (Some(issuer), Some(audience), Some(jwks)) => Some(ExternalIssuer {
            issuer: issuer.value,
            audiences: audience.value,
            jwks,
            tenant,
        }),
        _ => {
            return Err(ConfigError(
                "an external token issuer needs all of oidc.issuer (--oidc-issuer), \
                 oidc.audience (--oidc-audience) and oidc.jwks (--oidc-jwks)"
                    .into(),
            ))
        }
    };
    if disabled && external.is_none() {
        return Err(ConfigError(
            "disable_embedded_issuer is set but no external issuer (oidc.issuer, oidc.audience, \
             oidc.jwks) is configured: no token could ever be accepted"
                .into(),
        ));
    }
    Ok(IdentityConfig {
        embedded: !disabled,
        external,
        admin_group,
    })
}

/// The configuration of an admin command: the same layers, with only `--config` and
/// `--data-dir` on the command line.
pub fn load_admin(
    common: &CommonArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let args = ServeArgs {
        common: CommonArgs {
            config: common.config.clone(),
            data_dir: common.data_dir.clone(),
        },
        ..ServeArgs::default()
    };
    load(&args, env)
}

/// The process environment, for [`load`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(format!(
            "cannot read configuration file {}: {e}",
            path.display()
        ))
    })?;
    toml::from_str(&text).map_err(|e| {
        ConfigError(format!(
            "invalid configuration file {}: {e}",
            path.display()
        ))
    })
}

fn parse_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(PathBuf::from(s))
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| "expected IP:PORT, e.g. 127.0.0.1:8631, 0.0.0.0:8631 or [::]:8631".into())
}

fn parse_public_url(s: &str) -> Result<String, String> {
    let s = s.trim();
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err("has no host".into());
    }
    if s.contains(char::is_whitespace) || s.contains(['?', '#']) {
        return Err("must be a plain base URL without spaces, query or fragment".into());
    }
    Ok(s.trim_end_matches('/').to_owned())
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false (or 1 or 0)".into()),
    }
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected text or json".into()),
    }
}

/// A number of concurrent requests; 0 means no bound.
fn parse_count(s: &str) -> Result<u32, String> {
    s.trim()
        .parse()
        .map_err(|_| "expected a whole number (0 for no bound)".into())
}

/// The block pool's size: 0 (no pool) up to 4 GiB (a pool never gives memory back).
fn parse_buffer_pool(s: &str) -> Result<u64, String> {
    if s.trim() == "0" {
        return Ok(0);
    }
    let n = parse_size(s)?;
    if n > 4 << 30 {
        return Err("must be at most 4GiB".into());
    }
    Ok(n)
}

/// A header size that hyper accepts: at least [`MIN_HEADER_SIZE`], and fits in memory.
fn parse_header_size(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    if !(MIN_HEADER_SIZE..=(64 << 20)).contains(&n) {
        return Err("must be between 8KiB and 64MiB".into());
    }
    Ok(n)
}

/// A positive duration in `humantime` form: `90s`, `10m`, `24h`, `7d`, `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; expected a duration like 90s, 10m, 24h or 7d"))?;
    if d.is_zero() {
        return Err("must be greater than 0".into());
    }
    Ok(d)
}

/// A positive number of bytes: plain (`1048576`) or with a unit, binary (`512KiB`, `60MiB`,
/// `4GiB`, `1TiB`) or decimal (`500kB`, `10MB`, `1GB`, `1TB`). Units are case-insensitive.
pub fn parse_size(s: &str) -> Result<u64, String> {
    const HINT: &str =
        "expected a number of bytes, optionally with a unit like 512KiB, 60MiB or 4GiB";
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    if number.is_empty() {
        return Err(HINT.into());
    }
    let n: u64 = number
        .parse()
        .map_err(|_| format!("number too large; {HINT}"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => return Err(format!("unknown unit {other:?}; {HINT}")),
    };
    let bytes = n.checked_mul(multiplier).ok_or("size too large")?;
    if bytes == 0 {
        return Err("must be greater than 0".into());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::cli::LimitArgs;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn write_toml(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upspool.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1234").unwrap(), 1234);
        assert_eq!(parse_size("512KiB").unwrap(), 512 * 1024);
        assert_eq!(parse_size("60MiB").unwrap(), 60 << 20);
        assert_eq!(parse_size("4GiB").unwrap(), 4 << 30);
        assert_eq!(parse_size("4 gib").unwrap(), 4 << 30);
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_size("7B").unwrap(), 7);
        for bad in [
            "",
            "0",
            "0MiB",
            "GiB",
            "-1",
            "1.5GiB",
            "4XB",
            "99999999999TiB",
            "4 G",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        for bad in ["", "0s", "10", "soon"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn defaults_match_the_domain() {
        let c = load(&ServeArgs::default(), &env_of(&[])).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("./upspool-data"));
        assert_eq!(c.listen, "127.0.0.1:8631".parse().unwrap());
        assert_eq!(c.public_url, None);
        assert_eq!(c.tls, None);
        assert!(!c.insecure_dev_auth);
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
        assert!(c.direct_io);
        assert_eq!(c.sweep_interval, Duration::from_secs(60));
        let d = Limits::default();
        assert_eq!(c.limits.max_document_size, d.max_document_size);
        assert_eq!(c.limits.max_segment_size, d.max_segment_size);
        assert_eq!(c.limits.max_session_ranges, d.max_session_ranges);
        assert_eq!(
            d.max_session_ranges, 10_000,
            "the default the README documents"
        );
        assert_eq!(c.limits.session_ttl, d.session_ttl);
        assert_eq!(c.limits.session_hard_cap, d.session_hard_cap);
        assert_eq!(c.limits.replay_grace, d.replay_grace);
        assert_eq!(c.limits.download_url_ttl, d.download_url_ttl);
    }

    #[test]
    fn flag_over_env_over_file() {
        let (_dir, path) = write_toml(
            "listen = \"127.0.0.1:1\"\nlog_format = \"json\"\n[limits]\nmax_segment_size = 1024\nsession_ttl = \"1h\"\nmax_session_ranges = 7\n",
        );
        let mut args = ServeArgs::default();
        args.common.config = Some(path.clone());
        let env = env_of(&[
            ("UPSPOOL_LISTEN", "127.0.0.1:2"),
            ("UPSPOOL_SESSION_TTL", "2h"),
        ]);
        let c = load(&args, &env).unwrap();
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.limits.max_segment_size, 1024);
        assert_eq!(c.limits.session_ttl, Duration::from_secs(7200));
        assert_eq!(c.limits.max_session_ranges, 7);
        let env = env_of(&[
            ("UPSPOOL_LISTEN", "127.0.0.1:2"),
            ("UPSPOOL_SESSION_TTL", "2h"),
            ("UPSPOOL_MAX_SESSION_RANGES", "0"),
        ]);
        assert_eq!(load(&args, &env).unwrap().limits.max_session_ranges, 0);

        args.listen = Some("127.0.0.1:3".into());
        args.limits = LimitArgs {
            session_ttl: Some("3h".into()),
            max_session_ranges: Some("9".into()),
            ..LimitArgs::default()
        };
        let c = load(&args, &env).unwrap();
        assert_eq!(c.listen.port(), 3);
        assert_eq!(c.limits.session_ttl, Duration::from_secs(3 * 3600));
        assert_eq!(c.limits.max_session_ranges, 9);
    }

    #[test]
    fn reliability_limits_default_and_layer() {
        let c = load(&ServeArgs::default(), &env_of(&[])).unwrap();
        assert_eq!(c.storage_quota, None);
        assert_eq!(c.header_read_timeout, Duration::from_secs(30));
        assert_eq!(c.max_header_size, 64 * 1024);
        let d = HttpLimits::default();
        assert_eq!(c.http_limits.body_idle_timeout, d.body_idle_timeout);
        assert_eq!(
            c.http_limits.max_requests_per_session,
            d.max_requests_per_session
        );
        assert_eq!(
            c.http_limits.max_requests_per_caller,
            d.max_requests_per_caller
        );

        let (_dir, path) = write_toml(
            "[limits]\nstorage_quota = \"1GiB\"\nmax_requests_per_caller = 0\nbody_idle_timeout = \"5s\"\n",
        );
        let env = env_of(&[
            ("UPSPOOL_CONFIG", path.to_str().unwrap()),
            ("UPSPOOL_MAX_REQUESTS_PER_SESSION", "4"),
        ]);
        let mut args = ServeArgs::default();
        args.limits.max_header_size = Some("16KiB".into());
        let c = load(&args, &env).unwrap();
        assert_eq!(c.storage_quota, Some(1 << 30));
        assert_eq!(c.http_limits.max_requests_per_caller, 0);
        assert_eq!(c.http_limits.max_requests_per_session, 4);
        assert_eq!(c.http_limits.body_idle_timeout, Duration::from_secs(5));
        assert_eq!(c.max_header_size, 16 * 1024);

        args.limits.max_header_size = Some("1KiB".into());
        let e = load(&args, &env).unwrap_err().0;
        assert!(e.contains("max_header_size") && e.contains("8KiB"), "{e}");
        args.limits.max_header_size = None;
        assert_eq!(c.upload_buffer_pool, 32 << 20, "the default pool");
        args.limits.upload_buffer_pool = Some("0".into());
        assert_eq!(load(&args, &env).unwrap().upload_buffer_pool, 0);
        args.limits.upload_buffer_pool = Some("5GiB".into());
        let e = load(&args, &env).unwrap_err().0;
        assert!(
            e.contains("upload_buffer_pool") && e.contains("4GiB"),
            "{e}"
        );
        args.limits.upload_buffer_pool = None;
        args.limits.max_requests_per_caller = Some("-1".into());
        let e = load(&args, &env).unwrap_err().0;
        assert!(e.contains("max_requests_per_caller"), "{e}");
    }

    #[test]
    fn config_file_from_env_and_relative_paths() {
        let (dir, path) = write_toml("data_dir = \"data\"\ntls_listen = \"127.0.0.1:0\"\ntls_cert = \"c.pem\"\ntls_key = \"/k.pem\"\n");
        let env = env_of(&[("UPSPOOL_CONFIG", path.to_str().unwrap())]);
        let c = load(&ServeArgs::default(), &env).unwrap();
        assert_eq!(c.config_file.as_deref(), Some(path.as_path()));
        assert_eq!(c.data_dir, dir.path().join("data"));
        let tls = c.tls.unwrap();
        assert_eq!(
            tls.identity,
            TlsIdentity::Files {
                cert: dir.path().join("c.pem"),
                key: PathBuf::from("/k.pem")
            }
        );
    }

    #[test]
    fn empty_env_is_unset() {
        let env = env_of(&[("UPSPOOL_LISTEN", ""), ("UPSPOOL_PUBLIC_URL", "")]);
        let c = load(&ServeArgs::default(), &env).unwrap();
        assert_eq!(c.listen.port(), 8631);
        assert_eq!(c.public_url, None);
    }

    #[test]
    fn unknown_keys_are_errors() {
        for text in ["data_dirr = \"x\"\n", "[limits]\nmax_segmnt_size = 5\n"] {
            let (_dir, path) = write_toml(text);
            let mut args = ServeArgs::default();
            args.common.config = Some(path);
            let e = load(&args, &env_of(&[])).unwrap_err().0;
            let key = text
                .split(['\n', ' '])
                .find(|w| w.contains("mnt") || w.contains("dirr"));
            assert!(e.contains(key.unwrap()), "{e}");
        }
    }

    #[test]
    fn errors_name_setting_and_source() {
        let mut args = ServeArgs::default();
        args.limits.max_segment_size = Some("0".into());
        let e = load(&args, &env_of(&[])).unwrap_err().0;
        assert!(
            e.contains("max_segment_size") && e.contains("flag --max-segment-size"),
            "{e}"
        );

        let e = load(
            &ServeArgs::default(),
            &env_of(&[("UPSPOOL_SESSION_TTL", "forever")]),
        )
        .unwrap_err()
        .0;
        assert!(
            e.contains("session_ttl") && e.contains("UPSPOOL_SESSION_TTL"),
            "{e}"
        );

        let (_dir, path) = write_toml("[limits]\nmax_document_size = \"1MiB\"\n");
        let mut args = ServeArgs::default();
        args.common.config = Some(path);
        let e = load(&args, &env_of(&[])).unwrap_err().0;
        assert!(
            e.contains("larger than max_document_size") && e.contains("limits.max_document_size"),
            "{e}"
        );

        let e = load(
            &ServeArgs::default(),
            &env_of(&[("UPSPOOL_INSECURE_DEV_AUTH", "maybe")]),
        )
        .unwrap_err()
        .0;
        assert!(e.contains("UPSPOOL_INSECURE_DEV_AUTH"), "{e}");
    }

    #[test]
    fn insecure_dev_auth_layers() {
        let c = load(
            &ServeArgs::default(),
            &env_of(&[("UPSPOOL_INSECURE_DEV_AUTH", "1")]),
        )
        .unwrap();
        assert!(c.insecure_dev_auth);
        let c = load(
            &ServeArgs::default(),
            &env_of(&[("UPSPOOL_INSECURE_DEV_AUTH", "false")]),
        )
        .unwrap();
        assert!(!c.insecure_dev_auth);
        let args = ServeArgs {
            insecure_dev_auth: true,
            ..ServeArgs::default()
        };
        assert!(
            load(&args, &env_of(&[("UPSPOOL_INSECURE_DEV_AUTH", "0")]))
                .unwrap()
                .insecure_dev_auth
        );
    }

    /// Direct I/O is on unless the file, the environment or the flag says off (in that order
    /// of precedence, lowest first), and a value that is not a boolean is refused by name.
    #[test]
    fn direct_io_layers() {
        let (_dir, path) = write_toml("direct_io = false\n");
        let file = [("UPSPOOL_CONFIG", path.to_str().unwrap())];
        assert!(
            !load(&ServeArgs::default(), &env_of(&file))
                .unwrap()
                .direct_io
        );
        let env = env_of(&[file[0], ("UPSPOOL_DIRECT_IO", "on")]);
        assert!(load(&ServeArgs::default(), &env).unwrap().direct_io);
        let args = ServeArgs {
            direct_io: Some("off".into()),
            ..ServeArgs::default()
        };
        assert!(!load(&args, &env).unwrap().direct_io);
        let e = load(
            &ServeArgs::default(),
            &env_of(&[("UPSPOOL_DIRECT_IO", "sometimes")]),
        )
        .unwrap_err()
        .0;
        assert!(e.contains("UPSPOOL_DIRECT_IO"), "{e}");
    }

    #[test]
    fn identity_layers_and_checks() {
        let c = load(&ServeArgs::default(), &env_of(&[])).unwrap();
        assert_eq!(
            c.identity,
            IdentityConfig {
                embedded: true,
                external: None,
                admin_group: None,
            }
        );

        // A file's relative JWKS path is relative to the file; flags beat the environment.
        let (dir, path) = write_toml(
            "admin_group = \"admins\"\n[oidc]\nissuer = \"https://idp/\"\n\
             audience = \"a, b\"\njwks = \"keys.json\"\n",
        );
        let mut args = ServeArgs::default();
        args.common.config = Some(path);
        args.identity.oidc_tenant = Some("t1".into());
        let c = load(&args, &env_of(&[("UPSPOOL_OIDC_TENANT", "t2")])).unwrap();
        assert_eq!(
            c.identity.external,
            Some(ExternalIssuer {
                issuer: "https://idp/".into(),
                audiences: vec!["a".into(), "b".into()],
                jwks: JwksLocation::File(dir.path().join("keys.json")),
                tenant: Some("t1".into()),
            })
        );
        assert_eq!(c.identity.admin_group.as_deref(), Some("admins"));

        let c = load(
            &ServeArgs::default(),
            &env_of(&[
                ("UPSPOOL_OIDC_ISSUER", "https://idp/"),
                ("UPSPOOL_OIDC_AUDIENCE", "a"),
                ("UPSPOOL_OIDC_JWKS", "https://idp/keys"),
                ("UPSPOOL_DISABLE_EMBEDDED_ISSUER", "true"),
            ]),
        )
        .unwrap();
        assert!(!c.identity.embedded);
        assert_eq!(
            c.identity.external.unwrap().jwks,
            JwksLocation::Url("https://idp/keys".into())
        );

        // Half an external issuer, or no issuer at all, is an error.
        let e = load(
            &ServeArgs::default(),
            &env_of(&[("UPSPOOL_OIDC_ISSUER", "https://idp/")]),
        )
        .unwrap_err()
        .0;
        assert!(e.contains("oidc.jwks"), "{e}");
        let mut args = ServeArgs::default();
        args.identity.disable_embedded_issuer = true;
        let e = load(&args, &env_of(&[])).unwrap_err().0;
        assert!(e.contains("no external issuer"), "{e}");
    }

    #[test]
    fn tls_needs_both_files_and_a_listener() {
        let mut args = ServeArgs {
            tls_listen: Some("127.0.0.1:0".into()),
            tls_cert: Some("c.pem".into()),
            ..ServeArgs::default()
        };
        assert!(load(&args, &env_of(&[]))
            .unwrap_err()
            .0
            .contains("--tls-key"));
        args.tls_listen = None;
        args.tls_key = Some("k.pem".into());
        assert!(load(&args, &env_of(&[]))
            .unwrap_err()
            .0
            .contains("tls_listen"));
        let args = ServeArgs {
            tls_listen: Some("127.0.0.1:0".into()),
            ..ServeArgs::default()
        };
        assert_eq!(
            load(&args, &env_of(&[])).unwrap().tls.unwrap().identity,
            TlsIdentity::SelfSigned
        );
    }

    #[test]
    fn public_url_is_checked_and_trimmed() {
        let args = ServeArgs {
            public_url: Some("https://print.example.org/".into()),
            ..ServeArgs::default()
        };
        assert_eq!(
            load(&args, &env_of(&[])).unwrap().public_url.as_deref(),
            Some("https://print.example.org")
        );
        for bad in ["print.example.org", "ftp://x", "https://", "https://x y"] {
            let args = ServeArgs {
                public_url: Some(bad.into()),
                ..ServeArgs::default()
            };
            assert!(load(&args, &env_of(&[])).is_err(), "{bad}");
        }
    }
}
