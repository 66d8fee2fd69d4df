//! The protocol's two encodings: JSON, and a compact binary form for the page.
//!
//! JSON is what people and tools read: the REST API, a WebSocket client of
//! its own, the recordings. Its enums are *internally tagged*
//! (`{"type": "read", "id": 42, …}`), which is pleasant to read but costly
//! to decode: serde must buffer each object whole before it knows which
//! variant it holds, and that machinery, for every message type, was a
//! third of the page's WebAssembly.
//!
//! The page's own WebSocket (and the recordings a static site replays) use
//! [postcard](https://docs.rs/postcard) instead: fields in order, variants
//! by number, nothing self-describing, so the page carries only the small
//! code that reads exactly its messages. The page asks for it when it
//! connects (`?wire=binary`, [`BINARY_PARAM`]); every other client gets
//! JSON as before.
//!
//! One set of types serves both. Each tagged enum is declared through
//! [`two_forms!`], which derives its JSON form as written and, for formats
//! that are not human readable ([`serde::Serializer::is_human_readable`]),
//! serde's default externally tagged form of the same variants. A binary
//! format also needs every field written, so the protocol's types skip no
//! field when serializing (a `None` is written as `null` in JSON), except
//! [`crate::User`] and [`crate::Product`], whose JSON is the cached value
//! itself (see [`crate::Record`]).

use serde::{de::DeserializeOwned, Serialize};

use crate::{ServerMessage, PROTOCOL_VERSION};

/// The query parameter a client adds to the WebSocket's address to be sent
/// (and to send) binary frames: `/ws?wire=binary`.
pub const BINARY_PARAM: (&str, &str) = ("wire", "binary");

/// A message in the binary form.
///
/// # Panics
/// Never for the protocol's types: every one of them serializes.
pub fn to_binary<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("the protocol's types always serialize")
}

/// A message from its binary form: all of `bytes`, nothing left over.
///
/// # Errors
/// The bytes are not a `T` in the binary form (truncated, from another
/// build, or not a message at all), in words.
pub fn from_binary<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(format!(
            "{} bytes left over after the message ({} bytes)",
            rest.len(),
            bytes.len()
        )),
        Err(e) => Err(format!("{e} ({} bytes)", bytes.len())),
    }
}

/// The protocol version of a greeting in the binary form, read from its
/// first bytes alone: a greeting from a back end of another version may
/// not decode whole, and this says why. `None` for any other message.
pub fn greeting_version(bytes: &[u8]) -> Option<u32> {
    // The greeting is `ServerMessage`'s variant 0 and its version is its
    // first field (a test pins both).
    match postcard::take_from_bytes::<(u32, u32)>(bytes) {
        Ok(((0, version), _)) => Some(version),
        _ => None,
    }
}

