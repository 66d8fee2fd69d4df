//! Sandboxes with a redis-server of their own, for experiments on the
//! server itself: real extra `redis-server` processes, capped, stopped
//! with their sandbox.

mod common;

use std::time::Duration;

use common::{connect, eventually, greeted, receive, refusal, serve};
use shared::{Kind, Origin, ServerMessage};

/// Whether nothing answers at `url` any more (the server stopped).
fn stopped(url: &str) -> bool {
    redis::Client::open(url).unwrap().get_connection().is_err()
}

/// A sandbox can have a redis-server of its own: its keys live there, not
/// in the shared Redis; only so many run at once; reaping the sandbox stops
/// its server and frees the place.
#[tokio::test]
async fn a_sandbox_can_have_its_own_redis_server_a_few_at_most() {
    let t = common::start(|c| c.private_redis_servers = Some(1));
    let served = serve(&t).await;
    let mut socket = connect(served.addr, "?redis=private").await;
    let (sandbox, redis) = match receive(&mut socket).await {
        ServerMessage::Hello { sandbox, redis, .. } => (sandbox, redis),
        other => panic!("expected hello, got {other:?}"),
    };
    assert!(redis.contains("its own redis-server"), "{redis}");
    let playground = &t.backend.playground;
    playground
        .read(&sandbox, Kind::Users, 1, Origin::Rest)
        .await
        .unwrap();
    assert!(
        !t.all_keys().iter().any(|k| k.contains(sandbox.as_str())),
        "nothing of it in the shared Redis"
    );
    let own_url = playground.sandbox(&sandbox).unwrap().redis.url().to_string();
    let mut own = redis::Client::open(own_url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut own).unwrap();
    assert_eq!(keys, [format!("cache:{sandbox}:user:1")]);

    // One at most: the next is refused, for now (1013); a shared one is fine.
    let mut second = connect(served.addr, "?redis=private").await;
    let (message, code) = refusal(&mut second).await;
    assert!(message.contains("in use"), "{message}");
    assert_eq!(code, 1013);
    let mut shared_one = connect(served.addr, "").await;
    let shared_id = greeted(&mut shared_one).await;

    // Reaped: its server stops, and the place is free again.
    socket.close(None).await.unwrap();
    shared_one.close(None).await.unwrap();
    let both = [
        playground.sandbox(&sandbox).unwrap(),
        playground.sandbox(&shared_id).unwrap(),
    ];
    eventually("the sessions to end", Duration::from_secs(10), || {
        both.iter().all(|s| s.watchers() == 0)
    })
    .await;
    drop(both);
    assert_eq!(playground.sandboxes.reap(Duration::ZERO).await, 2);
    assert!(stopped(&own_url), "its server stopped");
    let mut third = connect(served.addr, "?redis=private").await;
    greeted(&mut third).await;
}

/// Those servers are few, so a sandbox holding one is reaped sooner than
/// others once its page has left (`--private-redis-idle-secs`, here 1):
/// its server stops and the next reader may have one, while a shared
/// sandbox left at the same moment stays for the usual idle time.
#[tokio::test]
async fn a_sandbox_with_its_own_server_is_reaped_sooner_than_others() {
    let t = common::start(|c| {
        c.private_redis_servers = Some(1);
        c.private_redis_idle_secs = Some(1);
        c.sandbox_idle_secs = Some(3_600);
    });
    let served = serve(&t).await;
    let playground = &t.backend.playground;
    let mut own_page = connect(served.addr, "?redis=private").await;
    let own = greeted(&mut own_page).await;
    let mut shared_page = connect(served.addr, "").await;
    let shared = greeted(&mut shared_page).await;
    for sandbox in [&own, &shared] {
        playground
            .read(sandbox, Kind::Users, 1, Origin::Rest)
            .await
            .unwrap();
    }
    let own_url = playground.sandbox(&own).unwrap().redis.url().to_string();
    // Full: a second reader is refused while the first holds the server.
    let mut refused = connect(served.addr, "?redis=private").await;
    assert!(refusal(&mut refused).await.0.contains("in use"));

    own_page.close(None).await.unwrap();
    shared_page.close(None).await.unwrap();
    eventually("both pages to leave", Duration::from_secs(10), || {
        [&own, &shared]
            .iter()
            .all(|id| playground.sandbox(id).map_or(true, |s| s.watchers() == 0))
    })
    .await;
    // The server's own reaper (every 250 ms here) removes it a second after.
    eventually(
        "the sandbox with its own server to be reaped",
        Duration::from_secs(10),
        || playground.sandbox(&own).is_err(),
    )
    .await;
    assert!(stopped(&own_url), "its server stopped");
    // Unwatched as long, the shared sandbox stays (its idle time is an hour).
    playground.reap_idle().await;
    assert!(playground.sandbox(&shared).is_ok(), "the shared sandbox stays");
    let mut next = connect(served.addr, "?redis=private").await;
    greeted(&mut next).await;
}

/// With an external Redis the back end cannot start servers: a sandbox
/// that asks for its own is refused for good (1008), with the reason, and
/// the eviction lab shows the server's figures read-only with that reason.
#[tokio::test]
async fn with_an_external_redis_no_sandbox_gets_its_own_server() {
    let external =
        embedded_redis::EmbeddedRedis::start(&embedded_redis::RedisServerOptions::default()).unwrap();
    let t = common::start(|c| c.redis_url = Some(external.url()));
    let served = serve(&t).await;
    let mut socket = connect(served.addr, "?redis=private").await;
    let (message, code) = refusal(&mut socket).await;
    assert!(message.contains("external Redis"), "{message}");
    assert_eq!(code, 1008);
    // The eviction lab is read-only there, and says why.
    let memory = t
        .backend
        .playground
        .memory(&shared::SandboxId::default_sandbox())
        .await
        .unwrap();
    assert!(!memory.controllable);
    assert!(memory.reason.unwrap().contains("external Redis (REDIS_URL)"));
}

/// A sandbox's own server outlives the pool threads that served its
/// opening. The kernel stops a child when the *thread* that started it
/// ends (so none outlives a crashed back end), and a runtime's blocking
/// threads end when idle: here after 10 ms. Servers started on such a
/// thread died seconds after their sandbox opened. Asked ten times over a
/// second, the server answers every time.
#[test]
fn a_private_server_outlives_idle_pool_threads() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_keep_alive(Duration::from_millis(10))
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let t = common::start(|c| c.private_redis_servers = Some(1));
        let sandbox = t
            .backend
            .playground
            .open_sandbox_with(None, true)
            .await
            .expect("a sandbox with its own server");
        let url = sandbox.redis.url().to_string();
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut own = redis::Client::open(url.as_str())
                .unwrap()
                .get_connection()
                .expect("the sandbox's server still runs");
            let pong: String = redis::cmd("PING").query(&mut own).unwrap();
            assert_eq!(pong, "PONG");
        }
    });
}
