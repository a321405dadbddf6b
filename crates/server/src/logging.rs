//! Log lines as `log:` asks: text or JSON with Distribution's keys, and `log.fields`.

/// Sets up logging as `log:` says: the level, text or JSON lines, and `log.fields` on every
/// line. JSON lines carry Distribution's keys (`time`, `level`, `msg`) with every field at the
/// top level, so log pipelines built for Distribution keep working.
pub fn init_logging(log: &crate::LogConfig) {
    let level = match log.level.as_str() {
        "error" => tracing::Level::ERROR,
        "warn" => tracing::Level::WARN,
        "debug" => tracing::Level::DEBUG,
        _ => tracing::Level::INFO,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .event_format(LogLines::new(log))
        .try_init();
}

/// The format of log lines: `log.formatter` and `log.fields`.
#[derive(Debug, Clone)]
pub struct LogLines {
    json: bool,
    fields: serde_json::Map<String, serde_json::Value>,
}

impl LogLines {
    /// The format `log:` asks for.
    pub fn new(log: &crate::LogConfig) -> LogLines {
        let fields = log.fields.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
        LogLines { json: log.json, fields }
    }
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for LogLines
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _context: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let metadata = event.metadata();
        let mut line = serde_json::Map::new();
        line.insert("time".into(), humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string().into());
        line.insert("level".into(), metadata.level().as_str().to_ascii_lowercase().into());
        line.insert("target".into(), metadata.target().into());
        let mut visitor = FieldVisitor(&mut line);
        event.record(&mut visitor);
        for (key, value) in &self.fields {
            line.entry(key.clone()).or_insert_with(|| value.clone());
        }
        if self.json {
            return writeln!(writer, "{}", serde_json::Value::Object(line));
        }
        let text = |value: &serde_json::Value| match value {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let (time, level, target) = (line.remove("time"), line.remove("level"), line.remove("target"));
        let message = line.remove("msg").map(|m| text(&m)).unwrap_or_default();
        write!(
            writer,
            "{} {:>5} {}: {message}",
            time.as_ref().map(text).unwrap_or_default(),
            level.as_ref().map(text).unwrap_or_default().to_ascii_uppercase(),
            target.as_ref().map(text).unwrap_or_default()
        )?;
        for (key, value) in &line {
            write!(writer, " {key}={}", text(value))?;
        }
        writeln!(writer)
    }
}

/// Collects an event's fields into a JSON object, its message as `msg`.
struct FieldVisitor<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl FieldVisitor<'_> {
    fn key(field: &tracing::field::Field) -> String {
        if field.name() == "message" { "msg".to_owned() } else { field.name().to_owned() }
    }
}

impl tracing::field::Visit for FieldVisitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(Self::key(field), format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(Self::key(field), value.into());
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(Self::key(field), value.into());
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(Self::key(field), value.into());
    }

    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(Self::key(field), value.into());
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(Self::key(field), value.into());
    }
}
