//! Hosted mode: a back end that anonymous visitors reach through a public
//! documentation page. Every limit is tried over real sockets, and the
//! server must stay healthy for everyone else.

mod common;

use std::time::Duration;

use common::{
    connect, connect_with, eventually, greeted, http, http_get, receive, refusal, serve, status_of, Socket,
};
use futures_util::{SinkExt, StreamExt};
use shared::{Kind, Operation, Origin, SandboxId, ServerMessage, WriteChange};
use tokio_tungstenite::tungstenite::Message;

/// A page of another site cannot drive the playground: its WebSocket and
/// its API calls are refused before any handler runs, and nothing changes.
/// An allowed embedding site gets CORS; every response carries the
/// security headers.
#[tokio::test]
async fn pages_of_other_origins_are_refused() {
    let t = common::start(|c| {
        c.hosted = true;
        c.allowed_origins = vec!["https://docs.example.com".into()];
        c.frame_ancestors = vec!["https://docs.example.com".into()];
    });
    let served = serve(&t).await;
    let evil = [("Origin", "https://evil.example")];

    match connect_with(served.addr, "?sandbox=default", &evil).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 403)
        }
        other => panic!("expected a 403, got {:?}", other.map(|_| "a socket")),
    }
    let body = r#"{"name":"Owned"}"#;
    let response = http(served.addr, "PUT", "/api/v1/users/1", &evil, body).await;
    assert_eq!(status_of(&response), 403, "{response}");
    let response = http_get(served.addr, "/api/v1/users/1").await;
    assert!(!response.contains("Owned"), "the row is unchanged: {response}");
    assert!(
        t.backend.playground.sandboxes.len() <= 1,
        "no sandbox was made for the refused page"
    );

    let docs = [("Origin", "https://docs.example.com")];
    let mut socket = connect_with(served.addr, "", &docs)
        .await
        .expect("an allowed origin connects");
    greeted(&mut socket).await;
    let response = http(served.addr, "GET", "/api/v1/users/1", &docs, "").await;
    assert_eq!(status_of(&response), 200, "{response}");
    let lower = response.to_ascii_lowercase();
    assert!(
        lower.contains("access-control-allow-origin: https://docs.example.com"),
        "{response}"
    );
    assert!(lower.contains("x-content-type-options: nosniff"), "{response}");
    assert!(lower.contains("referrer-policy: no-referrer"), "{response}");
    // Only the embed pages may be framed by the documentation site.
    assert!(
        lower.contains("frame-ancestors 'self'\r\n") || lower.contains("frame-ancestors 'self'\n"),
        "{response}"
    );
    let embed = http_get(served.addr, "/embed/stampede?step=2").await;
    let lower = embed.to_ascii_lowercase();
    assert_eq!(status_of(&embed), 200, "{embed}");
    assert!(
        lower.contains("frame-ancestors 'self' https://docs.example.com\r\n"),
        "{embed}"
    );
    assert!(!lower.contains("x-frame-options"), "{embed}");
    assert!(embed.contains("The fix: a lock in Redis"), "{embed}");
    // Hosted, nothing on this machine is trusted to frame it by default.
    assert!(!lower.contains("127.0.0.1:*"), "{embed}");
}

