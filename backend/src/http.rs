//! HTTP and WebSocket transport. Handlers are thin: they parse input, call
//! the [`Playground`] and turn the answer into a response. No cache logic
//! lives here. Every route sits behind the access checks of
//! [`crate::access`]; the WebSocket session itself is [`crate::session`].

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use shared::WriteChange;
use shared::{entity::parse_id, InputError, Kind, Origin, SandboxId};
use tokio::sync::watch;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::access::{content_security_policy, Access};
use crate::feed::Wire;
use crate::playground::{OpError, Playground, ReadOptions, WriteOptions};
use crate::private_redis::PrivateRedisError;
use crate::sandbox::{SandboxError, Unwatchable};
use crate::session::{self, Admission};
use crate::store::StoreError;

/// How long any request may take (a herd over the WebSocket is not a
/// request; its reply comes later). Past it: 408.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    /// The service that runs reads and publishes traces.
    pub playground: Arc<Playground>,
    /// Turns `true` when the server is shutting down, so open WebSockets
    /// close and graceful shutdown does not wait on them forever.
    pub shutdown: watch::Receiver<bool>,
    /// Origins, client addresses, per-client counts.
    pub access: Arc<Access>,
}

/// The whole HTTP surface: the API, the WebSocket and the front end's
/// files, behind the origin check, the body limit, the request timeout,
/// CORS for allowed origins and the security headers.
pub fn app(
    state: AppState,
    static_dir: &Path,
    allowed_origins: &[String],
    frame_ancestors: &[String],
) -> Router {
    let body_limit = state.playground.sandboxes.limits().max_body_bytes;
    let api = Router::new()
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
        .route("/api/v1/{kind}/{id}", get(read).put(update).delete(delete))
        .route("/api/v1/divergence", get(divergence))
        .route("/api/v1/keys", get(keys))
        .route("/api/v1/redis-info", get(redis_info))
        .route("/api/v1/memory", get(memory).put(set_memory))
        .route("/api/v1/memory/fill", post(fill))
        .route("/api/v1/encodings", get(encodings))
        .route("/api/v1/faults", get(faults).post(inject_fault))
        .route("/api/v1/scenarios/stale-set-race", post(stale_set_race))
        .route("/api/v1/scenarios/patterns", post(compare_patterns))
        .route("/api/v1/reset", post(reset))
        .route("/api/v1/load", get(load_state).post(start_load).delete(stop_load))
        .route("/ws", get(websocket))
        .route("/api/{*rest}", axum::routing::any(unknown_api))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), check_origin))
        .with_state(state)
        // Embed pages: framed by the configured parents, no origin check
        // (a frame's navigation carries none).
        .merge(crate::embed::routes(static_dir, frame_ancestors));
    let app = if static_dir.join("index.html").is_file() {
        api.fallback_service(static_files(static_dir))
    } else {
        tracing::warn!(dir = %static_dir.display(), "no front end built; `cargo xtask run` builds it");
        api.route("/", get(no_front_end))
    };
    let origins: Vec<HeaderValue> = allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(&o.trim().trim_end_matches('/').to_ascii_lowercase()).ok())
        .collect();
    // Every other route may be framed by the playground alone.
    let csp = content_security_policy(static_dir, &[]);
    // One stack, applied once: each `Router::layer` call wraps every route
    // in a boxed service of its own, and each level clones the levels
    // inside it on every request. Six calls cost the playground's REST
    // read about 13 % of its requests per second (`hit_path --only c`,
    // old and new builds alternated).
    // Outermost first: the security headers go on every response, even a
    // 408 or a refused preflight.
    let stack = tower::ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_str(&csp).unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'")),
        ))
        .layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::PUT, Method::DELETE, Method::POST])
                .allow_headers([header::CONTENT_TYPE]),
        )
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(DefaultBodyLimit::max(body_limit));
    app.layer(stack)
}

