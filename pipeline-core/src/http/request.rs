//! [`HttpRequest`]: the raw request as a pipeline input, and [`BadRequest`],
//! the error a step returns to answer 400 / 422 instead of 500.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method};
use serde::de::DeserializeOwned;

/// An HTTP request as a pipeline input, for steps that read headers, query
/// parameters or the raw body (Ray Serve's `starlette.requests.Request`).
/// The body is already read (within the ingress's size limit), so the
/// request can be cloned and passed along like any value.
///
/// ```
/// use pipeline_core::http::HttpRequest;
///
/// let req = HttpRequest::builder()
///     .header("x-user", "ada")
///     .query("lang=en&n=3")
///     .body(r#"{"input": 5}"#)
///     .build();
/// assert_eq!(req.header("x-user"), Some("ada"));
/// assert_eq!(req.query_param("n").as_deref(), Some("3"));
/// let v: serde_json::Value = req.json()?;   // like Ray's `await request.json()`
/// assert_eq!(v["input"], 5);
/// # Ok::<(), pipeline_core::http::BadRequest>(())
/// ```
#[derive(Debug, Clone)]
pub struct HttpRequest {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Bytes,
}

impl HttpRequest {
    pub(crate) fn new(
        method: Method,
        path: String,
        query: String,
        headers: HeaderMap,
        body: Bytes,
    ) -> Self {
        HttpRequest {
            method,
            path,
            query,
            headers,
            body,
        }
    }

    /// A request built by hand, for unit tests of steps.
    pub fn builder() -> HttpRequestBuilder {
        HttpRequestBuilder(HttpRequest::new(
            Method::POST,
            "/".into(),
            String::new(),
            HeaderMap::new(),
            Bytes::new(),
        ))
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }
    /// The path.
    pub fn path(&self) -> &str {
        &self.path
    }
    /// The raw query string (without `?`).
    pub fn query(&self) -> &str {
        &self.query
    }
    /// All headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// The first value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&self.query)
            .ok()?
            .into_iter()
            .find_map(|(k, v)| (k == name).then_some(v))
    }
    /// The raw body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
    /// The body parsed as JSON into `T`. Its error answers 400 (not JSON)
    /// or 422 (the wrong shape) when a step returns it.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, BadRequest> {
        from_json(&self.body)
    }
}

/// Builds an [`HttpRequest`] by hand (see [`HttpRequest::builder`]).
#[derive(Debug)]
pub struct HttpRequestBuilder(HttpRequest);

impl HttpRequestBuilder {
    /// Adds a header (ignored if the name or value is not valid HTTP).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::try_from(name),
            axum::http::HeaderValue::try_from(value),
        ) {
            self.0.headers.append(n, v);
        }
        self
    }
    /// Sets the query string.
    pub fn query(mut self, query: &str) -> Self {
        self.0.query = query.to_string();
        self
    }
    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.0.body = body.into();
        self
    }
    /// The request.
    pub fn build(self) -> HttpRequest {
        self.0
    }
}

/// The client sent something a step cannot use. Returned from a step (or
/// from [`HttpRequest::json`]), it makes the ingress answer 400 for
/// malformed input or 422 for input of the wrong shape, with this message,
/// instead of 500.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BadRequest {
    /// 400 or 422.
    pub status: u16,
    /// What was wrong, for the client.
    pub message: String,
}

impl BadRequest {
    /// A 422: well-formed, but not what the step needs.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        BadRequest {
            status: 422,
            message: message.into(),
        }
    }
    /// A 400: malformed.
    pub fn malformed(message: impl Into<String>) -> Self {
        BadRequest {
            status: 400,
            message: message.into(),
        }
    }
}

impl From<serde_json::Error> for BadRequest {
    fn from(e: serde_json::Error) -> Self {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => BadRequest::unprocessable(format!("wrong shape: {e}")),
            Category::Syntax | Category::Eof | Category::Io => {
                BadRequest::malformed(format!("malformed JSON: {e}"))
            }
        }
    }
}

/// `body` parsed as JSON into `T`: 400 when it is not JSON at all, 422
/// when it is JSON of the wrong shape. serde stops at the first token `T`
/// cannot take, so `{"x": [1` sent where a number is expected reads as a
/// wrong shape ("invalid type: map") though it is not JSON: on such an
/// error the body is checked for being JSON at all.
pub(super) fn from_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, BadRequest> {
    serde_json::from_slice(body).map_err(|e| {
        if e.classify() == serde_json::error::Category::Data {
            if let Err(syntax) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                return BadRequest::from(syntax);
            }
        }
        BadRequest::from(e)
    })
}
