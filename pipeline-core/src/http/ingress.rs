//! [`Ingress`]: routes, limits and settings, built into an axum router
//! and served. (A little over 400 lines: most of it is the builder
//! methods' doc examples.)

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::Instrument;

use super::request::{from_json, BadRequest, HttpRequest};
use super::respond::{client_status, error_response, handle};
use super::stream::handle_stream;
use super::{expose, metrics, request_id, respond, serve};
use super::{
    DEFAULT_BODY_LIMIT, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_SHUTDOWN_GRACE, DEFAULT_TIMEOUT,
};
use crate::{ItemStream, Pipeline};

/// A deployed pipeline as the inspection endpoints see it.
pub(super) trait Inspect: Send + Sync {
    fn metrics(&self) -> Vec<crate::StepMetrics>;
    fn report(&self) -> Vec<crate::StepReport>;
    fn health(&self) -> crate::Health;
    fn graph(&self) -> &crate::Graph;
    fn shutdown(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

impl<In: Send + 'static, Out: Send + 'static> Inspect for Pipeline<In, Out> {
    fn metrics(&self) -> Vec<crate::StepMetrics> {
        Pipeline::metrics(self)
    }
    fn report(&self) -> Vec<crate::StepReport> {
        Pipeline::report(self)
    }
    fn health(&self) -> crate::Health {
        Pipeline::health(self)
    }
    fn graph(&self) -> &crate::Graph {
        Pipeline::graph(self)
    }
    fn shutdown(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.shutdown_async())
    }
}

/// Adds one route to the router once the limits are final.
type AddRoute = Box<dyn FnOnce(Limits, Router<Arc<Shared>>) -> Router<Arc<Shared>> + Send>;

/// Settings every route shares.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) body: usize,
    pub(super) timeout: Duration,
}

/// Settings of the server itself (connections, shutdown).
#[derive(Debug, Clone, Copy)]
pub(super) struct Serving {
    pub(super) grace: Duration,
    pub(super) header_read: Duration,
}

/// A step error type the client is to blame for (see
/// [`Ingress::client_error`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct ClientError {
    pub(super) is: fn(&(dyn std::error::Error + 'static)) -> bool,
    pub(super) status: StatusCode,
}

fn is_a<E: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    e.is::<E>()
}

/// What the handlers share: the served pipelines and the metrics.
pub(super) struct Shared {
    pub(super) routes: Vec<(String, Arc<dyn Inspect>)>,
    pub(super) client_errors: Vec<ClientError>,
    pub(super) metrics: metrics::Metrics,
    /// The dashboard's drawings of the routes, made on its first request
    /// (the graphs do not change once deployed).
    pub(super) drawings: tokio::sync::OnceCell<String>,
}

/// Serves deployed pipelines over HTTP. Build it with one route per
/// pipeline, then [`serve`](Ingress::serve) it (or take the axum
/// [`Router`] to embed it).
///
/// ```
/// use pipeline_core::prelude::*;
/// use pipeline_core::http::{HttpRequest, Ingress};
///
/// #[step]
/// fn double(x: i64) -> i64 { x * 2 }
/// #[step]
/// fn agent(r: HttpRequest) -> String { r.header("user-agent").unwrap_or("?").to_string() }
///
/// let ingress = Ingress::new()
///     .json("/double", double(Input::<i64>::new()).deploy()?)         // JSON in, JSON out
///     .request("/agent", agent(Input::<HttpRequest>::new()).deploy()?) // the raw request in
///     .body_limit(64 * 1024)
///     .timeout(std::time::Duration::from_secs(5));
/// let router: axum::Router = ingress.into_router();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Ingress {
    router: Router<Arc<Shared>>,
    routes: Vec<(String, Arc<dyn Inspect>)>,
    client_errors: Vec<ClientError>,
    limits: Limits,
    serving: Serving,
    pending: Vec<AddRoute>,
    dashboard: bool,
}

impl std::fmt::Debug for Ingress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes: Vec<&str> = self.routes.iter().map(|(r, _)| r.as_str()).collect();
        f.debug_struct("Ingress")
            .field("routes", &routes)
            .field("body_limit", &self.limits.body)
            .field("timeout", &self.limits.timeout)
            .field("shutdown_grace", &self.serving.grace)
            .field("header_read_timeout", &self.serving.header_read)
            .field("dashboard", &self.dashboard)
            .finish()
    }
}

impl Default for Ingress {
    fn default() -> Self {
        Self::new()
    }
}

