//! The HTTP server: the routes, the pipeline of `webservice/rest/server.php` (moodle-ws.md
//! §1.4) and a listener whose connections can be reset from inside a handler.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::any;
use axum::serve::{IncomingStream, Listener};
use futures::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::envelope::{Exc, Format, response};
use super::form::{Node, RestRequest, php_array};
use super::functions::{FUNCTIONS, OTHER_FUNCTIONS, Run, WsFunction};
use super::params::validate;
use super::site::Site;
use super::users::{commit_create_users, plan_create_users};
use super::{Fault, lock};

pub(super) fn router(shared: Arc<Mutex<Site>>) -> Router {
    Router::new()
        .route("/webservice/rest/server.php", any(rest_server))
        // The legacy username/password endpoint: a token call there is refused.
        .route("/webservice/rest/simpleserver.php", any(simple_server))
        .route("/", any(front_page))
        .fallback(not_found)
        .with_state(shared)
}

/// Counts a call as in flight until it is answered (or the client gave up).
struct InFlight(Arc<Mutex<Site>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut site = lock(&self.0);
        site.in_flight = site.in_flight.saturating_sub(1);
    }
}

/// `POST /webservice/rest/server.php`: the whole Moodle pipeline (moodle-ws.md §1.4).
async fn rest_server(
    State(shared): State<Arc<Mutex<Site>>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = read_body(body).await;
    let max_input_vars = lock(&shared).cfg.max_input_vars;
    let req = RestRequest::parse(&method, &uri, &headers, &body, max_input_vars);
    // Faults stand for the network and the proxies between client and Moodle, so they come
    // first; the call is recorded (when calls are kept) either way: the client did send it.
    let (fault, latency) = {
        let mut site = lock(&shared);
        if site.cfg.record_calls {
            site.calls.push(req.record());
        }
        site.in_flight += 1;
        site.max_in_flight = site.max_in_flight.max(site.in_flight);
        (site.take_fault(&req.function), site.cfg.latency)
    };
    let _in_flight = InFlight(shared.clone());
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fault {
        Some(Fault::Http503) => return proxy_503(),
        Some(Fault::Hang) => std::future::pending::<()>().await,
        Some(Fault::Reset) => {
            conn.reset();
            // Never reaches the client: writing it fails and the socket is reset.
            return plain(StatusCode::OK, "text/plain", String::new());
        }
        Some(Fault::DmlWrite) => {
            let debug = lock(&shared).cfg.debug;
            return req.format.error(
                &Exc::dml_write("ERROR:  deadlock detected (injected fault)"),
                debug,
            );
        }
        Some(Fault::AfterCommit503) | None => {}
    }
    {
        let site = lock(&shared);
        if site.cfg.cli_maintenance {
            return cli_maintenance_page();
        }
        if site.cfg.rest_disabled {
            return plain(
                StatusCode::FORBIDDEN,
                "text/html; charset=utf-8",
                String::new(),
            );
        }
    }
    let outcome = process(&shared, &req).await;
    if fault == Some(Fault::AfterCommit503) {
        return proxy_503();
    }
    let debug = lock(&shared).cfg.debug;
    let optional = FUNCTIONS
        .iter()
        .find(|f| f.name == req.function)
        .map_or(&[][..], |f| f.absent_optional);
    match outcome {
        Ok(value) => req.format.success(&value, optional),
        Err(exc) => req.format.error(&exc, debug),
    }
}

/// PHP's default `post_max_size`.
const POST_MAX_SIZE: usize = 8 * 1024 * 1024;

/// The request body as PHP sees it: a body over `post_max_size` is thrown away whole (the
/// call then reaches Moodle without parameters), but it is read to the end so the client
/// gets its answer; an unreadable body is no body either.
async fn read_body(body: Body) -> Bytes {
    let mut chunks = body.into_data_stream();
    let mut kept = Vec::new();
    let mut too_big = false;
    while let Some(chunk) = chunks.next().await {
        let Ok(chunk) = chunk else {
            return Bytes::new();
        };
        if !too_big && kept.len() + chunk.len() > POST_MAX_SIZE {
            too_big = true;
            kept = Vec::new();
        }
        if !too_big {
            kept.extend_from_slice(&chunk);
        }
    }
    kept.into()
}

