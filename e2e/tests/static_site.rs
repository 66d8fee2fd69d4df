//! A documentation site with no back end: two lessons recorded against a
//! real back end (its own Redis and SQLite), a static build of them served
//! by a plain static file server (Python's `http.server`) under a
//! sub-path, and headless Chromium walking both lessons from their
//! recordings, with no request to the WebSocket or the API.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e::record::{load_all, machine, now_utc, record_lesson, save};
use e2e::{
    click, dist_dir, review_screenshot, run_experiment, text_of, wait_for, wait_for_text, Driver, Server,
};
use fantoccini::{Client, Locator};
use shared::lessons::{Expect, Position, LESSONS};
use shared::recording::Recording;

const WAIT: Duration = Duration::from_secs(60);

/// The two lessons recorded: the first (its last step runs a load) and one
/// whose answers are choices as well as counts.
const LESSONS_RECORDED: [&str; 2] = ["basics", "null-values"];

/// `python3 -m http.server` on a free port, serving `root`; its request
/// log goes to `log`.
struct StaticServer {
    child: Child,
    port: u16,
}

impl StaticServer {
    fn start(root: &Path, log: &Path) -> StaticServer {
        let mut child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(root)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("a log file"))
            .spawn()
            .expect("python3 runs (the static site is served by its http.server)");
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("http.server says where it listens");
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        StaticServer { child, port }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn step_title(client: &Client) -> String {
    text_of(client, "#lesson-step-title").await.unwrap_or_default()
}

/// Answers the step's check question with what its recording observed
/// (played natively through the same runner), and returns the verdict.
async fn answer_from_recording(client: &Client, recording: &Recording, at: Position) -> String {
    let observed = frontend::replay::observe(recording, at).expect("the recording plays natively");
    match at.step().check.answer {
        Expect::Number(answer) => {
            let n = answer(&observed).expect("the recording answers the question");
            let input = client
                .find(Locator::Css("[data-testid=lesson-answer]"))
                .await
                .unwrap();
            input.clear().await.unwrap();
            input.send_keys(&n.to_string()).await.unwrap();
        }
        Expect::Choice { correct, .. } => {
            let index = correct(&observed).expect("the recording answers the question");
            click(client, &format!("[data-testid=lesson-choice-{index}]")).await;
        }
    }
    click(client, "[data-testid=check-answer]").await;
    wait_for_text(client, "[data-testid=lesson-verdict]", "a verdict", |t| {
        !t.is_empty()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_build_replays_recorded_lessons_with_no_back_end() {
    // Record two lessons against a real back end, then let it go.
    let recordings = tempfile::tempdir().unwrap();
    let recorded_at = now_utc();
    let mut made = Vec::new();
    {
        let server = Server::start_api_only(|_| {}).await;
        for lesson in LESSONS_RECORDED {
            let recording = record_lesson(server.addr, lesson, &machine(), &recorded_at)
                .await
                .unwrap();
            save(&recording, recordings.path()).unwrap();
            made.push(recording);
        }
    }
    // A recording reads back exactly as it was made.
    assert_eq!(load_all(recordings.path()).unwrap(), made);

    // The static folder, under a sub-path of a plain static server.
    let root = tempfile::tempdir().unwrap();
    let site = root.path().join("docs").join("playground");
    let built = e2e::static_site::build(&dist_dir(), recordings.path(), &site).unwrap();
    assert_eq!(built.lessons, LESSONS_RECORDED);
    println!(
        "static site: {} KB in all, first load {} KB ({} KB gzipped)",
        built.bytes / 1024,
        built.first_load_bytes / 1024,
        built.first_load_gzip_bytes / 1024
    );
    assert!(built.first_load_gzip_bytes < built.first_load_bytes);
    let log = root.path().join("requests.log");
    let host = StaticServer::start(root.path(), &log);
    let base = format!("http://127.0.0.1:{}/docs/playground/", host.port);

    let driver = Driver::start();
    let client = driver.browser(1280, 900).await;
    for (recording, lesson_id) in made.iter().zip(LESSONS_RECORDED) {
        let lesson = LESSONS.iter().position(|l| l.id == lesson_id).unwrap();
        client
            .goto(&format!("{base}?lesson={lesson_id}&step=1"))
            .await
            .unwrap();
        // Never presented as live: the notice and the badge say recorded,
        // with the recording's date.
        let notice = wait_for(&client, "the recorded notice", WAIT, || async {
            text_of(&client, "[data-testid=recorded-notice]").await
        })
        .await;
        assert!(
            notice.contains("Recorded from a real Redis on") && notice.contains(&recorded_at),
            "{notice}"
        );
        let badge = text_of(&client, "[data-testid=link]").await.unwrap_or_default();
        assert!(badge.starts_with("Recorded"), "{badge}");
        review_screenshot(&client, &format!("static-{lesson_id}-top"), "header").await;
        for step in 0..LESSONS[lesson].steps.len() {
            let at = Position { lesson, step };
            wait_for(&client, "the step's title", WAIT, || async {
                (step_title(&client).await == at.step().title).then_some(())
            })
            .await;
            run_experiment(&client).await;
            let verdict = answer_from_recording(&client, recording, at).await;
            assert!(
                verdict.starts_with("Right"),
                "{lesson_id} step {}: {verdict}",
                step + 1
            );
            if step == 0 {
                review_screenshot(&client, &format!("static-{lesson_id}-1"), "body").await;
            }
            if at.next().is_some_and(|n| n.lesson == lesson) {
                click(&client, "[data-testid=lesson-continue]").await;
            }
        }
    }

    // A lesson's embed page works from the folder too, at any step.
    client
        .goto(&format!("{base}embed/basics/live/?step=2"))
        .await
        .unwrap();
    wait_for(&client, "the embedded step", WAIT, || async {
        (step_title(&client).await == LESSONS[0].steps[1].title).then_some(())
    })
    .await;
    wait_for(&client, "the recorded notice in the embed", WAIT, || async {
        text_of(&client, "[data-testid=recorded-notice]").await
    })
    .await;
    run_experiment(&client).await;
    review_screenshot(&client, "static-embed-basics-2", "body").await;

    // A control that needs a server says what it would do, and how to go
    // live, instead of failing silently.
    client.goto(&base).await.unwrap();
    wait_for_text(&client, "[data-testid=link]", "the recorded badge", |t| {
        t.starts_with("Recorded")
    })
    .await;
    click(&client, "[data-testid=read]").await;
    let refusal = wait_for_text(&client, "[role=alert]", "the explanation", |t| !t.is_empty()).await;
    assert!(
        refusal.contains("needs a live back end") && refusal.contains("backend="),
        "{refusal}"
    );

    // The same page goes live when its address names a back end that
    // allows the documentation site's origin.
    let origin = format!("http://127.0.0.1:{}", host.port);
    let live = Server::start(|config| config.allowed_origins = vec![origin.clone()]).await;
    client
        .goto(&format!(
            "{base}embed/basics/live/?step=1&backend=http://{}/",
            live.addr
        ))
        .await
        .unwrap();
    e2e::wait_live(&client).await;
    assert!(
        client
            .find(Locator::Css("[data-testid=recorded-notice]"))
            .await
            .is_err(),
        "a live page is not presented as recorded"
    );
    run_experiment(&client).await;
    let misses = text_of(&client, "[data-testid=misses]").await.unwrap_or_default();
    assert_eq!(misses.trim(), "1", "the live back end ran the read");
    client.close().await.unwrap();
    drop(host);

    // Nothing asked for the WebSocket or the API; everything came from the
    // sub-path.
    let requests = std::fs::read_to_string(&log).unwrap();
    let paths: Vec<&str> = requests
        .lines()
        .filter_map(|line| line.split('"').nth(1))
        .filter_map(|request| request.split_whitespace().nth(1))
        .collect();
    assert!(paths.iter().any(|p| p.ends_with(".wasm")), "{requests}");
    assert!(
        paths.iter().any(|p| p.ends_with("recordings/null-values.bin.gz")),
        "{requests}"
    );
    // Not even the browser's own request for /favicon.ico: the page
    // carries its icon inline.
    for path in &paths {
        assert!(
            !path.contains("/ws") && !path.contains("/api"),
            "{path} asked of a static site"
        );
        assert!(
            path.starts_with("/docs/playground/"),
            "{path} outside the sub-path"
        );
    }
}

/// A recording made with another protocol version fails the build, saying
/// why and what to do; so does a file that is no recording.
#[test]
fn a_stale_recording_fails_the_static_build_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let lesson = &LESSONS[0];
    let stale = serde_json::json!({
        "protocol_version": shared::PROTOCOL_VERSION - 1,
        "lesson": lesson.id,
        "recorded_at": "2026-01-01 00:00 UTC",
        "machine": "an older build",
        "hello": { "type": "missed", "count": 0 },
        "steps": [],
    });
    std::fs::write(dir.path().join("basics.json"), stale.to_string()).unwrap();
    let why = e2e::static_site::build(&dist_dir(), dir.path(), &out.path().join("site")).unwrap_err();
    assert!(
        why.contains("basics.json") && why.contains("protocol version") && why.contains("cargo xtask record"),
        "{why}"
    );
    assert!(
        !out.path().join("site").exists(),
        "nothing is built from a stale recording"
    );

    std::fs::write(dir.path().join("basics.json"), "{ not json").unwrap();
    let why = e2e::static_site::build(&dist_dir(), dir.path(), &out.path().join("site")).unwrap_err();
    assert!(
        why.contains("basics.json") && why.contains("record it again"),
        "{why}"
    );

    std::fs::remove_file(dir.path().join("basics.json")).unwrap();
    let why = e2e::static_site::build(&dist_dir(), dir.path(), &out.path().join("site")).unwrap_err();
    assert!(why.contains("no recordings"), "{why}");

    // A folder it did not make is never emptied: the recordings kept.
    let committed = e2e::project_root().join(shared::recording::RECORDINGS_DIR);
    let why = e2e::static_site::build(&dist_dir(), &committed, &committed).unwrap_err();
    assert!(why.contains("not made by build-static"), "{why}");
    assert!(committed.join("basics.json").is_file());
}

/// The recordings the repository carries are this build's: every lesson,
/// this protocol version, and each step plays to its end through today's
/// experiment runner. A change to the protocol or to a lesson's experiment
/// comes with new recordings (`cargo xtask record`).
#[test]
fn the_committed_recordings_are_current() {
    let dir = e2e::project_root().join(shared::recording::RECORDINGS_DIR);
    let recordings = load_all(&dir).unwrap_or_else(|why| panic!("{why}"));
    let recorded: Vec<&str> = recordings.iter().map(|r| r.lesson.as_str()).collect();
    let lessons: Vec<&str> = LESSONS.iter().map(|l| l.id).collect();
    assert_eq!(
        recorded, lessons,
        "every lesson has a recording: `cargo xtask record` makes the missing ones"
    );
    for (lesson, recording) in recordings.iter().enumerate() {
        for step in 0..recording.steps.len() {
            let at = Position { lesson, step };
            let observed = frontend::replay::observe(recording, at).unwrap_or_else(|why| {
                panic!(
                    "{} step {} no longer plays ({why}): record it again with `cargo xtask record {}`",
                    recording.lesson,
                    step + 1,
                    recording.lesson
                )
            });
            let answer = match at.step().check.answer {
                Expect::Number(f) => f(&observed),
                Expect::Choice { correct, .. } => correct(&observed).map(|i| i as u64),
            };
            assert!(
                answer.is_some(),
                "{} step {}: its recording answers no question",
                recording.lesson,
                step + 1
            );
        }
    }
}

/// A back end of another protocol version, as far as a page can tell: it
/// accepts WebSockets on any path and greets each with `greeting`, then
/// keeps the socket open and says nothing more.
async fn back_end_greeting_with(greeting: tokio_tungstenite::tungstenite::Message) -> std::net::SocketAddr {
    use futures_util::SinkExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let greeting = greeting.clone();
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let _ = socket.send(greeting).await;
                // Held open until the page closes it.
                use futures_util::StreamExt;
                while let Some(Ok(_)) = socket.next().await {}
            });
        }
    });
    addr
}

