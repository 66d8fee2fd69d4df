//! Scale-out: two back-end replicas on a three-master Redis Cluster,
//! sharing a data directory, behind HAProxy (Debian's package, the
//! configuration `e2e::balancer` writes). Sandboxes spread over both
//! replicas and each stays on one; when a replica stops, its sandboxes come
//! back on the other with every acknowledged write, the page is told, and
//! the other replica's sandboxes never fail.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use e2e::balancer::{replica_config, Balancer};
use e2e::Server;
use embedded_redis::cluster::EmbeddedCluster;
use embedded_redis::RedisServerOptions;
use futures_util::{SinkExt, StreamExt};
use shared::{SandboxId, ServerMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// A plain HTTP/1.1 request through `addr`; the status and body.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(ANSWER_WAIT, stream.read_to_string(&mut response))
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer within {ANSWER_WAIT:?}"))
        .unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

/// A GET repeated while the answer is 503 "open on another server": a
/// stopped replica's leases lapse within `backend::ownership::LEASE`, then
/// the sandbox may be taken over. Bounded.
async fn until_served(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut answer = http(addr, "GET", path, "").await;
    for _ in 0..100 {
        if answer.0 != 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        answer = http(addr, "GET", path, "").await;
    }
    answer
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long a request or a socket may keep a test waiting: the balancer's
/// own timeouts are an hour, so a back end that never answers would
/// otherwise stall the suite.
const ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The socket's next message, `what` naming it if none comes in time.
async fn next_message(socket: &mut Socket, what: &str) -> Message {
    tokio::time::timeout(ANSWER_WAIT, socket.next())
        .await
        .unwrap_or_else(|_| panic!("no {what} within {ANSWER_WAIT:?}"))
        .unwrap_or_else(|| panic!("the socket closed before {what}"))
        .unwrap()
}

/// Opens a WebSocket through the balancer; returns it and its greeting's
/// sandbox and `moved` flag, and the first notice if one follows.
async fn connect(addr: SocketAddr, query: &str) -> (Socket, SandboxId, bool) {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws{query}"))
        .await
        .unwrap();
    loop {
        let message = next_message(&mut socket, "greeting").await;
        if let Message::Text(text) = message {
            match serde_json::from_str::<ServerMessage>(&text).unwrap() {
                ServerMessage::Hello { sandbox, moved, .. } => return (socket, sandbox, moved),
                other => panic!("greeted with {other:?}"),
            }
        }
    }
}

fn holds(server: &Server, sandbox: &SandboxId) -> bool {
    server.backend.sandbox(sandbox).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxes_stay_on_one_replica_and_move_with_their_writes_when_it_stops() {
    let cluster = EmbeddedCluster::start(3, &RedisServerOptions::default()).expect("a cluster");
    let shared = tempfile::tempdir().unwrap();
    let replica = replica_config(cluster.urls(), shared.path().to_path_buf());
    let mut first = Server::start_api_only(replica.clone()).await;
    let second = Server::start_api_only(replica.clone()).await;
    let balancer = Balancer::start(&[first.addr, second.addr]);

    // New pages, round-robin: sandboxes on both replicas, each on one.
    let mut pages = Vec::new();
    for _ in 0..10 {
        pages.push(connect(balancer.addr, "").await);
    }
    let ids: Vec<SandboxId> = pages.iter().map(|(_, id, _)| id.clone()).collect();
    let on_first: Vec<SandboxId> = ids.iter().filter(|id| holds(&first, id)).cloned().collect();
    let on_second: Vec<SandboxId> = ids.iter().filter(|id| holds(&second, id)).cloned().collect();
    assert!(
        !on_first.is_empty() && !on_second.is_empty(),
        "spread: {on_first:?} {on_second:?}"
    );
    assert_eq!(on_first.len() + on_second.len(), ids.len(), "each on exactly one");

    // Every read and write of a sandbox lands on its replica (another
    // would have taken it over, and both would hold it).
    for id in &ids {
        let (status, _) = http(balancer.addr, "GET", &format!("/api/v1/users/1?sandbox={id}"), "").await;
        assert_eq!(status, 200);
        let body = format!(r#"{{"name":"written in {id}"}}"#);
        let (status, _) = http(
            balancer.addr,
            "PUT",
            &format!("/api/v1/users/1?sandbox={id}"),
            &body,
        )
        .await;
        assert_eq!(status, 200, "the write is acknowledged");
    }
    for id in &ids {
        assert!(
            holds(&first, id) != holds(&second, id),
            "{id} stayed on one replica"
        );
    }

    // Through the balancer, a herd with the Redis lock loads once.
    let herd = shared::ClientMessage::RunHerd {
        request_id: 1,
        herd: shared::HerdSpec {
            kind: shared::Kind::Users,
            id: 21,
            requests: 100,
            defence: shared::Defence::RedisLock,
            timing: shared::HerdTiming::Cold,
            beta: 1.0,
            jitter_percent: 25,
        },
    };
    let socket = &mut pages[0].0;
    socket
        .send(Message::text(serde_json::to_string(&herd).unwrap()))
        .await
        .unwrap();
    let result = loop {
        let message = next_message(socket, "answer to the herd").await;
        if let Message::Text(text) = message {
            match serde_json::from_str::<ServerMessage>(&text).unwrap() {
                ServerMessage::HerdReply { result, .. } => break result,
                ServerMessage::Error { message, .. } => panic!("the herd was refused: {message}"),
                _ => {}
            }
        }
    };
    assert_eq!(result.database_loads, 1, "{result:?}");
    assert_eq!(result.fallbacks, 0);

    // Steady reads of the second replica's sandboxes while the first stops.
    let stop = Arc::new(AtomicBool::new(false));
    let (reads, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let steady = {
        let (stop, reads, failures) = (stop.clone(), reads.clone(), failures.clone());
        let (addr, sandboxes) = (balancer.addr, on_second.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) || n < 50 {
                let id = &sandboxes[n as usize % sandboxes.len()];
                let (status, _) = http(
                    addr,
                    "GET",
                    &format!("/api/v1/users/{}?sandbox={id}", 1 + n % 5),
                    "",
                )
                .await;
                reads.fetch_add(1, Ordering::Relaxed);
                if status != 200 {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
        })
    };
    first.stop_serving().await;

    // The first replica's sandboxes come back on the second, with the
    // writes it acknowledged.
    for id in &on_first {
        let (status, body) = until_served(balancer.addr, &format!("/api/v1/users/1?sandbox={id}")).await;
        assert_eq!(status, 200, "{id}: {body}");
        assert!(
            body.contains(&format!("written in {id}")),
            "{id} kept its write: {body}"
        );
        assert!(holds(&second, id), "{id} is on the second replica now");
    }
    // A page coming back to one is told it moved.
    let (_socket, id, moved) = connect(balancer.addr, &format!("?sandbox={}", on_first[0])).await;
    assert_eq!(id, on_first[0], "the same sandbox");
    assert!(moved, "the page is told its sandbox moved");

    stop.store(true, Ordering::Release);
    steady.await.unwrap();
    assert!(reads.load(Ordering::Relaxed) >= 50);
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "the second replica's sandboxes never failed"
    );
    drop(pages);
}

/// In the browser: a page on a sandbox whose replica stops reconnects
/// through the balancer to the other replica, which took the sandbox over;
/// the page says the sandbox moved and puts its settings back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_whose_replica_stops_is_told_and_keeps_its_settings() {
    use e2e::{text_of, wait_for, wait_live, Driver};
    use std::time::Duration;

    let cluster = EmbeddedCluster::start(3, &RedisServerOptions::default()).expect("a cluster");
    let shared = tempfile::tempdir().unwrap();
    let replica = replica_config(cluster.urls(), shared.path().to_path_buf());
    let mut first = Server::start(replica.clone()).await;
    let mut second = Server::start(replica).await;
    let balancer = Balancer::start(&[first.addr, second.addr]);
    let driver = Driver::start();
    let client = driver.browser(1280, 900).await;
    // A shared setup: the page applies `ttl=42` to its new sandbox.
    client
        .goto(&format!("http://{}/?ttl=42", balancer.addr))
        .await
        .unwrap();
    let badge = wait_live(&client).await;
    let id = SandboxId::parse(badge.rsplit(' ').next().unwrap()).unwrap();
    let ttl_on = |server: &Server| {
        server
            .backend
            .sandbox(&id)
            .ok()
            .map(|s| s.settings().cache_ttl_secs)
    };
    wait_for(
        &client,
        "the address's settings applied",
        Duration::from_secs(30),
        || async { (ttl_on(&first) == Some(42) || ttl_on(&second) == Some(42)).then_some(()) },
    )
    .await;
    let (holder, other) = if holds(&first, &id) {
        (&mut first, &second)
    } else {
        (&mut second, &first)
    };
    holder.stop_serving().await;

    let notice = wait_for(
        &client,
        "the page to say its sandbox moved",
        Duration::from_secs(60),
        || async {
            text_of(&client, "[role=alert]")
                .await
                .filter(|t| t.contains("moved"))
        },
    )
    .await;
    assert!(notice.contains("writes are kept"), "{notice}");
    let badge = wait_live(&client).await;
    assert!(badge.ends_with(id.as_str()), "the same sandbox: {badge}");
    wait_for(
        &client,
        "the settings put back",
        Duration::from_secs(30),
        || async { (ttl_on(other) == Some(42)).then_some(()) },
    )
    .await;
    client.close().await.unwrap();
}

/// Through the balancer, on a cluster with a replica per master: a storm
/// of racing reads and writes with leases leaves nothing stale, and a
/// master failing over during steady reads fails none of them (its
/// sandbox's reads fall back until the replica is promoted, then hit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_balancer_a_storm_leaves_nothing_stale_and_a_failover_fails_no_read() {
    let cluster = EmbeddedCluster::start_with_replicas(3, 1, &RedisServerOptions::default())
        .expect("a cluster with replicas");
    let shared = tempfile::tempdir().unwrap();
    let base = replica_config(cluster.urls(), shared.path().to_path_buf());
    let replica = move |c: &mut backend::Config| {
        base(c);
        c.race_fix = shared::RaceFix::Lease;
        c.db_latency_ms = 5;
        c.db_jitter_percent = 100;
        c.redis_timeout_ms = 500;
    };
    let first = Server::start_api_only(replica.clone()).await;
    let second = Server::start_api_only(replica).await;
    let balancer = Balancer::start(&[first.addr, second.addr]);
    let (_page, id, _) = connect(balancer.addr, "").await;
    let addr = balancer.addr;

    // The storm: one write in four over three users, 64 at a time.
    let slots = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for op in 0..800u64 {
        let (id, slot) = (id.clone(), slots.clone().acquire_owned().await.unwrap());
        let user = 1 + (op * 7_919) % 3;
        tasks.push(tokio::spawn(async move {
            let path = format!("/api/v1/users/{user}?sandbox={id}");
            let (status, body) = if op % 4 == 0 {
                http(addr, "PUT", &path, &format!(r#"{{"name":"name {op}"}}"#)).await
            } else {
                http(addr, "GET", &path, "").await
            };
            drop(slot);
            (status, body)
        }));
    }
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    for user in 1..=3 {
        http(addr, "GET", &format!("/api/v1/users/{user}?sandbox={id}"), "").await;
    }
    let (status, body) = http(addr, "GET", &format!("/api/v1/divergence?sandbox={id}"), "").await;
    assert_eq!(status, 200, "{body}");
    let report: shared::DivergenceReport = serde_json::from_str(&body).unwrap();
    assert_eq!(report.stale(), 0, "leases leave nothing stale: {report:?}");

    // The master holding the sandbox fails over during steady reads.
    let key = format!("cache:{{{id}}}:user:1");
    let victim = cluster.master_of(&key).expect("a master holds the sandbox");
    let mut cluster = cluster;
    cluster.node_mut(victim).stop();
    let (mut fallbacks, mut back) = (0, false);
    for _ in 0..600 {
        let (status, body) = http(addr, "GET", &format!("/api/v1/users/1?sandbox={id}"), "").await;
        assert_eq!(status, 200, "no read fails: {body}");
        let read: shared::ReadResult = serde_json::from_str(&body).unwrap();
        match read.outcome {
            shared::Outcome::Fallback => fallbacks += 1,
            shared::Outcome::Hit | shared::Outcome::Miss if fallbacks > 0 => {
                back = true;
                break;
            }
            _ => {}
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(fallbacks > 0, "reads fell back while the master was down");
    assert!(back, "the cache serves again after the failover");
}

/// A replica that finds another holding the lease of a sandbox it serves
/// (it could not renew in time, and another replica took the sandbox over)
/// lets the sandbox go and closes its pages' sockets, so they reconnect to
/// the holder instead of talking to a second copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_lost_a_sandboxs_lease_closes_its_pages_sockets() {
    let cluster = EmbeddedCluster::start(3, &RedisServerOptions::default()).expect("a cluster");
    let shared = tempfile::tempdir().unwrap();
    let replica = replica_config(cluster.urls(), shared.path().to_path_buf());
    let first = Server::start_api_only(replica).await;
    let (mut socket, id, _) = connect(first.addr, "").await;
    assert!(holds(&first, &id));

    // Another replica's claim, written over this one's lease.
    let key = backend::ownership::key(&id, true);
    let port = cluster.nodes()[0].port().to_string();
    let set = std::process::Command::new("redis-cli")
        .args(["-c", "-p", &port, "SET", &key, "another-replica", "PX", "60000"])
        .output()
        .expect("redis-cli runs");
    assert_eq!(String::from_utf8_lossy(&set.stdout).trim(), "OK", "{set:?}");

    // At its next renewal (each second) the replica sees it and closes the
    // page's socket, saying why.
    let closed = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(frame) = socket.next().await {
            match frame {
                Ok(Message::Close(frame)) => return frame,
                Ok(_) => continue,
                Err(e) => panic!("the socket failed instead of closing: {e}"),
            }
        }
        None
    })
    .await
    .expect("the socket closes within 30 s");
    let frame = closed.expect("a close frame with its reason");
    assert_eq!(u16::from(frame.code), 1013, "try again later: {frame:?}");
    assert!(frame.reason.contains("another server"), "{frame:?}");
    assert!(!holds(&first, &id), "the replica let the sandbox go");
}

/// A restarted balancer has forgotten where each sandbox lives (its stick
/// table is in memory) and sends a request where the sandbox's name
/// hashes: when another replica holds it, that one answers 503 and the
/// balancer tries the other, which serves it. No request fails and no
/// sandbox changes hands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_balancer_restart_every_sandbox_is_served_by_its_holder() {
    let cluster = EmbeddedCluster::start(3, &RedisServerOptions::default()).expect("a cluster");
    let shared = tempfile::tempdir().unwrap();
    let replica = replica_config(cluster.urls(), shared.path().to_path_buf());
    let first = Server::start_api_only(replica.clone()).await;
    let second = Server::start_api_only(replica).await;
    let balancer = Balancer::start(&[first.addr, second.addr]);
    let mut ids = Vec::new();
    for _ in 0..10 {
        let (socket, id, _) = connect(balancer.addr, "").await;
        drop(socket);
        ids.push(id);
    }
    let on_first: Vec<bool> = ids.iter().map(|id| holds(&first, id)).collect();
    drop(balancer);

    let balancer = Balancer::start(&[first.addr, second.addr]);
    for (i, (id, was_on_first)) in ids.iter().zip(&on_first).enumerate() {
        // Half the sandboxes are asked for by a page first (the WebSocket's
        // handshake is what is retried), half by a REST read.
        if i % 2 == 0 {
            let (_socket, greeted, moved) = connect(balancer.addr, &format!("?sandbox={id}")).await;
            assert_eq!(&greeted, id);
            assert!(!moved, "{id} was not taken over");
        }
        let (status, body) = http(balancer.addr, "GET", &format!("/api/v1/users/1?sandbox={id}"), "").await;
        assert_eq!(status, 200, "{id}: {body}");
        assert_eq!(holds(&first, id), *was_on_first, "{id} stayed where it was");
        assert_ne!(holds(&first, id), holds(&second, id), "{id} is on one replica");
    }
}
