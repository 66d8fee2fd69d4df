//! Recorded lessons, for documentation sites with no back end.
//!
//! `cargo xtask record` runs each lesson step's experiment against a real
//! back end (its own `redis-server` and SQLite) and keeps what the page was
//! sent: the greeting, then for every step the messages the experiment sent
//! and everything the back end sent back, with when it arrived. The front
//! end replays a recording through the same experiment runner, animation
//! and panels as a live session; the numbers are the recorded ones.
//!
//! A recording names the protocol it was made with: the static build
//! refuses one made with another version (its messages may no longer mean
//! what the page thinks), saying to record again.

use serde::{Deserialize, Serialize};

use crate::{ClientMessage, ServerMessage, PROTOCOL_VERSION};

/// Where a static build keeps its recordings, beside `index.html`.
pub const RECORDINGS_DIR: &str = "recordings";

/// The list of recordings in a static build (`recordings/index.json`).
pub const RECORDINGS_INDEX: &str = "index.json";

/// A static build's list of recordings, in the page's binary form
/// ([`crate::wire`]): the page reads no JSON at all.
pub const SITE_INDEX: &str = "index.bin";

/// A static build's file of `lesson`'s recording: [`Recording::sent_kinds`],
/// in the binary form, gzipped (hosts rarely compress a binary file; the
/// page unpacks it with the browser's own gzip reader).
pub fn site_file(lesson: &str) -> String {
    format!("{lesson}.bin.gz")
}

/// The `<meta name=...>` a static build adds to `index.html`: the page
/// replays recordings unless its address names a back end (`?backend=`).
pub const REPLAY_META: &str = "cache-aside-playground-replay";

/// One lesson, recorded. `C` is how the messages the page sent are kept:
/// whole ([`ClientMessage`], as recorded), or only their kind
/// ([`SentKind`]: what the front end reads, so its WASM carries no code to
/// read every client message).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recording<C = ClientMessage> {
    /// [`PROTOCOL_VERSION`] when it was recorded.
    pub protocol_version: u32,
    /// The lesson's id (`?lesson=`).
    pub lesson: String,
    /// When, as `YYYY-MM-DD HH:MM UTC`.
    pub recorded_at: String,
    /// On what: the machine and the Redis it ran against, in words.
    pub machine: String,
    /// The greeting the page was sent ([`ServerMessage::Hello`]).
    pub hello: ServerMessage,
    /// One per step, in the lesson's order.
    pub steps: Vec<RecordedStep<C>>,
}

/// One step's experiment, as it ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedStep<C = ClientMessage> {
    /// What happened, in order: the messages the experiment sent and the
    /// ones it was sent.
    pub events: Vec<Event<C>>,
    /// Milliseconds from the first message sent to the run's end.
    pub took_ms: u64,
}

/// A message of a recorded experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event<C = ClientMessage> {
    /// The page sent this, `at_ms` after the step began.
    Sent { at_ms: u64, message: C },
    /// The back end sent this, `at_ms` after the step began. (Boxed: a
    /// server message is far larger than the rest.)
    Received { at_ms: u64, message: Box<ServerMessage> },
}

/// A message the page sent, known by its kind alone (its `type` on the
/// wire); the rest of it is skipped when read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentKind {
    #[serde(rename = "type")]
    pub kind: String,
}

/// A line of `recordings/index.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordingEntry {
    pub lesson: String,
    pub recorded_at: String,
    pub machine: String,
}

impl<C> Recording<C> {
    /// Why this recording cannot be used by this build, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if self.protocol_version != PROTOCOL_VERSION {
            return Some(format!(
                "the recording of lesson `{}` was made with protocol version {} and this build speaks version \
                 {PROTOCOL_VERSION}; record it again with `cargo xtask record`",
                self.lesson, self.protocol_version
            ));
        }
        if !matches!(self.hello, ServerMessage::Hello { .. }) {
            return Some(format!(
                "the recording of lesson `{}` does not begin with the back end's greeting",
                self.lesson
            ));
        }
        let expected = crate::lessons::LESSONS
            .iter()
            .find(|l| l.id == self.lesson)
            .map(|l| l.steps.len());
        match expected {
            None => Some(format!("no lesson is called `{}`", self.lesson)),
            Some(n) if n != self.steps.len() => Some(format!(
                "the recording of lesson `{}` has {} steps and the lesson has {n}; record it again with `cargo \
                 xtask record`",
                self.lesson,
                self.steps.len()
            )),
            Some(_) => None,
        }
    }

    /// A line of the list of recordings.
    pub fn entry(&self) -> RecordingEntry {
        RecordingEntry {
            lesson: self.lesson.clone(),
            recorded_at: self.recorded_at.clone(),
            machine: self.machine.clone(),
        }
    }
}