/// The app under `base` (`/` leaves it as it is), as a proxy that strips
/// the prefix would present it: `/playground/ws` is routed as `/ws`. The
/// bare prefix redirects to the prefix with a slash, where the front end's
/// relative addresses work; anything outside the prefix is not found.
pub fn under_base_path(app: Router, base: &str) -> Router {
    use tower::ServiceExt;
    if base == "/" {
        return app;
    }
    let base = base.to_string();
    Router::new().fallback_service(tower::service_fn(move |mut request: Request| {
        let (app, base) = (app.clone(), base.clone());
        async move {
            let path = request.uri().path();
            if path == base {
                // A shared setup (`/playground?ttl=5`) keeps its query.
                let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
                return Ok(axum::response::Redirect::permanent(&format!("{base}/{query}")).into_response());
            }
            let Some(rest) = path
                .strip_prefix(base.as_str())
                .filter(|rest| rest.starts_with('/'))
            else {
                return Ok(StatusCode::NOT_FOUND.into_response());
            };
            let inner = match request.uri().query() {
                Some(query) => format!("{rest}?{query}"),
                None => rest.to_string(),
            };
            match inner.parse() {
                Ok(uri) => *request.uri_mut() = uri,
                Err(_) => return Ok(StatusCode::BAD_REQUEST.into_response()),
            }
            app.oneshot(request).await
        }
    }))
}

/// The built front end: the `.br` / `.gz` beside each file (written by
/// the xtask at build time) to browsers that accept them, hashed assets
/// cached for a year, everything else revalidated.
///
/// The page gets a Content-Security-Policy made from `index.html` as it is
/// now, not as it was when the back end started: a front end rebuilt under
/// a running back end (`trunk build`) has new inline boot scripts, which a
/// policy from the old page would refuse, leaving the page loading forever.
fn static_files(static_dir: &Path) -> Router {
    let files = ServeDir::new(static_dir).precompressed_br().precompressed_gzip();
    Router::new()
        .fallback_service(files)
        .layer(axum::middleware::map_response_with_state(
            static_dir.to_path_buf(),
            |State(dir): State<std::path::PathBuf>,
             request_path: axum::extract::OriginalUri,
             mut response: Response| async move {
                let path = request_path.path();
                // The page (`/`, `/index.html`), also when revalidated (304):
                // a 304's headers replace the ones the browser kept.
                let page = path.ends_with('/') || path.ends_with(".html");
                let served = matches!(response.status(), StatusCode::OK | StatusCode::NOT_MODIFIED);
                let headers = response.headers_mut();
                headers.insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static(cache_policy(path)),
                );
                headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
                if page && served {
                    let policy = content_security_policy(&dir, &[]);
                    if let Ok(value) = HeaderValue::from_str(&policy) {
                        headers.insert(header::CONTENT_SECURITY_POLICY, value);
                    }
                }
                response
            },
        ))
}

/// `Cache-Control` for a front-end path: Trunk names assets after their
/// content (`frontend-0123456789abcdef_bg.wasm`), so they never change and
/// may be kept a year; the page itself must be checked every time, so a
/// new build is picked up.
pub fn cache_policy(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or("");
    let stem = name.split('.').next().unwrap_or("");
    let stem = stem.strip_suffix("_bg").unwrap_or(stem);
    let hashed = stem
        .rsplit_once('-')
        .is_some_and(|(_, hash)| hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()));
    if hashed {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    }
}

/// Refuses a page of another origin before any handler runs.
async fn check_origin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.access.origin_allowed(request.headers()) {
        return next.run(request).await;
    }
    let origin = request
        .headers()
        .get("origin")
        .and_then(|o| o.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(100)
        .collect::<String>();
    tracing::info!(%origin, "refused a page of another origin");
    (
        StatusCode::FORBIDDEN,
        Json(json!({ "error": format!("pages of {origin} may not use this playground") })),
    )
        .into_response()
}

/// Errors a handler can return. Each variant says when it occurs.
#[derive(Clone, Debug)]
pub enum AppError {
    /// Occurs on bad input: an unknown kind (404), or a bad id or sandbox (400).
    Input(InputError),
    /// Occurs when a request body is not the JSON expected (400).
    Body(String),
    /// Occurs when a request body is larger than the limit (413).
    TooLarge(String),
    /// Occurs when the database fails (503); details go to the log.
    Unavailable(String),
    /// Occurs when another replica holds the sandbox (503): a load
    /// balancer retries the request on another replica (see
    /// `e2e/src/balancer.rs`).
    Elsewhere(String),
    /// Occurs when the playground itself fails (500); details go to the log.
    Internal,
    /// Occurs when a client or sandbox goes over a limit (429).
    OverLimit(String),
    /// Occurs when the request names a sandbox that does not exist (404).
    NoSandbox(String),
    /// Occurs when the request asks for what this back end does not offer
    /// (403), such as a redis-server of its own with an external Redis.
    Refused(String),
}

