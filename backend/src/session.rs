//! One browser's WebSocket: greets it with its sandbox, forwards the
//! sandbox's traces, runs its commands, and ends on close, on shutdown, or
//! when the browser goes quiet.
//!
//! Bounded everywhere a visitor could push: message size (set at the
//! upgrade), commands in flight, steps in a step-through list, idle time
//! (pings three times per `--socket-silence-secs`; no word for that long
//! ends the session),
//! and the herds a session started stop when it ends.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use shared::{ClientMessage, InputError, Origin, Scenario, ServerMessage};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::access::SocketSlot;
use crate::error::OpError;
use crate::feed::{FeedEvent, Wire};
use crate::http::AppState;
use crate::playground::{ReadOptions, WriteOptions};
use crate::sandbox::{Sandbox, Watching};

/// How many commands one client may have in flight; more get an error
/// message instead of piling up.
pub const COMMANDS_IN_FLIGHT: usize = 16;

/// The most steps one read may pause before (there are not more nodes).
pub const MOST_BREAKPOINTS: usize = 16;

/// How long one message may take to go out before the client is given up
/// as gone (a peer that stops reading must not hold a session forever).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// What a session holds for as long as it lives: its sandbox, counted as
/// watched, and its place among its client's sockets.
pub struct Admission {
    pub sandbox: Arc<Sandbox>,
    pub watching: Watching,
    pub slot: SocketSlot,
    /// A word for the page, such as "your sandbox had expired".
    pub notice: Option<String>,
    /// This back end just took the sandbox over from a stopped replica.
    pub moved: bool,
}

/// Why a session was not started, told to the page before the socket
/// closes.
pub struct Refusal {
    message: String,
    /// 1013 ("try again later") for a limit or a busy playground, 1008
    /// ("policy") for input that will never be accepted.
    code: u16,
}

impl Refusal {
    /// The refusal for an admission error.
    pub fn of(error: &crate::http::AppError) -> Refusal {
        use crate::http::AppError;
        let code = match error {
            AppError::Input(_) | AppError::Body(_) | AppError::Refused(_) => 1008,
            _ => 1013,
        };
        Refusal {
            message: error.client_text(),
            code,
        }
    }
}

/// Tells the page why it may not have a session, and closes.
pub async fn refuse(socket: WebSocket, wire: Wire, refusal: Refusal) {
    let (mut sink, _stream) = socket.split();
    let error = ServerMessage::Error {
        request_id: None,
        message: refusal.message.clone(),
    };
    if send(&mut sink, wire.frame(&error)).await {
        // A close reason is at most 123 bytes.
        let mut reason = refusal.message;
        while reason.len() > 123 {
            reason.pop();
        }
        let frame = axum::extract::ws::CloseFrame {
            code: refusal.code,
            reason: reason.into(),
        };
        let _ = send(&mut sink, Message::Close(Some(frame))).await;
    }
}

