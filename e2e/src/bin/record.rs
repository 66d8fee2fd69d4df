//! `cargo xtask record [LESSON ...]`: records lessons for static
//! documentation sites (see `e2e::record`). Starts a back end of its own
//! (its own `redis-server` and SQLite file), runs every step of each lesson
//! (all of them when none is named) and writes `recordings/{lesson}.json`
//! at the project root, or in `--out DIR`.

use std::path::PathBuf;
use std::process::ExitCode;

use e2e::record::{machine, now_utc, record_lesson, save};
use e2e::Server;
use shared::lessons::LESSONS;

#[tokio::main]
async fn main() -> ExitCode {
    let mut out = e2e::project_root().join(shared::recording::RECORDINGS_DIR);
    let mut lessons = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => match args.next() {
                Some(dir) => out = PathBuf::from(dir),
                None => {
                    eprintln!("--out needs a directory");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!("usage: record [--out DIR] [LESSON ...]");
                println!(
                    "lessons: {}",
                    LESSONS.iter().map(|l| l.id).collect::<Vec<_>>().join(", ")
                );
                return ExitCode::SUCCESS;
            }
            lesson if LESSONS.iter().any(|l| l.id == lesson) => lessons.push(lesson.to_string()),
            other => {
                eprintln!(
                    "no lesson is called `{other}`; the lessons: {}",
                    LESSONS.iter().map(|l| l.id).collect::<Vec<_>>().join(", ")
                );
                return ExitCode::from(2);
            }
        }
    }
    if lessons.is_empty() {
        lessons = LESSONS.iter().map(|l| l.id.to_string()).collect();
    }
    let server = Server::start_api_only(|_| {}).await;
    let machine = machine();
    for lesson in &lessons {
        let started = std::time::Instant::now();
        match record_lesson(server.addr, lesson, &machine, &now_utc()).await {
            Ok(recording) => {
                if let Err(why) = save(&recording, &out) {
                    eprintln!("{why}");
                    return ExitCode::FAILURE;
                }
                let bytes = std::fs::metadata(out.join(format!("{lesson}.json"))).map_or(0, |m| m.len());
                println!(
                    "recorded {lesson}: {} steps in {:.1} s, {} KB",
                    recording.steps.len(),
                    started.elapsed().as_secs_f64(),
                    bytes / 1024
                );
            }
            Err(why) => {
                eprintln!("could not record: {why}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
