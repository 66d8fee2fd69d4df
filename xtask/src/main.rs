//! `cargo xtask`: set-up, run, test and measure the playground with one
//! command each. Few dependencies (compression and the WASM splitter),
//! so it compiles quickly.
//!
//! Run `cargo xtask` with no arguments for the list of tasks.

mod compress;
mod setup;
mod split;
mod tasks;
mod util;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask <task>

Tasks:
  run         Install what is missing, build the front end, and start the
              playground on http://127.0.0.1:8080 (Ctrl-C stops everything).
              Arguments after `--` go to the back end, e.g.
              `cargo xtask run -- --db-latency-ms 250`.
  test        Install what is missing (Chromium and chromedriver too), build
              the front end, and run every test: native, WASM in the browser,
              and end-to-end. CI runs exactly this.
  dev         Back end on :8080 plus `trunk serve` with live reload on
              http://127.0.0.1:8081 (proxying /api and /ws to the back end).
  record      Record lessons for sites with no back end (all, or those
              named: `cargo xtask record basics ttl`) against a back end of
              their own: recordings/{lesson}.json.
  build-static DIR
              Build the front end and put it, the recordings and an embed
              page per lesson in DIR: a folder any static host serves, whose
              pages replay the recordings (`?backend=URL` goes live).
  cluster     The playground scaled out on this machine: a Redis Cluster of
              three masters with a replica each, two back-end replicas and
              HAProxy in front; prints the address. Enter stops a replica.
  screenshot  Regenerate docs/playground.png from a headless browser.
  bench       Run every bench, each beside a baseline from the same run and
              its goal; `cargo xtask bench NAME` runs one: read-latency,
              hit-path, stampede, sandboxes, fanout, memory, lab, faults,
              replicas, browser, size.
  split-wasm  Split the front end's WebAssembly so each lab panel loads on
              demand (Trunk runs it after every build; see Trunk.toml).
  setup       Only install what is missing (add --tests for the test tools).
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((task, rest)) => (task.as_str(), rest),
        None => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
    };
    let result = match task {
        "run" => tasks::run(rest),
        "test" => tasks::test(),
        "dev" => tasks::dev(),
        "screenshot" => tasks::screenshot(),
        "record" => tasks::record(rest),
        "cluster" => tasks::cluster(),
        "build-static" => tasks::build_static(rest),
        "bench" => tasks::bench(rest),
        "split-wasm" => split::split_wasm(),
        "setup" => setup::ensure(if rest.iter().any(|a| a == "--tests") {
            setup::Purpose::Tests
        } else {
            setup::Purpose::Run
        }),
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(())
        }
        other => Err(format!("unknown task {other:?}\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
