//! The envelope: what the engine stores in Redis for a key, whatever the
//! policies in force.
//!
//! One format for everything means every policy can read what any other
//! wrote: a value stored under the lock policy is a hit for a reader using
//! stale-while-revalidate, and a version check can compare any two entries.
//! It is text, one header line and then the value's JSON, so it stays
//! readable in `redis-cli`:
//!
//! ```text
//! ca1 v 3 1764190000123 102
//! {"id":42,"name":"Ada Lovelace","version":3}
//! ```
//!
//! The header holds, in order: the format (`ca1`), the state (`v` a value,
//! `n` "does not exist", `i` an invalidation marker left by a
//! version-checked write), the source row's version (0 when unknown), the
//! moment the entry stops being fresh (milliseconds since the Unix epoch),
//! and how long the load that produced it took, in milliseconds. The Lua
//! scripts of the race guards read the state and the version from the
//! header, never the application's value.
//!
//! The value itself is JSON unless the cache's [`Encoding`] says otherwise
//! (tutorial section 4.4): MessagePack, smaller and quicker to read, or
//! JSON compressed with gzip once it is bigger than a threshold. Either is
//! named by a sixth header field (`m`, `z`), so every reader decodes what
//! any writer stored; plain JSON has none.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The first word of every envelope: the format and its version.
pub const FORMAT: &str = "ca1";

/// The version an invalidation marker carries after a delete: larger than
/// any row version, and still exact in Lua's numbers (2^53 - 1).
pub const DELETED_VERSION: u64 = 9_007_199_254_740_991;

/// How values are written into entries (every reader reads all of them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encoding {
    /// JSON: readable in `redis-cli`, the biggest and slowest.
    #[default]
    Json,
    /// MessagePack (with field names, so any serde type round-trips).
    MessagePack,
    /// JSON, gzipped when it is longer than `threshold` bytes: small values
    /// are not worth the CPU, big ones cost less memory and network.
    CompressedJson { threshold: usize },
}

/// How one stored value is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    Json,
    MessagePack,
    GzipJson,
}

impl Body {
    /// Its name for people.
    pub fn name(self) -> &'static str {
        match self {
            Body::Json => "JSON",
            Body::MessagePack => "MessagePack",
            Body::GzipJson => "gzipped JSON",
        }
    }

    /// The header field naming it (none for JSON).
    fn tag(self) -> &'static str {
        match self {
            Body::Json => "",
            Body::MessagePack => " m",
            Body::GzipJson => " z",
        }
    }
}

/// How a stored value is written, and its size in bytes as stored.
pub type Stored = (Body, usize);

/// The most a gzipped value may inflate to: a corrupt or hostile entry
/// is a decode error, not an allocation of any size.
pub const MAX_INFLATED: u64 = 64 << 20;

/// Why a value cannot be stored: it does not serialize (a map with
/// non-string keys in JSON, say).
#[derive(Debug, thiserror::Error)]
#[error("the value does not serialize: {0}")]
pub struct EncodeError(String);

/// What an entry says about its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content<V> {
    /// The value, as loaded.
    Value(V),
    /// The source has no such record (negative caching, tutorial
    /// section 4.7).
    NotFound,
    /// A writer changed the record: not an answer, only a fence against
    /// storing versions older than the one it carries (version guard).
    Invalidated,
}

/// One entry as stored in Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope<V> {
    pub content: Content<V>,
    /// The version of the source row the entry was made from; 0 when the
    /// application does not version its rows.
    pub version: u64,
    /// Until when the entry is fresh, in milliseconds since the Unix epoch:
    /// its logical expiry. Stale-while-revalidate serves it stale after this
    /// moment, and XFetch may refresh it before.
    pub fresh_until_ms: u64,
    /// How long the load that produced it took, in milliseconds (XFetch's
    /// delta: the longer a reload takes, the earlier it should start).
    pub load_ms: u64,
}

