//! understudy's own log as JSON lines (`LOG_FORMAT=json`), for log shippers: one object per
//! event, `{"timestamp":…,"level":…,"target":…,"message":…}` followed by the event's own fields
//! (`version`, `role`, `port`, …) as JSON values. A few lines over `serde_json`, which is already
//! a dependency, rather than tracing-subscriber's `json` feature and its `tracing-serde`.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The names every line starts with; an event field of the same name gets a `_` appended.
const FIXED: [&str; 3] = ["timestamp", "level", "target"];

/// Formats each event as one JSON object on one line.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        writeln!(writer, "{}", line(event, time::OffsetDateTime::now_utc()))
    }
}

/// One event as a JSON object, stamped `now`.
fn line(event: &Event<'_>, now: time::OffsetDateTime) -> String {
    let meta = event.metadata();
    let timestamp = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut fields = Fields(String::with_capacity(256));
    fields.push("timestamp", timestamp.into());
    fields.push("level", meta.level().as_str().into());
    fields.push("target", meta.target().into());
    event.record(&mut fields);
    fields.0.replace_range(..1, "{");
    fields.0.push('}');
    fields.0
}

/// The fields written so far, each as `,"name":value`.
struct Fields(String);

impl Fields {
    fn push(&mut self, name: &str, value: serde_json::Value) {
        self.0.push(',');
        self.0.push_str(&serde_json::Value::from(name).to_string());
        self.0.push(':');
        self.0.push_str(&value.to_string());
    }

    /// An event's own field, renamed if it would repeat one of [`FIXED`].
    fn field(&mut self, field: &Field, value: serde_json::Value) {
        match field.name() {
            n if FIXED.contains(&n) => self.push(&format!("{n}_"), value),
            n => self.push(n, value),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // NaN and the infinities are not JSON numbers: they go as text.
        let v = serde_json::Number::from_f64(value)
            .map_or_else(|| value.to_string().into(), serde_json::Value::Number);
        self.field(field, v);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `message`, and fields given with `%` or `?`, arrive here already formatted.
        self.field(field, format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// The lines `f` logs through [`JsonLines`], each parsed.
    fn logged(f: impl FnOnce()) -> Vec<serde_json::Value> {
        let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Sink(sink.clone()))
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect()
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn each_event_is_one_object_with_its_fields() {
        let version = semver::Version::new(1, 2, 3);
        let lines = logged(|| {
            tracing::info!(target: "understudy::events", %version, port = 20001u16, ok = true, "ready");
            tracing::warn!("two\nlines \"quoted\" {}", 7);
            tracing::error!(level = "mine", ratio = f64::NAN, delta = -2, "clash");
        });
        assert_eq!(lines.len(), 3);
        let e = &lines[0];
        assert_eq!(e["level"], "INFO");
        assert_eq!(e["target"], "understudy::events");
        assert_eq!(e["message"], "ready");
        assert_eq!(e["version"], "1.2.3");
        assert_eq!(e["port"], 20001);
        assert_eq!(e["ok"], true);
        assert!(
            time::OffsetDateTime::parse(
                e["timestamp"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339
            )
            .is_ok(),
            "{e}"
        );
        assert_eq!(lines[1]["message"], "two\nlines \"quoted\" 7");
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[2]["level"], "ERROR");
        assert_eq!(lines[2]["level_"], "mine");
        assert_eq!(lines[2]["ratio"], "NaN");
        assert_eq!(lines[2]["delta"], -2);
    }
}
