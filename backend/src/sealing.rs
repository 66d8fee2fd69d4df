//! Sealing users' phone numbers before they are cached (tutorial section
//! 6.6: sensitive data in a cache is encrypted). Redis, its backups and
//! anyone who can run `GET` there see only ciphertext; the application
//! opens it on the way out.
//!
//! AES-256-GCM (the `aes-gcm` crate): each phone number gets a fresh random
//! nonce, and the Redis key it rests at (`cache:s4f…:user:42`) is bound in
//! as associated data, so a sealed number copied to another record's key,
//! or into another sandbox, does not open. A sealed
//! number reads `enc:v1:<key id>:<nonce and ciphertext, base64url>`: the key
//! id lets keys rotate. Configure `CACHE_KEYS=new:…,old:…`; the first seals,
//! all open; an entry sealed with a key no longer listed is a miss, and is
//! replaced, sealed with the current key.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use cache_aside::Seal;
use shared::{Record, User};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What every sealed value starts with.
const PREFIX: &str = shared::SEALED_PREFIX;

/// One key: its id, and the cipher made from it.
struct Key {
    id: String,
    cipher: Aes256Gcm,
}

/// The keys that seal and open phone numbers: the first seals.
pub struct Sealer {
    keys: Vec<Key>,
}

/// Why `CACHE_KEYS` could not be used. Each variant says when it occurs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// Occurs when an entry (counted from 1) is not `id:key`, or its id is
    /// not 1 to 16 letters and digits. Nothing of the entry is shown: it
    /// may be a key.
    #[error("CACHE_KEYS entry {0} is not id:base64-key (id: 1 to 16 letters or digits)")]
    Form(usize),
    /// Occurs when a key is not base64 for exactly 32 bytes.
    #[error("CACHE_KEYS key {0:?} is not 32 bytes in base64 (make one with: openssl rand -base64 32)")]
    Length(String),
    /// Occurs when two keys have the same id.
    #[error("CACHE_KEYS names key {0:?} twice")]
    Duplicate(String),
}

impl Sealer {
    /// Keys from `id:base64-key,id:base64-key`, the first sealing.
    ///
    /// # Errors
    /// [`KeyError`] for a malformed list (nothing of a key is echoed).
    pub fn from_config(keys: &str) -> Result<Sealer, KeyError> {
        let mut parsed: Vec<Key> = Vec::new();
        for (n, entry) in keys
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let Some((id, material)) = entry.split_once(':') else {
                return Err(KeyError::Form(n + 1));
            };
            if id.is_empty() || id.len() > 16 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(KeyError::Form(n + 1));
            }
            let bytes = STANDARD
                .decode(material.trim())
                .ok()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| KeyError::Length(id.to_string()))?;
            if parsed.iter().any(|k| k.id == id) {
                return Err(KeyError::Duplicate(id.to_string()));
            }
            parsed.push(Key {
                id: id.to_string(),
                cipher: Aes256Gcm::new_from_slice(&bytes).map_err(|_| KeyError::Length(id.to_string()))?,
            });
        }
        if parsed.is_empty() {
            return Err(KeyError::Form(1));
        }
        Ok(Sealer { keys: parsed })
    }

    /// A key made now from the system's random source, for a back end with
    /// no `CACHE_KEYS`: its sealed entries do not open after a restart
    /// (they are misses, then replaced), fine for a Redis that restarts
    /// with it.
    pub fn ephemeral() -> Sealer {
        let mut bytes = [0u8; 32];
        // Without entropy (never on a working system), a fixed key: the
        // numbers are then only encoded, and the log says so.
        if getrandom::fill(&mut bytes).is_err() {
            tracing::error!("no random source: cached phone numbers are sealed with a fixed key");
        }
        Sealer {
            keys: vec![Key {
                id: "boot".into(),
                cipher: Aes256Gcm::new_from_slice(&bytes).expect("32 bytes"),
            }],
        }
    }

    /// The id of the key that seals.
    pub fn sealing_key(&self) -> &str {
        &self.keys[0].id
    }

    /// `plain` sealed for the Redis key `at`; `None` when it cannot be
    /// (no random nonce: a repeated one would break GCM).
    pub fn seal_text(&self, at: &str, plain: &str) -> Option<String> {
        let key = &self.keys[0];
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).ok()?;
        let payload = Payload {
            msg: plain.as_bytes(),
            aad: at.as_bytes(),
        };
        let ciphertext = key.cipher.encrypt(Nonce::from_slice(&nonce), payload).ok()?;
        let mut sealed = nonce.to_vec();
        sealed.extend(ciphertext);
        Some(format!("{PREFIX}{}:{}", key.id, URL_SAFE_NO_PAD.encode(sealed)))
    }

    /// The plain text of `sealed` read at the Redis key `at`; `None` when
    /// its key is not known here, or it was altered, or it was sealed for
    /// another key.
    pub fn open_text(&self, at: &str, sealed: &str) -> Option<String> {
        let (id, data) = sealed.strip_prefix(PREFIX)?.split_once(':')?;
        let key = self.keys.iter().find(|k| k.id == id)?;
        let bytes = URL_SAFE_NO_PAD.decode(data).ok()?;
        if bytes.len() < 12 {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let payload = Payload {
            msg: ciphertext,
            aad: at.as_bytes(),
        };
        let plain = key.cipher.decrypt(Nonce::from_slice(nonce), payload).ok()?;
        String::from_utf8(plain).ok()
    }
}

