//! `cache-aside-playground`: see `backend::Config` for the options.

use backend::{shutdown_signal, Backend, Config};
use clap::Parser;

fn main() -> std::process::ExitCode {
    // Before the runtime starts its threads: see `tune_allocator`.
    backend::tune_allocator();
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(start()),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn start() -> std::process::ExitCode {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = Config::parse();
    match run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), backend::StartError> {
    // Redis is started inside `Backend::start` and stopped when `backend`
    // is dropped at the end of this function, Ctrl-C included.
    let backend = Backend::start(config)?;
    let listener = backend.bind().await?;
    match &backend.embedded_redis {
        Some(redis) => tracing::info!("started redis-server on port {}", redis.port()),
        None => tracing::info!(
            "using Redis at {}",
            backend::redact_url(backend.playground.redis.url())
        ),
    }
    tracing::info!("database: {}", backend.playground.database.path().display());
    let addr = listener.local_addr().map_err(backend::StartError::Serve)?;
    println!("Cache-aside playground: http://{addr}/  (Ctrl-C to stop)");
    // The first Ctrl-C (or SIGTERM) stops taking new connections and closes
    // the open WebSockets; open requests get a few seconds to finish. A
    // second signal, or those seconds running out, stops at once (still
    // stopping the embedded Redis, which `backend`'s drop does).
    let (first, first_seen) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown_signal().await;
        let _ = first.send(());
    };
    let serve = backend.serve(listener, signal);
    tokio::pin!(serve);
    tokio::select! {
        served = &mut serve => served?,
        () = async {
            let _ = first_seen.await;
            // Listening before saying so: a second Ctrl-C right after the
            // line is not missed.
            let second = backend::signal_listener();
            tracing::info!("stopping: open requests get 10 s (Ctrl-C again to stop now)");
            tokio::select! {
                () = second => tracing::warn!("second signal: stopping now"),
                () = tokio::time::sleep(std::time::Duration::from_secs(10)) => tracing::warn!("requests still open after 10 s: stopping now"),
            }
        } => {}
    }
    tracing::info!("stopped");
    Ok(())
}
