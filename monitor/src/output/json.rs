//! One JSON object per event, newline-delimited, flushed per batch.
use std::io::{self, BufWriter, Write};

use crate::event::Event;

pub struct JsonLines<W: Write> {
    out: BufWriter<W>,
}

impl<W: Write> JsonLines<W> {
    pub fn new(out: W) -> JsonLines<W> {
        JsonLines {
            out: BufWriter::with_capacity(256 * 1024, out),
        }
    }

    pub fn write(&mut self, event: &Event) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, event).map_err(io::Error::other)?;
        self.out.write_all(b"\n")
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::event::EventType;

    #[test]
    fn writes_one_line_per_event_with_escaped_control_characters() {
        let mut event = Event::new(EventType::FileOpen, DateTime::UNIX_EPOCH);
        event.file_path = Some("/tmp/\u{1b}[31mred\nline".to_string());
        let mut sink = JsonLines::new(Vec::new());
        sink.write(&event).expect("write");
        sink.write(&event).expect("write");
        sink.flush().expect("flush");
        let text = String::from_utf8(sink.out.into_inner().expect("inner")).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("\\u001b[31mred\\nline"));
        let back: Event = serde_json::from_str(lines[0]).expect("parse");
        assert_eq!(back, event);
    }
}
