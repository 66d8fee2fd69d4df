//! The records a learner can read, and the rules for naming them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The largest id accepted. Ids above the seeded range are still valid
/// requests (they are how a learner asks for a record that does not exist),
/// but absurdly large numbers are refused as input errors.
pub const MAX_ID: u64 = 999_999_999;

/// Which table a request reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// User profiles, the tutorial's running example (section 2.5).
    Users,
    /// Products from a catalog.
    Products,
}

impl Kind {
    /// Every kind, in the order the UI lists them.
    pub const ALL: [Kind; 2] = [Kind::Users, Kind::Products];

    /// The plural used in URLs: `/api/v1/users/42`.
    pub fn path(self) -> &'static str {
        match self {
            Kind::Users => "users",
            Kind::Products => "products",
        }
    }

    /// The singular used in cache keys: `cache:default:user:42`.
    pub fn key_segment(self) -> &'static str {
        match self {
            Kind::Users => "user",
            Kind::Products => "product",
        }
    }

    /// Parses the URL form (`users`, `products`).
    ///
    /// # Errors
    /// [`InputError::UnknownKind`] for anything else.
    pub fn parse(s: &str) -> Result<Kind, InputError> {
        Kind::ALL
            .into_iter()
            .find(|k| k.path() == s)
            .ok_or_else(|| InputError::UnknownKind(s.to_string()))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

/// Parses a record id typed by a learner or sent in a URL.
///
/// # Errors
/// [`InputError::NotANumber`] when `s` is not a whole number,
/// [`InputError::IdOutOfRange`] when it is 0 or above [`MAX_ID`].
pub fn parse_id(s: &str) -> Result<u64, InputError> {
    let trimmed = s.trim();
    let id: u64 = match trimmed.parse() {
        Ok(id) => id,
        // A long run of digits is a number, just too big for the playground.
        Err(_) if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(InputError::IdOutOfRange(trimmed.to_string()))
        }
        Err(_) => return Err(InputError::NotANumber(s.to_string())),
    };
    check_id(id)?;
    Ok(id)
}

/// Checks that an already numeric id is in range.
///
/// # Errors
/// [`InputError::IdOutOfRange`] when `id` is 0 or above [`MAX_ID`].
pub fn check_id(id: u64) -> Result<(), InputError> {
    if id == 0 || id > MAX_ID {
        return Err(InputError::IdOutOfRange(id.to_string()));
    }
    Ok(())
}

/// A sandbox name: it namespaces one learner's cache keys and trace stream.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SandboxId(String);

impl SandboxId {
    /// The sandbox REST requests use when they name none, so that `curl`
    /// requests show up in a browser watching `default`.
    pub const DEFAULT: &'static str = "default";
    /// The longest accepted name.
    pub const MAX_LEN: usize = 40;

    /// Validates a sandbox name: 1 to 40 ASCII letters, digits, `-` or `_`.
    /// The name ends up inside Redis keys, so nothing else is allowed.
    ///
    /// # Errors
    /// [`InputError::BadSandbox`] for anything else.
    pub fn parse(s: &str) -> Result<SandboxId, InputError> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(SandboxId(s.to_string()))
        } else {
            Err(InputError::BadSandbox(s.to_string()))
        }
    }

    /// The sandbox used when none is named.
    pub fn default_sandbox() -> SandboxId {
        SandboxId(Self::DEFAULT.to_string())
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for SandboxId {
    fn default() -> Self {
        Self::default_sandbox()
    }
}

impl TryFrom<String> for SandboxId {
    type Error = InputError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        SandboxId::parse(&s)
    }
}

impl From<SandboxId> for String {
    fn from(s: SandboxId) -> String {
        s.0
    }
}

impl fmt::Display for SandboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Bad input from a learner or a client. Each variant says when it occurs;
/// its `Display` text is shown to the user as is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputError {
    /// Occurs when a URL names a table other than `users` or `products`.
    UnknownKind(String),
    /// Occurs when an id is not a whole number.
    NotANumber(String),
    /// Occurs when an id is 0 or larger than [`MAX_ID`].
    IdOutOfRange(String),
    /// Occurs when a sandbox name is empty, too long or has characters other
    /// than letters, digits, `-` and `_`.
    BadSandbox(String),
    /// Occurs when an update's new name is empty, longer than
    /// [`MAX_NAME_LEN`] characters or has control characters.
    BadName(String),
    /// Occurs when a sandbox setting is out of its range.
    BadSetting(String),
    /// Occurs when a client or a sandbox goes over a rate or a count the
    /// playground allows (operations per second, open sockets, herds).
    OverLimit(String),
}

