//! A trace: what one operation did, in order, with what was really sent to
//! Redis and the database and how long each call really took.

use crate::diagram::NodeId;
use crate::entity::{Kind, SandboxId};
use serde::{Deserialize, Serialize};

use crate::wire::two_forms;

/// The complete record of one operation, pushed to every browser watching
/// the sandbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// Unique per back-end process; REST responses return it so a request
    /// can be matched with its animation.
    pub id: u64,
    pub sandbox: SandboxId,
    pub operation: Operation,
    pub origin: Origin,
    /// The application instance that served the operation (`A`, `B`, ...).
    #[serde(default)]
    pub instance: Option<String>,
    pub outcome: Outcome,
    /// Whether the record exists.
    pub found: bool,
    /// The steps in the order they happened.
    pub steps: Vec<TraceStep>,
    /// Wall time of the whole operation, in microseconds, including any
    /// simulated database delay.
    pub total_us: u64,
    /// When the operation started, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
}

impl Trace {
    /// Real time spent in database queries (excluding the simulated delay).
    pub fn database_us(&self) -> u64 {
        self.steps
            .iter()
            .filter(|s| matches!(s.action, Action::Sql(_)))
            .map(|s| s.duration_us)
            .sum()
    }

    /// Simulated delay added to database queries.
    pub fn simulated_us(&self) -> u64 {
        self.steps.iter().map(|s| s.simulated_delay_us).sum()
    }

    /// A user's phone number as this trace sent it to Redis: see
    /// [`TraceStep::cached_phone`].
    pub fn cached_phone(&self) -> Option<String> {
        self.steps
            .iter()
            .find_map(TraceStep::cached_phone)
            .map(str::to_string)
    }
}

/// The phone field of a user's JSON in `text` (a Redis command, where
/// `redis-cli`'s quoting escapes the JSON's quotes).
fn phone_field(text: &str) -> Option<&str> {
    const FIELDS: [&str; 2] = [r#"phone\":\""#, r#"phone":""#];
    let start = FIELDS
        .iter()
        .find_map(|field| Some(text.find(field)? + field.len()))?;
    let value = &text[start..];
    let length = value.find(['"', '\\'])?;
    (length > 0).then(|| &value[..length])
}

two_forms! {
    "Operation";
    /// What was asked for.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(tag = "op", rename_all = "snake_case")]
    pub enum Operation {
        /// A cache-aside read of one record.
        Read { kind: Kind, id: u64 },
        /// A change of one record's name.
        Update { kind: Kind, id: u64, name: String },
        /// The removal of one record.
        Delete { kind: Kind, id: u64 },
    }
}

impl Operation {
    /// A short label such as `read users/42`.
    pub fn label(&self) -> String {
        match self {
            Operation::Read { kind, id } => format!("read {kind}/{id}"),
            Operation::Update { kind, id, .. } => format!("update {kind}/{id}"),
            Operation::Delete { kind, id } => format!("delete {kind}/{id}"),
        }
    }
}

/// Who started the operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A command sent over the WebSocket by a browser.
    Browser,
    /// A REST request, from `curl` or any HTTP client.
    Rest,
    /// A step of a preset scenario driven by the back end.
    Scenario,
    /// The sandbox's load generator.
    Load,
}

impl Origin {
    /// A short label for the log: `page`, `REST`, `scenario`.
    pub fn label(self) -> &'static str {
        match self {
            Origin::Browser => "page",
            Origin::Rest => "REST",
            Origin::Scenario => "scenario",
            Origin::Load => "load",
        }
    }

    /// Where the operation came from, in words.
    pub fn description(self) -> &'static str {
        match self {
            Origin::Browser => "from this page",
            Origin::Rest => "from the REST API",
            Origin::Scenario => "from a scenario",
            Origin::Load => "from the load generator",
        }
    }
}

/// How a read was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The value was in Redis.
    Hit,
    /// The value was in the serving instance's own near cache: no network.
    NearHit,
    /// Redis held a "does not exist" marker: the database was not asked.
    NullHit,
    /// Redis did not have the key; the database answered and Redis was filled.
    Miss,
    /// The value in Redis was past its fresh time and served anyway, while
    /// one request refreshes it (stale-while-revalidate).
    Stale,
    /// Redis failed or timed out; the database answered instead.
    Fallback,
    /// The database failed, and an expired value kept for the purpose
    /// answered instead (fail-safe).
    FailSafe,
    /// The database failed too: there was nothing to answer with.
    Failed,
    /// A write changed the database (and the cache as its strategy says).
    Written,
}

