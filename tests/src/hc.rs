//! Typed helpers for the module's commands (names from the protocol crate). Each panics
//! with the command and the server's reply when the reply is not of the expected form;
//! tests of exact replies use [`call`].

use hybridcache_protocol::command;
use redis::{Connection, ToRedisArgs, Value};

/// An error reply as text: `"<CODE> <detail>"`, e.g. `"ERR wrong number of arguments ..."`
/// or `"WRONGTYPE Operation against a key ..."`; other failures as their description.
pub fn error_text(error: &redis::RedisError) -> String {
    match (error.code(), error.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => error.to_string(),
    }
}

/// Runs one command given as its words; an error reply becomes `Err(error_text)`.
///
/// # Panics
/// When the connection fails (as opposed to the server answering with an error).
pub fn call<A: ToRedisArgs>(con: &mut Connection, words: &[A]) -> Result<Value, String> {
    let mut cmd = redis::Cmd::new();
    for word in words {
        cmd.arg(word);
    }
    match cmd.query::<Value>(con) {
        Ok(value) => Ok(value),
        Err(e) if e.code().is_some() => Err(error_text(&e)),
        Err(e) => panic!("connection failed during a command: {e}"),
    }
}

/// Runs `cmd`, which must succeed; returns its reply converted to `T`.
///
/// # Panics
/// When the server answers with an error or another type.
pub fn query<T: redis::FromRedisValue>(con: &mut Connection, cmd: &redis::Cmd) -> T {
    cmd.query(con).unwrap_or_else(|e| {
        panic!(
            "{} failed: {e}",
            String::from_utf8_lossy(&cmd.get_packed_command()).replace("\r\n", " ")
        )
    })
}

/// `HC.SET key value [TAGS tag ...]`, which must answer OK.
pub fn hc_set<K: ToRedisArgs, V: ToRedisArgs>(
    con: &mut Connection,
    key: K,
    value: V,
    tags: &[&str],
) {
    let mut cmd = redis::cmd(command::SET);
    cmd.arg(key).arg(value);
    if !tags.is_empty() {
        cmd.arg(command::option::TAGS).arg(tags);
    }
    let reply: Value = query(con, &cmd);
    assert_eq!(reply, Value::Okay, "HC.SET answered {reply:?}");
}

/// `HC.SET key value <options...> [TAGS tag ...]`, returning the raw reply (OK or nil).
pub fn hc_set_with<K: ToRedisArgs, V: ToRedisArgs>(
    con: &mut Connection,
    key: K,
    value: V,
    options: &[&str],
    tags: &[&str],
) -> Value {
    let mut cmd = redis::cmd(command::SET);
    cmd.arg(key).arg(value).arg(options);
    if !tags.is_empty() {
        cmd.arg(command::option::TAGS).arg(tags);
    }
    query(con, &cmd)
}

/// `HC.GET key`.
pub fn hc_get<K: ToRedisArgs>(con: &mut Connection, key: K) -> Option<Vec<u8>> {
    query(con, redis::cmd(command::GET).arg(key))
}

/// `HC.GET key` as UTF-8 text.
pub fn hc_get_str<K: ToRedisArgs>(con: &mut Connection, key: K) -> Option<String> {
    hc_get(con, key).map(|v| String::from_utf8(v).expect("value is not UTF-8"))
}

/// `HC.DEL key ...`: how many keys were removed.
pub fn hc_del(con: &mut Connection, keys: &[&str]) -> i64 {
    query(con, redis::cmd(command::DEL).arg(keys))
}

/// `HC.DELTAG tag ...`: how many keys were removed.
pub fn hc_deltag(con: &mut Connection, tags: &[&str]) -> i64 {
    query(con, redis::cmd(command::DELTAG).arg(tags))
}

/// `HC.TAGS key`, sorted (lossy UTF-8).
pub fn tags<K: ToRedisArgs>(con: &mut Connection, key: K) -> Vec<String> {
    sorted_strings(query(con, redis::cmd(command::TAGS).arg(key)))
}

