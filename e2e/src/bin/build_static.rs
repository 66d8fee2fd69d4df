//! `cargo xtask build-static DIR`: the static folder for documentation
//! sites with no back end (see `e2e::static_site`), from the built front
//! end (`$PLAYGROUND_DIST` or `dist/`) and `recordings/`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        eprintln!("usage: build_static DIR [RECORDINGS_DIR]");
        return ExitCode::from(2);
    };
    let recordings = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| e2e::project_root().join(shared::recording::RECORDINGS_DIR));
    let dist = std::env::var_os("PLAYGROUND_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| e2e::project_root().join("dist"));
    match e2e::static_site::build(&dist, &recordings, &out) {
        Ok(built) => {
            println!(
                "static site in {}: {} lessons ({}), {} KB in all; a first visit to the largest lesson loads {} KB, {} KB gzipped",
                out.display(),
                built.lessons.len(),
                built.lessons.join(", "),
                built.bytes / 1024,
                built.first_load_bytes / 1024,
                built.first_load_gzip_bytes / 1024
            );
            println!(
                "serve it from any static host; embed a lesson with <iframe src=\".../embed/LESSON/live/?step=1\">, \
                 and add &backend=URL to go live"
            );
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("build-static: {why}");
            ExitCode::FAILURE
        }
    }
}
