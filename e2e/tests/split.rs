//! The front end's WebAssembly is split (`cargo xtask split-wasm`): each lab
//! panel's code is a module of its own, fetched when the panel is shown. A
//! lesson page fetches only its step's panel; free play fetches them all;
//! a module that cannot be fetched costs its panel, not the page.

use std::collections::BTreeSet;
use std::time::Duration;

use e2e::{attr_of, click, review_screenshot, text_of, wait_for, wait_for_text, wait_live, Driver, Server};
use fantoccini::{Client, Locator};

const WAIT: Duration = Duration::from_secs(60);

/// Every lab panel, by the id of its title.
const PANELS: [&str; 11] = [
    "divergence",
    "race",
    "stampede",
    "patterns",
    "load",
    "keys",
    "redis",
    "diagnose",
    "memory",
    "serialization",
    "faults",
];

/// The lab panels' modules this page has fetched (`memory_panel`, …),
/// from the browser's own record of what it downloaded.
async fn panel_modules_fetched(client: &Client) -> BTreeSet<String> {
    let names = client
        .execute(
            "return performance.getEntriesByType('resource').map(e => new URL(e.name).pathname.split('/').pop())",
            vec![],
        )
        .await
        .unwrap();
    names
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str())
        .filter_map(|name| {
            let (stem, hash) = name.strip_suffix(".wasm")?.rsplit_once('-')?;
            (stem.ends_with("_panel") && hash.len() == 16).then(|| stem.to_string())
        })
        .collect()
}

async fn panels_shown(client: &Client) -> BTreeSet<String> {
    let mut shown = BTreeSet::new();
    for panel in PANELS {
        if client.find(Locator::Id(&format!("{panel}-title"))).await.is_ok() {
            shown.insert(panel.to_string());
        }
    }
    shown
}

