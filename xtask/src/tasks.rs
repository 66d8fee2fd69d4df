//! The tasks themselves.

use std::path::PathBuf;
use std::process::Command;

use crate::setup::{self, Purpose};
use crate::util::{cargo, command, project_root, step, test_step, Tally};

/// Builds the front end in release mode into `dist/`, offline.
fn build_front_end() -> Result<PathBuf, String> {
    let mut trunk = command("trunk");
    trunk.args(["build", "--release", "--offline"]);
    // Never let Trunk pick up a wasm-opt from PATH (Debian's breaks the
    // module); index.html turns it off, and this makes sure.
    trunk.env("TRUNK_BUILD_NO_WASM_OPT", "true");
    step("building the front end with Trunk (release, offline)", trunk)?;
    let dist = project_root().join("dist");
    let compressed = crate::compress::precompress(&dist)?;
    let (raw, br, gz) = compressed.first_load();
    eprintln!(
        "xtask: precompressed the front end: a first visit fetches {} KB raw, {} KB brotli, {} KB gzip (the lab panels' modules follow when shown)",
        raw / 1024,
        br / 1024,
        gz / 1024
    );
    Ok(dist)
}

/// Arguments for the back end: whatever follows `--`.
fn backend_args(extra: &[String]) -> Vec<String> {
    extra.iter().skip_while(|a| *a == "--").cloned().collect()
}

/// `cargo xtask run`: build everything and serve on :8080.
pub fn run(extra: &[String]) -> Result<(), String> {
    setup::ensure(Purpose::Run)?;
    let dist = build_front_end()?;
    let mut build = cargo();
    build.args(["build", "--release", "--package", "backend"]);
    step("building the back end (release)", build)?;
    let mut server = cargo();
    server
        .args(["run", "--quiet", "--release", "--package", "backend", "--"])
        .args(backend_args(extra))
        .env("PLAYGROUND_STATIC_DIR", &dist);
    exec(server)
}

/// `cargo xtask test`: everything CI checks.
pub fn test() -> Result<(), String> {
    setup::ensure(Purpose::Tests)?;
    if crate::util::version_of("rustfmt").is_some() {
        let mut fmt = cargo();
        fmt.args(["fmt", "--all", "--", "--check"]);
        step("checking formatting (cargo fmt --check)", fmt)?;
    }
    engine_stands_alone()?;
    let dist = build_front_end()?;

    let mut tally = Tally::default();
    let mut native = cargo();
    // --all-targets: unit, integration and end-to-end tests, and it compiles
    // the examples; the engine's doc example runs in its own step below.
    native
        .args(["test", "--workspace", "--all-targets", "--locked"])
        .env("PLAYGROUND_DIST", &dist)
        .env("CHROMEDRIVER", "chromedriver");
    test_step(
        "native and end-to-end tests (cargo test --workspace)",
        native,
        &mut tally,
    )?;

    let mut doc = cargo();
    doc.args(["test", "--locked", "--package", "cache-aside", "--doc"]);
    test_step("the engine's documentation examples", doc, &mut tally)?;

    // The engine's example service must run, not only compile: it starts,
    // serves a miss, a hit, a rename and a 404 over HTTP, and stops.
    let mut example = cargo();
    example.args([
        "run",
        "--quiet",
        "--locked",
        "--package",
        "cache-aside",
        "--example",
        "axum_sqlite",
        "--",
        "--check",
    ]);
    step(
        "the engine's example service (axum + SQLite), self-check",
        example,
    )?;

    let mut wasm = cargo();
    wasm.args([
        "test",
        "--locked",
        "--package",
        "frontend",
        "--target",
        "wasm32-unknown-unknown",
        "--test",
        "browser",
    ])
    .env(
        "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
        "wasm-bindgen-test-runner",
    )
    .env(
        "CHROMEDRIVER",
        which("chromedriver").unwrap_or_else(|| "chromedriver".into()),
    );
    test_step(
        "front-end tests in headless Chromium (wasm-bindgen-test)",
        wasm,
        &mut tally,
    )?;
    // One plain closing line for CI and for people: the totals of every run.
    println!("{} passed, {} failed", tally.passed, tally.failed);
    Ok(())
}

/// The engine is a library for any application: its dependency tree must
/// hold nothing of the playground. (A crate cannot use what it does not
/// depend on; this keeps anyone from adding the dependency.)
fn engine_stands_alone() -> Result<(), String> {
    let mut tree = cargo();
    tree.args([
        "tree",
        "--locked",
        "--package",
        "cache-aside",
        "--edges",
        "normal",
        "--prefix",
        "none",
    ]);
    let tree = crate::util::stdout_of("cargo tree", tree)?;
    let forbidden: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| matches!(*name, "shared" | "backend" | "frontend" | "axum" | "leptos"))
        .collect();
    if forbidden.is_empty() {
        eprintln!("xtask: the engine depends on nothing of the playground");
        Ok(())
    } else {
        Err(format!(
            "the engine (cache-aside) must not depend on {forbidden:?}"
        ))
    }
}

