//! The playground in a real headless Chromium, against the real back end,
//! Redis and SQLite.

use std::time::Duration;

use e2e::{attr_of, click, http_get, select, text_of, wait_for, wait_for_text, Driver, Server};
use fantoccini::{Client, Locator};

const WAIT: Duration = Duration::from_secs(30);
/// The page's trace log keeps at most this many entries
/// (`frontend::state::LOG_LIMIT`; the front end is not a native dependency).
const LOG_LIMIT: usize = 50;

/// A back end (adjusted by `tweak`), a chromedriver, and a 1280x800 browser
/// showing `sandbox`, connected.
async fn start_page(sandbox: &str, tweak: impl FnOnce(&mut backend::Config)) -> (Server, Driver, Client) {
    let server = Server::start(tweak).await;
    let driver = Driver::start();
    let client = driver.browser(1280, 800).await;
    open(&client, &server, sandbox).await;
    (server, driver, client)
}

async fn open(client: &Client, server: &Server, sandbox: &str) {
    client.goto(&server.page(sandbox)).await.unwrap();
    e2e::wait_live(client).await;
}

/// Waits until the herd table has `n` rows; returns their texts, newest first.
async fn herd_rows(client: &Client, n: usize) -> Vec<String> {
    e2e::texts_of(client, "[data-testid=herd-row]", n).await
}

async fn set_speed(client: &Client, value: &str) {
    let select = client.find(Locator::Css(".toolbar select")).await.unwrap();
    select.select_by_value(value).await.unwrap();
}

async fn read_id(client: &Client, id: &str) {
    let input = client
        .find(Locator::Css("[data-testid=record-id]"))
        .await
        .unwrap();
    input.clear().await.unwrap();
    input.send_keys(id).await.unwrap();
    click(client, "[data-testid=read]").await;
}

/// The outcomes in the trace log, newest first.
async fn log_outcomes(client: &Client) -> Vec<String> {
    let mut outcomes = Vec::new();
    for entry in client
        .find_all(Locator::Css("[data-testid=log] .entry"))
        .await
        .unwrap_or_default()
    {
        outcomes.push(
            entry
                .attr("data-outcome")
                .await
                .ok()
                .flatten()
                .unwrap_or_default(),
        );
    }
    outcomes
}

async fn node_class(client: &Client, node: &str) -> String {
    attr_of(client, &format!("[data-node={node}]"), "class")
        .await
        .unwrap_or_default()
}

async fn wait_for_log(client: &Client, expected: &[&str]) {
    let what = format!("the log to read {expected:?}");
    wait_for(client, &what, WAIT, || async {
        let outcomes = log_outcomes(client).await;
        (outcomes == expected).then_some(())
    })
    .await;
}

/// Ticks the Faults card's checkbox `test_id` and waits until the page
/// shows it ticked (the sandbox's settings came back with it).
async fn switch_on(client: &Client, test_id: &str) {
    let css = format!("[data-testid={test_id}]");
    click(client, &css).await;
    wait_for(client, &format!("{test_id} switched on"), WAIT, || async {
        client
            .find(Locator::Css(&css))
            .await
            .ok()?
            .prop("checked")
            .await
            .ok()
            .flatten()
            .filter(|c| c == "true")
    })
    .await;
}

/// Waits until the fault card's headline says `word`; returns it.
async fn fault_headline(client: &Client, word: &str) -> String {
    wait_for_text(
        client,
        "[data-testid=fault-headline]",
        &format!("Redis reported {word}"),
        |t| t.contains(word),
    )
    .await
}

async fn wait_for_active(client: &Client, node: &str) {
    wait_for(client, &format!("the diagram to reach {node}"), WAIT, || async {
        node_class(client, node).await.contains("active").then_some(())
    })
    .await;
}

/// Reading the same user twice shows a miss then a hit in the log, the
/// counters agree, and the diagram ends on "return cached value".
#[tokio::test]
async fn reading_a_user_twice_shows_a_miss_then_a_hit() {
    let (server, driver, client) = start_page("e2e-read", |_| {}).await;
    set_speed(&client, "4").await;

    read_id(&client, "7").await;
    wait_for_log(&client, &["miss"]).await;
    read_id(&client, "7").await;
    wait_for_log(&client, &["hit", "miss"]).await;
    wait_for_active(&client, "return_cached").await;
    // The miss path was lit earlier; the hit path does not touch the database.
    assert!(!node_class(&client, "query_database").await.contains("visited"));
    assert_eq!(text_of(&client, "[data-testid=hits]").await.as_deref(), Some("1"));
    assert_eq!(
        text_of(&client, "[data-testid=misses]").await.as_deref(),
        Some("1")
    );
    let steps = text_of(&client, "[data-testid=steps]").await.unwrap();
    assert!(steps.contains("GET cache:e2e-read:user:7"), "{steps}");
    // The user's phone number rests sealed in Redis, and the page says so.
    let sealed = wait_for(&client, "the sealed phone number", WAIT, || async {
        text_of(&client, "[data-testid=sealed-phone]").await
    })
    .await;
    assert!(sealed.contains("enc:v1:boot:"), "{sealed}");
    e2e::review_screenshot(&client, "sealed-phone", "[data-testid=sealed-phone]").await;

    // Choosing the miss in the log plays it again, through the database.
    click(&client, "[data-testid=log] li:nth-child(2) .entry").await;
    wait_for_active(&client, "return_loaded").await;
    assert!(node_class(&client, "store_in_cache").await.contains("visited"));

    // The boot script of index.html ran under the back end's CSP (allowed
    // by its hash): blocked, it would leave a failure to start unreported.
    assert_eq!(
        client
            .execute("return typeof window.playgroundBootFailed;", vec![])
            .await
            .unwrap(),
        serde_json::json!("function")
    );

    // On a phone-sized screen the page must not scroll sideways, even with
    // the longest sandbox name (no hyphen to break at, as hosted names)
    // in its badge and in the commands of a read.
    let narrow = driver.browser(390, 900).await;
    let longest = "e2enarrow0".repeat(4);
    assert_eq!(longest.len(), shared::SandboxId::MAX_LEN);
    open(&narrow, &server, &longest).await;
    read_id(&narrow, "7").await;
    wait_for_log(&narrow, &["miss"]).await;
    let overflow = narrow
        .execute(
            "return document.documentElement.scrollWidth - window.innerWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        overflow.as_i64().unwrap_or(0) <= 0,
        "the page is wider than the screen by {overflow}px"
    );

    if let Some(path) = std::env::var_os("SCREENSHOT_TO") {
        // Let the last frame settle, then keep the pictures for the README.
        client
            .execute("document.activeElement.blur(); window.scrollTo(0, 0);", vec![])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let png = client.screenshot().await.unwrap();
        std::fs::write(&path, png).unwrap();
        let png = narrow.screenshot().await.unwrap();
        let narrow_path = std::path::PathBuf::from(&path).with_extension("narrow.png");
        std::fs::write(narrow_path, png).unwrap();
    }
    narrow.close().await.unwrap();
    client.close().await.unwrap();
}

/// A read made with curl shows up live; with Redis stopped, reads still
/// succeed and the diagram shows the fallback path.
#[tokio::test]
async fn curl_reads_appear_live_and_a_stopped_redis_shows_the_fallback() {
    let (mut server, _driver, client) = start_page("e2e-curl", |c| c.db_latency_ms = 5).await;
    set_speed(&client, "4").await;

    let response = http_get(server.addr, "/api/v1/products/3?sandbox=e2e-curl").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    wait_for_log(&client, &["miss"]).await;
    let origin = text_of(&client, "[data-testid=log] .entry .origin").await;
    assert!(
        origin.as_deref().is_some_and(|o| o.starts_with("REST")),
        "{origin:?}"
    );

    server.stop_redis();
    let response = http_get(server.addr, "/api/v1/products/3?sandbox=e2e-curl").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"outcome\":\"fallback\""), "{response}");
    wait_for_log(&client, &["fallback", "miss"]).await;
    wait_for(&client, "the cache error to show", WAIT, || async {
        node_class(&client, "cache_error")
            .await
            .contains("failed")
            .then_some(())
    })
    .await;
    wait_for_active(&client, "return_loaded").await;
    client.close().await.unwrap();
}