impl From<OpError> for AppError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Input(InputError::OverLimit(message)) => AppError::OverLimit(message),
            OpError::Input(e) => AppError::Input(e),
            OpError::Sandbox(e @ SandboxError::Unknown(_)) => AppError::NoSandbox(e.to_string()),
            OpError::Sandbox(e @ SandboxError::Full(_)) => AppError::Unavailable(e.to_string()),
            OpError::Sandbox(e @ SandboxError::Elsewhere) => AppError::Elsewhere(e.to_string()),
            OpError::Sandbox(e @ SandboxError::Ownership(_)) => AppError::Unavailable(e.to_string()),
            OpError::Sandbox(SandboxError::Private(e @ PrivateRedisError::External)) => {
                AppError::Refused(e.to_string())
            }
            OpError::Sandbox(SandboxError::Private(e @ PrivateRedisError::AllInUse(_))) => {
                AppError::OverLimit(e.to_string())
            }
            OpError::Sandbox(e) => {
                tracing::error!(error = %e, "cannot open sandbox");
                AppError::Unavailable("this sandbox cannot be opened right now; try again shortly".into())
            }
            OpError::Inspection(e) => {
                tracing::warn!(error = %e, "divergence check failed");
                AppError::Unavailable(e.to_string())
            }
            // Saturation is what the learner set up: said as it is, not
            // logged as a fault.
            OpError::Database(
                e @ (StoreError::Busy { .. } | StoreError::Injected { .. } | StoreError::NoFallback(_)),
            ) => AppError::Unavailable(e.to_string()),
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

impl AppError {
    /// The status and the message a client gets.
    fn status_and_text(self) -> (StatusCode, String) {
        match self {
            AppError::Input(e @ InputError::UnknownKind(_)) => (StatusCode::NOT_FOUND, e.to_string()),
            AppError::Input(InputError::OverLimit(m)) | AppError::OverLimit(m) => {
                (StatusCode::TOO_MANY_REQUESTS, m)
            }
            AppError::Input(e) => (StatusCode::BAD_REQUEST, e.to_string()),
            AppError::NoSandbox(m) => (StatusCode::NOT_FOUND, m),
            AppError::Refused(m) => (StatusCode::FORBIDDEN, m),
            AppError::Body(m) => (StatusCode::BAD_REQUEST, m),
            AppError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, m),
            AppError::Unavailable(m) | AppError::Elsewhere(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
            AppError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the playground failed; the details are in its log".into(),
            ),
        }
    }

    /// What the client is told.
    pub fn client_text(&self) -> String {
        self.clone().status_and_text().1
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, message) = self.status_and_text();
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

/// The record and sandbox a request names, checked; a sandbox a stopped
/// replica held is taken over first (`--replica`).
async fn target(
    state: &AppState,
    kind: &str,
    id: &str,
    query: &SandboxQuery,
) -> Result<(Kind, u64, SandboxId), AppError> {
    let (kind, id, sandbox) = (Kind::parse(kind)?, parse_id(id)?, query.sandbox()?);
    state
        .playground
        .sandboxes
        .take_over(&sandbox)
        .await
        .map_err(OpError::from)?;
    Ok((kind, id, sandbox))
}

