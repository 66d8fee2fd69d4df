//! The embed routes over real sockets: a click-to-load page per lesson step
//! with no script, the live page, the loader, and framing allowed on these
//! routes alone.

mod common;

use common::{header, http_get, serve, status_of};

#[tokio::test]
async fn a_lesson_page_loads_nothing_until_started_and_may_be_framed() {
    let t = common::start(|c| c.frame_ancestors = vec!["https://docs.example.com".into()]);
    let served = serve(&t).await;

    let page = http_get(served.addr, "/embed/null-values?step=2&theme=dark").await;
    assert_eq!(status_of(&page), 200, "{page}");
    assert!(
        page.contains("The fix: cache \"not found\" too")
            || page.contains("The fix: cache &quot;not found&quot; too"),
        "{page}"
    );
    // Click to load: no script, no WebAssembly, no socket before Start.
    assert!(!page.contains("<script"), "{page}");
    assert!(
        page.contains(r#"href="null-values/live?step=cache-not-found&amp;theme=dark""#),
        "{page}"
    );
    assert!(page.contains(r#"data-theme="dark""#));
    let csp = header(&page, "content-security-policy").unwrap();
    assert!(
        csp.ends_with(
            "frame-ancestors 'self' https://docs.example.com http://localhost:* http://127.0.0.1:*"
        ),
        "{csp}"
    );
    assert!(header(&page, "x-frame-options").is_none());

    // Every other route: framed by the playground alone.
    let api = http_get(served.addr, "/api/v1/users/1").await;
    let csp = header(&api, "content-security-policy").unwrap();
    assert!(csp.ends_with("frame-ancestors 'self'"), "{csp}");

    // The reader's input never reaches the page unescaped, and a step the
    // lesson does not have opens its first, saying so.
    let odd = http_get(
        served.addr,
        "/embed/basics?step=99&theme=%3Cscript%3E&autoheight=1",
    )
    .await;
    assert_eq!(status_of(&odd), 200);
    assert!(!odd.contains("<script"), "{odd}");
    assert!(
        odd.contains("basics/live?step=cold-read&amp;theme=auto&amp;autoheight=1"),
        "{odd}"
    );
    assert!(odd.contains("This lesson has no step “99”"), "{odd}");
    let typo = http_get(served.addr, "/embed/basics?step=%3Cb%3E").await;
    assert!(
        typo.contains("no step “&lt;b&gt;”") && !typo.contains("<b>"),
        "{typo}"
    );

    let unknown = http_get(served.addr, "/embed/%3Cb%3Enope?step=1").await;
    assert_eq!(status_of(&unknown), 404, "{unknown}");
    assert!(unknown.contains("&lt;b&gt;nope"), "{unknown}");
    assert!(
        unknown.contains("stampede"),
        "the known lessons are listed: {unknown}"
    );

    let loader = http_get(served.addr, "/embed.js").await;
    assert_eq!(status_of(&loader), 200);
    assert!(header(&loader, "content-type")
        .unwrap()
        .starts_with("text/javascript"));
    assert!(loader.contains("cache-aside-playground"));
}

#[tokio::test]
async fn hosted_only_the_configured_sites_may_frame_it() {
    let t = common::start(|c| c.hosted = true);
    let served = serve(&t).await;
    let page = http_get(served.addr, "/embed/basics").await;
    let csp = header(&page, "content-security-policy").unwrap();
    assert!(csp.ends_with("frame-ancestors 'self'"), "{csp}");
}

/// `--base-path /playground`: everything is served under the prefix, the
/// bare prefix redirects to it with a slash, nothing answers outside it.
#[tokio::test]
async fn under_a_base_path_everything_moves_with_it() {
    let t = common::start(|c| c.base_path = "/playground".into());
    let served = serve(&t).await;
    let bare = http_get(served.addr, "/playground").await;
    assert_eq!(status_of(&bare), 308, "{bare}");
    assert_eq!(header(&bare, "location"), Some("/playground/"));
    let read = http_get(served.addr, "/playground/api/v1/users/1?sandbox=default").await;
    assert_eq!(status_of(&read), 200, "{read}");
    assert_eq!(status_of(&http_get(served.addr, "/api/v1/users/1").await), 404);
    assert_eq!(
        status_of(&http_get(served.addr, "/playgroundx/api/v1/users/1").await),
        404
    );
    let embed = http_get(served.addr, "/playground/embed/ttl").await;
    assert_eq!(status_of(&embed), 200, "{embed}");
}
