//! Small helpers: where the project is, running commands, timing them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The workspace root: the parent of xtask's manifest directory, as
/// `cargo run` says it now. Not the directory it was compiled in: a build
/// shared between two checkouts (one target directory for a working tree
/// and a clean clone) would otherwise run the other checkout's tests.
pub fn project_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    Path::new(&manifest_dir)
        .parent()
        .expect("xtask is in the workspace")
        .to_path_buf()
}

/// The `cargo` that runs us.
pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(project_root());
    command.env("PATH", path_with_cargo_bin());
    command
}

/// A command run from the project root, with cargo's bin directory on PATH
/// (where `cargo install` puts trunk and wasm-bindgen).
pub fn command(program: &str) -> Command {
    let mut command = Command::new(program);
    command.current_dir(project_root());
    command.env("PATH", path_with_cargo_bin());
    command
}

/// PATH with `$CARGO_HOME/bin` in front.
pub fn path_with_cargo_bin() -> String {
    let cargo_home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo"));
    let path = std::env::var("PATH").unwrap_or_default();
    format!("{}:{path}", cargo_home.join("bin").display())
}

/// Runs a command quietly and returns what it printed; fails with its
/// description and what it said on stderr if it fails.
pub fn stdout_of(description: &str, mut command: Command) -> Result<String, String> {
    let output = command
        .output()
        .map_err(|e| format!("{description}: cannot start {:?}: {e}", command.get_program()))?;
    if !output.status.success() {
        return Err(format!(
            "{description} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs a command, echoing it, and fails with its description if it fails.
pub fn step(description: &str, mut command: Command) -> Result<(), String> {
    let started = Instant::now();
    eprintln!("xtask: {description}");
    let status = command
        .status()
        .map_err(|e| format!("{description}: cannot start {:?}: {e}", command.get_program()))?;
    if !status.success() {
        return Err(format!("{description} failed ({status})"));
    }
    eprintln!("xtask: {description}: done in {:.0?}", started.elapsed());
    Ok(())
}

/// Test totals gathered from `cargo test` output.
#[derive(Default)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
}

/// Runs `cargo test ...`, passing its output through while adding up the
/// `test result:` lines into `tally`.
pub fn test_step(description: &str, mut command: Command, tally: &mut Tally) -> Result<(), String> {
    use std::io::{BufRead, BufReader};
    let started = Instant::now();
    eprintln!("xtask: {description}");
    command.stdout(std::process::Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| format!("{description}: cannot start {:?}: {e}", command.get_program()))?;
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| e.to_string())?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            tally.passed += count_before(rest, " passed");
            tally.failed += count_before(rest, " failed");
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("{description} failed ({status})"));
    }
    eprintln!("xtask: {description}: done in {:.0?}", started.elapsed());
    Ok(())
}

/// The number just before `label` in `ok. 3 passed; 0 failed; ...`.
fn count_before(text: &str, label: &str) -> u64 {
    text.split(';')
        .map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
        })
        .find_map(|part| part.strip_suffix(label))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The first line a program prints for `--version`, if it runs.
pub fn version_of(program: &str) -> Option<String> {
    let output = command(program).arg("--version").output().ok()?;
    if !output.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string(),
    )
}

/// Whether a program is on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::split_paths(&path_with_cargo_bin()).any(|dir| dir.join(program).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_test_summaries_are_counted() {
        let line = "ok. 9 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.02s";
        assert_eq!(count_before(line, " passed"), 9);
        assert_eq!(count_before(line, " failed"), 2);
        assert_eq!(
            count_before("FAILED. 1 passed; 3 failed; 0 ignored", " failed"),
            3
        );
        assert_eq!(
            count_before("ok. 3 passed; 0 failed; 0 ignored; 0 filtered out", " passed"),
            3
        );
    }
}