impl Seal<Record> for Sealer {
    fn seal(&self, at: &str, record: &Record) -> Option<Record> {
        Some(match record {
            Record::User(user) if !user.phone.is_empty() => Record::User(User {
                phone: self.seal_text(at, &user.phone)?,
                ..user.clone()
            }),
            other => other.clone(),
        })
    }

    fn open(&self, at: &str, sealed: Record) -> Option<Record> {
        match sealed {
            // Entries cached before phone numbers existed have none.
            Record::User(user) if user.phone.is_empty() => Some(Record::User(user)),
            Record::User(user) => {
                let phone = self.open_text(at, &user.phone)?;
                Some(Record::User(User { phone, ..user }))
            }
            other => Some(other),
        }
    }
}

/// A sandbox's sealing: the back end's keys and the sandbox's switch
/// (`seal_sensitive`), which the lessons turn off to show the problem
/// first.
///
/// Off, phone numbers go into Redis in the clear, and entries sealed
/// earlier still open. On, a number found in the clear is never served: a
/// plain value where a sealed one belongs may have been written by anyone
/// who can reach Redis, so it counts as a miss and is replaced, sealed.
pub struct SandboxSeal {
    keys: Arc<Sealer>,
    on: AtomicBool,
}

impl SandboxSeal {
    pub fn new(keys: Arc<Sealer>, on: bool) -> SandboxSeal {
        SandboxSeal {
            keys,
            on: AtomicBool::new(on),
        }
    }

    /// Follows the sandbox's setting.
    pub fn set(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
    }

    fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }
}

impl Seal<Record> for SandboxSeal {
    fn seal(&self, at: &str, record: &Record) -> Option<Record> {
        if self.is_on() {
            self.keys.seal(at, record)
        } else {
            Some(record.clone())
        }
    }

    fn open(&self, at: &str, sealed: Record) -> Option<Record> {
        match &sealed {
            Record::User(user) if !self.is_on() && !shared::looks_sealed(&user.phone) => Some(sealed),
            _ => self.keys.open(at, sealed),
        }
    }
}

