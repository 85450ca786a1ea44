//! A randomized command fuzzer against a live server with the module: malformed and random
//! HC commands, and the plain Redis commands that reach module keys, never crash the server,
//! never break the tag index, and never garble a reply.
//!
//! For `HC_FUZZ_SECS` seconds (default 20) one thread sends, over raw RESP connections (so
//! that any byte string can be an argument and every reply byte is seen as sent):
//!
//! - HC commands of random arity with random, empty, binary, NUL-bearing, non-UTF-8, long
//!   and huge (up to 1 MB) arguments; invalid numbers (`EX -1`, `PX 0`, `EX 9999999999999999`,
//!   overflow, `+5`, `1.5`, ...); option keywords in random case, order and repetition;
//!   `TAGS` with hundreds of tags and duplicates;
//! - plain commands on the same keys: `SET`/`LPUSH`/`HSET` (so HC commands meet `WRONGTYPE`),
//!   `DEL`, `UNLINK`, `RENAME`, `EXPIRE`, `PEXPIRE`, `PERSIST`, `COPY`, `MOVE`, `DUMP`,
//!   `RESTORE` of valid and corrupted payloads (checksums skipped, so corrupt bodies reach the
//!   module's loader), `OBJECT`, `TYPE`, `SCAN`, `MEMORY USAGE`, `DEBUG DIGEST-VALUE`; rarely
//!   `SELECT`, `SWAPDB`, `FLUSHDB [ASYNC]` and `DEBUG RELOAD`;
//! - bulk invalidations: up to 3,000 tagged entries written and `HC.DELTAG`ed (or
//!   `HC.STALETAG`ed, the soft form, or `HC.DELTAGALL`ed with one of their other tags) in one
//!   pipeline followed by random commands (and sometimes `SWAPDB`, `FLUSHDB`, `DEBUG RELOAD`)
//!   that reach the keys while their removal is still pending; the count must be exact;
//! - single commands, pipelines and `MULTI`/`EXEC`/`DISCARD` blocks, on two connections: an
//!   admin one and one of a user restricted to some key patterns (so `NOPERM` paths run);
//! - fill leases: `HC.FETCH key LEASE` and `HC.FETCH key LEASE ALWAYS` (and misspelled,
//!   reordered or extra options), `HC.SET ... LEASE <token>`
//!   with tokens the server gave (fresh, stale, for another key or database), tokens of
//!   another origin, forged positions and garbage, `LEASE` without a token or twice;
//!   `HC.HELLO` with and without extra arguments.
//!
//! Asserted throughout: the process stays alive and every connection keeps answering; every
//! reply is well-formed RESP, and every error reply starts with an uppercase error code
//! (`ERR`, `WRONGTYPE`, `NOPERM`, `EXECABORT`, `BUSYKEY`, ...) and holds no control
//! character (replies of the module's commands: printable ASCII only); `MULTI` blocks answer
//! as Redis specifies; `HC.FETCH ... LEASE [ALWAYS]` answers six well-formed fields (a miss is
//! `[nil, [], -2, origin, 0, token]`; a hit ends in a token with `ALWAYS`, in nil without),
//! any other word after the key is a syntax error and one word too many an arity error;
//! `HC.HELLO` names this server's origin. Every ~2 s and at the end, `HC.CHECK` reports no
//! problem.
//!
//! A shadow model runs alongside on its own connection in database 0: well-formed `HC.SET`
//! (no expiry; NX/XX/GETVERSION sometimes), `HC.DEL` and `HC.DELTAG` (or their soft forms
//! `HC.STALE` and `HC.STALETAG`, which must behave the same), `HC.DELTAGALL` (the entries
//! carrying all of the tags; a fill naming any of them refused) over keys `model:*` and
//! tags `mtag:*`, which the random part never generates (it never flushes or swaps database
//! 0 either), plus `HC.FETCH ... LEASE [ALWAYS]`, fills `HC.SET ... LEASE <token>`, and raw
//! `DEL`/`UNLINK` of model keys (alone, in `MULTI`/`EXEC`, from a Lua script, or in another
//! database). Each model reply is checked against the model (OK or nil, exact counts, the
//! entry read, a token exactly when one is due), and at every check
//! `HC.GET`/`HC.TAGS`/`HC.TAGKEYS`/`HC.TAGCARD` must agree with it.
//!
//! The model decides each fill exactly ([`LeaseModel`](lease_model::LeaseModel)): a token
//! is a position in the server's history, and a fill with it is accepted iff a read of the
//! key issued a lease (a miss with `LEASE`, or any read with `LEASE ALWAYS`; a hit without
//! `ALWAYS` issues none) at or before that position and the key has not changed since (any
//! model write or delete of it, an accepted fill included, `HC.SET` refused by NX/XX,
//! `HC.DEL` and raw `DEL`/`UNLINK` of it even when missing, and a raw `DEL`/`UNLINK` of the
//! same name in another database, which the module cannot tell apart), no tag named by the
//! fill or carried by the stored entry was removed after it, and the random part did not
//! reset the history after it (a successful `SWAPDB`, `FLUSHDB` or `DEBUG RELOAD` in any
//! database); tokens of another origin and garbage are always refused. A fill that NX/XX
//! blocks is nil whatever its token and is not counted as a fill. The one thing it cannot
//! know is when the background removal deletes an entry `HC.DELTAG` removed (that delete is
//! a change to the key): a lease taken on such a key before `HC.CHECK` reports no pending
//! removal may be refused or not, and then the model only checks that a refused fill wrote
//! nothing and an accepted one is read back. The lease table's bounds are raised out of
//! reach so that nothing is refused for being untracked.
//!
//! Every invalidation message of the run is checked as it arrives (`events`, with the
//! harness's [`StreamChecker`](hybridcache_tests::event_stream::StreamChecker)): it decodes,
//! and the changes are numbered 1, 2, 3, ... without gap, duplicate or reordering, inside
//! and across messages; the one jump allowed is onto the `loaded` flush that ends a dataset
//! load. At every check the changes received since the last check must be exactly those the
//! event log holds (`HC.EVENTS SINCE`, its bounds raised for the run), and every change the
//! model made (a `set` per accepted write or fill, a `del` naming the keys `HC.DEL` removed,
//! a `deltag` naming the tags of an `HC.DELTAG` that removed keys, a `deltagall` naming the
//! tags of an `HC.DELTAGALL` that removed keys, a `stale` instead of
//! either for `HC.STALE`/`HC.STALETAG`, a `removed` per live key a
//! raw `DEL`/`UNLINK` deleted) must have been announced exactly once, in the model's order,
//! with no other change naming a model key or tag.
//!
//! For finding what broke: `HC_FUZZ_MONITOR=<file>` writes every command the server runs
//! (`MONITOR`: time, database, client, arguments) to that file, and `HC_FUZZ_CHECK_MS=<ms>`
//! checks more often than every 2 s.
//!
//! The seed (time-based unless `HC_FUZZ_SEED=<u64>` gives it) is printed at the start and
//! quoted in every failure; the command sequence is a function of the seed, except that
//! payloads kept from `DUMP` replies depend on the server's answers. The end prints the
//! number of commands sent, commands/s, and the error replies seen (`--nocapture`).
//!
//! The connections are the harness's raw RESP client ([`hybridcache_tests::resp`]). Here,
//! `generator` (with `hc_commands` and `plain_commands`) makes the commands, `random_steps`
//! sends them, `reply_checks` judges replies; `model`, `lease_model`, `model_steps` and
//! `model_raw_delete` are the shadow model; `checkpoint` is the periodic check (with
//! `events`, the event-stream check), and `fuzzer` holds the state and starts the server.