/// Why stored bytes are not an envelope. Each variant says when it occurs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Occurs when the bytes do not start with a `ca1` header line (someone
    /// wrote the key by hand, or another program shares the key space).
    #[error("not an envelope: {0}")]
    Header(&'static str),
    /// Occurs when the header is fine but the value's JSON does not decode
    /// into the application's type.
    #[error("the value does not decode: {0}")]
    Value(String),
}

impl<V> Envelope<V> {
    /// Whether the entry is an answer (a value or "does not exist"), not a
    /// marker.
    pub fn is_answer(&self) -> bool {
        !matches!(self.content, Content::Invalidated)
    }

    /// Whether the entry is still fresh at `now_ms`.
    pub fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms < self.fresh_until_ms
    }
}

impl<V: Serialize> Envelope<V> {
    /// The bytes stored in Redis, the value written as `encoding` says.
    ///
    /// # Errors
    /// [`EncodeError`] when the value does not serialize.
    pub fn encode(&self, encoding: Encoding) -> Result<Vec<u8>, EncodeError> {
        let state = match self.content {
            Content::Value(_) => 'v',
            Content::NotFound => 'n',
            Content::Invalidated => 'i',
        };
        let fail = |e: &dyn std::fmt::Display| EncodeError(e.to_string());
        let (body, value) = match (&self.content, encoding) {
            (Content::Value(value), Encoding::Json) => {
                (Body::Json, serde_json::to_vec(value).map_err(|e| fail(&e))?)
            }
            (Content::Value(value), Encoding::MessagePack) => (
                Body::MessagePack,
                rmp_serde::to_vec_named(value).map_err(|e| fail(&e))?,
            ),
            (Content::Value(value), Encoding::CompressedJson { threshold }) => {
                let json = serde_json::to_vec(value).map_err(|e| fail(&e))?;
                if json.len() > threshold {
                    (Body::GzipJson, gzip(&json).map_err(|e| fail(&e))?)
                } else {
                    (Body::Json, json)
                }
            }
            _ => (Body::Json, Vec::new()),
        };
        let mut bytes = format!(
            "{FORMAT} {state} {} {} {}{}\n",
            self.version,
            self.fresh_until_ms,
            self.load_ms,
            body.tag()
        )
        .into_bytes();
        bytes.extend_from_slice(&value);
        Ok(bytes)
    }
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes)?;
    encoder.finish()
}

fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
    use std::io::Read;
    let mut inflated = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_INFLATED + 1)
        .read_to_end(&mut inflated)
        .map_err(|e| DecodeError::Value(e.to_string()))?;
    if inflated.len() as u64 > MAX_INFLATED {
        return Err(DecodeError::Value("the value inflates past 64 MiB".into()));
    }
    Ok(inflated)
}

impl Envelope<()> {
    /// The entry's header alone, its value (if any) left unread: enough to
    /// judge it (see [`crate::policy::judge`]). `None` if not an envelope.
    pub fn peek(bytes: &[u8]) -> Option<Envelope<()>> {
        let header = Header::parse(bytes).ok()?;
        Some(Envelope {
            content: match header.state {
                b'v' => Content::Value(()),
                b'n' => Content::NotFound,
                _ => Content::Invalidated,
            },
            version: header.version,
            fresh_until_ms: header.fresh_until_ms,
            load_ms: header.load_ms,
        })
    }
}

/// How the value in stored bytes is written, and its size in bytes as
/// stored (`None`: not an envelope holding a value).
pub fn body_of(bytes: &[u8]) -> Option<Stored> {
    let header = Header::parse(bytes).ok()?;
    (header.state == b'v').then_some((header.body_kind, header.body.len()))
}

impl<V: DeserializeOwned> Envelope<V> {
    /// Reads stored bytes back.
    ///
    /// # Errors
    /// [`DecodeError`] when the bytes are not an envelope of a `V`.
    pub fn decode(bytes: &[u8]) -> Result<Envelope<V>, DecodeError> {
        Ok(Self::decode_told(bytes)?.0)
    }

