//! Answering one request with a stream: Server-Sent Events or NDJSON, an
//! item per event (or line) as each is ready. See [`Ingress::stream`].
//!
//! [`Ingress::stream`]: super::Ingress::stream

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde::Serialize;

use super::ingress::{Limits, Shared};
use super::request::BadRequest;
use super::respond::{chain, error_json, pipeline_error, read_input, status_and_kind};
use crate::{ItemStream, Pipeline, PipelineError};

/// One event of an answer being streamed.
enum Piece {
    Item(serde_json::Value),
    /// The stream ended with this error (the last piece).
    Error(serde_json::Value),
    /// The stream ended after `items` items (the last piece).
    Done {
        items: usize,
    },
}

pub(super) async fn handle_stream<In, T>(
    pipeline: &Pipeline<In, ItemStream<T>>,
    shared: &Shared,
    limits: Limits,
    parse: fn(Bytes, &axum::http::request::Parts) -> Result<In, BadRequest>,
    request: Request,
    id: &str,
) -> Response
where
    In: Send + 'static,
    T: Serialize + Send + 'static,
{
    let sse = wants_sse(&request);
    let input = match read_input(request, limits, parse, id).await {
        Ok(input) => input,
        Err(response) => return response,
    };
    let request_id = (!id.is_empty()).then(|| std::sync::Arc::from(id));
    let mut items = pipeline.stream_with_deadline(input, limits.timeout, request_id);
    // Until the first item the answer can still be an error status (a
    // refused input, an overloaded step); after it, an error is the
    // stream's last event.
    let first = match items.next().await {
        Some(Err(e)) => return pipeline_error(&e, &shared.client_errors, id),
        first => first,
    };
    let pieces = pieces(first, items, id.to_string());
    if sse {
        let events = pieces.map(|piece| {
            Ok::<_, std::convert::Infallible>(match piece {
                Piece::Item(json) => Event::default().data(json.to_string()),
                Piece::Error(json) => Event::default().event("error").data(json.to_string()),
                Piece::Done { items } => Event::default()
                    .event("done")
                    .data(serde_json::json!({ "items": items }).to_string()),
            })
        });
        Sse::new(events)
            .keep_alive(KeepAlive::default())
            .into_response()
    } else {
        let lines = pieces.map(|piece| {
            let json = match piece {
                Piece::Item(json) => serde_json::json!({ "item": json }),
                Piece::Error(json) => json,
                Piece::Done { items } => serde_json::json!({ "done": true, "items": items }),
            };
            let mut line = json.to_string().into_bytes();
            line.push(b'\n');
            Ok::<_, std::convert::Infallible>(Bytes::from(line))
        });
        let mut response = Body::from_stream(lines).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        *response.status_mut() = StatusCode::OK;
        response
    }
}

/// SSE when the client accepts `text/event-stream` (as `EventSource`
/// does; media types compare case-insensitively, and `q=0` means not
/// acceptable), NDJSON otherwise.
fn wants_sse(request: &Request) -> bool {
    request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("q")
                        && v.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
                })
            });
            media.eq_ignore_ascii_case("text/event-stream") && !refused
        })
}

/// The stream's items as JSON, then its end: an error, or `Done`.
/// Dropping this (the client went away) drops `items`, which stops the
/// steps producing them.
fn pieces<T: Serialize + Send + 'static>(
    first: Option<Result<T, PipelineError>>,
    items: ItemStream<T>,
    id: String,
) -> impl Stream<Item = Piece> + Send + 'static {
    let rest = futures::stream::iter(first).chain(items);
    futures::stream::unfold(
        (Box::pin(rest), 0usize, false, id),
        |(mut rest, count, ended, id)| async move {
            if ended {
                return None;
            }
            let piece = match rest.next().await {
                Some(Ok(item)) => match serde_json::to_value(&item) {
                    Ok(json) => Piece::Item(json),
                    Err(e) => Piece::Error(error_json(
                        "serialize",
                        &format!("cannot serialize an item: {e}"),
                        None,
                        Some(&id),
                    )),
                },
                Some(Err(e)) => {
                    let (_, kind) = status_and_kind(&e);
                    Piece::Error(error_json(kind, &chain(&e), e.step(), Some(&id)))
                }
                None => Piece::Done { items: count },
            };
            let (count, ended) = match &piece {
                Piece::Item(_) => (count + 1, false),
                _ => (count, true),
            };
            Some((piece, (rest, count, ended, id)))
        },
    )
}
