//! The key space: the one place that builds Redis key and channel names.
//!
//! The application names its data with logical keys such as `user:42`
//! (tutorial section 6.1: a type prefix, then the id). The engine puts a
//! prefix in front, so one Redis can hold several applications, or several
//! sandboxes of the playground, without their keys meeting:
//!
//! | what                      | Redis name                       |
//! |---------------------------|----------------------------------|
//! | the cached value          | `{prefix}user:42`                |
//! | a reader's lease          | `{prefix}user:42#lease`          |
//! | the stampede lock         | `{prefix}user:42#lock`           |
//! | the refresh lock (SWR)    | `{prefix}user:42#refresh`        |
//! | invalidations (Pub/Sub)   | `{prefix}invalidation`           |
//! | values handed to waiters  | `{prefix}filled`                 |
//!
//! Helper keys carry a `#` suffix, so a logical key must not contain `#`;
//! that is how [`KeySpace::logical`] tells values from helpers when it
//! walks the keys with `SCAN`.
//!
//! On a Redis Cluster a command or script may only touch keys of one hash
//! slot, and a write deletes a value with its lease in one `DEL`. So there
//! the logical key is a hash tag, `{prefix}{user:42}` and
//! `{prefix}{user:42}#lease`: Redis hashes only what is between the
//! braces, so an entry's keys share a slot while entries spread over the
//! masters. [`crate::CacheAside`] tags its key space by itself when its
//! Redis is a cluster ([`KeySpace::tagged`]), unless the prefix holds a tag
//! of its own (`cache:{app}:`): that puts every key in that one slot, and
//! the names stay as on one server.

use std::sync::Arc;

/// Builds every Redis name the engine uses. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySpace {
    prefix: Arc<str>,
    /// Whether logical keys are hash tags (a cluster's key space).
    tagged: bool,
}

/// What separates a logical key from a helper key's role.
const HELPER: char = '#';

impl KeySpace {
    /// A key space whose every name starts with `prefix`, such as
    /// `cache:` or `cache:tab-1:`.
    pub fn new(prefix: impl Into<String>) -> KeySpace {
        KeySpace {
            prefix: Arc::from(prefix.into()),
            tagged: false,
        }
    }

    /// The same key space with every logical key a hash tag, for a Redis
    /// Cluster: an entry's value and helpers share one hash slot.
    pub fn tagged(self) -> KeySpace {
        KeySpace { tagged: true, ..self }
    }

    /// Whether logical keys are hash tags.
    pub fn is_tagged(&self) -> bool {
        self.tagged
    }

    /// Whether the prefix holds a hash tag of its own (`cache:{app}:`):
    /// then every name of the key space hashes to that one slot, and
    /// logical keys need no tags.
    pub fn prefix_has_hash_tag(&self) -> bool {
        self.prefix
            .split_once('{')
            .and_then(|(_, rest)| rest.split_once('}'))
            .is_some_and(|(tag, _)| !tag.is_empty())
    }

    /// The prefix every name starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key holding the cached value of `key`.
    pub fn value(&self, key: &str) -> String {
        let mut name = String::with_capacity(self.prefix.len() + key.len() + 2);
        name.push_str(&self.prefix);
        if self.tagged {
            name.push('{');
            name.push_str(key);
            name.push('}');
        } else {
            name.push_str(key);
        }
        name
    }

    /// The Redis key of `key`'s value as a command argument, written
    /// straight into the command (no string is built for it).
    pub fn value_arg<'a>(&'a self, key: &'a str) -> ValueKey<'a> {
        ValueKey {
            prefix: &self.prefix,
            key,
            tagged: self.tagged,
        }
    }

    /// The lease a reader takes before it loads `key` (the lease guard).
    pub fn lease(&self, key: &str) -> String {
        self.helper(key, "lease")
    }

    /// The lock that lets one request load `key` (the lock policy).
    pub fn lock(&self, key: &str) -> String {
        self.helper(key, "lock")
    }

    /// The short lock that lets one request refresh a stale `key`
    /// (stale-while-revalidate).
    pub fn refresh(&self, key: &str) -> String {
        self.helper(key, "refresh")
    }

    /// The Pub/Sub channel on which writers tell every instance to drop its
    /// near copy of a key.
    pub fn invalidation_channel(&self) -> String {
        format!("{}invalidation", self.prefix)
    }

    /// The Pub/Sub channel on which a lock holder hands the value it stored
    /// to the requests waiting for it.
    pub fn fills_channel(&self) -> String {
        format!("{}filled", self.prefix)
    }

