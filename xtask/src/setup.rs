//! Installs what the playground needs, skipping whatever is already there.
//! Versions are pinned, and everything comes from the package registries
//! (crates.io, Debian): nothing is downloaded from anywhere else.

use crate::util::{cargo, command, on_path, project_root, step, version_of};

/// Trunk 0.22 needs a newer rustc than we require; 0.21.14 is the last that
/// builds on Rust 1.85+.
pub const TRUNK_VERSION: &str = "0.21.14";

/// What the set-up is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Running the playground: Redis and the WASM toolchain.
    Run,
    /// Running the tests: also Chromium, chromedriver and OpenSSL headers
    /// (for the WebDriver client).
    Tests,
}

/// Installs what is missing.
pub fn ensure(purpose: Purpose) -> Result<(), String> {
    ensure_wasm_target()?;
    ensure_system_packages(purpose)?;
    ensure_wasm_bindgen()?;
    ensure_trunk()?;
    if purpose == Purpose::Tests {
        ensure_axe()?;
    }
    Ok(())
}

/// axe-core, the accessibility checker the browser tests inject, from the
/// npm registry at the version `e2e/package-lock.json` pins.
fn ensure_axe() -> Result<(), String> {
    let e2e = project_root().join("e2e");
    if e2e.join("node_modules/axe-core/axe.min.js").is_file() {
        return Ok(());
    }
    let mut install = command("npm");
    install
        .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
        .current_dir(&e2e);
    step("installing axe-core for the browser tests (npm ci)", install)
}

fn ensure_wasm_target() -> Result<(), String> {
    let installed = command("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-unknown-unknown"))
        .unwrap_or(false);
    if installed {
        return Ok(());
    }
    let mut add = command("rustup");
    add.args(["target", "add", "wasm32-unknown-unknown"]);
    step("adding the wasm32-unknown-unknown target", add)
}

/// The `wasm-bindgen` version in Cargo.lock: the CLI must match it exactly.
pub fn wasm_bindgen_version() -> Result<String, String> {
    let lock = std::fs::read_to_string(project_root().join("Cargo.lock"))
        .map_err(|e| format!("cannot read Cargo.lock: {e}"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasm-bindgen\"" {
            if let Some(version) = lines.next().and_then(|l| l.strip_prefix("version = \"")) {
                return Ok(version.trim_end_matches('"').to_string());
            }
        }
    }
    Err("Cargo.lock has no wasm-bindgen package".into())
}

fn ensure_wasm_bindgen() -> Result<(), String> {
    let wanted = wasm_bindgen_version()?;
    if version_of("wasm-bindgen").is_some_and(|v| v == format!("wasm-bindgen {wanted}")) {
        return Ok(());
    }
    // Not `--locked`: the CLI's own lock file names a webpki-roots release
    // that the registry no longer has.
    let mut install = cargo();
    install.args(["install", "wasm-bindgen-cli", "--version", &wanted]);
    step(
        &format!("installing wasm-bindgen-cli {wanted} (about 2 minutes)"),
        install,
    )
}

fn ensure_trunk() -> Result<(), String> {
    if version_of("trunk").is_some_and(|v| v == format!("trunk {TRUNK_VERSION}")) {
        return Ok(());
    }
    let mut install = cargo();
    install.args(["install", "trunk", "--version", TRUNK_VERSION, "--locked"]);
    step(
        &format!("installing trunk {TRUNK_VERSION} (about 8 minutes)"),
        install,
    )
}

/// Debian packages, installed with apt-get when we are root; otherwise the
/// exact command is printed and the task stops.
fn ensure_system_packages(purpose: Purpose) -> Result<(), String> {
    let mut missing: Vec<&str> = Vec::new();
    if !on_path("redis-server") {
        missing.push("redis-server");
    }
    if purpose == Purpose::Tests {
        if !on_path("chromium") {
            missing.push("chromium");
        }
        if !on_path("chromedriver") {
            missing.push("chromium-driver");
        }
        if !on_path("npm") {
            missing.push("npm");
        }
        // The replicas' load balancer in the scale-out tests.
        if !on_path("haproxy") {
            missing.push("haproxy");
        }
    }
    // The back end speaks TLS to Redis (`rediss://`) through the system's
    // OpenSSL; the browser tests' driver does too.
    let has_openssl = command("pkg-config")
        .args(["--exists", "openssl"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_openssl {
        missing.extend(["pkg-config", "libssl-dev"]);
    }
    if missing.is_empty() {
        return Ok(());
    }
    let packages = missing.join(" ");
    if !is_root() {
        return Err(format!(
            "missing system packages; install them with:\n\n    sudo apt-get update && sudo apt-get install -y {packages}\n"
        ));
    }
    let mut update = command("apt-get");
    update.arg("update").env("DEBIAN_FRONTEND", "noninteractive");
    step("apt-get update", update)?;
    let mut install = command("apt-get");
    install
        .args(["install", "-y"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    step(&format!("installing {packages}"), install)
}

fn is_root() -> bool {
    command("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
