//! Answering one request: parse the body, call the pipeline, and map the
//! outcome to a status and a JSON body (an error's body carries the whole
//! cause chain).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Serialize;

use super::ingress::{ClientError, Limits, Shared};
use super::request::BadRequest;
use crate::{Pipeline, PipelineError};

pub(super) async fn handle<In, Out>(
    pipeline: &Pipeline<In, Out>,
    shared: &Shared,
    limits: Limits,
    parse: fn(Bytes, &axum::http::request::Parts) -> Result<In, BadRequest>,
    request: Request,
    id: &str,
) -> Response
where
    In: Send + 'static,
    Out: Serialize + Send + 'static,
{
    let input = match read_input(request, limits, parse, id).await {
        Ok(input) => input,
        Err(response) => return response,
    };
    let request_id = (!id.is_empty()).then(|| std::sync::Arc::from(id));
    match pipeline
        .call_with_deadline(input, limits.timeout, request_id)
        .await
    {
        Ok(out) => match serde_json::to_vec(&out) {
            Ok(json) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                json,
            )
                .into_response(),
            Err(e) => error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "serialize",
                &format!("cannot serialize the output: {e}"),
                Some(id),
            ),
        },
        Err(e) => pipeline_error(&e, &shared.client_errors, id),
    }
}

/// Reads the body (within the size limit and the timeout) and parses it
/// into the pipeline's input; the error answer if either fails.
pub(super) async fn read_input<In>(
    request: Request,
    limits: Limits,
    parse: fn(Bytes, &axum::http::request::Parts) -> Result<In, BadRequest>,
    id: &str,
) -> Result<In, Response> {
    let (parts, body) = request.into_parts();
    let body = match read_body(&parts, body, limits).await {
        Ok(body) => body,
        Err(unread) => {
            let mut response = match unread {
                Unread::TooLarge => error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    &format!("the body is over the limit of {} bytes", limits.body),
                    Some(id),
                ),
                Unread::TimedOut => error_response(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    &format!("the body did not arrive within {:?}", limits.timeout),
                    Some(id),
                ),
                Unread::Failed(e) => {
                    error_response(StatusCode::BAD_REQUEST, "bad_body", &chain(&e), Some(id))
                }
            };
            // What is left of the body is not read: the connection cannot
            // carry another request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Err(response);
        }
    };
    parse(body, &parts).map_err(|bad| bad_request(&bad, None, id))
}

/// Why a body was not read.
enum Unread {
    TooLarge,
    TimedOut,
    Failed(axum::Error),
}

