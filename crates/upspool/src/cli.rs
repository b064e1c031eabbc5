//! The command line, as clap derive types. Values stay raw strings here: `config` layers them
//! over the environment and the TOML file and parses them, so that an error can name where a
//! bad value came from.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(
    name = "upspool",
    version,
    about = "A self-hosted print server speaking the Microsoft Graph Universal Print API.",
    after_help = "Settings are taken from flags, then UPSPOOL_* environment variables, then the \
                  TOML file given by --config / UPSPOOL_CONFIG, then defaults."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the print server.
    Serve(Box<ServeArgs>),
    /// Manage printers and shares directly in the data directory.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Print a bearer token signed by the embedded issuer (the data directory's key).
    Token(Box<TokenArgs>),
    /// Print a file: create a job, upload the file (parallel, resumable), start the job.
    Print(Box<PrintArgs>),
    /// List the printers (administrators).
    Printers(Box<ListArgs>),
    /// List the printer shares you can print to.
    Shares(Box<ListArgs>),
    /// List print jobs of a share or printer.
    Jobs(Box<JobsArgs>),
    /// Show one print job.
    Job(Box<JobArgs>),
    /// Cancel a print job.
    Cancel(Box<JobArgs>),
}

/// How the client commands reach the service. Flags win over environment variables, which
/// win over the client configuration file.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Connection")]
pub struct ConnectArgs {
    /// Base URL of the service, e.g. https://graph.microsoft.com [env: UPSPOOL_SERVER] [default: http://127.0.0.1:8631]
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Bearer token [env: UPSPOOL_TOKEN] [default: the output of the configured token_command]
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Also trust this PEM CA certificate (besides the system roots) [env: UPSPOOL_CA_CERT]
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Client configuration file [env: UPSPOOL_CLIENT_CONFIG] [default: $XDG_CONFIG_HOME/upspool/client.toml]
    #[arg(long, value_name = "FILE")]
    pub client_config: Option<PathBuf>,
    /// Machine-readable JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// `upspool printers`, `upspool shares`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Where a job goes or is looked for: a share (by id or display name) or a printer.
#[derive(Debug, Default, Args)]
#[group(multiple = false)]
pub struct TargetArgs {
    /// Printer share id or display name
    #[arg(long, value_name = "ID|NAME")]
    pub share: Option<String>,
    /// Printer id (printing to a printer directly needs printer permissions)
    #[arg(long, value_name = "ID")]
    pub printer: Option<String>,
}

/// `upspool jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `upspool job ID`, `upspool cancel ID`.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// Job id
    pub id: String,
    /// Where the job is (default: looked up on every visible share and printer)
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `upspool print`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("where").required(true).args(["share", "printer"])))]
pub struct PrintArgs {
    /// The document: PDF, XPS/OXPS, PostScript, plain text or an image
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Printer share id or display name
    #[arg(long, value_name = "ID|NAME")]
    pub share: Option<String>,
    /// Printer id
    #[arg(long, value_name = "ID")]
    pub printer: Option<String>,
    /// Number of copies (1-999)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..=999))]
    pub copies: Option<i32>,
    /// Two-sided printing
    #[arg(long, value_enum, value_name = "MODE")]
    pub duplex: Option<Duplex>,
    /// Color mode
    #[arg(long, value_enum, value_name = "MODE")]
    pub color: Option<ColorMode>,
    /// Page orientation
    #[arg(long, value_enum, value_name = "O")]
    pub orientation: Option<Orientation>,
    /// Pages to print, e.g. 1-3,5
    #[arg(long, value_name = "RANGES")]
    pub pages: Option<String>,
    /// Media size, e.g. "ISO A4" or "North America Letter"
    #[arg(long, value_name = "SIZE")]
    pub media: Option<String>,
    /// Resolution in dots per inch
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    pub dpi: Option<i32>,
    /// MIME type to send instead of the detected one (skips the content check)
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,
    /// Follow the job to its end; exit 3 unless it completed
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (exit 3) [default: no limit]
    #[arg(long, value_name = "DURATION", requires = "wait")]
    pub wait_timeout: Option<String>,
    /// Concurrent upload streams
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub streams: u16,
    /// Largest upload segment [default: 5MiB]
    #[arg(long, value_name = "SIZE")]
    pub segment_size: Option<String>,
    /// Retries of a failing request before giving up
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub retries: u32,
    /// Start a new job even if an interrupted upload of this file could be resumed
    #[arg(long)]
    pub no_resume: bool,
    /// No progress output
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Duplex {
    /// oneSided
    OneSided,
    /// flipOnLongEdge
    LongEdge,
    /// flipOnShortEdge
    ShortEdge,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ColorMode {
    Color,
    /// blackAndWhite
    Bw,
    Grayscale,
    Auto,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Orientation {
    Portrait,
    Landscape,
    ReversePortrait,
    ReverseLandscape,
}

/// Where the configuration comes from; shared by every command.
#[derive(Debug, Default, Args)]
pub struct CommonArgs {
    /// TOML configuration file [env: UPSPOOL_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of the database and document bytes [env: UPSPOOL_DATA_DIR] [default: ./upspool-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
}

#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Plain HTTP listen address [env: UPSPOOL_LISTEN] [default: 127.0.0.1:8631]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Base URL of uploadUrl and @odata links [env: UPSPOOL_PUBLIC_URL] [default: from the bound address]
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Also serve HTTPS on this address [env: UPSPOOL_TLS_LISTEN]
    #[arg(long, value_name = "ADDR")]
    pub tls_listen: Option<String>,
    /// PEM certificate chain for HTTPS [env: UPSPOOL_TLS_CERT] [default: self-signed in DATA_DIR/tls]
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<String>,
    /// PEM private key for HTTPS [env: UPSPOOL_TLS_KEY]
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<String>,
    /// Accept every request as a fixed development user. Never in production [env: UPSPOOL_INSECURE_DEV_AUTH]
    #[arg(long)]
    pub insecure_dev_auth: bool,
    /// Log format on stderr: text or json [env: UPSPOOL_LOG_FORMAT] [default: text]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// How long a shutdown waits for in-flight requests [env: UPSPOOL_SHUTDOWN_TIMEOUT] [default: 30s]
    #[arg(long, value_name = "DURATION")]
    pub shutdown_timeout: Option<String>,
    /// Write whole pages of documents straight to the disk, bypassing the page cache: on or off [env: UPSPOOL_DIRECT_IO] [default: on]
    #[arg(long, value_name = "BOOL")]
    pub direct_io: Option<String>,
    #[command(flatten)]
    pub identity: IdentityArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Identity")]
pub struct IdentityArgs {
    /// Do not trust the embedded issuer's tokens (`upspool token`) [env: UPSPOOL_DISABLE_EMBEDDED_ISSUER]
    #[arg(long)]
    pub disable_embedded_issuer: bool,
    /// Object id of the group whose members are printer administrators [env: UPSPOOL_ADMIN_GROUP]
    #[arg(long, value_name = "GROUP")]
    pub admin_group: Option<String>,
    /// Issuer (`iss`) of an external OIDC provider, e.g. https://login.microsoftonline.com/{tenant}/v2.0 [env: UPSPOOL_OIDC_ISSUER]
    #[arg(long, value_name = "URL")]
    pub oidc_issuer: Option<String>,
    /// Accepted audiences (`aud`) of external tokens, comma-separated [env: UPSPOOL_OIDC_AUDIENCE]
    #[arg(long, value_name = "AUD")]
    pub oidc_audience: Option<String>,
    /// JWKS of the external issuer: an http(s) URL or a file [env: UPSPOOL_OIDC_JWKS]
    #[arg(long, value_name = "URL|FILE")]
    pub oidc_jwks: Option<String>,
    /// Required tenant (`tid`) of external tokens [env: UPSPOOL_OIDC_TENANT]
    #[arg(long, value_name = "ID")]
    pub oidc_tenant: Option<String>,
}

/// `upspool token`: a token from the embedded issuer.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["user", "app"])))]
pub struct TokenArgs {
    /// A delegated token for this user (their user principal name)
    #[arg(long, value_name = "UPN", requires = "scopes")]
    pub user: Option<String>,
    /// Space- or comma-separated delegated scopes, e.g. "PrintJob.ReadWrite"
    #[arg(long, value_name = "SCOPES", requires = "user")]
    pub scopes: Option<String>,
    /// Comma-separated group ids of the user
    #[arg(long, value_name = "GROUPS", requires = "user")]
    pub groups: Option<String>,
    /// An application token for this app name
    #[arg(long, value_name = "NAME", requires = "roles")]
    pub app: Option<String>,
    /// Space- or comma-separated application roles, e.g. "PrintJob.ReadWrite.All"
    #[arg(long, value_name = "ROLES", requires = "app")]
    pub roles: Option<String>,
    /// Lifetime of the token
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub ttl: String,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitArgs {
    /// Largest document an upload session may declare [env: UPSPOOL_MAX_DOCUMENT_SIZE] [default: 4GiB]
    #[arg(long, value_name = "SIZE")]
    pub max_document_size: Option<String>,
    /// Largest body of one upload request [env: UPSPOOL_MAX_SEGMENT_SIZE] [default: 60MiB]
    #[arg(long, value_name = "SIZE")]
    pub max_segment_size: Option<String>,
    /// Most separate ranges an upload session's received bytes may fall into, 0 for no bound [env: UPSPOOL_MAX_SESSION_RANGES] [default: 10000]
    #[arg(long, value_name = "N")]
    pub max_session_ranges: Option<String>,
    /// Sliding lifetime of an upload session [env: UPSPOOL_SESSION_TTL] [default: 24h]
    #[arg(long, value_name = "DURATION")]
    pub session_ttl: Option<String>,
    /// Longest life of an upload session, however active [env: UPSPOOL_SESSION_HARD_CAP] [default: 7d]
    #[arg(long, value_name = "DURATION")]
    pub session_hard_cap: Option<String>,
    /// How long a completed session answers replays [env: UPSPOOL_REPLAY_GRACE] [default: 10m]
    #[arg(long, value_name = "DURATION")]
    pub replay_grace: Option<String>,
    /// Lifetime of a pre-authenticated download URL [env: UPSPOOL_DOWNLOAD_URL_TTL] [default: 10m]
    #[arg(long, value_name = "DURATION")]
    pub download_url_ttl: Option<String>,
    /// Time between two clean-up sweeps [env: UPSPOOL_SWEEP_INTERVAL] [default: 60s]
    #[arg(long, value_name = "DURATION")]
    pub sweep_interval: Option<String>,
    /// Total declared size of all stored documents and sessions [env: UPSPOOL_STORAGE_QUOTA] [default: none]
    #[arg(long, value_name = "SIZE")]
    pub storage_quota: Option<String>,
    /// Longest time to receive a request's headers [env: UPSPOOL_HEADER_READ_TIMEOUT] [default: 30s]
    #[arg(long, value_name = "DURATION")]
    pub header_read_timeout: Option<String>,
    /// Largest request head (request line and headers) [env: UPSPOOL_MAX_HEADER_SIZE] [default: 64KiB]
    #[arg(long, value_name = "SIZE")]
    pub max_header_size: Option<String>,
    /// Memory kept for upload blocks in huge pages, whole 2 MiB pages; uploads past it use ordinary memory (slower direct writes), 0 for none [env: UPSPOOL_UPLOAD_BUFFER_POOL] [default: 32MiB]
    #[arg(long, value_name = "SIZE")]
    pub upload_buffer_pool: Option<String>,
    /// Longest pause inside an upload body [env: UPSPOOL_BODY_IDLE_TIMEOUT] [default: 60s]
    #[arg(long, value_name = "DURATION")]
    pub body_idle_timeout: Option<String>,
    /// Concurrent segment requests per upload session, 0 for no bound [env: UPSPOOL_MAX_REQUESTS_PER_SESSION] [default: 16]
    #[arg(long, value_name = "N")]
    pub max_requests_per_session: Option<String>,
    /// Concurrent requests per client IP address, 0 for no bound [env: UPSPOOL_MAX_REQUESTS_PER_CALLER] [default: 256]
    #[arg(long, value_name = "N")]
    pub max_requests_per_caller: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Printers.
    #[command(subcommand)]
    Printer(PrinterCommand),
    /// Printer shares.
    #[command(subcommand)]
    Share(ShareCommand),
}

#[derive(Debug, Subcommand)]
pub enum PrinterCommand {
    /// Create a printer and print it as JSON.
    Add {
        /// Display name.
        #[arg(long)]
        name: String,
        #[arg(long)]
        manufacturer: Option<String>,
        #[arg(long)]
        model: Option<String>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Print every printer as a JSON array.
    List {
        #[command(flatten)]
        common: CommonArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ShareCommand {
    /// Create a share of a printer and print it as JSON.
    Add {
        /// Id of the shared printer.
        #[arg(long, value_name = "ID")]
        printer: Uuid,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Let every user of the tenant print to the share.
        #[arg(long)]
        allow_all_users: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Print every share as a JSON array.
    List {
        #[command(flatten)]
        common: CommonArgs,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