/// `GET /api/v1/{kind}/{id}`: a cache-aside read. 200 with the record, or
/// 404 with the same body (`found: false`) when the record does not exist.
async fn read(
    State(state): State<AppState>,
    Segments((kind, id)): Segments<(String, String)>,
    Params(query): Params<SandboxQuery>,
) -> Result<Response, AppError> {
    let (kind, id, sandbox) = target(&state, &kind, &id, &query).await?;
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
    body: Result<Json<UpdateBody>, JsonRejection>,
) -> Result<Response, AppError> {
    let (kind, id, sandbox) = target(&state, &kind, &id, &query).await?;
    let body = json_body(body)?;
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
    let (kind, id, sandbox) = target(&state, &kind, &id, &query).await?;
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
        instance: query.instance.clone(),
        ..WriteOptions::default()
    };
    // In a task of its own: if the client hangs up, the write still runs
    // to its end, cache step included (a database written and a cache not
    // invalidated would stay stale until the TTL).
    let playground = state.playground.clone();
    let result = tokio::spawn(async move {
        playground
            .write_with(&sandbox, kind, id, change, Origin::Rest, options)
            .await
    })
    .await
    .map_err(|e| OpError::Internal(format!("the write's task failed: {e}")))??;
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

/// `GET /api/v1/keys`: the sandbox's keys in Redis, each with its TTL,
/// type, size and use, and how many have no TTL.
async fn keys(
    State(state): State<AppState>,
    Params(query): Params<SandboxQuery>,
) -> Result<Response, AppError> {
    let report = state.playground.inspect_keys(&query.sandbox()?).await?;
    Ok(Json(report).into_response())
}

/// `GET /api/v1/redis-info`: Redis's own figures (memory, evictions,
/// expirations, its hits and misses, operations per second).
async fn redis_info(
    State(state): State<AppState>,
    Params(query): Params<SandboxQuery>,
) -> Result<Response, AppError> {
    let figures = state.playground.redis_figures(&query.sandbox()?).await?;
    Ok(Json(figures).into_response())
}

/// `GET /api/v1/memory`: the sandbox's server's memory limit, eviction
/// policy and figures, and whether the sandbox may change them.
async fn memory(
    State(state): State<AppState>,
    Params(query): Params<SandboxQuery>,
) -> Result<Response, AppError> {
    let memory = state.playground.memory(&query.sandbox()?).await?;
    Ok(Json(memory).into_response())
}

/// `PUT /api/v1/memory` (JSON body: `MemorySettings`): sets the limit and
/// policy of the sandbox's own redis-server; 400 on the shared Redis.
async fn set_memory(
    State(state): State<AppState>,
    Params(query): Params<SandboxQuery>,
    body: Result<Json<shared::MemorySettings>, JsonRejection>,
) -> Result<Response, AppError> {
    let sandbox = query.sandbox()?;
    let settings = json_body(body)?;
    let memory = state.playground.set_memory(&sandbox, settings).await?;
    Ok(Json(memory).into_response())
}

/// `GET /api/v1/faults`: the fault lab's report (what is being done to the
/// sandbox's Redis, each instance's breaker, pending invalidations, the
/// timeline).
async fn faults(
    State(state): State<AppState>,
    Params(query): Params<SandboxQuery>,
) -> Result<Response, AppError> {
    let report = state.playground.fault(&query.sandbox()?, None).await?;
    Ok(Json(report).into_response())
}

/// `POST /api/v1/faults` (JSON body: a `FaultAction`, such as
/// `{"fault": "stop_redis"}`): breaks or mends the sandbox's Redis, or warms
/// its cache; answers the report.
async fn inject_fault(
    State(state): State<AppState>,
    Params(query): Params<SandboxQuery>,
    body: Result<Json<shared::FaultAction>, JsonRejection>,
) -> Result<Response, AppError> {
    let sandbox = query.sandbox()?;
    let action = json_body(body)?;
    let report = state.playground.fault(&sandbox, Some(action)).await?;
    Ok(Json(report).into_response())
}

/// `POST /api/v1/memory/fill` (JSON body: `FillSpec`): fills the sandbox's
/// own redis-server past its limit and answers what Redis kept.
async fn fill(
    State(state): State<AppState>,
    Params(query): Params<SandboxQuery>,
    body: Result<Json<shared::FillSpec>, JsonRejection>,
) -> Result<Response, AppError> {
    let sandbox = query.sandbox()?;
    let spec = json_body(body)?;
    let result = state.playground.fill(&sandbox, spec).await?;
    Ok(Json(result).into_response())
}

/// `?sandbox=NAME&kind=users&id=42&padding=1000` for the encodings.
#[derive(Debug, Deserialize)]
pub struct EncodingsQuery {
    sandbox: Option<String>,
    kind: String,
    id: String,
    padding: Option<String>,
}

