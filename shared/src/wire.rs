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

/// A message from its binary form.
///
/// # Errors
/// The bytes are not a `T` in the binary form (truncated, from another
/// build, or not a message at all), in words.
pub fn from_binary<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("{e} ({} bytes)", bytes.len()))
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
    }
}
