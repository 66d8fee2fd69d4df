//! Related keys with different TTLs (tutorial section 4.6), on a real
//! Redis and SQLite: a product's price and stock cached apart; after both
//! change in the database, readers see the new price with the old stock
//! for about as long as the TTLs differ, and the spread is flagged past
//! half. With equal TTLs both change together.

mod common;

use shared::{RelatedSpec, SandboxId};

#[tokio::test]
async fn different_ttls_show_a_new_price_with_an_old_stock_equal_ones_do_not() {
    let t = common::start(|_| {});
    let playground = &t.backend.playground;
    let sandbox = SandboxId::default_sandbox();

    let apart = RelatedSpec {
        id: 7,
        price_ttl_ms: 500,
        stock_ttl_ms: 2_000,
    };
    let result = playground.related_keys(&sandbox, apart.clone()).await.unwrap();
    assert!(result.flagged, "a 75 % spread passes the alert: {result:?}");
    assert_eq!(result.after, (result.before.0 + 100, result.before.1 + 5));
    let first = &result.samples[0];
    assert!(
        !first.stock_new,
        "the stock key still holds the old stock: {result:?}"
    );
    assert!(
        result.samples.iter().any(|s| s.price_new && !s.stock_new),
        "{result:?}"
    );
    assert!(
        result.samples.iter().all(|s| !s.stock_new || s.price_new),
        "the price goes first: {result:?}"
    );
    let last = result.samples.last().unwrap();
    assert!(
        last.price_new && last.stock_new,
        "both show the change in the end: {result:?}"
    );
    assert!(result.mismatched_ms >= 500, "{result:?}");

    let together = RelatedSpec {
        price_ttl_ms: 1_000,
        stock_ttl_ms: 1_000,
        ..apart
    };
    let result = playground.related_keys(&sandbox, together).await.unwrap();
    assert!(!result.flagged);
    assert!(
        result.samples.iter().filter(|s| s.mismatched()).count() <= 1,
        "equal TTLs change together, to a sample: {result:?}"
    );

    let too_short = RelatedSpec {
        price_ttl_ms: 100,
        ..RelatedSpec {
            id: 7,
            price_ttl_ms: 0,
            stock_ttl_ms: 1_000,
        }
    };
    let error = playground.related_keys(&sandbox, too_short).await.unwrap_err();
    assert!(
        error.to_string().contains("price_ttl_ms must be from 500"),
        "{error}"
    );
    let missing = RelatedSpec {
        id: 999_999,
        price_ttl_ms: 500,
        stock_ttl_ms: 500,
    };
    let error = playground.related_keys(&sandbox, missing).await.unwrap_err();
    assert!(error.to_string().contains("no product 999999"), "{error}");
}