/// `HC.TAGKEYS tag`, sorted (lossy UTF-8).
pub fn tagkeys<T: ToRedisArgs>(con: &mut Connection, tag: T) -> Vec<String> {
    sorted_strings(query(con, redis::cmd(command::TAGKEYS).arg(tag)))
}

/// `HC.TAGCARD tag`.
pub fn tagcard<T: ToRedisArgs>(con: &mut Connection, tag: T) -> i64 {
    query(con, redis::cmd(command::TAGCARD).arg(tag))
}

/// `TYPE key`.
pub fn key_type<K: ToRedisArgs>(con: &mut Connection, key: K) -> String {
    query(con, redis::cmd("TYPE").arg(key))
}

/// `EXISTS key`.
pub fn exists<K: ToRedisArgs>(con: &mut Connection, key: K) -> bool {
    query::<i64>(con, redis::cmd("EXISTS").arg(key)) == 1
}

/// `PTTL key`.
pub fn pttl<K: ToRedisArgs>(con: &mut Connection, key: K) -> i64 {
    query(con, redis::cmd("PTTL").arg(key))
}

/// `DBSIZE`.
pub fn dbsize(con: &mut Connection) -> i64 {
    query(con, &redis::cmd("DBSIZE"))
}

/// `SELECT db`.
pub fn select(con: &mut Connection, db: u32) {
    let _: () = query(con, redis::cmd("SELECT").arg(db));
}

/// Every key of the current database (SCAN), sorted.
pub fn all_keys(con: &mut Connection) -> Vec<String> {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) =
            query(con, redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(1000));
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    sorted_strings(keys)
}

/// The current Unix time in milliseconds according to the server (`TIME`).
pub fn server_time_ms(con: &mut Connection) -> i64 {
    let (secs, micros): (i64, i64) = query(con, &redis::cmd("TIME"));
    secs * 1000 + micros / 1000
}

/// Byte strings as sorted lossy UTF-8 strings.
pub fn sorted_strings(items: Vec<Vec<u8>>) -> Vec<String> {
    let mut out: Vec<String> = items
        .into_iter()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect();
    out.sort();
    out
}

/// Waits until the module has physically removed every key that HC.DELTAG logically deleted
/// (`pending_removals` in `INFO hybridcache` is 0). HC commands never see those keys; plain
/// commands (DBSIZE, EXISTS, SCAN) and the key counts do until then.
pub fn wait_removals_done(con: &mut Connection) {
    crate::wait::wait_until(
        crate::server::scaled(std::time::Duration::from_secs(10)),
        "HC.DELTAG's removals to finish",
        || crate::info::info_i64(con, "hybridcache", "hybridcache_pending_removals") == 0,
    );
}

/// Writes 4,000 entries of 1 KB (`key:0..4000`, tags `t` and `group:<i % 3>`) under a
/// `maxmemory` 2 MB above the current use with `allkeys-lru`, so that Redis evicts some;
/// then lifts the limit (any command may evict while memory is over it, SCAN pages included).
/// Returns the keys written, in order.
///
/// # Panics
/// When no key was evicted.
pub fn fill_past_maxmemory(con: &mut Connection) -> Vec<String> {
    let used = crate::info::info_i64(con, "memory", "used_memory");
    let _: () = query(
        con,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(used + 2 * 1024 * 1024)
            .arg("maxmemory-policy")
            .arg("allkeys-lru"),
    );
    let value = vec![b'x'; 1000];
    let mut written = Vec::new();
    for batch in 0..40 {
        let mut pipe = redis::pipe();
        for i in 0..100 {
            let key = format!("key:{}", batch * 100 + i);
            pipe.cmd(command::SET)
                .arg(&key)
                .arg(value.as_slice())
                .arg(command::option::TAGS)
                .arg("t")
                .arg(format!("group:{}", i % 3))
                .ignore();
            written.push(key);
        }
        let _: () = pipe
            .query(con)
            .unwrap_or_else(|e| panic!("HC.SET under maxmemory failed: {e}"));
    }
    let _: () = query(con, redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(0));
    let evicted = crate::info::info_i64(con, "stats", "evicted_keys");
    assert!(
        evicted > 0,
        "no eviction after writing 4000 x 1 KB under a 2 MB limit"
    );
    written
}

