//! HTTP and WebSocket transport. Handlers are thin: they parse input, call
//! the [`Playground`] and turn the answer into a response. No cache logic
//! lives here.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use shared::{entity::parse_id, ClientMessage, InputError, Kind, Origin, SandboxId, ServerMessage};
use shared::{Scenario, WriteChange};
use tokio::sync::{mpsc, watch, Semaphore};
use tower_http::services::ServeDir;

use crate::feed::to_json;
use crate::feed::FeedEvent;
use crate::playground::{OpError, Playground, ReadOptions, WriteOptions};

/// How many reads one WebSocket client may have in flight; more get an
/// error message instead of piling up.
const READS_IN_FLIGHT_PER_CLIENT: usize = 16;

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    /// The service that runs reads and publishes traces.
    pub playground: Arc<Playground>,
    /// Turns `true` when the server is shutting down, so open WebSockets
    /// close and graceful shutdown does not wait on them forever.
    pub shutdown: watch::Receiver<bool>,
}

/// The whole HTTP surface: the API, the WebSocket and the front end's files.
pub fn app(state: AppState, static_dir: &Path) -> Router {
    let api = Router::new()
        .route("/healthz", get(health))
        .route("/api/v1/{kind}/{id}", get(read).put(update).delete(delete))
        .route("/api/v1/divergence", get(divergence))
        .route(
            "/api/v1/scenarios/stale-set-race",
            axum::routing::post(stale_set_race),
        )
        .route("/ws", get(websocket))
        .with_state(state);
    if static_dir.join("index.html").is_file() {
        api.fallback_service(ServeDir::new(static_dir))
    } else {
        tracing::warn!(dir = %static_dir.display(), "no front end built; `cargo xtask run` builds it");
        api.route("/", get(no_front_end))
    }
}

/// Errors a handler can return. Each variant says when it occurs.
#[derive(Debug)]
pub enum AppError {
    /// Occurs on bad input: an unknown kind (404), or a bad id or sandbox (400).
    Input(InputError),
    /// Occurs when a request body is not the JSON expected (400).
    Body(String),
    /// Occurs when the database fails (503); details go to the log.
    Unavailable(String),
    /// Occurs when the playground itself fails (500); details go to the log.
    Internal,
}

impl From<OpError> for AppError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Input(e) => AppError::Input(e),
            OpError::Sandbox(e) => {
                tracing::error!(error = %e, "cannot open sandbox");
                AppError::Unavailable("this sandbox cannot be opened right now; try again shortly".into())
            }
            OpError::Inspection(e) => {
                tracing::warn!(error = %e, "divergence check failed");
                AppError::Unavailable(e.to_string())
            }
            OpError::Database(e) => {
                tracing::error!(error = %e, "operation failed");
                AppError::Unavailable("the database is unavailable; try again shortly".into())
            }
            OpError::Internal(e) => {
                tracing::error!(error = %e, "internal failure");
                AppError::Internal
            }
        }
    }
}

impl From<InputError> for AppError {
    fn from(e: InputError) -> Self {
        AppError::Input(e)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            AppError::Input(e @ InputError::UnknownKind(_)) => (StatusCode::NOT_FOUND, e.to_string()),
            AppError::Input(e) => (StatusCode::BAD_REQUEST, e.to_string()),
            AppError::Body(m) => (StatusCode::BAD_REQUEST, m),
            AppError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
            AppError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the playground failed; the details are in its log".into(),
            ),
        };
        (status, Json(json!({ "error": message }))).into_response()
    }
}

/// Query parameters, where a malformed query string is a JSON 400 like
/// every other input error (axum's own rejection is plain text).
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S> for Params<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, AppError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Params(value)),
            Err(e) => Err(AppError::Body(e.body_text())),
        }
    }
}

/// Path segments, with the same JSON 400 on a malformed path.
pub struct Segments<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for Segments<T>
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, AppError> {
        match UrlPath::<T>::from_request_parts(parts, state).await {
            Ok(UrlPath(value)) => Ok(Segments(value)),
            Err(e) => Err(AppError::Body(e.body_text())),
        }
    }
}

/// `?sandbox=NAME`, optional.
#[derive(Debug, Deserialize)]
pub struct SandboxQuery {
    sandbox: Option<String>,
    /// The application instance to serve the request (`A`, `B`, `C`);
    /// round-robin when absent.
    instance: Option<String>,
}

impl SandboxQuery {
    fn sandbox(&self) -> Result<SandboxId, InputError> {
        match &self.sandbox {
            Some(name) => SandboxId::parse(name),
            None => Ok(SandboxId::default_sandbox()),
        }
    }
}

