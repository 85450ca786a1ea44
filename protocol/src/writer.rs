//! Writing messages of the current format ([`crate::FORMAT_VERSION`] 2) change by change,
//! into one reused buffer: the module appends each change as it happens and publishes the
//! buffer once per event-loop turn.

use crate::{Change, Name, Op, TagMatch};
use base64::{engine::general_purpose::STANDARD, Engine};

/// What a change names, borrowed: the writer copies the bytes straight into the message.
#[derive(Debug, Clone, Copy)]
pub enum Names<I> {
    /// These keys changed or disappeared.
    Keys(I),
    /// Every key that carried one of these tags is gone.
    Tags(I),
    /// Every key that carried all of these tags is gone (`"match":"all"`).
    AllTags(I),
    /// Everything in the database (or every database) may have changed.
    Flush,
}

/// Builds one message: `{"v":2,"origin":"...","events":[{...},{...}]}`.
///
/// ```
/// use hybridcache_protocol::{decode_message, MessageWriter, Names, Op};
///
/// let mut writer = MessageWriter::new("a1b2c3d4e5f60718");
/// writer.push(7, Some(0), Op::Set, Names::Keys([&b"user:1"[..]]));
/// writer.push(8, Some(0), Op::Deltag, Names::Tags([&b"team:7"[..]]));
/// let bytes = writer.finish();
/// assert_eq!(
///     std::str::from_utf8(bytes).unwrap(),
///     concat!(
///         r#"{"v":2,"origin":"a1b2c3d4e5f60718","events":["#,
///         r#"{"seq":7,"db":0,"op":"set","kind":"keys","keys":["user:1"]},"#,
///         r#"{"seq":8,"db":0,"op":"deltag","kind":"tags","tags":["team:7"]}]}"#
///     )
/// );
/// assert_eq!(decode_message(bytes).unwrap().len(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct MessageWriter {
    buf: Vec<u8>,
    /// Length of `{"v":2,"origin":"...","events":[`.
    header: usize,
    events: usize,
    finished: bool,
}

impl MessageWriter {
    /// An empty message of `origin`.
    pub fn new(origin: &str) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(b"{\"v\":");
        buf.extend_from_slice(crate::FORMAT_VERSION.to_string().as_bytes());
        buf.extend_from_slice(b",\"origin\":");
        write_str(&mut buf, origin);
        buf.extend_from_slice(b",\"events\":[");
        let header = buf.len();
        Self {
            buf,
            header,
            events: 0,
            finished: false,
        }
    }

    /// Appends one change; returns the byte range its object takes in the message (the
    /// module's event log keeps those bytes).
    pub fn push<'a, I>(
        &mut self,
        seq: u64,
        db: Option<u32>,
        op: Op,
        names: Names<I>,
    ) -> std::ops::Range<usize>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        self.reopen();
        if self.events > 0 {
            self.buf.push(b',');
        }
        let start = self.buf.len();
        let buf = &mut self.buf;
        buf.extend_from_slice(b"{\"seq\":");
        write_u64(buf, seq);
        buf.extend_from_slice(b",\"db\":");
        match db {
            Some(db) => write_u64(buf, u64::from(db)),
            None => buf.extend_from_slice(b"null"),
        }
        buf.extend_from_slice(b",\"op\":\"");
        buf.extend_from_slice(op.as_str().as_bytes());
        match names {
            Names::Keys(names) => {
                buf.extend_from_slice(b"\",\"kind\":\"keys\",\"keys\":[");
                write_names(buf, names);
                buf.extend_from_slice(b"]}");
            }
            Names::Tags(names) => {
                buf.extend_from_slice(b"\",\"kind\":\"tags\",\"tags\":[");
                write_names(buf, names);
                buf.extend_from_slice(b"]}");
            }
            Names::AllTags(names) => {
                buf.extend_from_slice(b"\",\"kind\":\"tags\",\"tags\":[");
                write_names(buf, names);
                buf.extend_from_slice(b"],\"match\":\"all\"}");
            }
            Names::Flush => buf.extend_from_slice(b"\",\"kind\":\"flush\"}"),
        }
        self.events += 1;
        start..self.buf.len()
    }

    /// Appends an owned [`Change`].
    pub fn push_change(
        &mut self,
        seq: u64,
        db: Option<u32>,
        op: Op,
        change: &Change,
    ) -> std::ops::Range<usize> {
        match change {
            Change::Keys { keys } => {
                self.push(seq, db, op, Names::Keys(keys.iter().map(Name::as_bytes)))
            }
            Change::Tags {
                tags,
                matching: TagMatch::Any,
            } => self.push(seq, db, op, Names::Tags(tags.iter().map(Name::as_bytes))),
            Change::Tags {
                tags,
                matching: TagMatch::All,
            } => self.push(seq, db, op, Names::AllTags(tags.iter().map(Name::as_bytes))),
            Change::Flush => self.push(seq, db, op, Names::Flush::<[&[u8]; 0]>),
        }
    }

    /// Appends change objects written by another writer (of the same origin), as they are.
    pub fn push_raw(&mut self, object: &[u8], count: usize) {
        if count == 0 {
            return;
        }
        self.reopen();
        if self.events > 0 {
            self.buf.push(b',');
        }
        self.buf.extend_from_slice(object);
        self.events += count;
    }

    /// Changes in the message.
    pub fn len(&self) -> usize {
        self.events
    }

    /// Whether it holds no change.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Bytes the finished message will take.
    pub fn byte_len(&self) -> usize {
        self.buf.len() + if self.finished { 0 } else { 2 }
    }

    /// The complete message. Pushing again continues the same message.
    pub fn finish(&mut self) -> &[u8] {
        if !self.finished {
            self.buf.extend_from_slice(b"]}");
            self.finished = true;
        }
        &self.buf
    }

    /// A copy of the finished message, sized to it; the writer starts an empty message
    /// (same origin) and keeps its buffer for the next one.
    pub fn take(&mut self) -> Vec<u8> {
        let message = self.finish().to_vec();
        self.clear();
        message
    }

    /// Empties the message (same origin).
    pub fn clear(&mut self) {
        self.buf.truncate(self.header);
        self.events = 0;
        self.finished = false;
    }

    fn reopen(&mut self) {
        if self.finished {
            self.buf.truncate(self.buf.len() - 2);
            self.finished = false;
        }
    }
}