    /// A `SCAN ... MATCH` pattern for every key of this key space.
    pub fn pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.prefix.len() + 1);
        for c in self.prefix.chars() {
            // Glob characters in the prefix must match themselves.
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        pattern
    }

    /// The logical key of a Redis key that holds a value of this key space;
    /// `None` for helper keys (leases, locks) and other key spaces.
    pub fn logical<'a>(&self, redis_key: &'a str) -> Option<&'a str> {
        let key = redis_key.strip_prefix(&*self.prefix)?;
        let key = match self.tagged {
            true => key.strip_prefix('{')?.strip_suffix('}')?,
            false => key,
        };
        (!key.is_empty() && !key.contains(HELPER)).then_some(key)
    }

    fn helper(&self, key: &str, role: &str) -> String {
        format!("{}{HELPER}{role}", self.value(key))
    }
}

/// A value key as a Redis command argument: `{prefix}{key}`.
#[derive(Clone, Copy, Debug)]
pub struct ValueKey<'a> {
    prefix: &'a str,
    key: &'a str,
    tagged: bool,
}

impl redis::ToRedisArgs for ValueKey<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write;
        let mut arg = out.writer_for_next_arg();
        // Writing to the command's own buffer cannot fail.
        let _ = arg.write_all(self.prefix.as_bytes());
        if self.tagged {
            let _ = arg.write_all(b"{");
            let _ = arg.write_all(self.key.as_bytes());
            let _ = arg.write_all(b"}");
        } else {
            let _ = arg.write_all(self.key.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_starts_with_the_prefix() {
        let keys = KeySpace::new("cache:tab-1:");
        assert_eq!(keys.value("user:42"), "cache:tab-1:user:42");
        assert_eq!(keys.lease("user:42"), "cache:tab-1:user:42#lease");
        assert_eq!(keys.lock("user:42"), "cache:tab-1:user:42#lock");
        assert_eq!(keys.refresh("user:42"), "cache:tab-1:user:42#refresh");
        assert_eq!(keys.invalidation_channel(), "cache:tab-1:invalidation");
        assert_eq!(keys.fills_channel(), "cache:tab-1:filled");
    }

    #[test]
    fn a_value_key_argument_is_the_value_key() {
        let keys = KeySpace::new("cache:a:");
        let mut get = redis::cmd("GET");
        get.arg(keys.value_arg("user:42"));
        assert_eq!(crate::connection::command_text(&get), "GET cache:a:user:42");
    }

    #[test]
    fn value_keys_parse_back_and_helpers_do_not() {
        let keys = KeySpace::new("cache:a:");
        assert_eq!(keys.logical("cache:a:user:42"), Some("user:42"));
        assert_eq!(keys.logical(&keys.lock("user:42")), None);
        assert_eq!(keys.logical(&keys.lease("user:42")), None);
        assert_eq!(keys.logical("cache:b:user:42"), None);
        assert_eq!(keys.logical("cache:a:"), None);
    }

    #[test]
    fn a_clusters_entry_keys_share_a_hash_tag() {
        let keys = KeySpace::new("cache:a:").tagged();
        assert_eq!(keys.value("user:42"), "cache:a:{user:42}");
        assert_eq!(keys.lease("user:42"), "cache:a:{user:42}#lease");
        assert_eq!(keys.lock("user:42"), "cache:a:{user:42}#lock");
        let mut get = redis::cmd("GET");
        get.arg(keys.value_arg("user:42"));
        assert_eq!(crate::connection::command_text(&get), "GET cache:a:{user:42}");
        assert_eq!(keys.logical("cache:a:{user:42}"), Some("user:42"));
        assert_eq!(keys.logical(&keys.lease("user:42")), None);
        assert_eq!(keys.logical("cache:a:user:42"), None);
        assert!(!keys.prefix_has_hash_tag());
        assert!(KeySpace::new("cache:{tab-1}:").prefix_has_hash_tag());
        assert!(!KeySpace::new("cache:{}:").prefix_has_hash_tag());
        // Redis hashes what the first braces hold: one entry's names
        // alike (the cluster tests check the slots themselves).
        let tag = |name: &str| {
            name.split_once('{')
                .and_then(|(_, r)| r.split_once('}'))
                .map(|(t, _)| t.to_string())
        };
        assert_eq!(tag(&keys.value("user:42")).as_deref(), Some("user:42"));
        assert_eq!(tag(&keys.refresh("user:42")).as_deref(), Some("user:42"));
    }

    #[test]
    fn the_scan_pattern_escapes_glob_characters() {
        assert_eq!(KeySpace::new("cache:").pattern(), "cache:*");
        assert_eq!(KeySpace::new("c[1]?:").pattern(), "c\\[1\\]\\?:*");
    }
}