/// `GET /api/v1/encodings?kind=users&id=42&padding=1000`: the record under
/// every value encoding, each with its size and measured costs.
async fn encodings(
    State(state): State<AppState>,
    Params(query): Params<EncodingsQuery>,
) -> Result<Response, AppError> {
    let sandbox = SandboxQuery {
        sandbox: query.sandbox,
        instance: None,
    }
    .sandbox()?;
    let kind = Kind::parse(&query.kind)?;
    let id = parse_id(&query.id)?;
    let padding = match query.padding.as_deref() {
        None => 0,
        Some(text) => text.trim().parse().map_err(|_| {
            shared::InputError::BadSetting(format!(
                "padding must be a whole number of bytes, not {:?}",
                text.chars().take(20).collect::<String>()
            ))
        })?,
    };
    let result = state
        .playground
        .compare_encodings(&sandbox, kind, id, padding)
        .await?;
    Ok(Json(result).into_response())
}

/// A JSON body, or the 400 (413 when too large) that says what is wrong.
fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, AppError> {
    body.map(|Json(value)| value).map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => AppError::TooLarge(format!(
            "the request body is too large: at most {} KB of JSON",
            crate::config::MAX_BODY_BYTES / 1024
        )),
        _ => AppError::Body(e.body_text()),
    })
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

#[derive(Debug, Deserialize)]
pub struct PatternsQuery {
    sandbox: Option<String>,
    seed: Option<String>,
}

/// `POST /api/v1/scenarios/patterns?seed=7`: the same workload through
/// cache-aside, read-through, write-through and write-behind.
async fn compare_patterns(
    State(state): State<AppState>,
    Params(query): Params<PatternsQuery>,
) -> Result<Response, AppError> {
    let sandbox = SandboxQuery {
        sandbox: query.sandbox,
        instance: None,
    }
    .sandbox()?;
    let seed = match query.seed.as_deref() {
        None => 1,
        Some(text) => text.trim().parse().map_err(|_| {
            shared::InputError::BadSetting(format!(
                "seed must be a whole number, not {:?}",
                text.chars().take(20).collect::<String>()
            ))
        })?,
    };
    let result = state.playground.compare_patterns(&sandbox, seed).await?;
    Ok(Json(result).into_response())
}

/// `POST /api/v1/load`: starts a steady load in the sandbox (JSON body: a
/// `LoadSpec`), replacing one that runs; answers its state. Watching pages
/// see it start, progress and end.
async fn start_load(
    State(state): State<AppState>,
    Params(query): Params<SandboxQuery>,
    body: Result<Json<shared::LoadSpec>, JsonRejection>,
) -> Result<Response, AppError> {
    let sandbox = query.sandbox()?;
    let spec = json_body(body)?;
    let started = crate::load::start(&state.playground, &sandbox, spec)?;
    Ok(Json(started).into_response())
}

/// `GET /api/v1/load`: the sandbox's load as it stands (`null`: none).
async fn load_state(
    State(state): State<AppState>,
    Params(query): Params<SandboxQuery>,
) -> Result<Response, AppError> {
    let sandbox = state.playground.sandbox(&query.sandbox()?)?;
    Ok(Json(sandbox.load_state()).into_response())
}

/// `DELETE /api/v1/load`: stops the sandbox's load; answers its last state
/// (`null`: none ran).
async fn stop_load(
    State(state): State<AppState>,
    Params(query): Params<SandboxQuery>,
) -> Result<Response, AppError> {
    let stopped = crate::load::stop(&state.playground, &query.sandbox()?)?;
    Ok(Json(stopped).into_response())
}

/// `GET /metrics`: the playground's Prometheus metrics (aggregated over
/// every sandbox, nothing per visitor), in the OpenMetrics text format.
async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.playground.sandboxes.metrics_text(),
    )
        .into_response()
}

/// How long the health check waits for Redis.
const HEALTH_TIMEOUT: Duration = Duration::from_millis(500);