mod checkpoint;
mod events;
mod fuzzer;
mod generator;
mod hc_commands;
mod lease_model;
mod model;
mod model_raw_delete;
mod model_steps;
mod plain_commands;
mod random_steps;
mod reply_checks;

use fuzzer::start_fuzz;
use hybridcache_tests::client_support::{env_u64, seed_from_env};
use hybridcache_tests::resp::{words, Reply};
use std::time::{Duration, Instant};

/// Default run time, seconds (`HC_FUZZ_SECS`).
const DEFAULT_SECS: u64 = 20;

/// How often `HC.CHECK` and the model comparison run.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Databases the random part uses (0..DBS); the model lives in database 0.
const DBS: u64 = 4;

#[test]
fn random_commands_never_crash_the_server_garble_a_reply_or_break_the_index() {
    let seed = seed_from_env("HC_FUZZ_SEED");
    let secs = env_u64("HC_FUZZ_SECS", DEFAULT_SECS);
    eprintln!("command_fuzz: HC_FUZZ_SEED={seed} HC_FUZZ_SECS={secs}");
    let mut fuzz = start_fuzz(seed);
    let run_time = Duration::from_secs(secs);
    let started = Instant::now();
    // HC_FUZZ_CHECK_MS checks more often, to narrow down where a fault starts.
    let check_every =
        Duration::from_millis(env_u64("HC_FUZZ_CHECK_MS", CHECK_EVERY.as_millis() as u64));
    let mut next_check = started + check_every;
    while started.elapsed() < run_time {
        let conn = if fuzz.gen.one_in(4) { 1 } else { 0 };
        match fuzz.gen.below(1000) {
            0..=699 => fuzz.single(conn),
            700..=799 => fuzz.pipeline(conn),
            800..=849 => fuzz.transaction(conn),
            850..=979 => fuzz.model_step(),
            980..=998 => fuzz.control(conn),
            _ if fuzz.gen.one_in(3) => fuzz.bulk(),
            _ => fuzz.single(conn),
        }
        if Instant::now() >= next_check {
            fuzz.checkpoint("during the run");
            next_check = Instant::now() + check_every;
        }
    }
    let elapsed = started.elapsed();

    // Every connection still answers, and the index is consistent now and once the
    // background removals of HC.DELTAG are done.
    for i in 0..fuzz.conns.len() {
        let reply = fuzz.conns[i].resp.call(&words(&["PING"]));
        if reply != Ok(Reply::Status(b"PONG".to_vec())) {
            let name = fuzz.conns[i].name;
            fuzz.fail(&format!("PING on the {name} connection answered {reply:?}"));
        }
    }
    fuzz.checkpoint("at the end");
    let deadline = Instant::now() + Duration::from_secs(30);
    while fuzz.checkpoint("while removals finish") > 0 {
        if Instant::now() >= deadline {
            fuzz.fail("pending removals did not reach 0 within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(fuzz.server.is_running());
    assert!(
        fuzz.model.ops > 100 && !fuzz.model.entries.is_empty(),
        "the model part hardly ran: {} ops",
        fuzz.model.ops
    );
    let leases = &fuzz.model.leases;
    if fuzz.model.ops > 1000 {
        assert!(
            leases.accepted > 0 && leases.refused > 0,
            "the model's fills were never both accepted and refused: {} accepted, {} refused",
            leases.accepted,
            leases.refused
        );
        assert!(
            leases.hits_without_token > 0 && leases.blocked > 0 && leases.raw_deletes_elsewhere > 0,
            "the model never read a hit without a token ({}), had a fill blocked by NX/XX ({}) \
             or deleted in another database ({})",
            leases.hits_without_token,
            leases.blocked,
            leases.raw_deletes_elsewhere
        );
        assert!(
            fuzz.stats.fetch_errors > 0,
            "no malformed HC.FETCH was refused"
        );
    }

    let s = &fuzz.stats;
    let codes: Vec<String> = s.codes.iter().map(|(c, n)| format!("{c}:{n}")).collect();
    eprintln!(
        "command_fuzz: seed {seed}: {} commands in {:.1} s ({:.0}/s); {} error replies ({}); {} pipelines, {} MULTI blocks, {} bulk invalidations, {} RESTOREs accepted, {} model ops ({} model keys at the end; fills {} accepted, {} refused, {} either way, {} blocked by NX/XX; {} leased hits without a token; {} raw deletions, {} in another database), {} leased hits without a token and {} malformed HC.FETCH refused in the random part, {} checks",
        s.commands,
        elapsed.as_secs_f64(),
        s.commands as f64 / elapsed.as_secs_f64(),
        s.error_replies,
        codes.join(" "),
        s.pipelines,
        s.transactions,
        s.bulks,
        s.restores_ok,
        fuzz.model.ops,
        fuzz.model.entries.len(),
        leases.accepted,
        leases.refused,
        leases.either,
        leases.blocked,
        leases.hits_without_token,
        leases.raw_deletes,
        leases.raw_deletes_elsewhere,
        s.leased_hits_without_token,
        s.fetch_errors,
        s.checks
    );
    let origin = String::from_utf8_lossy(&fuzz.gen.origin).into_owned();
    let ops: Vec<String> = fuzz.events.with_streams(|streams| {
        streams
            .sources_of(&origin)
            .first()
            .map(|source| streams.op_tally(source, &origin))
            .unwrap_or_default()
            .iter()
            .map(|(op, tally)| format!("{op}:{}", tally.changes))
            .collect()
    });
    eprintln!(
        "command_fuzz: events: {} ({}); {} changes compared with the event log, {} changes of the model found announced once, in order",
        fuzz.events.summary(),
        ops.join(" "),
        s.changes_compared,
        s.model_changes_checked
    );
    let mut messages: Vec<(&String, &u64)> = s.messages.iter().collect();
    messages.sort_by(|a, b| b.1.cmp(a.1));
    for (text, n) in messages.iter().take(25) {
        eprintln!("  {n:>7}  {text}");
    }
}
