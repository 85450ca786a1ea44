//! An event-stream model checker: whatever a test does to the servers, the invalidation
//! messages its subscriptions receive must announce every change exactly once, in order,
//! gap-free per origin.
//!
//! A [`StreamChecker`] is fed by one or more [`Subscriber`]s (on its own thread, or drained
//! on demand) or by raw payloads, and checks every message as it arrives:
//!
//! - it decodes ([`decode_message`]), is of the current format and holds at least one change;
//! - per subscription and origin, each change's `seq` is the previous one's plus one, inside
//!   a message and across messages: no gap, no duplicate, no reordering. The first change of
//!   an origin a subscription has not seen is accepted whatever its number (a server that
//!   restarted or took over is a new origin). The one jump allowed within an origin is the
//!   one the module makes when it numbered changes it did not announce, and it lands on the
//!   announcement that says so ([`is_numbering_restart`]).
//!
//! Failures are recorded with the subscription, origin, expected and received numbers and
//! the message ([`StreamFailure`]); [`StreamChecker::assert_clean`] reports them. Two more
//! checks compare the stream with what the servers did:
//!
//! - [`StreamChecker::assert_matches_log`]: the changes received under a server's origin are
//!   exactly those its event log holds (`HC.EVENTS SINCE`): same numbers, databases, ops,
//!   keys and tags, none missing, none extra;
//! - [`StreamChecker::assert_model_changes`]: the changes a single-threaded driver made
//!   ([`ExpectedChange`]) are each announced exactly once, in the driver's order, with other
//!   changes in between.
//!
//! The checking logic ([`EventStreams`], [`log_differences`], [`model_differences`]) is pure
//! and unit-tested below; only [`StreamChecker`] talks to servers. It does not care how it
//! subscribes: a subscription per node, one for a whole cluster, or raw payloads from
//! elsewhere (each source is a stream of its own).

mod compare;
#[cfg(test)]
mod samples;
mod streams;

pub use compare::{describe_change, log_differences, model_differences, ExpectedChange, Subject};
pub use streams::{is_numbering_restart, step, EventStreams, Fault, OpTally, Step, StreamFailure};

use crate::hc::{parse_events_reply, EventsReply};
use crate::server::{scaled, RedisServer};
use crate::subscriber::{Subscriber, EVENT_TIMEOUT};
use hybridcache_protocol::{command, decode_message, InvalidationEvent};
use redis::Value;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use streams::quoted;

/// Messages read from one subscription before the next one's turn.
const READ_TURN: usize = 1000;

/// Changes asked for per `HC.EVENTS` call when reading a server's log.
const LOG_PAGE: u64 = 2000;

/// Failures and differences quoted in a panic message.
const QUOTED_FAILURES: usize = 20;

/// What [`StreamChecker::assert_matches_log`] compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCheck {
    /// The server's origin.
    pub origin: String,
    /// The number of the last change the server had published when asked; every change up
    /// to it was compared.
    pub last: u64,
    /// Changes compared (per source).
    pub compared: usize,
    /// Changes received before a numbering restart the log no longer reaches back to (the
    /// log empties itself when the numbers jump), so not compared.
    pub not_in_log: usize,
}

enum Feed {
    /// Only [`StreamChecker::feed`].
    Payloads,
    /// Read when a check needs it.
    OnDemand(Vec<Source>),
    /// Read by a thread of the checker.
    Thread {
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    },
}

struct Source {
    name: String,
    subscriber: Subscriber,
    lost: bool,
}

