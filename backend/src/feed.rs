//! Fan-out of traces to the browsers watching a sandbox.
//!
//! A bounded Tokio broadcast channel: publishing never waits, whatever the
//! subscribers do, so a slow browser can never slow down a request. A
//! subscriber that falls more than the channel's capacity behind loses the
//! oldest messages and is told how many it missed, instead of silently
//! going deaf.
//!
//! A message is encoded at most once per wire format, by the first session
//! that sends it in that format, and the frame is shared by every other:
//! the page's own binary form ([`shared::wire`]) or JSON, for any other
//! client.

use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::ws::{Message, Utf8Bytes};
use shared::ServerMessage;
use tokio::sync::broadcast;

/// Serializes a protocol message; our types always serialize.
pub fn to_json(message: &ServerMessage) -> String {
    serde_json::to_string(message).expect("protocol messages always serialize")
}

/// How a WebSocket client reads and writes messages: JSON text frames, or
/// binary frames in the protocol's compact form (the page asks for those
/// with `?wire=binary`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Wire {
    #[default]
    Json,
    Binary,
}

impl Wire {
    /// `message` as one frame of this wire.
    pub fn frame(self, message: &ServerMessage) -> Message {
        match self {
            Wire::Json => Message::Text(to_json(message).into()),
            Wire::Binary => Message::Binary(shared::wire::to_binary(message).into()),
        }
    }
}

/// A published message, encoded once per wire format for every subscriber.
#[derive(Debug)]
pub struct Published {
    message: ServerMessage,
    json: OnceLock<Utf8Bytes>,
    binary: OnceLock<Bytes>,
}

impl Published {
    pub fn new(message: ServerMessage) -> Published {
        Published {
            message,
            json: OnceLock::new(),
            binary: OnceLock::new(),
        }
    }

    pub fn message(&self) -> &ServerMessage {
        &self.message
    }

    /// The message as a frame of `wire`: encoded by the first caller,
    /// shared (not copied) with the rest.
    pub fn frame(&self, wire: Wire) -> Message {
        match wire {
            Wire::Json => Message::Text(self.json.get_or_init(|| to_json(&self.message).into()).clone()),
            Wire::Binary => Message::Binary(
                self.binary
                    .get_or_init(|| shared::wire::to_binary(&self.message).into())
                    .clone(),
            ),
        }
    }
}

/// The publishing side of one sandbox's stream.
#[derive(Debug)]
pub struct TraceFeed {
    sender: broadcast::Sender<Arc<Published>>,
}

/// What a subscriber gets next.
#[derive(Debug)]
pub enum FeedEvent {
    /// The next message.
    Message(Arc<Published>),
    /// The subscriber was too slow and this many messages were dropped.
    Missed(u64),
}

/// The receiving side, one per watching browser.
#[derive(Debug)]
pub struct Subscription {
    receiver: broadcast::Receiver<Arc<Published>>,
}

impl TraceFeed {
    /// A feed that keeps at most `capacity` messages for a slow subscriber.
    pub fn new(capacity: usize) -> TraceFeed {
        let (sender, _) = broadcast::channel(capacity.max(1));
        TraceFeed { sender }
    }

    /// Sends to every current subscriber; never blocks. Returns how many
    /// subscribers there were.
    pub fn publish(&self, message: ServerMessage) -> usize {
        self.sender.send(Arc::new(Published::new(message))).unwrap_or(0)
    }

    /// A new subscriber, which sees messages published from now on.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            receiver: self.sender.subscribe(),
        }
    }
}

impl Subscription {
    /// Waits for the next event. Never returns `None` while the feed exists;
    /// `None` means the feed was dropped.
    pub async fn next(&mut self) -> Option<FeedEvent> {
        match self.receiver.recv().await {
            Ok(message) => Some(FeedEvent::Message(message)),
            Err(broadcast::error::RecvError::Lagged(count)) => Some(FeedEvent::Missed(count)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missed(count: u64) -> ServerMessage {
        ServerMessage::Missed { count }
    }

    /// A subscriber that does not keep up is told how much it missed and
    /// then continues with the newest messages; the publisher never waits.
    #[tokio::test]
    async fn slow_subscriber_is_told_how_many_it_missed() {
        let feed = TraceFeed::new(4);
        let mut slow = feed.subscribe();
        for i in 0..10 {
            assert_eq!(feed.publish(missed(i)), 1);
        }
        assert!(matches!(slow.next().await, Some(FeedEvent::Missed(6))));
        for i in 6..10 {
            match slow.next().await {
                Some(FeedEvent::Message(published)) => assert_eq!(published.message(), &missed(i)),
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn publishing_without_subscribers_is_fine() {
        let feed = TraceFeed::new(4);
        assert_eq!(feed.publish(missed(1)), 0);
    }

    /// Two subscribers of each wire get the same frame: encoded once per
    /// wire, the bytes shared.
    #[tokio::test]
    async fn a_message_is_encoded_once_per_wire() {
        let feed = TraceFeed::new(4);
        let mut pages: Vec<_> = (0..4).map(|_| feed.subscribe()).collect();
        feed.publish(missed(3));
        let mut frames = Vec::new();
        for (i, page) in pages.iter_mut().enumerate() {
            let Some(FeedEvent::Message(published)) = page.next().await else {
                panic!("no message");
            };
            frames.push(published.frame(if i % 2 == 0 { Wire::Json } else { Wire::Binary }));
        }
        let (Message::Text(a), Message::Text(b)) = (&frames[0], &frames[2]) else {
            panic!("{frames:?}");
        };
        assert_eq!(a.as_str(), to_json(&missed(3)));
        assert_eq!(
            a.as_str().as_ptr(),
            b.as_str().as_ptr(),
            "one JSON encoding, shared"
        );
        let (Message::Binary(a), Message::Binary(b)) = (&frames[1], &frames[3]) else {
            panic!("{frames:?}");
        };
        assert_eq!(shared::wire::from_binary::<ServerMessage>(a).unwrap(), missed(3));
        assert_eq!(a.as_ptr(), b.as_ptr(), "one binary encoding, shared");
    }
}
