//! Command names and option keywords of the hybridcache module.
//!
//! | command | reply |
//! |---|---|
//! | `HC.SET key value [EX s \| PX ms \| EXAT unix-s \| PXAT unix-ms \| KEEPTTL] [NX \| XX] [LEASE token] [GETVERSION] [TAGS tag ...]` | `OK`, or nil when NX/XX or the LEASE condition prevented the write; with GETVERSION `[origin, version]` instead of `OK` |
//! | `HC.GET key` | value or nil; `WRONGTYPE` for a key the module does not own |
//! | `HC.MGET key [key ...]` | array of values/nils |
//! | `HC.FETCH key [LEASE [ALWAYS]]` | nil, or `[value, [tag ...], pttl, origin, version]` (pttl -1: no expiry); with LEASE always `[value or nil, [tag ...], pttl, origin, version, lease or nil]` (a lease on a miss; with ALWAYS on a hit too) |
//! | `HC.HELLO` | `["module", name, "version", "x.y.z", "events", format version, "leases", 1, "channel", channel, "origin", origin]` |
//! | `HC.DEL key [key ...]` | number of keys removed |
//! | `HC.DELTAG tag [tag ...]` | number of keys removed |
//! | `HC.DELTAGALL tag [tag ...]` | number of keys removed (those carrying all of the tags) |
//! | `HC.STALE key [key ...]` | number of keys removed (expired on request: event op `stale`) |
//! | `HC.STALETAG tag [tag ...]` | number of keys removed (expired on request: event op `stale`) |
//! | `HC.TAGS key` | the key's tags |
//! | `HC.TAGKEYS tag` | keys carrying the tag |
//! | `HC.TAGCARD tag` | number of keys carrying the tag |
//! | `HC.CHECK` | `["keys", n, "links", n, "pending_removals", n, "problems", [text ...]]`: whether the tag index matches the keyspace (O(N), admin) |

/// `HC.SET key value [EX|PX|EXAT|PXAT|KEEPTTL] [NX|XX] [GETVERSION] [TAGS tag ...]`
pub const SET: &str = "HC.SET";
/// `HC.GET key`
pub const GET: &str = "HC.GET";
/// `HC.MGET key [key ...]`
pub const MGET: &str = "HC.MGET";
/// `HC.FETCH key [LEASE [ALWAYS]]`: everything a client cache needs in one round trip.
///
/// Reply: nil when the key is missing, else an array `[value, [tag ...], pttl, origin,
/// version]`: `pttl` is the remaining time to live in milliseconds (-1 without expiry),
/// `origin` the id of the server (as in events), `version` the `seq` of the event that
/// announced the write of this value (0 for values loaded from an AOF rewrite). An
/// invalidation event with the same origin and a `seq` greater than `version` names a
/// later change. `WRONGTYPE` for a key of another type.
///
/// With [`option::LEASE`] the reply is always an array of six: `[value, [tag ...], pttl,
/// origin, version, lease]`. On a miss (and for a key of another type, which a fill may
/// replace) `value` is nil, the tags empty, `pttl` -2 and `version` 0. `lease` is an opaque
/// token (a bulk string): pass it to `HC.SET ... LEASE <lease>` to write a value computed
/// after this read only if nothing changed the key since (see [`option::LEASE`]). On a hit
/// `lease` is nil, unless [`option::ALWAYS`] follows `LEASE` (a refresh of an entry that
/// is still there): leases are kept for the reads that fills follow, not for every read.
pub const FETCH: &str = "HC.FETCH";
/// `HC.DEL key [key ...]`
pub const DEL: &str = "HC.DEL";
/// `HC.DELTAG tag [tag ...]`
pub const DELTAG: &str = "HC.DELTAG";
/// `HC.DELTAGALL tag [tag ...]`: removes the entries carrying all of the tags (entries with
/// only some of them stay), without blocking like [`DELTAG`]; one tag is exactly `HC.DELTAG`.
/// The event is a tags change with `"match":"all"` and op `deltagall`. A fill whose lease
/// was taken before it and that names any of the tags is refused (conservative).
pub const DELTAGALL: &str = "HC.DELTAGALL";
/// `HC.STALE key [key ...]`: soft expiry. Exactly `HC.DEL` (reply, replication, leases),
/// but the event's op is `stale`: readers may keep their copies as stale ones, for
/// fail-safe only.
pub const STALE: &str = "HC.STALE";
/// `HC.STALETAG tag [tag ...]`: exactly `HC.DELTAG`, but the event's op is `stale`.
pub const STALETAG: &str = "HC.STALETAG";
/// `HC.TAGS key`
pub const TAGS: &str = "HC.TAGS";
/// `HC.TAGKEYS tag`
pub const TAGKEYS: &str = "HC.TAGKEYS";
/// `HC.TAGCARD tag`
pub const TAGCARD: &str = "HC.TAGCARD";

