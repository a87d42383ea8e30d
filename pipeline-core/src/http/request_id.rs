//! Request ids through tower-http's request-id layers: an incoming
//! `x-request-id` of 1..=128 visible ASCII characters (no spaces: an id is
//! logged as it is, and a space in it could forge a log field) is
//! honoured, any other is replaced by the next value of a 16-hex-digit counter; the
//! answer carries the id back.
//!
//! tower-http's `SetRequestId` keeps any incoming id as it is (empty, or
//! 10 KB long) and asks [`MakeRequestId`] only when there is none, so a
//! small layer in front of it first removes an id we do not honour.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::Router;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};

/// The longest incoming request id honoured.
const MAX_LEN: usize = 128;

/// Gives every request of `router` an id (see the module docs).
pub(super) fn with_request_ids(router: Router) -> Router {
    // The last layer added runs first.
    router
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(Counter::default()))
        .layer(axum::middleware::map_request(drop_unusable_id))
}

/// The id the layers gave `request` (empty outside them).
pub(super) fn of(request: &Request) -> String {
    request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn drop_unusable_id(mut request: Request) -> Request {
    let usable = request.headers().get("x-request-id").is_some_and(|v| {
        (1..=MAX_LEN).contains(&v.len()) && v.as_bytes().iter().all(u8::is_ascii_graphic)
    });
    if !usable {
        request.headers_mut().remove("x-request-id");
    }
    request
}

/// Ids for requests that bring none: 16 hex digits, counting from 1.
#[derive(Debug, Clone)]
struct Counter(Arc<AtomicU64>);

impl Default for Counter {
    fn default() -> Self {
        Counter(Arc::new(AtomicU64::new(1)))
    }
}

impl MakeRequestId for Counter {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{n:016x}"))
            .ok()
            .map(RequestId::new)
    }
}