/// The record and sandbox a request names, checked.
fn target(kind: &str, id: &str, query: &SandboxQuery) -> Result<(Kind, u64, SandboxId), AppError> {
    Ok((Kind::parse(kind)?, parse_id(id)?, query.sandbox()?))
}

/// `GET /api/v1/{kind}/{id}`: a cache-aside read. 200 with the record, or
/// 404 with the same body (`found: false`) when the record does not exist.
async fn read(
    State(state): State<AppState>,
    Segments((kind, id)): Segments<(String, String)>,
    Params(query): Params<SandboxQuery>,
) -> Result<Response, AppError> {
    let (kind, id, sandbox) = target(&kind, &id, &query)?;
    let options = ReadOptions {
        instance: query.instance.clone(),
        ..ReadOptions::default()
    };
    let result = state
        .playground
        .read_with(&sandbox, kind, id, Origin::Rest, options)
        .await?;
    let status = if result.found {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    Ok((status, Json(result)).into_response())
}

/// The body of `PUT /api/v1/{kind}/{id}`.
#[derive(Debug, Deserialize)]
pub struct UpdateBody {
    name: String,
}

/// `PUT /api/v1/{kind}/{id}` with `{"name": "..."}`: changes the record's
/// name, then deals with the cache per the sandbox's write strategy.
async fn update(
    State(state): State<AppState>,
    Segments((kind, id)): Segments<(String, String)>,
    Params(query): Params<SandboxQuery>,
    body: Result<Json<UpdateBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, AppError> {
    let (kind, id, sandbox) = target(&kind, &id, &query)?;
    let Json(body) = body.map_err(|e| AppError::Body(e.body_text()))?;
    let change = WriteChange::Update { name: body.name };
    write(&state, (sandbox, &query), kind, id, change).await
}

/// `DELETE /api/v1/{kind}/{id}`: removes the record, then deals with the
/// cache per the sandbox's write strategy.
async fn delete(
    State(state): State<AppState>,
    Segments((kind, id)): Segments<(String, String)>,
    Params(query): Params<SandboxQuery>,
) -> Result<Response, AppError> {
    let (kind, id, sandbox) = target(&kind, &id, &query)?;
    write(&state, (sandbox, &query), kind, id, WriteChange::Delete).await
}

async fn write(
    state: &AppState,
    (sandbox, query): (SandboxId, &SandboxQuery),
    kind: Kind,
    id: u64,
    change: WriteChange,
) -> Result<Response, AppError> {
    let options = WriteOptions {
        settings: None,
        instance: query.instance.clone(),
    };
    let result = state
        .playground
        .write_with(&sandbox, kind, id, change, Origin::Rest, options)
        .await?;
    let status = if result.found {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    Ok((status, Json(result)).into_response())
}

/// `GET /api/v1/divergence`: every cached key of the sandbox against its
/// database row, stale ones first.
async fn divergence(
    State(state): State<AppState>,
    Params(query): Params<SandboxQuery>,
) -> Result<Response, AppError> {
    let sandbox = query.sandbox()?;
    let report = state.playground.check_divergence(&sandbox).await?;
    Ok(Json(report).into_response())
}

/// `?sandbox=NAME&kind=users&id=7` for a scenario.
#[derive(Debug, Deserialize)]
pub struct ScenarioQuery {
    sandbox: Option<String>,
    kind: String,
    id: String,
}

/// `POST /api/v1/scenarios/stale-set-race?kind=users&id=7`: runs the race
/// with the sandbox's race fix; the traces show up live in the browser.
async fn stale_set_race(
    State(state): State<AppState>,
    Params(query): Params<ScenarioQuery>,
) -> Result<Response, AppError> {
    let sandbox = SandboxQuery {
        sandbox: query.sandbox,
        instance: None,
    }
    .sandbox()?;
    let kind = Kind::parse(&query.kind)?;
    let id = parse_id(&query.id)?;
    let result = crate::scenario::stale_set_race(&state.playground, &sandbox, kind, id).await?;
    Ok(Json(result).into_response())
}

/// How long the health check waits for Redis.
const HEALTH_TIMEOUT: Duration = Duration::from_millis(500);

/// `GET /healthz`: 200 while the back end serves. Redis being down is
/// reported but is not unhealthy: reads still work, from the database.
async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    let playground = &state.playground;
    let ping = redis::cmd("PING");
    let redis = match playground.redis.query(&ping, HEALTH_TIMEOUT).await {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("unavailable: {e}"),
    };
    Json(json!({ "status": "ok", "redis": redis, "database": "ok" }))
}

async fn no_front_end() -> Html<&'static str> {
    Html(
        "<!doctype html><title>Cache-aside playground</title><h1>The front end is not built</h1>\
         <p>Run <code>cargo xtask run</code>, which builds it and starts the back end. \
         The API works already: try <code>/api/v1/users/1</code>.</p>",
    )
}

/// `GET /ws?sandbox=NAME`: the trace stream of one sandbox, and a channel
/// for the browser's own commands.
async fn websocket(
    State(state): State<AppState>,
    Params(query): Params<SandboxQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, AppError> {
    let sandbox = query.sandbox()?;
    Ok(upgrade.on_upgrade(move |socket| session(state, sandbox, socket)))
}

/// One browser's connection: greets it, forwards its sandbox's traces,
/// answers its commands, and ends on close or shutdown.
async fn session(state: AppState, sandbox: SandboxId, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (mut feed, hello) = match (
        state.playground.subscribe(&sandbox),
        state.playground.hello(&sandbox),
    ) {
        (Ok(feed), Ok(hello)) => (feed, hello),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot open sandbox");
            let message = ServerMessage::Error {
                request_id: None,
                message: "this sandbox cannot be opened right now; try again shortly".into(),
            };
            let _ = send(&mut sink, Message::Text(to_json(&message).into())).await;
            let _ = send(&mut sink, Message::Close(None)).await;
            return;
        }
    };
    let mut shutdown = state.shutdown.clone();
    if !send(&mut sink, Message::Text(to_json(&hello).into())).await {
        return;
    }
    // Replies to this client's own reads arrive here from their tasks.
    let (replies, mut reply_queue) = mpsc::channel::<String>(READS_IN_FLIGHT_PER_CLIENT);
    let in_flight = Arc::new(Semaphore::new(READS_IN_FLIGHT_PER_CLIENT));
    // The client's messages are read by a task of their own: the loop below
    // then wakes for them only when one arrives, instead of starting a read
    // of the socket each time it sends a trace.
    let (commands, mut command_queue) = mpsc::channel::<Option<String>>(READS_IN_FLIGHT_PER_CLIENT);
    let reader = tokio::spawn(async move {
        while let Some(incoming) = stream.next().await {
            let command = match incoming {
                Ok(Message::Text(text)) => Some(text.to_string()),
                Ok(Message::Close(_)) | Err(_) => break,
                // Pings are answered by axum; binary frames are not part of
                // the protocol and are ignored.
                Ok(_) => continue,
            };
            if commands.send(command).await.is_err() {
                break;
            }
        }
        // The client is gone.
        let _ = commands.send(None).await;
    });

    loop {
        let outgoing: String = tokio::select! {
            _ = shutdown.changed() => break,
            event = feed.next() => match event {
                Some(FeedEvent::Message(json)) => json.to_string(),
                Some(FeedEvent::Missed(count)) => to_json(&ServerMessage::Missed { count }),
                None => break,
            },
            Some(reply) = reply_queue.recv() => reply,
            command = command_queue.recv() => match command.flatten() {
                Some(text) => match handle_command(&state, &sandbox, &text, &replies, &in_flight) {
                    Some(error) => error,
                    None => continue,
                },
                None => break,
            },
        };
        if !send(&mut sink, Message::Text(outgoing.into())).await {
            break;
        }
    }
    reader.abort();
    let _ = send(&mut sink, Message::Close(None)).await;
}

/// How long one message may take to go out before the client is given up
/// as gone (a peer that stops reading must not hold a session forever).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends one message; `false` if the client is gone or too slow.
async fn send(sink: &mut futures_util::stream::SplitSink<WebSocket, Message>, message: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await,
        Ok(Ok(()))
    )
}