    /// [`Envelope::decode`], also telling how the value was written and its
    /// size as stored (`None` for an entry with no value), from the one
    /// reading of the header.
    ///
    /// # Errors
    /// [`DecodeError`] when the bytes are not an envelope of a `V`.
    pub fn decode_told(bytes: &[u8]) -> Result<(Envelope<V>, Option<Stored>), DecodeError> {
        let header = Header::parse(bytes)?;
        let told = (header.state == b'v').then_some((header.body_kind, header.body.len()));
        let bad = |e: &dyn std::fmt::Display| DecodeError::Value(e.to_string());
        let content = match header.state {
            b'v' => Content::Value(match header.body_kind {
                Body::Json => serde_json::from_slice(header.body).map_err(|e| bad(&e))?,
                Body::MessagePack => rmp_serde::from_slice(header.body).map_err(|e| bad(&e))?,
                Body::GzipJson => serde_json::from_slice(&gunzip(header.body)?).map_err(|e| bad(&e))?,
            }),
            b'n' => Content::NotFound,
            _ => Content::Invalidated,
        };
        let envelope = Envelope {
            content,
            version: header.version,
            fresh_until_ms: header.fresh_until_ms,
            load_ms: header.load_ms,
        };
        Ok((envelope, told))
    }
}

/// The parsed header line, and the body after it.
struct Header<'a> {
    state: u8,
    body_kind: Body,
    version: u64,
    fresh_until_ms: u64,
    load_ms: u64,
    body: &'a [u8],
}

impl<'a> Header<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Header<'a>, DecodeError> {
        let newline = bytes
            .iter()
            .position(|b| *b == b'\n')
            .ok_or(DecodeError::Header("no header line"))?;
        let line = std::str::from_utf8(&bytes[..newline]).map_err(|_| DecodeError::Header("not text"))?;
        let mut fields = line.split(' ');
        if fields.next() != Some(FORMAT) {
            return Err(DecodeError::Header("no ca1 format tag"));
        }
        let state = match fields.next() {
            Some("v") => b'v',
            Some("n") => b'n',
            Some("i") => b'i',
            _ => return Err(DecodeError::Header("unknown state")),
        };
        let mut number = || {
            fields
                .next()
                .and_then(|f| f.parse::<u64>().ok())
                .ok_or(DecodeError::Header("a number is missing"))
        };
        let (version, fresh_until_ms, load_ms) = (number()?, number()?, number()?);
        let body_kind = match fields.next() {
            None => Body::Json,
            Some("m") => Body::MessagePack,
            Some("z") => Body::GzipJson,
            Some(_) => return Err(DecodeError::Header("unknown value encoding")),
        };
        Ok(Header {
            state,
            body_kind,
            version,
            fresh_until_ms,
            load_ms,
            body: &bytes[newline + 1..],
        })
    }
}