/// Bad input is explained next to the field and sends nothing; the keyboard
/// shortcut pauses the animation.
#[tokio::test]
async fn bad_ids_are_explained_and_space_pauses() {
    let (server, _driver, client) = start_page("e2e-input", |_| {}).await;

    read_id(&client, "abc").await;
    let help = wait_for_text(&client, "#read-help", "an error under the field", |t| {
        t.contains("not a whole number")
    })
    .await;
    assert!(help.contains("abc"), "{help}");
    assert_eq!(
        attr_of(&client, "[data-testid=record-id]", "aria-invalid")
            .await
            .as_deref(),
        Some("true")
    );
    assert!(log_outcomes(&client).await.is_empty());
    assert_eq!(server.backend.database.query_count(), 0);

    client
        .execute(
            "document.body.dispatchEvent(new KeyboardEvent('keydown', {key: ' ', bubbles: true}));",
            vec![],
        )
        .await
        .unwrap();
    let play = wait_for_text(
        &client,
        "[data-testid=play]",
        "the play button to show Play",
        |t| t.contains("Play"),
    )
    .await;
    assert!(play.contains("Play"));
    client.close().await.unwrap();
}

/// When the back end goes away the page says so and keeps trying; when it
/// is back the page is live again and reads work.
#[tokio::test]
async fn the_page_shows_a_lost_connection_and_reconnects() {
    let (mut server, _driver, client) = start_page("e2e-link", |c| c.db_latency_ms = 5).await;

    server.stop_serving().await;
    wait_for(
        &client,
        "the page to notice the lost connection",
        WAIT,
        || async {
            text_of(&client, "[data-testid=link]")
                .await
                .filter(|t| t.contains("lost") || t.contains("Reconnecting"))
        },
    )
    .await;
    let read_disabled = attr_of(&client, "[data-testid=read]", "disabled").await;
    assert!(read_disabled.is_some(), "reads are disabled while disconnected");

    server.serve_again().await;
    wait_for_text(&client, "[data-testid=link]", "the page to reconnect", |t| {
        t.starts_with("Live")
    })
    .await;
    read_id(&client, "12").await;
    wait_for_log(&client, &["miss"]).await;
    client.close().await.unwrap();
}

/// Marks the page (a mark only this very page has: a reload would not
/// keep it), then goes to another page of the same site.
async fn leave_for_another_page(client: &Client, server: &Server) {
    client
        .execute("window.e2eKept = true; return null;", vec![])
        .await
        .unwrap();
    client
        .goto(&format!("http://{}/healthz", server.addr))
        .await
        .unwrap();
}

/// Goes back, and checks the page shown is the one left (restored from
/// the back-forward cache, not loaded again), and live.
async fn come_back_to_the_same_page(client: &Client) {
    client.back().await.unwrap();
    e2e::wait_live(client).await;
    let kept = client
        .execute("return window.e2eKept === true;", vec![])
        .await
        .unwrap();
    assert_eq!(
        kept,
        serde_json::Value::Bool(true),
        "the page came back from the back-forward cache, not loaded again"
    );
}

/// A page the reader leaves can stay alive in the browser's back-forward
/// cache, socket and all (Chromium keeps it for minutes). Put away, it
/// lets its sandbox go all the same: nobody watches it any more, so the
/// sandbox (and a redis-server of its own) can be reclaimed. Shown again,
/// the same page, not a new load, is live and reads work.
#[tokio::test]
async fn a_page_the_browser_puts_away_lets_its_sandbox_go_and_comes_back_live() {
    let (server, _driver, client) = start_page("e2e-away", |c| c.db_latency_ms = 5).await;
    let sandbox = shared::SandboxId::parse("e2e-away").unwrap();
    let watchers = || server.backend.sandbox(&sandbox).map_or(0, |s| s.watchers());
    assert_eq!(watchers(), 1);
    leave_for_another_page(&client, &server).await;
    wait_for(&client, "the left page to stop watching", WAIT, || async {
        (watchers() == 0).then_some(())
    })
    .await;

    come_back_to_the_same_page(&client).await;
    assert_eq!(watchers(), 1);
    read_id(&client, "12").await;
    wait_for_log(&client, &["miss"]).await;
    client.close().await.unwrap();
}

/// The same with a sandbox that has a redis-server of its own, reclaimed
/// while its page was away (after a second here, two minutes by default):
/// back, the page gets a new sandbox with a server of its own, not the
/// shared Redis in its place.
#[tokio::test]
async fn a_page_back_after_its_private_sandbox_was_reclaimed_gets_a_server_of_its_own_again() {
    let server = Server::start(|c| c.private_redis_idle_secs = Some(1)).await;
    let driver = Driver::start();
    let client = driver.browser(1280, 900).await;
    client
        .goto(&format!("http://{}/?redis=private", server.addr))
        .await
        .unwrap();
    e2e::wait_live(&client).await;
    let own = |t: &str| t.starts_with("Redis: its own redis-server");
    wait_for_text(&client, "[data-testid=redis-placement]", "its own server", own).await;
    leave_for_another_page(&client, &server).await;
    wait_for(&client, "the private sandbox to be reclaimed", WAIT, || async {
        server.backend.sandboxes.is_empty().then_some(())
    })
    .await;

    come_back_to_the_same_page(&client).await;
    // (Live means greeted: the placement is the new sandbox's.)
    let placement = text_of(&client, "[data-testid=redis-placement]").await;
    assert!(placement.as_deref().is_some_and(own), "{placement:?}");
    client.close().await.unwrap();
}

/// With "TTL only", an update leaves the old copy in Redis and the
/// divergence view flags it; with "delete on write" the next update leaves
/// nothing stale.
#[tokio::test]
async fn a_write_under_ttl_only_leaves_a_stale_copy_that_is_flagged() {
    let (server, _driver, client) = start_page("e2e-write", |c| c.db_latency_ms = 5).await;
    set_speed(&client, "4").await;
    select(&client, "[data-testid=strategy]", "ttl-only").await;

    read_id(&client, "3").await;
    wait_for_log(&client, &["miss"]).await;
    click(&client, "[data-testid=check-divergence]").await;
    wait_for_text(
        &client,
        "[data-testid=divergence-summary]",
        "the first check",
        |t| t.contains("match"),
    )
    .await;

    let name = client.find(Locator::Css("[data-testid=new-name]")).await.unwrap();
    name.send_keys("Renamed In Browser").await.unwrap();
    click(&client, "[data-testid=update]").await;
    wait_for_log(&client, &["written", "miss"]).await;
    let summary = wait_for_text(
        &client,
        "[data-testid=divergence-summary]",
        "the stale copy to be flagged",
        |t| t.contains("stale"),
    )
    .await;
    assert!(summary.starts_with("1 of 1"), "{summary}");
    e2e::review_screenshot(&client, "divergence-stale", "[data-testid=divergence-summary]").await;
    let row = text_of(&client, "tr.stale").await.unwrap();
    assert!(row.contains("Renamed In Browser (version 2)"), "{row}");
    let write = text_of(&client, "[data-testid=write-result]").await.unwrap();
    assert!(write.contains("may see the old value"), "{write}");

    select(&client, "[data-testid=strategy]", "delete-on-write").await;
    wait_for(&client, "the new strategy to apply", WAIT, || async {
        (server
            .backend
            .sandbox(&shared::SandboxId::parse("e2e-write").unwrap())
            .unwrap()
            .settings()
            .write_strategy
            == shared::WriteStrategy::DeleteOnWrite)
            .then_some(())
    })
    .await;
    click(&client, "[data-testid=update]").await;
    wait_for_text(
        &client,
        "[data-testid=divergence-summary]",
        "nothing stale after delete on write",
        |t| t.contains("Nothing is cached"),
    )
    .await;
    client.close().await.unwrap();
}

