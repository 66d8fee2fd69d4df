//! The animation timeline: which trace is on the diagram, which step is
//! lit, how far the token has travelled, and what waits in line.
//!
//! Plain Rust with no DOM types, so it is tested natively; the components
//! only draw the [`Frame`] it produces. Time comes in through [`Timeline::tick`]
//! as milliseconds, so tests can drive it exactly.

use std::collections::VecDeque;

use shared::{NodeId, Trace, TraceStep};

/// How long one step is shown at speed 1, in milliseconds: slow enough to
/// read the command beside it.
pub const STEP_MS: f64 = 1100.0;
/// Share of a step's time during which the token travels along the edge;
/// for the rest it rests on the node so the learner can read it.
pub const TRAVEL_SHARE: f64 = 0.45;
/// How long a finished trace stays on screen before the next queued one
/// starts, in milliseconds at speed 1.
pub const HOLD_MS: f64 = 900.0;
/// At most this many traces wait in line; older ones are skipped (and
/// counted) so the animation never falls minutes behind a burst.
pub const MAX_QUEUE: usize = 4;
/// Playback speeds offered in the UI.
pub const SPEEDS: [f64; 5] = [0.25, 0.5, 1.0, 2.0, 4.0];

/// The animation state.
#[derive(Clone, Debug, PartialEq)]
pub struct Timeline {
    queue: VecDeque<Trace>,
    current: Option<Playback>,
    /// Multiplies the passage of time: 2.0 plays twice as fast.
    speed: f64,
    paused: bool,
    /// With reduced motion the token jumps from node to node.
    reduced_motion: bool,
    /// Traces that arrived while the line was full and were not animated.
    skipped: u64,
}

#[derive(Clone, Debug, PartialEq)]
struct Playback {
    trace: Trace,
    /// Index of the lit step.
    step: usize,
    /// Time spent on the lit step, or in the hold once finished.
    elapsed_ms: f64,
    finished: bool,
}

/// What to draw now.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame<'a> {
    pub trace: &'a Trace,
    /// Index of the lit step.
    pub step_index: usize,
    pub step: &'a TraceStep,
    /// The node the token comes from (the previous step's node), if any.
    pub from: Option<&'a NodeId>,
    /// How far along the edge the token is, from 0 to 1.
    pub progress: f64,
    /// Whether the last step has been reached and shown.
    pub finished: bool,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline::new(false)
    }
}

impl Timeline {
    /// An empty timeline at speed 1.
    pub fn new(reduced_motion: bool) -> Timeline {
        Timeline {
            queue: VecDeque::new(),
            current: None,
            speed: 1.0,
            paused: false,
            reduced_motion,
            skipped: 0,
        }
    }

    /// Adds a trace to animate: at once if nothing is playing, otherwise in
    /// line. When the line is full the oldest waiting trace is skipped.
    pub fn push(&mut self, trace: Trace) {
        if trace.steps.is_empty() {
            return;
        }
        if self.current.is_none() {
            self.current = Some(Playback::start(trace));
            return;
        }
        self.queue.push_back(trace);
        while self.queue.len() > MAX_QUEUE {
            self.queue.pop_front();
            self.skipped += 1;
        }
    }

    /// Puts a trace on the diagram now, from its first step, and clears the
    /// line (used when a learner picks a trace from the log).
    pub fn show(&mut self, trace: Trace) {
        if trace.steps.is_empty() {
            return;
        }
        self.queue.clear();
        self.current = Some(Playback::start(trace));
    }

    /// Forgets every trace, playing and waiting (the sandbox was reset).
    pub fn clear(&mut self) {
        self.queue.clear();
        self.current = None;
        self.skipped = 0;
    }

    /// Lets `dt_ms` milliseconds of real time pass. Returns whether anything
    /// visible changed.
    pub fn tick(&mut self, dt_ms: f64) -> bool {
        if self.paused || !dt_ms.is_finite() || dt_ms <= 0.0 {
            return false;
        }
        let Some(playback) = self.current.as_mut() else {
            return false;
        };
        if playback.finished && self.queue.is_empty() {
            // Rest on the final frame until something new arrives.
            return false;
        }
        let mut budget = dt_ms * self.speed;
        let mut changed = false;
        while budget > 0.0 {
            let Some(playback) = self.current.as_mut() else {
                break;
            };
            let limit = if playback.finished { HOLD_MS } else { STEP_MS };
            let room = limit - playback.elapsed_ms;
            if budget < room {
                playback.elapsed_ms += budget;
                changed = true;
                break;
            }
            budget -= room;
            changed = true;
            if !playback.finished {
                playback.advance();
            } else if let Some(next) = self.queue.pop_front() {
                self.current = Some(Playback::start(next));
            } else {
                break;
            }
            if self.current.as_ref().is_some_and(|p| p.finished) && self.queue.is_empty() {
                break;
            }
        }
        changed
    }

