//! Embedding in documentation sites.
//!
//! - `GET /embed/{lesson}?step=ID&theme=light|dark|auto`: a static page, a
//!   picture of the step's diagram and a Start link. No WebAssembly, no
//!   WebSocket and no sandbox until the reader clicks: a documentation
//!   page with ten embedded lessons costs ten small HTML pages.
//! - `GET /embed/{lesson}/live`: the playground itself, in embed mode.
//! - `GET /embed.js`: a loader for host pages that turns
//!   `<cache-aside-playground lesson="..." step="...">` into the frame and
//!   applies the heights the frame posts (checking who sent them).
//!
//! These routes, and only these, may be framed by the configured parent
//! origins (CSP `frame-ancestors`); every other route only by itself.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use shared::lessons::{shows, Position, LESSONS};
use shared::Diagram;

use crate::access::{content_security_policy, page_with_policy};

/// The loader script for host pages.
const LOADER: &str = include_str!("embed.js");

/// What the embed routes need.
struct Pages {
    /// Where the built front end is: the live page is its `index.html` as
    /// it is when asked for (a rebuild under a running back end shows).
    static_dir: PathBuf,
    /// The origins that may frame the embed routes.
    frame_ancestors: Vec<String>,
    /// The CSP of the embed routes' own pages: framing by the configured
    /// parents.
    csp: HeaderValue,
}

/// The embed routes; `frame_ancestors` are the origins that may frame them.
pub fn routes(static_dir: &Path, frame_ancestors: &[String]) -> Router {
    let csp = content_security_policy(static_dir, frame_ancestors);
    let pages = Arc::new(Pages {
        static_dir: static_dir.to_path_buf(),
        frame_ancestors: frame_ancestors.to_vec(),
        csp: header_value(&csp),
    });
    let facade_pages = pages.clone();
    Router::new()
        .route(
            "/embed/{lesson}",
            get(move |lesson: UrlPath<String>, query: Query<EmbedQuery>| {
                let pages = facade_pages.clone();
                async move { facade(&pages, &lesson, &query) }
            }),
        )
        .route(
            "/embed/{lesson}/live",
            get(move |lesson: UrlPath<String>| {
                let pages = pages.clone();
                async move { live(&pages, &lesson) }
            }),
        )
        .route("/embed.js", get(loader))
}

/// The query of an embed address. Unknown values fall back to defaults.
#[derive(Debug, Default, Deserialize)]
pub struct EmbedQuery {
    step: Option<String>,
    theme: Option<String>,
    autoheight: Option<String>,
}

/// A policy as a header value; one that cannot be (it always can: it is
/// built from hashes and configured origins) still forbids framing.
fn header_value(csp: &str) -> HeaderValue {
    HeaderValue::from_str(csp).unwrap_or_else(|_| HeaderValue::from_static("frame-ancestors 'self'"))
}

/// A page of the embed routes under `csp`, revalidated on every visit.
fn framed(csp: HeaderValue, status: StatusCode, content_type: &'static str, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

fn unknown_lesson(pages: &Pages, lesson: &str) -> Response {
    let known: Vec<&str> = LESSONS.iter().map(|l| l.id).collect();
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>No such lesson</title></head>\
         <body><main><h1>No such lesson</h1><p>There is no lesson “{}”. The lessons are: {}.</p></main></body></html>",
        escape(&lesson.chars().take(40).collect::<String>()),
        known.join(", ")
    );
    framed(
        pages.csp.clone(),
        StatusCode::NOT_FOUND,
        "text/html; charset=utf-8",
        body,
    )
}

/// The click-to-load page of a lesson step.
fn facade(pages: &Pages, lesson: &str, query: &EmbedQuery) -> Response {
    let Some(at) = Position::from_query(lesson, query.step.as_deref()) else {
        return unknown_lesson(pages, lesson);
    };
    let theme = match query.theme.as_deref() {
        Some("dark") => "dark",
        Some("light") => "light",
        _ => "auto",
    };
    let mut live = format!("{}/live?step={}&theme={theme}", at.lesson().id, at.step().id);
    if query.autoheight.as_deref() == Some("1") {
        live.push_str("&autoheight=1");
    }
    let step = at.step();
    // A step the lesson does not have (a typo, an old number): its first,
    // said on the page so the page's author notices.
    let unknown = match query.step.as_deref() {
        Some(asked) if Position::names_no_step(lesson, Some(asked)) => format!(
            "<p class=\"small\" data-testid=\"unknown-step\">This lesson has no step “{}”: it opens at its first.</p>\n",
            escape(&asked.chars().take(40).collect::<String>())
        ),
        _ => String::new(),
    };
    let body = format!(
        r#"<!doctype html>
<html lang="en" data-theme="{theme}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{lesson_title} · Cache-aside playground</title>
<style>{STYLE}</style>
</head>
<body>
<main>
<p class="where">Cache-aside playground · lesson {number}: {lesson_title}</p>
{unknown}<h1>{step_title}</h1>
<p>{intro}</p>
{picture}
<p><a class="start" href="{live}" data-testid="start">Start the lesson</a></p>
<p class="small">Starting connects this frame to a live back end with a real Redis and a real database, and gives you a sandbox of your own. What you do in it is sent to that server; no cookies are used.</p>
</main>
</body>
</html>"#,
        lesson_title = escape(at.lesson().title),
        number = at.lesson + 1,
        step_title = escape(step.title),
        intro = escape(step.text.split("\n\n").next().unwrap_or_default()),
        picture = picture(step.parts),
        live = escape(&live),
    );
    framed(
        pages.csp.clone(),
        StatusCode::OK,
        "text/html; charset=utf-8",
        body,
    )
}