/// The preset race leaves a stale value flagged in red; with leases the
/// same race leaves nothing stale.
#[tokio::test]
async fn the_preset_race_is_stale_without_a_fix_and_fresh_with_leases() {
    let (server, _driver, client) = start_page("e2e-race", |c| c.db_latency_ms = 5).await;

    click(&client, "[data-testid=run-race]").await;
    let verdict = wait_for_text(&client, "[data-testid=race-verdict]", "the race's verdict", |t| {
        t.starts_with("Stale")
    })
    .await;
    assert!(verdict.contains("no protection"), "{verdict}");
    let cached = text_of(&client, "[data-testid=race-cached]").await.unwrap();
    assert!(cached.contains("(version 1)"), "{cached}");
    assert!(attr_of(&client, "[data-testid=race-verdict]", "class")
        .await
        .unwrap()
        .contains("stale"));
    e2e::review_screenshot(&client, "race-stale", "[data-testid=race-verdict]").await;

    select(&client, "[data-testid=race-fix]", "lease").await;
    let sandbox = shared::SandboxId::parse("e2e-race").unwrap();
    wait_for(&client, "leases to be on", WAIT, || async {
        (server.backend.sandbox(&sandbox).unwrap().settings().race_fix == shared::RaceFix::Lease)
            .then_some(())
    })
    .await;
    click(&client, "[data-testid=run-race]").await;
    let verdict = wait_for_text(
        &client,
        "[data-testid=race-verdict]",
        "the verdict with leases",
        |t| t.starts_with("Nothing stale"),
    )
    .await;
    assert!(verdict.contains("leases"), "{verdict}");
    e2e::review_screenshot(&client, "race-leases", "[data-testid=race-verdict]").await;
    client.close().await.unwrap();
}

/// Step-through by hand: a read paused before its store waits for the
/// learner's "Continue", then finishes as a miss.
#[tokio::test]
async fn a_read_can_be_paused_and_continued_by_hand() {
    let (_server, _driver, client) = start_page("e2e-step", |c| c.db_latency_ms = 5).await;
    click(&client, "[data-testid=pause-store]").await;
    read_id(&client, "5").await;
    let paused = wait_for(&client, "the read to pause", WAIT, || async {
        text_of(&client, "[data-testid=paused]").await
    })
    .await;
    assert!(
        paused.contains("read users/5") && paused.contains("Store in Redis"),
        "{paused}"
    );
    assert!(log_outcomes(&client).await.is_empty(), "not finished yet");
    e2e::review_screenshot(&client, "paused-read", "[data-testid=paused]").await;
    click(&client, "[data-testid=paused] button").await;
    wait_for_log(&client, &["miss"]).await;
    client.close().await.unwrap();
}

/// Near caches on three instances: B answers from its own memory; with
/// B's link cut, a write on A misses B, whose next read is a stale near hit;
/// reconnecting B clears its near cache.
#[tokio::test]
async fn a_cut_pubsub_link_leaves_a_stale_near_copy_until_reconnect() {
    let (server, _driver, client) = start_page("e2e-near", |c| c.db_latency_ms = 5).await;
    set_speed(&client, "4").await;
    click(&client, "[data-testid=near-cache]").await;
    let sandbox = shared::SandboxId::parse("e2e-near").unwrap();
    wait_for(&client, "all three subscribed", WAIT, || async {
        let fleet = server.backend.sandbox(&sandbox).unwrap().fleet().states();
        fleet.iter().all(|i| i.subscribed).then_some(())
    })
    .await;
    select(&client, "[data-testid=target-instance]", "B").await;
    read_id(&client, "6").await;
    wait_for_log(&client, &["miss"]).await;
    read_id(&client, "6").await;
    wait_for_log(&client, &["near hit", "miss"]).await;

    click(&client, "[data-testid=link-B]").await;
    wait_for_text(
        &client,
        "[data-testid=instance-B]",
        "B's link to show as cut",
        |t| t.contains("link cut"),
    )
    .await;
    select(&client, "[data-testid=target-instance]", "A").await;
    let name = client.find(Locator::Css("[data-testid=new-name]")).await.unwrap();
    name.send_keys("Changed On A").await.unwrap();
    click(&client, "[data-testid=update]").await;
    wait_for_text(&client, "[data-testid=write-result]", "the write's result", |t| {
        t.contains("deleted")
    })
    .await;
    // A and C received the invalidation; B, cut off, did not.
    for (instance, received) in [("A", "1 received"), ("C", "1 received")] {
        wait_for_text(
            &client,
            &format!("[data-testid=instance-{instance}]"),
            "the invalidation to arrive",
            |t| t.contains(received),
        )
        .await;
    }
    let b = text_of(&client, "[data-testid=instance-B]").await.unwrap();
    assert!(b.contains("0 received"), "{b}");
    e2e::review_screenshot(&client, "instances-cut", "[data-testid=instance-B]").await;

    select(&client, "[data-testid=target-instance]", "B").await;
    read_id(&client, "6").await;
    wait_for_log(&client, &["near hit", "written", "near hit", "miss"]).await;
    let result = text_of(&client, "[data-testid=result]").await.unwrap();
    assert!(
        !result.contains("Changed On A"),
        "B served its stale copy: {result}"
    );

    click(&client, "[data-testid=link-B]").await;
    wait_for_text(&client, "[data-testid=instance-B]", "B to resubscribe", |t| {
        t.contains("subscribed") && !t.contains("cut")
    })
    .await;
    read_id(&client, "6").await;
    wait_for(&client, "a fresh read on B", WAIT, || async {
        log_outcomes(&client)
            .await
            .first()
            .filter(|o| *o == "hit" || *o == "miss")
            .cloned()
    })
    .await;
    client.close().await.unwrap();
}

/// The stampede lab fills its comparison table: without a defence every
/// request loads, with the Redis lock exactly one does.
#[tokio::test]
async fn firing_herds_fills_the_comparison_table() {
    let (_server, _driver, client) = start_page("e2e-herd", |c| c.db_latency_ms = 300).await;
    let requests = client
        .find(Locator::Css("[data-testid=herd-requests]"))
        .await
        .unwrap();
    requests.clear().await.unwrap();
    requests.send_keys("100").await.unwrap();
    click(&client, "[data-testid=fire-herd]").await;
    wait_for(&client, "the first row", WAIT, || async {
        text_of(&client, "[data-testid=herd-row]").await
    })
    .await;
    select(&client, "[data-testid=herd-defence]", "redis-lock").await;
    click(&client, "[data-testid=fire-herd]").await;
    let rows = herd_rows(&client, 2).await;
    // Newest first: the lock, then no defence.
    assert!(rows[0].starts_with("Redis lock · cold 100 1 99"), "{rows:?}");
    assert!(rows[1].starts_with("no defence · cold 100 100 0"), "{rows:?}");
    assert!(text_of(&client, "[data-testid=latency-chart]")
        .await
        .is_some_and(|t| t.contains("Redis lock")));
    // The diagram draws the herd as counts on its edges: all to the lock,
    // one on to the database, the rest handed the value.
    let count = |edge: &'static str| {
        let client = client.clone();
        async move { text_of(&client, &format!("[data-edge='{edge}'] .herd-count")).await }
    };
    assert_eq!(count("check_cache->lock").await.as_deref(), Some("×100"));
    assert_eq!(count("lock->query_database").await.as_deref(), Some("×1"));
    assert_eq!(count("lock->return_cached").await.as_deref(), Some("×99"));
    e2e::review_screenshot(&client, "herd-diagram", "[data-testid=diagram]").await;

    // Around an expiry, stale-while-revalidate refreshes once and serves
    // the stale value meanwhile.
    select(&client, "[data-testid=herd-timing]", "at_expiry").await;
    select(&client, "[data-testid=herd-defence]", "stale-while-revalidate").await;
    click(&client, "[data-testid=fire-herd]").await;
    let newest = herd_rows(&client, 3).await.remove(0);
    assert!(
        newest.starts_with("stale-while-revalidate · at expiry 100 1 "),
        "{newest}"
    );
    e2e::review_screenshot(&client, "stampede", "[data-testid=latency-chart]").await;
    client.close().await.unwrap();
}