    /// Shows the next step at once (or the next trace in line once the
    /// current one has finished).
    pub fn step_forward(&mut self) {
        let Some(playback) = self.current.as_mut() else {
            return;
        };
        if !playback.finished {
            playback.advance();
        } else if let Some(next) = self.queue.pop_front() {
            self.current = Some(Playback::start(next));
        }
        if let Some(playback) = self.current.as_mut() {
            // Land with the token already arrived, so a paused learner sees
            // the step itself rather than a token stuck mid-edge.
            playback.elapsed_ms = STEP_MS * TRAVEL_SHARE;
        }
    }

    /// Plays the current trace again from its first step.
    pub fn replay(&mut self) {
        if let Some(playback) = self.current.as_mut() {
            *playback = Playback::start(playback.trace.clone());
        }
    }

    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    pub fn toggle_paused(&mut self) {
        self.paused = !self.paused;
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Sets the speed, clamped to the offered range.
    pub fn set_speed(&mut self, speed: f64) {
        let (lo, hi) = (SPEEDS[0], SPEEDS[SPEEDS.len() - 1]);
        self.speed = if speed.is_finite() {
            speed.clamp(lo, hi)
        } else {
            1.0
        };
    }

    pub fn speed(&self) -> f64 {
        self.speed
    }

    pub fn set_reduced_motion(&mut self, reduced: bool) {
        self.reduced_motion = reduced;
    }

    /// Traces waiting in line.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Traces skipped because they arrived faster than they could be shown.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Whether time passing would change anything (the UI stops its timer
    /// work while idle).
    pub fn is_animating(&self) -> bool {
        !self.paused
            && self
                .current
                .as_ref()
                .is_some_and(|p| !p.finished || !self.queue.is_empty())
    }

    /// What to draw now; `None` before the first trace.
    pub fn frame(&self) -> Option<Frame<'_>> {
        let playback = self.current.as_ref()?;
        let steps = &playback.trace.steps;
        // The token comes from the previous step, or from where the step's
        // message was sent (a Pub/Sub receipt comes from the publish).
        let from = steps[playback.step]
            .via
            .as_ref()
            .or_else(|| playback.step.checked_sub(1).map(|i| &steps[i].node));
        let progress = if playback.finished || self.reduced_motion || from.is_none() {
            1.0
        } else {
            (playback.elapsed_ms / (STEP_MS * TRAVEL_SHARE)).clamp(0.0, 1.0)
        };
        Some(Frame {
            trace: &playback.trace,
            step_index: playback.step,
            step: &steps[playback.step],
            from,
            progress,
            finished: playback.finished,
        })
    }
}

impl Playback {
    fn start(trace: Trace) -> Playback {
        Playback {
            finished: trace.steps.len() == 1,
            trace,
            step: 0,
            elapsed_ms: 0.0,
        }
    }