/// The playground in embed mode: the built front end, framed.
fn live(pages: &Pages, lesson: &str) -> Response {
    if Position::from_query(lesson, None).is_none() {
        return unknown_lesson(pages, lesson);
    }
    match page_with_policy(&pages.static_dir, &pages.frame_ancestors) {
        Some((index, csp)) => {
            // The front end's addresses are relative to its root; the live
            // page sits two levels below it (`embed/{lesson}/live`). (The
            // tag added has no script: the policy still fits the page.)
            let index = index.replacen("<head>", r#"<head><base href="../../">"#, 1);
            framed(
                header_value(&csp),
                StatusCode::OK,
                "text/html; charset=utf-8",
                index,
            )
        }
        None => framed(
            pages.csp.clone(),
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "The front end is not built; `cargo xtask run` builds it.".into(),
        ),
    }
}

async fn loader() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        LOADER,
    )
        .into_response()
}

/// A still picture of the parts of the diagram a step shows, drawn from the
/// same layout as the live diagram.
fn picture(parts: &[shared::lessons::Part]) -> String {
    let diagram = Diagram::cache_aside_read();
    let shown = |id: &shared::NodeId| shows(parts, id);
    // Cropped to what is drawn, curves bowing under the last row included.
    let height = diagram.height_showing(shown);
    let mut svg = format!(
        r#"<svg viewBox="-4 0 {} {height}" role="img" aria-label="The part of the cache-aside flow this lesson uses"><defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z"/></marker></defs>"#,
        diagram.width + 8.0
    );
    for edge in diagram.edges.iter().filter(|e| shown(&e.from) && shown(&e.to)) {
        if let Some([a, c, b]) = diagram.edge_curve(edge) {
            let _ = write!(
                svg,
                r#"<path d="M {:.0} {:.0} Q {:.0} {:.0} {:.0} {:.0}" marker-end="url(#arrow)"/>"#,
                a.0, a.1, c.0, c.1, b.0, b.1
            );
        }
    }
    for node in diagram.nodes.iter().filter(|n| shown(&n.id)) {
        let class = match node.system {
            shared::System::App => "app",
            shared::System::Redis => "redis",
            shared::System::Database => "database",
        };
        let (cx, cy) = node.centre();
        let _ = write!(
            svg,
            r#"<g class="{class}"><rect x="{}" y="{}" width="{}" height="{}" rx="8"/><text x="{cx}" y="{}">{}</text></g>"#,
            node.x,
            node.y,
            node.width,
            node.height,
            cy + 5.0,
            escape(&node.title)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The facade's look: light, dark, or the reader's system setting; every
/// text colour at 4.5:1 or more.
const STYLE: &str = r#"
:root { --bg: #ffffff; --ink: #1c2330; --muted: #5d6776; --line: #7b8593; --link: #1d4ed8; --app: #475569; --redis: #c0392b; --db: #2563a8; --box: #ffffff; }
:root[data-theme="dark"] { --bg: #1a2029; --ink: #e8ecf2; --muted: #a9b3c1; --line: #7f8a99; --link: #8ab4ff; --app: #b3bfcf; --redis: #ff8a7d; --db: #8dbcf5; --box: #11151c; }
@media (prefers-color-scheme: dark) {
  :root[data-theme="auto"] { --bg: #1a2029; --ink: #e8ecf2; --muted: #a9b3c1; --line: #7f8a99; --link: #8ab4ff; --app: #b3bfcf; --redis: #ff8a7d; --db: #8dbcf5; --box: #11151c; }
}
body { margin: 0; background: var(--bg); color: var(--ink); font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; line-height: 1.45; }
main { padding: 14px 18px; max-width: 900px; }
main > p { max-width: 75ch; }
h1 { font-size: 1.2rem; margin: 4px 0 6px; }
.where, .small { color: var(--muted); font-size: .88rem; margin: 0; }
.small { margin-top: 10px; }
svg { width: 100%; max-width: 760px; height: auto; margin: 8px 0; display: block; }
svg path { fill: none; stroke: var(--line); stroke-width: 2; }
svg marker path { fill: var(--line); stroke: none; }
svg rect { fill: var(--box); stroke-width: 2; }
svg .app rect { stroke: var(--app); } svg .redis rect { stroke: var(--redis); } svg .database rect { stroke: var(--db); }
svg text { fill: var(--ink); font-size: 15px; font-weight: 650; text-anchor: middle; }
a { color: var(--link); }
a.start { display: inline-block; padding: 8px 16px; border-radius: 8px; background: var(--ink); color: var(--bg); font-weight: 700; text-decoration: none; }
a.start:focus-visible { outline: 3px solid var(--link); outline-offset: 2px; }
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn the_picture_has_only_the_steps_parts() {
        use shared::lessons::Part;
        let read = picture(&[Part::Read]);
        assert!(read.contains("Query database"), "{read}");
        assert!(!read.contains(">Lock<"), "{read}");
        let herd = picture(&[Part::Read, Part::Lock]);
        assert!(herd.contains(">Lock<"), "{herd}");
    }
}