/// On a phone-sized screen the wide results tables (eleven figures a
/// herd, ten a pattern) show each row as a block of labelled figures:
/// the figure a lesson asks about (failed requests, writes lost in a
/// crash) is on screen without scrolling sideways.
#[tokio::test]
async fn wide_results_fit_a_phone_screen() {
    let server = Server::start(|c| c.db_latency_ms = 5).await;
    let driver = Driver::start();
    let client = driver.browser(390, 900).await;
    open(&client, &server, "e2e-phone").await;
    type_into(&client, "herd-requests", "20").await;
    click(&client, "[data-testid=fire-herd]").await;
    herd_rows(&client, 1).await;
    click(&client, "[data-testid=compare-patterns]").await;
    e2e::texts_of(&client, "[data-testid=pattern-row]", 4).await;
    for (table, cell) in [
        ("herd-table", "td.failed-count"),
        ("patterns-table", "[data-testid=lost-writes]"),
    ] {
        let fits = client
            .execute(
                "const table = document.querySelector(`[data-testid=${arguments[0]}]`);
                 const wrap = table.closest('.table-wrap');
                 const cell = table.querySelector(arguments[1]);
                 const right = cell.getBoundingClientRect().right;
                 return [wrap.scrollWidth - wrap.clientWidth, right - window.innerWidth,
                         getComputedStyle(cell, '::before').content];",
                vec![table.into(), cell.into()],
            )
            .await
            .unwrap();
        assert!(
            fits[0].as_i64().is_some_and(|w| w <= 0),
            "{table} scrolls sideways: {fits}"
        );
        assert!(
            fits[1].as_f64().is_some_and(|x| x <= 0.0),
            "{table}'s {cell} is off screen: {fits}"
        );
        assert!(
            fits[2].as_str().is_some_and(|c| c.len() > 2),
            "{table}'s {cell} has no label: {fits}"
        );
    }
    e2e::review_screenshot(&client, "phone-herd-table", "[data-testid=herd-table]").await;
    client.close().await.unwrap();
}

/// The stampede defence is a sandbox setting like any other: chosen in the
/// settings, it protects the page's ordinary reads, and the Lock box, faded
/// while no policy uses it, carries the read's lock commands.
#[tokio::test]
async fn choosing_the_lock_policy_routes_ordinary_reads_through_the_lock() {
    let (_server, _driver, client) = start_page("e2e-lock", |c| c.db_latency_ms = 5).await;
    assert!(
        node_class(&client, "lock").await.contains("off"),
        "faded while unused"
    );
    select(&client, "[data-testid=stampede]", "lock").await;
    wait_for(&client, "the Lock box to be drawn in full", WAIT, || async {
        (!node_class(&client, "lock").await.contains("off")).then_some(())
    })
    .await;
    set_speed(&client, "4").await;
    read_id(&client, "8").await;
    wait_for_log(&client, &["miss"]).await;
    wait_for_active(&client, "return_loaded").await;
    let steps = text_of(&client, "[data-testid=steps]").await.unwrap();
    assert!(steps.contains("SET cache:e2e-lock:user:8#lock"), "{steps}");
    assert!(
        steps.contains("PUBLISH cache:e2e-lock:filled"),
        "the holder hands over: {steps}"
    );
    e2e::review_screenshot(&client, "lock-read", "[data-testid=diagram]").await;
    client.close().await.unwrap();
}

/// In hosted mode (behind its Content-Security-Policy) a page that names
/// no sandbox is given a new one with an unguessable name; a reload keeps
/// it, with its log; "Reset this sandbox" puts it back as it started.
#[tokio::test]
async fn a_hosted_page_gets_a_private_sandbox_keeps_it_on_reload_and_can_reset_it() {
    let server = Server::start(|c| {
        c.hosted = true;
        c.db_latency_ms = 5;
    })
    .await;
    let driver = Driver::start();
    let client = driver.browser(1280, 800).await;
    client.goto(&format!("http://{}/", server.addr)).await.unwrap();
    let badge = wait_for_text(&client, "[data-testid=link]", "a sandbox from the server", |t| {
        t.starts_with("Live · sandbox ")
    })
    .await;
    let sandbox = badge.trim_start_matches("Live · sandbox ").to_string();
    assert!(sandbox.starts_with('s') && sandbox.len() == 27, "{sandbox}");
    let curl = text_of(&client, "[data-testid=curl]").await.unwrap();
    assert!(curl.contains(&format!("?sandbox={sandbox}")), "{curl}");

    set_speed(&client, "4").await;
    read_id(&client, "7").await;
    wait_for_log(&client, &["miss"]).await;
    read_id(&client, "7").await;
    wait_for_log(&client, &["hit", "miss"]).await;

    client.refresh().await.unwrap();
    let again = wait_for_text(&client, "[data-testid=link]", "the page to reconnect", |t| {
        t.starts_with("Live · sandbox ")
    })
    .await;
    assert_eq!(again, badge, "a reload keeps the sandbox");
    wait_for_log(&client, &["hit", "miss"]).await;
    assert_eq!(
        server.backend.sandboxes.len(),
        1,
        "no second sandbox for a reload"
    );

    click(&client, "[data-testid=reset]").await;
    wait_for_log(&client, &[]).await;
    let notice = wait_for_text(&client, "[role=alert]", "the reset notice", |t| {
        t.contains("reset")
    })
    .await;
    assert!(notice.contains("seed data"), "{notice}");
    assert_eq!(
        text_of(&client, "[data-testid=reads]").await.as_deref(),
        Some("0")
    );
    read_id(&client, "7").await;
    wait_for_log(&client, &["miss"]).await;
    e2e::review_screenshot(&client, "hosted-private-sandbox", "[data-testid=stats]").await;
    client.close().await.unwrap();
}

/// At a limit the page says which, and keeps trying: here the playground
/// is full (one sandbox at most), so a second reader is told so.
#[tokio::test]
async fn a_full_playground_tells_the_reader_and_keeps_trying() {
    let server = Server::start(|c| {
        c.hosted = true;
        c.max_sandboxes = Some(1);
    })
    .await;
    let driver = Driver::start();
    let first = driver.browser(1280, 800).await;
    first.goto(&format!("http://{}/", server.addr)).await.unwrap();
    wait_for_text(&first, "[data-testid=link]", "the first reader's sandbox", |t| {
        t.starts_with("Live · sandbox ")
    })
    .await;
    let second = driver.browser(1280, 800).await;
    second.goto(&format!("http://{}/", server.addr)).await.unwrap();
    let notice = wait_for_text(&second, "[role=alert]", "the page to say it is full", |t| {
        t.contains("full")
    })
    .await;
    assert!(notice.contains("try again"), "{notice}");
    // Refused for now, not a broken link: the badge says so while waiting.
    wait_for_text(&second, "[data-testid=link]", "the page to retry", |t| {
        t.starts_with("Busy: not connected · retrying in ")
    })
    .await;
    e2e::review_screenshot(&second, "playground-full", "[role=alert]").await;
    first.close().await.unwrap();
    second.close().await.unwrap();
}

/// More reads than a page can animate: the server folds them into
/// summaries, and the page draws them like a herd, every untraced read
/// counted once on the arrow out of the request, with the flood's rate.
#[tokio::test]
async fn a_flood_of_reads_is_drawn_as_counts() {
    let (server, _driver, client) = start_page("e2e-flood", |_| {}).await;
    // Reads until 300 went untraced, however fast the machine is (the
    // sandbox draws 50 a second); bounded all the same.
    let (mut untraced, mut reads) = (0, 0);
    while untraced < 300 {
        let path = format!("/api/v1/users/{}?sandbox=e2e-flood", reads % 5 + 1);
        let response = http_get(server.addr, &path).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        untraced += usize::from(response.contains("\"trace_id\":null"));
        reads += 1;
        assert!(reads < 20_000, "only {untraced} of {reads} reads went untraced");
    }
    let said = wait_for_text(&client, "[data-testid=untraced]", "the flood's summary", |t| {
        t.starts_with(&format!("{untraced} read(s)")) && t.contains("Latest flood")
    })
    .await;
    assert!(said.contains("reads/s"), "{said}");
    let drawn = text_of(&client, "[data-edge='request->check_cache'] .herd-count").await;
    assert_eq!(drawn, Some(format!("×{untraced}")), "{said}");
    // The log stays bounded whatever came in.
    let entries = client
        .find_all(Locator::Css("[data-testid=log] .entry"))
        .await
        .unwrap();
    assert!(entries.len() <= LOG_LIMIT, "{} log entries", entries.len());
    e2e::review_screenshot(&client, "flood-diagram", "[data-testid=diagram]").await;
    client.close().await.unwrap();
}

