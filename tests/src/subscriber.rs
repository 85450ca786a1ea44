//! A pub/sub subscriber on the invalidation channel, reading on its own thread.

use crate::server::RedisServer;
use hybridcache_protocol::{decode_message, Change, InvalidationEvent, DEFAULT_CHANNEL};
use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an event may take to reach a subscriber after the command that caused it
/// returned.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a subscriber listens to conclude that no (further) event comes.
pub const QUIET_PERIOD: Duration = Duration::from_millis(300);

/// How long subscribing may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

enum Incoming {
    Payload(Vec<u8>),
    Closed(String),
}

/// A connection subscribed to one channel. The subscription is confirmed by the server
/// before [`Subscriber::new`] returns, so every message published afterwards is seen.
///
/// A message carries the changes of one event-loop turn: [`Subscriber::next_event`] gives
/// them one by one, [`Subscriber::next_message`] as they came.
pub struct Subscriber {
    rx: Receiver<Incoming>,
    /// Changes of a message read but not handed out yet.
    pending: Mutex<VecDeque<InvalidationEvent>>,
    channel: String,
    port: u16,
    client_id: i64,
    url: String,
    thread: Option<JoinHandle<()>>,
}

impl Subscriber {
    /// Subscribes to [`DEFAULT_CHANNEL`] on `server`.
    pub fn new(server: &RedisServer) -> Subscriber {
        Self::on_channel(server, DEFAULT_CHANNEL)
    }

    /// Subscribes to `channel` on `server`.
    ///
    /// # Panics
    /// When the connection or the subscription fails, or is not confirmed in time.
    pub fn on_channel(server: &RedisServer, channel: &str) -> Subscriber {
        Self::start(server, channel, false)
    }

    /// Subscribes to the shard channel `channel` on `server` (`SSUBSCRIBE`: the server must
    /// serve the channel's slot, see `hybridcache_protocol::shard`).
    ///
    /// # Panics
    /// As [`Subscriber::on_channel`], and when the server refuses the channel (`MOVED`).
    pub fn on_shard_channel(server: &RedisServer, channel: &str) -> Subscriber {
        Self::start(server, channel, true)
    }

    fn start(server: &RedisServer, channel: &str, shard: bool) -> Subscriber {
        let mut con = server.connection();
        // Reads on the subscriber thread block until a message comes or the connection
        // closes (Drop closes it with CLIENT KILL); no read timeout, so no half-read message.
        con.set_read_timeout(None)
            .unwrap_or_else(|e| panic!("cannot clear the read timeout: {e}"));
        let client_id: i64 = redis::cmd("CLIENT")
            .arg("ID")
            .query(&mut con)
            .unwrap_or_else(|e| panic!("CLIENT ID failed: {e}"));
        let (tx, rx) = mpsc::channel::<Incoming>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let thread_channel = channel.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("subscriber-{}-{channel}", server.port()))
            .spawn(move || {
                if shard {
                    read_shard_channel(con, &thread_channel, &tx, &ready_tx);
                    return;
                }
                let mut pubsub = con.as_pubsub();
                if let Err(e) = pubsub.subscribe(&thread_channel) {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
                if ready_tx.send(Ok(())).is_err() {
                    return;
                }
                loop {
                    match pubsub.get_message() {
                        Ok(msg) => {
                            if msg.get_channel_name() != thread_channel {
                                continue;
                            }
                            if tx
                                .send(Incoming::Payload(msg.get_payload_bytes().to_vec()))
                                .is_err()
                            {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Incoming::Closed(e.to_string()));
                            return;
                        }
                    }
                }
            })
            .unwrap_or_else(|e| panic!("cannot spawn the subscriber thread: {e}"));
        match ready_rx.recv_timeout(SUBSCRIBE_TIMEOUT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("SUBSCRIBE {channel} on port {} failed: {e}", server.port()),
            Err(_) => panic!(
                "SUBSCRIBE {channel} on port {} not confirmed within {SUBSCRIBE_TIMEOUT:?}",
                server.port()
            ),
        }
        Subscriber {
            rx,
            pending: Mutex::new(VecDeque::new()),
            channel: channel.to_string(),
            port: server.port(),
            client_id,
            url: server.url(),
            thread: Some(thread),
        }
    }

