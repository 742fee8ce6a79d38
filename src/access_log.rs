//! The access log: one line per answered request, as `text` (`key=value`), `json` or
//! nginx's `combined` format (with the connection id, the request's number on its
//! connection and the upstream's timing after it), written off the request path — a writer
//! thread takes the lines (tracing-appender's non-blocking writer, lossless: a full queue
//! slows requests rather than dropping lines) — to standard output or to a file that
//! [`AccessLogFile::reopen`] opens again (SIGUSR1, after logrotate moved it).
//!
//! An [`Observer`]: fed by the connections' hooks; it decides nothing about them.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};

use crate::config::AccessLogFormat;
use crate::conn::{ClosedRecord, ConnSide, Observer, RequestRecord};
use crate::wire::date::CivilTime;

/// The access log observer.
pub struct AccessLog {
    format: AccessLogFormat,
    out: NonBlocking,
}

/// What keeps the log going: the writer thread (its lines are flushed when this drops)
/// and the file, if there is one, to reopen.
pub struct AccessLogHandle {
    _guard: WorkerGuard,
    /// The file lines go to (`None`: standard output).
    pub file: Option<Arc<AccessLogFile>>,
}

/// A log file that can be opened again under its name (after a rotation moved it away).
pub struct AccessLogFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl AccessLogFile {
    /// Opens `path` for appending, creating it if need be.
    pub fn open(path: &Path) -> std::io::Result<Arc<Self>> {
        Ok(Arc::new(AccessLogFile {
            path: path.to_path_buf(),
            file: Mutex::new(append(path)?),
        }))
    }

    /// Opens the file's name again: lines go to the new file from now on.
    pub fn reopen(&self) -> std::io::Result<()> {
        let file = append(&self.path)?;
        *self.file.lock().unwrap_or_else(|e| e.into_inner()) = file;
        Ok(())
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The writer thread's side of an [`AccessLogFile`].
struct FileWriter(Arc<AccessLogFile>);

impl Write for FileWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write(bytes)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0
            .file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .flush()
    }
}

impl AccessLog {
    /// A log in `format` to `path`, or to standard output.
    pub fn new(
        format: AccessLogFormat,
        path: Option<&Path>,
    ) -> std::io::Result<(AccessLog, AccessLogHandle)> {
        let builder = NonBlockingBuilder::default()
            .lossy(false)
            .thread_name("hopline-access-log");
        let (out, guard, file) = match path {
            Some(path) => {
                let file = AccessLogFile::open(path)?;
                let (out, guard) = builder.finish(FileWriter(file.clone()));
                (out, guard, Some(file))
            }
            None => {
                let (out, guard) = builder.finish(std::io::stdout());
                (out, guard, None)
            }
        };
        let handle = AccessLogHandle {
            _guard: guard,
            file,
        };
        Ok((AccessLog { format, out }, handle))
    }
}

impl Observer for AccessLog {
    fn opened(&self, _side: ConnSide) {}

    fn request(&self, record: &RequestRecord<'_>) {
        let line = format_line(self.format, record, SystemTime::now());
        if !line.is_empty() {
            let _ = self.out.clone().write_all(line.as_bytes());
        }
    }

    fn closed(&self, _record: &ClosedRecord) {}
}

/// One line (with its newline) of the log in `format`, for `record` answered at `now`.
pub fn format_line(format: AccessLogFormat, r: &RequestRecord<'_>, now: SystemTime) -> String {
    match format {
        AccessLogFormat::Off => String::new(),
        AccessLogFormat::Text => text_line(r, now),
        AccessLogFormat::Json => json_line(r, now),
        AccessLogFormat::Combined => combined_line(r, now),
    }
}

/// `2026-11-30T21:19:51.123Z`.
fn rfc3339(now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let t = CivilTime::of(since.as_secs());
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        since.subsec_millis()
    )
}

fn field(value: Option<&http::HeaderValue>) -> Option<&str> {
    value.and_then(|v| v.to_str().ok())
}

fn json_line(r: &RequestRecord<'_>, now: SystemTime) -> String {
    let fields = r.fields;
    let mut line = serde_json::json!({
        "timestamp": rfc3339(now),
        "client": r.peer.to_string(),
        "conn": r.conn,
        "req": r.number,
        "method": r.method.map_or("-", |m| m.as_str()),
        "target": r.target,
        "version": format!("{:?}", r.version),
        "status": r.status.as_u16(),
        "bytes": r.body_bytes,
        "duration_ms": r.duration.as_secs_f64() * 1000.0,
        "user_agent": fields.and_then(|f| field(f.user_agent.as_ref())),
        "referer": fields.and_then(|f| field(f.referer.as_ref())),
    });
    if let Some(u) = &r.upstream {
        let object = line.as_object_mut().expect("an object");
        object.insert("upstream".into(), u.peer.to_string().into());
        object.insert("upstream_conn".into(), u.connection.into());
        object.insert("upstream_reused".into(), u.reused.into());
        let header_ms = u.header_time.as_secs_f64() * 1000.0;
        object.insert("upstream_header_ms".into(), header_ms.into());
    }
    line.to_string() + "\n"
}

