//! The HTTP server against clients that hold a connection without finishing a request: a
//! request head or body trickled in (or never finished) must not hold a connection for ever.

use crate::common;

use std::time::Duration;

use common::{backends, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection; `None` if it is still open after `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test]
async fn a_request_never_finished_does_not_hold_its_connection() {
    let app = TestApp::spawn(backends()[0]).await;
    let addr = app.server.http_addr;

    // Half a request line, then nothing (slow-loris).
    let mut head = TcpStream::connect(addr).await.unwrap();
    head.write_all(b"GET /healthz HT").await.unwrap();
    // A complete head announcing a body that never comes in full.
    let mut body = TcpStream::connect(addr).await.unwrap();
    body.write_all(
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user",
    )
    .await
    .unwrap();

    // The header timeout is 10 s and the body timeout 30 s; each limit leaves a margin.
    let (head_closed, body_closed) = tokio::join!(
        read_until_closed(&mut head, Duration::from_secs(20)),
        read_until_closed(&mut body, Duration::from_secs(40)),
    );
    assert!(
        head_closed.is_some(),
        "a request head not finished within the timeout is cut off"
    );
    let answer = body_closed.expect("a body not finished within the timeout is cut off");
    assert!(
        answer.starts_with("HTTP/1.1 408") && answer.contains("request_timeout"),
        "answered 408 in the API's JSON form: {answer}"
    );

    // Ordinary requests are served as before.
    let ok = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(ok.status(), 200);
    app.stop().await;
}
