//! The hit-path benchmark, `cargo xtask bench hit-path`: how much the engine
//! and the playground cost on top of one Redis GET behind axum, measured
//! side by side in one run, on loopback, against one real `redis-server`.
//!
//! - (a) baseline: a minimal axum handler doing one `GET`, decoding the
//!   stored JSON into the record type and answering it as JSON, as any
//!   typed application does (a variant that passes the stored bytes through
//!   untouched is printed for reference);
//! - (b) engine: an axum handler calling `get_or_load` (the no-op observer)
//!   and returning the value as JSON;
//! - (c) playground: the playground's REST read, with one WebSocket watcher
//!   in its sandbox receiving every trace;
//! - (d) the playground's read alone, behind a bare axum handler: (c)
//!   less (d) is what the HTTP surface costs.
//!
//! Each row runs for `--seconds` (10 by default) with `--connections` (32)
//! keep-alive HTTP/1.1 connections, in `--rounds` (3) interleaved rounds;
//! the median round is reported. Every request is a hit: the keys are
//! cached before measuring. The load generator runs in the same process on
//! its own runtime, the same way for every row, and every row runs on the
//! playground's allocator (mimalloc, set in `backend`'s `lib.rs`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use backend::{Backend, Config};
use cache_aside::{CacheAside, KeySpace, NoObserver, Redis};
use futures_util::StreamExt;
use load::{run_load, Run, IDS};
use shared::{Kind, Record};

#[path = "common/load.rs"]
mod load;

struct Args {
    seconds: u64,
    connections: usize,
    rounds: usize,
    /// Only these rows (`a`, `b`, `c`, `d`, `raw`), for profiling one.
    only: Option<String>,
}

fn args() -> Args {
    let mut args = Args {
        seconds: 10,
        connections: 32,
        rounds: 3,
        only: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value = pair.get(1).and_then(|v| v.parse().ok());
        match (pair[0].as_str(), value) {
            ("--seconds", Some(v)) => args.seconds = v,
            ("--connections", Some(v)) => args.connections = v as usize,
            ("--rounds", Some(v)) => args.rounds = v as usize,
            ("--only", _) if pair.len() == 2 => args.only = Some(pair[1].clone()),
            (flag, _) => {
                eprintln!("usage: hit_path [--seconds N] [--connections N] [--rounds N] (not {flag:?})");
                std::process::exit(2);
            }
        }
    }
    args
}