fn all_panels() -> BTreeSet<String> {
    PANELS.iter().map(|p| p.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lesson_fetches_only_its_panels_module_and_free_play_all_of_them() {
    let server = Server::start(|_| {}).await;
    let driver = Driver::start();
    let client = driver.browser(1280, 800).await;

    // A lesson step with the herd panel: that module, no other.
    client
        .goto(&format!("http://{}/?lesson=stampede&step=1", server.addr))
        .await
        .unwrap();
    wait_live(&client).await;
    wait_for(&client, "the herd panel", WAIT, || async {
        client.find(Locator::Id("stampede-title")).await.ok()
    })
    .await;
    assert_eq!(
        panels_shown(&client).await,
        BTreeSet::from(["stampede".to_string()])
    );
    assert_eq!(
        panel_modules_fetched(&client).await,
        BTreeSet::from(["stampede_panel".to_string()])
    );

    // Free play shows every lab panel, each from its own module.
    client.goto(&server.page("split-free-play")).await.unwrap();
    wait_live(&client).await;
    wait_for(&client, "every lab panel", WAIT, || async {
        (panels_shown(&client).await == all_panels()).then_some(())
    })
    .await;
    let expected: BTreeSet<String> = PANELS.iter().map(|p| format!("{p}_panel")).collect();
    assert_eq!(panel_modules_fetched(&client).await, expected);
    assert!(client
        .find_all(Locator::Css("[data-testid=panel-unavailable]"))
        .await
        .unwrap()
        .is_empty());
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panel_whose_module_cannot_be_fetched_says_so_and_the_page_works_on() {
    // A copy of the built front end without the memory panel's module (as
    // after a deploy that removed it while a page was open).
    let copy = tempfile::tempdir().unwrap();
    let mut removed = 0;
    for entry in std::fs::read_dir(e2e::dist_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("memory_panel-") {
            removed += 1;
            continue;
        }
        if path.is_file() {
            std::fs::copy(&path, copy.path().join(&name)).unwrap();
        }
    }
    assert!(removed > 0, "the build has no memory panel module to remove");
    let static_dir = copy.path().to_path_buf();
    let server = Server::start(move |c| c.static_dir = static_dir).await;
    let driver = Driver::start();
    let client = driver.browser(1280, 800).await;
    client.goto(&server.page("split-missing")).await.unwrap();
    wait_live(&client).await;

    let message = wait_for(&client, "the unavailable panel's card", WAIT, || async {
        text_of(&client, "[data-testid=panel-unavailable]").await
    })
    .await;
    assert!(message.starts_with("Memory and eviction"), "{message}");
    assert!(message.contains("could not be downloaded"), "{message}");
    assert!(message.contains("Reload the page"), "{message}");
    wait_for(&client, "the other panels", WAIT, || async {
        let mut others = all_panels();
        others.remove("memory");
        (panels_shown(&client).await == others).then_some(())
    })
    .await;
    assert_eq!(
        client
            .find_all(Locator::Css("[data-testid=panel-unavailable]"))
            .await
            .unwrap()
            .len(),
        1
    );
    review_screenshot(&client, "split-missing-panel", "[data-testid=panel-unavailable]").await;
    assert!(client
        .find(Locator::Css(
            "[data-testid=panel-unavailable] [data-testid=reload-page]"
        ))
        .await
        .is_ok());

    // The page still reads through the cache.
    let input = client
        .find(Locator::Css("[data-testid=record-id]"))
        .await
        .unwrap();
    input.clear().await.unwrap();
    input.send_keys("42").await.unwrap();
    click(&client, "[data-testid=read]").await;
    wait_for(&client, "the read's miss in the log", WAIT, || async {
        client
            .find(Locator::Css("[data-testid=log] .entry[data-outcome=miss]"))
            .await
            .ok()
    })
    .await;
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_panel_keeps_what_the_learner_typed_across_a_reconnect() {
    let mut server = Server::start(|_| {}).await;
    let driver = Driver::start();
    let client = driver.browser(1280, 800).await;
    client.goto(&server.page("split-reconnect")).await.unwrap();
    wait_live(&client).await;
    let requests = client
        .find(Locator::Css("[data-testid=herd-requests]"))
        .await
        .unwrap();
    requests.clear().await.unwrap();
    requests.send_keys("77").await.unwrap();

    // The connection drops and comes back: the panels stay as they were
    // (drawn once, when the first greeting came), not redrawn afresh.
    server.stop_serving().await;
    wait_for_text(
        &client,
        "[data-testid=link]",
        "the page to see the connection lost",
        |t| !t.starts_with("Live"),
    )
    .await;
    // Drawn from a fetched module, the panel still follows the page's
    // state: its button is off while the connection is down.
    wait_for(&client, "the herd button to be disabled", WAIT, || async {
        attr_of(&client, "[data-testid=fire-herd]", "disabled").await
    })
    .await;
    server.serve_again().await;
    wait_live(&client).await;
    let requests = client
        .find(Locator::Css("[data-testid=herd-requests]"))
        .await
        .unwrap();
    assert_eq!(requests.prop("value").await.unwrap().as_deref(), Some("77"));
    wait_for(&client, "the herd button to be enabled again", WAIT, || async {
        attr_of(&client, "[data-testid=fire-herd]", "disabled")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    client.close().await.unwrap();
}

/// Serves the files of `dir` as a static host that does not know `.wasm`
/// would (an S3 bucket by default): `application/octet-stream`.
async fn plain_static_host(dir: std::path::PathBuf) -> std::net::SocketAddr {
    static_host_serving(dir, |_, body| Some(body)).await
}

/// Like [`plain_static_host`], each file's bytes passed through `alter`
/// (given the file's name) on their way out; `None` answers 404.
async fn static_host_serving(
    dir: std::path::PathBuf,
    alter: fn(&str, Vec<u8>) -> Option<Vec<u8>>,
) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let dir = dir.clone();
            tokio::spawn(async move {
                let mut request = vec![0u8; 8192];
                let n = stream.read(&mut request).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&request[..n]);
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let path = path.split('?').next().unwrap_or("/").trim_start_matches('/');
                let name = if path.is_empty() { "index.html" } else { path };
                let body = std::fs::read(dir.join(name))
                    .ok()
                    .filter(|_| !name.contains(".."))
                    .and_then(|body| alter(name, body));
                let (status, body) = match body {
                    Some(body) => ("200 OK", body),
                    None => ("404 Not Found", Vec::new()),
                };
                let kind = match name.rsplit('.').next() {
                    Some("html") => "text/html; charset=utf-8",
                    Some("js") => "text/javascript",
                    Some("css") => "text/css",
                    _ => "application/octet-stream",
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panels_load_from_a_host_that_sends_wasm_as_plain_bytes() {
    let host = plain_static_host(e2e::dist_dir()).await;
    let driver = Driver::start();
    let client = driver.browser(1280, 800).await;
    // No back end here: the first try to connect fails, and the panels
    // are fetched then.
    client.goto(&format!("http://{host}/")).await.unwrap();
    wait_for(&client, "every lab panel", WAIT, || async {
        (panels_shown(&client).await == all_panels()).then_some(())
    })
    .await;
    assert!(client
        .find_all(Locator::Css("[data-testid=panel-unavailable]"))
        .await
        .unwrap()
        .is_empty());
    let expected: BTreeSet<String> = PANELS.iter().map(|p| format!("{p}_panel")).collect();
    assert_eq!(panel_modules_fetched(&client).await, expected);
    // The page is drawn, so index.html's loading note is gone.
    assert!(
        client.find(Locator::Id("boot")).await.is_err(),
        "the loading note outlived the page's start"
    );
    client.close().await.unwrap();
}

/// A page whose WebAssembly cannot start (a damaged or blocked download, a
/// browser without WebAssembly) says so where it said it was loading,
/// instead of staying blank.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_whose_webassembly_cannot_start_says_so() {
    // The main module cut short, as a broken download would leave it.
    let damaged = static_host_serving(e2e::dist_dir(), |name, mut body| {
        if name.starts_with("frontend-") && name.ends_with("_bg.wasm") {
            body.truncate(64);
        }
        Some(body)
    })
    .await;
    // The page's script missing (a 404, or blocked on the way): its import
    // fails before any of the page's code runs.
    let missing = static_host_serving(e2e::dist_dir(), |name, body| {
        (!(name.starts_with("frontend-") && name.ends_with(".js"))).then_some(body)
    })
    .await;
    let driver = Driver::start();
    let client = driver.browser(1280, 800).await;
    for (host, reason) in [
        (damaged, "WebAssembly"),
        (missing, "its code could not be downloaded"),
    ] {
        client.goto(&format!("http://{host}/")).await.unwrap();
        let note = wait_for(
            &client,
            "the loading note to say the start failed",
            WAIT,
            || async { text_of(&client, "#boot.failed").await },
        )
        .await;
        assert!(note.starts_with("The playground could not start: "), "{note}");
        assert!(note.contains(reason), "{note}");
        assert!(note.contains("Reload the page"), "{note}");
        assert_eq!(
            attr_of(&client, "#boot", "role").await.as_deref(),
            Some("alert"),
            "a screen reader announces the failure"
        );
    }
    review_screenshot(&client, "boot-failed", "body").await;
    client.close().await.unwrap();
}

/// A page where no script runs at all (blocked by a policy, an extension
/// or a proxy), so nothing can report a failure: the style sheet alone
/// turns the loading note into a hint after a while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_whose_scripts_never_run_still_tells_the_reader_what_to_do() {
    let blocked = static_host_serving(e2e::dist_dir(), |name, body| {
        if name != "index.html" {
            return Some(body);
        }
        let page = String::from_utf8(body).ok()?;
        let policy = r#"<head><meta http-equiv="Content-Security-Policy" content="script-src 'none'">"#;
        Some(page.replacen("<head>", policy, 1).into_bytes())
    })
    .await;
    let driver = Driver::start();
    let client = driver.browser(1280, 800).await;
    client.goto(&format!("http://{blocked}/")).await.unwrap();
    // Not at once: most pages start well within the 12 s.
    let at_once = client.find(Locator::Css("#boot .boot-slow")).await.unwrap();
    assert!(
        !at_once.is_displayed().await.unwrap(),
        "the hint shows only after a while"
    );
    let hint = wait_for(&client, "the hint under the loading note", WAIT, || async {
        let hint = client.find(Locator::Css("#boot .boot-slow")).await.ok()?;
        hint.is_displayed().await.ok()?.then_some(())?;
        hint.text().await.ok()
    })
    .await;
    assert!(hint.contains("Reload the page"), "{hint}");
    let note = text_of(&client, "#boot").await.unwrap_or_default();
    assert!(
        note.starts_with("Loading the playground"),
        "no script ran: {note}"
    );
    review_screenshot(&client, "boot-slow", "body").await;
    client.close().await.unwrap();
}