impl Ingress {
    /// No routes yet; 2 MiB body limit, 30 s timeout, 30 s shutdown
    /// grace, 10 s header read timeout, the dashboard page on.
    pub fn new() -> Self {
        Ingress {
            router: Router::new(),
            routes: Vec::new(),
            client_errors: Vec::new(),
            limits: Limits {
                body: DEFAULT_BODY_LIMIT,
                timeout: DEFAULT_TIMEOUT,
            },
            serving: Serving {
                grace: DEFAULT_SHUTDOWN_GRACE,
                header_read: DEFAULT_HEADER_READ_TIMEOUT,
            },
            pending: Vec::new(),
            dashboard: true,
        }
    }

    /// Whether to serve the dashboard page at `GET /dashboard` (and
    /// redirect `GET /` there): on by default. The page draws each route's
    /// graph and refreshes its figures from `/graph` every second; it is
    /// served on the same listener as everything else, so only where the
    /// server is bound ([`DEFAULT_ADDR`](super::DEFAULT_ADDR) is loopback),
    /// and shows nothing `/graph` and `/metrics` do not: bound to
    /// `0.0.0.0`, anyone who can reach the server can read it, as they can
    /// `/graph`. Off, both paths answer 404 (405 where a `POST` route of
    /// yours sits at that path). Nested in a router of yours, `GET
    /// /prefix` leads to `/prefix/dashboard`.
    ///
    /// ```
    /// use pipeline_core::http::Ingress;
    /// let router = Ingress::new().dashboard(false).into_router();
    /// # let _ = router;
    /// ```
    pub fn dashboard(mut self, on: bool) -> Self {
        self.dashboard = on;
        self
    }

    /// Serves `pipeline` at `POST path`: the body is JSON for `In`, the
    /// answer JSON of `Out`.
    pub fn json<In, Out>(self, path: &str, pipeline: Pipeline<In, Out>) -> Self
    where
        In: DeserializeOwned + Send + 'static,
        Out: Serialize + Send + 'static,
    {
        self.add(path, pipeline, |body, _| from_json::<In>(&body))
    }

    /// Serves `pipeline` at `POST path` with the whole request as its input
    /// (headers, query, raw body); the answer is JSON of `Out`.
    pub fn request<Out>(self, path: &str, pipeline: Pipeline<HttpRequest, Out>) -> Self
    where
        Out: Serialize + Send + 'static,
    {
        self.add(path, pipeline, |body, parts| {
            Ok(HttpRequest::new(
                parts.method.clone(),
                parts.uri.path().to_string(),
                parts.uri.query().unwrap_or("").to_string(),
                parts.headers.clone(),
                body,
            ))
        })
    }