fn write_u64(buf: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[at..]);
}

fn write_names<'a>(buf: &mut Vec<u8>, names: impl IntoIterator<Item = &'a [u8]>) {
    for (i, name) in names.into_iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        write_name(buf, name);
    }
}

/// A name as [`Name`] serializes it: a JSON string when it is UTF-8, else `{"b64":...}`.
fn write_name(buf: &mut Vec<u8>, name: &[u8]) {
    match std::str::from_utf8(name) {
        Ok(text) => write_str(buf, text),
        Err(_) => {
            buf.extend_from_slice(b"{\"b64\":\"");
            buf.extend_from_slice(STANDARD.encode(name).as_bytes());
            buf.extend_from_slice(b"\"}");
        }
    }
}

/// A JSON string, escaped exactly as `serde_json` does (so that encoding is deterministic
/// whichever writes it); the common case, nothing to escape, is one copy.
fn write_str(buf: &mut Vec<u8>, text: &str) {
    if !text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        buf.push(b'"');
        buf.extend_from_slice(text.as_bytes());
        buf.push(b'"');
        return;
    }
    // Writing a string into memory cannot fail.
    let _ = serde_json::to_writer(&mut *buf, text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_message, InvalidationEvent};

    #[test]
    fn names_are_written_as_serde_json_writes_them() {
        for name in [
            &b"plain"[..],
            b"",
            b"quote\"back\\slash",
            b"ctl\x01\x1f\n\t",
            "é∑😀".as_bytes(),
            b"\xff\xfe",
            b"\x7f",
        ] {
            let mut buf = Vec::new();
            write_name(&mut buf, name);
            assert_eq!(
                buf,
                serde_json::to_vec(&Name::from(name)).unwrap(),
                "{name:?}"
            );
        }
    }

    #[test]
    fn numbers_at_the_edges() {
        for n in [0, 9, 10, 12345, u64::MAX] {
            let mut buf = Vec::new();
            write_u64(&mut buf, n);
            assert_eq!(buf, n.to_string().into_bytes());
        }
    }

    #[test]
    fn a_message_decodes_to_its_changes_in_order() {
        let mut writer = MessageWriter::new("o");
        assert!(writer.is_empty());
        writer.push(1, Some(3), Op::Del, Names::Keys([&b"a"[..], b"\xfe"]));
        writer.push(2, None, Op::Flushall, Names::Flush::<[&[u8]; 0]>);
        writer.push(3, Some(0), Op::Deltag, Names::Tags(vec![&b"t"[..]]));
        assert_eq!(writer.len(), 3);
        let expected_len = writer.byte_len();
        let bytes = writer.take();
        assert_eq!(bytes.len(), expected_len);
        let events = decode_message(&bytes).unwrap();
        assert_eq!(
            events,
            vec![
                InvalidationEvent::new(
                    "o",
                    1,
                    Some(3),
                    Op::Del,
                    Change::Keys {
                        keys: vec![Name::from("a"), Name(vec![0xfe])]
                    }
                ),
                InvalidationEvent::new("o", 2, None, Op::Flushall, Change::Flush),
                InvalidationEvent::new(
                    "o",
                    3,
                    Some(0),
                    Op::Deltag,
                    Change::Tags {
                        tags: vec![Name::from("t")],
                        matching: TagMatch::Any,
                    }
                ),
            ]
        );
        // Taking starts an empty message of the same origin.
        assert!(writer.is_empty());
        assert_eq!(writer.finish(), &br#"{"v":2,"origin":"o","events":[]}"#[..]);
    }

    #[test]
    fn ranges_cover_each_change_and_raw_pushes_rebuild_the_message() {
        let mut first = MessageWriter::new("o");
        let a = first.push(5, Some(0), Op::Set, Names::Keys([&b"k1"[..]]));
        let b = first.push(6, Some(0), Op::Set, Names::Keys([&b"k2"[..]]));
        let bytes = first.finish().to_vec();
        assert_eq!(
            &bytes[a.clone()],
            br#"{"seq":5,"db":0,"op":"set","kind":"keys","keys":["k1"]}"#
        );
        let mut second = MessageWriter::new("o");
        second.push_raw(&bytes[b.clone()], 1);
        let events = decode_message(second.finish()).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].seq, 6);
        // Both objects with the comma between them count as two.
        let mut both = MessageWriter::new("o");
        both.push_raw(&bytes[a.start..b.end], 2);
        assert_eq!(both.len(), 2);
        assert_eq!(decode_message(both.finish()).unwrap().len(), 2);
    }

    #[test]
    fn pushing_after_finish_continues_the_message() {
        let mut writer = MessageWriter::new("o");
        writer.push(1, Some(0), Op::Set, Names::Keys([&b"a"[..]]));
        let _ = writer.finish();
        writer.push(2, Some(0), Op::Set, Names::Keys([&b"b"[..]]));
        let seqs: Vec<u64> = decode_message(writer.finish())
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [1, 2]);
        writer.clear();
        assert_eq!(decode_message(writer.finish()).unwrap(), vec![]);
    }
}