    /// The channel this subscriber listens to.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The next raw message payload, or `None` when none comes within `timeout`.
    ///
    /// # Panics
    /// When the subscription connection was closed, or changes of a message already read
    /// are still waiting to be handed out by [`Subscriber::next_event`].
    pub fn next_payload(&self, timeout: Duration) -> Option<Vec<u8>> {
        let waiting = self.pending_events().len();
        assert_eq!(
            waiting, 0,
            "{waiting} changes of the last message on {} were not read",
            self.channel
        );
        self.receive(timeout)
    }

    fn pending_events(&self) -> std::sync::MutexGuard<'_, VecDeque<InvalidationEvent>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The changes of the next message, decoded, or `None` when none comes within
    /// `timeout`.
    ///
    /// # Panics
    /// As [`Subscriber::next_payload`], and when the message is not valid.
    pub fn next_message(&self, timeout: Duration) -> Option<Vec<InvalidationEvent>> {
        self.next_payload(timeout).map(|bytes| decode(&bytes))
    }

    fn receive(&self, timeout: Duration) -> Option<Vec<u8>> {
        match self.rx.recv_timeout(timeout) {
            Ok(Incoming::Payload(bytes)) => Some(bytes),
            Ok(Incoming::Closed(reason)) => panic!(
                "subscriber on port {} channel {} lost its connection: {reason}",
                self.port, self.channel
            ),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => panic!(
                "subscriber on port {} channel {} has stopped",
                self.port, self.channel
            ),
        }
    }

