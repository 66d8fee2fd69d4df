//! Fan-out of traces to the browsers watching a sandbox.
//!
//! A bounded Tokio broadcast channel: publishing never waits, whatever the
//! subscribers do, so a slow browser can never slow down a request. A
//! subscriber that falls more than the channel's capacity behind loses the
//! oldest messages and is told how many it missed, instead of silently
//! going deaf.

use std::sync::Arc;

use shared::ServerMessage;
use tokio::sync::broadcast;

/// Serializes a protocol message; our types always serialize.
pub fn to_json(message: &ServerMessage) -> String {
    serde_json::to_string(message).expect("protocol messages always serialize")
}

/// A published message, already serialized once for every subscriber.
pub type Published = Arc<str>;

/// The publishing side of one sandbox's stream.
#[derive(Debug)]
pub struct TraceFeed {
    sender: broadcast::Sender<Published>,
}

/// What a subscriber gets next.
#[derive(Debug, PartialEq, Eq)]
pub enum FeedEvent {
    /// The next message, as JSON text.
    Message(Published),
    /// The subscriber was too slow and this many messages were dropped.
    Missed(u64),
}

/// The receiving side, one per watching browser.
#[derive(Debug)]
pub struct Subscription {
    receiver: broadcast::Receiver<Published>,
}

impl TraceFeed {
    /// A feed that keeps at most `capacity` messages for a slow subscriber.
    pub fn new(capacity: usize) -> TraceFeed {
        let (sender, _) = broadcast::channel(capacity.max(1));
        TraceFeed { sender }
    }

    /// Sends to every current subscriber; never blocks. Returns how many
    /// subscribers there were.
    pub fn publish(&self, message: Published) -> usize {
        self.sender.send(message).unwrap_or(0)
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

    /// A subscriber that does not keep up is told how much it missed and
    /// then continues with the newest messages; the publisher never waits.
    #[tokio::test]
    async fn slow_subscriber_is_told_how_many_it_missed() {
        let feed = TraceFeed::new(4);
        let mut slow = feed.subscribe();
        for i in 0..10 {
            assert_eq!(feed.publish(Arc::from(i.to_string())), 1);
        }
        assert_eq!(slow.next().await, Some(FeedEvent::Missed(6)));
        for i in 6..10 {
            assert_eq!(
                slow.next().await,
                Some(FeedEvent::Message(Arc::from(i.to_string())))
            );
        }
    }

    #[tokio::test]
    async fn publishing_without_subscribers_is_fine() {
        let feed = TraceFeed::new(4);
        assert_eq!(feed.publish(Arc::from("x")), 0);
    }
}
