//! The REST API and the WebSocket, over real sockets where it matters.

mod common;

use common::{connect, http_get, receive, refusal, serve};

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use serde_json::Value;
use shared::{Origin, Outcome, ServerMessage, PROTOCOL_VERSION};
use tokio_tungstenite::tungstenite::Message;
use tower::ServiceExt;

/// The router of a test back end, to call without a socket.
fn router(t: &common::TestBackend) -> axum::Router {
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    t.backend
        .router(stopped)
        // Requests sent without a socket come from this address.
        .layer(axum::extract::connect_info::MockConnectInfo(
            std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
        ))
}

/// Sends one request to the router without a socket.
async fn get(t: &common::TestBackend, uri: &str) -> (StatusCode, Value) {
    let response = router(t)
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// A record is served with what happened: a miss, then a hit.
#[tokio::test]
async fn rest_reads_report_miss_then_hit() {
    let t = common::start(|_| {});
    let (status, body) = get(&t, "/api/v1/users/42").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["outcome"], "miss");
    assert_eq!(body["found"], true);
    assert_eq!(body["record"]["id"], 42);
    assert_eq!(body["sandbox"], "default");
    assert!(body["trace_id"].as_u64().is_some());
    let (_, body) = get(&t, "/api/v1/users/42").await;
    assert_eq!(body["outcome"], "hit");
}