/// A page and a back end of different versions: one older than the binary
/// wire (it greets in JSON, protocol 7) and one newer (a binary greeting
/// of the next version with a field this page does not know). The page
/// reads each greeting's version, stops, and says which side to update,
/// instead of misreading messages or waiting forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_tells_a_back_end_of_another_version() {
    use tokio_tungstenite::tungstenite::Message;
    let hello = |version| shared::ServerMessage::Hello {
        protocol_version: version,
        sandbox: shared::SandboxId::parse("old").unwrap(),
        settings: Box::default(),
        stats: shared::Stats::default(),
        diagram: shared::Diagram::cache_aside_read(),
        recent: Vec::new(),
        instances: Vec::new(),
        redis: "shared".into(),
        load: None,
        moved: false,
    };
    let older = back_end_greeting_with(Message::Text(serde_json::to_string(&hello(7)).unwrap().into())).await;
    let mut newer_greeting = shared::wire::to_binary(&hello(shared::PROTOCOL_VERSION + 1));
    newer_greeting.extend_from_slice(&[5, b'n', b'e', b'w', b'e', b'r']);
    let newer = back_end_greeting_with(Message::Binary(newer_greeting.into())).await;

    // The built page, from a plain static server (no back end of its own).
    let root = tempfile::tempdir().unwrap();
    let host = StaticServer::start(&dist_dir(), &root.path().join("requests.log"));
    let driver = Driver::start();
    let client = driver.browser(1280, 900).await;
    for (back_end, expected) in [
        (
            older,
            format!(
                "protocol v7, older than this page's v{}",
                shared::PROTOCOL_VERSION
            ),
        ),
        (
            newer,
            format!("protocol v{}: reload the page", shared::PROTOCOL_VERSION + 1),
        ),
    ] {
        client
            .goto(&format!(
                "http://127.0.0.1:{}/?backend=http://{back_end}/",
                host.port
            ))
            .await
            .unwrap();
        let badge = wait_for_text(&client, "[data-testid=link]", "the version said", |t| {
            t.contains("Back end speaks")
        })
        .await;
        assert!(badge.contains(&expected), "{badge}");
        // Nothing was misread into a live page.
        let live = text_of(&client, "[data-testid=link]").await.unwrap_or_default();
        assert!(!live.starts_with("Live"), "{live}");
    }
    review_screenshot(&client, "version-newer-back-end", "header").await;
    client.close().await.unwrap();
}
