//! The serialization comparison (tutorial section 4.4): one record, padded
//! to the size the learner picks, written as JSON, MessagePack and gzipped
//! JSON; each entry's size, the median time to encode and decode it, and
//! the median round trip of a real `GET` of it from the sandbox's Redis,
//! so the cost of a big value on every hit is measured, not assumed.

use std::time::{Duration, Instant};

use cache_aside::{Content, Envelope};
use shared::{EncodingComparison, EncodingRow, InputError, Kind, Record, SandboxSettings, ValueEncoding};

use crate::error::OpError;
use crate::sandbox::Sandbox;

/// `GET`s per encoding: enough for a median, few enough to stay quick with
/// the largest values.
const GETS: usize = 15;

/// The most filler a comparison adds (the settings' bound).
pub const MAX_PADDING: u64 = SandboxSettings::PADDING_BYTES.1;

/// Encodes and decodes per encoding: many for small values, fewer for big
/// ones, so one comparison takes well under a second.
fn rounds(bytes: usize) -> usize {
    (4_000_000 / (bytes + 1)).clamp(5, 500)
}

/// Measures `kind`/`id` padded by `padding` bytes under every encoding.
///
/// # Errors
/// [`OpError::Input`] for too much padding or no such record;
/// [`OpError::Database`] or [`OpError::Inspection`] when the database or
/// Redis fails.
pub async fn compare(
    sandbox: &Sandbox,
    settings: &SandboxSettings,
    kind: Kind,
    id: u64,
    padding: u64,
) -> Result<EncodingComparison, OpError> {
    if padding > MAX_PADDING {
        return Err(InputError::BadSetting(format!(
            "padding_bytes must be from 0 to {MAX_PADDING}, not {padding}"
        ))
        .into());
    }
    let record = sandbox
        .database
        .find(kind, id, Duration::ZERO)
        .execute()
        .await?
        .ok_or_else(|| {
            InputError::BadSetting(format!(
                "there is no record {kind}/{id} in this sandbox to measure"
            ))
        })?
        .padded(padding as usize);
    // Sealed like every cached record of the sandbox: with encryption on, a
    // phone number never rests in Redis in the clear, not even in a scratch
    // key for a few milliseconds.
    let at = sandbox.keys.value("encoding-test");
    let record = cache_aside::Seal::seal(&*sandbox.sealer, &at, &record)
        .ok_or_else(|| OpError::Internal("the record could not be sealed".into()))?;
    let threshold = settings.compress_above_bytes;
    let mut rows = Vec::new();
    for encoding in ValueEncoding::ALL {
        let engine_encoding = crate::policies::encoding(encoding, threshold);
        let envelope = Envelope {
            content: Content::Value(record.clone()),
            version: record.version(),
            fresh_until_ms: 0,
            load_ms: 0,
        };
        // CPU work off the async workers.
        let (bytes, encode_ns, decode_ns) =
            tokio::task::spawn_blocking(move || time_codec(&envelope, engine_encoding))
                .await
                .map_err(|e| OpError::Internal(e.to_string()))?
                .map_err(|e| OpError::Internal(e.to_string()))?;
        let get_us = time_gets(sandbox, encoding, &bytes).await?;
        rows.push(EncodingRow {
            encoding,
            bytes: bytes.len() as u64,
            encode_ns,
            decode_ns,
            get_us,
        });
    }
    Ok(EncodingComparison {
        kind,
        id,
        padding_bytes: padding,
        compress_above_bytes: threshold,
        rows,
    })
}

/// The entry's bytes, and the median nanoseconds to encode and to decode
/// it.
fn time_codec(
    envelope: &Envelope<Record>,
    encoding: cache_aside::Encoding,
) -> Result<(Vec<u8>, u64, u64), String> {
    let bytes = envelope.encode(encoding).map_err(|e| e.to_string())?;
    let n = rounds(bytes.len());
    let mut encodes = Vec::with_capacity(n);
    let mut decodes = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let again = envelope.encode(encoding).map_err(|e| e.to_string())?;
        encodes.push(started.elapsed());
        let started = Instant::now();
        let decoded = Envelope::<Record>::decode(&again).map_err(|e| e.to_string())?;
        decodes.push(started.elapsed());
        std::hint::black_box(decoded);
    }
    Ok((bytes, median_ns(&mut encodes), median_ns(&mut decodes)))
}

/// Stores `bytes` under a scratch key of the sandbox, `GET`s it
/// [`GETS`] times, deletes it; the median round trip in microseconds.
async fn time_gets(sandbox: &Sandbox, encoding: ValueEncoding, bytes: &[u8]) -> Result<u64, OpError> {
    let failed = |e: cache_aside::RedisError| OpError::Inspection(e.into());
    let key = sandbox.keys.value(&format!("encoding-test:{}", encoding.name()));
    let mut set = redis::cmd("SET");
    // A minute at most, should the DEL below never run.
    set.arg(&key).arg(bytes).arg("PX").arg(60_000);
    sandbox.redis.query(&set, sandbox.timeout).await.map_err(failed)?;
    let mut get = redis::cmd("GET");
    get.arg(&key);
    let mut times = Vec::with_capacity(GETS);
    let mut outcome = Ok(());
    for _ in 0..GETS {
        let started = Instant::now();
        if let Err(e) = sandbox.redis.query(&get, sandbox.timeout).await {
            outcome = Err(failed(e));
            break;
        }
        times.push(started.elapsed());
    }
    let mut del = redis::cmd("DEL");
    del.arg(&key);
    let _ = sandbox.redis.query(&del, sandbox.timeout).await;
    outcome?;
    Ok(median_ns(&mut times) / 1_000)
}

fn median_ns(times: &mut [Duration]) -> u64 {
    times.sort();
    times.get(times.len() / 2).map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_values_get_fewer_rounds() {
        assert_eq!(rounds(100), 500);
        assert_eq!(rounds(1 << 20), 5);
        assert!(rounds(50_000) < rounds(5_000));
    }
}