/// Whether a cached phone number is sealed, and with which key: for the
/// key inspector.
pub fn sealed_with(phone: &str) -> Option<&str> {
    phone.strip_prefix(PREFIX)?.split_once(':').map(|(id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
    const AT: &str = "cache:s1:user:42";

    fn user() -> Record {
        Record::User(User {
            id: 42,
            name: "Ada Lovelace".into(),
            email: "ada@example.com".into(),
            city: "London".into(),
            joined: "2020-02-02".into(),
            phone: "+1 415 555 0142".into(),
            version: 3,
            notes: String::new(),
        })
    }

    fn phone(record: &Record) -> &str {
        match record {
            Record::User(user) => &user.phone,
            Record::Product(_) => "",
        }
    }

    #[test]
    fn phone_numbers_rest_sealed_and_open_only_where_they_were_sealed() {
        let sealer = Sealer::from_config(&format!("k1:{K1}")).unwrap();
        let sealed = sealer.seal(AT, &user()).unwrap();
        assert!(phone(&sealed).starts_with("enc:v1:k1:"), "{}", phone(&sealed));
        assert!(!serde_json::to_string(&sealed).unwrap().contains("555"));
        assert_eq!(sealed_with(phone(&sealed)), Some("k1"));
        assert_eq!(sealer.open(AT, sealed.clone()), Some(user()));
        // Two seals of one number differ (a fresh nonce each time).
        assert_ne!(phone(&sealer.seal(AT, &user()).unwrap()), phone(&sealed));
        // Copied to another record's key or another sandbox's, or altered,
        // it does not open.
        assert_eq!(sealer.open("cache:s1:user:43", sealed.clone()), None);
        assert_eq!(sealer.open("cache:s2:user:42", sealed.clone()), None);
        let Record::User(mut altered) = sealed else {
            unreachable!()
        };
        let flipped = if &altered.phone[20..21] == "A" { "B" } else { "A" };
        altered.phone.replace_range(20..21, flipped);
        assert_eq!(sealer.open(AT, Record::User(altered)), None);
    }

    #[test]
    fn keys_rotate_first_seals_all_open() {
        let old = Sealer::from_config(&format!("k1:{K1}")).unwrap();
        let rotating = Sealer::from_config(&format!("k2:{K2}, k1:{K1}")).unwrap();
        let new = Sealer::from_config(&format!("k2:{K2}")).unwrap();
        let by_old = old.seal(AT, &user()).unwrap();
        assert_eq!(rotating.open(AT, by_old.clone()), Some(user()));
        assert_eq!(new.open(AT, by_old), None, "k1 retired: a miss");
        assert_eq!(rotating.sealing_key(), "k2");
        assert_eq!(new.open(AT, rotating.seal(AT, &user()).unwrap()), Some(user()));
    }

    #[test]
    fn bad_key_lists_are_refused_without_echoing_keys() {
        let pasted_without_id = Sealer::from_config(K1).err().unwrap().to_string();
        assert!(!pasted_without_id.contains(&K1[..8]), "{pasted_without_id}");
        assert_eq!(
            Sealer::from_config(&format!("k1:{K1},nocolon")).err(),
            Some(KeyError::Form(2))
        );
        assert_eq!(
            Sealer::from_config("k1:c2hvcnQ=").err(),
            Some(KeyError::Length("k1".into()))
        );
        let twice = format!("k1:{K1},k1:{K2}");
        assert_eq!(
            Sealer::from_config(&twice).err(),
            Some(KeyError::Duplicate("k1".into()))
        );
        let error = Sealer::from_config(&format!("bad id!:{K1}"))
            .err()
            .unwrap()
            .to_string();
        assert!(!error.contains(K1), "{error}");
        assert!(Sealer::from_config("").is_err());
    }

    #[test]
    fn products_and_numberless_users_pass_as_they_are() {
        let sealer = Sealer::ephemeral();
        let Record::User(mut numberless) = user() else {
            unreachable!()
        };
        numberless.phone.clear();
        let record = Record::User(numberless);
        assert_eq!(sealer.seal(AT, &record), Some(record.clone()));
        assert_eq!(sealer.open(AT, record.clone()), Some(record));
    }
}
