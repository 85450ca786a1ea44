//! The checks made on every message as it arrives: it decodes, and the changes of each
//! origin are numbered without gap, duplicate or reordering on each source; what each
//! source received is kept for the comparisons. Pure Rust.

use hybridcache_protocol::{decode_message, Change, InvalidationEvent, Op, FORMAT_VERSION};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

/// Characters of a message quoted in a failure.
const QUOTED_MESSAGE: usize = 600;

/// Whether `change` is an announcement that the numbering went on past changes that were
/// numbered but not announced, so that a jump up to it is no gap.
///
/// That is a flush of every database (`db` null, `kind` flush) with op:
/// - `loaded`: while a dataset loads nothing is announced, yet writes replayed from an AOF
///   take numbers (`State::next_version`), and the versions of the entries loaded push the
///   counter past them (`Change::Arrived` while not publishing: `Sequencer::advance_past`,
///   from `rebuild_index`); the load ends with one `loaded` change, numbered right after
///   (module/src/keyspace.rs `on_loading`, module/src/changes.rs `Change::Loaded`);
/// - `promoted`: a cluster replica numbers the writes it applies and the entries that
///   arrive, but announces nothing; when it becomes a primary its first announcement is the
///   `promoted` flush (`Change::Promoted`).
///
/// Nothing is announced between the last number used and that change, so it is the very
/// change the numbers jump to. A live primary never skips numbers otherwise (a RESTORE, a
/// slot migration included, takes the next number).
pub fn is_numbering_restart(change: &InvalidationEvent) -> bool {
    matches!(change.op, Op::Loaded | Op::Promoted)
        && change.db.is_none()
        && change.change == Change::Flush
}

/// How a change follows the previous change of its origin on one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Numbered one more than the previous one.
    Next,
    /// A jump onto a numbering restart ([`is_numbering_restart`]).
    Restart,
    /// Numbers between the two never arrived.
    Gap,
    /// Numbered at or below the previous one: a duplicate or a reordering.
    Back,
}

/// How `change` follows a change numbered `previous` of the same origin.
pub fn step(previous: u64, change: &InvalidationEvent) -> Step {
    let seq = change.seq;
    if seq == previous.wrapping_add(1) {
        Step::Next
    } else if seq > previous && is_numbering_restart(change) {
        Step::Restart
    } else if seq > previous {
        Step::Gap
    } else {
        Step::Back
    }
}

/// What is wrong with a received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// [`decode_message`] refused it (its error).
    Undecodable(String),
    /// It holds no change.
    Empty,
    /// A change of another format version than [`FORMAT_VERSION`].
    Version(u32),
    /// The first change of an origin is numbered 0 (numbers start at 1).
    ZeroSeq,
    /// Changes between the previous one and this one never arrived.
    Gap,
    /// Numbered at or below the previous one: a duplicate or a reordering.
    Back,
    /// The subscription's connection was lost (the reason), when the test did not announce
    /// it ([`EventStreams::allow_loss`]).
    Lost(String),
}

/// One failure of the stream checks, with everything needed to find it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFailure {
    /// The subscription (or other source) the message came from.
    pub source: String,
    /// The origin of the message, when it decoded.
    pub origin: Option<String>,
    /// The number the change should have had.
    pub expected: Option<u64>,
    /// The number it had.
    pub got: Option<u64>,
    /// Whether the two changes were in the same message.
    pub within_message: bool,
    /// What is wrong.
    pub fault: Fault,
    /// The message, as lossy UTF-8, cut after 600 characters.
    pub message: String,
    /// Messages received from this source before this one.
    pub after_messages: u64,
}