/// Whether the client waits for `100 Continue` before it sends its body.
pub(super) fn waits_to_continue(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// The longest a refused body is read on and thrown away (see [`linger`]).
pub(super) const LINGER: Duration = Duration::from_secs(30);

/// The whole body, if it is within `limits.body` bytes (a `content-length`
/// over it is refused before any byte is read) and arrives within
/// `limits.timeout` (a client that stalls mid-body holds its connection
/// no longer).
async fn read_body(
    parts: &axum::http::request::Parts,
    body: Body,
    limits: Limits,
) -> Result<Bytes, Unread> {
    let announced = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut chunks = body.into_data_stream();
    if announced.is_some_and(|n| n > limits.body as u64) {
        // A client that waits for `100 Continue` before it sends the body
        // (curl does, for large ones) is not invited to send it: hyper
        // sends that only once the body is read.
        if !waits_to_continue(&parts.headers) {
            linger(chunks, limits.timeout);
        }
        return Err(Unread::TooLarge);
    }
    // Most bodies come in one chunk: kept as it is, not copied.
    let mut got: Vec<Bytes> = Vec::new();
    let mut len = 0;
    let deadline = tokio::time::sleep(limits.timeout);
    tokio::pin!(deadline);
    loop {
        let chunk = tokio::select! {
            biased;
            chunk = chunks.next() => chunk,
            () = &mut deadline => return Err(Unread::TimedOut),
        };
        match chunk {
            None if got.len() == 1 => return Ok(got.swap_remove(0)),
            None => return Ok(Bytes::from(got.concat())),
            Some(Err(e)) => return Err(Unread::Failed(e)),
            Some(Ok(chunk)) if len + chunk.len() > limits.body => {
                linger(chunks, limits.timeout);
                return Err(Unread::TooLarge);
            }
            Some(Ok(chunk)) => {
                len += chunk.len();
                got.push(chunk);
            }
        }
    }
}

/// Reads the rest of a refused body and throws it away, for at most the
/// request timeout (and [`LINGER`]), while the 413 goes out. Closing at
/// once would reset the connection under a client that sends its whole
/// body before it reads (most do), and it would see a broken pipe instead
/// of the 413: nginx's "lingering close".
pub(super) fn linger(mut chunks: axum::body::BodyDataStream, timeout: Duration) {
    tokio::spawn(async move {
        let drain = async { while let Some(Ok(_)) = chunks.next().await {} };
        let _ = tokio::time::timeout(timeout.min(LINGER), drain).await;
    });
}

/// The answer to a [`BadRequest`], from the ingress's own parsing or from
/// `step`.
fn bad_request(bad: &BadRequest, step: Option<&str>, id: &str) -> Response {
    let status = client_status(bad.status);
    let kind = if status == StatusCode::UNPROCESSABLE_ENTITY {
        "wrong_shape"
    } else {
        "malformed"
    };
    error_body(status, kind, &bad.message, step, Some(id))
}

/// `status` if it is a 4xx, else 400: an error the client is to blame for
/// never answers 2xx, 3xx or 5xx.
pub(super) fn client_status(status: u16) -> StatusCode {
    StatusCode::from_u16(status)
        .ok()
        .filter(StatusCode::is_client_error)
        .unwrap_or(StatusCode::BAD_REQUEST)
}

/// The status for a pipeline error (see the module docs).
pub(super) fn pipeline_error(
    e: &PipelineError,
    client_errors: &[ClientError],
    id: &str,
) -> Response {
    if let PipelineError::Step { .. } = e {
        let source = std::error::Error::source(e);
        // A step that calls another pipeline (through its handle) and
        // passes its error on: answer as that pipeline would (503 when it
        // is overloaded, its client errors as such).
        if let Some(inner) = source.and_then(|s| s.downcast_ref::<PipelineError>()) {
            return pipeline_error(inner, client_errors, id);
        }
        if let Some(bad) = source.and_then(|s| s.downcast_ref::<BadRequest>()) {
            return bad_request(bad, e.step(), id);
        }
        if let Some(client) = source.and_then(|s| client_errors.iter().find(|c| (c.is)(s))) {
            return error_body(client.status, "bad_input", &chain(e), e.step(), Some(id));
        }
    }
    let (status, kind) = status_and_kind(e);
    let mut response = error_body(status, kind, &chain(e), e.step(), Some(id));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// The status and `"kind"` an error answers with.
pub(super) fn status_and_kind(e: &PipelineError) -> (StatusCode, &'static str) {
    match e {
        PipelineError::Overloaded { .. } => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
        PipelineError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
        PipelineError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        PipelineError::PayloadTooLarge { .. } => {
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
        }
        PipelineError::DeadlineExceeded { .. } => (StatusCode::GATEWAY_TIMEOUT, "deadline"),
        PipelineError::NoBranch { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "no_branch"),
        PipelineError::Step { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "step_failed"),
        PipelineError::Panicked { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "step_panicked"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

pub(super) fn error_response(
    status: StatusCode,
    kind: &str,
    message: &str,
    id: Option<&str>,
) -> Response {
    error_body(status, kind, message, None, id)
}

fn error_body(
    status: StatusCode,
    kind: &str,
    message: &str,
    step: Option<&str>,
    id: Option<&str>,
) -> Response {
    let body = error_json(kind, message, step, id);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body.to_string()),
    )
        .into_response()
}

/// An error answer's JSON body.
pub(super) fn error_json(
    kind: &str,
    message: &str,
    step: Option<&str>,
    id: Option<&str>,
) -> serde_json::Value {
    serde_json::json!({
        "error": message,
        "kind": kind,
        "step": step,
        "request_id": id,
    })
}

/// The error's message and its causes (each [`source`](std::error::Error::source)),
/// joined with ": ". A cause whose text the message already ends with is
/// skipped, so an error that prints its cause itself reads right too.
pub(super) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !more.is_empty() && !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}