fn text_line(r: &RequestRecord<'_>, now: SystemTime) -> String {
    let mut line = format!(
        "{} client={} conn={} req={} method={} target={:?} version={:?} status={} bytes={} duration_ms={:.3}",
        rfc3339(now),
        r.peer,
        r.conn,
        r.number,
        r.method.map_or("-", |m| m.as_str()),
        r.target,
        r.version,
        r.status.as_u16(),
        r.body_bytes,
        r.duration.as_secs_f64() * 1000.0,
    );
    if let Some(agent) = r.fields.and_then(|f| field(f.user_agent.as_ref())) {
        let _ = write!(line, " user_agent={agent:?}");
    }
    if let Some(u) = &r.upstream {
        let _ = write!(
            line,
            " upstream={} upstream_conn={} upstream_reused={} upstream_header_ms={:.3}",
            u.peer,
            u.connection,
            u.reused,
            u.header_time.as_secs_f64() * 1000.0
        );
    }
    line + "\n"
}

/// nginx's `combined`, then hopline's own: `conn=N req=N rt=SECONDS`, and through a proxy
/// `upstream=ADDR uct=reused|new uht=SECONDS` (nginx's `$upstream_header_time`).
fn combined_line(r: &RequestRecord<'_>, now: SystemTime) -> String {
    let t = CivilTime::of(now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs());
    let quoted = |value: Option<&str>| escape(value.unwrap_or("-"));
    let fields = r.fields;
    let mut line = format!(
        "{} - - [{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000] \"{} {} {:?}\" {} {} \"{}\" \"{}\" conn={} req={} rt={:.3}",
        r.peer.ip(),
        t.day,
        t.month_name(),
        t.year,
        t.hour,
        t.minute,
        t.second,
        r.method.map_or("-", |m| m.as_str()),
        escape(r.target),
        r.version,
        r.status.as_u16(),
        r.body_bytes,
        quoted(fields.and_then(|f| field(f.referer.as_ref()))),
        quoted(fields.and_then(|f| field(f.user_agent.as_ref()))),
        r.conn,
        r.number,
        r.duration.as_secs_f64(),
    );
    if let Some(u) = &r.upstream {
        let reuse = if u.reused { "reused" } else { "new" };
        let header = u.header_time.as_secs_f64();
        let _ = write!(line, " upstream={} uct={reuse} uht={header:.3}", u.peer);
    }
    line + "\n"
}

/// What a client sent, made safe inside a quoted log field as nginx does: `"`, `\` and
/// bytes outside printable ASCII as `\xHH`.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'"' | b'\\' => {
                let _ = write!(out, "\\x{byte:02X}");
            }
            0x20..=0x7e => out.push(byte as char),
            _ => {
                let _ = write!(out, "\\x{byte:02X}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{RequestFields, UpstreamNote};
    use std::time::Duration;

    fn record<'a>(fields: &'a RequestFields, upstream: Option<UpstreamNote>) -> RequestRecord<'a> {
        RequestRecord {
            conn: 7,
            peer: "192.0.2.1:5000".parse().unwrap(),
            number: 3,
            method: Some(&http::Method::GET),
            target: "/a\"b?c=1",
            version: http::Version::HTTP_11,
            status: http::StatusCode::OK,
            body_bytes: 612,
            duration: Duration::from_micros(1500),
            upstream,
            fields: Some(fields),
        }
    }

    /// Sun, 06 Nov 1994 08:49:37 GMT.
    fn when() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(784_111_777_250)
    }

    #[test]
    fn combined_is_nginx_s_with_connection_and_upstream_after() {
        let fields = RequestFields {
            user_agent: Some(http::HeaderValue::from_static("curl/8.0")),
            referer: None,
        };
        let upstream = UpstreamNote {
            connection: 2,
            reused: true,
            peer: "127.0.0.1:9000".parse().unwrap(),
            header_time: Duration::from_millis(1),
            group: None,
        };
        assert_eq!(
            format_line(
                AccessLogFormat::Combined,
                &record(&fields, Some(upstream)),
                when()
            ),
            "192.0.2.1 - - [06/Nov/1994:08:49:37 +0000] \"GET /a\\x22b?c=1 HTTP/1.1\" 200 612 \
             \"-\" \"curl/8.0\" conn=7 req=3 rt=0.002 upstream=127.0.0.1:9000 uct=reused uht=0.001\n"
        );
    }

    #[test]
    fn json_and_text_carry_the_same_facts() {
        let fields = RequestFields::default();
        let line = format_line(AccessLogFormat::Json, &record(&fields, None), when());
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["timestamp"], "1994-11-06T08:49:37.250Z");
        assert_eq!(
            (value["conn"].as_u64(), value["req"].as_u64()),
            (Some(7), Some(3))
        );
        assert_eq!(value["target"], "/a\"b?c=1");
        assert!(value["user_agent"].is_null());
        let line = format_line(AccessLogFormat::Text, &record(&fields, None), when());
        assert!(
            line.starts_with("1994-11-06T08:49:37.250Z client=192.0.2.1:5000 conn=7 req=3 method=GET target=\"/a\\\"b?c=1\""),
            "{line}"
        );
        assert!(format_line(AccessLogFormat::Off, &record(&fields, None), when()).is_empty());
    }

    #[test]
    fn a_reopened_file_takes_the_next_lines() {
        let dir = std::env::temp_dir().join(format!("hopline-access-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("access.log");
        let file = AccessLogFile::open(&path).unwrap();
        FileWriter(file.clone()).write_all(b"one\n").unwrap();
        std::fs::rename(&path, dir.join("access.log.1")).unwrap();
        file.reopen().unwrap();
        FileWriter(file.clone()).write_all(b"two\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("access.log.1")).unwrap(),
            "one\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