impl fmt::Display for StreamFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        if let Some(origin) = &self.origin {
            write!(f, ", origin {origin}")?;
        }
        let numbers = match (self.expected, self.got) {
            (Some(expected), Some(got)) => format!(": expected seq {expected}, got seq {got}"),
            (None, Some(got)) => format!(": seq {got}"),
            _ => String::new(),
        };
        let what = match &self.fault {
            Fault::Undecodable(e) => format!("message does not decode ({e})"),
            Fault::Empty => "message holds no change".into(),
            Fault::Version(v) => format!("change of format version {v}, not {FORMAT_VERSION}"),
            Fault::ZeroSeq => "an origin's first change is numbered 0".into(),
            Fault::Gap => match (self.expected, self.got) {
                (Some(e), Some(g)) if g > e => {
                    format!("gap: changes {e}..={} never arrived", g - 1)
                }
                _ => "gap: a change never arrived".into(),
            },
            Fault::Back => "number at or below the previous one: duplicate or reordered".into(),
            Fault::Lost(reason) => format!("subscription lost: {reason}"),
        };
        let place = if self.within_message {
            " (inside one message)"
        } else {
            ""
        };
        write!(f, "{numbers}: {what}{place}")?;
        if self.message.is_empty() {
            return write!(f, " (after {} messages)", self.after_messages);
        }
        write!(
            f,
            "; message #{} from this source: {}",
            self.after_messages + 1,
            self.message
        )
    }
}

/// `payload` as lossy UTF-8, cut after [`QUOTED_MESSAGE`] characters.
pub(crate) fn quoted(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    if text.chars().count() <= QUOTED_MESSAGE {
        return text.into_owned();
    }
    let cut: String = text.chars().take(QUOTED_MESSAGE).collect();
    format!("{cut}... ({} bytes in all)", payload.len())
}

/// What one source received of one origin.
#[derive(Debug)]
struct OriginStream {
    first: u64,
    last: u64,
    /// The changes received and not released ([`EventStreams::release_through`]), in order.
    kept: VecDeque<InvalidationEvent>,
    /// Numbers at which the numbering restarted (a [`Step::Restart`]), not released.
    restarts: Vec<u64>,
    /// Changes and names per op, over the whole stream (released changes included).
    ops: BTreeMap<&'static str, OpTally>,
}

/// How many changes of one op a stream carried, and how many keys or tags they named.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpTally {
    /// Changes.
    pub changes: u64,
    /// Keys or tags named by them (0 for flushes).
    pub names: u64,
}

impl OriginStream {
    fn keep(&mut self, change: InvalidationEvent) {
        let tally = self.ops.entry(change.op.as_str()).or_default();
        tally.changes += 1;
        tally.names += match &change.change {
            Change::Keys { keys } => keys.len() as u64,
            Change::Tags { tags, .. } => tags.len() as u64,
            Change::Flush => 0,
        };
        self.last = change.seq;
        self.kept.push_back(change);
    }
}

/// The pure part of the checker: every received message goes through
/// [`EventStreams::feed`], which checks it and keeps its changes per source and origin.
#[derive(Debug, Default)]
pub struct EventStreams {
    /// Keyed by (source, origin).
    streams: BTreeMap<(String, String), OriginStream>,
    /// Messages per source.
    messages: BTreeMap<String, u64>,
    failures: Vec<StreamFailure>,
    changes: u64,
    restarts: u64,
    /// Sources whose loss the test announced, and the sources lost.
    losses_allowed: BTreeSet<String>,
    lost: Vec<String>,
}

