//! The server loop: accepts connections, serves each with hyper (with a
//! header read timeout), and on stop closes them gracefully, dropping
//! whatever is still open when the grace period ends.
//!
//! `axum::serve` has neither knob: its graceful shutdown waits for every
//! connection, and a client that sent half a request head (or nothing at
//! all) keeps that wait from ever ending.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::Serving;

/// Serves `router` on `listener` until `stop` completes, then waits at
/// most `serving.grace` for the open connections to finish.
pub(super) async fn serve_connections(
    listener: TcpListener,
    router: Router,
    serving: Serving,
    stop: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(serving.header_read);
    let service = TowerToHyperService::new(router);
    let graceful = GracefulShutdown::new();
    // Owns every connection's task, so that what is left after the grace
    // period can be dropped (and with it the calls it was waiting on).
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    if !is_connection_error(&e) {
                        // Out of file descriptors, say: wait for some to be
                        // freed rather than spin (as axum::serve does).
                        tracing::error!(error = %e, "accept failed; retrying in 1 s");
                        tokio::select! {
                            () = &mut stop => break,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                    continue;
                }
            },
            // Reaps finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let connection =
            graceful.watch(http.serve_connection(TokioIo::new(stream), service.clone()));
        connections.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let open = graceful.count();
    tracing::info!(open, grace = ?serving.grace, "stopped accepting; closing connections");
    if tokio::time::timeout(serving.grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "grace period over: dropping the connections still open"
        );
    }
    connections.shutdown().await;
}

/// Errors of one connection (the client gave up before it was accepted),
/// not of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}