/// A frame a page got from the back end.
pub enum Frame<'a> {
    Binary(&'a [u8]),
    /// A back end that does not know the binary form answers in JSON.
    Text(&'a str),
}

/// What a page makes of a frame.
#[derive(Debug, PartialEq)]
pub enum Received {
    Message(Box<ServerMessage>),
    /// A greeting from a back end of another protocol version: the page
    /// stops and says which.
    OtherVersion(u32),
    /// Nothing the page can read, in words.
    Unreadable(String),
}

/// Reads a frame as the page does: the binary form; a greeting of another
/// version, even one that does not decode; and JSON text, from a back end
/// older than the binary form, by its version alone (the page carries no
/// JSON reader).
pub fn read_frame(frame: Frame<'_>) -> Received {
    match frame {
        Frame::Binary(bytes) => match from_binary::<ServerMessage>(bytes) {
            Ok(ServerMessage::Hello { protocol_version, .. }) if protocol_version != PROTOCOL_VERSION => {
                Received::OtherVersion(protocol_version)
            }
            Ok(message) => Received::Message(Box::new(message)),
            Err(why) => match greeting_version(bytes) {
                Some(version) if version != PROTOCOL_VERSION => Received::OtherVersion(version),
                _ => Received::Unreadable(why),
            },
        },
        Frame::Text(text) => match json_greeting_version(text) {
            Some(version) => Received::OtherVersion(version),
            None => Received::Unreadable(format!(
                "the back end sent text ({} bytes) where this page reads binary messages",
                text.len()
            )),
        },
    }
}

/// `7` from `{"type":"hello","protocol_version":7,…}`, as a back end
/// writes its greeting in JSON.
fn json_greeting_version(text: &str) -> Option<u32> {
    if !text.starts_with(r#"{"type":"hello","#) {
        return None;
    }
    let after = &text[text.find(r#""protocol_version":"#)? + r#""protocol_version":"#.len()..];
    let digits = after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len());
    after[..digits].parse().ok()
}

/// Declares a protocol enum with its two forms.
///
/// Write the enum as usual, with its `#[serde(tag = …, rename_all =
/// "snake_case")]`, and name it once more as a string first (serde's
/// `remote` attribute takes a string). The JSON form is derived as written
/// (as `remote = "Self"`: inherent `serialize`/`deserialize` functions);
/// the binary form is derived from a private copy of the same variants
/// without the tag. The two `impl`s pick one by the format.
macro_rules! two_forms {
    (
        $remote:literal;
        $(#[$attr:meta])*
        $vis:vis enum $name:ident { $($body:tt)* }
    ) => {
        $(#[$attr])*
        #[serde(remote = "Self")]
        $vis enum $name { $($body)* }

        const _: () = {
            /// The same variants, externally tagged: the binary form.
            #[derive(serde::Serialize, serde::Deserialize)]
            #[serde(remote = $remote, rename_all = "snake_case")]
            #[allow(dead_code, clippy::large_enum_variant)]
            enum Compact { $($body)* }

            impl serde::Serialize for $name {
                fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                    if serializer.is_human_readable() {
                        $name::serialize(self, serializer)
                    } else {
                        Compact::serialize(self, serializer)
                    }
                }
            }

            impl<'de> serde::Deserialize<'de> for $name {
                fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                    if deserializer.is_human_readable() {
                        $name::deserialize(deserializer)
                    } else {
                        Compact::deserialize(deserializer)
                    }
                }
            }
        };
    };
}
pub(crate) use two_forms;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::{Event, Recording};
    use crate::{ClientMessage, Kind, Outcome, ReadResult, Record, SandboxId, ServerMessage, User};

    fn read_reply(notes: &str) -> ServerMessage {
        ServerMessage::ReadReply {
            request_id: 7,
            result: ReadResult {
                kind: Kind::Users,
                id: 42,
                outcome: Outcome::Miss,
                found: true,
                record: Some(Record::User(User {
                    id: 42,
                    name: "Ada".into(),
                    email: "ada@example.com".into(),
                    city: "London".into(),
                    joined: "2024-01-02".into(),
                    phone: String::new(),
                    version: 3,
                    notes: notes.into(),
                })),
                latency_us: 812,
                trace_id: Some(9),
                sandbox: SandboxId::parse("abc").unwrap(),
            },
        }
    }

    /// The committed recordings hold real messages of every kind the
    /// lessons use, each as the back end sent it.
    fn committed_recordings() -> Vec<(String, Recording)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../recordings");
        let mut recordings = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("the recordings folder") {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name == crate::recording::RECORDINGS_INDEX || !name.ends_with(".json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            recordings.push((name, serde_json::from_str(&text).unwrap()));
        }
        assert!(recordings.len() >= 10, "found {} recordings", recordings.len());
        recordings
    }

    #[test]
    fn every_recorded_message_survives_the_binary_form() {
        let (mut server, mut client) = (0, 0);
        for (name, recording) in committed_recordings() {
            let hello: ServerMessage = from_binary(&to_binary(&recording.hello)).unwrap();
            assert_eq!(hello, recording.hello, "{name}: the greeting");
            for event in recording.steps.iter().flat_map(|s| &s.events) {
                match event {
                    Event::Received { message, .. } => {
                        let back: ServerMessage = from_binary(&to_binary(message.as_ref())).unwrap();
                        assert_eq!(&back, message.as_ref(), "{name}");
                        server += 1;
                    }
                    Event::Sent { message, .. } => {
                        let back: ClientMessage = from_binary(&to_binary(message)).unwrap();
                        assert_eq!(&back, message, "{name}");
                        // The kind is the JSON's tag.
                        let json = serde_json::to_value(message).unwrap();
                        assert_eq!(json["type"], message.kind(), "{name}");
                        client += 1;
                    }
                }
            }
            // A whole recording too (what a static site's page reads).
            let back: Recording = from_binary(&to_binary(&recording)).unwrap();
            assert_eq!(back, recording, "{name}");
        }
        assert!(
            server > 1_000 && client > 50,
            "{server} server and {client} client messages"
        );
    }

    #[test]
    fn json_keeps_its_readable_shape() {
        let json = serde_json::to_value(read_reply("")).unwrap();
        assert_eq!(json["type"], "read_reply");
        // The record is its own JSON, as cached: no tag, no empty notes.
        let record = &json["result"]["record"];
        assert_eq!(record["email"], "ada@example.com");
        assert!(
            record.get("notes").is_none() && record.get("User").is_none(),
            "{record}"
        );
        let back: ServerMessage = serde_json::from_value(json).unwrap();
        assert_eq!(back, read_reply(""));
    }

    #[test]
    fn the_binary_form_is_smaller_and_keeps_every_field() {
        for notes in ["", "some filler"] {
            let message = read_reply(notes);
            let binary = to_binary(&message);
            let json = serde_json::to_vec(&message).unwrap();
            assert!(
                binary.len() * 2 < json.len(),
                "{} vs {} bytes",
                binary.len(),
                json.len()
            );
            assert_eq!(from_binary::<ServerMessage>(&binary).unwrap(), message);
        }
    }

    fn hello(version: u32) -> ServerMessage {
        ServerMessage::Hello {
            protocol_version: version,
            sandbox: SandboxId::parse("abc").unwrap(),
            settings: Box::default(),
            stats: crate::Stats::default(),
            diagram: crate::Diagram::cache_aside_read(),
            recent: Vec::new(),
            instances: Vec::new(),
            redis: "shared".into(),
            load: None,
            moved: false,
        }
    }

    #[test]
    fn a_greeting_says_its_version_in_its_first_bytes() {
        let bytes = to_binary(&hello(PROTOCOL_VERSION));
        assert!(bytes.starts_with(&to_binary(&(0u32, PROTOCOL_VERSION))));
        assert_eq!(greeting_version(&bytes), Some(PROTOCOL_VERSION));
        assert_eq!(greeting_version(&to_binary(&read_reply(""))), None);
        assert_eq!(
            read_frame(Frame::Binary(&bytes)),
            Received::Message(Box::new(hello(PROTOCOL_VERSION)))
        );
        // A newer back end's greeting that no longer decodes here (a field
        // added at its end) is still known for what it is.
        let mut newer = to_binary(&hello(PROTOCOL_VERSION + 1));
        newer.extend_from_slice(&[3, 1, 2, 3]);
        assert!(from_binary::<ServerMessage>(&newer).is_err());
        assert_eq!(
            read_frame(Frame::Binary(&newer)),
            Received::OtherVersion(PROTOCOL_VERSION + 1)
        );
    }

    #[test]
    fn a_back_end_older_than_the_binary_form_is_known_by_its_json_greeting() {
        let json = serde_json::to_string(&hello(7)).unwrap();
        assert_eq!(read_frame(Frame::Text(&json)), Received::OtherVersion(7));
        for text in [
            r#"{"type":"trace"}"#,
            "",
            r#"{"type":"hello","protocol_version":"x"}"#,
        ] {
            assert!(
                matches!(read_frame(Frame::Text(text)), Received::Unreadable(_)),
                "{text}"
            );
        }
        let junk = read_frame(Frame::Binary(&[7, 7, 7]));
        assert!(matches!(junk, Received::Unreadable(why) if why.contains("3 bytes")));
    }

    #[test]
    fn bytes_that_are_not_a_message_are_an_error() {
        let binary = to_binary(&read_reply("x"));
        for cut in [0, 1, binary.len() / 2, binary.len() - 1] {
            let error = from_binary::<ServerMessage>(&binary[..cut]).unwrap_err();
            assert!(error.contains(&format!("({cut} bytes)")), "{error}");
        }
        // A variant number no build has.
        assert!(from_binary::<ServerMessage>(&[200, 1, 2, 3]).is_err());
        // JSON is not the binary form.
        let json = serde_json::to_vec(&read_reply("")).unwrap();
        assert!(from_binary::<ServerMessage>(&json).is_err());
        // A message with anything after it is not a message.
        let mut longer = binary.clone();
        longer.push(0);
        let error = from_binary::<ServerMessage>(&longer).unwrap_err();
        assert!(error.contains("1 bytes left over"), "{error}");
    }
}
