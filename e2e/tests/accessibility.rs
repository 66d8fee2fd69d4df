//! axe-core on the playground, a lesson page and an embed page, in both
//! themes: zero violations. And the keyboard: the shortcuts can be turned
//! off, and a re-rendered list keeps the focus.

use std::time::Duration;

use e2e::{
    axe_violations, click, review_screenshot, run_experiment, text_of, wait_for, wait_for_text, wait_live,
    Driver, Server,
};
use fantoccini::{Client, Locator};

const WAIT: Duration = Duration::from_secs(60);

async fn assert_no_violations(client: &Client, what: &str) {
    let violations = axe_violations(client).await;
    assert!(violations.is_empty(), "{what}:\n{}", violations.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_pass_axe_in_both_themes() {
    let server = Server::start(|_| {}).await;
    let driver = Driver::start();
    let client = driver.browser(1280, 900).await;
    let base = format!("http://{}", server.addr);
    for theme in ["light", "dark"] {
        // Free play, after a read so the log, results and steps are drawn.
        client.goto(&format!("{base}/?theme={theme}")).await.unwrap();
        wait_live(&client).await;
        click(&client, "[data-testid=read]").await;
        wait_for_text(&client, "[data-testid=result]", "a read result", |t| {
            !t.is_empty()
        })
        .await;
        assert_no_violations(&client, &format!("the playground, {theme}")).await;
        review_screenshot(&client, &format!("playground-{theme}"), "[data-testid=diagram]").await;

        // A lesson step, run, with its question answered wrongly.
        client
            .goto(&format!("{base}/?lesson=stampede&step=1&theme={theme}"))
            .await
            .unwrap();
        wait_live(&client).await;
        run_experiment(&client).await;
        let input = client
            .find(Locator::Css("[data-testid=lesson-answer]"))
            .await
            .unwrap();
        input.send_keys("0").await.unwrap();
        click(&client, "[data-testid=check-answer]").await;
        assert_no_violations(&client, &format!("a lesson, {theme}")).await;
        review_screenshot(&client, &format!("lesson-{theme}"), "[data-testid=lesson]").await;

        // The embed's click-to-load page and its live page.
        client
            .goto(&format!("{base}/embed/race?step=2&theme={theme}"))
            .await
            .unwrap();
        assert_no_violations(&client, &format!("an embed's start page, {theme}")).await;
        review_screenshot(&client, &format!("embed-start-{theme}"), "main").await;
        click(&client, "[data-testid=start]").await;
        wait_live(&client).await;
        assert_no_violations(&client, &format!("an embedded lesson, {theme}")).await;
    }
}

/// WCAG 2.1.4: single-key shortcuts can be turned off; and a button that
/// re-renders its list keeps the keyboard focus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shortcuts_can_be_turned_off_and_focus_survives_a_rerender() {
    let server = Server::start(|_| {}).await;
    let driver = Driver::start();
    let client = driver.browser(1280, 900).await;
    client.goto(&format!("http://{}/", server.addr)).await.unwrap();
    wait_live(&client).await;
    let play_label = || async {
        client
            .find(Locator::Css("[data-testid=play]"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let space = "document.body.dispatchEvent(new KeyboardEvent('keydown', {key: ' ', bubbles: true}));";
    let before = play_label().await;
    client.execute(space, vec![]).await.unwrap();
    let toggled = wait_for(&client, "Space to toggle playback", WAIT, || async {
        let now = play_label().await;
        (now != before).then_some(now)
    })
    .await;
    // Off: Space does nothing; the button still works.
    click(&client, "[data-testid=shortcuts]").await;
    client.execute(space, vec![]).await.unwrap();
    click(&client, "[data-testid=play]").await;
    let after = play_label().await;
    assert_eq!(
        after, before,
        "only the click toggled it back (Space was off): {toggled} → {after}"
    );
    let keys = client
        .find(Locator::Css("[data-testid=play]"))
        .await
        .unwrap()
        .attr("aria-keyshortcuts")
        .await
        .unwrap();
    assert_eq!(keys, None, "no shortcut is announced once they are off");

    // "Cut link" updates the instance list; the focus stays on the button.
    click(&client, "[data-testid=near-cache]").await;
    e2e::wait_enabled(&client, "[data-testid=link-A]").await;
    click(&client, "[data-testid=link-A]").await;
    let focused = wait_for(&client, "the instance list to update", WAIT, || async {
        let cut = text_of(&client, "[data-testid=link-A]").await?;
        if !cut.contains("Reconnect") {
            return None;
        }
        client
            .execute(
                "return document.activeElement && document.activeElement.getAttribute('data-testid')",
                vec![],
            )
            .await
            .ok()
    })
    .await;
    assert_eq!(focused.as_str(), Some("link-A"));
}
