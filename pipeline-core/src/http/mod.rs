//! HTTP ingress (feature `http`, on axum): serve deployed pipelines on
//! routes, with health, readiness, Prometheus metrics and the live graph.
//!
//! | endpoint | answers |
//! | --- | --- |
//! | `POST <route>` | the pipeline's output as JSON |
//! | `POST <stream route>` | a stream pipeline's items as they come: SSE (`Accept: text/event-stream`) or NDJSON ([`Ingress::stream`]) |
//! | `GET /healthz` | 200 while the server runs |
//! | `GET /readyz` | 200 when every replica is built, else 503 |
//! | `GET /metrics` | Prometheus text: per step requests, errors, latency histogram, queue depth, in flight, batch sizes, rebuilds |
//! | `GET /graph?format=json\|dot\|mermaid` | the deployed graphs with live per-step counters |
//! | `GET /dashboard` (and `GET /`, which redirects there) | a live page: each graph drawn, its figures refreshed every second ([`Ingress::dashboard`]) |
//!
//! Errors answer with a JSON body `{"error": .., "kind": .., "step": ..,
//! "request_id": ..}`: malformed JSON 400, the wrong shape 422 (serde's
//! message), a body over the limit 413 (at once when its `content-length`
//! says so), a body that does not arrive within [`Ingress::timeout`] 408, a
//! method a route does not take 405 (with `Allow`), overload 503 with
//! `Retry-After`, a
//! step error 500 naming the step (or the 4xx given for its error type
//! with [`Ingress::client_error`]), a deadline passed 504. `"error"` is the
//! whole cause chain (the error, then each `source()`, joined with ": ").
//! Every answer carries an `x-request-id` (the client's own if it sent one
//! of 1 to 128 visible ASCII characters without spaces, else a fresh
//! 16-hex-digit one).
//!
//! Connections: a client has [`Ingress::header_read_timeout`] (10 s) to send
//! a request's head, or its connection is closed. On shutdown the server
//! stops accepting, closes idle connections, waits at most
//! [`Ingress::shutdown_grace`] (30 s) for the rest, drops what is still
//! open, then drains the pipelines: it stops in bounded time whatever its
//! clients do.
//!
//! ```no_run
//! use pipeline_core::prelude::*;
//! use pipeline_core::http::Ingress;
//!
//! #[step]
//! fn double(x: i64) -> i64 { x * 2 }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let p = double(Input::<i64>::new()).deploy()?;
//! Ingress::new().json("/double", p).serve("127.0.0.1:8000").await?; // until SIGTERM / Ctrl-C
//! # Ok(()) }
//! ```

mod dashboard;
mod expose;
mod ingress;
mod metrics;
mod request;
mod request_id;
mod respond;
mod serve;
mod stream;

use std::time::Duration;

pub use ingress::Ingress;
use ingress::{Inspect, Serving, Shared};
pub use request::{BadRequest, HttpRequest, HttpRequestBuilder};

/// Where [`Ingress::serve`] listens unless told otherwise: loopback only.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8000";
/// The largest request body accepted unless [`Ingress::body_limit`] says
/// otherwise: 2 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;
/// How long a call may take unless [`Ingress::timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for open connections unless
/// [`Ingress::shutdown_grace`] says otherwise: 30 s, as long as
/// [`DEFAULT_TIMEOUT`], so a call admitted just before the stop can still
/// finish.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How long a client may take to send a request's head unless
/// [`Ingress::header_read_timeout`] says otherwise: 10 s (see there why).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
