//! Server-sent events, decoded from bytes as they arrive: a network chunk may end in
//! the middle of a line or of a UTF-8 sequence, so bytes are buffered, never text.
//! Lines end in `\n` or `\r\n`; an event ends at a blank line; `data:` lines of one
//! event are joined with `\n`; lines starting with `:` are comments (keep-alives).

/// One event: its `event:` name (if any) and its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Feeds bytes in, takes whole events out.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buffer: Vec<u8>,
    event: Option<String>,
    data: Vec<String>,
}

impl SseDecoder {
    /// The events completed by `chunk`, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if let Some(event) = self.line(&line) {
                out.push(event);
            }
        }
        out
    }

    /// What is left when the stream ends: an event not closed by a blank line.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if !self.buffer.is_empty() {
            let rest = std::mem::take(&mut self.buffer);
            let line = String::from_utf8_lossy(&rest).into_owned();
            let line = line.strip_suffix('\r').unwrap_or(&line).to_owned();
            if let Some(event) = self.line(&line) {
                return Some(event);
            }
        }
        self.dispatch()
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => self.data.push(value.to_owned()),
            // `id` and `retry` mean nothing to a model stream.
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        if self.data.is_empty() {
            return None;
        }
        Some(SseEvent {
            event,
            data: std::mem::take(&mut self.data).join("\n"),
        })
    }
}

/// The events of `bytes` when the network splits it at `cut` (test support for the
/// wire formats' every-split-point tests).
#[cfg(test)]
pub(crate) fn decode_split(bytes: &[u8], cut: usize) -> Vec<SseEvent> {
    let mut decoder = SseDecoder::default();
    let mut events = decoder.push(&bytes[..cut]);
    events.extend(decoder.push(&bytes[cut..]));
    events.extend(decoder.finish());
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = ": keep-alive\r\nevent: message_start\r\ndata: {\"a\":\"é\"}\r\n\r\n\
                          data:first\ndata: second\n\nid: 7\nretry: 10\ndata: [DONE]\n\n";

    fn expected() -> Vec<SseEvent> {
        vec![
            SseEvent {
                event: Some("message_start".into()),
                data: "{\"a\":\"é\"}".into(),
            },
            SseEvent {
                event: None,
                data: "first\nsecond".into(),
            },
            SseEvent {
                event: None,
                data: "[DONE]".into(),
            },
        ]
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let bytes = STREAM.as_bytes();
        for cut in 0..=bytes.len() {
            assert_eq!(decode_split(bytes, cut), expected(), "split at byte {cut}");
        }
    }

    #[test]
    fn byte_by_byte_and_an_unterminated_last_event() {
        let mut decoder = SseDecoder::default();
        let mut events = Vec::new();
        for b in b"data: x\n\ndata: tail" {
            events.extend(decoder.push(&[*b]));
        }
        events.extend(decoder.finish());
        let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(data, ["x", "tail"]);
    }
}