/// Reads the messages waiting on `sources` (after waiting up to `wait` for the first one on
/// each; at most [`READ_TURN`] from each) and feeds them to `streams`; returns how many were
/// read. A subscription whose connection is lost is recorded ([`EventStreams::lost`]) and
/// read no more.
fn read_sources(sources: &mut [Source], streams: &Mutex<EventStreams>, wait: Duration) -> usize {
    let mut read = 0;
    for source in sources.iter_mut().filter(|s| !s.lost) {
        let mut timeout = wait;
        // A bounded turn per source, so that a flood on one starves no other.
        for _ in 0..READ_TURN {
            let payload =
                catch_unwind(AssertUnwindSafe(|| source.subscriber.next_payload(timeout)));
            timeout = Duration::ZERO;
            match payload {
                Ok(Some(payload)) => {
                    lock(streams).feed(&source.name, &payload);
                    read += 1;
                }
                Ok(None) => break,
                Err(panic) => {
                    let text = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    source.lost = true;
                    lock(streams).lost(&source.name, &text);
                    break;
                }
            }
        }
    }
    read
}

fn lock(streams: &Mutex<EventStreams>) -> MutexGuard<'_, EventStreams> {
    streams.lock().unwrap_or_else(|p| p.into_inner())
}

/// The stream checker over live subscriptions (see the module documentation).
pub struct StreamChecker {
    streams: Arc<Mutex<EventStreams>>,
    feed: Mutex<Feed>,
}

impl StreamChecker {
    /// A checker fed only by [`StreamChecker::feed`].
    pub fn for_payloads() -> Self {
        Self {
            streams: Arc::default(),
            feed: Mutex::new(Feed::Payloads),
        }
    }

    /// A checker that reads `subscribers` (each named for failure messages) when a check
    /// needs it, or on [`StreamChecker::drain`].
    pub fn on_demand(subscribers: Vec<(String, Subscriber)>) -> Self {
        Self {
            streams: Arc::default(),
            feed: Mutex::new(Feed::OnDemand(sources(subscribers))),
        }
    }

