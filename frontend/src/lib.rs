//! The playground's browser UI.
//!
//! # Layout
//! - [`timeline`]: the animation model (which step is lit, the token's
//!   position, the queue); plain Rust, tested natively.
//! - [`diagnose`]: the troubleshooting checks on what the sandbox did;
//!   plain Rust.
//! - [`flood`]: more reads than the page can animate, as counts; plain
//!   Rust.
//! - [`eviction`]: the eviction lab's results in words; plain Rust.
//! - [`faults`]: the fault lab's report in words; plain Rust.
//! - [`health`]: Redis's own figures over time and the alerts; plain Rust.
//! - [`latency`]: read latency with and without the cache; plain Rust.
//! - [`format`]: how numbers, times and commands are shown; plain Rust.
//! - [`serialization`]: the value encodings compared, in words; plain Rust.
//! - [`series`]: the counters over time for the live charts; plain Rust.
//! - [`ttl`]: TTLs compared across kinds of keys and related keys; plain
//!   Rust.
//! - [`replay`]: a recorded lesson played to the experiment runner (static
//!   documentation sites, no back end); plain Rust.
//! - [`state`]: the page's reactive state and how server messages change it.
//! - [`connection`]: the WebSocket, with reconnection.
//! - [`components`]: Leptos components that draw the state: the diagram,
//!   the playback and read controls, the step list, the trace log, counters.

pub mod components;
pub mod connection;
pub mod diagnose;
pub mod embed;
pub mod eviction;
pub mod faults;
pub mod flood;
pub mod format;
pub mod health;
pub mod latency;
pub mod replay;
pub mod runner;
pub mod serialization;
pub mod series;

/// The lesson path is data the back end also reads (the embed pages).
pub use shared::lessons;
pub mod state;
pub mod timeline;
pub mod ttl;

/// Mounts the playground on the page's `<body>`.
pub fn mount() {
    console_error_panic_hook::set_once();
    embed::start_theme();
    embed::start_auto_height();
    leptos::mount::mount_to_body(components::App);
    // The page is drawn: the loading note of index.html has done its job
    // (and its script no longer has a note to turn into an error).
    if let Some(note) = leptos::prelude::document().get_element_by_id("boot") {
        note.remove();
    }
}