/// Authentication, function lookup, parameter validation, then the function itself.
async fn process(shared: &Mutex<Site>, req: &RestRequest) -> Result<Value, Exc> {
    let (function, params, delay) = {
        let site = lock(shared);
        site.authenticate(req)?;
        let function = site.lookup_function(&req.function)?;
        let params = validate(&(function.params)(), &Node::Map(req.params.clone()))
            .map_err(Exc::invalid_parameter)?;
        (function, params, site.cfg.create_delay)
    };
    match function.run {
        Run::Sync(run) => run(&mut lock(shared), &params),
        Run::CreateUsers => {
            // Moodle checks usernames and emails, then inserts: two requests can interleave.
            if delay.is_zero() {
                let mut site = lock(shared);
                let planned = plan_create_users(&site, &params)?;
                commit_create_users(&mut site, planned)
            } else {
                let planned = plan_create_users(&lock(shared), &params)?;
                tokio::time::sleep(delay).await;
                commit_create_users(&mut lock(shared), planned)
            }
        }
    }
}

impl Site {
    /// `webservice_server::authenticate_user` for a permanent token.
    fn authenticate(&self, req: &RestRequest) -> Result<(), Exc> {
        if !self.cfg.token_valid || req.token.as_deref() != Some(self.token.as_str()) {
            return Err(Exc::moodle(
                "invalidtoken",
                "Invalid token - token not found",
            ));
        }
        if self.cfg.site_maintenance {
            return Err(Exc::moodle(
                "sitemaintenance",
                "The site is undergoing maintenance and is currently not available",
            ));
        }
        if !self.can("webservice/rest:use") {
            return Err(Exc::access("Missing capability: webservice/rest:use"));
        }
        Ok(())
    }

    /// `webservice_server::load_function_info`.
    fn lookup_function(&self, name: &str) -> Result<&'static WsFunction, Exc> {
        if name.is_empty() {
            return Err(Exc::invalid_parameter("Missing function name".into()));
        }
        let Some(function) = FUNCTIONS.iter().find(|f| f.name == name) else {
            if OTHER_FUNCTIONS.contains(&name) {
                return Err(Exc::access(&not_in_service(name)));
            }
            let debuginfo = format!(
                "SELECT * FROM {{external_functions}} WHERE name = ?\n[array (\n  0 => '{name}',\n)]"
            );
            return Err(Exc::new(
                "dml_missing_record_exception",
                Some("invalidrecord"),
                "Can't find data record in database table external_functions.",
            )
            .debug(debuginfo));
        };
        if !self.cfg.service.contains(&function.name) {
            return Err(Exc::access(&not_in_service(name)));
        }
        Ok(function)
    }
}

fn not_in_service(name: &str) -> String {
    format!(
        "Access to the function {name}() is not allowed.\nThere could be multiple reasons for \
         this:\n1. The service linked to the user token does not contain the function.\n2. The \
         service is user-restricted and the user is not listed.\n3. The service is IP-restricted \
         and the user IP is not listed.\n4. The service is time-restricted and the time has \
         expired.\n5. The token is time-restricted and the time has expired.\n6. The service \
         requires a specific capability which the user does not have.\n7. The function is called \
         with username/password (no user token is sent)\nand none of the above restrictions is \
         met.\nConsult the administrator to resolve this issue."
    )
}

async fn simple_server(State(shared): State<Arc<Mutex<Site>>>, uri: Uri, body: Body) -> Response {
    let body = read_body(body).await;
    let (cli, debug, max_input_vars) = {
        let site = lock(&shared);
        let cfg = &site.cfg;
        (cfg.cli_maintenance, cfg.debug, cfg.max_input_vars)
    };
    if cli {
        return cli_maintenance_page();
    }
    let query = uri.query().unwrap_or("").as_bytes();
    let format = Format::of(&php_array(query, &body, max_input_vars));
    format.error(&Exc::access("Wrong username or password"), debug)
}