    /// The next event, decoded with the protocol crate, or `None` when none comes within
    /// `timeout`.
    ///
    /// # Panics
    /// When a message is not a valid event, or the connection was closed.
    pub fn next_event(&self, timeout: Duration) -> Option<InvalidationEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.pending_events().pop_front() {
                return Some(event);
            }
            let bytes = self.receive(deadline.saturating_duration_since(Instant::now()))?;
            self.pending_events().extend(decode(&bytes));
        }
    }

    /// The next event, which must come within [`EVENT_TIMEOUT`].
    ///
    /// # Panics
    /// When none comes in time (the message says what was expected).
    pub fn expect_event(&self, expected: &str) -> InvalidationEvent {
        self.next_event(EVENT_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "no event on {} within {EVENT_TIMEOUT:?}; expected {expected}",
                self.channel
            )
        })
    }

    /// The next `n` events, each within [`EVENT_TIMEOUT`].
    pub fn expect_events(&self, n: usize, expected: &str) -> Vec<InvalidationEvent> {
        (0..n)
            .map(|i| {
                self.next_event(EVENT_TIMEOUT).unwrap_or_else(|| {
                    panic!(
                        "only {i} of {n} events on {} within {EVENT_TIMEOUT:?} each; expected {expected}",
                        self.channel
                    )
                })
            })
            .collect()
    }

    /// Asserts that no message arrives within `within`.
    ///
    /// # Panics
    /// When one does (the message shows it).
    pub fn assert_no_event(&self, within: Duration) {
        if let Some(event) = self.pending_events().pop_front() {
            panic!("unexpected event on {}: {event:?}", self.channel);
        }
        if let Some(bytes) = self.receive(within) {
            panic!(
                "unexpected message on {}: {}",
                self.channel,
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    /// Every event that arrives until none has come for `quiet`, for at most `max` in all.
    pub fn events_until_quiet(&self, quiet: Duration, max: Duration) -> Vec<InvalidationEvent> {
        let deadline = Instant::now() + max;
        let mut events = Vec::new();
        while Instant::now() < deadline {
            match self.next_event(quiet.min(deadline.saturating_duration_since(Instant::now()))) {
                Some(event) => events.push(event),
                None => break,
            }
        }
        events
    }
}

/// The subscriber thread's loop on a shard channel (RESP2: `smessage` arrays, which the
/// client library's pub/sub reader does not parse).
fn read_shard_channel(
    mut con: redis::Connection,
    channel: &str,
    tx: &mpsc::Sender<Incoming>,
    ready_tx: &mpsc::Sender<Result<(), String>>,
) {
    let confirmed: redis::RedisResult<redis::Value> =
        redis::cmd("SSUBSCRIBE").arg(channel).query(&mut con);
    if let Err(e) = confirmed {
        let _ = ready_tx.send(Err(e.to_string()));
        return;
    }
    if ready_tx.send(Ok(())).is_err() {
        return;
    }
    loop {
        match con.recv_response() {
            Ok(redis::Value::Array(items)) => {
                let text = |v: Option<&redis::Value>| match v {
                    Some(redis::Value::BulkString(b)) => Some(b.clone()),
                    _ => None,
                };
                let kind = text(items.first());
                if kind.as_deref() == Some(&b"sunsubscribe"[..]) {
                    let _ = tx.send(Incoming::Closed("unsubscribed by the server".into()));
                    return;
                }
                if kind.as_deref() != Some(&b"smessage"[..])
                    || text(items.get(1)).as_deref() != Some(channel.as_bytes())
                {
                    continue;
                }
                if let Some(payload) = text(items.get(2)) {
                    if tx.send(Incoming::Payload(payload)).is_err() {
                        return;
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(Incoming::Closed(e.to_string()));
                return;
            }
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        // Close the subscription from the server side so the reader thread's blocking read
        // ends; when the server is gone the read has ended already.
        if let Ok(client) = redis::Client::open(self.url.as_str()) {
            if let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(1)) {
                let _ = con.set_read_timeout(Some(Duration::from_secs(1)));
                let _ = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("ID")
                    .arg(self.client_id)
                    .query::<redis::Value>(&mut con);
            }
        }
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

/// Decodes one message with the protocol crate: its changes.
///
/// # Panics
/// When it is not a valid message, or holds no change (the message shows the payload).
pub fn decode(bytes: &[u8]) -> Vec<InvalidationEvent> {
    let events = decode_message(bytes).unwrap_or_else(|e| {
        panic!(
            "message is not a valid invalidation event ({e}): {}",
            String::from_utf8_lossy(bytes)
        )
    });
    assert!(
        !events.is_empty(),
        "a published message holds no change: {}",
        String::from_utf8_lossy(bytes)
    );
    events
}

/// The keys of a `kind: keys` event, as lossy UTF-8 strings, sorted.
///
/// # Panics
/// When the event is of another kind.
pub fn event_keys(event: &InvalidationEvent) -> Vec<String> {
    match &event.change {
        Change::Keys { keys } => sorted_lossy(keys.iter().map(|k| k.as_bytes())),
        other => panic!("expected a kind:keys event, got {other:?} in {event:?}"),
    }
}

/// The tags of a `kind: tags` event, as lossy UTF-8 strings, sorted.
///
/// # Panics
/// When the event is of another kind.
pub fn event_tags(event: &InvalidationEvent) -> Vec<String> {
    match &event.change {
        Change::Tags { tags, .. } => sorted_lossy(tags.iter().map(|t| t.as_bytes())),
        other => panic!("expected a kind:tags event, got {other:?} in {event:?}"),
    }
}

fn sorted_lossy<'a>(names: impl Iterator<Item = &'a [u8]>) -> Vec<String> {
    let mut out: Vec<String> = names
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    out.sort();
    out
}

/// Asserts that `events` all come from one origin and number consecutively.
///
/// # Panics
/// When they do not.
pub fn assert_consecutive(events: &[InvalidationEvent]) {
    for pair in events.windows(2) {
        assert_eq!(
            pair[0].origin, pair[1].origin,
            "events from two origins: {pair:?}"
        );
        assert_eq!(
            pair[1].seq,
            pair[0].seq + 1,
            "seq not consecutive: {pair:?}"
        );
    }
}