/// `cargo xtask dev`: back end plus `trunk serve` with live reload.
pub fn dev() -> Result<(), String> {
    setup::ensure(Purpose::Run)?;
    let mut backend = cargo();
    backend.args(["run", "--package", "backend"]);
    eprintln!("xtask: starting the back end on :8080 and trunk serve on http://127.0.0.1:8081");
    let mut backend = backend
        .spawn()
        .map_err(|e| format!("cannot start the back end: {e}"))?;
    let mut trunk = command("trunk");
    // A separate dist directory, so a dev build never replaces the release
    // build that `cargo xtask run` serves.
    trunk.args(["serve", "--offline", "--dist", "dist-dev"]);
    let status = trunk.status().map_err(|e| format!("cannot start trunk: {e}"));
    let _ = backend.kill();
    let _ = backend.wait();
    match status? {
        s if s.success() => Ok(()),
        s => Err(format!("trunk serve exited with {s}")),
    }
}

/// `cargo xtask screenshot`: the README picture, from the browser test.
/// `cargo run` of one of the e2e crate's programs (`--bin` or `--example`
/// `name`); add `--release` or `-- ARGS` to it.
fn e2e_program(kind: &str, name: &str) -> Command {
    let mut run = cargo();
    run.args(["run", "--quiet", "--locked", "--package", "e2e", kind, name]);
    run
}

/// Records lessons (all, or those named) against a back end of their own
/// (its own redis-server and SQLite file): `recordings/{lesson}.json`.
pub fn record(lessons: &[String]) -> Result<(), String> {
    setup::ensure(Purpose::Run)?;
    let mut record = e2e_program("--bin", "record");
    record.arg("--").args(lessons);
    step("recording lessons against a real back end", record)
}

/// The static folder for documentation sites with no back end: the front
/// end built, then the recordings checked against this build and copied
/// beside it with an embed page per lesson.
pub fn build_static(args: &[String]) -> Result<(), String> {
    let [out] = args else {
        return Err("usage: cargo xtask build-static DIR".into());
    };
    let out = std::env::current_dir().map_err(|e| e.to_string())?.join(out);
    let dist = build_front_end()?;
    let mut build = e2e_program("--bin", "build_static");
    build.arg("--").arg(&out).env("PLAYGROUND_DIST", &dist);
    step("assembling the static site", build)
}

/// The playground scaled out on this machine: a three-master Redis
/// Cluster with a replica each, two back-end replicas and HAProxy in front.
pub fn cluster() -> Result<(), String> {
    setup::ensure(Purpose::Run)?;
    let haproxy = std::path::Path::new("/usr/sbin/haproxy").is_file() || crate::util::on_path("haproxy");
    if !haproxy {
        return Err("the load balancer is missing: sudo apt-get install -y haproxy (or run `cargo xtask setup --tests`)".into());
    }
    let dist = build_front_end()?;
    let mut cluster = e2e_program("--bin", "cluster");
    cluster.env("PLAYGROUND_DIST", &dist);
    exec(cluster)
}

pub fn screenshot() -> Result<(), String> {
    setup::ensure(Purpose::Tests)?;
    let dist = build_front_end()?;
    let out = project_root().join("docs/playground.png");
    let mut test = cargo();
    test.args([
        "test",
        "--package",
        "e2e",
        "--test",
        "browser",
        "reading_a_user_twice",
    ])
    .env("PLAYGROUND_DIST", &dist)
    .env("SCREENSHOT_TO", &out);
    step("taking the screenshot in headless Chromium", test)?;
    eprintln!(
        "xtask: wrote {} (and a narrow-screen version beside it)",
        out.display()
    );
    Ok(())
}

/// The back end's benches: the name after `cargo xtask bench`, the
/// `backend` example that runs it, and what it measures. `cargo xtask bench`
/// runs them in this order, then the browser bench and the size.
const BACKEND_BENCHES: [(&str, &str, &str); 8] = [
    (
        "read-latency",
        "read_latency",
        "read latency against a real redis-server and SQLite",
    ),
    (
        "hit-path",
        "hit_path",
        "the hit path: axum + GET, the engine, the playground",
    ),
    (
        "stampede",
        "stampede",
        "stampede defences against a real redis-server and SQLite",
    ),
    (
        "sandboxes",
        "sandboxes",
        "many browsers, each in its own sandbox, over WebSockets",
    ),
    (
        "fanout",
        "fanout",
        "fan-out: the hit path with 0, 1 and 50 WebSocket watchers",
    ),
    (
        "memory",
        "memory",
        "the back end's memory: idle, after a herd, with 100 sandboxes",
    ),
    (
        "lab",
        "lab",
        "the traffic and memory lab: the hit ratio a load reaches, eviction policies, value encodings",
    ),
    (
        "faults",
        "faults",
        "a Redis outage and a hung Redis under steady load, without and with the defences",
    ),
];