    /// The largest request body accepted (413 above it, at once when the
    /// `content-length` says so). The rest of a refused body is read and
    /// thrown away while the 413 goes out (for at most the
    /// [`timeout`](Ingress::timeout), and 30 s), so a client that sends its
    /// whole body before it reads sees the 413, not a broken pipe.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.limits.body = bytes;
        self
    }

    /// Answers `status` instead of 500 when a step fails with an error of
    /// type `E`: the client sent something the step cannot use (bytes that
    /// are no image, say). The body still names the step and carries the
    /// error's message, with `"kind": "bad_input"`. `status` should be a
    /// 4xx; anything else answers 400. A step can also return
    /// [`BadRequest`] itself.
    ///
    /// ```
    /// use pipeline_core::prelude::*;
    /// use pipeline_core::http::Ingress;
    ///
    /// #[derive(Debug, thiserror::Error)]
    /// #[error("not a positive number: {0}")]
    /// struct NotPositive(i64);
    ///
    /// #[step]
    /// fn check(x: i64) -> Result<i64, NotPositive> {
    ///     if x > 0 { Ok(x) } else { Err(NotPositive(x)) }
    /// }
    ///
    /// let ingress = Ingress::new()
    ///     .json("/check", check(Input::<i64>::new()).deploy()?)
    ///     .client_error::<NotPositive>(422);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn client_error<E: std::error::Error + 'static>(mut self, status: u16) -> Self {
        self.client_errors.push(ClientError {
            is: is_a::<E>,
            status: client_status(status),
        });
        self
    }

    /// How long a request's body may take to arrive (408 after it, the
    /// connection closed), and then how long the call may take (504 after
    /// it). A client that stalls mid-body holds its connection no longer.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.limits.timeout = timeout;
        self
    }

    /// How long shutdown (SIGTERM, Ctrl-C, or the `stop` future of
    /// [`serve_until`](Ingress::serve_until)) waits for open connections
    /// once it has stopped accepting new ones: idle keep-alive connections
    /// close at once, requests in flight may finish. Whatever is still open
    /// when the grace period ends is dropped (a half-sent request, a call
    /// that is still running: its work is cancelled), so the server stops
    /// within this bound whatever its clients do. The pipelines are
    /// drained after that either way. Default [`DEFAULT_SHUTDOWN_GRACE`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use pipeline_core::prelude::*;
    /// use pipeline_core::http::Ingress;
    ///
    /// #[step]
    /// fn double(x: i64) -> i64 { x * 2 }
    ///
    /// // Inside Kubernetes' default 30 s between SIGTERM and SIGKILL.
    /// let ingress = Ingress::new()
    ///     .json("/double", double(Input::<i64>::new()).deploy()?)
    ///     .shutdown_grace(Duration::from_secs(20));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.serving.grace = grace;
        self
    }

    /// How long a client may take to send a request's head (request line
    /// and headers) once the server waits for one; the connection is closed
    /// without an answer after it. It also bounds how long an idle
    /// keep-alive connection stays open. Without it a client that sends
    /// half a head and stalls holds a connection (and a file descriptor)
    /// for ever; many such clients exhaust the server (slowloris).
    ///
    /// The default, [`DEFAULT_HEADER_READ_TIMEOUT`] (10 s), is far more than
    /// a real client needs (a head is a few hundred bytes, sent at once,
    /// even over a slow mobile link), a third of hyper's own default, and
    /// matches what reverse proxies commonly use (nginx's
    /// `client_header_timeout` defaults to 60 s, HAProxy's examples use
    /// 10 s for `timeout http-request`). The body is bounded by
    /// [`timeout`](Ingress::timeout) and [`body_limit`](Ingress::body_limit).
    /// Anything over a year counts as a year.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pipeline_core::prelude::*;
    /// use pipeline_core::http::Ingress;
    ///
    /// #[step]
    /// fn double(x: i64) -> i64 { x * 2 }
    ///
    /// let ingress = Ingress::new()
    ///     .json("/double", double(Input::<i64>::new()).deploy()?)
    ///     .header_read_timeout(Duration::from_secs(5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        // hyper adds it to the time now, which overflows near
        // `Duration::MAX`; a year is for ever for a request head.
        self.serving.header_read = timeout.min(Duration::from_secs(365 * 24 * 3600));
        self
    }

    /// Serves a stream pipeline (its output an [`ItemStream`]) at `POST
    /// path`: the body is JSON for `In`; the answer streams each item as
    /// it is ready, as Server-Sent Events when the client accepts
    /// `text/event-stream` (each item a `data:` event of its JSON, then an
    /// `event: done` with the count, or an `event: error` with the error's
    /// JSON body; comments keep the connection alive every 15 s), else as
    /// NDJSON (`{"item": ..}` lines, then `{"done": true, "items": n}` or
    /// the error's JSON body). An error before the first item answers with
    /// its status as [`json`](Ingress::json) does. A client that
    /// disconnects stops the steps producing its stream;
    /// [`timeout`](Ingress::timeout) bounds the whole stream.
    ///
    /// ```
    /// use pipeline_core::prelude::*;
    /// use pipeline_core::http::Ingress;
    ///
    /// #[step]
    /// fn count_to(n: u32) -> ItemStream<u32> { ItemStream::iter(1..=n) }
    ///
    /// let ingress = Ingress::new().stream("/count", count_to(Input::<u32>::new()).deploy()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stream<In, T>(self, path: &str, pipeline: Pipeline<In, ItemStream<T>>) -> Self
    where
        In: DeserializeOwned + Send + 'static,
        T: Serialize + Send + 'static,
    {
        let parse = |body: Bytes, _: &axum::http::request::Parts| from_json::<In>(&body);
        self.add_with(
            path,
            pipeline,
            move |p, shared, limits, request, id| async move {
                handle_stream(&p, &shared, limits, parse, request, &id).await
            },
        )
    }

    fn add<In, Out>(
        self,
        path: &str,
        pipeline: Pipeline<In, Out>,
        parse: fn(Bytes, &axum::http::request::Parts) -> Result<In, BadRequest>,
    ) -> Self
    where
        In: Send + 'static,
        Out: Serialize + Send + 'static,
    {
        self.add_with(
            path,
            pipeline,
            move |p, shared, limits, request, id| async move {
                handle(&p, &shared, limits, parse, request, &id).await
            },
        )
    }

    /// Adds `POST path` answered by `answer`, with the request's span,
    /// id and the per-route metrics around it.
    fn add_with<P, F, Fut>(mut self, path: &str, pipeline: P, answer: F) -> Self
    where
        P: Inspect + 'static,
        F: Fn(Arc<P>, Arc<Shared>, Limits, Request, String) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        let pipeline = Arc::new(pipeline);
        let route = path.to_string();
        self.routes
            .push((route.clone(), Arc::clone(&pipeline) as Arc<dyn Inspect>));
        self.pending.push(Box::new(move |limits, router| {
            let path = route_path(&route);
            let handler = move |State(shared): State<Arc<Shared>>, request: Request| {
                let (pipeline, route, answer) =
                    (Arc::clone(&pipeline), route.clone(), answer.clone());
                async move {
                    let id = request_id::of(&request);
                    let span = tracing::info_span!("request", id = %id, route = %route);
                    let response = answer(
                        pipeline,
                        Arc::clone(&shared),
                        limits,
                        request,
                        id.to_string(),
                    )
                    .instrument(span.clone())
                    .await;
                    tracing::info!(parent: &span, status = response.status().as_u16(), "answered");
                    shared.metrics.count(&route, response.status());
                    response
                }
            };
            router.route(&path, post(handler))
        }));
        self
    }

    /// The axum router: the routes plus `/healthz`, `/readyz`, `/metrics`,
    /// `/graph` and the [dashboard](Ingress::dashboard), every answer with
    /// an `x-request-id` (the client's own if it sent one of 1 to 128
    /// visible ASCII characters without spaces, else a fresh one).
    pub fn into_router(self) -> Router {
        self.into_parts().0
    }

    fn into_parts(self) -> (Router, Arc<Shared>) {
        let shared = Arc::new(Shared {
            metrics: metrics::Metrics::new(self.routes.clone()),
            routes: self.routes,
            client_errors: self.client_errors,
            drawings: tokio::sync::OnceCell::new(),
        });
        let mut router = self.router;
        for add in self.pending {
            router = add(self.limits, router);
        }
        if self.dashboard {
            router = router
                .route("/dashboard", get(super::dashboard::page))
                .route("/", get(super::dashboard::root));
        }
        let router = router
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(expose::readyz))
            .route("/metrics", get(metrics::metrics))
            .route("/graph", get(expose::graph))
            // axum answers these with an empty body: every error here is JSON.
            .method_not_allowed_fallback(|request: Request| async move {
                let message = format!(
                    "{} is not allowed on {} (the allow header says what is)",
                    request.method(),
                    request.uri().path()
                );
                refuse(
                    request,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    &message,
                )
            })
            .fallback(|request: Request| async move {
                refuse(request, StatusCode::NOT_FOUND, "not_found", "no such route")
            })
            .with_state(Arc::clone(&shared));
        (request_id::with_request_ids(router), shared)
    }

    /// Binds `addr` (e.g. [`DEFAULT_ADDR`](super::DEFAULT_ADDR), loopback only) and serves until
    /// SIGTERM or Ctrl-C, then stops accepting, lets the requests in flight
    /// finish (for at most [`shutdown_grace`](Ingress::shutdown_grace)),
    /// and drains the pipelines.
    pub async fn serve(self, addr: &str) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        self.serve_listener(listener).await
    }

    /// [`serve`](Ingress::serve) on a listener already bound (port 0, say).
    pub async fn serve_listener(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        // Handlers are installed before the first request is answered, so
        // a signal that follows any answer is never missed.
        let stop = shutdown_signal()?;
        tracing::info!(addr = %listener.local_addr()?, "serving");
        self.serve_until(listener, stop).await
    }

    /// Serves on `listener` until `stop` completes, then shuts down as
    /// [`serve`](Ingress::serve) does.
    pub async fn serve_until(
        self,
        listener: tokio::net::TcpListener,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let serving = self.serving;
        let (router, shared) = self.into_parts();
        serve::serve_connections(listener, router, serving, stop).await;
        tracing::info!("server stopped; draining pipelines");
        for (_, pipeline) in &shared.routes {
            pipeline.shutdown().await;
        }
        Ok(())
    }
}

/// The JSON error answer to a request no route takes.
/// Its body is read and dropped while the answer goes out (see
/// `respond::linger`), so a client that writes before it reads sees it.
fn refuse(request: Request, status: StatusCode, kind: &str, message: &str) -> Response {
    let id = request_id::of(&request);
    let (parts, body) = request.into_parts();
    if !respond::waits_to_continue(&parts.headers) {
        respond::linger(body.into_data_stream(), respond::LINGER);
    }
    error_response(status, kind, message, Some(&id))
}

/// Ctrl-C, or SIGTERM on Unix; the handlers are installed now, the
/// returned future waits.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    let (mut term, mut int) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        )
    };
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = int.recv() => tracing::info!("Ctrl-C: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("Ctrl-C: shutting down");
        }
    })
}

fn route_path(route: &str) -> String {
    if route.starts_with('/') {
        route.to_string()
    } else {
        format!("/{route}")
    }
}