/// Starts a command from the browser. Returns an error message to send
/// back at once, or `None` when the reply will come later.
fn handle_command(
    state: &AppState,
    sandbox: &SandboxId,
    text: &str,
    replies: &mpsc::Sender<String>,
    in_flight: &Arc<Semaphore>,
) -> Option<String> {
    let command = match serde_json::from_str::<ClientMessage>(text) {
        Ok(command) => command,
        Err(e) => {
            return Some(to_json(&ServerMessage::Error {
                request_id: None,
                message: format!("not a valid command: {e}"),
            }))
        }
    };
    match command {
        ClientMessage::Read {
            request_id,
            kind,
            id,
            pause_before,
            instance,
        } => {
            let playground = state.playground.clone();
            let sandbox = sandbox.clone();
            let options = ReadOptions {
                pause_before,
                operation_id: None,
                instance,
            };
            spawn_command(request_id, replies, in_flight, async move {
                playground
                    .read_with(&sandbox, kind, id, Origin::Browser, options)
                    .await
                    .map(|result| ServerMessage::ReadReply { request_id, result })
            })
        }
        ClientMessage::Write {
            request_id,
            kind,
            id,
            change,
            instance,
        } => {
            let playground = state.playground.clone();
            let sandbox = sandbox.clone();
            let options = WriteOptions {
                settings: None,
                instance,
            };
            spawn_command(request_id, replies, in_flight, async move {
                playground
                    .write_with(&sandbox, kind, id, change, Origin::Browser, options)
                    .await
                    .map(|result| ServerMessage::WriteReply { request_id, result })
            })
        }
        ClientMessage::SetInstanceLink { instance, connected } => {
            let result = state
                .playground
                .sandbox(sandbox)
                .and_then(|s| Ok(s.set_link(&instance, connected)?));
            result.err().map(error_message)
        }
        ClientMessage::RunHerd { request_id, herd } => {
            let playground = state.playground.clone();
            let sandbox = sandbox.clone();
            spawn_command(request_id, replies, in_flight, async move {
                playground
                    .run_herd(&sandbox, herd)
                    .await
                    .map(|result| ServerMessage::HerdReply { request_id, result })
            })
        }
        ClientMessage::Continue { operation_id } => state
            .playground
            .continue_operation(sandbox, operation_id)
            .err()
            .map(error_message),
        ClientMessage::RunScenario { request_id, scenario } => {
            let playground = state.playground.clone();
            let sandbox = sandbox.clone();
            spawn_command(request_id, replies, in_flight, async move {
                match scenario {
                    Scenario::StaleSetRace { kind, id } => {
                        crate::scenario::stale_set_race(&playground, &sandbox, kind, id)
                            .await
                            .map(|result| ServerMessage::ScenarioReply { request_id, result })
                    }
                }
            })
        }
        ClientMessage::CheckDivergence { request_id } => {
            let playground = state.playground.clone();
            let sandbox = sandbox.clone();
            spawn_command(request_id, replies, in_flight, async move {
                playground
                    .check_divergence(&sandbox)
                    .await
                    .map(|report| ServerMessage::Divergence { request_id, report })
            })
        }
        ClientMessage::UpdateSettings { settings } => {
            // Every watcher, this one included, gets the new settings.
            state
                .playground
                .update_settings(sandbox, settings)
                .err()
                .map(error_message)
        }
    }
}

