//! Related keys with different TTLs (tutorial section 4.6): a product's
//! price and its stock cached apart, each through the engine with its own
//! TTL, both changed in the database with no invalidation (the writer
//! relies on the TTLs), then read every 250 ms until both show the change.
//! In between, a reader sees the new price with the old stock, for as long
//! as the TTLs differ.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use cache_aside::{CacheAside, NoObserver, Options};
use shared::{InputError, Kind, Record, RelatedResult, RelatedSample, RelatedSpec};

use crate::error::OpError;
use crate::recorder::unix_millis;
use crate::sandbox::Sandbox;

/// How often both keys are read after the change.
const EVERY: Duration = Duration::from_millis(250);

/// The two keys of `id`.
fn keys(id: u64) -> [String; 2] {
    [format!("product:{id}:price"), format!("product:{id}:stock")]
}

/// Runs it (see the module's comment).
///
/// # Errors
/// [`OpError::Input`] for a spec out of range or no such product;
/// [`OpError::Database`] when the database fails.
pub async fn run(sandbox: &Sandbox, spec: RelatedSpec) -> Result<RelatedResult, OpError> {
    spec.validate()?;
    let [price_key, stock_key] = keys(spec.id);
    let cache: CacheAside<u64> = CacheAside::builder(sandbox.redis.clone(), sandbox.keys.clone())
        .timeout(sandbox.timeout)
        .build()
        .map_err(|e| OpError::Internal(e.to_string()))?;
    let with_ttl = |ms: u64| Options {
        ttl: Duration::from_millis(ms),
        ..Options::default()
    };
    let (price_options, stock_options) = (with_ttl(spec.price_ttl_ms), with_ttl(spec.stock_ttl_ms));

    // Start cold, so both keys are cached now, with their TTLs.
    let mut del = redis::cmd("DEL");
    del.arg(sandbox.keys.value(&price_key))
        .arg(sandbox.keys.value(&stock_key));
    let _ = sandbox.redis.query(&del, sandbox.timeout).await;
    let read = |key: &str, options: &Options, field: fn(&Record) -> Option<u64>| {
        let database = sandbox.database.clone();
        let id = spec.id;
        let loader = move || async move {
            let row = database.find(Kind::Products, id, Duration::ZERO).execute().await;
            // A failing database is told below; the engine caches nothing.
            Ok::<_, Infallible>(row.ok().flatten().as_ref().and_then(field))
        };
        let (cache, key, options) = (cache.clone(), key.to_string(), options.clone());
        async move {
            let Ok(answer) = cache.get_or_load_with(&key, &options, &NoObserver, loader).await;
            answer.value
        }
    };
    let price = |r: &Record| match r {
        Record::Product(p) => Some(p.price_cents),
        Record::User(_) => None,
    };
    let stock = |r: &Record| match r {
        Record::Product(p) => Some(p.stock),
        Record::User(_) => None,
    };
    let no_product = || InputError::BadSetting(format!("there is no product {}", spec.id));
    let before_price = read(&price_key, &price_options, price)
        .await
        .ok_or_else(no_product)?;
    let before_stock = read(&stock_key, &stock_options, stock)
        .await
        .ok_or_else(no_product)?;

    // The change: a new price and a restock, written to the database only.
    let (after_price, after_stock) = (before_price + 100, before_stock + 5);
    sandbox
        .database
        .reprice(spec.id, after_price, after_stock)
        .execute()
        .await?
        .ok_or_else(no_product)?;
    sandbox.row_changed(Kind::Products, spec.id, unix_millis());
    let changed = Instant::now();

    // Both keys, every 250 ms, until both show it (bounded by the longer
    // TTL and a second).
    let deadline = Duration::from_millis(spec.price_ttl_ms.max(spec.stock_ttl_ms)) + Duration::from_secs(1);
    let mut samples = Vec::new();
    let mut ticks = tokio::time::interval(EVERY);
    loop {
        ticks.tick().await;
        let at = changed.elapsed();
        let sample = RelatedSample {
            at_ms: at.as_millis() as u64,
            price_new: read(&price_key, &price_options, price).await == Some(after_price),
            stock_new: read(&stock_key, &stock_options, stock).await == Some(after_stock),
        };
        let done = sample.price_new && sample.stock_new;
        samples.push(sample);
        if done || at > deadline {
            break;
        }
    }
    let mismatched = samples.iter().filter(|s| s.mismatched()).count() as u64;
    Ok(RelatedResult {
        before: (before_price, before_stock),
        after: (after_price, after_stock),
        mismatched_ms: mismatched * EVERY.as_millis() as u64,
        spread: spec.spread(),
        flagged: spec.spread() > RelatedSpec::SPREAD_ALERT,
        samples,
        spec,
    })
}