fn main() {
    let args = args();
    let (servers, load) = load::runtimes();

    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::defaults();
    config.data_dir = dir.path().to_path_buf();
    config.db_latency_ms = 0;
    let backend = Arc::new(Backend::start(config).expect("back end starts"));
    let url = backend.embedded_redis.as_ref().expect("its own redis").url();

    let (a, b, c, d) = servers.block_on(async {
        (
            baseline(&url).await,
            engine(&url, backend.playground.database.clone()).await,
            playground(backend.clone()).await,
            bare(backend.clone()).await,
        )
    });
    // One watcher of the playground's sandbox, reading every message.
    let watched = Arc::new(AtomicU64::new(0));
    let stop_watching = Arc::new(AtomicBool::new(false));
    load.spawn(watch(c, watched.clone(), stop_watching.clone()));

    println!(
        "\nhit path: {} connections, {} s per row, {} rounds (median round shown), all hits",
        args.connections, args.seconds, args.rounds
    );
    let all = [
        ("a", "(a) axum + one Redis GET, typed", a, "/a/"),
        ("b", "(b) axum + engine get_or_load", b, "/b/"),
        ("c", "(c) playground REST read + 1 watcher", c, "/api/v1/users/"),
        ("d", "(d) Playground::read_with, bare axum", d, "/d/"),
        ("raw", "(for reference) (a) passing the bytes through", a, "/raw/"),
    ];
    let chosen: Vec<(&str, &str, SocketAddr, &'static str)> = all
        .into_iter()
        .filter(|(id, ..)| {
            args.only
                .as_deref()
                .is_none_or(|only| only.split(',').any(|o| o == *id))
        })
        .collect();
    let ids: Vec<&str> = chosen.iter().map(|(id, ..)| *id).collect();
    let rows: Vec<(&str, SocketAddr, &'static str)> = chosen
        .into_iter()
        .map(|(_, name, addr, path)| (name, addr, path))
        .collect();
    if rows.len() < 3 {
        // Profiling one row: no table of ratios.
        for (name, addr, path) in &rows {
            let run = load.block_on(run_load(
                *addr,
                path,
                args.connections,
                Duration::from_secs(args.seconds),
            ));
            println!(
                "{name}: {:.0} req/s, p50 {} µs, p99 {} µs",
                run.per_second, run.p50_us, run.p99_us
            );
        }
        return;
    }
    // Warm every path (connections, caches) before measuring.
    for (_, addr, path) in &rows {
        load.block_on(run_load(*addr, path, args.connections, Duration::from_secs(1)));
    }
    let mut results: Vec<Vec<Run>> = vec![Vec::new(); rows.len()];
    for _ in 0..args.rounds {
        for (i, (_, addr, path)) in rows.iter().enumerate() {
            let run = load.block_on(run_load(
                *addr,
                path,
                args.connections,
                Duration::from_secs(args.seconds),
            ));
            results[i].push(run);
        }
    }
    let watched_total = watched.load(Ordering::Relaxed);
    stop_watching.store(true, Ordering::Relaxed);

    println!(
        "{:<40} {:>10} {:>9} {:>9} {:>7}",
        "", "req/s", "p50 µs", "p99 µs", "ratio"
    );
    let medians: Vec<Run> = results
        .into_iter()
        .map(|mut runs| {
            runs.sort_by(|x, y| x.per_second.total_cmp(&y.per_second));
            runs[runs.len() / 2].clone()
        })
        .collect();
    for (i, (name, _, _)) in rows.iter().enumerate() {
        let run = &medians[i];
        let ratio = if i == 0 {
            "1.00".to_string()
        } else {
            format!("{:.2}", run.per_second / medians[0].per_second)
        };
        println!(
            "{:<40} {:>10.0} {:>9} {:>9} {:>7}",
            name, run.per_second, run.p50_us, run.p99_us, ratio
        );
        if run.errors > 0 {
            println!("{:<40} {} requests failed", "", run.errors);
        }
    }
    // The goals compare rows by name; with `--only` some may be missing.
    let rate = |id: &str| ids.iter().position(|i| *i == id).map(|i| medians[i].per_second);
    if let (Some(a), Some(b), Some(c)) = (rate("a"), rate("b"), rate("c")) {
        println!(
            "b/a = {:.2} (goal ≥ 0.95), c/a = {:.2} (goal ≥ 0.85); the watcher received {watched_total} messages",
            b / a,
            c / a
        );
    }
    drop(servers);
}

/// (a): `GET bench:a:user:{id}` and return what is stored.
async fn baseline(url: &str) -> SocketAddr {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_connection_manager().await.unwrap();
    for id in 1..=IDS {
        let json = serde_json::to_string(&Record::User(backend::store::seed::user(id))).unwrap();
        let _: () = redis::cmd("SET")
            .arg(format!("bench:a:user:{id}"))
            .arg(json)
            .query_async(&mut connection)
            .await
            .unwrap();
    }
    async fn handler(
        State(connection): State<redis::aio::ConnectionManager>,
        Path(id): Path<u64>,
    ) -> axum::response::Response {
        let mut connection = connection.clone();
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(format!("bench:a:user:{id}"))
            .query_async(&mut connection)
            .await
            .unwrap_or(None);
        // Like any typed application, decode the cached JSON and answer.
        match value.and_then(|json| serde_json::from_slice::<Record>(&json).ok()) {
            Some(record) => Json(record).into_response(),
            None => axum::http::StatusCode::NOT_FOUND.into_response(),
        }
    }
    async fn raw(
        State(connection): State<redis::aio::ConnectionManager>,
        Path(id): Path<u64>,
    ) -> axum::response::Response {
        let mut connection = connection.clone();
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(format!("bench:a:user:{id}"))
            .query_async(&mut connection)
            .await
            .unwrap_or(None);
        match value {
            Some(json) => ([("content-type", "application/json")], json).into_response(),
            None => axum::http::StatusCode::NOT_FOUND.into_response(),
        }
    }
    serve(
        Router::new()
            .route("/a/{id}", get(handler))
            .route("/raw/{id}", get(raw))
            .with_state(connection),
    )
    .await
}

/// (b): the engine with its defaults and the no-op observer.
async fn engine(url: &str, database: backend::Database) -> SocketAddr {
    let cache: CacheAside<Record> = CacheAside::builder(Redis::open(url).unwrap(), KeySpace::new("bench:b:"))
        .build()
        .unwrap();
    async fn handler(
        State(state): State<Arc<(CacheAside<Record>, backend::Database)>>,
        Path(id): Path<u64>,
    ) -> axum::response::Response {
        let (cache, database) = (&state.0, state.1.clone());
        // The loader is built only when the engine calls it: on a miss.
        let answer = cache
            .get_or_load_with(&format!("user:{id}"), cache.options(), &NoObserver, move || {
                database.find(Kind::Users, id, Duration::ZERO).execute()
            })
            .await;
        match answer {
            Ok(answer) => Json(answer.value).into_response(),
            Err(_) => axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response(),
        }
    }
    let addr = serve(
        Router::new()
            .route("/b/{id}", get(handler))
            .with_state(Arc::new((cache.clone(), database.clone()))),
    )
    .await;
    // Cache every record once.
    for id in 1..=IDS {
        let query = database.find(Kind::Users, id, Duration::ZERO);
        cache
            .get_or_load(&format!("user:{id}"), move || query.execute())
            .await
            .unwrap();
    }
    addr
}

/// (c): the playground itself, serving its REST API.
async fn playground(backend: Arc<Backend>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = backend.serve(listener, std::future::pending()).await;
    });
    addr
}

/// (d): the playground's read (sandbox, budgets, counting, sealing) behind
/// a bare axum handler: what (c) costs beyond it is the HTTP surface (the
/// access checks, CORS, timeout, security headers, the reply's fields).
async fn bare(backend: Arc<Backend>) -> SocketAddr {
    async fn handler(State(backend): State<Arc<Backend>>, Path(id): Path<u64>) -> axum::response::Response {
        let sandbox = shared::SandboxId::parse("default").expect("the default sandbox's id");
        let read = backend.playground.read_with(
            &sandbox,
            Kind::Users,
            id,
            shared::Origin::Rest,
            Default::default(),
        );
        match read.await {
            Ok(result) => Json(result).into_response(),
            Err(_) => axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response(),
        }
    }
    serve(Router::new().route("/d/{id}", get(handler)).with_state(backend)).await
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// A browser watching the benchmark's sandbox: reads every message.
async fn watch(addr: SocketAddr, count: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?sandbox=default"))
        .await
        .expect("the watcher connects");
    while !stop.load(Ordering::Relaxed) {
        match socket.next().await {
            Some(Ok(_)) => {
                count.fetch_add(1, Ordering::Relaxed);
            }
            _ => break,
        }
    }
}