impl Outcome {
    /// Whether the answer came from the cache.
    pub fn from_cache(self) -> bool {
        matches!(
            self,
            Outcome::Hit | Outcome::NearHit | Outcome::NullHit | Outcome::Stale | Outcome::FailSafe
        )
    }

    /// The label the UI shows.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::NearHit => "near hit",
            Outcome::NullHit => "null hit",
            Outcome::Miss => "miss",
            Outcome::Stale => "stale",
            Outcome::Fallback => "fallback",
            Outcome::FailSafe => "fail-safe",
            Outcome::Failed => "failed",
            Outcome::Written => "written",
        }
    }
}

/// One step of a trace. It points at the diagram node it animates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStep {
    /// The diagram node this step lights up.
    pub node: NodeId,
    /// What was done.
    pub action: Action,
    /// The reply in short form (`"(nil)"`, `"OK"`, `"1 row"`, an error).
    pub reply: String,
    pub status: StepStatus,
    /// Measured wall time of the real call, in microseconds.
    pub duration_us: u64,
    /// Delay the playground added on purpose to imitate a slow database,
    /// in microseconds. Reported apart so it is never mistaken for real time.
    pub simulated_delay_us: u64,
    /// Where the step's message came from, when not from the previous step
    /// (an instance receives a Pub/Sub message from the publish step).
    #[serde(default)]
    pub via: Option<NodeId>,
}

two_forms! {
    "Action";
    /// What a step did.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(tag = "type", content = "text", rename_all = "snake_case")]
    pub enum Action {
        /// A Redis command, exactly as sent (arguments quoted where needed).
        Redis(String),
        /// A SQL statement as sent, followed by its parameters.
        Sql(String),
        /// A decision or event inside the application (no I/O).
        Note(String),
    }
}

impl TraceStep {
    /// A user's phone number as this step sent it to Redis (a miss's
    /// `SET`, a write-through's): sealed (`enc:v1:…`), or in the clear when
    /// the sandbox's sealing is off. `None` for any other step: the
    /// application's notes hold the number opened, and a hit's reply is
    /// cut before the number.
    pub fn cached_phone(&self) -> Option<&str> {
        match &self.action {
            Action::Redis(command) => phone_field(command),
            _ => None,
        }
    }
}

impl Action {
    /// The text of the action, whatever its type.
    pub fn text(&self) -> &str {
        match self {
            Action::Redis(t) | Action::Sql(t) | Action::Note(t) => t,
        }
    }
}

/// How a step went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Ok,
    Hit,
    Miss,
    Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(action: Action, reply: &str) -> TraceStep {
        TraceStep {
            node: NodeId::new("store_in_cache"),
            action,
            reply: reply.into(),
            status: StepStatus::Ok,
            duration_us: 1,
            simulated_delay_us: 0,
            via: None,
        }
    }

    #[test]
    fn the_phone_number_is_read_as_redis_holds_it() {
        let mut trace = Trace {
            id: 1,
            sandbox: SandboxId::default_sandbox(),
            operation: Operation::Read { kind: Kind::Users, id: 4 },
            origin: Origin::Browser,
            outcome: Outcome::Miss,
            found: true,
            steps: vec![step(
                Action::Redis(r#"SET cache:default:user:4 "ca1 v 1 {\"id\":4,\"phone\":\"enc:v1:k1:QUJD\",\"version\":1}" EX 60"#.into()),
                "OK",
            )],
            total_us: 1,
            started_at_ms: 0,
            instance: None,
        };
        assert_eq!(trace.cached_phone().as_deref(), Some("enc:v1:k1:QUJD"));
        // Sealing off: the number itself.
        trace.steps = vec![step(
            Action::Redis(
                r#"SET cache:default:user:4 "ca1 v 1 {\"id\":4,\"phone\":\"+1 415 555 0104\"}" EX 60"#.into(),
            ),
            "OK",
        )];
        assert_eq!(trace.cached_phone().as_deref(), Some("+1 415 555 0104"));
        // A hit's reply is cut before the number: nothing to read there.
        trace.steps = vec![step(
            Action::Redis("GET cache:default:user:4".into()),
            r#""ca1 v 1 1795872458432 101\n{\"id\":4,\"name\":\"Grace Berners-Lee\",\"email\":\"grace.ber"… (235 bytes)"#,
        )];
        assert_eq!(trace.cached_phone(), None);
        // The application's notes hold it opened: not what Redis holds.
        trace.steps = vec![step(Action::Note(r#"{"phone":"+1 415 555 0104"}"#.into()), "")];
        assert_eq!(trace.cached_phone(), None);
        trace.steps = vec![step(
            Action::Redis("GET cache:default:product:4".into()),
            r#"{"id":4}"#,
        )];
        assert_eq!(trace.cached_phone(), None);
    }
}
