//! The playground's wire protocol and diagram model.
//!
//! This crate is the only serialization boundary between the back end and
//! the front end. It holds plain serde types and pure functions: it does no
//! I/O, so both sides (native and WASM) can depend on it.
//!
//! # Layout
//! - [`entity`]: the records learners read (users, products), their ids and
//!   the input rules both sides enforce.
//! - [`trace`]: what one operation did, step by step, with real commands and
//!   measured timings.
//! - [`diagram`]: the cache-aside flow diagram as data (nodes and edges), so
//!   later labs can add steps without rewriting the animation.
//! - [`protocol`]: the versioned messages sent over the WebSocket, and the
//!   REST response body.
//! - [`load`], [`memory`] and [`faults`]: the load generator's, the eviction
//!   lab's and the fault lab's specs and results.
//! - [`recording`]: lessons recorded from a real back end, replayed by
//!   static documentation sites.
//! - [`settings`]: a sandbox's settings and counters as one serializable value.
//! - [`wire`]: the protocol's two encodings, JSON and the page's compact
//!   binary form.

pub mod decimal;
pub mod diagram;
pub mod entity;
pub mod faults;
pub mod lessons;
pub mod load;
pub mod memory;
pub mod protocol;
pub mod recording;
pub mod settings;
pub mod trace;
pub mod wire;

pub use diagram::{Diagram, Edge, Feature, Node, NodeId, NodeShape, System};
pub use entity::{
    check_id, looks_sealed, parse_id, parse_name, InputError, Kind, Product, Record, SandboxId, User, MAX_ID,
    MAX_NAME_LEN, SEALED_PREFIX,
};
pub use faults::{BreakerView, FaultAction, FaultEvent, FaultReport, RedisFault};
pub use load::{LoadSpec, LoadState};
pub use memory::{EvictionPolicy, FillResult, FillSpec, MemorySettings, MemoryState};
pub use protocol::{
    CacheEffect, ClientMessage, Defence, DivergenceEntry, DivergenceReport, EdgeCount, EncodingComparison,
    EncodingRow, HerdResult, HerdSpec, HerdTiming, InstanceState, KeyInfo, KeyReport, Pattern,
    PatternComparison, PatternRow, ReadResult, RedisFigures, RelatedResult, RelatedSample, RelatedSpec,
    Scenario, ScenarioResult, ServerMessage, Traffic, WriteChange, WriteResult, PROTOCOL_VERSION,
};
pub use settings::{
    CacheWrite, RaceFix, SandboxSettings, StampedePolicy, Stats, ValueEncoding, WriteStrategy,
};
pub use trace::{Action, Operation, Origin, Outcome, StepStatus, Trace, TraceStep};
