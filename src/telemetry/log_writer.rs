//! A batching log writer: request threads append formatted lines to an in-memory buffer and a
//! background thread writes whole batches, so a log line costs a memcpy under a short lock on
//! the hot path — no thread wake-up and no `write(2)` per line.
//!
//! Why not `tracing_appender::non_blocking`: it wakes its writer thread and issues one write
//! per line; at 10-20k audited tool calls per second the wake-ups and syscalls were the largest
//! single cost in the gateway's profile (issue 5). Here the writer sleeps until the first line
//! of a batch arrives, then waits [`BATCH_WINDOW`] so the batch can fill, then writes it in one
//! call: at most one wake-up per window under load and none when idle.
//!
//! Bounded: if the sink cannot keep up and [`MAX_PENDING_BYTES`] are waiting, further lines are
//! dropped (never blocking a tool call on a slow terminal or log shipper) and counted; the count
//! is written as its own line with the next batch and exported as
//! `portcullis_log_lines_dropped_total`.

use std::io::{self, Write};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use tracing_subscriber::fmt::MakeWriter;

/// How long the writer lets a batch fill after its first line.
const BATCH_WINDOW: Duration = Duration::from_millis(20);
/// Upper bound on buffered, unwritten log bytes.
const MAX_PENDING_BYTES: usize = 8 << 20;

struct Pending {
    lines: Vec<u8>,
    dropped: u64,
    closed: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    first_line: Condvar,
}

/// The [`MakeWriter`] handed to `tracing_subscriber::fmt`.
#[derive(Clone)]
pub struct BatchingWriter {
    shared: Arc<Shared>,
}

/// Flushes what is buffered and stops the writer thread when dropped (at shutdown).
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// One event's bytes: `tracing_subscriber` formats a whole line and writes it in one call.
pub struct LineWriter<'a> {
    shared: &'a Shared,
}

impl BatchingWriter {
    /// Starts the writer thread over `sink`. If the thread cannot be started, lines are
    /// written directly by the caller instead (correct, just slower).
    pub fn spawn<W: Write + Send + 'static>(sink: W) -> (BatchingWriter, FlushGuard) {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                lines: Vec::with_capacity(64 << 10),
                dropped: 0,
                closed: false,
            }),
            first_line: Condvar::new(),
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("portcullis-log".into())
            .spawn(move || write_batches(&worker, sink))
            .ok();
        if thread.is_none() {
            shared.pending.lock().closed = true;
        }
        (
            BatchingWriter {
                shared: shared.clone(),
            },
            FlushGuard { shared, thread },
        )
    }
}

impl<'a> MakeWriter<'a> for BatchingWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter {
            shared: &self.shared,
        }
    }
}

/// Whether `byte` at `at` in `line` starts something a terminal or a log reader would take as
/// structure: a C0 control (a newline forges a new line), DEL, a UTF-8 C1 control
/// (U+0080-U+009F), or U+2028/U+2029 (line and paragraph separators).
fn needs_escape(line: &[u8], at: usize) -> bool {
    match line[at] {
        b if b < 0x20 || b == 0x7f => true,
        0xc2 => line.get(at + 1).is_some_and(|b| (0x80..=0x9f).contains(b)),
        0xe2 => line.get(at + 1) == Some(&0x80) && matches!(line.get(at + 2), Some(0xa8 | 0xa9)),
        _ => false,
    }
}