impl Recording<ClientMessage> {
    /// The recording as a page reads it: the messages it sent by their
    /// kind alone.
    pub fn sent_kinds(&self) -> Recording<SentKind> {
        let steps = self.steps.iter().map(|step| RecordedStep {
            events: step
                .events
                .iter()
                .map(|event| match event {
                    Event::Sent { at_ms, message } => Event::Sent {
                        at_ms: *at_ms,
                        message: SentKind {
                            kind: message.kind().to_string(),
                        },
                    },
                    Event::Received { at_ms, message } => Event::Received {
                        at_ms: *at_ms,
                        message: message.clone(),
                    },
                })
                .collect(),
            took_ms: step.took_ms,
        });
        Recording {
            protocol_version: self.protocol_version,
            lesson: self.lesson.clone(),
            recorded_at: self.recorded_at.clone(),
            machine: self.machine.clone(),
            hello: self.hello.clone(),
            steps: steps.collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagram::Diagram;
    use crate::{SandboxId, SandboxSettings, Stats};

    fn hello() -> ServerMessage {
        ServerMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            sandbox: SandboxId::parse("recorded").unwrap(),
            settings: Box::new(SandboxSettings::default()),
            stats: Stats::default(),
            diagram: Diagram::cache_aside_read(),
            recent: Vec::new(),
            instances: Vec::new(),
            redis: "shared".into(),
            load: None,
            moved: false,
        }
    }

    fn recording() -> Recording {
        let lesson = &crate::lessons::LESSONS[0];
        Recording {
            protocol_version: PROTOCOL_VERSION,
            lesson: lesson.id.into(),
            recorded_at: "2026-11-27 11:00 UTC".into(),
            machine: "test".into(),
            hello: hello(),
            steps: lesson
                .steps
                .iter()
                .map(|_| RecordedStep {
                    events: vec![
                        Event::Sent {
                            at_ms: 0,
                            message: ClientMessage::Reset,
                        },
                        Event::Received {
                            at_ms: 3,
                            message: Box::new(ServerMessage::Reset {
                                stats: Stats::default(),
                            }),
                        },
                    ],
                    took_ms: 3,
                })
                .collect(),
        }
    }

    #[test]
    fn a_recording_round_trips_exactly() {
        let recording = recording();
        let text = serde_json::to_string(&recording).unwrap();
        let back: Recording = serde_json::from_str(&text).unwrap();
        assert_eq!(back, recording);
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
        assert_eq!(recording.problem(), None);
        // Read by kind alone from the JSON, or as a static site's page
        // reads it: by kind alone, in the binary form.
        let kinds: Recording<SentKind> = serde_json::from_str(&text).unwrap();
        assert!(matches!(
            &kinds.steps[0].events[0],
            Event::Sent { at_ms: 0, message } if message.kind == "reset"
        ));
        let site: Recording<SentKind> =
            crate::wire::from_binary(&crate::wire::to_binary(&recording.sent_kinds())).unwrap();
        assert_eq!(site, kinds);
    }

    #[test]
    fn a_recording_of_another_protocol_or_shape_is_refused_with_its_reason() {
        let mut old = recording();
        old.protocol_version = PROTOCOL_VERSION - 1;
        let why = old.problem().expect("refused");
        assert!(
            why.contains("protocol version") && why.contains("cargo xtask record"),
            "{why}"
        );

        let mut short = recording();
        short.steps.pop();
        assert!(short.problem().expect("refused").contains("steps"));

        let mut unknown = recording();
        unknown.lesson = "no-such-lesson".into();
        assert!(unknown.problem().expect("refused").contains("no-such-lesson"));
    }
}
