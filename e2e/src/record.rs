//! Records lessons for documentation sites with no back end
//! (`cargo xtask record`): each step's experiment is run by the front end's
//! own experiment runner ([`frontend::runner::Run`], natively) over a real
//! WebSocket to a real back end, and every message sent and received is
//! kept with when it arrived ([`shared::recording`]).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use frontend::runner::{Command, Phase, Run};
use futures_util::{SinkExt, StreamExt};
use shared::lessons::{Position, LESSONS};
use shared::recording::{Event, RecordedStep, Recording, RecordingEntry, RECORDINGS_INDEX};
use shared::{ClientMessage, SandboxSettings, ServerMessage};
use tokio_tungstenite::tungstenite::Message;

/// The longest a step may take before the recording gives up on it (a
/// memory fill on a slow machine takes tens of seconds).
const STEP_LIMIT: Duration = Duration::from_secs(240);

/// The sandbox name recordings carry: the back end's random one is
/// replaced, so recording a lesson again changes only its timings.
pub fn recorded_sandbox(lesson: &str) -> String {
    format!("recorded-{lesson}")
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Records the lesson with this id against the back end at `addr`.
/// `machine` says on what it ran; `recorded_at` when.
pub async fn record_lesson(
    addr: SocketAddr,
    lesson_id: &str,
    machine: &str,
    recorded_at: &str,
) -> Result<Recording, String> {
    let lesson = LESSONS
        .iter()
        .position(|l| l.id == lesson_id)
        .ok_or_else(|| format!("no lesson is called `{lesson_id}`"))?;
    // A lesson that changes the Redis server itself (its memory limit)
    // runs on a redis-server of its own, as the page would ask.
    let own_redis = LESSONS[lesson].steps.iter().any(|s| s.needs_own_redis());
    let query = if own_redis { "?redis=private" } else { "" };
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws{query}"))
        .await
        .map_err(|e| format!("cannot connect to the back end at {addr}: {e}"))?;
    let hello = receive(&mut socket, Duration::from_secs(30)).await?;
    let ServerMessage::Hello {
        sandbox,
        settings,
        instances,
        ..
    } = &hello
    else {
        return Err(format!("the back end did not greet first: {hello:?}"));
    };
    let sandbox = sandbox.to_string();
    let mut current: SandboxSettings = (**settings).clone();
    let mut names: Vec<String> = instances.iter().map(|i| i.name.clone()).collect();

    let mut steps = Vec::new();
    for step in 0..LESSONS[lesson].steps.len() {
        let at = Position { lesson, step };
        let recorded = record_step(&mut socket, at, &mut current, &mut names)
            .await
            .map_err(|why| format!("lesson `{lesson_id}`, step {}: {why}", step + 1))?;
        steps.push(recorded);
    }
    let _ = socket.close(None).await;

    let recording = Recording {
        protocol_version: shared::PROTOCOL_VERSION,
        lesson: lesson_id.to_string(),
        recorded_at: recorded_at.to_string(),
        machine: machine.to_string(),
        hello,
        steps,
    };
    // The sandbox's random name is in its keys, commands and greeting:
    // one fixed name instead. (It is letters, digits and `-` only, so no
    // JSON escape can split it.)
    let text = serde_json::to_string(&recording).map_err(|e| e.to_string())?;
    let text = text.replace(&sandbox, &recorded_sandbox(lesson_id));
    serde_json::from_str(&text).map_err(|e| format!("the recording does not read back: {e}"))
}

/// Runs one step's experiment as the page would and keeps what happened.
async fn record_step(
    socket: &mut Socket,
    at: Position,
    current: &mut SandboxSettings,
    names: &mut Vec<String>,
) -> Result<RecordedStep, String> {
    let began = Instant::now();
    let deadline = began + STEP_LIMIT;
    let mut events = Vec::new();
    let (mut run, first) = Run::start(at, current, names.clone());
    let mut timer: Option<tokio::time::Instant> = None;
    let mut next = Some(first);
    loop {
        while let Some(command) = next.take() {
            match command {
                Command::Send(message) => {
                    events.push(Event::Sent {
                        at_ms: began.elapsed().as_millis() as u64,
                        message: message.clone(),
                    });
                    send(socket, &message).await?;
                }
                Command::Wait(ms) => {
                    timer = Some(tokio::time::Instant::now() + Duration::from_millis(ms.into()));
                }
            }
        }
        match &run.phase {
            Phase::Running => {}
            Phase::Done => break,
            Phase::Failed(why) => return Err(why.clone()),
        }
        if Instant::now() > deadline {
            return Err(format!("not done within {} s", STEP_LIMIT.as_secs()));
        }
        let wake = timer.unwrap_or_else(|| tokio::time::Instant::now() + STEP_LIMIT);
        tokio::select! {
            message = receive(socket, STEP_LIMIT) => {
                let message = message?;
                match &message {
                    ServerMessage::Settings { settings } => *current = settings.clone(),
                    ServerMessage::Instances { instances } => {
                        *names = instances.iter().map(|i| i.name.clone()).collect();
                    }
                    _ => {}
                }
                next = run.on_message(&message);
                events.push(Event::Received {
                    at_ms: began.elapsed().as_millis() as u64,
                    message: Box::new(message),
                });
            }
            _ = tokio::time::sleep_until(wake), if timer.is_some() => {
                timer = None;
                next = run.on_timer();
            }
        }
    }
    Ok(RecordedStep {
        events,
        took_ms: began.elapsed().as_millis() as u64,
    })
}

async fn send(socket: &mut Socket, message: &ClientMessage) -> Result<(), String> {
    let text = serde_json::to_string(message).map_err(|e| e.to_string())?;
    socket
        .send(Message::text(text))
        .await
        .map_err(|e| format!("the back end hung up: {e}"))
}

async fn receive(socket: &mut Socket, within: Duration) -> Result<ServerMessage, String> {
    loop {
        let message = tokio::time::timeout(within, socket.next())
            .await
            .map_err(|_| format!("the back end sent nothing for {} s", within.as_secs()))?
            .ok_or("the back end closed the connection")?
            .map_err(|e| format!("the connection failed: {e}"))?;
        match message {
            Message::Text(text) => {
                return serde_json::from_str(&text).map_err(|e| format!("an unreadable message: {e}"));
            }
            Message::Close(frame) => return Err(format!("the back end closed the connection: {frame:?}")),
            _ => {}
        }
    }
}

/// Writes a recording as `DIR/{lesson}.json` (compact JSON).
pub fn save(recording: &Recording, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(format!("{}.json", recording.lesson));
    let text = serde_json::to_string(recording).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Reads every recording in `dir` (`*.json` but the index), checking each
/// against this build: a recording of another protocol version, or of a
/// lesson whose steps changed, is an error naming the file.
pub fn load_all(dir: &Path) -> Result<Vec<Recording>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut recordings = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        let is_recording = path.extension().is_some_and(|e| e == "json")
            && path.file_name().is_some_and(|n| n != RECORDINGS_INDEX);
        if !is_recording {
            continue;
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let recording: Recording = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} is not a recording this build can read ({e}); record it again with `cargo xtask record`",
                path.display()
            )
        })?;
        if let Some(why) = recording.problem() {
            return Err(format!("{}: {why}", path.display()));
        }
        recordings.push(recording);
    }
    recordings.sort_by_key(|r| LESSONS.iter().position(|l| l.id == r.lesson));
    Ok(recordings)
}

/// The index a static build lists its recordings in.
pub fn index(recordings: &[Recording]) -> Vec<RecordingEntry> {
    recordings.iter().map(Recording::entry).collect()
}

/// When, in words: `YYYY-MM-DD HH:MM UTC`.
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60
    )
}

/// Days since 1970-01-01 to a calendar date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The machine, in words: the OS, its cores, and the Redis version.
pub fn machine() -> String {
    let redis_version = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|text| {
            text.split_whitespace()
                .find_map(|word| word.strip_prefix("v=").map(str::to_string))
        })
        .unwrap_or_else(|| "(version unknown)".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "{} {}, {cores} cores, redis-server {redis_version}, SQLite",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_calendar_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        assert_eq!(civil_from_days(20_784), (2026, 11, 27));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