    /// Moves to the next step, or marks the trace finished after the last.
    fn advance(&mut self) {
        if self.step + 1 < self.trace.steps.len() {
            self.step += 1;
            self.finished = false;
        } else {
            self.finished = true;
        }
        self.elapsed_ms = 0.0;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use shared::{Action, Kind, Operation, Origin, Outcome, SandboxId, StepStatus};

    pub(crate) fn trace(id: u64, nodes: &[&'static str]) -> Trace {
        Trace {
            id,
            sandbox: SandboxId::default_sandbox(),
            operation: Operation::Read {
                kind: Kind::Users,
                id: 1,
            },
            origin: Origin::Browser,
            outcome: Outcome::Miss,
            found: true,
            steps: nodes
                .iter()
                .map(|n| TraceStep {
                    node: NodeId::new(n),
                    action: Action::Note(String::new()),
                    reply: String::new(),
                    status: StepStatus::Ok,
                    duration_us: 1,
                    simulated_delay_us: 0,
                    via: None,
                })
                .collect(),
            total_us: 1,
            started_at_ms: 0,
            instance: None,
        }
    }

    fn lit(t: &Timeline) -> (u64, &str, bool) {
        let f = t.frame().unwrap();
        (f.trace.id, f.step.node.as_str(), f.finished)
    }

    const HIT: [&str; 3] = ["request", "check_cache", "return_cached"];

    #[test]
    fn a_trace_plays_step_by_step_and_rests_on_its_last_step() {
        let mut t = Timeline::default();
        assert!(t.frame().is_none());
        t.push(trace(1, &HIT));
        assert_eq!(lit(&t), (1, "request", false));
        assert!(t.tick(STEP_MS));
        assert_eq!(lit(&t), (1, "check_cache", false));
        t.tick(STEP_MS);
        assert_eq!(lit(&t), (1, "return_cached", false));
        t.tick(STEP_MS);
        assert_eq!(lit(&t), (1, "return_cached", true));
        assert!(!t.is_animating());
        // Resting: time passing changes nothing.
        assert!(!t.tick(60_000.0));
        assert_eq!(lit(&t), (1, "return_cached", true));
    }

    #[test]
    fn the_token_travels_then_rests() {
        let mut t = Timeline::default();
        t.push(trace(1, &HIT));
        t.tick(STEP_MS);
        let f = t.frame().unwrap();
        assert_eq!(f.from.map(NodeId::as_str), Some("request"));
        assert_eq!(f.progress, 0.0);
        t.tick(STEP_MS * TRAVEL_SHARE / 2.0);
        assert!((t.frame().unwrap().progress - 0.5).abs() < 1e-9);
        t.tick(STEP_MS * TRAVEL_SHARE);
        assert_eq!(t.frame().unwrap().progress, 1.0);
    }

    #[test]
    fn a_received_message_travels_from_where_it_was_sent() {
        let mut t = Timeline::default();
        let mut fan_out = trace(1, &["publish", "instance_a", "instance_b"]);
        for step in &mut fan_out.steps[1..] {
            step.via = Some(NodeId::new("publish"));
        }
        t.push(fan_out);
        t.step_forward();
        t.step_forward();
        let f = t.frame().unwrap();
        assert_eq!(f.step.node.as_str(), "instance_b");
        assert_eq!(f.from.map(NodeId::as_str), Some("publish"), "not from instance_a");
    }

    #[test]
    fn reduced_motion_jumps_without_travel() {
        let mut t = Timeline::new(true);
        t.push(trace(1, &HIT));
        t.tick(STEP_MS);
        assert_eq!(t.frame().unwrap().progress, 1.0);
    }

    #[test]
    fn speed_scales_time_and_is_clamped() {
        let mut t = Timeline::default();
        t.set_speed(2.0);
        t.push(trace(1, &HIT));
        t.tick(STEP_MS / 2.0);
        assert_eq!(lit(&t).1, "check_cache");
        t.set_speed(100.0);
        assert_eq!(t.speed(), 4.0);
        t.set_speed(f64::NAN);
        assert_eq!(t.speed(), 1.0);
    }

    #[test]
    fn paused_time_does_not_pass_but_stepping_works() {
        let mut t = Timeline::default();
        t.push(trace(1, &HIT));
        t.set_paused(true);
        assert!(!t.tick(10.0 * STEP_MS));
        assert_eq!(lit(&t).1, "request");
        t.step_forward();
        assert_eq!(lit(&t).1, "check_cache");
        assert_eq!(
            t.frame().unwrap().progress,
            1.0,
            "a manual step lands on the node"
        );
        t.step_forward();
        t.step_forward();
        assert_eq!(lit(&t), (1, "return_cached", true));
    }

    #[test]
    fn traces_queue_and_play_in_order_after_a_hold() {
        let mut t = Timeline::default();
        t.push(trace(1, &HIT));
        t.push(trace(2, &HIT));
        assert_eq!(t.queued(), 1);
        t.tick(3.0 * STEP_MS);
        assert_eq!(lit(&t), (1, "return_cached", true));
        assert!(t.is_animating(), "a queued trace keeps the clock running");
        t.tick(HOLD_MS);
        assert_eq!(lit(&t), (2, "request", false));
        assert_eq!(t.queued(), 0);
    }

    #[test]
    fn a_large_tick_never_skips_a_queued_trace_silently() {
        let mut t = Timeline::default();
        t.push(trace(1, &HIT));
        t.push(trace(2, &HIT));
        t.tick(1e9);
        // Both traces were played through; the second rests at its end.
        assert_eq!(lit(&t), (2, "return_cached", true));
        assert_eq!(t.skipped(), 0);
    }

    #[test]
    fn a_burst_folds_into_a_skipped_count() {
        let mut t = Timeline::default();
        for id in 1..=10 {
            t.push(trace(id, &HIT));
        }
        assert_eq!(t.queued(), MAX_QUEUE);
        assert_eq!(t.skipped(), 10 - 1 - MAX_QUEUE as u64);
        // The newest traces are the ones kept.
        t.tick(1e9);
        assert_eq!(lit(&t).0, 10);
    }

    #[test]
    fn replay_and_show_restart_from_the_first_step() {
        let mut t = Timeline::default();
        t.push(trace(1, &HIT));
        t.tick(1e9);
        t.replay();
        assert_eq!(lit(&t), (1, "request", false));
        t.push(trace(2, &HIT));
        t.show(trace(3, &HIT));
        assert_eq!(lit(&t), (3, "request", false));
        assert_eq!(t.queued(), 0);
    }

    #[test]
    fn empty_traces_are_ignored_and_single_steps_finish_at_once() {
        let mut t = Timeline::default();
        t.push(trace(1, &[]));
        assert!(t.frame().is_none());
        t.push(trace(2, &["request"]));
        assert_eq!(lit(&t), (2, "request", true));
    }
}
