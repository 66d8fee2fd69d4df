//! Fuzzing the decoders anonymous visitors reach: WebSocket commands (JSON
//! and the page's binary form) and REST requests built from random and
//! half-valid parts, sent to a real back end. A bounded, deterministic run
//! (the same cases every time), so CI stays short and a failure can be
//! replayed. The back end must never
//! panic, never answer 5xx for bad input, never drop the session for a bad
//! command, and keep serving.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use futures_util::SinkExt;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{json, Value};
use shared::ServerMessage;
use tokio_tungstenite::tungstenite::Message;
use tower::ServiceExt;

/// JSON values that tend to break decoders: edges of numbers, odd
/// strings, wrong types.
fn awkward_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop_oneof![
            Just(0i64),
            Just(1),
            Just(-1),
            Just(i64::MAX),
            Just(i64::MIN),
            any::<i64>()
        ]
        .prop_map(Value::from),
        prop_oneof![
            Just(u64::MAX),
            Just(999_999_999),
            Just(1_000_000_000),
            any::<u64>()
        ]
        .prop_map(Value::from),
        prop_oneof![
            Just(1e308),
            Just(-0.5),
            Just(0.0001),
            any::<f64>().prop_filter("finite", |f| f.is_finite())
        ]
        .prop_map(Value::from),
        prop_oneof![
            Just(String::new()),
            Just("users".to_string()),
            Just("products".to_string()),
            Just("A".to_string()),
            Just("check_cache".to_string()),
            Just("x".repeat(300)),
            Just("\u{0}\u{202e}é😀".to_string()),
            "\\PC{0,40}",
        ]
        .prop_map(Value::from),
        prop::collection::vec(
            prop_oneof![
                Just(json!("store_in_cache")),
                Just(json!(7)),
                "\\PC{0,8}".prop_map(Value::from)
            ],
            0..20
        )
        .prop_map(Value::from),
        Just(json!({})),
        Just(json!({"op": "update", "name": "Fuzzed"})),
        Just(json!({"op": "delete"})),
        Just(json!({"op": "update", "name": ""})),
    ]
}

/// A command: a known (or unknown) type and a random subset of the fields
/// commands have, each awkward.
fn command() -> impl Strategy<Value = String> {
    let types = prop_oneof![
        Just("read"),
        Just("write"),
        Just("set_instance_link"),
        Just("run_herd"),
        Just("continue"),
        Just("run_scenario"),
        Just("check_divergence"),
        Just("update_settings"),
        Just("reset"),
        Just("launch_missiles"),
    ];
    let fields = prop::collection::btree_map(
        prop_oneof![
            Just("request_id"),
            Just("kind"),
            Just("id"),
            Just("pause_before"),
            Just("instance"),
            Just("change"),
            Just("connected"),
            Just("operation_id"),
            Just("herd"),
            Just("scenario"),
            Just("settings"),
        ],
        awkward_value(),
        0..8,
    );
    let structured = (types, fields).prop_map(|(kind, fields)| {
        let mut object = serde_json::Map::new();
        object.insert("type".into(), Value::from(kind));
        for (name, value) in fields {
            object.insert(name.into(), value);
        }
        Value::Object(object).to_string()
    });
    // Half of the cases are well-typed reads with awkward values, so the
    // fuzz also gets past the decoder into the handlers.
    let reads = (
        any::<u64>(),
        prop_oneof![Just("users"), Just("products")],
        0u64..2_000_000_000,
    )
        .prop_map(|(request_id, kind, id)| {
            json!({"type": "read", "request_id": request_id, "kind": kind, "id": id}).to_string()
        });
    prop_oneof![
        3 => structured,
        1 => reads,
        1 => "\\PC{0,300}",
        1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

/// Samples `n` values of `strategy` from a fixed seed.
fn sample<S: Strategy>(strategy: S, n: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::deterministic();
    (0..n)
        .map(|_| strategy.new_tree(&mut runner).expect("a value").current())
        .collect()
}

/// 600 random commands over one session: each bad one gets an error, the
/// session never drops, and a plain read still works after every batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_websocket_commands_never_break_the_session() {
    let frames = sample(command(), 600)
        .into_iter()
        .map(|text| Message::Text(text.into()))
        .collect();
    fuzz_session("", frames).await;
}

/// The same on the page's binary wire: each fuzzed command that is one
/// (awkward values and all) in its binary form, every third of those with
/// a byte changed or cut short, and the rest as bytes that are no command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_binary_commands_never_break_the_session() {
    let frames = sample(command(), 600)
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let mut bytes = match serde_json::from_str::<shared::ClientMessage>(&text) {
                Ok(command) => shared::wire::to_binary(&command),
                Err(_) => text.into_bytes(),
            };
            match (i % 3, bytes.len()) {
                (_, 0) | (0, _) => {}
                (1, n) => bytes[i % n] ^= 0x5a,
                (_, n) => bytes.truncate(i % n),
            }
            Message::Binary(bytes.into())
        })
        .collect();
    fuzz_session("&wire=binary", frames).await;
}