/// `GET /healthz`: 200 while the back end serves. Redis being down is
/// reported but is not unhealthy: reads still work, from the database.
async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    let playground = &state.playground;
    let ping = redis::cmd("PING");
    let redis = match playground.redis.query(&ping, HEALTH_TIMEOUT).await {
        Ok(_) => "ok",
        Err(e) => {
            tracing::warn!(error = %e, "health check: Redis unavailable");
            "unavailable"
        }
    };
    Json(json!({ "status": "ok", "redis": redis, "database": "ok" }))
}

/// Any other `/api/...` address: a JSON 404 that says what exists.
async fn unknown_api(uri: axum::http::Uri) -> Response {
    let path: String = uri.path().chars().take(100).collect();
    (
        StatusCode::NOT_FOUND,
        Json(json!({
            "error": format!("no such endpoint {path:?}: try /api/v1/users/{{id}} or /api/v1/products/{{id}}")
        })),
    )
        .into_response()
}

/// A known address asked with a method it does not take: a JSON 405 like
/// every other refusal (axum adds the `Allow` header listing those it
/// does take).
async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Response {
    let path: String = uri.path().chars().take(100).collect();
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({
            "error": format!("{method} is not allowed on {path:?}: the Allow header lists the methods that are")
        })),
    )
        .into_response()
}

async fn no_front_end() -> Html<&'static str> {
    Html(
        "<!doctype html><title>Cache-aside playground</title><h1>The front end is not built</h1>\
         <p>Run <code>cargo xtask run</code>, which builds it and starts the back end. \
         The API works already: try <code>/api/v1/users/1</code>.</p>",
    )
}

/// `POST /api/v1/reset[?sandbox=NAME]`: a sandbox (`default` unless
/// named) back to its seed: rows re-seeded, keys deleted, counters
/// cleared. Its watchers are told.
async fn reset(
    State(state): State<AppState>,
    Params(query): Params<SandboxQuery>,
) -> Result<Response, AppError> {
    let sandbox = query.sandbox()?;
    // In a task of its own, like a write: a client that hangs up must not
    // leave the rows re-seeded and the old keys cached.
    let playground = state.playground.clone();
    let id = sandbox.clone();
    tokio::spawn(async move { playground.reset(&id).await })
        .await
        .map_err(|e| OpError::Internal(format!("the reset's task failed: {e}")))??;
    Ok(Json(json!({ "reset": sandbox })).into_response())
}

/// `?sandbox=NAME` on the WebSocket: the sandbox to watch; without it (or
/// for one that is gone) a new one is opened, with a redis-server of its
/// own if `redis=private`. `wire=binary`: the client reads and sends the
/// protocol's compact binary form (`shared::wire`, what the page does);
/// JSON text otherwise.
#[derive(Debug, Deserialize)]
pub struct SocketQuery {
    sandbox: Option<String>,
    redis: Option<String>,
    wire: Option<String>,
}

impl SocketQuery {
    fn wire(&self) -> Result<Wire, AppError> {
        match self.wire.as_deref() {
            None | Some("json") => Ok(Wire::Json),
            Some(binary) if binary == shared::wire::BINARY_PARAM.1 => Ok(Wire::Binary),
            Some(_) => Err(AppError::Input(InputError::BadSetting(
                "wire must be `json` or `binary`".into(),
            ))),
        }
    }
}

/// `GET /ws?sandbox=NAME`: the trace stream of one sandbox, and a channel
/// for the browser's own commands. Checked before the session starts: the
/// client's sockets, the sandbox (opening a new one counts against the
/// client's new sandboxes per minute and the global cap), its watchers.
/// A refusal still upgrades, to tell the page why (a browser cannot read
/// the body of a failed upgrade), then closes: "try again later" (1013)
/// for a limit, "policy" (1008) for bad input.
async fn websocket(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Params(query): Params<SocketQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let limits = state.playground.sandboxes.limits().clone();
    // Small buffers: a client sends commands of a few hundred bytes, and
    // each message out is written at once (the session flushes each). The
    // library's 128 KiB defaults cost a megabyte every few browsers.
    let upgrade = upgrade
        .max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_message_bytes)
        .read_buffer_size(limits.max_message_bytes)
        .write_buffer_size(0)
        .max_write_buffer_size(1 << 20);
    // Told in JSON when the asked wire is not one (nothing else is known).
    let (wire, admitted) = match query.wire() {
        Ok(wire) => (wire, admit(&state, &headers, peer, &query).await),
        Err(error) => (Wire::Json, Err(error)),
    };
    match admitted {
        Ok(admission) => {
            // For a load balancer that keeps a sandbox on one replica: the
            // sandbox this session watches (made here, if it asked none).
            let sandbox = HeaderValue::from_str(admission.sandbox.id.as_str()).ok();
            let mut response = upgrade.on_upgrade(move |socket| session::run(state, admission, wire, socket));
            if let Some(sandbox) = sandbox {
                response.headers_mut().insert("x-playground-sandbox", sandbox);
            }
            response
        }
        // Another replica holds the sandbox: a plain 503, not upgraded, so
        // a load balancer can retry the handshake on another replica (it
        // cannot once upgraded); a page with no balancer retries later.
        Err(error @ AppError::Elsewhere(_)) => error.into_response(),
        Err(error) => {
            let refusal = session::Refusal::of(&error);
            upgrade.on_upgrade(move |socket| session::refuse(socket, wire, refusal))
        }
    }
}