/// Hosted, a page cannot choose a sandbox's name: it is given a token
/// nobody can guess. REST uses existing sandboxes only. A sandbox that
/// expired comes back as a new one, and the page is told.
#[tokio::test]
async fn hosted_sandboxes_are_server_issued_and_expire() {
    let t = common::start(|c| c.hosted = true);
    let served = serve(&t).await;
    let mut socket = connect(served.addr, "?sandbox=mine").await;
    let token = greeted(&mut socket).await;
    assert_ne!(token.as_str(), "mine");
    assert!(
        token.as_str().starts_with('s') && token.as_str().len() == 27,
        "{token}"
    );

    let response = http_get(served.addr, "/api/v1/users/1?sandbox=mine").await;
    assert_eq!(status_of(&response), 404, "{response}");
    // The name as the reader typed it, in JSON's quotes, not Rust's Debug.
    assert!(response.contains(r#"no sandbox \"mine\""#), "{response}");
    let response = http_get(served.addr, &format!("/api/v1/users/1?sandbox={token}")).await;
    assert_eq!(status_of(&response), 200, "{response}");

    // The page goes away; once idle, its sandbox is removed.
    socket.close(None).await.unwrap();
    let sandboxes = &t.backend.playground.sandboxes;
    let sandbox = sandboxes.get(&token).unwrap();
    eventually("the session to end", Duration::from_secs(10), || {
        sandbox.watchers() == 0
    })
    .await;
    drop(sandbox);
    assert_eq!(sandboxes.reap(Duration::ZERO).await, 1);
    assert!(sandboxes.get(&token).is_err());

    let mut socket = connect(served.addr, &format!("?sandbox={token}")).await;
    let fresh = greeted(&mut socket).await;
    assert_ne!(fresh, token);
    match receive(&mut socket).await {
        ServerMessage::Error { message, .. } => assert!(message.contains("expired"), "{message}"),
        other => panic!("expected the expiry notice, got {other:?}"),
    }
}

/// A flood of 1,000 attempts to open new sandboxes from one address: the
/// per-address rate limit holds, then the global cap holds for many
/// addresses, and `/healthz` answers throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_new_sandboxes_is_held_by_the_rate_limit_and_the_cap() {
    let t = common::start(|c| {
        c.hosted = true;
        c.trust_forwarded_for = true;
        c.max_sandboxes = Some(20);
    });
    let served = serve(&t).await;
    let addr = served.addr;

    // Health checks, from another address, all through the flood.
    let (stop_checks, mut stopped) = tokio::sync::watch::channel(false);
    let checks = tokio::spawn(async move {
        let mut latencies = Vec::new();
        loop {
            let started = std::time::Instant::now();
            let response = http_get(addr, "/healthz").await;
            assert_eq!(status_of(&response), 200, "{response}");
            latencies.push(started.elapsed());
            tokio::select! {
                _ = stopped.changed() => return latencies,
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        }
    });

    let started = std::time::Instant::now();
    let (mut created, mut refused) = (0usize, 0usize);
    for wave in 0..20 {
        let attempts: Vec<_> = (0..50)
            .map(|_| {
                tokio::spawn(async move {
                    let mut socket = connect_with(addr, "", &[("X-Forwarded-For", "203.0.113.1")])
                        .await
                        .unwrap();
                    match receive(&mut socket).await {
                        ServerMessage::Hello { .. } => {
                            let _ = socket.close(None).await;
                            Ok(())
                        }
                        ServerMessage::Error { message, .. } => Err(message),
                        other => panic!("unexpected {other:?}"),
                    }
                })
            })
            .collect();
        for attempt in attempts {
            match attempt.await.unwrap() {
                Ok(()) => created += 1,
                Err(message) => {
                    assert!(
                        message.contains("too many new sandboxes")
                            || message.contains("too many open connections"),
                        "wave {wave}: {message}"
                    );
                    refused += 1;
                }
            }
        }
    }
    // Six a minute, a new one every ten seconds after the first six.
    let allowed = 6 + started.elapsed().as_secs() as usize / 10;
    assert!(
        created >= 1 && created <= allowed,
        "{created} created, {allowed} allowed"
    );
    assert_eq!(created + refused, 1_000);

    // Many addresses: the global cap of 20 holds.
    let mut full = 0;
    for n in 0..40 {
        let address = format!("198.51.100.{n}");
        let mut socket = connect_with(addr, "", &[("X-Forwarded-For", &address)])
            .await
            .unwrap();
        match receive(&mut socket).await {
            ServerMessage::Hello { .. } => {}
            ServerMessage::Error { message, .. } => {
                assert!(message.contains("full"), "{message}");
                full += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // The 20 (no page touched `default`, which would be one more).
    assert_eq!(t.backend.playground.sandboxes.len(), 20);
    assert_eq!(full, 40 - (20 - created), "refused as full");

    stop_checks.send(true).unwrap();
    let mut latencies = checks.await.unwrap();
    assert!(!latencies.is_empty());
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    // Reported for the notes, not asserted: the machine is shared.
    eprintln!(
        "/healthz during the flood: {} checks, p99 {p99:?}",
        latencies.len()
    );
}

/// Sends `text` and returns the error it gets.
async fn error_for(socket: &mut Socket, text: String) -> String {
    socket.send(Message::Text(text.into())).await.unwrap();
    match receive(socket).await {
        ServerMessage::Error { message, .. } => message,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Over-sized messages end the session (and only it); malformed JSON,
/// unknown commands and over-long lists get a short error and the session
/// goes on.
#[tokio::test]
async fn bad_messages_get_clear_errors_and_the_server_stays_healthy() {
    let t = common::start(|_| {});
    let served = serve(&t).await;
    let mut socket = connect(served.addr, "?sandbox=default").await;
    greeted(&mut socket).await;

    let message = error_for(&mut socket, "not json".into()).await;
    assert!(message.contains("not a valid command"), "{message}");
    let message = error_for(&mut socket, r#"{"type":"launch_missiles"}"#.into()).await;
    assert!(message.contains("not a valid command"), "{message}");
    let breakpoints = vec!["\"store_in_cache\""; 17].join(",");
    let message = error_for(
        &mut socket,
        format!(r#"{{"type":"read","request_id":1,"kind":"users","id":1,"pause_before":[{breakpoints}]}}"#),
    )
    .await;
    assert!(message.contains("at most 16 breakpoints"), "{message}");
    let long_kind = "x".repeat(10_000);
    let message = error_for(
        &mut socket,
        format!(r#"{{"type":"read","request_id":2,"kind":"{long_kind}","id":1}}"#),
    )
    .await;
    assert!(
        message.len() < 600,
        "errors never echo much: {} bytes",
        message.len()
    );

    // The session still works.
    socket
        .send(Message::Text(
            r#"{"type":"read","request_id":3,"kind":"users","id":1}"#.into(),
        ))
        .await
        .unwrap();
    loop {
        if let ServerMessage::ReadReply { request_id, .. } = receive(&mut socket).await {
            assert_eq!(request_id, 3);
            break;
        }
    }

    // 3 MB in one message: the session ends, nothing is run.
    let huge = format!(
        r#"{{"type":"read","request_id":4,"kind":"users","id":1,"pause_before":[{}]}}"#,
        vec!["\"check_cache\""; 200_000].join(",")
    );
    let _ = socket.send(Message::Text(huge.into())).await;
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("the session ends");
    assert!(matches!(end, None | Some(1009)), "{end:?}");
    let default = t
        .backend
        .playground
        .sandbox(&SandboxId::default_sandbox())
        .unwrap();
    eventually("the session to end", Duration::from_secs(10), || {
        default.watchers() == 0
    })
    .await;

    let response = http_get(served.addr, "/healthz").await;
    assert_eq!(status_of(&response), 200);
    let mut again = connect(served.addr, "?sandbox=default").await;
    greeted(&mut again).await;

    // Request bodies are bounded too.
    let big = format!(r#"{{"name":"{}"}}"#, "n".repeat(20_000));
    let response = http(served.addr, "PUT", "/api/v1/users/1", &[], &big).await;
    assert_eq!(status_of(&response), 413, "{response}");
    assert!(response.contains("at most 16 KB of JSON"), "{response}");
    // A method an address does not take: JSON like every refusal, and the
    // methods it does take.
    let response = http(served.addr, "PATCH", "/api/v1/users/1", &[], "{}").await;
    assert_eq!(status_of(&response), 405, "{response}");
    assert!(
        response.contains(r#""error":"PATCH is not allowed on \"/api/v1/users/1\""#),
        "{response}"
    );
    assert!(
        response.to_ascii_lowercase().contains("\nallow: ") && response.contains("PUT"),
        "{response}"
    );
}

/// A client that hangs up right after sending a write does not leave the
/// cache stale: the write runs to its end, invalidation included.
#[tokio::test]
async fn a_write_whose_client_hung_up_still_invalidates_the_cache() {
    use tokio::io::AsyncWriteExt;
    let t = common::start(|c| c.db_latency_ms = 300);
    let served = serve(&t).await;
    let playground = &t.backend.playground;
    let first = t.read(Kind::Users, 5).await;
    let before = playground.database.query_count();
    let mut trace_feed = playground
        .sandbox(&SandboxId::default_sandbox())
        .unwrap()
        .feed
        .subscribe();

    let body = r#"{"name":"Written After Hang-Up"}"#;
    let mut stream = tokio::net::TcpStream::connect(served.addr).await.unwrap();
    let request = format!(
        "PUT /api/v1/users/5 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // Hang up once the write has reached the database (its SQL takes
    // 300 ms; the cache step comes after).
    eventually("the write to reach the database", Duration::from_secs(10), || {
        playground.database.query_count() > before
    })
    .await;
    drop(stream);

    // The write's trace arrives when it finished, cache step included.
    let finished = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(backend::feed::FeedEvent::Message(published)) = trace_feed.next().await {
                if let ServerMessage::Trace { trace, .. } = published.message().clone() {
                    if matches!(trace.operation, Operation::Update { .. }) {
                        return trace;
                    }
                }
            }
        }
    })
    .await
    .expect("the write finishes although its client left");
    assert!(finished.found);
    let read = t.read(Kind::Users, 5).await;
    assert_eq!(read.outcome, shared::Outcome::Miss, "the old copy was deleted");
    let name = |r: &shared::ReadResult| match &r.record {
        Some(shared::Record::User(u)) => u.name.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(name(&read), "Written After Hang-Up");
    assert_ne!(name(&first), name(&read));
}

/// Sockets are capped per sandbox and per client address; the refusal
/// says which, and says to try later (1013).
#[tokio::test]
async fn sockets_are_capped_per_sandbox_and_per_client() {
    let t = common::start(|c| {
        c.sockets_per_sandbox = Some(2);
        c.sockets_per_client = Some(3);
    });
    let served = serve(&t).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut socket = connect(served.addr, "?sandbox=shared-tab").await;
        greeted(&mut socket).await;
        open.push(socket);
    }
    let mut third = connect(served.addr, "?sandbox=shared-tab").await;
    let (message, code) = refusal(&mut third).await;
    assert!(message.contains("too many tabs"), "{message}");
    assert_eq!(code, 1013);

    let mut other = connect(served.addr, "?sandbox=other-tab").await;
    greeted(&mut other).await;
    open.push(other);
    let mut fourth = connect(served.addr, "?sandbox=third-tab").await;
    let (message, code) = refusal(&mut fourth).await;
    assert!(message.contains("too many open connections"), "{message}");
    assert_eq!(code, 1013);
    // Closing one makes room.
    let mut first = open.remove(0);
    first.close(None).await.unwrap();
    eventually("the slot to be given back", Duration::from_secs(10), || {
        t.backend
            .playground
            .sandbox(&SandboxId::parse("shared-tab").unwrap())
            .is_ok_and(|s| s.watchers() == 1)
    })
    .await;
    let mut socket = connect(served.addr, "?sandbox=third-tab").await;
    greeted(&mut socket).await;
}

/// `POST /api/v1/reset` puts `default` back to its seed, empties its
/// cache and tells its watchers.
#[tokio::test]
async fn the_default_sandbox_can_be_reset_to_its_seed() {
    let t = common::start(|_| {});
    let served = serve(&t).await;
    let seed_name = match t.read(Kind::Users, 1).await.record {
        Some(shared::Record::User(u)) => u.name,
        other => panic!("{other:?}"),
    };
    let body = r#"{"name":"Renamed Before Reset"}"#;
    let response = http(served.addr, "PUT", "/api/v1/users/1", &[], body).await;
    assert_eq!(status_of(&response), 200, "{response}");
    t.read(Kind::Users, 1).await;
    t.read(Kind::Users, 2).await;
    assert!(!t.all_keys().is_empty());
    let mut watcher = connect(served.addr, "?sandbox=default").await;
    greeted(&mut watcher).await;

    let response = http(served.addr, "POST", "/api/v1/reset", &[], "").await;
    assert_eq!(status_of(&response), 200, "{response}");
    loop {
        if let ServerMessage::Reset { stats } = receive(&mut watcher).await {
            assert_eq!(stats.reads(), 0);
            break;
        }
    }
    assert!(t.all_keys().is_empty(), "{:?}", t.all_keys());
    let read = t.read(Kind::Users, 1).await;
    assert_eq!(read.outcome, shared::Outcome::Miss);
    match read.record {
        Some(shared::Record::User(u)) => assert_eq!(u.name, seed_name),
        other => panic!("{other:?}"),
    }
}

/// A sandbox holds a bounded number of records in Redis: past it, reads of
/// new records are refused with a reason (not cached, not run), until a
/// reset. A herd is admitted whole or not at all.
#[tokio::test]
async fn a_sandbox_holds_a_bounded_number_of_keys() {
    let t = common::start(|c| c.sandbox_max_keys = Some(3));
    let playground = &t.backend.playground;
    let sandbox = SandboxId::default_sandbox();
    for id in 1..=3 {
        t.read(Kind::Users, id).await;
    }
    let error = playground
        .read(&sandbox, Kind::Users, 4, Origin::Rest)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("as many cached records as it may (3)"),
        "{error}"
    );
    // Records it holds already are fine.
    t.read(Kind::Users, 2).await;
    let writes = playground
        .write(&sandbox, Kind::Products, 9, WriteChange::Delete, Origin::Rest)
        .await;
    assert!(writes.is_err(), "a write of a new record is bounded too");
    let keys = t.all_keys();
    assert!(keys.len() <= 3, "{keys:?}");
    let herd = shared::HerdSpec {
        kind: Kind::Users,
        id: 100,
        requests: 5,
        defence: shared::Defence::None,
        timing: shared::HerdTiming::Cold,
        beta: 1.0,
        jitter_percent: 0,
    };
    assert!(playground.run_herd(&sandbox, herd).await.is_err());

    playground.reset(&sandbox).await.unwrap();
    t.read(Kind::Users, 4).await;
}

/// A hundred sandboxes at once, each writing and reading (near caches on):
/// none ever reads another's data. Once idle they are reaped, and everything they held goes
/// with them: keys, database files, Redis connections, open files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_sandboxes_stay_apart_and_leave_nothing_behind() {
    // Near caches on: each instance then holds a Pub/Sub connection, the
    // most a sandbox holds in Redis.
    let t = common::start(|c| {
        c.max_sandboxes = Some(100);
        c.near_cache = true;
    });
    let playground = t.backend.playground.clone();
    t.read(Kind::Users, 1).await;
    // The default sandbox's instances subscribe in the background: counted
    // before they are up, their connections would look like leftovers.
    let default = playground.sandbox(&SandboxId::default_sandbox()).unwrap();
    assert!(default.fleet().wait_listening(Duration::from_secs(10)).await);
    let data_dir = std::fs::canonicalize(&t.backend.config.data_dir).unwrap();
    let (open_files, clients) = (common::open_files_under(&data_dir), t.redis_clients());

    let mut sandboxes = Vec::new();
    for _ in 0..100 {
        sandboxes.push(playground.open_sandbox(None).await.unwrap().id.clone());
    }
    let work: Vec<_> = sandboxes
        .iter()
        .cloned()
        .map(|sandbox| {
            let playground = playground.clone();
            tokio::spawn(async move {
                let mine = format!("Owner {}", &sandbox.as_str()[..8]);
                let change = WriteChange::Update { name: mine.clone() };
                playground
                    .write(&sandbox, Kind::Users, 1, change, Origin::Rest)
                    .await
                    .unwrap();
                for _ in 0..2 {
                    let read = playground
                        .read(&sandbox, Kind::Users, 1, Origin::Rest)
                        .await
                        .unwrap();
                    match read.record {
                        Some(shared::Record::User(u)) => {
                            assert_eq!(u.name, mine, "{sandbox} read another's row")
                        }
                        other => panic!("{other:?}"),
                    }
                }
                playground
                    .read(&sandbox, Kind::Products, 3, Origin::Rest)
                    .await
                    .unwrap();
                playground
                    .read(&sandbox, Kind::Users, 999_999, Origin::Rest)
                    .await
                    .unwrap();
                let report = playground.check_divergence(&sandbox).await.unwrap();
                assert!(report.entries.iter().all(|e| e.key.contains(sandbox.as_str())));
                assert!(
                    !report.entries.iter().any(|e| e.stale),
                    "{sandbox}: {:?}",
                    report.entries
                );
            })
        })
        .collect();
    for task in work {
        task.await.unwrap();
    }
    assert!(
        common::open_files_under(&data_dir) > open_files,
        "the count sees the sandboxes' files"
    );
    assert!(t.redis_clients() > clients, "the count sees their connections");
    let keys = t.all_keys();
    assert!(keys.len() >= 300, "{} keys", keys.len());

    let sandbox_dir = t.backend.config.data_dir.join("sandboxes");
    assert_eq!(playground.sandboxes.reap(Duration::ZERO).await, 100);
    // `default` keeps its keys; nothing of the hundred is left.
    let left: Vec<String> = t
        .all_keys()
        .into_iter()
        .filter(|k| !k.starts_with("cache:default:"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let files: Vec<String> = std::fs::read_dir(&sandbox_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with(".template"))
        .collect();
    assert!(files.is_empty(), "{files:?}");
    eventually("the Redis connections to close", Duration::from_secs(10), || {
        t.redis_clients() <= clients
    })
    .await;
    eventually("the database files to close", Duration::from_secs(10), || {
        common::open_files_under(&data_dir) <= open_files
    })
    .await;
}

/// The back end's own Redis is sized for every sandbox holding all it may,
/// each record as large as records get, and set never to evict: one
/// sandbox cannot push out another's keys. The size per record is
/// measured here, at its largest.
#[tokio::test]
async fn the_shared_redis_has_room_for_every_sandbox_and_never_evicts() {
    let t = common::start(|c| c.sandbox_max_keys = Some(400));
    let limits = t.backend.config.limits();
    let config = |name: &str| -> String {
        let reply: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query(&mut t.redis())
            .unwrap();
        reply[1].clone()
    };
    assert_eq!(config("maxmemory-policy"), "noeviction");
    let maxmemory: u64 = config("maxmemory").parse().unwrap();
    assert!(
        maxmemory >= limits.redis_bytes(),
        "{maxmemory} < {}",
        limits.redis_bytes()
    );

    let used = || used_memory(&t);
    let playground = &t.backend.playground;
    let sandbox = playground.open_sandbox(None).await.unwrap().id.clone();
    let before = used();
    // The largest records: the longest names, in four-byte characters.
    let longest = "😀".repeat(shared::entity::MAX_NAME_LEN);
    for id in 1..=200 {
        let change = WriteChange::Update {
            name: longest.clone(),
        };
        playground
            .write(&sandbox, Kind::Users, id, change, Origin::Rest)
            .await
            .unwrap();
        playground
            .read(&sandbox, Kind::Users, id, Origin::Rest)
            .await
            .unwrap();
    }
    let per_record = (used() - before) / 200;
    assert!(
        per_record <= backend::config::RECORD_BYTES,
        "{per_record} bytes per record, more than the {} the limits assume",
        backend::config::RECORD_BYTES
    );
}

/// The shared Redis's `used_memory`, from `INFO memory`.
fn used_memory(t: &common::TestBackend) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query(&mut t.redis()).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// A browser that goes silent (not even answering pings) is closed after
/// `--socket-silence-secs`; one that answers stays.
#[tokio::test]
async fn silent_sockets_are_closed_and_live_ones_stay() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = common::start(|c| c.socket_silence_secs = 3);
    let served = serve(&t).await;

    // A live browser: its library answers pings while it reads.
    let mut live = connect(served.addr, "?sandbox=live").await;
    greeted(&mut live).await;
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = live.next().await {} });

    // A silent one: a raw handshake, then nothing, not even pongs.
    let mut silent = tokio::net::TcpStream::connect(served.addr).await.unwrap();
    silent
        .write_all(
            b"GET /ws?sandbox=silent HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), silent.read_to_end(&mut received))
        .await
        .expect("the silent socket is closed")
        .unwrap();
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 101"), "{text:.100}");
    // Pings (0x89) were sent; a close frame (0x88) ended it.
    assert!(received.contains(&0x89) && received.contains(&0x88));

    // The live one, silent as long but answering pings, is still there.
    assert!(!reader.is_finished(), "the live socket stayed open");
    reader.abort();
    let sandbox = t
        .backend
        .playground
        .sandbox(&SandboxId::parse("silent").unwrap())
        .unwrap();
    eventually("the silent session to end", Duration::from_secs(10), || {
        sandbox.watchers() == 0
    })
    .await;
    let live = t
        .backend
        .playground
        .sandbox(&SandboxId::parse("live").unwrap())
        .unwrap();
    assert_eq!(live.watchers(), 1);
}

/// Padded values are counted by their size: a sandbox padding every
/// record by the most allowed holds as many of them as fit in its share
/// of Redis (each counts as many plain records), then is told why it may
/// hold no more. Every trace carries the start of a padded `SET`, not the
/// whole value, and the page still gets its record whole over a
/// WebSocket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn padded_values_count_by_their_size_and_traces_carry_only_their_start() {
    let t = common::start(|c| c.sandbox_max_keys = Some(400));
    let served = serve(&t).await;
    let playground = &t.backend.playground;
    let sandbox = playground.open_sandbox(None).await.unwrap().id.clone();
    let padding = shared::SandboxSettings::PADDING_BYTES.1;
    let mut settings = playground.sandbox(&sandbox).unwrap().settings();
    settings.value_padding_bytes = padding;
    playground.update_settings(&sandbox, settings.clone()).unwrap();
    settings.value_padding_bytes = padding + 1;
    assert!(
        playground.update_settings(&sandbox, settings).is_err(),
        "beyond the most"
    );

    let mut page = connect(served.addr, &format!("?sandbox={sandbox}")).await;
    greeted(&mut page).await;
    let weight = backend::ledger::weight_of_padding(padding);
    let fits = 400 / weight;
    assert!(fits >= 2, "some padded records fit: {fits}");
    let used = || used_memory(&t);
    let before = used();
    for id in 1..=fits + 1 {
        let read = shared::ClientMessage::Read {
            request_id: id,
            kind: Kind::Users,
            id,
            pause_before: Vec::new(),
            instance: None,
        };
        page.send(Message::text(serde_json::to_string(&read).unwrap()))
            .await
            .unwrap();
        let (mut reply, mut set) = (None, None);
        loop {
            match common::receive(&mut page).await {
                ServerMessage::ReadReply { request_id, result } if request_id == id => reply = Some(result),
                ServerMessage::Trace { trace, .. } => {
                    set = trace.steps.iter().find_map(|s| match &s.action {
                        shared::Action::Redis(command) if command.starts_with("SET ") => {
                            Some(command.clone())
                        }
                        _ => None,
                    })
                }
                ServerMessage::Error {
                    request_id: Some(r),
                    message,
                    ..
                } if r == id => {
                    // Past the share: refused, saying why.
                    assert_eq!(id, fits + 1, "refused too early: {message}");
                    assert!(message.contains(&format!("counting as {weight}")), "{message}");
                    break;
                }
                _ => {}
            }
            if let (Some(result), Some(set)) = (&reply, &set) {
                assert!(id <= fits, "read {id} admitted beyond the share of {fits}");
                let Some(shared::Record::User(user)) = &result.record else {
                    panic!("{result:?}")
                };
                assert_eq!(user.notes.len() as u64, padding, "the page gets the whole record");
                assert!(set.len() < 4_096, "the trace's SET is {} bytes", set.len());
                assert!(set.contains("bytes in all) …"), "{set}");
                assert!(set.contains("\" EX "), "the TTL stays: {set}");
                break;
            }
        }
    }
    // The share: its records, and room for one value in transit (a
    // connection's buffer), as the shared Redis is sized.
    let grown = used().saturating_sub(before);
    let share = 400 * backend::config::RECORD_BYTES + padding + backend::config::RECORD_BYTES;
    assert!(
        grown <= share,
        "{grown} bytes, more than the sandbox's share of {share}"
    );
}

/// Hosted, nothing a visitor caches may outlive the configured longest
/// TTL: every setting that decides how long a key lives is held to it.
#[tokio::test]
async fn no_ttl_setting_may_exceed_the_longest_allowed() {
    let t = common::start(|c| c.max_ttl_secs = Some(3_600));
    let playground = &t.backend.playground;
    let sandbox = playground.open_sandbox(None).await.unwrap().id.clone();
    let base = playground.sandbox(&sandbox).unwrap().settings();
    type Change = fn(&mut shared::SandboxSettings);
    let cases: [(&str, Change); 5] = [
        ("cache_ttl_secs", |s| s.cache_ttl_secs = 3_601),
        ("null_ttl_secs", |s| s.null_ttl_secs = 3_601),
        ("near_ttl_secs", |s| s.near_ttl_secs = 3_601),
        ("product_ttl_secs", |s| s.product_ttl_secs = 3_601),
        ("fail_safe_secs", |s| s.fail_safe_secs = 3_601),
    ];
    for (name, change) in cases {
        let mut settings = base.clone();
        change(&mut settings);
        let error = playground.update_settings(&sandbox, settings).unwrap_err();
        assert!(
            error
                .to_string()
                .contains(&format!("{name} must be at most 3600")),
            "{error}"
        );
    }
    let mut longest = base;
    longest.product_ttl_secs = 3_600;
    playground.update_settings(&sandbox, longest).unwrap();
}
