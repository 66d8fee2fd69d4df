//! Value encodings on a real Redis (tutorial section 4.4): the sandbox's
//! choice decides how entries are written, every reader reads them all,
//! the trace tells each entry's size, format and measured encode and
//! decode time, and the comparison measures all three side by side.

mod common;

use cache_aside::{Content, Envelope};
use common::{http, serve, status_of};
use shared::{Kind, Origin, Record, SandboxId, SandboxSettings, ValueEncoding};

fn with(encoding: ValueEncoding, padding: u64) -> SandboxSettings {
    SandboxSettings {
        value_encoding: encoding,
        value_padding_bytes: padding,
        compress_above_bytes: 1_024,
        ..SandboxSettings::default()
    }
}

/// Each encoding, through the playground's read path: what Redis holds is
/// written that way, the miss's store and the hit's lookup say so in the
/// trace, and the reader gets the same record.
#[tokio::test]
async fn each_encoding_is_stored_as_chosen_told_in_the_trace_and_read_back() {
    let t = common::start(|_| {});
    let playground = &t.backend.playground;
    let sandbox = SandboxId::default_sandbox();
    let mut feed = playground.subscribe(&sandbox).unwrap();
    let mut redis = t.redis();
    for (n, (encoding, padding, tag, name)) in [
        (ValueEncoding::Json, 0, "", "JSON"),
        (ValueEncoding::MessagePack, 0, " m", "MessagePack"),
        (ValueEncoding::CompressedJson, 50_000, " z", "gzipped JSON"),
        (ValueEncoding::CompressedJson, 0, "", "JSON"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = 100 + n as u64;
        playground
            .update_settings(&sandbox, with(encoding, padding))
            .unwrap();
        let miss = playground
            .read(&sandbox, Kind::Users, id, Origin::Rest)
            .await
            .unwrap();
        let hit = playground
            .read(&sandbox, Kind::Users, id, Origin::Rest)
            .await
            .unwrap();
        assert_eq!(hit.record, miss.record, "{encoding:?}");
        let Some(Record::User(user)) = &hit.record else {
            panic!()
        };
        assert_eq!(
            user.notes.len() as u64,
            padding,
            "{encoding:?}: the reader gets the filler"
        );

        let stored: Vec<u8> = redis::cmd("GET")
            .arg(format!("cache:default:user:{id}"))
            .query(&mut redis)
            .unwrap();
        let header_end = stored.iter().position(|b| *b == b'\n').unwrap();
        let header = String::from_utf8_lossy(&stored[..header_end]).to_string();
        let fields: Vec<&str> = header.split(' ').collect();
        assert_eq!(
            fields.get(5).copied().unwrap_or(""),
            tag.trim(),
            "{encoding:?}: {header}"
        );
        assert!(matches!(
            Envelope::<Record>::decode(&stored).unwrap().content,
            Content::Value(_)
        ));
        if padding > 0 {
            assert!(
                stored.len() < 25_000,
                "50 kB of words gzip to under half: {}",
                stored.len()
            );
        }

        let traces = common::traces_of(&mut feed, 2).await;
        let store = traces[0]
            .steps
            .iter()
            .find(|s| s.node.as_str() == "store_in_cache")
            .unwrap();
        assert!(
            store.reply.contains(&format!("bytes of {name}, in ")),
            "{encoding:?}: {}",
            store.reply
        );
        let lookup = traces[1]
            .steps
            .iter()
            .find(|s| s.node.as_str() == "check_cache")
            .unwrap();
        assert!(
            lookup.reply.contains("decoded ") && lookup.reply.contains(name),
            "{encoding:?}: {}",
            lookup.reply
        );
    }
}

/// The comparison measures one record three ways, over REST as on the page:
/// MessagePack is smaller than JSON; gzip only pays once the value is big;
/// bad input is refused.
#[tokio::test]
async fn the_comparison_measures_every_encoding_and_refuses_bad_input() {
    let t = common::start(|_| {});
    let served = serve(&t).await;
    let playground = &t.backend.playground;
    let sandbox = SandboxId::default_sandbox();
    let small = playground
        .compare_encodings(&sandbox, Kind::Products, 7, 0)
        .await
        .unwrap();
    let size = |c: &shared::EncodingComparison, e: ValueEncoding| {
        c.rows.iter().find(|r| r.encoding == e).unwrap().bytes
    };
    assert_eq!(small.rows.len(), 3);
    assert!(size(&small, ValueEncoding::MessagePack) < size(&small, ValueEncoding::Json));
    assert_eq!(
        size(&small, ValueEncoding::CompressedJson),
        size(&small, ValueEncoding::Json),
        "under the threshold: plain JSON"
    );
    assert!(small
        .rows
        .iter()
        .all(|r| r.get_us > 0 && r.encode_ns > 0 && r.decode_ns > 0));

    // The most filler allowed.
    let most = shared::SandboxSettings::PADDING_BYTES.1;
    let big = playground
        .compare_encodings(&sandbox, Kind::Products, 7, most)
        .await
        .unwrap();
    assert!(size(&big, ValueEncoding::Json) > most);
    assert!(
        size(&big, ValueEncoding::CompressedJson) * 2 < size(&big, ValueEncoding::Json),
        "{big:?}"
    );
    // The phone number is sealed in what was measured, as in every entry:
    // the measured JSON body is as long as the cached (sealed) one.
    let user = playground
        .compare_encodings(&sandbox, Kind::Users, 42, 0)
        .await
        .unwrap();
    playground
        .read(&sandbox, Kind::Users, 42, shared::Origin::Rest)
        .await
        .unwrap();
    let cached: Vec<u8> = redis::cmd("GET")
        .arg("cache:default:user:42")
        .query(&mut t.redis())
        .unwrap();
    let body = |bytes: &[u8]| bytes.len() - bytes.iter().position(|b| *b == b'\n').unwrap() - 1;
    let measured_header = "ca1 v 1 0 0\n".len() as u64;
    assert_eq!(
        size(&user, ValueEncoding::Json) - measured_header,
        body(&cached) as u64
    );
    // No scratch key is left behind.
    assert!(
        !t.all_keys().iter().any(|k| k.contains("encoding-test")),
        "{:?}",
        t.all_keys()
    );

    let response = http(
        served.addr,
        "GET",
        "/api/v1/encodings?kind=users&id=42&padding=100",
        &[],
        "",
    )
    .await;
    assert_eq!(status_of(&response), 200, "{response}");
    assert!(response.contains(r#""encoding":"messagepack""#), "{response}");
    let response = http(
        served.addr,
        "GET",
        "/api/v1/encodings?kind=users&id=42&padding=2000000",
        &[],
        "",
    )
    .await;
    assert_eq!(status_of(&response), 400, "{response}");
    assert!(
        response.contains("padding_bytes must be from 0 to 131072"),
        "{response}"
    );
    let response = http(
        served.addr,
        "GET",
        "/api/v1/encodings?kind=users&id=999999&padding=0",
        &[],
        "",
    )
    .await;
    assert_eq!(status_of(&response), 400, "{response}");
    assert!(
        response.contains("there is no record users/999999 in this sandbox"),
        "{response}"
    );

    let mut bad = with(ValueEncoding::Json, 0);
    bad.value_padding_bytes = 2 << 20;
    assert!(playground.update_settings(&sandbox, bad).is_err());
}
