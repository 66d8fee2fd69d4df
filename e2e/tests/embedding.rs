//! The sample documentation page (`docs/embed-example.html`), served from
//! another origin, embeds two lessons through the loader script: both load
//! on click, the auto-height one resizes, and each works on its own sandbox.

use std::time::Duration;

use e2e::{
    click, project_root, review_screenshot, run_experiment, text_of, wait_for, wait_live, Driver, Server,
};
use fantoccini::{Client, Locator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(60);

/// Serves `html` at every path of a new loopback port: another origin
/// than the playground's.
async fn docs_site(html: String) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let html = html.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                    html.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

async fn frame_heights(client: &Client) -> Vec<u64> {
    let heights = client
        .execute(
            "return Array.from(document.querySelectorAll('cache-aside-playground iframe')).map(f => f.getBoundingClientRect().height)",
            vec![],
        )
        .await
        .unwrap();
    heights
        .as_array()
        .map(|a| a.iter().filter_map(|h| h.as_f64()).map(|h| h as u64).collect())
        .unwrap_or_default()
}

/// Inside frame `index`: starts the lesson and waits until it is live;
/// returns the sandbox the badge names.
async fn start_in_frame(client: &Client, index: u16) -> String {
    client.enter_frame(index).await.unwrap();
    wait_for(client, "the click-to-load page", WAIT, || async {
        client.find(Locator::Css("[data-testid=start]")).await.ok()
    })
    .await;
    // Nothing of the playground runs before the click.
    let scripts = client
        .execute("return document.scripts.length", vec![])
        .await
        .unwrap();
    assert_eq!(scripts.as_u64(), Some(0));
    click(client, "[data-testid=start]").await;
    let badge = wait_live(client).await;
    client.enter_parent_frame().await.unwrap();
    badge
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_page_embeds_two_lessons_that_load_on_click_and_work_apart() {
    let server = Server::start(|_| {}).await;
    let sample = std::fs::read_to_string(project_root().join("docs/embed-example.html")).unwrap();
    let html = sample.replace("http://127.0.0.1:8080", &format!("http://{}", server.addr));
    let docs = docs_site(html).await;
    let driver = Driver::start();
    let client = driver.browser(1100, 900).await;
    client.goto(&format!("http://{docs}/")).await.unwrap();

    let frames = wait_for(&client, "two frames", WAIT, || async {
        let frames = client
            .find_all(Locator::Css("cache-aside-playground iframe"))
            .await
            .ok()?;
        (frames.len() == 2).then_some(frames)
    })
    .await;
    for frame in &frames {
        assert!(frame
            .attr("title")
            .await
            .unwrap()
            .is_some_and(|t| t.starts_with("Playground")));
        assert_eq!(frame.attr("loading").await.unwrap().as_deref(), Some("lazy"));
    }
    let before = server.backend.sandboxes.len();

    // The first (auto height) starts; its frame grows to the playground.
    let first = start_in_frame(&client, 0).await;
    let grown = wait_for(
        &client,
        "the auto-height frame to follow its content",
        WAIT,
        || async {
            let heights = frame_heights(&client).await;
            (heights.len() == 2 && heights[0] > 900).then_some(heights)
        },
    )
    .await;
    assert_eq!(grown[1], 720, "the fixed-height frame keeps its height");
    review_screenshot(&client, "embedded-two-lessons", "cache-aside-playground").await;

    // The second starts on its own sandbox.
    let second = start_in_frame(&client, 1).await;
    assert_ne!(first, second, "each frame has its own sandbox");
    assert_eq!(
        server.backend.sandboxes.len(),
        before + 2,
        "one sandbox per click, none before"
    );

    // Run the first frame's experiment: its numbers are its own.
    client.enter_frame(0).await.unwrap();
    assert_eq!(
        text_of(&client, "#lesson-step-title").await.as_deref(),
        Some("The problem: misses that never end")
    );
    run_experiment(&client).await;
    assert_eq!(
        text_of(&client, "[data-testid=misses]").await.as_deref(),
        Some("20")
    );
    let theme = client
        .execute(
            "return document.documentElement.getAttribute('data-theme')",
            vec![],
        )
        .await
        .unwrap();
    assert!(matches!(theme.as_str(), Some("light" | "dark")));
    client.enter_parent_frame().await.unwrap();

    client.enter_frame(1).await.unwrap();
    assert_eq!(
        text_of(&client, "[data-testid=misses]").await.as_deref(),
        Some("0")
    );
    // The stampede embed asked for the dark theme.
    let theme = client
        .execute(
            "return document.documentElement.getAttribute('data-theme')",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(theme.as_str(), Some("dark"));
    client.enter_parent_frame().await.unwrap();

    // The host page switches every embed's theme live.
    client
        .execute("CacheAsidePlayground.setTheme('light')", vec![])
        .await
        .unwrap();
    client.enter_frame(1).await.unwrap();
    wait_for(&client, "the theme to switch", WAIT, || async {
        let theme = client
            .execute(
                "return document.documentElement.getAttribute('data-theme')",
                vec![],
            )
            .await
            .ok()?;
        (theme.as_str() == Some("light")).then_some(())
    })
    .await;
    client.enter_parent_frame().await.unwrap();
}

/// Under a path prefix (`--base-path /playground`), the page, its files,
/// the WebSocket and the embed pages all work: every address the front end
/// builds is relative to where it is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playground_works_under_a_path_prefix() {
    let server = Server::start(|c| c.base_path = "/playground".into()).await;
    let driver = Driver::start();
    let client = driver.browser(1280, 900).await;
    let root = format!("http://{}/playground/", server.addr);

    client
        .goto(&format!("{root}?lesson=basics&step=1"))
        .await
        .unwrap();
    wait_live(&client).await;
    run_experiment(&client).await;
    let curl = text_of(&client, "[data-testid=curl]").await.unwrap_or_default();
    assert!(curl.contains(&format!("{root}api/v1/users/42")), "{curl}");

    client
        .goto(&format!("{root}embed/stampede?step=2"))
        .await
        .unwrap();
    click(&client, "[data-testid=start]").await;
    wait_live(&client).await;
    let full = client
        .find(Locator::Css("[data-testid=open-full]"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap_or_default();
    assert_eq!(full, format!("{root}?lesson=stampede&step=lock"));
    // The embed's address names the step by its id, and not the lesson
    // again (its path does).
    let address = client.current_url().await.unwrap();
    let query = address.query().unwrap_or_default();
    assert!(
        query.contains("step=lock") && !query.contains("lesson="),
        "{address}"
    );

    // An embed stays inside its lesson: its last step finishes, it does
    // not continue into the next lesson.
    client
        .goto(&format!("{root}embed/stampede/live?step=lock-saves-database"))
        .await
        .unwrap();
    wait_live(&client).await;
    let last = text_of(&client, "[data-testid=lesson-continue]")
        .await
        .unwrap_or_default();
    assert_eq!(last, "Finish: free play");
}