/// A database with two slow connections, set from the address: a herd
/// with no defence is turned away (the table says how many failed), the
/// Redis lock gets through with one load.
#[tokio::test]
async fn a_saturated_database_fails_a_herd_and_the_lock_spares_it() {
    let server = Server::start(|_| {}).await;
    let driver = Driver::start();
    let client = driver.browser(1280, 800).await;
    client
        .goto(&format!(
            "{}&db_ms=1000&db_conns=2&db_wait=100",
            server.page("e2e-saturated")
        ))
        .await
        .unwrap();
    // The herd form is the stampede panel's, a module of its own: loaded
    // once the page is live.
    e2e::wait_live(&client).await;
    wait_for(&client, "the address's settings", WAIT, || async {
        let field = client
            .find(Locator::Css("[data-testid=db-connections]"))
            .await
            .ok()?;
        field.prop("value").await.ok().flatten().filter(|v| v == "2")
    })
    .await;
    let requests = client
        .find(Locator::Css("[data-testid=herd-requests]"))
        .await
        .unwrap();
    requests.clear().await.unwrap();
    requests.send_keys("20").await.unwrap();
    click(&client, "[data-testid=fire-herd]").await;
    let rows = herd_rows(&client, 1).await;
    // defence, requests, loads, from cache, failed
    assert!(rows[0].starts_with("no defence · cold 20 2 0 18"), "{rows:?}");
    select(&client, "[data-testid=herd-defence]", "redis-lock").await;
    click(&client, "[data-testid=fire-herd]").await;
    let rows = herd_rows(&client, 2).await;
    assert!(rows[0].starts_with("Redis lock · cold 20 1 19 0"), "{rows:?}");
    e2e::review_screenshot(&client, "saturated-herds", "[data-testid=herd-table]").await;
    client.close().await.unwrap();
}

/// The steady load from the page: it says how skewed the keys are, runs,
/// reports progress and its end, and the charts fill with the hit ratio
/// and database queries as the hot keys get cached.
#[tokio::test]
async fn a_steady_load_runs_from_the_page_and_charts_the_hit_ratio() {
    let (_server, _driver, client) = start_page("e2e-load", |_| {}).await;
    for (field, value) in [("load-rate", "200"), ("load-seconds", "3"), ("load-keys", "20")] {
        let input = client
            .find(Locator::Css(&format!("[data-testid={field}]")))
            .await
            .unwrap();
        input.clear().await.unwrap();
        input.send_keys(value).await.unwrap();
    }
    let shape = text_of(&client, "[data-testid=load-shape]")
        .await
        .unwrap_or_default();
    assert!(shape.contains("hottest fifth"), "{shape}");
    click(&client, "[data-testid=start-load]").await;
    wait_for_text(&client, "[data-testid=load-status]", "the load to end", |t| {
        t == "ended: 600 operations sent"
    })
    .await;
    // Every read of the load is counted (the last summary follows the end
    // within a quarter of a second).
    wait_for_text(&client, "[data-testid=reads]", "600 reads counted", |t| {
        t == "600"
    })
    .await;
    let latest = wait_for_text(
        &client,
        "[data-testid=load-latest]",
        "a point on the charts",
        |t| t.starts_with("Last second"),
    )
    .await;
    assert!(latest.contains("hit ratio"), "{latest}");
    let lines = client
        .find_all(Locator::Css("[data-testid=load-charts] polyline"))
        .await
        .unwrap();
    assert_eq!(lines.len(), 2);
    // Latency with and without the cache, each with its quantiles.
    let distribution = wait_for(&client, "the latency distributions", WAIT, || async {
        text_of(&client, "[data-testid=latency-distribution]")
            .await
            .filter(|t| {
                t.contains("from the cache:") && t.contains("from the database:") && !t.contains("none yet")
            })
    })
    .await;
    assert!(distribution.contains("p99 ≤"), "{distribution}");
    e2e::review_screenshot(&client, "steady-load", "[data-testid=latency-distribution]").await;
    client.close().await.unwrap();
}

