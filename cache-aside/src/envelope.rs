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
//! header, never the application's JSON.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The first word of every envelope: the format and its version.
pub const FORMAT: &str = "ca1";

/// The version an invalidation marker carries after a delete: larger than
/// any row version, and still exact in Lua's numbers (2^53 - 1).
pub const DELETED_VERSION: u64 = 9_007_199_254_740_991;

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
    /// The bytes stored in Redis.
    ///
    /// # Errors
    /// When the value does not serialize (a map with non-string keys, say).
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        let state = match self.content {
            Content::Value(_) => 'v',
            Content::NotFound => 'n',
            Content::Invalidated => 'i',
        };
        let mut bytes = format!(
            "{FORMAT} {state} {} {} {}\n",
            self.version, self.fresh_until_ms, self.load_ms
        )
        .into_bytes();
        if let Content::Value(value) = &self.content {
            serde_json::to_writer(&mut bytes, value)?;
        }
        Ok(bytes)
    }
}

impl<V: DeserializeOwned> Envelope<V> {
    /// Reads stored bytes back.
    ///
    /// # Errors
    /// [`DecodeError`] when the bytes are not an envelope of a `V`.
    pub fn decode(bytes: &[u8]) -> Result<Envelope<V>, DecodeError> {
        let header = Header::parse(bytes)?;
        let content = match header.state {
            b'v' => Content::Value(
                serde_json::from_slice(header.body).map_err(|e| DecodeError::Value(e.to_string()))?,
            ),
            b'n' => Content::NotFound,
            _ => Content::Invalidated,
        };
        Ok(Envelope {
            content,
            version: header.version,
            fresh_until_ms: header.fresh_until_ms,
            load_ms: header.load_ms,
        })
    }
}

/// The parsed header line, and the body after it.
struct Header<'a> {
    state: u8,
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
        Ok(Header {
            state,
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
        let bytes = envelope.encode().unwrap();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            "ca1 v 3 1764190000123 102\n{\"id\":42,\"name\":\"Ada Lovelace\"}"
        );
        assert_eq!(Envelope::<User>::decode(&bytes).unwrap(), envelope);
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
            let bytes = envelope.encode().unwrap();
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