/// Who may start a session, and on which sandbox.
async fn admit(
    state: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    query: &SocketQuery,
) -> Result<Admission, AppError> {
    let limits = state.playground.sandboxes.limits();
    let requested = match &query.sandbox {
        Some(name) => Some(SandboxId::parse(name)?),
        None => None,
    };
    let client = state.access.client(headers, peer);
    let slot = state.access.open_socket(client).ok_or_else(|| {
        AppError::OverLimit(format!(
            "too many open connections from your address (at most {}); close a tab",
            limits.sockets_per_client
        ))
    })?;
    let private = match query.redis.as_deref() {
        None | Some("shared") => false,
        Some("private") => true,
        Some(other) => {
            return Err(AppError::Body(format!(
                "redis={:?}: use redis=private or redis=shared",
                other.chars().take(20).collect::<String>()
            )))
        }
    };
    // Twice at most: a sandbox removed between finding it and watching it
    // is as good as expired, and a new one is opened.
    let mut wanted = requested.clone();
    let (sandbox, watching) = loop {
        let existing = wanted.as_ref().and_then(|id| state.playground.sandbox(id).ok());
        let sandbox = match existing {
            Some(sandbox) => sandbox,
            None => {
                if !state.access.may_create_sandbox(client) {
                    return Err(AppError::OverLimit(
                        "too many new sandboxes from your address; try again in a minute".into(),
                    ));
                }
                state
                    .playground
                    .open_sandbox_with(wanted.as_ref(), private)
                    .await?
            }
        };
        match sandbox.watch(limits.sockets_per_sandbox) {
            Ok(watching) => break (sandbox, watching),
            Err(Unwatchable::Full) => {
                return Err(AppError::OverLimit(format!(
                    "this sandbox is open in too many tabs (at most {})",
                    limits.sockets_per_sandbox
                )))
            }
            Err(Unwatchable::Gone) if wanted.is_some() => wanted = None,
            Err(Unwatchable::Gone) => {
                return Err(AppError::Unavailable(
                    "the sandbox could not be opened; try again".into(),
                ))
            }
        }
    };
    let moved = sandbox.take_moved();
    let notice = if moved {
        Some(
            "your sandbox moved to another server (the one it was on stopped): its records and your writes are \
             kept; its cache and counters start afresh, and the page put your settings back"
                .to_string(),
        )
    } else {
        requested.filter(|asked| *asked != sandbox.id).map(|_| {
            "your sandbox had expired (idle too long): this is a new one, with fresh data".to_string()
        })
    };
    Ok(Admission {
        sandbox,
        watching,
        slot,
        notice,
        moved,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    /// A saturated database is the learner's own doing: a 503 that says
    /// what happened, not "unavailable, try later".
    #[test]
    fn a_busy_database_is_a_503_that_says_why() {
        let busy = OpError::Database(StoreError::Busy {
            connections: 10,
            waited_ms: 3_000,
        });
        let AppError::Unavailable(message) = AppError::from(busy) else {
            panic!("not a 503");
        };
        assert!(
            message.contains("none of its 10 connections came free within 3000 ms"),
            "{message}"
        );
        let response = AppError::Unavailable(message).into_response();
        assert_eq!(response.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
    }
}