/// Sends a request with a JSON body to the router.
async fn send(t: &common::TestBackend, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = router(t).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// PUT changes a name and DELETE removes a record; both say what they did
/// to the cache; bad bodies and names get a 400 that explains.
#[tokio::test]
async fn rest_writes_update_and_delete() {
    let t = common::start(|_| {});
    get(&t, "/api/v1/users/30").await;
    let (status, body) = send(&t, "PUT", "/api/v1/users/30", r#"{"name":"Grace H."}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["record"]["name"], "Grace H.");
    assert_eq!(body["record"]["version"], 2);
    assert_eq!(body["cache"]["effect"], "deleted", "{body}");
    assert_eq!(body["cache"]["key"], "cache:default:user:30", "{body}");

    let (status, _) = send(&t, "DELETE", "/api/v1/users/30", "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = get(&t, "/api/v1/users/30").await;
    assert_eq!(
        (status, body["found"].clone()),
        (StatusCode::NOT_FOUND, Value::Bool(false))
    );

    let (status, _) = send(&t, "DELETE", "/api/v1/users/30", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "deleting twice finds nothing");

    let (status, body) = send(&t, "PUT", "/api/v1/users/31", "not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().is_some(), "{body}");
    let (status, body) = send(&t, "PUT", "/api/v1/users/31", r#"{"name":"   "}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("name"), "{body}");
}

/// `?instance=` sends a REST request to one instance; an unknown one is
/// refused.
#[tokio::test]
async fn rest_requests_can_choose_their_instance() {
    let t = common::start(|_| {});
    get(&t, "/api/v1/users/50?instance=B").await;
    let trace = &t
        .backend
        .playground
        .sandbox(&shared::SandboxId::default_sandbox())
        .unwrap()
        .recent()[0];
    assert_eq!(trace.instance.as_deref(), Some("B"));
    let (status, body) = get(&t, "/api/v1/users/50?instance=Z").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("unknown instance"),
        "{body}"
    );
}

/// A record that does not exist is a 404 that still says what happened.
#[tokio::test]
async fn missing_records_are_404_with_the_outcome() {
    let t = common::start(|_| {});
    let (status, body) = get(&t, "/api/v1/products/123456").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["found"], false);
    assert_eq!(body["outcome"], "miss");
    let (_, body) = get(&t, "/api/v1/products/123456").await;
    assert_eq!(body["outcome"], "null_hit");
}

/// Bad input gets a 4xx JSON error that says what is wrong.
#[tokio::test]
async fn bad_input_gets_a_clear_json_error() {
    let t = common::start(|_| {});
    let cases = [
        (
            "/api/v1/orders/1",
            StatusCode::NOT_FOUND,
            "use one of users, products",
        ),
        ("/api/v1/users/abc", StatusCode::BAD_REQUEST, "not a whole number"),
        ("/api/v1/users/-1", StatusCode::BAD_REQUEST, "not a whole number"),
        ("/api/v1/users/0", StatusCode::BAD_REQUEST, "out of range"),
        (
            "/api/v1/users/99999999999999999999",
            StatusCode::BAD_REQUEST,
            "out of range",
        ),
        ("/api/v1/users/1?sandbox=a:b", StatusCode::BAD_REQUEST, "sandbox"),
        (
            "/api/v1/users/1?sandbox=a&sandbox=b",
            StatusCode::BAD_REQUEST,
            "query string",
        ),
    ];
    for (uri, status, message) in cases {
        let (got, body) = get(&t, uri).await;
        assert_eq!(got, status, "{uri}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(message), "{uri}: {error}");
    }
    assert_eq!(t.database_queries(), 0, "bad input must not reach the database");
}

/// The health check answers, and reports Redis going away without failing.
#[tokio::test]
async fn health_reports_redis_state() {
    let mut t = common::start(|_| {});
    let (status, body) = get(&t, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["redis"], "ok");
    t.stop_redis();
    let (status, body) = get(&t, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body["redis"].as_str().unwrap().starts_with("unavailable"),
        "{body}"
    );
}

/// Without a built front end, `/` explains how to build it.
#[tokio::test]
async fn root_explains_a_missing_front_end() {
    let t = common::start(|_| {});
    let response = router(&t)
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&bytes).contains("cargo xtask run"));
}

/// A browser watching `default` sees, live, the trace of a read made with
/// curl, steps in order.
#[tokio::test]
async fn websocket_watchers_receive_traces_of_rest_reads() {
    let t = common::start(|_| {});
    let served = serve(&t).await;
    let mut socket = connect(served.addr, "?sandbox=default").await;
    match receive(&mut socket).await {
        ServerMessage::Hello {
            protocol_version,
            sandbox,
            diagram,
            ..
        } => {
            assert_eq!(protocol_version, PROTOCOL_VERSION);
            assert_eq!(sandbox.as_str(), "default");
            assert!(!diagram.nodes.is_empty());
        }
        other => panic!("expected hello, got {other:?}"),
    }

    let response = http_get(served.addr, "/api/v1/users/17").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    match receive(&mut socket).await {
        ServerMessage::Trace { trace, stats } => {
            assert_eq!(trace.origin, Origin::Rest);
            assert_eq!(trace.outcome, Outcome::Miss);
            let nodes: Vec<_> = trace.steps.iter().map(|s| s.node.as_str()).collect();
            assert_eq!(
                nodes,
                [
                    "request",
                    "check_cache",
                    "query_database",
                    "store_in_cache",
                    "return_loaded"
                ]
            );
            assert!(response.contains(&format!("\"trace_id\":{}", trace.id)));
            assert_eq!(stats.misses, 1);
        }
        other => panic!("expected a trace, got {other:?}"),
    }
}

/// A browser that connects late still gets the sandbox's recent traces.
#[tokio::test]
async fn late_watchers_get_the_recent_traces() {
    let t = common::start(|_| {});
    t.read(shared::Kind::Users, 1).await;
    t.read(shared::Kind::Users, 1).await;
    let served = serve(&t).await;
    let mut socket = connect(served.addr, "?sandbox=default").await;
    match receive(&mut socket).await {
        ServerMessage::Hello { recent, stats, .. } => {
            let outcomes: Vec<_> = recent.iter().map(|t| t.outcome).collect();
            assert_eq!(outcomes, [Outcome::Hit, Outcome::Miss], "newest first");
            assert_eq!((stats.hits, stats.misses), (1, 1));
        }
        other => panic!("expected hello, got {other:?}"),
    }
}

/// The browser can drive reads itself: it gets its reply and, like every
/// watcher, the trace. Bad commands get an error message, not a dropped
/// connection.
#[tokio::test]
async fn websocket_commands_run_reads_and_reject_bad_input() {
    let t = common::start(|_| {});
    let served = serve(&t).await;
    let mut socket = connect(served.addr, "?sandbox=tab-1").await;
    assert!(matches!(receive(&mut socket).await, ServerMessage::Hello { .. }));

    socket
        .send(Message::Text(
            r#"{"type":"read","request_id":7,"kind":"products","id":3}"#.into(),
        ))
        .await
        .unwrap();
    let mut got_reply = false;
    let mut got_trace = false;
    while !(got_reply && got_trace) {
        match receive(&mut socket).await {
            ServerMessage::ReadReply { request_id, result } => {
                assert_eq!(request_id, 7);
                assert_eq!(result.outcome, Outcome::Miss);
                assert_eq!(result.sandbox.as_str(), "tab-1");
                got_reply = true;
            }
            ServerMessage::Trace { trace, .. } => {
                assert_eq!(trace.origin, Origin::Browser);
                got_trace = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    for bad in [
        r#"{"type":"read","request_id":8,"kind":"orders","id":3}"#,
        r#"{"type":"flushall"}"#,
        "not json",
    ] {
        socket.send(Message::Text(bad.into())).await.unwrap();
        match receive(&mut socket).await {
            ServerMessage::Error { message, .. } => {
                assert!(message.contains("not a valid command"), "{message}")
            }
            other => panic!("expected an error for {bad}, got {other:?}"),
        }
    }
    socket
        .send(Message::Text(
            r#"{"type":"read","request_id":9,"kind":"users","id":0}"#.into(),
        ))
        .await
        .unwrap();
    match receive(&mut socket).await {
        ServerMessage::Error { request_id, message } => {
            assert_eq!(request_id, Some(9));
            assert!(message.contains("out of range"), "{message}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

/// A watcher of one sandbox never sees another sandbox's traces.
#[tokio::test]
async fn websocket_streams_are_per_sandbox() {
    let t = common::start(|_| {});
    let served = serve(&t).await;
    let mut watcher = connect(served.addr, "?sandbox=b").await;
    assert!(matches!(receive(&mut watcher).await, ServerMessage::Hello { .. }));
    http_get(served.addr, "/api/v1/users/1").await;
    http_get(served.addr, "/api/v1/users/2?sandbox=b").await;
    match receive(&mut watcher).await {
        ServerMessage::Trace { trace, .. } => {
            assert_eq!(trace.sandbox.as_str(), "b");
            assert_eq!(
                trace.operation,
                shared::Operation::Read {
                    kind: shared::Kind::Users,
                    id: 2
                }
            );
        }
        other => panic!("expected b's trace, got {other:?}"),
    }
}

/// The next message of a socket that asked for the binary form: every
/// frame it gets is binary.
async fn receive_binary(socket: &mut common::Socket) -> ServerMessage {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s")
            .expect("socket open")
            .unwrap();
        match frame {
            Message::Binary(bytes) => return shared::wire::from_binary(&bytes).unwrap(),
            Message::Text(text) => panic!("a text frame on a binary socket: {text}"),
            _ => continue,
        }
    }
}

/// The page's wire (`?wire=binary`): binary frames both ways, decoded to
/// the same messages a JSON watcher of the sandbox gets at the same time;
/// a frame that is no command is answered with an error, as in JSON.
#[tokio::test]
async fn the_binary_wire_carries_the_same_messages_as_json() {
    let t = common::start(|_| {});
    let served = serve(&t).await;
    let mut page = connect(served.addr, "?sandbox=bin&wire=binary").await;
    let mut watcher = connect(served.addr, "?sandbox=bin").await;
    match receive_binary(&mut page).await {
        ServerMessage::Hello {
            protocol_version,
            sandbox,
            diagram,
            ..
        } => {
            assert_eq!(protocol_version, PROTOCOL_VERSION);
            assert_eq!(sandbox.as_str(), "bin");
            assert!(!diagram.nodes.is_empty());
        }
        other => panic!("expected the greeting, got {other:?}"),
    }
    assert!(matches!(receive(&mut watcher).await, ServerMessage::Hello { .. }));

    let read = shared::ClientMessage::Read {
        request_id: 5,
        kind: shared::Kind::Users,
        id: 4,
        pause_before: Vec::new(),
        instance: None,
    };
    page.send(Message::Binary(shared::wire::to_binary(&read).into()))
        .await
        .unwrap();
    let (mut reply, mut trace) = (None, None);
    while reply.is_none() || trace.is_none() {
        match receive_binary(&mut page).await {
            ServerMessage::ReadReply {
                request_id: 5,
                result,
            } => reply = Some(result),
            ServerMessage::Trace { trace: t, .. } => trace = Some(t),
            other => panic!("unexpected {other:?}"),
        }
    }
    let reply = reply.unwrap();
    assert_eq!((reply.outcome, reply.found), (Outcome::Miss, true));
    let record = reply.record.expect("user 4 exists");
    assert_eq!(record.id(), 4);
    // The JSON watcher got the very same trace.
    match receive(&mut watcher).await {
        ServerMessage::Trace { trace: seen, .. } => assert_eq!(Some(seen), trace),
        other => panic!("expected the trace, got {other:?}"),
    }

    for bad in [&b"\xff\xff\xff"[..], b"", br#"{"type":"reset"}"#] {
        page.send(Message::Binary(bad.to_vec().into())).await.unwrap();
        match receive_binary(&mut page).await {
            ServerMessage::Error { message, .. } => {
                assert!(message.contains("not a valid command"), "{message}")
            }
            other => panic!("expected an error for {bad:?}, got {other:?}"),
        }
    }
    // A JSON command on the binary socket is read too; answered in binary.
    page.send(Message::Text(
        r#"{"type":"read","request_id":6,"kind":"users","id":0}"#.into(),
    ))
    .await
    .unwrap();
    match receive_binary(&mut page).await {
        ServerMessage::Error { request_id, message } => {
            assert_eq!(request_id, Some(6));
            assert!(message.contains("out of range"), "{message}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

/// A wire the back end does not speak is refused (in JSON: the client's
/// own wire is unknown), not silently answered in JSON.
#[tokio::test]
async fn websocket_rejects_an_unknown_wire() {
    let t = common::start(|_| {});
    let served = serve(&t).await;
    let mut socket = connect(served.addr, "?wire=xml").await;
    let (message, code) = refusal(&mut socket).await;
    assert!(message.contains("wire"), "{message}");
    assert_eq!(code, 1008);
}

/// A bad sandbox name is refused with a reason the page can show, and a
/// close code that says not to try again.
#[tokio::test]
async fn websocket_rejects_bad_sandbox_names() {
    let t = common::start(|_| {});
    let served = serve(&t).await;
    let mut socket = connect(served.addr, "?sandbox=no%20spaces").await;
    let (message, code) = refusal(&mut socket).await;
    assert!(message.contains("sandbox"), "{message}");
    assert_eq!(code, 1008);
}

/// Shutting down does not hang on open WebSockets (Ctrl-C must stop the
/// playground promptly).
#[tokio::test]
async fn shutdown_closes_open_websockets() {
    let t = common::start(|_| {});
    let mut served = serve(&t).await;
    let mut socket = connect(served.addr, "?sandbox=default").await;
    assert!(matches!(receive(&mut socket).await, ServerMessage::Hello { .. }));
    served.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), &mut served.done)
        .await
        .expect("server stops with a socket open")
        .unwrap();
    // The client sees the connection end.
    let end = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .unwrap();
    assert!(
        matches!(end, None | Some(Ok(Message::Close(_))) | Some(Err(_))),
        "{end:?}"
    );
}
