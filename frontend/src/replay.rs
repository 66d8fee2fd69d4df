//! Plays a recorded experiment ([`shared::recording`]) to the page's own
//! experiment runner, as the back end once answered it: the runner sends
//! what it sends live; the player answers with what was recorded after the
//! same message, at the recorded pace. Plain Rust, tested natively.

use shared::lessons::{Observed, Position};
use shared::recording::{Event, RecordedStep, Recording, SentKind};
use shared::{ClientMessage, ServerMessage};

use crate::runner::{Command, Phase, Run};

/// A message to hand the page `after_ms` after the message it answers was
/// sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub after_ms: u64,
    pub message: ServerMessage,
}

/// A message sent, as a recording keeps it: whole, or by kind alone (the
/// page reads recordings that way, see [`SentKind`]).
pub trait Sent: Clone {
    /// Its `type` on the wire.
    fn kind(&self) -> String;
}

impl Sent for SentKind {
    fn kind(&self) -> String {
        self.kind.clone()
    }
}

impl Sent for ClientMessage {
    fn kind(&self) -> String {
        name(self)
    }
}

/// One step's recording, being played.
#[derive(Clone, Debug)]
pub struct Player<C = SentKind> {
    events: Vec<Event<C>>,
    /// The next event not handed out.
    cursor: usize,
}

impl<C: Sent> Player<C> {
    pub fn new(step: &RecordedStep<C>) -> Player<C> {
        Player {
            events: step.events.clone(),
            cursor: 0,
        }
    }

    /// The experiment sent `message`. Returns what was received before it
    /// and not handed out yet (at once), then what the back end sent after
    /// it until the next message sent, each with its delay from now.
    pub fn on_send(
        &mut self,
        message: &ClientMessage,
    ) -> Result<(Vec<ServerMessage>, Vec<Delivery>), String> {
        let mut overdue = Vec::new();
        let sent_at = loop {
            match self.events.get(self.cursor) {
                None => {
                    return Err(format!(
                        "the recording ends before the experiment sends {}; record the lesson again",
                        name(message)
                    ))
                }
                Some(Event::Received { message, .. }) => overdue.push((**message).clone()),
                Some(Event::Sent {
                    at_ms,
                    message: recorded,
                }) => {
                    // Request ids and settings may differ (the page's
                    // counter, what an earlier step left): the kind of
                    // message must not.
                    let (sending, sent) = (name(message), recorded.kind());
                    if sending != sent {
                        return Err(format!(
                            "the experiment sends {sending} where the recording sent {sent}; record the lesson again"
                        ));
                    }
                    break *at_ms;
                }
            }
            self.cursor += 1;
        };
        self.cursor += 1;
        let mut later = Vec::new();
        while let Some(Event::Received { at_ms, message }) = self.events.get(self.cursor) {
            later.push(Delivery {
                after_ms: at_ms.saturating_sub(sent_at),
                message: (**message).clone(),
            });
            self.cursor += 1;
        }
        Ok((overdue, later))
    }
}

/// The message's kind, in words (its `type` in JSON).
fn name(message: &ClientMessage) -> String {
    message.kind().to_string()
}

/// Plays step `at` of `recording` to a runner at once (no pacing, timers
/// fire when nothing else is due): what the page's run observes when it
/// replays the step. The static site's test answers the check questions
/// from it.
pub fn observe<C: Sent>(recording: &Recording<C>, at: Position) -> Result<Observed, String> {
    let ServerMessage::Hello {
        settings, instances, ..
    } = &recording.hello
    else {
        return Err("the recording does not begin with a greeting".into());
    };
    let step = recording
        .steps
        .get(at.step)
        .ok_or_else(|| format!("the recording has no step {}", at.step + 1))?;
    let mut player = Player::new(step);
    let names = instances.iter().map(|i| i.name.clone()).collect();
    let (mut run, first) = Run::start(at, settings, names);
    let mut commands = vec![first];
    let mut waiting_timer = false;
    loop {
        while let Some(command) = commands.pop() {
            match command {
                Command::Wait(_) => waiting_timer = true,
                Command::Send(message) => {
                    let (overdue, later) = player.on_send(&message)?;
                    let messages = overdue.into_iter().chain(later.into_iter().map(|d| d.message));
                    for message in messages {
                        if let Some(next) = run.on_message(&message) {
                            commands.push(next);
                        }
                    }
                }
            }
        }
        match &run.phase {
            Phase::Done => return Ok(run.observed),
            Phase::Failed(why) => return Err(why.clone()),
            Phase::Running if waiting_timer => {
                waiting_timer = false;
                if let Some(next) = run.on_timer() {
                    commands.push(next);
                }
            }
            Phase::Running => return Err("the recording ends before the experiment does".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{Stats, PROTOCOL_VERSION};

    fn reset_step() -> RecordedStep {
        RecordedStep {
            events: vec![
                Event::Sent {
                    at_ms: 10,
                    message: ClientMessage::Reset,
                },
                Event::Received {
                    at_ms: 14,
                    message: Box::new(ServerMessage::Reset {
                        stats: Stats::default(),
                    }),
                },
                Event::Sent {
                    at_ms: 15,
                    message: ClientMessage::CheckDivergence { request_id: 1 },
                },
                Event::Received {
                    at_ms: 40,
                    message: Box::new(ServerMessage::Error {
                        request_id: Some(1),
                        message: "recorded".into(),
                    }),
                },
            ],
            took_ms: 40,
        }
    }

    #[test]
    fn each_send_is_answered_with_what_followed_it_at_the_recorded_pace() {
        let mut player = Player::new(&reset_step());
        let (overdue, later) = player.on_send(&ClientMessage::Reset).unwrap();
        assert!(overdue.is_empty());
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].after_ms, 4);
        let (_, later) = player
            .on_send(&ClientMessage::CheckDivergence { request_id: 99 })
            .unwrap();
        assert_eq!(later[0].after_ms, 25, "measured from its own send");
        let ended = player.on_send(&ClientMessage::Reset).unwrap_err();
        assert!(ended.contains("record the lesson again"), "{ended}");
    }

    #[test]
    fn another_message_than_recorded_is_refused_by_name() {
        let mut player = Player::new(&reset_step());
        let why = player
            .on_send(&ClientMessage::CheckDivergence { request_id: 1 })
            .unwrap_err();
        assert!(why.contains("check_divergence") && why.contains("reset"), "{why}");
    }

    #[test]
    fn messages_received_before_a_send_are_handed_out_at_once() {
        let mut step = reset_step();
        step.events.insert(
            0,
            Event::Received {
                at_ms: 1,
                message: Box::new(ServerMessage::Missed { count: 3 }),
            },
        );
        let mut player = Player::new(&step);
        let (overdue, _) = player.on_send(&ClientMessage::Reset).unwrap();
        assert_eq!(overdue, vec![ServerMessage::Missed { count: 3 }]);
        assert_eq!(PROTOCOL_VERSION, shared::PROTOCOL_VERSION);
    }
}