/// At most 64 characters of something a client sent, for an error message:
/// an error never echoes back more than it has to.
fn short(s: &str) -> String {
    let mut cut: String = s.chars().take(64).collect();
    if cut.len() < s.len() {
        cut.push('…');
    }
    cut
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::UnknownKind(k) => write!(
                f,
                "unknown kind {:?}: use one of {}",
                short(k),
                Kind::ALL.map(Kind::path).join(", ")
            ),
            InputError::NotANumber(s) => write!(f, "id {:?} is not a whole number", short(s)),
            InputError::IdOutOfRange(s) => {
                write!(
                    f,
                    "id {} is out of range: use a number from 1 to {MAX_ID}",
                    short(s)
                )
            }
            InputError::BadSandbox(s) => write!(
                f,
                "sandbox {:?} is not valid: use 1 to {} letters, digits, '-' or '_'",
                short(s),
                SandboxId::MAX_LEN
            ),
            InputError::BadName(s) => write!(
                f,
                "name {:?} is not valid: use 1 to {MAX_NAME_LEN} characters, with no tabs or line breaks, not only spaces",
                short(s)
            ),
            InputError::BadSetting(s) | InputError::OverLimit(s) => f.write_str(&short_text(s)),
        }
    }
}

impl std::error::Error for InputError {}

/// A message of ours may be long, but never unbounded.
fn short_text(s: &str) -> String {
    let mut cut: String = s.chars().take(400).collect();
    if cut.len() < s.len() {
        cut.push('…');
    }
    cut
}

/// A user profile, as stored in the database and cached as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub email: String,
    pub city: String,
    /// The day the user signed up, `YYYY-MM-DD`.
    pub joined: String,
    /// Sensitive: the back end seals it before caching, unless a sandbox
    /// switched sealing off to show why ([`looks_sealed`]). Empty in
    /// entries cached before it existed.
    #[serde(default)]
    pub phone: String,
    /// Starts at 1 and grows by one with every update of the row, so a
    /// cached copy can say which version of the row it holds.
    pub version: u64,
    /// Filler text a sandbox may add so values are big (tutorial section
    /// 4.4: what a big value costs on every hit); empty, and left out of
    /// the JSON, otherwise. Not a column.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub notes: String,
}

/// A catalog product, as stored in the database and cached as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub id: u64,
    pub name: String,
    pub category: String,
    /// The price in cents, so no float rounding ever shows up.
    pub price_cents: u64,
    pub stock: u64,
    /// Starts at 1 and grows by one with every update of the row.
    pub version: u64,
    /// Filler text a sandbox may add so values are big (tutorial section
    /// 4.4: what a big value costs on every hit); empty, and left out of
    /// the JSON, otherwise. Not a column.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub notes: String,
}

/// One record of either kind. It is written as the plain user or product
/// object, with no tag; reading tells the kinds apart by their fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Record {
    User(User),
    Product(Product),
}

impl<'de> Deserialize<'de> for Record {
    /// Reads the fields of either kind in one pass (serde's untagged enums
    /// buffer the whole object and try each variant in turn, which costs
    /// more on the cache's hot path), then builds the kind whose fields are
    /// all there: a user's `email`, `city` and `joined`, or a product's
    /// `category`, `price_cents` and `stock`.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Record, D::Error> {
        #[derive(Deserialize)]
        struct Fields {
            id: u64,
            name: String,
            version: u64,
            email: Option<String>,
            city: Option<String>,
            joined: Option<String>,
            phone: Option<String>,
            category: Option<String>,
            price_cents: Option<u64>,
            stock: Option<u64>,
            notes: Option<String>,
        }
        let f = Fields::deserialize(deserializer)?;
        match (f.email, f.city, f.joined, f.category, f.price_cents, f.stock) {
            (Some(email), Some(city), Some(joined), ..) => Ok(Record::User(User {
                id: f.id,
                name: f.name,
                email,
                city,
                joined,
                phone: f.phone.unwrap_or_default(),
                version: f.version,
                notes: f.notes.unwrap_or_default(),
            })),
            (.., Some(category), Some(price_cents), Some(stock)) => Ok(Record::Product(Product {
                id: f.id,
                name: f.name,
                category,
                price_cents,
                stock,
                version: f.version,
                notes: f.notes.unwrap_or_default(),
            })),
            _ => Err(serde::de::Error::custom(
                "neither a user (email, city, joined) nor a product (category, price_cents, stock)",
            )),
        }
    }
}

