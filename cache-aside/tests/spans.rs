//! The engine's `tracing` spans, as an OpenTelemetry exporter (or any
//! subscriber) receives them: one `get_or_load` span per call, holding a
//! span per Redis command and one for the load, with the conventions'
//! field names.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_aside::Options;
use common::{cache, redis_server, Db};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span as it closed: its name, its parent's name, its fields.
#[derive(Clone, Debug)]
struct Closed {
    name: &'static str,
    parent: Option<&'static str>,
    fields: HashMap<String, String>,
}

/// Keeps every span's fields and, when it closes, the span.
#[derive(Clone, Default)]
struct Spans {
    open: Arc<Mutex<HashMap<u64, HashMap<String, String>>>>,
    closed: Arc<Mutex<Vec<Closed>>>,
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        self.open.lock().unwrap().insert(id.into_u64(), fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some(fields) = self.open.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let fields = self
            .open
            .lock()
            .unwrap()
            .remove(&id.into_u64())
            .unwrap_or_default();
        self.closed.lock().unwrap().push(Closed {
            name: span.name(),
            parent: span.parent().map(|p| p.name()),
            fields,
        });
    }
}

impl Spans {
    fn take(&self) -> Vec<Closed> {
        std::mem::take(&mut *self.closed.lock().unwrap())
    }
}

/// A miss: the call's span holds the lookup, the load and the store; a
/// hit: the lookup alone. The call's span says where the answer came from.
#[tokio::test(flavor = "current_thread")]
async fn each_call_is_a_span_holding_its_redis_commands_and_its_load() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let _default = tracing::subscriber::set_default(subscriber);
    let server = redis_server();
    let db = Db::new(Duration::ZERO);
    let items = cache(&server, Options::default());

    items.get_or_load("item:1", db.loader(1)).await.unwrap();
    let miss = spans.take();
    let names: Vec<(&str, Option<&str>)> = miss.iter().map(|s| (s.name, s.parent)).collect();
    assert_eq!(
        names,
        [
            ("redis", Some("get_or_load")),
            ("load", Some("get_or_load")),
            ("redis", Some("get_or_load")),
            ("get_or_load", None),
        ],
        "{miss:#?}"
    );
    let lookup = &miss[0].fields;
    assert_eq!(lookup["otel.name"], "lookup");
    assert_eq!(lookup["db.system"], "redis");
    assert_eq!(lookup["db.statement"], "GET cache:item:1");
    assert_eq!(lookup["cache.status"], "miss");
    assert_eq!(miss[1].fields["cache.key"], "item:1");
    let store = &miss[2].fields;
    assert_eq!(store["cache.step"], "store");
    assert!(
        store["db.statement"].starts_with("SET cache:item:1 "),
        "{store:?}"
    );
    assert_eq!(miss[3].fields["cache.source"], "loaded");

    items.get_or_load("item:1", db.loader(1)).await.unwrap();
    let hit = spans.take();
    assert_eq!(hit.len(), 2, "{hit:#?}");
    assert_eq!(hit[0].fields["cache.status"], "hit");
    assert_eq!(hit[1].fields["cache.source"], "redis");
}