/// Appends `line` to `out` with every control character escaped (`\n`, `\r`, `\t`,
/// `\uXXXX` as JSON writes it), except the one newline that ends it. A log line is one event: whatever a caller
/// put into a field (a `sub` with a newline, an ANSI escape) cannot start a forged line or
/// reach a terminal (issue 9 item 7). JSON lines are already escaped by serde and pass through
/// unchanged; the scan is the only cost for lines without such characters.
fn append_escaped(out: &mut Vec<u8>, line: &[u8]) {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    if !(0..body.len()).any(|at| needs_escape(body, at)) {
        out.extend_from_slice(line);
        return;
    }
    let text = String::from_utf8_lossy(body);
    for c in text.chars() {
        match c {
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                // JSON's own escape form, so a JSON line stays valid JSON (serde leaves C1
                // controls and U+2028/2029 raw inside strings).
                out.extend_from_slice(format!("\\u{:04x}", u32::from(c)).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'\n');
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut pending = self.shared.pending.lock();
        if pending.closed {
            // No writer thread (it could not start, or we are shutting down): write through.
            drop(pending);
            let mut escaped = Vec::with_capacity(line.len() + 1);
            append_escaped(&mut escaped, line);
            io::stderr().lock().write_all(&escaped)?;
            return Ok(line.len());
        }
        if pending.lines.len() + line.len() > MAX_PENDING_BYTES {
            pending.dropped += 1;
            metrics::counter!("portcullis_log_lines_dropped_total").increment(1);
            return Ok(line.len());
        }
        let was_empty = pending.lines.is_empty();
        append_escaped(&mut pending.lines, line);
        drop(pending);
        if was_empty {
            self.shared.first_line.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The writer thread: wait for a first line, let the batch fill, write it, repeat; on close,
/// write what is left and stop.
fn write_batches<W: Write>(shared: &Shared, mut sink: W) {
    let mut batch: Vec<u8> = Vec::with_capacity(64 << 10);
    loop {
        let (dropped, closed) = {
            let mut pending = shared.pending.lock();
            while pending.lines.is_empty() && !pending.closed {
                shared.first_line.wait(&mut pending);
            }
            if !pending.closed {
                drop(pending);
                std::thread::sleep(BATCH_WINDOW);
                pending = shared.pending.lock();
            }
            std::mem::swap(&mut batch, &mut pending.lines);
            (std::mem::take(&mut pending.dropped), pending.closed)
        };
        if dropped > 0 {
            batch.extend_from_slice(
                format!(
                    "portcullis: {dropped} log lines dropped: the log output could not keep up\n"
                )
                .as_bytes(),
            );
        }
        // A failing sink (closed stderr) must not take the gateway down; the lines are lost.
        let _ = sink.write_all(&batch).and_then(|()| sink.flush());
        batch.clear();
        if batch.capacity() > 1 << 20 {
            batch.shrink_to(64 << 10);
        }
        if closed {
            return;
        }
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.pending.lock().closed = true;
        self.shared.first_line.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read after the writer thread is done with it.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.lock().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn control_characters_inside_a_line_are_escaped_and_cannot_forge_a_line() {
        let mut out = Vec::new();
        append_escaped(
            &mut out,
            "INFO account linked subject=alice\n2026-01-01T00:00:00Z  INFO account linked subject=admin\r\t\u{1b}[31m\u{85}\u{2028}!\n".as_bytes(),
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "INFO account linked subject=alice\\n2026-01-01T00:00:00Z  INFO account linked subject=admin\\r\\t\\u001b[31m\\u0085\\u2028!\n"
        );
        assert_eq!(text.lines().count(), 1);
        let mut plain = Vec::new();
        append_escaped(&mut plain, b"plain line, caf\xc3\xa9\n");
        assert_eq!(plain, b"plain line, caf\xc3\xa9\n");
    }

    #[test]
    fn a_json_line_stays_valid_json_after_escaping() {
        let line = serde_json::json!({"subject": "a\u{2028}b\u{85}c\nd"}).to_string() + "\n";
        let mut out = Vec::new();
        append_escaped(&mut out, line.as_bytes());
        let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed["subject"], "a\u{2028}b\u{85}c\nd");
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
    }

    #[test]
    fn every_line_reaches_the_sink_in_order_by_shutdown() {
        let sink = Captured::default();
        let (writer, guard) = BatchingWriter::spawn(sink.clone());
        for i in 0..1000 {
            writer
                .make_writer()
                .write_all(format!("line {i}\n").as_bytes())
                .unwrap();
        }
        drop(guard);
        let text = String::from_utf8(sink.0.lock().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1000);
        assert_eq!(lines[0], "line 0");
        assert_eq!(lines[999], "line 999");
    }

    #[test]
    fn a_full_buffer_drops_lines_and_says_how_many() {
        let sink = Captured::default();
        let (writer, guard) = BatchingWriter::spawn(sink.clone());
        // Fill the buffer to its bound without waking the writer thread (only `write` wakes it).
        let big = vec![b'x'; MAX_PENDING_BYTES - 1];
        {
            let mut pending = writer.shared.pending.lock();
            pending.lines.extend_from_slice(&big);
        }
        writer.make_writer().write_all(b"lost 1\n").unwrap();
        writer.make_writer().write_all(b"lost 2\n").unwrap();
        drop(guard);
        let text = String::from_utf8_lossy(&sink.0.lock()).into_owned();
        assert!(!text.contains("lost 1"));
        assert!(
            text.contains("2 log lines dropped"),
            "{}",
            &text[text.len() - 80..]
        );
    }
}
