//! A small web service that caches its SQLite rows in Redis with the engine,
//! the way a real application would.
//!
//! ```text
//! cargo run -p cache-aside --example axum_sqlite            # serve on 127.0.0.1:3000
//! curl 127.0.0.1:3000/users/42                              # a miss, then hits
//! curl -X PUT 127.0.0.1:3000/users/42 -H 'content-type: application/json' -d '{"name":"Ada"}'
//! cargo run -p cache-aside --example axum_sqlite -- --check # start, exercise, stop
//! ```
//!
//! With `REDIS_URL` unset it starts its own `redis-server` on a free port
//! (and stops it on exit). Every step the engine takes is logged to
//! stderr by a small observer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use cache_aside::{CacheAside, Change, KeySpace, Observer, RaceGuard, Redis, Stampede, Step, WritePolicy};

/// A row of the `users` table.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct User {
    id: u64,
    name: String,
    version: u64,
}

/// What every handler gets: the database and the cache in front of it.
#[derive(Clone)]
struct App {
    /// One SQLite connection; queries are short, so a mutex is enough here.
    db: Arc<Mutex<rusqlite::Connection>>,
    users: CacheAside<User>,
}

/// Logs every step of the engine, one line each.
struct Log;

impl Observer for Log {
    fn step(&self, step: &Step<'_>) {
        eprintln!(
            "  {:<14} {:<5} {:>7.2} ms  {} {}",
            format!("{:?}", step.kind),
            format!("{:?}", step.status),
            step.took.as_secs_f64() * 1000.0,
            step.command_text(),
            step.reply
        );
    }
}

fn find(db: &Mutex<rusqlite::Connection>, id: u64) -> rusqlite::Result<Option<User>> {
    use rusqlite::OptionalExtension;
    let db = db.lock().unwrap_or_else(|p| p.into_inner());
    db.query_row("SELECT id, name, version FROM users WHERE id = ?1", [id], |r| {
        Ok(User {
            id: r.get(0)?,
            name: r.get(1)?,
            version: r.get(2)?,
        })
    })
    .optional()
}

/// `GET /users/{id}`: the cache-aside read. 404 when there is no such user
/// (and that answer is cached too).
async fn read_user(State(app): State<App>, Path(id): Path<u64>) -> Result<Json<User>, StatusCode> {
    let db = app.db.clone();
    let answer = app
        .users
        .get_or_load(&format!("user:{id}"), move || async move {
            // The application's own query; the engine runs it only on a miss.
            find(&db, id)
        })
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    eprintln!("GET /users/{id}: {:?}", answer.source);
    answer.value.map(Json).ok_or(StatusCode::NOT_FOUND)
}

#[derive(serde::Deserialize)]
struct Rename {
    name: String,
}

/// `PUT /users/{id}`: the database first, then the cache.
async fn rename_user(
    State(app): State<App>,
    Path(id): Path<u64>,
    Json(body): Json<Rename>,
) -> Result<Json<User>, StatusCode> {
    let updated = {
        let db = app.db.lock().unwrap_or_else(|p| p.into_inner());
        db.query_row(
            "UPDATE users SET name = ?2, version = version + 1 WHERE id = ?1 RETURNING id, name, version",
            (id, &body.name),
            |r| {
                Ok(User {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    version: r.get(2)?,
                })
            },
        )
        .map_err(|_| StatusCode::NOT_FOUND)?
    };
    let written = app
        .users
        .after_write(
            &format!("user:{id}"),
            Change::Updated(&updated),
            WritePolicy::Invalidate,
        )
        .await;
    eprintln!("PUT /users/{id}: {:?}", written.effect);
    Ok(Json(updated))
}

fn app(db: rusqlite::Connection, redis: Redis) -> Result<Router, Box<dyn std::error::Error>> {
    let users = CacheAside::builder(redis, KeySpace::new("example:"))
        .ttl(Duration::from_secs(300))
        .negative_ttl(Some(Duration::from_secs(30)))
        .jitter(0.1)
        // One database load per key even under a burst of misses.
        .stampede(Stampede::lock())
        // A slow reader never stores a row older than one a writer stored.
        .race_guard(RaceGuard::Version)
        .versioned(|u: &User| u.version)
        .observer(Arc::new(Log))
        .build()?;
    let state = App {
        db: Arc::new(Mutex::new(db)),
        users,
    };
    Ok(Router::new()
        .route("/users/{id}", get(read_user).put(rename_user))
        .with_state(state))
}

fn database() -> rusqlite::Result<rusqlite::Connection> {
    let db = rusqlite::Connection::open_in_memory()?;
    db.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, version INTEGER NOT NULL);",
    )?;
    for id in 1..=100 {
        db.execute("INSERT INTO users VALUES (?1, ?2, 1)", (id, format!("user {id}")))?;
    }
    Ok(db)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let check = std::env::args().any(|a| a == "--check");
    // Our own Redis unless one is given; it stops when `_server` drops.
    let (url, _server) = match std::env::var("REDIS_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let server =
                embedded_redis::EmbeddedRedis::start(&embedded_redis::RedisServerOptions::default())?;
            (server.url(), Some(server))
        }
    };
    let router = app(database()?, Redis::open(&url)?)?;
    let addr: SocketAddr = if check { "127.0.0.1:0" } else { "127.0.0.1:3000" }.parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    eprintln!("serving on http://{addr}/users/42 (Redis at {url})");
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    if check {
        let outcome = self_check(addr).await;
        server.abort();
        return outcome;
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// Exercises the service as a client would: a miss, a hit, a rename, the
/// new name, a missing user.
async fn self_check(addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let first = http(addr, "GET", "/users/42", "").await?;
    let second = http(addr, "GET", "/users/42", "").await?;
    if !(first.contains("\"user 42\"") && first == second) {
        return Err(format!("unexpected reads: {first} / {second}").into());
    }
    http(addr, "PUT", "/users/42", r#"{"name":"Ada"}"#).await?;
    let renamed = http(addr, "GET", "/users/42", "").await?;
    if !renamed.contains("\"Ada\"") {
        return Err(format!("the rename is not visible: {renamed}").into());
    }
    let missing = http(addr, "GET", "/users/4242", "").await?;
    if !missing.starts_with("HTTP/1.1 404") {
        return Err(format!("a missing user is not a 404: {missing}").into());
    }
    println!("axum_sqlite: check passed (miss, hit, rename, 404)");
    Ok(())
}

/// One HTTP/1.1 request over a fresh connection; the whole response.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut response))
        .await
        .map_err(|_| std::io::Error::other("no response within 10 s"))??;
    Ok(response)
}
