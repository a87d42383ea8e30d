//! `GET /dashboard`: one self-contained HTML page that draws each served
//! pipeline's graph (laid out here, in `layout.rs`) and fills in its live
//! figures once a second from `/graph?format=json`.
//!
//! The page is compiled into the binary (`page.html`: markup, style and
//! script, about 10 KB) and asks for nothing but `/graph` on the same
//! server; its `Content-Security-Policy` lets the browser fetch nothing
//! else. It shows what `/graph` and `/metrics` already expose, no more.

mod layout;

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{OriginalUri, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};

use super::Shared;

const PAGE: &str = include_str!("page.html");

/// Inline style and script, and `fetch` to this origin only: nothing else
/// loads.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
                   connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// The page, with one section (title, drawing, table of figures) per route.
pub(super) async fn page(State(shared): State<Arc<Shared>>) -> Response {
    // Drawn once, off the runtime's workers (a large graph takes a while).
    let routes = shared
        .drawings
        .get_or_init(|| {
            let shared = Arc::clone(&shared);
            async move {
                tokio::task::spawn_blocking(move || sections(&shared))
                    .await
                    .unwrap_or_else(|_| {
                        "<section class=\"route\"><h2>the graphs could not be drawn</h2></section>"
                            .to_string()
                    })
            }
        })
        .await;
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PAGE.replacen("{{ROUTES}}", routes, 1),
    )
        .into_response()
}

fn sections(shared: &Shared) -> String {
    let mut routes = String::new();
    for (i, (route, p)) in shared.routes.iter().enumerate() {
        let route = layout::escape(route);
        let _ = write!(
            routes,
            r#"<section class="route" data-route="{route}"><h2>route <code>{route}</code></h2><div class="row"><div class="drawing">{}</div><table class="steps"><thead><tr><th>step</th><th>calls/s</th><th>errors</th><th>p50</th><th>p99</th><th>queue</th><th>in flight</th><th>rebuilds</th><th>calls/s, recent</th><th>p99, recent</th></tr></thead><tbody></tbody></table></div></section>"#,
            layout::svg(i, p.graph())
        );
    }
    if shared.routes.is_empty() {
        routes.push_str("<section class=\"route\"><h2>no routes served</h2></section>");
    }
    routes
}

/// `GET /`: to the page, under whatever prefix the router is nested at
/// (`/ml` and `/ml/` both lead to `/ml/dashboard`).
pub(super) async fn root(OriginalUri(uri): OriginalUri) -> Redirect {
    Redirect::to(&format!("{}/dashboard", uri.path().trim_end_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Uri;

    #[tokio::test]
    async fn root_leads_to_the_page_under_any_prefix() {
        for (path, to) in [
            ("/", "/dashboard"),
            ("/ml", "/ml/dashboard"),
            ("/ml/", "/ml/dashboard"),
        ] {
            let answer = root(OriginalUri(Uri::from_static(path)))
                .await
                .into_response();
            assert_eq!(answer.status(), 303, "{path}");
            assert_eq!(answer.headers()[header::LOCATION], to, "{path}");
        }
    }
}
