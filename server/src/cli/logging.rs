//! Logging of the commands that serve: to standard error, filtered by `PORTHOLE_LOG` (default
//! `info`), as text for a person or (`server.log_format = "json"`) one JSON object per line
//! for a log pipeline: `timestamp` (RFC 3339, UTC), `level`, `target`, `message`, the fields of
//! the event and those of the spans it happened in (`request_id`, `session`, …) at the top
//! level (the event's own win on a clash), and `spans`, the names of those spans, outermost
//! first.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::gateway::config::LogFormat;

/// Installs the global subscriber (once per process; later calls do nothing).
pub(crate) fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTHOLE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .try_init(),
    };
}

/// The JSON line format (see the module's documentation). Span fields are kept as JSON by
/// [`JsonFields`] when a span is made, and merged here.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        line.insert("timestamp".into(), Value::String(now));
        line.insert("level".into(), Value::String(meta.level().to_string()));
        line.insert("target".into(), Value::String(meta.target().to_owned()));
        let mut spans = Vec::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                spans.push(Value::String(span.name().to_owned()));
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                    line.extend(fields);
                }
            }
        }
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        line.extend(fields.0);
        line.entry("message")
            .or_insert_with(|| Value::String(String::new()));
        if !spans.is_empty() {
            line.insert("spans".into(), Value::Array(spans));
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// An event's fields as JSON values.
struct Fields(Map<String, Value>);

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        self.0.insert(field.name().to_owned(), value);
    }
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let value = serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number);
        self.put(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn each_event_is_one_json_object_with_the_fields_of_its_spans() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buffer.clone())
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!("request", request_id = "0123456789abcdef");
            let _in_request = request.enter();
            let session = tracing::info_span!("session", session = %"s-1", user = "alice");
            let _in_session = session.enter();
            tracing::warn!(
                bytes = 42u64,
                ok = true,
                "data channel \"reconnecting\"\nagain"
            );
            tracing::info!(user = "bob", "the event's own field wins");
        });
        tracing::subscriber::with_default(
            tracing_subscriber::fmt()
                .with_writer(buffer.clone())
                .fmt_fields(JsonFields::new())
                .event_format(JsonLines)
                .finish(),
            || tracing::error!("outside any span"),
        );
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        let first = &lines[0];
        assert_eq!(first["level"], "WARN");
        assert_eq!(first["message"], "data channel \"reconnecting\"\nagain");
        assert_eq!(first["request_id"], "0123456789abcdef");
        assert_eq!(first["session"], "s-1");
        assert_eq!(first["user"], "alice");
        assert_eq!(first["bytes"], 42);
        assert_eq!(first["ok"], true);
        assert_eq!(first["spans"], serde_json::json!(["request", "session"]));
        assert!(
            first["target"].as_str().unwrap().starts_with("porthole"),
            "{first}"
        );
        let at = first["timestamp"].as_str().unwrap();
        assert!(
            at.len() >= 20 && at.as_bytes()[10] == b'T' && at.ends_with('Z'),
            "{at}"
        );
        assert_eq!(lines[1]["user"], "bob");
        assert_eq!(lines[2]["message"], "outside any span");
        assert_eq!(lines[2]["level"], "ERROR");
        assert!(lines[2].get("spans").is_none());
    }
}
