//! The HTTP server loop: the router on hyper's HTTP/1 connections, with the time limits that
//! `axum::serve` does not set (it gives hyper no timer, so hyper's header-read timeout never
//! fires there and a client trickling a request head holds its connection for ever).

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::ApiError;

/// A request head (request line and headers) must be in within this, or the connection is
/// closed: slow-loris clients cannot hold connections.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A request must be read and answered within this (its body included; not the WebSocket,
/// which lives on after its upgrade is answered).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait after a failed `accept` (e.g. out of file descriptors) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(500);

/// Serves `router` on `listener` until `stop` is cancelled, then lets the requests in
/// progress finish and returns once every connection has closed.
pub async fn serve(listener: TcpListener, router: Router, stop: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Retrying at once would spin while the cause (EMFILE) lasts.
                    tracing::warn!(error = %e, "http accept failed; backing off");
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(connection(stream, peer, router.clone(), stop.clone()));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    stop: CancellationToken,
) {
    // What `into_make_service_with_connect_info` would add: the client address for the
    // audit rows and the login throttle.
    let service = router.map_request(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "http connection ended with an error");
    }
}

/// Middleware: a request not answered within [`REQUEST_TIMEOUT`] (a body trickled in, a
/// handler stuck) gets 408 and its work is dropped.
pub async fn request_timeout(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(res) => res,
        Err(_) => ApiError::new(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "リクエストが時間内に届きませんでした。もう一度お試しください。",
        )
        .into_response(),
    }
}