/// What a client is told of a failure: input errors in full, internal
/// failures in general terms (the details go to the log).
fn client_text(error: &OpError) -> String {
    match error {
        OpError::Input(e) => e.to_string(),
        OpError::Inspection(e) => e.to_string(),
        OpError::Database(_) | OpError::Sandbox(_) => {
            tracing::error!(%error, "command failed");
            "the database is unavailable; try again shortly".into()
        }
        OpError::Internal(_) => {
            tracing::error!(%error, "command failed");
            "the playground failed; the details are in its log".into()
        }
    }
}

/// The message that reports a command's failure to its sender.
fn error_message(error: OpError) -> String {
    to_json(&ServerMessage::Error {
        request_id: None,
        message: client_text(&error),
    })
}

/// Runs a command in its own task, within the client's limit of commands in
/// flight, and queues its reply. Returns an error message at once when the
/// limit is reached.
fn spawn_command(
    request_id: u64,
    replies: &mpsc::Sender<String>,
    in_flight: &Arc<Semaphore>,
    command: impl std::future::Future<Output = Result<ServerMessage, OpError>> + Send + 'static,
) -> Option<String> {
    let Ok(permit) = in_flight.clone().try_acquire_owned() else {
        return Some(to_json(&ServerMessage::Error {
            request_id: Some(request_id),
            message: format!(
                "too many commands in flight (at most {READS_IN_FLIGHT_PER_CLIENT}); wait for one to finish"
            ),
        }));
    };
    let replies = replies.clone();
    tokio::spawn(async move {
        let message = command.await.unwrap_or_else(|e| ServerMessage::Error {
            request_id: Some(request_id),
            message: client_text(&e),
        });
        let _ = replies.send(to_json(&message)).await;
        drop(permit);
    });
    None
}
