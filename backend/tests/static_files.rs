//! The front end's files: precompressed forms to browsers that accept
//! them, hashed assets cached for a year, the page revalidated.

mod common;

use common::{header, http, serve};

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[tokio::test]
async fn assets_are_sent_compressed_and_cached_by_their_hash() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = "frontend-0123456789abcdef_bg.wasm";
    std::fs::write(
        dir.path().join("index.html"),
        "<!doctype html><title>page</title>",
    )
    .unwrap();
    std::fs::write(dir.path().join(wasm), "RAW").unwrap();
    // Stand-ins whose bytes say which form was sent.
    std::fs::write(dir.path().join(format!("{wasm}.br")), "BROTLI").unwrap();
    std::fs::write(dir.path().join(format!("{wasm}.gz")), "GZIP").unwrap();
    let static_dir = dir.path().to_path_buf();
    let t = common::start(move |c| c.static_dir = static_dir);
    let served = serve(&t).await;
    let path = format!("/{wasm}");

    let br = http(served.addr, "GET", &path, &[("Accept-Encoding", "gzip, br")], "").await;
    assert_eq!(header(&br, "content-encoding"), Some("br"), "{br}");
    assert_eq!(body(&br), "BROTLI");
    assert_eq!(
        header(&br, "cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert!(header(&br, "vary").is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding")));
    assert_eq!(header(&br, "content-type"), Some("application/wasm"));

    let gz = http(served.addr, "GET", &path, &[("Accept-Encoding", "gzip")], "").await;
    assert_eq!(header(&gz, "content-encoding"), Some("gzip"));
    assert_eq!(body(&gz), "GZIP");

    let plain = http(served.addr, "GET", &path, &[], "").await;
    assert_eq!(header(&plain, "content-encoding"), None);
    assert_eq!(body(&plain), "RAW");

    let page = http(served.addr, "GET", "/", &[("Accept-Encoding", "br")], "").await;
    assert_eq!(header(&page, "cache-control"), Some("no-cache"), "{page}");
    assert!(body(&page).contains("<title>page</title>"));
}

#[test]
fn only_content_named_files_are_immutable() {
    use backend::http::cache_policy;
    let year = "public, max-age=31536000, immutable";
    assert_eq!(cache_policy("/frontend-15c228c8277aac45.js"), year);
    assert_eq!(
        cache_policy("/playground/frontend-15c228c8277aac45_bg.wasm"),
        year
    );
    assert_eq!(cache_policy("/style-fb058fef794345ec.css"), year);
    // The split front end's loader and modules (`cargo xtask split-wasm`).
    assert_eq!(cache_policy("/__wasm_split-e179f133c4de69bd.js"), year);
    assert_eq!(cache_policy("/memory_panel-45af0025a55e96b9.wasm"), year);
    assert_eq!(cache_policy("/chunk_12-b2da653855d0fba1.wasm"), year);
    assert_eq!(cache_policy("/chunk_12.wasm"), "no-cache");
    assert_eq!(cache_policy("/"), "no-cache");
    assert_eq!(cache_policy("/index.html"), "no-cache");
    assert_eq!(cache_policy("/my-file.js"), "no-cache");
}

/// The `sha256-…` source a CSP names for an inline script body.
fn script_hash(body: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(body.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[tokio::test]
async fn a_front_end_rebuilt_under_a_running_back_end_gets_a_policy_for_its_new_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let page = |script: &str| {
        format!("<!doctype html><html><head><script>{script}</script></head><body></body></html>")
    };
    let (old, new) = (
        "boot('frontend-1111111111111111')",
        "boot('frontend-2222222222222222')",
    );
    std::fs::write(dir.path().join("index.html"), page(old)).unwrap();
    let static_dir = dir.path().to_path_buf();
    let t = common::start(move |c| c.static_dir = static_dir);
    let served = serve(&t).await;
    let policy = |response: &str| {
        header(response, "content-security-policy")
            .unwrap_or_default()
            .to_string()
    };

    let before = http(served.addr, "GET", "/", &[], "").await;
    assert!(policy(&before).contains(&script_hash(old)), "{before}");

    // `trunk build` replaces the page while the back end runs.
    std::fs::write(dir.path().join("index.html"), page(new)).unwrap();
    for path in ["/", "/index.html", "/embed/basics/live"] {
        let after = http(served.addr, "GET", path, &[], "").await;
        assert!(body(&after).contains(new), "{path}: {after}");
        assert!(policy(&after).contains(&script_hash(new)), "{path}: {after}");
        assert!(!policy(&after).contains(&script_hash(old)), "{path}: {after}");
        // Framing stays as it was: by other sites only on the embed page.
        let framing = if path.starts_with("/embed/") {
            "frame-ancestors 'self' http://localhost:* http://127.0.0.1:*"
        } else {
            "frame-ancestors 'self'"
        };
        assert!(policy(&after).ends_with(framing), "{path}: {after}");
    }
}