async fn front_page(State(shared): State<Arc<Mutex<Site>>>) -> Response {
    if lock(&shared).cfg.cli_maintenance {
        return cli_maintenance_page();
    }
    let html = "<!DOCTYPE html>\n<html dir=\"ltr\" lang=\"en\">\n<head><title>Home | Fake Moodle</title>\
                </head>\n<body><h1>Fake Moodle</h1><p>You are not logged in.</p></body>\n</html>\n";
    plain(StatusCode::OK, "text/html; charset=utf-8", html.into())
}

async fn not_found(State(shared): State<Arc<Mutex<Site>>>) -> Response {
    if lock(&shared).cfg.cli_maintenance {
        return cli_maintenance_page();
    }
    let html = "<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n<body><h1>Not Found\
                </h1><p>The requested URL was not found on this server.</p></body></html>\n";
    plain(
        StatusCode::NOT_FOUND,
        "text/html; charset=utf-8",
        html.into(),
    )
}

fn cli_maintenance_page() -> Response {
    let html = "<!DOCTYPE html>\n<html><head><title>Maintenance</title></head>\n<body><h1>Site is \
                being upgraded, please retry later.</h1></body></html>\n";
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::RETRY_AFTER, "300"),
    ];
    response(StatusCode::SERVICE_UNAVAILABLE, &headers, html.into())
}

fn proxy_503() -> Response {
    let html = "<html>\n<head><title>503 Service Temporarily Unavailable</title></head>\n<body>\n\
                <center><h1>503 Service Temporarily Unavailable</h1></center>\n</body>\n</html>\n";
    plain(StatusCode::SERVICE_UNAVAILABLE, "text/html", html.into())
}

fn plain(status: StatusCode, content_type: &'static str, body: String) -> Response {
    response(status, &[(header::CONTENT_TYPE, content_type)], body)
}

/// A TCP listener whose connections can be reset from inside a handler ([`Fault::Reset`]).
pub(super) struct ResettableListener(pub(super) TcpListener);

/// Per-connection handle given to handlers through `ConnectInfo`.
#[derive(Clone, Debug)]
pub(super) struct Conn {
    pub(super) reset: Arc<AtomicBool>,
}

impl Conn {
    /// Makes the connection fail on its next read or write; the socket is closed with RST.
    fn reset(&self) {
        self.reset.store(true, Ordering::SeqCst);
    }
}

impl Listener for ResettableListener {
    type Io = ResettableStream;
    type Addr = Conn;

    async fn accept(&mut self) -> (ResettableStream, Conn) {
        loop {
            match self.0.accept().await {
                Ok((stream, _)) => {
                    let conn = Conn {
                        reset: Arc::new(AtomicBool::new(false)),
                    };
                    let io = ResettableStream {
                        inner: stream,
                        reset: conn.reset.clone(),
                    };
                    return (io, conn);
                }
                // Out of file descriptors and the like: wait, as axum's own listener does.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    /// Only `Serve::local_addr` asks for this; a connection handle is not an address, but
    /// `Listener` ties both to one type, so the answer is a handle nobody can reset.
    fn local_addr(&self) -> io::Result<Conn> {
        self.0.local_addr().map(|_: SocketAddr| Conn {
            reset: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl Connected<IncomingStream<'_, ResettableListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, ResettableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A `TcpStream` that turns into a connection reset once its [`Conn`] says so.
pub(super) struct ResettableStream {
    pub(super) inner: TcpStream,
    pub(super) reset: Arc<AtomicBool>,
}

impl ResettableStream {
    fn check(&self) -> io::Result<()> {
        if self.reset.load(Ordering::SeqCst) {
            // SO_LINGER 0: closing the socket sends RST instead of FIN, like a crashed server.
            let _ = self.inner.set_zero_linger();
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "fault injected: reset",
            ))
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = self.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