/// Runs one session to its end, speaking `wire` (the client's messages are
/// read in either form).
pub async fn run(state: AppState, admission: Admission, wire: Wire, socket: WebSocket) {
    let Admission {
        sandbox,
        watching: _watching,
        slot: _slot,
        notice,
        moved,
    } = admission;
    let (mut sink, mut stream) = socket.split();
    let mut feed = sandbox.feed.subscribe();
    let mut hello = state.playground.hello(&sandbox);
    if let ServerMessage::Hello { moved: told, .. } = &mut hello {
        *told = moved;
    }
    if !send(&mut sink, wire.frame(&hello)).await {
        return;
    }
    if let Some(message) = notice {
        let notice = ServerMessage::Error {
            request_id: None,
            message,
        };
        if !send(&mut sink, wire.frame(&notice)).await {
            return;
        }
    }
    let mut shutdown = state.shutdown.clone();
    let mut pages_closed = sandbox.pages_closed();
    // Replies to this client's own commands arrive here from their tasks.
    let (replies, mut reply_queue) = mpsc::channel::<ServerMessage>(COMMANDS_IN_FLIGHT);
    let in_flight = Arc::new(Semaphore::new(COMMANDS_IN_FLIGHT));
    // The client's messages are read by a task of their own: the loop below
    // then wakes for them only when one arrives, instead of starting a read
    // of the socket each time it sends a trace. Any frame, pongs included,
    // counts as a sign of life.
    let (heard, mut hearing) = mpsc::channel::<Option<Result<ClientMessage, String>>>(COMMANDS_IN_FLIGHT);
    let reader = tokio::spawn(async move {
        while let Some(incoming) = stream.next().await {
            let command = match incoming {
                Ok(Message::Text(text)) => Some(decode(&text)),
                Ok(Message::Binary(bytes)) => Some(decode_binary(&bytes)),
                Ok(Message::Close(_)) | Err(_) => break,
                // Pongs and pings (axum answers those) are signs of life.
                Ok(_) => None,
            };
            if heard.send(command).await.is_err() {
                return;
            }
        }
        // The client is gone: say so by closing the channel.
    });
    let mut herds: Vec<JoinHandle<()>> = Vec::new();
    let mut my_load: Option<u64> = None;
    let mut last_heard = Instant::now();
    // A client says something (a pong at least) at every ping; three
    // pings unanswered and it is gone.
    let silence = state.playground.sandboxes.limits().socket_silence;
    let ping_every = silence / 3;
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);

    loop {
        let outgoing: Message = tokio::select! {
            _ = shutdown.changed() => break,
            // Another replica holds the sandbox now: the page reconnects
            // (through the balancer) to it.
            () = until_closed(&mut pages_closed) => {
                let _ = sink.send(Message::Close(Some(axum::extract::ws::CloseFrame {
                    code: axum::extract::ws::close_code::AGAIN,
                    reason: "this sandbox is open on another server now: reconnect".into(),
                }))).await;
                break;
            }
            event = feed.next() => match event {
                Some(FeedEvent::Message(published)) => published.frame(wire),
                Some(FeedEvent::Missed(count)) => wire.frame(&ServerMessage::Missed { count }),
                None => break,
            },
            Some(reply) = reply_queue.recv() => wire.frame(&reply),
            heard = hearing.recv() => {
                last_heard = Instant::now();
                match heard {
                    Some(Some(command)) => {
                        sandbox.touch();
                        let started = handle_command(&state, &sandbox, command, &replies, &in_flight);
                        match started {
                            Started::Reply(error) => wire.frame(&error),
                            Started::Later => continue,
                            Started::Herd(task) => {
                                herds.retain(|h| !h.is_finished());
                                herds.push(task);
                                continue;
                            }
                            Started::Load(started_at_ms) => {
                                my_load = Some(started_at_ms);
                                continue;
                            }
                        }
                    }
                    Some(None) => continue,
                    None => break,
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > silence {
                    break;
                }
                Message::Ping(Vec::new().into())
            }
        };
        if !send(&mut sink, outgoing).await {
            break;
        }
    }
    reader.abort();
    // Herds are the one costly thing nobody waits for once the page is
    // gone: stop them. (Reads and writes finish: a write's cache step must.)
    for herd in herds {
        herd.abort();
    }
    // So is a load this page started and nobody replaced.
    if my_load.is_some() && sandbox.load_state().map(|s| s.started_at_ms) == my_load {
        sandbox.stop_load();
    }
    let _ = send(&mut sink, Message::Close(None)).await;
}

/// Sends one message; `false` if the client is gone or too slow.
async fn send(sink: &mut futures_util::stream::SplitSink<WebSocket, Message>, message: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await,
        Ok(Ok(()))
    )
}

/// What starting a command did.
enum Started {
    /// An answer to send now (an error).
    Reply(Box<ServerMessage>),
    /// The answer will come from a task.
    Later,
    /// A herd was started; its task stops with the session.
    Herd(JoinHandle<()>),
    /// A load was started (at this time): it stops with the session,
    /// unless another replaced it.
    Load(u64),
}

/// A command from its JSON text, or what is wrong with it, in at most a
/// couple of hundred characters (an error never echoes a message back).
pub fn decode(text: &str) -> Result<ClientMessage, String> {
    serde_json::from_str::<ClientMessage>(text).map_err(|e| not_a_command(&e))
}

/// A command from its binary form ([`shared::wire`]), or what is wrong
/// with it, as [`decode`].
pub fn decode_binary(bytes: &[u8]) -> Result<ClientMessage, String> {
    shared::wire::from_binary::<ClientMessage>(bytes).map_err(|e| not_a_command(&e))
}

fn not_a_command(error: &dyn std::fmt::Display) -> String {
    let detail: String = error.to_string().chars().take(200).collect();
    format!("not a valid command: {detail}")
}

