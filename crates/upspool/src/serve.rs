//! `upspool serve`: opens the stores, binds the listeners, serves the HTTP application on them
//! with axum-server, runs the sweeper, and shuts down gracefully on SIGINT/SIGTERM.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::RustlsAcceptor;
use axum_server::Handle;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::watch;
use upspool_blob_fs::FsBlobStore;
use upspool_domain::PrintService;
use upspool_http::{AppState, HttpConfig};
use upspool_store_sqlite::SqliteStore;

use crate::config::Config;
use crate::tls;

/// Creates a directory and its missing parents, mode 0700 on unix. An existing directory is
/// left as it is.
pub fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(path)
        .with_context(|| format!("cannot create the directory {}", path.display()))
}

/// The service over the stores of a data directory.
pub struct Opened {
    /// Absolute.
    pub data_dir: PathBuf,
    pub service: Arc<PrintService>,
    meta: Arc<SqliteStore>,
    /// Whether the byte store writes without the page cache (after its startup probe).
    direct_io: bool,
}

impl Opened {
    /// Closes the metadata store (checkpointing its WAL).
    pub async fn close(&self) {
        self.meta.close().await;
    }
}

/// Creates the data directory if needed and opens `upspool.db` and `blobs/` in it.
pub async fn open(config: &Config) -> anyhow::Result<Opened> {
    let data_dir = std::path::absolute(&config.data_dir).with_context(|| {
        format!(
            "cannot resolve the data directory {}",
            config.data_dir.display()
        )
    })?;
    create_private_dir(&data_dir).context("cannot create the data directory")?;
    let db = data_dir.join("upspool.db");
    let meta = SqliteStore::open(&db)
        .await
        .with_context(|| format!("cannot open the metadata store {}", db.display()))?;
    let pool = upspool_blob_fs::set_block_pool_limit(
        usize::try_from(config.upload_buffer_pool).unwrap_or(usize::MAX),
    );
    tracing::debug!(bytes = pool, "upload block pool");
    let blob_dir = data_dir.join("blobs");
    let blobs = FsBlobStore::open_with_quota(&blob_dir, config.storage_quota)
        .with_context(|| format!("cannot open the byte store {}", blob_dir.display()))?
        .direct_io(config.direct_io);
    let meta = Arc::new(meta);
    let direct_io = blobs.writes_directly();
    let service = PrintService::new(meta.clone(), Arc::new(blobs), config.limits.clone());
    Ok(Opened {
        data_dir,
        direct_io,
        service: Arc::new(service),
        meta,
    })
}

fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    let listener =
        TcpListener::bind(addr).with_context(|| format!("cannot listen for {what} on {addr}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// An address clients can connect to: an unspecified IP becomes the loopback of its family.
pub fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// The public URL when none is configured: the HTTPS listener if there is one, else HTTP.
pub fn derived_public_url(http: SocketAddr, https: Option<SocketAddr>) -> String {
    match https {
        Some(a) => format!("https://{}", connectable(a)),
        None => format!("http://{}", connectable(http)),
    }
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    if config.insecure_dev_auth {
        tracing::warn!(
            "INSECURE DEV AUTH IS ON: every request is accepted as a fixed development user; \
             never use this outside development"
        );
    }
    if let Some(file) = &config.config_file {
        tracing::info!(file = %file.display(), "configuration file read");
    }

    // Handlers first, so that a signal arriving right after start-up is never fatal.
    let mut signals = Signals::new()?;

    let opened = open(&config).await?;
    tracing::info!(data_dir = %opened.data_dir.display(), direct_io = opened.direct_io, "data directory");

    let tls = match &config.tls {
        Some(t) => {
            let loaded = tls::load(&t.identity, &opened.data_dir).await?;
            if loaded.generated {
                tracing::info!(cert = %loaded.cert_path.display(), "generated a self-signed TLS certificate");
            } else {
                tracing::info!(cert = %loaded.cert_path.display(), "TLS certificate");
            }
            Some((bind(t.listen, "HTTPS")?, loaded))
        }
        None => None,
    };
    let http = bind(config.listen, "HTTP")?;
    let http_addr = http.local_addr()?;
    let https_addr = match &tls {
        Some((l, _)) => Some(l.local_addr()?),
        None => None,
    };
    let public_url = match &config.public_url {
        Some(url) => url.clone(),
        None => derived_public_url(http_addr, https_addr),
    };
    tracing::info!(public_url = %public_url, "public URL");

    let state = AppState::new(
        opened.service.clone(),
        HttpConfig {
            public_url,
            insecure_dev_auth: config.insecure_dev_auth,
            limits: config.http_limits.clone(),
        },
    );
    let state = if config.insecure_dev_auth {
        state
    } else {
        state.with_verifier(crate::identity::verifier(&config, &opened.data_dir)?)
    };
    let make_service = upspool_http::make_service(state);

    let handle = Handle::new();
    // TCP_NODELAY, as most HTTP servers set it: a small answer (a 202 after a segment) goes
    // out at once instead of waiting on Nagle's algorithm for the client's ACK.
    let mut http_server = axum_server::from_tcp(http)
        .acceptor(NoDelayAcceptor::new())
        .handle(handle.clone());
    bound_heads(http_server.http_builder(), &config);
    let http_server = http_server.serve(make_service.clone());
    let https_server = tls.map(|(listener, loaded)| {
        let mut server = axum_server::from_tcp(listener)
            .acceptor(RustlsAcceptor::new(loaded.config).acceptor(NoDelayAcceptor::new()))
            .handle(handle.clone());
        bound_heads(server.http_builder(), &config);
        server.serve(make_service.clone())
    });

    // The plain HTTP line comes last, so a reader knows every listener is announced once it
    // has seen it.
    {
        let mut out = std::io::stdout().lock();
        if let Some(a) = https_addr {
            writeln!(out, "upspool listening on https://{a}")?;
        }
        writeln!(out, "upspool listening on http://{http_addr}")?;
        out.flush()?;
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let sweeper = tokio::spawn(sweep_loop(
        opened.service.clone(),
        config.sweep_interval,
        stop_rx,
    ));

    let servers = async {
        match https_server {
            Some(https) => tokio::try_join!(http_server, https).map(drop),
            None => http_server.await,
        }
    };
    tokio::pin!(servers);

    let signal = tokio::select! {
        result = &mut servers => {
            let _ = stop_tx.send(true);
            let _ = sweeper.await;
            opened.close().await;
            result.context("the server failed")?;
            anyhow::bail!("the server stopped unexpectedly");
        }
        signal = signals.next() => signal,
    };
    tracing::info!(
        signal,
        timeout = %humantime::format_duration(config.shutdown_timeout),
        "shutting down: no new connections, waiting for requests in flight"
    );
    let drain_started = std::time::Instant::now();
    handle.graceful_shutdown(Some(config.shutdown_timeout));
    let _ = stop_tx.send(true);

    let result = tokio::select! {
        result = &mut servers => result,
        signal = signals.next() => {
            tracing::warn!(signal, "second signal: closing every connection now");
            handle.shutdown();
            servers.await
        }
    };
    if let Err(e) = sweeper.await {
        tracing::error!(error = %e, "the sweeper task failed");
    }
    if drain_started.elapsed() >= config.shutdown_timeout {
        tracing::warn!("the shutdown timeout passed: requests still in flight were cut off");
    }
    opened.close().await;
    result.context("the server failed while shutting down")?;
    tracing::info!("stopped");
    Ok(())
}

/// Bounds how long and how large a request head may be, so that a client trickling or
/// inflating its headers is cut off (the connection is closed, or hyper answers 431).
fn bound_heads(
    builder: &mut hyper_util::server::conn::auto::Builder<TokioExecutor>,
    config: &Config,
) {
    let max = usize::try_from(config.max_header_size).unwrap_or(usize::MAX);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(max);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(max).unwrap_or(u32::MAX));
}

/// Calls the sweeper every `interval` until `stop` turns true. A sweep in progress finishes.
async fn sweep_loop(
    service: Arc<PrintService>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        if let Err(e) = service.sweep(chrono::Utc::now()).await {
            tracing::error!(error = %e, "sweep failed");
        }
    }
}

/// SIGINT and SIGTERM, installed once.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate())
                    .context("cannot install the SIGTERM handler")?,
                int: signal(SignalKind::interrupt())
                    .context("cannot install the SIGINT handler")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The name of the next signal received.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_url_prefers_https_and_a_connectable_host() {
        let http: SocketAddr = "0.0.0.0:8631".parse().unwrap();
        assert_eq!(derived_public_url(http, None), "http://127.0.0.1:8631");
        let https: SocketAddr = "[::]:8443".parse().unwrap();
        assert_eq!(derived_public_url(http, Some(https)), "https://[::1]:8443");
        let https: SocketAddr = "192.0.2.7:443".parse().unwrap();
        assert_eq!(
            derived_public_url(http, Some(https)),
            "https://192.0.2.7:443"
        );
    }
}