/// The Lua snippet every guard script uses to read an envelope's version:
/// `local v = version_of(redis.call('GET', KEYS[1]))` gives the number, or
/// `nil` when the key is empty or not an envelope.
pub(crate) const LUA_VERSION_OF: &str =
    "local function version_of(cur) if not cur then return nil end return tonumber(string.match(cur, '^ca1 %a (%d+) ')) end ";

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    struct User {
        id: u64,
        name: String,
    }

    fn ada() -> User {
        User {
            id: 42,
            name: "Ada Lovelace".into(),
        }
    }

    #[test]
    fn a_value_round_trips_and_reads_well_in_redis_cli() {
        let envelope = Envelope {
            content: Content::Value(ada()),
            version: 3,
            fresh_until_ms: 1_764_190_000_123,
            load_ms: 102,
        };
        let bytes = envelope.encode(Encoding::Json).unwrap();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            "ca1 v 3 1764190000123 102\n{\"id\":42,\"name\":\"Ada Lovelace\"}"
        );
        assert_eq!(Envelope::<User>::decode(&bytes).unwrap(), envelope);
    }

    #[test]
    fn messagepack_and_gzip_round_trip_and_are_named_in_the_header() {
        let envelope = Envelope {
            content: Content::Value(ada()),
            version: 3,
            fresh_until_ms: 9,
            load_ms: 1,
        };
        let packed = envelope.encode(Encoding::MessagePack).unwrap();
        assert!(packed.starts_with(b"ca1 v 3 9 1 m\n"));
        assert_eq!(Envelope::<User>::decode(&packed).unwrap(), envelope);
        assert_eq!(body_of(&packed).map(|(b, _)| b), Some(Body::MessagePack));
        let json = envelope.encode(Encoding::Json).unwrap();
        assert!(packed.len() < json.len(), "MessagePack is smaller");

        // Under the threshold, plain JSON; over it, gzip.
        let small = envelope
            .encode(Encoding::CompressedJson { threshold: 1_000 })
            .unwrap();
        assert_eq!(small, json);
        let big = Envelope {
            content: Content::Value(User {
                id: 1,
                name: "a".repeat(5_000),
            }),
            ..envelope.clone()
        };
        let zipped = big.encode(Encoding::CompressedJson { threshold: 1_000 }).unwrap();
        assert!(zipped.starts_with(b"ca1 v 3 9 1 z\n"));
        assert!(
            zipped.len() < 200,
            "5 kB of one letter compresses: {}",
            zipped.len()
        );
        assert_eq!(Envelope::<User>::decode(&zipped).unwrap(), big);
        assert_eq!(body_of(&zipped), Some((Body::GzipJson, zipped.len() - 14)));

        // The Lua guards read the version before any of it.
        for bytes in [&packed, &zipped] {
            assert!(bytes.starts_with(b"ca1 v 3 "));
        }
    }

    #[test]
    fn a_corrupt_or_unknown_body_is_a_decode_error() {
        assert!(matches!(
            Envelope::<User>::decode(b"ca1 v 3 9 1 z\nnot gzip"),
            Err(DecodeError::Value(_))
        ));
        assert_eq!(
            Envelope::<User>::decode(b"ca1 v 3 9 1 q\n{}"),
            Err(DecodeError::Header("unknown value encoding"))
        );
    }

    #[test]
    fn not_found_and_markers_carry_no_payload() {
        for content in [Content::NotFound, Content::Invalidated] {
            let envelope = Envelope::<User> {
                content,
                version: DELETED_VERSION,
                fresh_until_ms: 5,
                load_ms: 0,
            };
            let bytes = envelope.encode(Encoding::Json).unwrap();
            assert!(bytes.ends_with(b"\n"));
            assert_eq!(Envelope::<User>::decode(&bytes).unwrap(), envelope);
        }
    }

    #[test]
    fn foreign_bytes_are_refused_with_a_reason() {
        for junk in [
            &b"hello"[..],
            b"{\"id\":1}\n",
            b"ca1 x 1 2 3\n",
            b"ca1 v 1 2\n{}",
            b"",
        ] {
            assert!(
                matches!(Envelope::<User>::decode(junk), Err(DecodeError::Header(_))),
                "{junk:?}"
            );
        }
        let wrong_type = b"ca1 v 1 2 3\n[1,2]";
        assert!(matches!(
            Envelope::<User>::decode(wrong_type),
            Err(DecodeError::Value(_))
        ));
    }

    #[test]
    fn freshness_is_judged_against_the_logical_expiry() {
        let envelope = Envelope::<User> {
            content: Content::NotFound,
            version: 0,
            fresh_until_ms: 1_000,
            load_ms: 0,
        };
        assert!(envelope.is_fresh(999));
        assert!(!envelope.is_fresh(1_000));
        assert!(envelope.is_answer());
    }
}