/// Starts a command from the browser.
fn handle_command(
    state: &AppState,
    sandbox: &Arc<Sandbox>,
    command: Result<ClientMessage, String>,
    replies: &mpsc::Sender<ServerMessage>,
    in_flight: &Arc<Semaphore>,
) -> Started {
    let command = match command {
        Ok(command) => command,
        Err(message) => {
            return Started::Reply(Box::new(ServerMessage::Error {
                request_id: None,
                message,
            }))
        }
    };
    let playground = state.playground.clone();
    let id = sandbox.id.clone();
    let reply = |error: Option<OpError>| match error {
        Some(error) => Started::Reply(error_message(None, error)),
        None => Started::Later,
    };
    match command {
        ClientMessage::Read {
            request_id,
            kind,
            id: record,
            pause_before,
            instance,
        } => {
            if pause_before.len() > MOST_BREAKPOINTS {
                let error = InputError::BadSetting(format!("at most {MOST_BREAKPOINTS} breakpoints"));
                return Started::Reply(error_message(Some(request_id), error.into()));
            }
            let options = ReadOptions {
                pause_before,
                operation_id: None,
                instance,
            };
            later(spawn_command(request_id, replies, in_flight, async move {
                playground
                    .read_with(&id, kind, record, Origin::Browser, options)
                    .await
                    .map(|result| ServerMessage::ReadReply { request_id, result })
            }))
        }
        ClientMessage::Write {
            request_id,
            kind,
            id: record,
            change,
            instance,
        } => {
            let options = WriteOptions {
                instance,
                ..WriteOptions::default()
            };
            later(spawn_command(request_id, replies, in_flight, async move {
                playground
                    .write_with(&id, kind, record, change, Origin::Browser, options)
                    .await
                    .map(|result| ServerMessage::WriteReply { request_id, result })
            }))
        }
        ClientMessage::StartLoad { request_id, load } => match crate::load::start(&playground, &id, load) {
            Ok(state) => Started::Load(state.started_at_ms),
            Err(error) => Started::Reply(error_message(Some(request_id), error)),
        },
        ClientMessage::StopLoad { request_id } => match crate::load::stop(&playground, &id) {
            Ok(_) => Started::Later,
            Err(error) => Started::Reply(error_message(Some(request_id), error)),
        },
        ClientMessage::InspectKeys { request_id } => {
            later(spawn_command(request_id, replies, in_flight, async move {
                playground
                    .inspect_keys(&id)
                    .await
                    .map(|report| ServerMessage::Keys { request_id, report })
            }))
        }
        ClientMessage::RedisInfo { request_id } => {
            later(spawn_command(request_id, replies, in_flight, async move {
                playground
                    .redis_figures(&id)
                    .await
                    .map(|figures| ServerMessage::RedisInfo { request_id, figures })
            }))
        }
        ClientMessage::Memory { request_id } => {
            later(spawn_command(request_id, replies, in_flight, async move {
                playground
                    .memory(&id)
                    .await
                    .map(|state| ServerMessage::Memory { request_id, state })
            }))
        }
        ClientMessage::SetMemory { request_id, memory } => {
            later(spawn_command(request_id, replies, in_flight, async move {
                playground
                    .set_memory(&id, memory)
                    .await
                    .map(|state| ServerMessage::Memory { request_id, state })
            }))
        }
        // Like a herd: stopped when the page goes.
        ClientMessage::Fill {
            request_id,
            fill,
            memory,
        } => {
            let started = spawn_command(request_id, replies, in_flight, async move {
                if let Some(memory) = memory {
                    playground.set_memory(&id, memory).await?;
                }
                playground
                    .fill(&id, fill)
                    .await
                    .map(|result| ServerMessage::FillReply { request_id, result })
            });
            match started {
                Ok(task) => Started::Herd(task),
                Err(reply) => Started::Reply(reply),
            }
        }
        ClientMessage::Fault { request_id, action } => {
            later(spawn_command(request_id, replies, in_flight, async move {
                playground
                    .fault(&id, action)
                    .await
                    .map(|report| ServerMessage::Faults {
                        request_id: Some(request_id),
                        report,
                    })
            }))
        }
        ClientMessage::RelatedKeys { request_id, spec } => {
            later(spawn_command(request_id, replies, in_flight, async move {
                playground
                    .related_keys(&id, spec)
                    .await
                    .map(|result| ServerMessage::RelatedReply { request_id, result })
            }))
        }
        ClientMessage::CompareEncodings {
            request_id,
            kind,
            id: record,
            padding_bytes,
        } => later(spawn_command(request_id, replies, in_flight, async move {
            playground
                .compare_encodings(&id, kind, record, padding_bytes)
                .await
                .map(|result| ServerMessage::Encodings { request_id, result })
        })),
        ClientMessage::SetInstanceLink { instance, connected } => reply(
            sandbox
                .start_operation(1)
                .and_then(|_running| Ok(sandbox.set_link(&instance, connected)?))
                .err(),
        ),
        ClientMessage::RunHerd { request_id, herd } => {
            let started = spawn_command(request_id, replies, in_flight, async move {
                playground
                    .run_herd(&id, herd)
                    .await
                    .map(|result| ServerMessage::HerdReply { request_id, result })
            });
            match started {
                Ok(task) => Started::Herd(task),
                Err(reply) => Started::Reply(reply),
            }
        }
        ClientMessage::Continue { operation_id } => {
            reply(playground.continue_operation(&id, operation_id).err())
        }
        ClientMessage::RunScenario { request_id, scenario } => {
            later(spawn_command(request_id, replies, in_flight, async move {
                match scenario {
                    Scenario::StaleSetRace { kind, id: record } => {
                        crate::scenario::stale_set_race(&playground, &id, kind, record)
                            .await
                            .map(|result| ServerMessage::ScenarioReply { request_id, result })
                    }
                    Scenario::WriteOrder { kind, id: record } => {
                        crate::scenario::write_order(&playground, &id, kind, record)
                            .await
                            .map(|result| ServerMessage::ScenarioReply { request_id, result })
                    }
                }
            }))
        }
        // Like a herd: stopped when the page goes.
        ClientMessage::ComparePatterns { request_id, seed } => {
            let started = spawn_command(request_id, replies, in_flight, async move {
                playground
                    .compare_patterns(&id, seed)
                    .await
                    .map(|result| ServerMessage::Comparison { request_id, result })
            });
            match started {
                Ok(task) => Started::Herd(task),
                Err(reply) => Started::Reply(reply),
            }
        }
        ClientMessage::CheckDivergence { request_id } => {
            later(spawn_command(request_id, replies, in_flight, async move {
                playground
                    .check_divergence(&id)
                    .await
                    .map(|report| ServerMessage::Divergence { request_id, report })
            }))
        }
        // Every watcher, this one included, gets the new settings.
        ClientMessage::UpdateSettings { settings } => reply(playground.update_settings(&id, settings).err()),
        // Every watcher, this one included, is told the sandbox was reset;
        // only a failure is answered to this client alone.
        ClientMessage::Reset => {
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                let error = InputError::OverLimit(format!(
                    "too many commands in flight (at most {COMMANDS_IN_FLIGHT}); wait for one to finish"
                ));
                return Started::Reply(error_message(None, error.into()));
            };
            let replies = replies.clone();
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(error) = playground.reset(&id).await {
                    let _ = replies.send(*error_message(None, error)).await;
                }
            });
            Started::Later
        }
    }
}