impl EventStreams {
    /// An empty checker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks one message received from `source` and keeps its changes.
    pub fn feed(&mut self, source: &str, payload: &[u8]) {
        let count = self.messages.entry(source.to_string()).or_default();
        let after_messages = *count;
        *count += 1;
        let failure = |origin: Option<&str>, expected, got, within_message, fault| StreamFailure {
            source: source.to_string(),
            origin: origin.map(str::to_string),
            expected,
            got,
            within_message,
            fault,
            message: quoted(payload),
            after_messages,
        };
        let changes = match decode_message(payload) {
            Ok(changes) => changes,
            Err(e) => {
                let failure = failure(None, None, None, false, Fault::Undecodable(e.to_string()));
                self.failures.push(failure);
                return;
            }
        };
        if changes.is_empty() {
            self.failures
                .push(failure(None, None, None, false, Fault::Empty));
            return;
        }
        for (i, change) in changes.into_iter().enumerate() {
            self.changes += 1;
            let origin = change.origin.as_str();
            if change.v != FORMAT_VERSION {
                let fault = Fault::Version(change.v);
                self.failures
                    .push(failure(Some(origin), None, Some(change.seq), false, fault));
            }
            let key = (source.to_string(), change.origin.clone());
            match self.streams.get_mut(&key) {
                None => {
                    if change.seq == 0 {
                        let fault = Fault::ZeroSeq;
                        self.failures
                            .push(failure(Some(origin), None, Some(0), false, fault));
                    }
                    let mut stream = OriginStream {
                        first: change.seq,
                        last: change.seq,
                        kept: VecDeque::new(),
                        restarts: Vec::new(),
                        ops: BTreeMap::new(),
                    };
                    stream.keep(change);
                    self.streams.insert(key, stream);
                }
                Some(stream) => {
                    let expected = stream.last.wrapping_add(1);
                    let fault = match step(stream.last, &change) {
                        Step::Next => None,
                        Step::Restart => {
                            stream.restarts.push(change.seq);
                            self.restarts += 1;
                            None
                        }
                        Step::Gap => Some(Fault::Gap),
                        Step::Back => Some(Fault::Back),
                    };
                    if let Some(fault) = fault {
                        let failure =
                            failure(Some(origin), Some(expected), Some(change.seq), i > 0, fault);
                        self.failures.push(failure);
                    }
                    // Go on from this number, so that one fault is reported once.
                    stream.keep(change);
                }
            }
        }
    }

    /// Announces that `source` may lose its connection (its server is about to be killed):
    /// the loss is then no failure.
    pub fn allow_loss(&mut self, source: &str) {
        self.losses_allowed.insert(source.to_string());
    }

    /// Records that `source` lost its connection for `reason`: a failure unless announced.
    pub fn lost(&mut self, source: &str, reason: &str) {
        self.lost.push(source.to_string());
        if !self.losses_allowed.contains(source) {
            self.failures.push(StreamFailure {
                source: source.to_string(),
                origin: None,
                expected: None,
                got: None,
                within_message: false,
                fault: Fault::Lost(reason.to_string()),
                message: String::new(),
                after_messages: self.messages.get(source).copied().unwrap_or(0),
            });
        }
    }

    /// The sources that lost their connection, in the order lost.
    pub fn lost_sources(&self) -> &[String] {
        &self.lost
    }

    /// Every failure so far, in the order found.
    pub fn failures(&self) -> &[StreamFailure] {
        &self.failures
    }

    /// Messages received, from every source.
    pub fn messages(&self) -> u64 {
        self.messages.values().sum()
    }

    /// Changes received, from every source.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Numbering restarts seen ([`Step::Restart`]), from every source.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// The origins received from any source.
    pub fn origins(&self) -> BTreeSet<String> {
        self.streams.keys().map(|(_, o)| o.clone()).collect()
    }

    /// The sources that received changes of `origin` (those still connected first, each
    /// group by name).
    pub fn sources_of(&self, origin: &str) -> Vec<String> {
        let (mut live, lost): (Vec<String>, Vec<String>) = self
            .streams
            .keys()
            .filter(|(_, o)| o == origin)
            .map(|(s, _)| s.clone())
            .partition(|s| !self.lost.contains(s));
        live.extend(lost);
        live
    }

    /// The sources still connected that received changes of `origin`.
    pub fn live_sources_of(&self, origin: &str) -> Vec<String> {
        self.sources_of(origin)
            .into_iter()
            .filter(|s| !self.lost.contains(s))
            .collect()
    }

    fn stream(&self, source: &str, origin: &str) -> Option<&OriginStream> {
        self.streams.get(&(source.to_string(), origin.to_string()))
    }