    /// A checker that reads `subscribers` (each named for failure messages) on a thread of
    /// its own, as messages come, until it is dropped.
    pub fn on_thread(subscribers: Vec<(String, Subscriber)>) -> Self {
        let streams: Arc<Mutex<EventStreams>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut sources = sources(subscribers);
        let thread = {
            let (streams, stop) = (streams.clone(), stop.clone());
            std::thread::Builder::new()
                .name("stream-checker".into())
                .spawn(move || {
                    let wait = Duration::from_millis(5) / sources.len().max(1) as u32;
                    while !stop.load(Ordering::Relaxed) {
                        if sources.iter().all(|s| s.lost) {
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                        read_sources(&mut sources, &streams, wait.max(Duration::from_millis(1)));
                    }
                })
                .unwrap_or_else(|e| panic!("cannot spawn the stream checker thread: {e}"))
        };
        Self {
            streams,
            feed: Mutex::new(Feed::Thread {
                stop,
                thread: Some(thread),
            }),
        }
    }

    /// A checker on its own thread, subscribed to the invalidation channel of each of
    /// `servers` (sources named `port <port>`). Every subscription is confirmed when this
    /// returns.
    pub fn subscribe(servers: &[&RedisServer]) -> Self {
        Self::on_thread(
            servers
                .iter()
                .map(|s| (format!("port {}", s.port()), Subscriber::new(s)))
                .collect(),
        )
    }

    /// Announces that the subscription `source` may lose its connection (its server is
    /// about to be killed): that is then no failure.
    pub fn allow_loss(&self, source: &str) {
        lock(&self.streams).allow_loss(source);
    }

    /// Checks one message received from `source` (by whatever means).
    pub fn feed(&self, source: &str, payload: &[u8]) {
        lock(&self.streams).feed(source, payload);
    }

    /// Runs `f` over the checker's state.
    pub fn with_streams<T>(&self, f: impl FnOnce(&EventStreams) -> T) -> T {
        f(&lock(&self.streams))
    }

    /// Reads what is waiting on on-demand subscriptions (waiting up to `wait` for it);
    /// returns the messages read (0 for the other kinds of checker).
    fn pull(&self, wait: Duration) -> usize {
        let mut feed = self.feed.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *feed {
            Feed::OnDemand(sources) => read_sources(sources, &self.streams, wait),
            _ => 0,
        }
    }

    /// Reads (or lets the thread read) until no message has come for `quiet`.
    pub fn drain(&self, quiet: Duration) {
        let mut seen = self.with_streams(EventStreams::messages);
        let mut since = Instant::now();
        while since.elapsed() < quiet {
            if self.pull(quiet.saturating_sub(since.elapsed())) == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
            let now = self.with_streams(EventStreams::messages);
            if now != seen {
                seen = now;
                since = Instant::now();
            }
        }
    }

    /// Waits until every source still connected that received changes of `origin` has
    /// received the one numbered `seq`.
    ///
    /// # Errors
    /// When that takes longer than `timeout`: says how far each source got.
    pub fn catch_up(&self, origin: &str, seq: u64, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.with_streams(|s| s.caught_up(origin, seq)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let progress = self.with_streams(|s| {
                    s.sources_of(origin)
                        .iter()
                        .map(|source| {
                            format!(
                                "{source} through seq {}",
                                s.last_seq(source, origin).unwrap_or(0)
                            )
                        })
                        .collect::<Vec<_>>()
                });
                return Err(format!(
                    "origin {origin} published through seq {seq}, but within {timeout:?} the subscriptions got {}",
                    if progress.is_empty() {
                        "none of its changes".to_string()
                    } else {
                        progress.join(", ")
                    }
                ));
            }
            if self.pull(Duration::from_millis(10)) == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }

    /// The failures found so far, described.
    ///
    /// # Errors
    /// When there is any: the first 20 and their number.
    pub fn check_clean(&self) -> Result<(), String> {
        self.pull(Duration::ZERO);
        self.with_streams(|s| {
            let failures = s.failures();
            if failures.is_empty() {
                return Ok(());
            }
            let lines: Vec<String> = failures
                .iter()
                .take(QUOTED_FAILURES)
                .map(|f| format!("  {f}"))
                .collect();
            Err(format!(
                "the event stream broke its rules {} times (after {} messages, {} changes):\n{}",
                failures.len(),
                s.messages(),
                s.changes(),
                lines.join("\n")
            ))
        })
    }

    /// Panics when a check failed so far.
    ///
    /// # Panics
    /// With the failures ([`StreamChecker::check_clean`]) and `when`.
    pub fn assert_clean(&self, when: &str) {
        if let Err(e) = self.check_clean() {
            panic!("{when}: {e}");
        }
    }

    /// Compares what the subscriptions received under `server`'s origin with its event log
    /// (`HC.EVENTS SINCE`, paged): once they have received everything the server published so
    /// far, every source that received changes of it holds exactly the changes its log holds
    /// from the first change kept on (not released), change for change.
    ///
    /// The log must reach back that far: raise `hybridcache.event-log-changes` and
    /// `-bytes` in tests that compare long histories, or release what was compared
    /// ([`StreamChecker::release_through`]). Only where the numbering restarted
    /// ([`is_numbering_restart`]), which empties the log, does the comparison start there.
    ///
    /// # Errors
    /// Says what differs, or why nothing could be compared.
    pub fn check_log(&self, server: &RedisServer) -> Result<LogCheck, String> {
        let port = server.port();
        let mut con = server.connection();
        let origin = hello_origin(&mut con).map_err(|e| format!("port {port}: {e}"))?;
        let last = events_since(&mut con, &origin, 0, 1)
            .map_err(|e| format!("port {port}: {e}"))?
            .last;
        let mut check = LogCheck {
            origin: origin.clone(),
            last,
            compared: 0,
            not_in_log: 0,
        };
        if last == 0 {
            return Ok(check);
        }
        self.catch_up(&origin, last, scaled(EVENT_TIMEOUT))
            .map_err(|e| format!("port {port}: {e}"))?;
        for source in self.with_streams(|s| s.live_sources_of(&origin)) {
            let (kept, restarts) = self.with_streams(|s| {
                (
                    s.kept(&source, &origin, last),
                    s.restarts_of(&source, &origin),
                )
            });
            let Some(start) = kept.first().map(|c| c.seq) else {
                continue;
            };
            let mut from = start;
            let mut logged = read_log(&mut con, &origin, start.saturating_sub(1), last)
                .map_err(|e| format!("port {port}: {e}"))?;
            if logged.is_none() {
                if let Some(&restart) = restarts.iter().rev().find(|r| **r > start) {
                    from = restart;
                    logged = read_log(&mut con, &origin, restart - 1, last)
                        .map_err(|e| format!("port {port}: {e}"))?;
                }
            }
            let Some(logged) = logged else {
                return Err(format!(
                    "port {port} (origin {origin}): the event log no longer reaches back to seq {from} (last {last}); raise hybridcache.event-log-changes/-bytes or compare more often"
                ));
            };
            let received: Vec<InvalidationEvent> =
                kept.iter().filter(|c| c.seq >= from).cloned().collect();
            let differences = log_differences(&received, &logged);
            if !differences.is_empty() {
                return Err(format!(
                    "{source} received other changes of port {port} (origin {origin}) than its event log holds over seq {from}..={last}:\n  {}",
                    differences.join("\n  ")
                ));
            }
            check.compared = received.len();
            check.not_in_log = kept.len() - received.len();
        }
        Ok(check)
    }

    /// [`StreamChecker::check_log`], panicking on a difference.
    ///
    /// # Panics
    /// When the check fails (the message says what differs).
    pub fn assert_matches_log(&self, server: &RedisServer) -> LogCheck {
        self.check_log(server).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Checks that the changes a single-threaded driver made (`expected`, in the order it made
    /// them) were each announced exactly once and in order among the received changes of
    /// `origin` numbered up to `through` (see [`model_differences`]; `owns` names the keys
    /// and tags only the driver changes, which must carry no other change).
    ///
    /// # Errors
    /// The differences.
    pub fn check_model(
        &self,
        origin: &str,
        through: u64,
        expected: &[ExpectedChange],
        owns: &dyn Fn(Option<u32>, &Subject) -> bool,
    ) -> Result<(), String> {
        let received = self.with_streams(|s| s.received(origin, through));
        let differences = model_differences(&received, expected, owns);
        if differences.is_empty() {
            return Ok(());
        }
        let lines: Vec<&String> = differences.iter().take(QUOTED_FAILURES).collect();
        Err(format!(
            "{} of {} expected changes of origin {origin} (through seq {through}, {} changes received) were not announced exactly once in order:\n  {}",
            differences.len(),
            expected.len(),
            received.len(),
            lines
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  ")
        ))
    }

    /// [`StreamChecker::check_model`], panicking on a difference.
    ///
    /// # Panics
    /// When the check fails.
    pub fn assert_model_changes(
        &self,
        origin: &str,
        through: u64,
        expected: &[ExpectedChange],
        owns: &dyn Fn(Option<u32>, &Subject) -> bool,
    ) {
        if let Err(e) = self.check_model(origin, through, expected, owns) {
            panic!("{e}");
        }
    }

    /// Forgets the received changes of `origin` numbered up to `seq` (compared already), so
    /// that a long run keeps little; the stream checks go on.
    pub fn release_through(&self, origin: &str, seq: u64) {
        lock(&self.streams).release_through(origin, seq);
    }

    /// A one-line account: messages, changes, origins, numbering restarts, failures.
    pub fn summary(&self) -> String {
        self.with_streams(|s| {
            format!(
                "{} messages, {} changes, {} origins, {} numbering restarts, {} failures",
                s.messages(),
                s.changes(),
                s.origins().len(),
                s.restarts(),
                s.failures().len()
            )
        })
    }
}

impl Drop for StreamChecker {
    fn drop(&mut self) {
        let feed = self.feed.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Feed::Thread { stop, thread } = feed {
            stop.store(true, Ordering::Relaxed);
            if let Some(thread) = thread.take() {
                let _ = thread.join();
            }
        }
    }
}

fn sources(subscribers: Vec<(String, Subscriber)>) -> Vec<Source> {
    subscribers
        .into_iter()
        .map(|(name, subscriber)| Source {
            name,
            subscriber,
            lost: false,
        })
        .collect()
}

/// The server's origin, from `HC.HELLO`.
fn hello_origin(con: &mut redis::Connection) -> Result<String, String> {
    let reply: Value = redis::cmd(command::HELLO)
        .query(con)
        .map_err(|e| format!("HC.HELLO failed: {e}"))?;
    let Value::Array(items) = &reply else {
        return Err(format!("HC.HELLO answered {reply:?}"));
    };
    items
        .chunks(2)
        .find_map(|pair| match pair {
            [Value::BulkString(name), Value::BulkString(origin)] if name == b"origin" => {
                Some(String::from_utf8_lossy(origin).into_owned())
            }
            _ => None,
        })
        .ok_or_else(|| format!("HC.HELLO names no origin: {reply:?}"))
}

/// `HC.EVENTS SINCE origin seq COUNT count`, parsed.
fn events_since(
    con: &mut redis::Connection,
    origin: &str,
    seq: u64,
    count: u64,
) -> Result<EventsReply, String> {
    let reply: Value = redis::cmd(command::EVENTS)
        .arg(command::events::SINCE)
        .arg(origin)
        .arg(seq)
        .arg(command::events::COUNT)
        .arg(count)
        .query(con)
        .map_err(|e| format!("HC.EVENTS SINCE {origin} {seq} COUNT {count} failed: {e}"))?;
    parse_events_reply(&reply)
        .ok_or_else(|| format!("HC.EVENTS SINCE {origin} {seq} answered {reply:?}"))
}

/// The changes of `origin`'s log after `after` up to `through`, or `None` when the log no
/// longer reaches back to `after + 1`.
fn read_log(
    con: &mut redis::Connection,
    origin: &str,
    after: u64,
    through: u64,
) -> Result<Option<Vec<InvalidationEvent>>, String> {
    let mut changes = Vec::new();
    let mut at = after;
    while at < through {
        let since = events_since(con, origin, at, LOG_PAGE)?;
        match since.status.as_str() {
            command::events::OK => {}
            command::events::TOO_OLD if changes.is_empty() => return Ok(None),
            status => {
                return Err(format!(
                    "HC.EVENTS SINCE {origin} {at} answered {status} (last {}) while reading the log after {after}",
                    since.last
                ))
            }
        }
        let message = since.message.unwrap_or_default();
        let page = decode_message(&message).map_err(|e| {
            format!(
                "HC.EVENTS SINCE {origin} {at}: the message does not decode ({e}): {}",
                quoted(&message)
            )
        })?;
        if page.is_empty() {
            return Err(format!(
                "HC.EVENTS SINCE {origin} {at} answered no change, though the last is {}",
                since.last
            ));
        }
        for change in page {
            if change.seq <= at {
                return Err(format!(
                    "HC.EVENTS SINCE {origin} {at} answered {}",
                    describe_change(&change)
                ));
            }
            if change.seq > through {
                return Ok(Some(changes));
            }
            at = change.seq;
            changes.push(change);
        }
    }
    Ok(Some(changes))
}

#[cfg(test)]
mod tests {
    use super::samples::{message, set};
    use super::*;

    #[test]
    fn the_checker_fed_payloads_reports_like_the_pure_streams() {
        let checker = StreamChecker::for_payloads();
        checker.feed("raw", &message(&[set(1, "a")]));
        assert!(checker.check_clean().is_ok());
        checker.feed("raw", &message(&[set(3, "b")]));
        let error = checker.check_clean().unwrap_err();
        assert!(
            error.contains("raw, origin 00000000000000aa: expected seq 2, got seq 3"),
            "{error}"
        );
        assert!(
            checker.summary().contains("2 messages, 2 changes"),
            "{}",
            checker.summary()
        );
    }
}