/// Whether `HC.FETCH key LEASE` also asks for a lease when the key is there (`LEASE ALWAYS`,
/// as before a refresh), or only when it misses (`LEASE`, as before a fill of a miss).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseOnHit {
    /// `LEASE`: a token on a miss (or a key of another type), nil on a hit.
    NotWanted,
    /// `LEASE ALWAYS`: a token either way.
    Wanted,
}

/// The reply of `HC.FETCH key LEASE [ALWAYS]`: always six fields, the last one the lease
/// token (nil on a hit without `ALWAYS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedRead {
    /// The value, `None` on a miss (or a key of another type).
    pub value: Option<Vec<u8>>,
    /// The entry's tags, sorted (lossy UTF-8); empty on a miss.
    pub tags: Vec<String>,
    /// Remaining time to live in ms; -1 without expiry, -2 on a miss.
    pub pttl: i64,
    /// The server's origin id.
    pub origin: String,
    /// The value's version; 0 on a miss.
    pub version: i64,
    /// The lease token to pass to `HC.SET ... LEASE`; `None` on a hit without `ALWAYS`.
    pub lease: Option<String>,
}

impl LeasedRead {
    /// The lease token.
    ///
    /// # Panics
    /// When the read gave none (a hit without `ALWAYS`).
    pub fn token(&self) -> &str {
        self.lease
            .as_deref()
            .unwrap_or_else(|| panic!("the leased read gave no token: {self:?}"))
    }
}

/// `HC.FETCH key LEASE` (`on_hit` [`LeaseOnHit::NotWanted`]) or `HC.FETCH key LEASE ALWAYS`,
/// parsed; checks that a token came exactly when the contract gives one (on a miss, and on a
/// hit only with `ALWAYS`).
///
/// # Panics
/// When the reply is not a six-array of the documented form.
pub fn fetch_leased<K: ToRedisArgs>(
    con: &mut Connection,
    key: K,
    on_hit: LeaseOnHit,
) -> LeasedRead {
    let mut cmd = redis::cmd(command::FETCH);
    cmd.arg(key).arg(command::option::LEASE);
    if on_hit == LeaseOnHit::Wanted {
        cmd.arg(command::option::ALWAYS);
    }
    let reply: Value = query(con, &cmd);
    let shown = || String::from_utf8_lossy(&cmd.get_packed_command()).replace("\r\n", " ");
    let read =
        parse_leased_read(&reply).unwrap_or_else(|| panic!("{} answered {reply:?}", shown()));
    let token_expected = read.value.is_none() || on_hit == LeaseOnHit::Wanted;
    assert_eq!(
        read.lease.is_some(),
        token_expected,
        "{} answered {reply:?}: a token on a miss, and on a hit only with {}",
        shown(),
        command::option::ALWAYS
    );
    read
}

/// `reply` as the reply of `HC.FETCH key LEASE [ALWAYS]`, or `None` when it does not have
/// that form (the lease may be nil; whether it should be is the caller's to judge).
pub fn parse_leased_read(reply: &Value) -> Option<LeasedRead> {
    let Value::Array(items) = reply else {
        return None;
    };
    let [value, tag_list, pttl, origin, version, lease] = items.as_slice() else {
        return None;
    };
    let value = match value {
        Value::Nil => None,
        Value::BulkString(bytes) => Some(bytes.clone()),
        _ => return None,
    };
    let Value::Array(tag_list) = tag_list else {
        return None;
    };
    let mut names = Vec::new();
    for tag in tag_list {
        let Value::BulkString(bytes) = tag else {
            return None;
        };
        names.push(bytes.clone());
    }
    let (Value::Int(pttl), Value::BulkString(origin), Value::Int(version)) =
        (pttl, origin, version)
    else {
        return None;
    };
    let lease = match lease {
        Value::Nil => None,
        Value::BulkString(lease) => Some(String::from_utf8(lease.clone()).ok()?),
        _ => return None,
    };
    Some(LeasedRead {
        value,
        tags: sorted_strings(names),
        pttl: *pttl,
        origin: String::from_utf8(origin.clone()).ok()?,
        version: *version,
        lease,
    })
}

