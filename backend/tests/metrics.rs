//! `GET /metrics`: Prometheus text that a scraper can parse, counting what
//! the playground did, with nothing per sandbox.

mod common;

use shared::Kind;

/// The value of the sample named `name` (with its labels, as written).
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_reads_by_outcome_in_prometheus_text() {
    let t = common::start(|_| {});
    let served = common::serve(&t).await;
    t.read(Kind::Users, 1).await; // a miss
    t.read(Kind::Users, 1).await; // a hit
    t.read(Kind::Users, 1).await; // a hit
    t.read_in("metrics-other", Kind::Users, 2).await; // another sandbox's miss
    let response = common::http_get(served.addr, "/metrics").await;
    assert_eq!(common::status_of(&response), 200, "{response}");
    assert!(
        common::header(&response, "content-type")
            .is_some_and(|v| v.starts_with("application/openmetrics-text")),
        "{response}"
    );
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    // Every line is a comment or `name{labels} value`, and it ends as
    // OpenMetrics requires.
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        assert!(name.starts_with("playground_"), "{line}");
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    assert_eq!(sample(body, "playground_reads_total{outcome=\"hit\"}"), Some(2.0));
    assert_eq!(
        sample(body, "playground_reads_total{outcome=\"miss\"}"),
        Some(2.0)
    );
    assert_eq!(sample(body, "playground_database_queries_total"), Some(2.0));
    assert_eq!(sample(body, "playground_read_duration_seconds_count"), Some(4.0));
    assert_eq!(sample(body, "playground_sandboxes"), Some(2.0));
    assert!(!body.contains("metrics-other"), "no sandbox names in metrics");
}
