//! Logs in the form Terraform shows under `TF_LOG`: go-plugin reads the provider's stderr line by
//! line and treats a JSON object in go-hclog's shape (`@level`, `@message`, `@timestamp`, other keys
//! as fields) as a structured entry at that level.
//!
//! The level comes from `TF_LOG_PROVIDER`, else `TF_LOG`, as in Terraform. Write errors are ignored:
//! a closed stderr must never bring the provider down. Never log attribute values, tokens or keys.

use std::io::Write;

use serde_json::{Map, Value as Json};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// The module name go-hclog would give our logger.
const MODULE: &str = "provider.terraform-provider-iaprun";

/// go-hclog's JSON timestamp layout: microseconds and `Z` (go-plugin rejects other precisions).
const TIMESTAMP: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
);

/// Installs the stderr logger at the level Terraform's environment asks for.
pub fn init() {
    let level = level_from_env(|key| std::env::var(key).ok());
    if level == LevelFilter::OFF {
        return;
    }
    let subscriber = tracing_subscriber::registry()
        .with(HclogLayer::new(std::io::stderr).with_filter(filter(level)));
    // Only fails if a logger is already installed, which is then kept.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// The provider log level: `TF_LOG_PROVIDER`, else `TF_LOG`; `json` means trace (as in Terraform),
/// an unrecognised value means trace, `off` means nothing, and unset means errors only.
pub fn level_from_env(var: impl Fn(&str) -> Option<String>) -> LevelFilter {
    let setting = var("TF_LOG_PROVIDER")
        .filter(|v| !v.is_empty())
        .or_else(|| var("TF_LOG").filter(|v| !v.is_empty()));
    let Some(setting) = setting else {
        return LevelFilter::ERROR;
    };
    match setting.to_ascii_lowercase().as_str() {
        "off" => LevelFilter::OFF,
        "error" => LevelFilter::ERROR,
        "warn" => LevelFilter::WARN,
        "info" => LevelFilter::INFO,
        "debug" => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// Our own events at `level`; dependencies (h2, hyper, rustls) no chattier than warnings.
pub fn filter(level: LevelFilter) -> Targets {
    Targets::new()
        .with_target("iaprun", level)
        .with_target("terraform_provider_iaprun", level)
        .with_default(level.min(LevelFilter::WARN))
}

/// A layer writing one go-hclog JSON object per event.
pub struct HclogLayer<W> {
    make_writer: W,
}

impl<W> HclogLayer<W> {
    /// A layer writing through `make_writer` (stderr in production).
    pub fn new(make_writer: W) -> Self {
        Self { make_writer }
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// Collects an event's fields as JSON.
struct Fields(Map<String, Json>);

impl Fields {
    fn put(&mut self, field: &Field, value: Json) {
        let name = match field.name() {
            "message" => "@message",
            other => other,
        };
        self.0.insert(name.to_string(), value);
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Json::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Json::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Json::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Json::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Json::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Json::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Json::from(format!("{value:?}")));
    }
}

impl<S, W> Layer<S> for HclogLayer<W>
where
    S: Subscriber,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        let mut entry = fields.0;
        // go-plugin type-asserts @message as a string; make sure it is one.
        if !matches!(entry.get("@message"), Some(Json::String(_))) {
            let text = entry
                .remove("@message")
                .map(|v| v.to_string())
                .unwrap_or_default();
            entry.insert("@message".to_string(), Json::from(text));
        }
        entry.insert(
            "@level".to_string(),
            Json::from(level_name(event.metadata().level())),
        );
        entry.insert("@module".to_string(), Json::from(MODULE));
        if let Ok(now) = time::OffsetDateTime::now_utc().format(TIMESTAMP) {
            entry.insert("@timestamp".to_string(), Json::from(now));
        }
        let mut line = Json::Object(entry).to_string();
        line.push('\n');
        // One write per line keeps lines whole; failures (closed stderr) are ignored.
        let _ = self.make_writer.make_writer().write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    /// A writer that always fails, like a closed stderr, counting the attempts.
    struct Closed(Arc<std::sync::atomic::AtomicUsize>);

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn level_follows_terraform_variables() {
        assert_eq!(level_from_env(env(&[])), LevelFilter::ERROR);
        assert_eq!(
            level_from_env(env(&[("TF_LOG", "DEBUG")])),
            LevelFilter::DEBUG
        );
        assert_eq!(
            level_from_env(env(&[("TF_LOG", "json")])),
            LevelFilter::TRACE
        );
        assert_eq!(
            level_from_env(env(&[("TF_LOG", "trace"), ("TF_LOG_PROVIDER", "warn")])),
            LevelFilter::WARN
        );
        assert_eq!(
            level_from_env(env(&[("TF_LOG", "info"), ("TF_LOG_PROVIDER", "")])),
            LevelFilter::INFO
        );
        assert_eq!(level_from_env(env(&[("TF_LOG", "off")])), LevelFilter::OFF);
    }

    #[test]
    fn events_become_hclog_json_lines() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry()
            .with(HclogLayer::new(buffer.clone()).with_filter(filter(LevelFilter::DEBUG)));
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "iaprun::protocol", rpc = "ReadResource", count = 2, "call");
            tracing::trace!(target: "iaprun::protocol", "too detailed");
            tracing::info!(target: "h2::codec", "dependency chatter");
        });
        let text = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let entry: Json = serde_json::from_str(lines[0]).expect("JSON");
        assert_eq!(entry["@level"], "debug");
        assert_eq!(entry["@message"], "call");
        assert_eq!(entry["@module"], MODULE);
        assert_eq!(entry["rpc"], "ReadResource");
        assert_eq!(entry["count"], 2);
        let stamp = entry["@timestamp"].as_str().expect("timestamp");
        // 2026-01-02T03:04:05.123456Z
        assert_eq!(stamp.len(), 27, "{stamp}");
        assert!(stamp.ends_with('Z') && stamp.as_bytes()[19] == b'.');
    }

    #[test]
    fn a_closed_stderr_is_ignored() {
        let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = attempts.clone();
        let subscriber =
            tracing_subscriber::registry().with(HclogLayer::new(move || Closed(counter.clone())));
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!("nobody is listening");
            tracing::error!("still nobody");
        });
        // Both events were written (and failed) without a panic.
        assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
