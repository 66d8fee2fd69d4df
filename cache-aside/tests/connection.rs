//! Connecting: a handshake slower than a command may take still completes
//! (in its own task, one attempt at a time), so a distant Redis over TLS is
//! not lost for good to a tight command timeout.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_aside::{Redis, RedisError};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy in front of `target` that holds every new connection for
/// `delay` before passing bytes (a slow handshake). Counts connections.
async fn slow_proxy(target: u16, delay: Duration) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)).await {
                    let _ = copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (port, accepted)
}

#[tokio::test]
async fn a_connection_slower_than_the_command_timeout_still_completes() {
    let server = common::redis_server();
    let (port, accepted) = slow_proxy(server.port(), Duration::from_millis(300)).await;
    let redis = Redis::open(&format!("redis://127.0.0.1:{port}/")).unwrap();
    let ping = redis::cmd("PING");
    let timeout = Duration::from_millis(50);

    // Commands give up after 50 ms, but the one attempt goes on: while it
    // runs, no second one starts.
    for _ in 0..3 {
        assert_eq!(
            redis.query(&ping, timeout).await,
            Err(RedisError::Timeout(timeout))
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one attempt at a time");
    // The attempt ends after the proxy's 300 ms; waiting for it is the
    // only wait here (bounded), then a 50 ms command succeeds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !redis.is_connected() {
        assert!(tokio::time::Instant::now() < deadline, "never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        redis.query(&ping, timeout).await,
        Ok(redis::Value::SimpleString("PONG".into()))
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_refused_connection_fails_fast_and_is_tried_again() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redis = Redis::open(&format!("redis://127.0.0.1:{port}/")).unwrap();
    let ping = redis::cmd("PING");
    for _ in 0..2 {
        match redis.query(&ping, Duration::from_secs(5)).await {
            Err(RedisError::Failed(message)) => assert!(!message.is_empty()),
            other => panic!("expected a failure, got {other:?}"),
        }
    }
    assert!(!redis.is_connected());
}