/// The key inspector from the page: the sandbox's cached users, each with
/// its TTL counting down, and the eviction policy.
#[tokio::test]
async fn the_key_inspector_lists_cached_keys_with_their_ttl() {
    let (server, _driver, client) = start_page("e2e-keys", |_| {}).await;
    for id in [1, 2] {
        let response = http_get(server.addr, &format!("/api/v1/users/{id}?sandbox=e2e-keys")).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
    click(&client, "[data-testid=inspect-keys]").await;
    let summary = wait_for(&client, "the key report", WAIT, || async {
        text_of(&client, "[data-testid=keys-summary]").await
    })
    .await;
    assert!(summary.starts_with("2 key(s); eviction policy "), "{summary}");
    let rows = client
        .find_all(Locator::Css("[data-testid=key-row]"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let first = rows[0].text().await.unwrap();
    assert!(first.starts_with("user:1 string"), "{first}");
    let ttl = text_of(&client, "[data-testid=key-ttl]")
        .await
        .unwrap_or_default();
    let seconds: u64 = ttl.trim_end_matches(" s").parse().unwrap_or(0);
    assert!((1..=60).contains(&seconds), "TTL shown as {ttl:?}");
    assert!(text_of(&client, "[data-testid=no-ttl-warning]").await.is_none());
    e2e::review_screenshot(&client, "keys", "[data-testid=keys-table]").await;
    client.close().await.unwrap();
}

/// Types `value` into the input with `data-testid=field`.
async fn type_into(client: &Client, field: &str, value: &str) {
    let input = client
        .find(Locator::Css(&format!("[data-testid={field}]")))
        .await
        .unwrap();
    input.clear().await.unwrap();
    input.send_keys(value).await.unwrap();
}

/// Waits until the fills table has `n` rows; returns the newest one's
/// (refused, evicted) counts.
async fn newest_fill(client: &Client, n: usize) -> (u64, u64) {
    wait_for(client, &format!("{n} fill rows"), WAIT, || async {
        let rows = client
            .find_all(Locator::Css("[data-testid=fill-row]"))
            .await
            .ok()?;
        let row = rows.get(n - 1)?;
        let cell = |css: &'static str| async move {
            row.find(Locator::Css(css))
                .await
                .ok()?
                .text()
                .await
                .ok()?
                .parse::<u64>()
                .ok()
        };
        Some((
            cell("[data-testid=fill-refused]").await?,
            cell("[data-testid=fill-evicted]").await?,
        ))
    })
    .await
}

/// The eviction lab from the page: on the shared Redis its controls are
/// read-only with the reason; in a sandbox with its own redis-server a
/// fill past a 2 MB limit under allkeys-lru is counted as evictions, and
/// under noeviction as refused stores, each told in words.
#[tokio::test]
async fn filling_memory_from_the_page_counts_evictions_or_refusals_by_policy() {
    let (server, _driver, client) = start_page("e2e-memory", |_| {}).await;
    let reason = wait_for(&client, "the read-only reason", WAIT, || async {
        text_of(&client, "[data-testid=memory-read-only]").await
    })
    .await;
    assert!(reason.contains("shares the playground's Redis"), "{reason}");
    let disabled = client
        .find(Locator::Css("fieldset.memory-fill"))
        .await
        .unwrap()
        .attr("disabled")
        .await
        .unwrap();
    assert!(disabled.is_some(), "the fill is off on the shared Redis");

    client
        .goto(&format!("http://{}/?redis=private", server.addr))
        .await
        .unwrap();
    let policy = wait_for(&client, "the own server's figures", WAIT, || async {
        text_of(&client, "[data-testid=memory-policy]").await
    })
    .await;
    assert_eq!(policy, "allkeys-lru");
    assert!(text_of(&client, "[data-testid=memory-read-only]").await.is_none());
    type_into(&client, "memory-max", "2").await;
    click(&client, "[data-testid=memory-apply]").await;
    wait_for_text(&client, "[data-testid=memory-used]", "the 2 MB limit", |t| {
        t.ends_with("of 2.0 MB")
    })
    .await;
    type_into(&client, "fill-keys", "3000").await;
    type_into(&client, "fill-reads", "1000").await;
    click(&client, "[data-testid=fill-run]").await;
    let (refused, evicted) = newest_fill(&client, 1).await;
    assert_eq!(refused, 0);
    assert!(evicted > 0, "3 MB of values past a 2 MB limit evict");
    let story = text_of(&client, "[data-testid=fill-story]")
        .await
        .unwrap_or_default();
    assert!(
        story.contains("Redis evicted") && story.contains("allkeys-lru"),
        "{story}"
    );
    let evicted_so_far = wait_for(&client, "the evictions in the figures", WAIT, || async {
        text_of(&client, "[data-testid=memory-evicted]")
            .await?
            .parse::<u64>()
            .ok()
            .filter(|&n| n >= evicted)
    })
    .await;
    assert!(evicted_so_far >= evicted);
    e2e::review_screenshot(&client, "eviction-redis-charts", "[data-testid=redis-charts]").await;
    e2e::review_screenshot(&client, "eviction-lab-figures", "[data-testid=memory-figures]").await;

    select(&client, "[data-testid=memory-policy-select]", "noeviction").await;
    let explained = text_of(&client, "[data-testid=memory-policy-explained]")
        .await
        .unwrap_or_default();
    assert!(explained.contains("refuses writes"), "{explained}");
    click(&client, "[data-testid=memory-apply]").await;
    wait_for_text(
        &client,
        "[data-testid=memory-policy]",
        "noeviction in force",
        |t| t == "noeviction",
    )
    .await;
    // New keys, so the full server must refuse them.
    type_into(&client, "fill-seed", "2").await;
    type_into(&client, "fill-keys", "4000").await;
    click(&client, "[data-testid=fill-run]").await;
    let (refused, evicted) = newest_fill(&client, 2).await;
    assert_eq!(evicted, 0);
    assert!(refused > 0, "a full server under noeviction refuses stores");
    let story = text_of(&client, "[data-testid=fill-story]")
        .await
        .unwrap_or_default();
    assert!(
        story.contains("noeviction evicts nothing") && story.contains("Every read still answered"),
        "{story}"
    );
    e2e::review_screenshot(&client, "eviction-lab", "[data-testid=fills-table]").await;
    client.close().await.unwrap();
}

/// Related keys from the keys card: price and stock with TTLs 0.5 s and
/// 2 s; after both change in the database a reader sees one new and one
/// old (red cells), the spread is flagged, and the end shows both new.
#[tokio::test]
async fn related_keys_with_different_ttls_are_seen_apart_and_flagged() {
    let (_server, _driver, client) = start_page("e2e-related", |_| {}).await;
    type_into(&client, "related-price", "0.5").await;
    type_into(&client, "related-stock", "2").await;
    click(&client, "[data-testid=run-related]").await;
    let story = wait_for(&client, "the related keys' story", WAIT, || async {
        text_of(&client, "[data-testid=related-story]").await
    })
    .await;
    assert!(
        story.contains("For about") && story.contains("over 50 %"),
        "{story}"
    );
    let mismatched = client
        .find_all(Locator::Css("[data-testid=related-samples] .mismatched"))
        .await
        .unwrap();
    assert!(!mismatched.is_empty());
    let last = client
        .find_all(Locator::Css("[data-testid=related-samples] .sample"))
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        last.attr("class").await.unwrap().as_deref(),
        Some("sample both-new")
    );
    e2e::review_screenshot(&client, "related-keys", "[data-testid=related-samples]").await;
    client.close().await.unwrap();
}

/// Redis's own figures reach the page every two seconds, and with a quiet
/// sandbox no alert fires.
#[tokio::test]
async fn redis_figures_are_shown_with_no_alert_when_healthy() {
    let (_server, _driver, client) = start_page("e2e-redis", |_| {}).await;
    let memory = wait_for(&client, "Redis's figures", WAIT, || async {
        text_of(&client, "[data-testid=redis-memory]").await
    })
    .await;
    assert!(memory.contains("MB") || memory.contains("KB"), "{memory}");
    let alerts = text_of(&client, "[data-testid=alerts]").await.unwrap_or_default();
    assert!(alerts.starts_with("No alert"), "{alerts}");
    // From the second sample on, the figures are charted over time.
    let captions = wait_for(&client, "the Redis charts", WAIT, || async {
        let charts = client
            .find_all(Locator::Css("[data-testid=redis-charts] figcaption"))
            .await
            .ok()?;
        let mut captions = Vec::new();
        for chart in charts {
            captions.push(chart.text().await.ok()?);
        }
        (captions.len() == 4).then_some(captions)
    })
    .await;
    assert!(
        captions[0].starts_with("memory (top "),
        "far below its limit: {captions:?}"
    );
    assert!(captions[2].starts_with("evictions/s"), "{captions:?}");
    e2e::review_screenshot(&client, "redis-figures", "[data-testid=redis-charts]").await;
    client.close().await.unwrap();
}

/// A diagnostics puzzle: it breaks the sandbox (keys cached with no TTL)
/// and runs a load; the checks then name the problem.
#[tokio::test]
async fn the_diagnostics_find_the_forgotten_ttl_puzzle() {
    let (_server, _driver, client) = start_page("e2e-diagnose", |_| {}).await;
    click(&client, "[data-testid=puzzle-no-ttl]").await;
    wait_for(&client, "the puzzle's load to read", WAIT, || async {
        let reads: u64 = text_of(&client, "[data-testid=reads]").await?.parse().ok()?;
        (reads >= 50).then_some(())
    })
    .await;
    click(&client, "[data-testid=run-diagnostics]").await;
    let findings = wait_for_text(&client, "[data-testid=findings]", "the memory finding", |t| {
        t.contains("have no TTL")
    })
    .await;
    assert!(
        findings.contains("Memory keeps growing: a problem."),
        "{findings}"
    );
    e2e::review_screenshot(&client, "diagnostics", "[data-testid=findings]").await;
    click(&client, "[data-testid=stop-load]").await;
    client.close().await.unwrap();
}

/// The settings' switches reach the sandbox: ticking "Forget the TTL"
/// turns it on for every watcher, unticking turns it off again.
#[tokio::test]
async fn the_settings_switches_change_the_sandbox() {
    let (server, _driver, client) = start_page("e2e-flags", |_| {}).await;
    let sandbox = shared::SandboxId::parse("e2e-flags").unwrap();
    let forgets = |on: bool| {
        let server = &server;
        let sandbox = &sandbox;
        move || async move { (server.backend.sandbox(sandbox).unwrap().settings().forget_ttl == on).then_some(()) }
    };
    click(&client, "[data-testid=forget-ttl]").await;
    wait_for(&client, "the TTL forgotten", WAIT, forgets(true)).await;
    e2e::review_screenshot(&client, "settings-flags", "[data-testid=mismatched-keys]").await;
    click(&client, "[data-testid=forget-ttl]").await;
    wait_for(&client, "the TTL back", WAIT, forgets(false)).await;
    client.close().await.unwrap();
}

/// Clicks "run the checks" until the findings say `wanted` (the load keeps
/// going, so a check run too early may not see it yet).
async fn diagnose_until(client: &Client, wanted: &str) -> String {
    wait_for(client, wanted, WAIT, || async {
        // A DOM click: the cards above grow as their figures arrive, and a
        // pointer click aimed a moment earlier can land on something else.
        client
            .execute(
                "document.querySelector('[data-testid=run-diagnostics]').click()",
                vec![],
            )
            .await
            .ok()?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        text_of(client, "[data-testid=findings]")
            .await
            .filter(|t| t.contains(wanted))
    })
    .await
}

/// The mismatched-keys puzzle: writers delete `users:N` while readers cache
/// `user:N`; the stale-data check finds cached keys that disagree with the
/// database and names both spellings from the write traces.
#[tokio::test]
async fn the_diagnostics_find_the_mismatched_keys_puzzle() {
    let (_server, _driver, client) = start_page("e2e-mismatched", |_| {}).await;
    click(&client, "[data-testid=puzzle-mismatched-keys]").await;
    let findings = diagnose_until(&client, "spell the key differently").await;
    assert!(findings.contains("Stale data: a problem."), "{findings}");
    assert!(
        findings.contains(":users:"),
        "the deleted spelling is named: {findings}"
    );
    e2e::review_screenshot(&client, "diagnostics-mismatched", "[data-testid=findings]").await;
    click(&client, "[data-testid=stop-load]").await;
    client.close().await.unwrap();
}

/// The slow-Redis and Redis-down puzzles break Redis through the fault
/// proxy under a load: the latency check finds reads slow outside their
/// database queries, the connection check finds reads that fell back. Each
/// puzzle starts from a reset sandbox: the second does not inherit the
/// first's slow Redis, nor its counters.
#[tokio::test]
async fn the_diagnostics_find_a_slow_redis_and_a_stopped_one() {
    let (_server, _driver, client) = start_page("e2e-slow-down", |_| {}).await;
    click(&client, "[data-testid=puzzle-slow-redis]").await;
    let findings = diagnose_until(&client, "High latency: a problem.").await;
    assert!(findings.contains("outside its database query"), "{findings}");
    assert!(findings.contains("Redis connection errors: fine."), "{findings}");

    click(&client, "[data-testid=puzzle-redis-down]").await;
    let findings = diagnose_until(&client, "Redis connection errors: a problem.").await;
    assert!(findings.contains("fell back to the database"), "{findings}");
    let headline = wait_for_text(&client, "[data-testid=fault-headline]", "the fault card", |t| {
        t.contains("stopped")
    })
    .await;
    assert!(
        !headline.contains("slowed"),
        "the reset mended the slow Redis: {headline}"
    );
    e2e::review_screenshot(&client, "diagnostics-redis-down", "[data-testid=findings]").await;
    click(&client, "[data-testid=stop-load]").await;
    client.close().await.unwrap();
}

/// The full-memory puzzle, on a redis-server of its own: Redis is filled
/// under noeviction; the memory check names the policy as the reason new
/// values are refused. On the shared Redis the puzzle is off.
#[tokio::test]
async fn the_diagnostics_find_the_full_memory_puzzle() {
    let (server, _driver, client) = start_page("e2e-full", |_| {}).await;
    wait_for(&client, "the memory card", WAIT, || async {
        text_of(&client, "[data-testid=memory-policy]").await
    })
    .await;
    let enabled = client
        .find(Locator::Css("[data-testid=puzzle-full-memory]"))
        .await
        .unwrap()
        .is_enabled()
        .await
        .unwrap();
    assert!(!enabled, "no filling the shared Redis");
    client
        .goto(&format!("http://{}/?redis=private", server.addr))
        .await
        .unwrap();
    e2e::wait_enabled(&client, "[data-testid=puzzle-full-memory]").await;
    click(&client, "[data-testid=puzzle-full-memory]").await;
    let findings = diagnose_until(&client, "Its policy is noeviction").await;
    assert!(
        findings.contains("Memory keeps growing: a problem."),
        "{findings}"
    );
    click(&client, "[data-testid=stop-load]").await;
    client.close().await.unwrap();
}

/// With Redis stopped, the Redis card says it did not answer, while the
/// page's notice stays free for what the learner does (the card polls in
/// the background every two seconds).
#[tokio::test]
async fn a_stopped_redis_is_reported_in_the_redis_card_not_as_a_page_notice() {
    let (mut server, _driver, client) = start_page("e2e-redis-down", |_| {}).await;
    wait_for(&client, "Redis's figures", WAIT, || async {
        text_of(&client, "[data-testid=redis-memory]").await
    })
    .await;
    server.stop_redis();
    let said = wait_for(&client, "the card's error", WAIT, || async {
        text_of(&client, "[data-testid=redis-error]").await
    })
    .await;
    assert!(said.starts_with("Redis did not answer"), "{said}");
    assert!(
        text_of(&client, ".notice").await.is_none(),
        "no page notice for a background poll"
    );
    e2e::review_screenshot(&client, "redis-down", "[data-testid=redis-figures]").await;
    client.close().await.unwrap();
}

/// The fault lab from the page (issue: fault lab): with the breaker on,
/// "Stop Redis" makes reads fall back (the cache error animates) and the
/// breaker opens (its box is drawn, its state shown); "Start it" brings
/// hits back.
#[tokio::test]
async fn stopping_redis_from_the_page_opens_the_breaker_and_starting_it_brings_hits_back() {
    let (_server, _driver, client) = start_page("e2e-faults", |_| {}).await;
    switch_on(&client, "breaker").await;
    set_speed(&client, "4").await;
    read_id(&client, "42").await;
    wait_for_log(&client, &["miss"]).await;
    click(&client, "[data-testid=stop-redis]").await;
    let headline = fault_headline(&client, "stopped").await;
    assert!(headline.contains("this sandbox only"), "{headline}");
    // Five failures in a row open a breaker; each instance has its own,
    // and reads take turns: fifteen reads open all three.
    for _ in 0..16 {
        read_id(&client, "42").await;
    }
    // Each instance's breaker opened (by the time the page asks, one may
    // be half-open already: its two seconds are short). On a loaded
    // machine a read may still be on its way, so read on until all three
    // say so: bounded by the wait, not by a count.
    wait_for(&client, "the breakers to open", WAIT, || async {
        let opened = text_of(&client, "[data-testid=breakers]")
            .await
            .filter(|t| t.matches("(opened").count() == 3);
        if opened.is_none() {
            read_id(&client, "42").await;
        }
        opened
    })
    .await;
    // With every breaker open, reads pass the breaker box (a refused
    // command is drawn as a failed step, in red): read until one is drawn
    // there (a breaker whose two seconds ran out lets a probe through
    // Redis first). All from one instance, so that a read follows its
    // breaker's opening within the two seconds even on a loaded machine
    // (taking turns, each instance's next read came too late there).
    select(&client, "[data-testid=target-instance]", "A").await;
    wait_for(&client, "the breaker box to be reached", WAIT, || async {
        if node_class(&client, "breaker").await.contains("failed") {
            return Some(());
        }
        read_id(&client, "42").await;
        None
    })
    .await;
    assert!(log_outcomes(&client)
        .await
        .iter()
        .take(16)
        .all(|o| o == "fallback"));
    e2e::review_screenshot(&client, "faults-breaker-open", "[data-node=breaker]").await;
    e2e::review_screenshot(&client, "faults-card", "[data-testid=faults]").await;

    click(&client, "[data-testid=start-redis]").await;
    fault_headline(&client, "reachable").await;
    // Each breaker lets a probe through after its two seconds: reading
    // until a hit shows is bounded by the wait, not by a count.
    wait_for(&client, "a hit after the outage", WAIT, || async {
        read_id(&client, "42").await;
        log_outcomes(&client)
            .await
            .first()
            .filter(|o| *o == "hit")
            .cloned()
    })
    .await;
    let timeline = text_of(&client, "[data-testid=fault-timeline]")
        .await
        .unwrap_or_default();
    assert!(
        timeline.contains("Redis stopped") && timeline.contains("Redis back"),
        "{timeline}"
    );
    client.close().await.unwrap();
}

/// A dead connection after an outage, from the page: with "Send a command
/// again when its connection was dead" on, the first read after Redis is
/// started again is a hit, and its steps show the dead try, then the
/// answer (the connection the client made while Redis was stopped was
/// dropped by the fault proxy). Without it, that read would fall back
/// (`cache-aside`'s test of `resend_dropped` shows both).
#[tokio::test]
async fn the_first_read_after_an_outage_is_sent_again_on_a_new_connection() {
    let (_server, _driver, client) = start_page("e2e-resend", |_| {}).await;
    switch_on(&client, "resend-dropped").await;
    set_speed(&client, "4").await;
    // One instance, so that the read after the outage uses the connection
    // the read during it left behind.
    select(&client, "[data-testid=target-instance]", "A").await;
    // The first fault moves the instances onto the fault proxy: cutting
    // connections does that and breaks nothing, so the read that follows
    // connects through the proxy before the outage.
    click(&client, "[data-testid=cut-connections]").await;
    wait_for_text(
        &client,
        "[data-testid=fault-timeline]",
        "the instances on the proxy",
        |t| t.contains("connections to Redis cut"),
    )
    .await;
    read_id(&client, "42").await;
    wait_for_log(&client, &["miss"]).await;
    click(&client, "[data-testid=stop-redis]").await;
    fault_headline(&client, "stopped").await;
    read_id(&client, "42").await;
    wait_for_log(&client, &["fallback", "miss"]).await;
    click(&client, "[data-testid=start-redis]").await;
    fault_headline(&client, "reachable").await;
    read_id(&client, "42").await;
    wait_for_log(&client, &["hit", "fallback", "miss"]).await;
    // The steps drawn are the hit's once the animation reaches it (the
    // fallback's show a dead try too: during the outage both fail).
    let steps = wait_for_text(&client, "[data-testid=steps]", "the hit's steps", |t| {
        t.contains("· hit ·")
    })
    .await;
    assert!(
        steps.contains("sent again on a new connection"),
        "the hit's first try found its connection dead: {steps}"
    );
    assert_eq!(
        steps.matches("GET cache:e2e-resend:user:42").count(),
        2,
        "{steps}"
    );
    e2e::review_screenshot(&client, "resent-read", "[data-testid=steps]").await;
    client.close().await.unwrap();
}

/// Bad input is answered where the reader is looking:
/// - a number a setting refuses is not sent; the field says why beside it
///   and shows the setting as the sandbox has it again;
/// - a refusal from the back end for a card far down the page stays in
///   view, not at the top of a page scrolled away from it;
/// - an address naming no lesson says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_answered_where_the_reader_is() {
    // TTLs capped at an hour, as a hosted playground does.
    let (server, _driver, client) = start_page("badinput", |c| c.max_ttl_secs = Some(3_600)).await;
    let sandbox = shared::SandboxId::parse("badinput").unwrap();
    let ttl = || {
        server
            .backend
            .sandbox(&sandbox)
            .unwrap()
            .settings()
            .cache_ttl_secs
    };
    let before = ttl();
    let field = client
        .find(Locator::Css("[data-testid=cache-ttl]"))
        .await
        .unwrap();
    // Select all (Control+A), type over it, then Tab: one change event, as
    // a reader makes it (clearing the field first would be a change of its
    // own, to empty).
    let retype = |typed: &str| format!("\u{e009}a\u{e000}{typed}\u{e004}");
    for typed in ["-5", "1.5", "99999999"] {
        field.send_keys(&retype(typed)).await.unwrap();
        let said = wait_for_text(&client, "label.setting .help.error", "the refusal", |t| {
            t.contains(&format!("not “{typed}”"))
        })
        .await;
        assert!(said.contains(&format!("kept {before}")), "{said}");
        assert_eq!(
            e2e::value_of(&client, "[data-testid=cache-ttl]").await,
            Some(before.to_string())
        );
        assert_eq!(
            attr_of(&client, "[data-testid=cache-ttl]", "aria-invalid")
                .await
                .as_deref(),
            Some("true")
        );
    }
    assert_eq!(ttl(), before);
    // Nothing was sent: the back end would have refused 99999999 with a
    // message of its own.
    assert!(
        client.find(Locator::Css(".notice[role=alert]")).await.is_err(),
        "no refusal from the back end"
    );
    // A value the field takes and the back end refuses (over the cap):
    // the page's notice says why and the field shows the TTL in use again.
    field.send_keys(&retype("7200")).await.unwrap();
    let notice = wait_for_text(&client, ".notice[role=alert] span", "the cap", |t| {
        t.contains("at most 3600")
    })
    .await;
    assert!(notice.contains("not 7200"), "{notice}");
    wait_for(&client, "the field to show the TTL in use", WAIT, || async {
        (e2e::value_of(&client, "[data-testid=cache-ttl]").await == Some(before.to_string())).then_some(())
    })
    .await;
    assert_eq!(ttl(), before);
    click(&client, ".notice[role=alert] button").await;
    // A good value is sent, and the refusal goes.
    field.send_keys(&retype("120")).await.unwrap();
    wait_for(&client, "the new TTL", WAIT, || async {
        (ttl() == 120).then_some(())
    })
    .await;
    wait_for(&client, "the refusal to go", WAIT, || async {
        client
            .find(Locator::Css("label.setting .help.error"))
            .await
            .is_err()
            .then_some(())
    })
    .await;

    // The encodings card sits far down the page; the back end refuses a
    // user that does not exist, and the message is in view.
    let id = client
        .find(Locator::Css("[data-testid=encodings-id]"))
        .await
        .unwrap();
    id.clear().await.unwrap();
    id.send_keys("5000").await.unwrap();
    click(&client, "[data-testid=compare-encodings]").await;
    let notice = wait_for_text(&client, ".notice[role=alert] span", "the refusal", |t| {
        t.contains("5000")
    })
    .await;
    assert!(notice.contains("no record users/5000"), "{notice}");
    let seen = client
        .execute(
            "const r = document.querySelector('.notice[role=alert]').getBoundingClientRect(); \
             return [window.scrollY > 0, r.top >= 0 && r.bottom <= window.innerHeight];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        seen,
        serde_json::json!([true, true]),
        "scrolled down to the card, and the message is in view"
    );

    client
        .goto(&format!("http://{}/?lesson=nope&sandbox=badinput", server.addr))
        .await
        .unwrap();
    e2e::wait_live(&client).await;
    let said = text_of(&client, "[data-testid=unknown-lesson]")
        .await
        .unwrap_or_default();
    assert!(said.contains("no lesson “nope”"), "{said}");

    // A step the lesson does not have opens its first, and says so; an
    // older link's number still opens that step, and moving on writes the
    // step's id, which stays put when steps are added.
    client
        .goto(&format!(
            "http://{}/?lesson=null-values&step=99&sandbox=badinput",
            server.addr
        ))
        .await
        .unwrap();
    e2e::wait_live(&client).await;
    let said = text_of(&client, "[data-testid=unknown-step]")
        .await
        .unwrap_or_default();
    assert_eq!(
        said,
        "This lesson has no step “99” (it has 2): here is its first."
    );
    let title = text_of(&client, "#lesson-step-title").await.unwrap_or_default();
    assert_eq!(title, "The problem: misses that never end");
    click(&client, "[data-testid=lesson-continue]").await;
    e2e::wait_for(
        &client,
        "the next step's address",
        Duration::from_secs(30),
        || async {
            let address = client.current_url().await.ok()?;
            address
                .as_str()
                .contains("lesson=null-values&step=cache-not-found")
                .then_some(())
        },
    )
    .await;
    assert!(client
        .find(Locator::Css("[data-testid=unknown-step]"))
        .await
        .is_err());

    // An older link's number opens that step, and the address bar then
    // names it by its id, so a link copied from it stays put.
    client
        .goto(&format!(
            "http://{}/?lesson=stampede&step=5&sandbox=badinput",
            server.addr
        ))
        .await
        .unwrap();
    e2e::wait_live(&client).await;
    let title = text_of(&client, "#lesson-step-title").await.unwrap_or_default();
    assert_eq!(title, "Refresh early, before the key expires");
    let address = client.current_url().await.unwrap();
    assert!(
        address.as_str().contains("lesson=stampede&step=xfetch"),
        "{address}"
    );
}
