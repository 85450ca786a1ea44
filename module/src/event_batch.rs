//! The changes of one event-loop turn, written into one message as they happen (see
//! [`crate::publisher`] for when it is published). Pure Rust.

use hybridcache_protocol::{MessageWriter, Names, Op};
use std::ops::Range;

/// A finished message and where each of its changes sits in it: what is published, then
/// kept by the [`crate::event_log::EventLog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sealed {
    /// The message, as published.
    pub(crate) message: Vec<u8>,
    /// Each change's sequence number and the bytes of its JSON object in `message`.
    pub(crate) changes: Vec<(u64, Range<usize>)>,
}

impl Sealed {
    /// Sequence number of the first change.
    pub(crate) fn first(&self) -> Option<u64> {
        self.changes.first().map(|(seq, _)| *seq)
    }

    /// Sequence number of the last change.
    pub(crate) fn last(&self) -> Option<u64> {
        self.changes.last().map(|(seq, _)| *seq)
    }
}

/// The message being filled.
#[derive(Debug)]
pub(crate) struct EventBatch {
    writer: MessageWriter,
    changes: Vec<(u64, Range<usize>)>,
}

impl EventBatch {
    pub(crate) fn new(origin: &str) -> Self {
        Self {
            writer: MessageWriter::new(origin),
            changes: Vec::new(),
        }
    }

    /// Adds a change numbered `seq`.
    pub(crate) fn push<'a, I>(&mut self, seq: u64, db: Option<u32>, op: Op, names: Names<I>)
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let range = self.writer.push(seq, db, op, names);
        self.changes.push((seq, range));
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Changes waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.changes.len()
    }

    /// Bytes of the message so far.
    pub(crate) fn byte_len(&self) -> usize {
        self.writer.byte_len()
    }

    /// The finished message, leaving the batch empty; `None` when it holds no change.
    pub(crate) fn seal(&mut self) -> Option<Sealed> {
        if self.changes.is_empty() {
            return None;
        }
        Some(Sealed {
            message: self.writer.take(),
            changes: std::mem::take(&mut self.changes),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hybridcache_protocol::decode_message;

    #[test]
    fn a_sealed_batch_holds_every_change_in_order_and_the_batch_starts_over() {
        let mut batch = EventBatch::new("o");
        assert!(batch.seal().is_none());
        batch.push(4, Some(0), Op::Set, Names::Keys([&b"a"[..]]));
        batch.push(5, None, Op::Flushall, Names::Flush::<[&[u8]; 0]>);
        assert_eq!((batch.len(), batch.is_empty()), (2, false));
        let before = batch.byte_len();
        let sealed = batch.seal().unwrap();
        assert_eq!(sealed.message.len(), before);
        assert_eq!((sealed.first(), sealed.last()), (Some(4), Some(5)));
        let seqs: Vec<u64> = decode_message(&sealed.message)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [4, 5]);
        for (seq, range) in &sealed.changes {
            let object = std::str::from_utf8(&sealed.message[range.clone()]).unwrap();
            assert!(object.starts_with(&format!("{{\"seq\":{seq},")), "{object}");
            assert!(object.ends_with('}'), "{object}");
        }
        assert!(batch.is_empty());
        batch.push(6, Some(1), Op::Del, Names::Keys([&b"b"[..]]));
        let next = batch.seal().unwrap();
        assert_eq!(decode_message(&next.message).unwrap()[0].seq, 6);
        assert_eq!(next.changes.len(), 1);
    }
}
