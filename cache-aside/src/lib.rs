//! The cache-aside pattern on Redis, as a library.
//!
//! The application owns its data; the cache sits beside it. To read, the
//! application asks Redis first and, on a miss, loads from its own database
//! and stores what it found, with a TTL. To write, it changes its database
//! first and then deals with the cached copy. This crate does the cache's
//! part of both, with one entry point for reads:
//!
//! ```no_run
//! # use cache_aside::{CacheAside, KeySpace, Redis};
//! # #[derive(Clone, serde::Serialize, serde::Deserialize)] struct User { id: u64, name: String }
//! # async fn find_user(id: u64) -> Result<Option<User>, std::io::Error> { Ok(None) }
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let users: CacheAside<User> = CacheAside::builder(Redis::open("redis://127.0.0.1/")?, KeySpace::new("cache:"))
//!     .ttl(std::time::Duration::from_secs(300))
//!     .build()?;
//! let answer = users.get_or_load("user:42", || find_user(42)).await?;
//! println!("{:?} came from {:?}", answer.value.map(|u| u.name), answer.source);
//! # Ok(()) }
//! ```
//!
//! Every refinement of the tutorial's pitfalls is an option of that one
//! call, so they compose: negative caching, TTL jitter, a stampede defence
//! (single flight, a Redis lock, XFetch, stale-while-revalidate), a guard
//! against the stale-set race (leases, version checks), and a near cache
//! kept coherent over Redis Pub/Sub. A Redis failure never fails a read.
//! A [`Seal`] can encrypt what must not rest in Redis in the clear.
//! An [`Observer`] sees every step with the command as sent. The same
//! cache runs on a Redis Cluster ([`Redis::open_cluster`]): an entry's
//! keys share a hash slot, so its commands and scripts stay on one master.
//!
//! # Layout
//! - [`read`]: `get_or_load`, the read path. Start here.
//! - [`stampede`]: single flight, the lock, stale-while-revalidate.
//! - [`guard`]: storing as the race guard allows (leases, version checks).
//! - [`write`]: what a write does to the cached copy.
//! - [`policy`]: the read path's decisions as pure functions (XFetch's
//!   rule, jitter, what to do with an entry found).
//! - [`options`]: TTLs and policies, per cache and per call.
//! - [`envelope`]: the one format of every entry in Redis.
//! - [`seal`]: sealing sensitive values on their way into Redis.
//! - [`keys`]: the one place that names keys and channels.
//! - [`bus`]: the Pub/Sub subscription (invalidations, values handed over).
//! - [`observe`]: the observer trait and its steps.
//! - [`connection`]: the Redis connection, with timeouts.
//! - [`random`]: the seeded random source.

pub mod breaker;
pub mod bus;
mod cache;
mod call;
pub mod connection;
pub mod envelope;
mod flight;
pub mod guard;
pub mod keys;
mod near;
pub mod observe;
pub mod options;
pub mod policy;
pub mod random;
pub mod read;
pub mod retry;
pub mod seal;
pub mod stampede;
pub mod write;

pub use breaker::{BreakerPolicy, BreakerState};
pub use cache::{Builder, CacheAside, Value};
pub use connection::{redact_url, Redis, RedisError};
pub use envelope::{Body, Content, Encoding, Envelope, DELETED_VERSION};
pub use keys::KeySpace;
pub use observe::{NoObserver, Observer, Pause, Reply, Status, Step, StepKind};
pub use options::{Options, OptionsError, RaceGuard, Stampede};
pub use read::{Answer, Source};
pub use seal::Seal;
pub use write::{Change, Effect, Published, Remaining, WritePolicy, Written};