    /// The number of the first change of `origin` any source received.
    pub fn first_seq(&self, origin: &str) -> Option<u64> {
        self.streams
            .iter()
            .filter(|((_, o), _)| o == origin)
            .map(|(_, s)| s.first)
            .min()
    }

    /// The number of the last change of `origin` that `source` received.
    pub fn last_seq(&self, source: &str, origin: &str) -> Option<u64> {
        self.stream(source, origin).map(|s| s.last)
    }

    /// Whether every source still connected that received changes of `origin` has received
    /// the one numbered `seq` (and there is such a source).
    pub fn caught_up(&self, origin: &str, seq: u64) -> bool {
        let sources = self.live_sources_of(origin);
        !sources.is_empty()
            && sources.iter().all(|source| {
                self.last_seq(source, origin)
                    .is_some_and(|last| last >= seq)
            })
    }

    /// The changes of `origin` that `source` received and that are not released, numbered
    /// up to `through`, in the order received.
    pub fn kept(&self, source: &str, origin: &str, through: u64) -> Vec<InvalidationEvent> {
        self.stream(source, origin)
            .map(|s| {
                s.kept
                    .iter()
                    .filter(|c| c.seq <= through)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The changes of `origin` received (from the first source that received any, one still
    /// connected if there is one), not released, numbered up to `through`.
    pub fn received(&self, origin: &str, through: u64) -> Vec<InvalidationEvent> {
        self.sources_of(origin)
            .first()
            .map(|source| self.kept(source, origin, through))
            .unwrap_or_default()
    }

    /// The numbering restarts of `origin` on `source` that are not released.
    pub fn restarts_of(&self, source: &str, origin: &str) -> Vec<u64> {
        self.stream(source, origin)
            .map(|s| s.restarts.clone())
            .unwrap_or_default()
    }

    /// Forgets the changes of `origin` numbered up to `seq` (already compared), on every
    /// source; the stream checks go on from where they are.
    pub fn release_through(&mut self, origin: &str, seq: u64) {
        for ((_, o), stream) in self.streams.iter_mut() {
            if o != origin {
                continue;
            }
            while stream.kept.front().is_some_and(|c| c.seq <= seq) {
                stream.kept.pop_front();
            }
            stream.restarts.retain(|r| *r > seq);
        }
    }

    /// Changes and names per op (`"set"`, `"del"`, ...) that `source` received from
    /// `origin` over the whole run.
    pub fn op_tally(&self, source: &str, origin: &str) -> BTreeMap<&'static str, OpTally> {
        self.stream(source, origin)
            .map(|s| s.ops.clone())
            .unwrap_or_default()
    }

    /// Changes kept (not released), over every source and origin.
    pub fn kept_changes(&self) -> usize {
        self.streams.values().map(|s| s.kept.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_stream::samples::{del, flush, message, set, O};

    fn fed(messages: &[&[InvalidationEvent]]) -> EventStreams {
        let mut streams = EventStreams::new();
        for m in messages {
            streams.feed("sub", &message(m));
        }
        streams
    }

    fn faults(streams: &EventStreams) -> Vec<(Option<u64>, Option<u64>, Fault, bool)> {
        streams
            .failures()
            .iter()
            .map(|f| (f.expected, f.got, f.fault.clone(), f.within_message))
            .collect()
    }

    #[test]
    fn consecutive_changes_in_and_across_messages_pass() {
        let streams = fed(&[
            &[set(1, "a"), set(2, "b")],
            &[set(3, "c")],
            &[set(4, "d"), set(5, "e"), set(6, "f")],
        ]);
        assert!(streams.failures().is_empty(), "{:?}", streams.failures());
        assert_eq!((streams.messages(), streams.changes()), (3, 6));
        assert_eq!(streams.last_seq("sub", O), Some(6));
        assert_eq!(streams.received(O, 4).len(), 4);
    }

    #[test]
    fn a_new_origin_may_start_anywhere_but_at_zero() {
        let mut other = set(40, "x");
        other.origin = "00000000000000bb".into();
        let streams = fed(&[&[set(7, "a")], &[other.clone()], &[set(8, "b")]]);
        assert!(streams.failures().is_empty(), "{:?}", streams.failures());
        assert_eq!(streams.first_seq(O), Some(7));
        assert_eq!(streams.first_seq(&other.origin), Some(40));
        let zero = fed(&[&[set(0, "a")]]);
        assert_eq!(faults(&zero), [(None, Some(0), Fault::ZeroSeq, false)]);
    }

    #[test]
    fn a_gap_across_messages_is_reported_once_with_both_numbers() {
        let streams = fed(&[&[set(1, "a")], &[set(4, "b"), set(5, "c")], &[set(6, "d")]]);
        assert_eq!(faults(&streams), [(Some(2), Some(4), Fault::Gap, false)]);
        let text = streams.failures()[0].to_string();
        assert!(text.contains("expected seq 2, got seq 4"), "{text}");
        assert!(text.contains("changes 2..=3 never arrived"), "{text}");
        assert!(text.contains(r#""keys":["b"]"#), "{text}");
    }

    #[test]
    fn a_gap_inside_a_message_is_reported_as_such() {
        let streams = fed(&[&[set(1, "a"), set(3, "b")]]);
        assert_eq!(faults(&streams), [(Some(2), Some(3), Fault::Gap, true)]);
        assert!(streams.failures()[0]
            .to_string()
            .contains("inside one message"));
    }

    #[test]
    fn duplicates_and_reordering_are_reported() {
        let duplicate = fed(&[&[set(1, "a"), set(2, "b")], &[set(2, "b")], &[set(3, "c")]]);
        assert_eq!(faults(&duplicate), [(Some(3), Some(2), Fault::Back, false)]);
        let swapped = fed(&[&[set(1, "a"), set(3, "c"), set(2, "b")]]);
        assert_eq!(
            faults(&swapped),
            [
                (Some(2), Some(3), Fault::Gap, true),
                (Some(4), Some(2), Fault::Back, true)
            ]
        );
    }

    #[test]
    fn numbers_may_jump_only_onto_a_loaded_or_promoted_flush_of_every_database() {
        // DEBUG RELOAD that pushed the counter: the flushall, then the jump to "loaded", in
        // one message or across two.
        let reload = fed(&[
            &[
                set(1, "a"),
                flush(2, None, Op::Flushall),
                flush(9, None, Op::Loaded),
            ],
            &[set(10, "b")],
        ]);
        assert!(reload.failures().is_empty(), "{:?}", reload.failures());
        assert_eq!(reload.restarts(), 1);
        assert_eq!(reload.restarts_of("sub", O), [9]);
        let across = fed(&[
            &[set(1, "a")],
            &[flush(5, None, Op::Promoted)],
            &[set(6, "b")],
        ]);
        assert!(across.failures().is_empty(), "{:?}", across.failures());
        // Not onto anything else: another op, a flush of one database, a change after it.
        for wrong in [
            flush(9, None, Op::Flushall),
            flush(9, Some(0), Op::Loaded),
            InvalidationEvent::new(O, 9, None, Op::Loaded, Change::Keys { keys: vec![] }),
            set(9, "b"),
        ] {
            let streams = fed(&[&[set(1, "a")], std::slice::from_ref(&wrong)]);
            assert_eq!(
                faults(&streams),
                [(Some(2), Some(9), Fault::Gap, false)],
                "{wrong:?}"
            );
        }
        let after = fed(&[&[set(1, "a"), flush(2, None, Op::Loaded), set(7, "b")]]);
        assert_eq!(faults(&after), [(Some(3), Some(7), Fault::Gap, true)]);
        // Never backwards.
        let back = fed(&[&[set(5, "a")], &[flush(3, None, Op::Loaded)]]);
        assert_eq!(faults(&back), [(Some(6), Some(3), Fault::Back, false)]);
    }

    #[test]
    fn undecodable_empty_and_old_format_messages_are_reported() {
        let mut streams = EventStreams::new();
        streams.feed("sub", b"not json");
        streams.feed("sub", br#"{"v":2,"origin":"o","events":[]}"#);
        streams.feed(
            "sub",
            br#"{"v":1,"origin":"o","seq":1,"db":0,"op":"set","kind":"keys","keys":["k"]}"#,
        );
        let found: Vec<Fault> = streams.failures().iter().map(|f| f.fault.clone()).collect();
        assert!(matches!(found[0], Fault::Undecodable(_)), "{found:?}");
        assert_eq!(found[1..], [Fault::Empty, Fault::Version(1)]);
        assert!(streams.failures()[0].to_string().contains("not json"));
    }

    #[test]
    fn each_source_is_a_stream_of_its_own() {
        let mut streams = EventStreams::new();
        let (a, b) = (message(&[set(1, "a")]), message(&[set(2, "b")]));
        for source in ["node 1", "node 2"] {
            streams.feed(source, &a);
            streams.feed(source, &b);
        }
        assert!(streams.failures().is_empty(), "{:?}", streams.failures());
        assert_eq!(streams.sources_of(O), ["node 1", "node 2"]);
        assert!(streams.caught_up(O, 2));
        assert!(!streams.caught_up(O, 3));
        assert!(!streams.caught_up("unknown", 1));
        streams.feed("node 1", &message(&[set(3, "c")]));
        assert!(!streams.caught_up(O, 3), "node 2 is behind");
        // A source that lost its connection is waited for no more, and comes last.
        streams.allow_loss("node 1");
        streams.lost("node 1", "killed");
        assert_eq!(streams.live_sources_of(O), ["node 2"]);
        assert_eq!(streams.sources_of(O), ["node 2", "node 1"]);
        assert!(streams.caught_up(O, 2));
        assert!(!streams.caught_up(O, 3));
    }

    #[test]
    fn a_lost_subscription_fails_unless_announced() {
        let mut streams = EventStreams::new();
        streams.allow_loss("victim");
        streams.lost("victim", "connection reset");
        assert!(streams.failures().is_empty());
        streams.lost("survivor", "connection reset");
        assert_eq!(streams.lost_sources(), ["victim", "survivor"]);
        assert_eq!(
            faults(&streams),
            [(None, None, Fault::Lost("connection reset".into()), false)]
        );
        assert!(streams.failures()[0]
            .to_string()
            .starts_with("survivor: subscription lost: connection reset"));
    }

    #[test]
    fn released_changes_are_forgotten_and_checking_goes_on() {
        let mut streams = fed(&[&[set(1, "a"), set(2, "b")], &[set(3, "c")]]);
        streams.release_through(O, 2);
        assert_eq!(
            streams.kept("sub", O, u64::MAX),
            [set(3, "c")],
            "only what follows the release"
        );
        streams.feed("sub", &message(&[set(5, "e")]));
        assert_eq!(faults(&streams), [(Some(4), Some(5), Fault::Gap, false)]);
        assert_eq!(streams.kept_changes(), 2);
    }

    #[test]
    fn ops_are_tallied_over_the_whole_stream() {
        let mut streams = fed(&[&[set(1, "a"), set(2, "b")], &[flush(3, None, Op::Flushall)]]);
        streams.release_through(O, 3);
        streams.feed("sub", &message(&[del(4, &["a", "b"])]));
        let tally = streams.op_tally("sub", O);
        assert_eq!(
            tally.get("set"),
            Some(&OpTally {
                changes: 2,
                names: 2
            })
        );
        assert_eq!(
            tally.get("flushall"),
            Some(&OpTally {
                changes: 1,
                names: 0
            })
        );
        assert_eq!(
            tally.get("del"),
            Some(&OpTally {
                changes: 1,
                names: 2
            })
        );
        assert_eq!(tally.len(), 3);
    }
}
