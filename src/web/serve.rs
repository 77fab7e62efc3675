//! The console's listener: plain HTTP on loopback (or behind a reverse proxy), or HTTPS with the
//! configured certificate (TLS 1.3, the `ring` provider). Every answer carries the security
//! headers (strict CSP, no framing, no sniffing, no referrer across origins); bodies and request
//! times are bounded; shutdown drains in-flight requests and ends live streams.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::{IncomingStream, Listener};
use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;

use super::layout::CSP;
use super::pages::{admin, create, glance, list, login, referrals, ticket};
use super::{live, WebState};
use crate::api::error::ApiError;
use crate::config::Config;

/// Why the console could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot bind web address {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate or key is missing, unreadable, too open, or invalid.
    #[error("web TLS: {0}")]
    Tls(String),
}

/// The client's address, as the login rate limiter sees it.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, TcpListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

const STATIC_CSS: &str = include_str!("static/app.css");
const STATIC_JS: &str = include_str!("static/app.js");

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        body,
    )
        .into_response()
}

async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    r
}

async fn not_found() -> super::error::WebError {
    ApiError::NotFound("no such page".into()).into()
}

/// The console's routes with their limits (body size, request time) and security headers.
pub fn router(state: WebState) -> Router {
    let timeout = Duration::from_secs(state.app.config.web.request_timeout_secs);
    let max_body = state.app.config.web.max_body_bytes;
    let pages = Router::new()
        .route("/", get(glance::home))
        .route("/glance", get(glance::fragment))
        .route("/watch", post(glance::watch))
        .route("/tickets", get(list::list).post(create::submit))
        .route("/tickets/new", get(create::form))
        .route("/tickets/{number}", get(ticket::show))
        .route("/tickets/{number}/note", post(ticket::note))
        .route("/tickets/{number}/set", post(ticket::set))
        .route("/tickets/{number}/take", post(ticket::take))
        .route("/tickets/{number}/resolve", post(ticket::resolve))
        .route("/tickets/{number}/close", post(ticket::close))
        .route("/tickets/{number}/reopen", post(ticket::reopen))
        .route("/tickets/{number}/timer", post(ticket::timer))
        .route(
            "/tickets/{number}/timers/{which}/{action}",
            post(ticket::timer_action),
        )
        .route("/tickets/{number}/notes/{id}", get(ticket::full_note))
        .route(
            "/tickets/{number}/attachments/{id}",
            get(ticket::attachment),
        )
        .route("/tickets/{number}/link", post(ticket::link))
        .route("/referrals", get(referrals::list))
        .route("/admin/peers", get(admin::peers))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .layer(axum::middleware::from_fn(move |req, next| {
            crate::api::error::with_timeout(timeout, req, next)
        }));
    Router::new()
        .route("/events", get(live::events))
        .route(
            "/static/app.css",
            get(|| async { asset("text/css; charset=utf-8", STATIC_CSS) }),
        )
        .route(
            "/static/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", STATIC_JS) }),
        )
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .merge(pages)
        .fallback(not_found)
        .with_state(state)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(axum::middleware::from_fn(request_span))
}

/// One span per request (the operator is logged by the handlers that know it).
async fn request_span(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument;
    let span = tracing::info_span!("web", method = %req.method(), path = %req.uri().path());
    next.run(req).instrument(span).await
}

/// Loads the console's TLS certificate and key (the key must be 0600) into a TLS 1.3 config.
fn tls_config(
    dir: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    use rustls_pki_types::pem::PemObject;
    let tls = |e: &dyn std::fmt::Display| ServeError::Tls(e.to_string());
    let cert = Config::resolve(dir, cert);
    let key = Config::resolve(dir, key);
    let certs = crate::pki::files::read(&cert, "give web.tls_cert a PEM certificate chain")
        .map_err(|e| tls(&e))?;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&certs)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServeError::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ServeError::Tls(format!(
            "{}: no PEM CERTIFICATE block",
            cert.display()
        )));
    }
    let key_pem =
        crate::pki::files::read_secret(&key, "give web.tls_key a PEM private key (mode 0600)")
            .map_err(|e| tls(&e))?;
    let key_der = rustls_pki_types::PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| ServeError::Tls(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls(&e))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// HTTPS: handshakes run in their own tasks (bounded in number and time), so a slow client
/// holds up nobody; finished ones queue for the server.
struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

/// Most TLS handshakes in progress at once, and the time one may take.
const MAX_HANDSHAKES: usize = 256;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl TlsListener {
    fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (stream, addr) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "web accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, addr)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(client = %addr, error = %e, "web TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(client = %addr, "web TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { ready, local })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task has ended: wait for shutdown.
            None => std::future::pending().await,
        }
    }
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// A started console: its address and its server task.
pub struct Started {
    /// The address actually bound.
    pub addr: SocketAddr,
    /// `true` when it speaks HTTPS itself.
    pub tls: bool,
    /// The server; ends after shutdown and draining.
    pub task: JoinHandle<()>,
}

impl Started {
    /// The console's URL (`http://127.0.0.1:PORT/` or `https://...`).
    pub fn url(&self) -> String {
        format!(
            "{}://{}/",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }
}

/// Binds and starts the console when `[web]` enables it; bad TLS material fails here, before
/// the node reports itself started.
pub async fn start(
    dir: &Path,
    state: WebState,
    shutdown: watch::Receiver<bool>,
) -> Result<Option<Started>, ServeError> {
    let web = state.app.config.web.clone();
    if !web.enabled {
        return Ok(None);
    }
    let tls = match (&web.tls_cert, &web.tls_key) {
        (Some(c), Some(k)) => Some(tls_config(dir, c, k)?),
        _ => None,
    };
    let tcp = TcpListener::bind(web.addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: web.addr,
            source,
        })?;
    let addr = tcp.local_addr().map_err(|source| ServeError::Bind {
        addr: web.addr,
        source,
    })?;
    let grace = Duration::from_secs(state.app.config.api.shutdown_grace_secs);
    let app = router(state).into_make_service_with_connect_info::<ClientAddr>();
    let is_tls = tls.is_some();
    let task = match tls {
        Some(config) => {
            let listener = TlsListener::new(tcp, config)
                .map_err(|source| ServeError::Bind { addr, source })?;
            let server =
                axum::serve(listener, app).with_graceful_shutdown(wait_for(shutdown.clone()));
            tokio::spawn(drain(server.into_future(), shutdown, grace))
        }
        None => {
            let server = axum::serve(tcp, app).with_graceful_shutdown(wait_for(shutdown.clone()));
            tokio::spawn(drain(server.into_future(), shutdown, grace))
        }
    };
    tracing::info!(%addr, tls = is_tls, behind_proxy = web.behind_proxy, "web console listening");
    Ok(Some(Started {
        addr,
        tls: is_tls,
        task,
    }))
}

async fn wait_for(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Runs the server; once shutdown begins, in-flight requests get `grace` to finish.
async fn drain(
    server: impl std::future::Future<Output = std::io::Result<()>>,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut server = std::pin::pin!(server);
    tokio::select! {
        r = &mut server => if let Err(e) = r { tracing::error!(error = %e, "web server failed") },
        _ = wait_for(shutdown) => {
            if tokio::time::timeout(grace, server).await.is_err() {
                tracing::warn!(?grace, "web requests did not finish within the grace period");
            }
        }
    }
}