/// `HC.HELLO`: what a client checks at start. Reply: a flat array of field/value pairs:
/// `module` (the module's name), `version` (its crate version), `events` (the event format
/// version, [`crate::FORMAT_VERSION`]), `leases` (the version of the fill-lease contract,
/// [`LEASE_VERSION`]), `channel` (where events are published), `origin` (this server
/// process's id), `sharded` (1 when this server is a cluster node that publishes on shard
/// channels, [`crate::shard`]: subscribe with `SSUBSCRIBE`; 0 otherwise).
pub const HELLO: &str = "HC.HELLO";

/// The version of the fill-lease contract (`HC.FETCH ... LEASE`, `HC.SET ... LEASE`) that
/// `HC.HELLO` reports.
pub const LEASE_VERSION: i64 = 1;

/// `HC.CHECK`: compares the tag index with the keyspace (O(N); for tests and debugging).
pub const CHECK: &str = "HC.CHECK";

/// `HC.EVENTS SINCE <origin> <seq> [COUNT n]`: the changes this server published after
/// change `seq` of `origin`, from its event log (`hybridcache.event-log-changes`/`-bytes`).
/// Reply: a 3-array `[status, last, message]`:
/// - [`events::OK`]: `message` is one event message (format 2, see
///   [`crate::decode_message`]) with the changes after `seq` in order, at most `n`
///   ([`events::DEFAULT_COUNT`] when not given; none when `seq` is the last);
/// - [`events::TOO_OLD`]: the log no longer reaches back to `seq + 1` (or `seq` is ahead of
///   what was published): `message` is nil; the reader must treat everything as changed;
/// - [`events::OTHER_ORIGIN`]: `origin` is not this server process's (it restarted, or it is
///   another server): `message` is nil.
///
/// `last` is the number of the last change this server published so far: a reader that got
/// `n` changes and has not reached `last` asks again from the last one it got.
pub const EVENTS: &str = "HC.EVENTS";

/// Keywords and reply statuses of [`EVENTS`].
pub mod events {
    /// `SINCE <origin> <seq>`.
    pub const SINCE: &str = "SINCE";
    /// `COUNT <n>`: at most `n` changes (1 ..= [`MAX_COUNT`]).
    pub const COUNT: &str = "COUNT";
    /// Changes answered without `COUNT`.
    pub const DEFAULT_COUNT: u64 = 10_000;
    /// The largest `COUNT`.
    pub const MAX_COUNT: u64 = 1_000_000;
    /// The log covers the request.
    pub const OK: &str = "ok";
    /// The log does not reach back that far.
    pub const TOO_OLD: &str = "too-old";
    /// The origin is not this server process's.
    pub const OTHER_ORIGIN: &str = "other-origin";
}

/// Every command the module registers.
pub const ALL: [&str; 15] = [
    SET, GET, MGET, FETCH, DEL, DELTAG, TAGS, TAGKEYS, TAGCARD, CHECK, HELLO, EVENTS, STALE,
    STALETAG, DELTAGALL,
];

/// Option keywords of `HC.SET` (matched case-insensitively by the module).
pub mod option {
    /// Relative expiry in seconds.
    pub const EX: &str = "EX";
    /// Relative expiry in milliseconds.
    pub const PX: &str = "PX";
    /// Absolute expiry, Unix time in seconds.
    pub const EXAT: &str = "EXAT";
    /// Absolute expiry, Unix time in milliseconds (the form writes are replicated in).
    pub const PXAT: &str = "PXAT";
    /// Keep the time to live of the entry being replaced.
    pub const KEEPTTL: &str = "KEEPTTL";
    /// Only write when the key does not exist.
    pub const NX: &str = "NX";
    /// Only write when the key exists.
    pub const XX: &str = "XX";
    /// Reply `[origin, version]` instead of `OK`: the version of the written value, equal
    /// to the `seq` of the `set` event the write publishes (see [`super::FETCH`]).
    pub const GETVERSION: &str = "GETVERSION";
    /// `HC.FETCH key LEASE`: also reply with a fill lease. `HC.SET ... LEASE <token>`: write
    /// only if, since the `HC.FETCH ... LEASE` that gave the token, the key was not changed
    /// in any way (written, deleted, expired, evicted, renamed, moved, copied over, its TTL
    /// changed, touched by any command), no tag named in the write nor carried by the stored
    /// entry was removed by `HC.DELTAG` (or, conservatively, named by an `HC.DELTAGALL`),
    /// the server's history was not reset (flush, swapdb, load, promotion, restart), and
    /// the token comes from this server process. Otherwise
    /// the write is refused: the reply is nil and nothing is written, replicated or
    /// published. A token the server no longer tracks (more leases than
    /// `hybridcache.fill-leases`) is refused too.
    pub const LEASE: &str = "LEASE";
    /// `HC.FETCH key LEASE ALWAYS`: a lease on a hit too (for a refresh).
    pub const ALWAYS: &str = "ALWAYS";
    /// Everything after this keyword is a tag; it comes last.
    pub const TAGS: &str = "TAGS";
}