/// `HC.FETCH key LEASE ALWAYS`: the lease token only, whether or not the key exists.
pub fn fetch_lease<K: ToRedisArgs>(con: &mut Connection, key: K) -> String {
    fetch_leased(con, key, LeaseOnHit::Wanted)
        .token()
        .to_string()
}

/// `HC.SET key value <options...> LEASE token [TAGS tag ...]`: true when the write was
/// accepted (`OK`), false when it was refused (nil).
///
/// # Panics
/// When the server answers anything else (use [`hc_set_with`] with `LEASE` among the
/// options for GETVERSION or NX/XX).
pub fn set_lease<K: ToRedisArgs, V: ToRedisArgs>(
    con: &mut Connection,
    key: K,
    value: V,
    token: &str,
    options: &[&str],
    tags: &[&str],
) -> bool {
    let mut cmd = redis::cmd(command::SET);
    cmd.arg(key)
        .arg(value)
        .arg(options)
        .arg(command::option::LEASE)
        .arg(token);
    if !tags.is_empty() {
        cmd.arg(command::option::TAGS).arg(tags);
    }
    match query::<Value>(con, &cmd) {
        Value::Okay => true,
        Value::Nil => false,
        other => panic!(
            "{} ... {} {token} answered {other:?}",
            command::SET,
            command::option::LEASE
        ),
    }
}

/// The reply of `HC.EVENTS SINCE <origin> <seq> [COUNT n]`: `[status, last, message|nil]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsReply {
    /// `ok`, `too-old` or `other-origin` ([`command::events`]).
    pub status: String,
    /// The number of the last change the server published so far.
    pub last: u64,
    /// The message of the changes asked for (status `ok`), as the server wrote it.
    pub message: Option<Vec<u8>>,
}

impl EventsReply {
    /// The changes of the message, decoded with the protocol crate (empty when it holds
    /// none).
    ///
    /// # Panics
    /// When the status is not `ok` (no message) or the message is not valid.
    pub fn changes(&self) -> Vec<hybridcache_protocol::InvalidationEvent> {
        let message = self
            .message
            .as_deref()
            .unwrap_or_else(|| panic!("HC.EVENTS gave no message: {self:?}"));
        hybridcache_protocol::decode_message(message).unwrap_or_else(|e| {
            panic!(
                "HC.EVENTS message is not valid ({e}): {}",
                String::from_utf8_lossy(message)
            )
        })
    }

    /// Whether the status is `ok`.
    pub fn is_ok(&self) -> bool {
        self.status == command::events::OK
    }
}

/// `reply` as the reply of `HC.EVENTS`, or `None` when it does not have that form (a message
/// exactly when the status is `ok`).
pub fn parse_events_reply(reply: &Value) -> Option<EventsReply> {
    let Value::Array(items) = reply else {
        return None;
    };
    let [Value::BulkString(status), Value::Int(last), message] = items.as_slice() else {
        return None;
    };
    let status = String::from_utf8(status.clone()).ok()?;
    let message = match message {
        Value::Nil => None,
        Value::BulkString(bytes) => Some(bytes.clone()),
        _ => return None,
    };
    if message.is_some() != (status == command::events::OK) {
        return None;
    }
    Some(EventsReply {
        status,
        last: u64::try_from(*last).ok()?,
        message,
    })
}

/// `HC.EVENTS SINCE origin seq [COUNT n]`, parsed.
///
/// # Panics
/// When the server answers with an error or a reply of another form.
pub fn hc_events(con: &mut Connection, origin: &str, seq: u64, count: Option<u64>) -> EventsReply {
    let mut cmd = redis::cmd(command::EVENTS);
    cmd.arg(command::events::SINCE).arg(origin).arg(seq);
    if let Some(n) = count {
        cmd.arg(command::events::COUNT).arg(n);
    }
    let reply: Value = query(con, &cmd);
    parse_events_reply(&reply).unwrap_or_else(|| {
        panic!(
            "{} answered {reply:?}",
            String::from_utf8_lossy(&cmd.get_packed_command()).replace("\r\n", " ")
        )
    })
}