/// A record inside a protocol message ([`crate::ReadResult`],
/// [`crate::WriteResult`]): in JSON, the record's own JSON (as cached); in
/// the binary form ([`crate::wire`]), its kind by number and then every
/// field in order, empty notes too (a binary format cannot leave a field
/// out). The record's own `Serialize` stays the JSON shape for every
/// format, since the cache stores it with MessagePack too.
pub(crate) mod in_message {
    use super::{Product, Record, User};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(remote = "Record")]
    enum Compact {
        User(#[serde(with = "CompactUser")] User),
        Product(#[serde(with = "CompactProduct")] Product),
    }

    // Every field of each kind, in order; the compiler checks they are the
    // record's own (a field added there and not here does not build).
    #[derive(Serialize, Deserialize)]
    #[serde(remote = "User")]
    struct CompactUser {
        id: u64,
        name: String,
        email: String,
        city: String,
        joined: String,
        phone: String,
        version: u64,
        notes: String,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(remote = "Product")]
    struct CompactProduct {
        id: u64,
        name: String,
        category: String,
        price_cents: u64,
        stock: u64,
        version: u64,
        notes: String,
    }

    struct Borrowed<'a>(&'a Record);

    impl Serialize for Borrowed<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            Compact::serialize(self.0, serializer)
        }
    }

    #[derive(Deserialize)]
    struct Owned(#[serde(with = "Compact")] Record);

    pub fn serialize<S: Serializer>(record: &Option<Record>, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            record.serialize(serializer)
        } else {
            record.as_ref().map(Borrowed).serialize(serializer)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Record>, D::Error> {
        if deserializer.is_human_readable() {
            Option::<Record>::deserialize(deserializer)
        } else {
            Ok(Option::<Owned>::deserialize(deserializer)?.map(|owned| owned.0))
        }
    }
}

/// What every sealed value starts with: `enc:v1:<key id>:<nonce and
/// ciphertext>`, as the back end's sealer writes it.
pub const SEALED_PREFIX: &str = "enc:v1:";

/// Whether a phone number as Redis holds it is sealed rather than in the
/// clear.
pub fn looks_sealed(phone: &str) -> bool {
    phone.starts_with(SEALED_PREFIX)
}

impl Record {
    /// The record with `bytes` of filler in its notes (0: none): words
    /// drawn at random (seeded by the id, so the same every time), which
    /// compress about as well as real text, not like one sentence repeated.
    pub fn padded(mut self, bytes: usize) -> Record {
        const WORDS: [&str; 32] = [
            "cache", "redis", "query", "row", "key", "value", "miss", "hit", "store", "read", "write",
            "expire", "price", "stock", "order", "user", "city", "name", "fresh", "stale", "lock", "lease",
            "load", "memory", "policy", "index", "table", "join", "commit", "page", "token", "batch",
        ];
        let mut state = self.id() ^ 0x9e37_79b9_7f4a_7c15;
        let notes = match &mut self {
            Record::User(u) => &mut u.notes,
            Record::Product(p) => &mut p.notes,
        };
        notes.clear();
        while notes.len() < bytes {
            // SplitMix64's step: a different word most of the time.
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            notes.push_str(WORDS[(z % 32) as usize]);
            notes.push(if z & 0x3f00 == 0 { '.' } else { ' ' });
        }
        notes.truncate(bytes);
        self
    }

    /// The record as its row holds it: without filler.
    pub fn unpadded(&self) -> Record {
        self.clone().padded(0)
    }

    /// The record's id.
    pub fn id(&self) -> u64 {
        match self {
            Record::User(u) => u.id,
            Record::Product(p) => p.id,
        }
    }

    /// The row version this copy was made from.
    pub fn version(&self) -> u64 {
        match self {
            Record::User(u) => u.version,
            Record::Product(p) => p.version,
        }
    }

    /// A short human label: the user's or the product's name.
    pub fn title(&self) -> &str {
        match self {
            Record::User(u) => &u.name,
            Record::Product(p) => &p.name,
        }
    }
}

/// The longest name an update may set.
pub const MAX_NAME_LEN: usize = 80;

/// Checks a new name for a record: 1 to 80 characters, no control
/// characters, not only spaces. Returns it trimmed.
///
/// # Errors
/// [`InputError::BadName`].
pub fn parse_name(name: &str) -> Result<String, InputError> {
    let trimmed = name.trim();
    let ok = !trimmed.is_empty()
        && trimmed.chars().count() <= MAX_NAME_LEN
        && !trimmed.chars().any(char::is_control);
    if ok {
        Ok(trimmed.to_string())
    } else {
        Err(InputError::BadName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_url_form() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.path()), Ok(kind));
        }
        assert_eq!(
            Kind::parse("orders"),
            Err(InputError::UnknownKind("orders".into()))
        );
    }

    #[test]
    fn ids_must_be_whole_numbers_in_range() {
        assert_eq!(parse_id("42"), Ok(42));
        assert_eq!(parse_id(" 7 "), Ok(7));
        assert!(matches!(parse_id("abc"), Err(InputError::NotANumber(_))));
        assert!(matches!(parse_id("-3"), Err(InputError::NotANumber(_))));
        assert!(matches!(parse_id(""), Err(InputError::NotANumber(_))));
        assert!(matches!(parse_id("0"), Err(InputError::IdOutOfRange(_))));
        assert!(matches!(parse_id("1000000000"), Err(InputError::IdOutOfRange(_))));
        assert!(matches!(
            parse_id("99999999999999999999999"),
            Err(InputError::IdOutOfRange(_))
        ));
    }

    #[test]
    fn sandbox_names_cannot_smuggle_key_separators() {
        assert!(SandboxId::parse("tab-1_A").is_ok());
        assert!(SandboxId::parse("").is_err());
        assert!(SandboxId::parse("a:b").is_err());
        assert!(SandboxId::parse("a b").is_err());
        assert!(SandboxId::parse(&"x".repeat(41)).is_err());
        let json = serde_json::to_string(&SandboxId::parse("abc").unwrap()).unwrap();
        assert_eq!(json, "\"abc\"");
        assert!(serde_json::from_str::<SandboxId>("\"a*b\"").is_err());
    }

    #[test]
    fn error_messages_say_what_to_do() {
        let msg = InputError::UnknownKind("orders".into()).to_string();
        assert!(msg.contains("users, products"), "{msg}");
        let msg = InputError::IdOutOfRange("0".into()).to_string();
        assert!(msg.contains("from 1 to 999999999"), "{msg}");
    }

    #[test]
    fn errors_never_echo_more_than_a_little_of_the_input() {
        let huge = "x".repeat(1_000_000);
        for error in [
            InputError::UnknownKind(huge.clone()),
            InputError::BadSandbox(huge.clone()),
            InputError::BadName(huge.clone()),
            InputError::BadSetting(huge.clone()),
        ] {
            assert!(error.to_string().len() < 600, "{:.80}", error.to_string());
        }
    }

    #[test]
    fn padding_is_the_size_asked_for_the_same_every_time_and_comes_off() {
        let user = Record::User(User {
            id: 42,
            name: "Ada Lovelace".into(),
            email: "ada@example.com".into(),
            city: "London".into(),
            joined: "2020-02-02".into(),
            phone: String::new(),
            version: 1,
            notes: String::new(),
        });
        let padded = user.clone().padded(10_000);
        let Record::User(u) = &padded else { panic!() };
        assert_eq!(u.notes.len(), 10_000);
        assert_eq!(padded, user.clone().padded(10_000), "seeded by the id");
        assert!(u.notes.split(' ').count() > 1_000, "words, not one long run");
        assert_eq!(padded.unpadded(), user);
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(parse_name("  Ada  "), Ok("Ada".into()));
        assert!(parse_name("   ").is_err());
        assert!(parse_name("a\u{7}b").is_err());
        assert!(parse_name(&"x".repeat(81)).is_err());
        assert!(parse_name(&"é".repeat(80)).is_ok());
    }

    #[test]
    fn untagged_records_deserialize_to_the_right_kind() {
        let user: Record = serde_json::from_str(
            r#"{"id":1,"name":"A","email":"a@example.com","city":"Oslo","joined":"2024-01-02","version":1}"#,
        )
        .unwrap();
        assert!(matches!(user, Record::User(_)));
        let product: Record = serde_json::from_str(
            r#"{"id":2,"name":"Lamp","category":"home","price_cents":1999,"stock":3,"version":4}"#,
        )
        .unwrap();
        assert!(matches!(product, Record::Product(_)));
        assert_eq!(product.title(), "Lamp");
        let neither = serde_json::from_str::<Record>(r#"{"id":3,"name":"?","version":1,"city":"Oslo"}"#);
        assert!(neither.unwrap_err().to_string().contains("neither a user"));
        for record in [user, product] {
            let json = serde_json::to_string(&record).unwrap();
            assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), record);
        }
    }
}