/// Sends `frames` over one session (`wire`: extra query), in batches, each
/// followed by the default settings and a read that must be answered.
async fn fuzz_session(wire: &str, frames: Vec<Message>) {
    let t = common::start(|c| {
        c.max_herd_requests = Some(20);
        c.pause_timeout_secs = 1;
    });
    let served = common::serve(&t).await;
    let mut socket = common::connect(served.addr, &format!("?sandbox=fuzz{wire}")).await;
    assert!(matches!(
        common::receive(&mut socket).await,
        ServerMessage::Hello { .. }
    ));
    let mut errors = 0;
    for (batch, frames) in frames.chunks(30).enumerate() {
        for frame in frames {
            socket.send(frame.clone()).await.unwrap();
        }
        // Settings back to the defaults (a fuzzed one may have set a slow
        // database), then a read that must be answered.
        let defaults = serde_json::to_string(&shared::ClientMessage::UpdateSettings {
            settings: t.backend.config.sandbox_defaults(),
        })
        .unwrap();
        socket.send(Message::Text(defaults.clone().into())).await.unwrap();
        let alive = u64::MAX - batch as u64;
        let read = json!({"type": "read", "request_id": alive, "kind": "users", "id": 1}).to_string();
        socket.send(Message::Text(read.clone().into())).await.unwrap();
        // A fuzzed reset may be running: then the settings or the read are
        // refused ("being reset") and sent again once that reset is
        // announced (the announcement and the refusal come in either order).
        let (mut refused, mut reset_since_sent) = (false, false);
        loop {
            match common::receive(&mut socket).await {
                ServerMessage::ReadReply { request_id, .. } if request_id == alive => break,
                // The settings or the read refused: both go again.
                ServerMessage::Error { message, .. } if message.contains("being reset") => refused = true,
                ServerMessage::Reset { .. } => reset_since_sent = true,
                ServerMessage::Error { message, .. } => {
                    assert!(message.len() < 600, "a long error: {message:.100}");
                    errors += 1;
                }
                _ => {}
            }
            if refused && reset_since_sent {
                (refused, reset_since_sent) = (false, false);
                socket.send(Message::Text(defaults.clone().into())).await.unwrap();
                socket.send(Message::Text(read.clone().into())).await.unwrap();
            }
        }
    }
    assert!(errors > 100, "the fuzz reached the error paths: {errors} errors");
    let health = common::http_get(served.addr, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
}

/// A REST request from random parts.
fn rest_request() -> impl Strategy<Value = (String, String, String)> {
    let method = prop_oneof![Just("GET"), Just("PUT"), Just("DELETE"), Just("POST")];
    let segment = prop_oneof![
        Just("users".to_string()),
        Just("products".to_string()),
        Just("1".to_string()),
        Just("0".to_string()),
        Just("999999999999999999999".to_string()),
        Just("-3".to_string()),
        Just("%00".to_string()),
        Just("..".to_string()),
        "[a-zA-Z0-9%._~-]{0,30}",
    ];
    let path = prop_oneof![
        (segment.clone(), segment.clone()).prop_map(|(k, i)| format!("/api/v1/{k}/{i}")),
        Just("/api/v1/divergence".to_string()),
        Just("/api/v1/reset".to_string()),
        Just("/api/v1/scenarios/stale-set-race".to_string()),
        segment.clone().prop_map(|s| format!("/api/v1/{s}")),
    ];
    let query = prop_oneof![
        Just(String::new()),
        Just("?sandbox=default".to_string()),
        Just("?sandbox=".to_string()),
        Just("?sandbox=default&sandbox=x".to_string()),
        Just("?kind=users&id=1".to_string()),
        Just("?instance=Z".to_string()),
        "\\?[a-z=&%0-9]{0,40}",
    ];
    let body = prop_oneof![
        Just(String::new()),
        Just(r#"{"name":"Fuzzed"}"#.to_string()),
        Just(r#"{"name":""}"#.to_string()),
        Just(r#"{"name":5}"#.to_string()),
        Just("{".to_string()),
        "\\PC{0,100}",
    ];
    (method, (path, query).prop_map(|(p, q)| format!("{p}{q}")), body)
        .prop_map(|(m, uri, body)| (m.to_string(), uri, body))
}

/// 400 random REST requests: every one is answered, never with a 5xx, and
/// every error is a JSON body with a message.
#[tokio::test]
async fn random_rest_requests_get_clear_answers() {
    let t = common::start(|_| {});
    let router = t.backend.router(tokio::sync::watch::channel(false).1).layer(
        axum::extract::connect_info::MockConnectInfo(std::net::SocketAddr::from(([127, 0, 0, 1], 1))),
    );
    for (method, uri, body) in sample(rest_request(), 400) {
        let Ok(request) = Request::builder()
            .method(method.as_str())
            .uri(&uri)
            .header("content-type", "application/json")
            .body(Body::from(body.clone()))
        else {
            // Not even a valid request line: no server would see it.
            continue;
        };
        let response = tokio::time::timeout(Duration::from_secs(30), router.clone().oneshot(request))
            .await
            .unwrap_or_else(|_| panic!("{method} {uri} hung"))
            .unwrap();
        let status = response.status();
        assert!(!status.is_server_error(), "{method} {uri} {body:?}: {status}");
        if status.is_client_error() {
            let bytes = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            let json: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("{method} {uri}: not JSON: {}", String::from_utf8_lossy(&bytes)));
            assert!(
                json["error"]
                    .as_str()
                    .is_some_and(|e| !e.is_empty() && e.len() < 600),
                "{json}"
            );
        }
    }
}