/// A command whose answer comes later (its task runs to the end, even if
/// the session ends first), or an error now.
fn later(started: Result<JoinHandle<()>, Box<ServerMessage>>) -> Started {
    match started {
        Ok(_) => Started::Later,
        Err(reply) => Started::Reply(reply),
    }
}

/// What a client is told of a failure: input errors in full, internal
/// failures in general terms (the details go to the log).
pub fn client_text(error: &OpError) -> String {
    match error {
        OpError::Input(e) => e.to_string(),
        OpError::Inspection(e) => e.to_string(),
        OpError::Sandbox(
            e @ (crate::sandbox::SandboxError::Unknown(_)
            | crate::sandbox::SandboxError::Full(_)
            | crate::sandbox::SandboxError::Private(
                crate::private_redis::PrivateRedisError::External
                | crate::private_redis::PrivateRedisError::AllInUse(_),
            )),
        ) => e.to_string(),
        OpError::Database(e @ crate::store::StoreError::Busy { .. }) => e.to_string(),
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
fn error_message(request_id: Option<u64>, error: OpError) -> Box<ServerMessage> {
    Box::new(ServerMessage::Error {
        request_id,
        message: client_text(&error),
    })
}

/// Runs a command in its own task, within the client's limit of commands in
/// flight, and queues its reply. An error message instead, at the limit.
fn spawn_command(
    request_id: u64,
    replies: &mpsc::Sender<ServerMessage>,
    in_flight: &Arc<Semaphore>,
    command: impl std::future::Future<Output = Result<ServerMessage, OpError>> + Send + 'static,
) -> Result<JoinHandle<()>, Box<ServerMessage>> {
    let Ok(permit) = in_flight.clone().try_acquire_owned() else {
        return Err(Box::new(ServerMessage::Error {
            request_id: Some(request_id),
            message: format!(
                "too many commands in flight (at most {COMMANDS_IN_FLIGHT}); wait for one to finish"
            ),
        }));
    };
    let replies = replies.clone();
    let task = tokio::spawn(async move {
        let message = command.await.unwrap_or_else(|e| ServerMessage::Error {
            request_id: Some(request_id),
            message: client_text(&e),
        });
        let _ = replies.send(message).await;
        drop(permit);
    });
    Ok(task)
}

/// Returns once the sandbox's pages must go ([`Sandbox::close_pages`]).
async fn until_closed(closed: &mut tokio::sync::watch::Receiver<bool>) {
    // The sender lives as long as the sandbox, which this session holds.
    let _ = closed.wait_for(|closed| *closed).await;
}