/// `cargo xtask bench`: every bench, each beside its baseline and goal.
/// `cargo xtask bench NAME [ARGS]` runs one: `read-latency`, `hit-path
/// [--seconds N --connections N --rounds N]`, `stampede`, `sandboxes
/// [--clients N --reads N]`, `fanout [--seconds N --rounds N --watchers N]`,
/// `memory`, `lab`, `faults`, `browser` (time to interactive, a flood of
/// reads) or `size`.
pub fn bench(args: &[String]) -> Result<(), String> {
    setup::ensure(Purpose::Run)?;
    let backend_bench = |example: &str, title: &str, extra: &[String]| {
        let mut run = cargo();
        run.args([
            "run",
            "--quiet",
            "--release",
            "--package",
            "backend",
            "--example",
            example,
        ]);
        if !extra.is_empty() {
            run.arg("--").args(extra);
        }
        step(title, run)
    };
    match args.first().map(String::as_str) {
        Some("browser") => browser_bench(&build_front_end()?),
        Some("replicas") => replicas_bench(),
        Some("size") => front_end_size(&build_front_end()?),
        Some(name) => match BACKEND_BENCHES.iter().find(|(n, ..)| *n == name) {
            Some((_, example, title)) => backend_bench(example, title, &args[1..]),
            None => Err(format!(
                "unknown bench {name:?}: use {}, replicas, browser or size",
                BACKEND_BENCHES.map(|(n, ..)| n).join(", ")
            )),
        },
        None => {
            let dist = build_front_end()?;
            for (_, example, title) in BACKEND_BENCHES {
                backend_bench(example, title, &[])?;
            }
            replicas_bench()?;
            browser_bench(&dist)?;
            front_end_size(&dist)
        }
    }
}

/// The page in headless Chromium against the release back end (the e2e
/// crate's `browser_bench` example).
/// Two back-end replicas against one, behind HAProxy on a Redis Cluster.
fn replicas_bench() -> Result<(), String> {
    let mut run = e2e_program("--example", "replicas_bench");
    run.arg("--release");
    step(
        "REST hits through HAProxy: two back-end replicas against one",
        run,
    )
}

fn browser_bench(dist: &std::path::Path) -> Result<(), String> {
    setup::ensure(Purpose::Tests)?;
    let mut run = e2e_program("--example", "browser_bench");
    run.arg("--release").env("PLAYGROUND_DIST", dist);
    step(
        "the page in headless Chromium: time to interactive, a flood of reads",
        run,
    )
}

/// What a first visit downloads, as sent (the build wrote the compressed
/// forms the back end serves), beside the goals; and what the lab panels'
/// modules add when a page shows them (free play shows all eleven).
fn front_end_size(dist: &std::path::Path) -> Result<(), String> {
    let sizes = crate::compress::precompress(dist)?;
    let name = |path: &std::path::Path| {
        path.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    let first_load = crate::compress::first_load;
    println!(
        "{:<40} {:>10} {:>10} {:>10}",
        "front end file (first load)", "raw", "brotli", "gzip"
    );
    let (mut first, mut on_demand) = ((0, 0, 0), (0, 0, 0, 0));
    for (path, raw, br, gz) in &sizes.files {
        let name = name(path);
        if first_load(&name) {
            println!("{name:<40} {raw:>10} {br:>10} {gz:>10}");
            if !name.ends_with(".html") {
                first = (first.0 + raw, first.1 + br, first.2 + gz);
            }
        } else if name.ends_with(".wasm") {
            on_demand = (
                on_demand.0 + 1,
                on_demand.1 + raw,
                on_demand.2 + br,
                on_demand.3 + gz,
            );
        }
    }
    let main_wasm_gz: u64 = sizes
        .files
        .iter()
        .filter(|(path, ..)| {
            let name = name(path);
            name.starts_with("frontend-") && name.ends_with(".wasm")
        })
        .map(|(.., gz)| gz)
        .sum();
    println!(
        "{:<40} {:>10} {:>10} {:>10}",
        format!("{} lab-panel modules (on demand)", on_demand.0),
        on_demand.1,
        on_demand.2,
        on_demand.3
    );
    println!(
        "first load (wasm + js + css, brotli): {} KB, goal 150 KB\n\
         main wasm gzipped: {} KB, goal 180 KB\n\
         free play, every lab panel shown (brotli): {} KB",
        first.1 / 1024,
        main_wasm_gz / 1024,
        (first.1 + on_demand.2) / 1024
    );
    Ok(())
}

fn which(program: &str) -> Option<String> {
    std::env::split_paths(&crate::util::path_with_cargo_bin())
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

/// Replaces this process with `command`, so Ctrl-C goes straight to the
/// back end, which stops its Redis and exits.
#[cfg(unix)]
fn exec(mut command: Command) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let error = command.exec();
    Err(format!("cannot start the back end: {error}"))
}

#[cfg(not(unix))]
fn exec(mut command: Command) -> Result<(), String> {
    let status = command.status().map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the back end exited with {status}"))
    }
}
