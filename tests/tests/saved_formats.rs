//! Files written by an earlier version of the module still load: the RDB and the `DUMP`
//! payloads of `tests/fixtures/format1`, written by the module as of commit c826878 (type
//! `hc-entry0`, saved-entry encoding version 1, Redis 7.0 RDB version 10; see the README
//! there). Every value, tag, TTL and version expected here is written in this file, as the
//! generator wrote it, never read back from a server.

use hybridcache_tests::hc::{
    call, hc_deltag, hc_get, query, select, server_time_ms, wait_removals_done,
};
use hybridcache_tests::index_check::{assert_check_clean, hc_check, ENTRY_TYPE};
use hybridcache_tests::{HcInfo, RedisServer, Shutdown};
use redis::Connection;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// A file of the format-1 fixtures.
fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/format1")
        .join(name)
}

/// An entry of the fixtures, as the generator wrote it.
#[derive(Debug, Clone)]
struct Saved {
    db: u32,
    key: Vec<u8>,
    value: Vec<u8>,
    tags: Vec<Vec<u8>>,
    /// `PEXPIRETIME`, when it has a TTL.
    expire_at: Option<i64>,
    /// The version it was written with (`HC.FETCH`'s fifth field).
    version: u64,
}

fn saved(db: u32, key: &[u8], value: &[u8], tags: &[&[u8]], version: u64) -> Saved {
    Saved {
        db,
        key: key.to_vec(),
        value: value.to_vec(),
        tags: tags.iter().map(|t| t.to_vec()).collect(),
        expire_at: None,
        version,
    }
}

fn long_tag() -> Vec<u8> {
    format!("long-{}", "x".repeat(295)).into_bytes()
}

fn big_value() -> Vec<u8> {
    (0..12_800)
        .map(|i| format!("{i:07},"))
        .collect::<String>()
        .into_bytes()
}

/// `PEXPIRETIME` of `e:ttl` (`HC.SET ... PXAT`) and `e:ttl2` (`PEXPIREAT`): in 2100.
const TTL_AT: i64 = 4_102_444_800_000;
const TTL2_AT: i64 = 4_102_444_800_123;

const BIN_KEY: &[u8] = b"bin\x00\xffkey";

/// The live entries of `dump.rdb` (README.md's table), both databases.
fn format1_entries() -> Vec<Saved> {
    let long = long_tag();
    let big = big_value();
    let mut entries = vec![
        saved(0, b"e:notags", b"no tags", &[], 1),
        saved(0, b"e:onetag", b"one tag", &[b"solo"], 2),
        saved(
            0,
            b"e:three",
            b"three tags",
            &[b"user:1", b"team:7", b"all"],
            3,
        ),
        saved(
            0,
            b"e:ten",
            b"ten tags",
            &[
                b"t0", b"t1", b"t2", b"t3", b"t4", b"t5", b"t6", b"t7", b"t8", b"t9",
            ],
            4,
        ),
        saved(0, b"e:longtag", b"a 300-byte tag", &[long.as_slice()], 5),
        saved(
            0,
            BIN_KEY,
            b"\x00\xff\x00bin\xff",
            &[b"tag\x00zero", b"\xff\xfe", b"all"],
            6,
        ),
        saved(0, b"e:empty", b"", &[b"empty"], 7),
        saved(0, b"e:big", &big, &[b"big"], 8),
        Saved {
            expire_at: Some(TTL_AT),
            ..saved(0, b"e:ttl", b"expires in 2100", &[b"ttl"], 9)
        },
        Saved {
            expire_at: Some(TTL2_AT),
            ..saved(0, b"e:ttl2", b"PEXPIREAT in 2100", &[b"ttl"], 10)
        },
        saved(
            0,
            b"e:shared1",
            b"shared 1",
            &[b"shared:x", b"shared:y"],
            12,
        ),
        saved(
            0,
            b"e:shared2",
            b"shared 2",
            &[b"shared:x", b"shared:y", b"only2"],
            13,
        ),
        saved(3, b"e:notags", b"db3 no tags", &[], 16),
        saved(3, b"e:db3", b"db3 entry", &[b"shared:x", b"db3only"], 17),
    ];
    for entry in &mut entries {
        entry.tags.sort();
    }
    entries
}

/// The entries saved as deleted (after `HC.DELTAG doomed`): `dead:1` (also tagged
/// `shared:x`) and `dead:2`, in db 0.
const DELETED: [&[u8]; 2] = [b"dead:1", b"dead:2"];
const DELETED_TAG: &[u8] = b"doomed";

/// The keys of other types in the fixture RDB, by database.
fn foreign_keys(db: u32) -> Vec<Vec<u8>> {
    match db {
        0 => vec![b"plain:hash".to_vec(), b"plain:string".to_vec()],
        3 => vec![b"plain:db3".to_vec()],
        _ => Vec::new(),
    }
}

/// `(keys, tags, tag_links)` of `INFO hybridcache` once `dump.rdb` is loaded, counted by
/// hand from README.md's table.
const FORMAT1_COUNTS: (i64, i64, i64) = (14, 25, 29);

/// `(keys, tags, tag_links)` that `entries` call for (tags count once per database).
fn counts_of(entries: &[Saved]) -> (i64, i64, i64) {
    let tags: BTreeSet<(u32, &[u8])> = entries
        .iter()
        .flat_map(|e| e.tags.iter().map(move |t| (e.db, t.as_slice())))
        .collect();
    let links: usize = entries.iter().map(|e| e.tags.len()).sum();
    (entries.len() as i64, tags.len() as i64, links as i64)
}

/// Bytes for failure messages.
fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

fn sorted(mut items: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    items.sort();
    items
}

fn raw_tags(con: &mut Connection, key: &[u8]) -> Vec<Vec<u8>> {
    sorted(query(con, redis::cmd("HC.TAGS").arg(key)))
}

fn raw_tagkeys(con: &mut Connection, tag: &[u8]) -> Vec<Vec<u8>> {
    sorted(query(con, redis::cmd("HC.TAGKEYS").arg(tag)))
}

fn tagcard(con: &mut Connection, tag: &[u8]) -> i64 {
    query(con, redis::cmd("HC.TAGCARD").arg(tag))
}

/// `HC.FETCH key`: `(value, tags sorted, pttl, origin, version)`, or `None` on a miss.
type Fetched = (Vec<u8>, Vec<Vec<u8>>, i64, String, u64);

fn fetch(con: &mut Connection, key: &[u8]) -> Option<Fetched> {
    let reply: Option<Fetched> = query(con, redis::cmd("HC.FETCH").arg(key));
    reply.map(|(value, tags, pttl, origin, version)| (value, sorted(tags), pttl, origin, version))
}

/// Every key of the current database, raw bytes, sorted.
fn raw_keys(con: &mut Connection) -> Vec<Vec<u8>> {
    sorted(query(con, redis::cmd("KEYS").arg("*")))
}

/// How the versions of `entries` are expected on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Versions {
    /// As saved: an RDB load keeps them.
    AsSaved,
    /// New ones, distinct: a RESTORE is a write of its own.
    Renumbered,
}

/// Asserts that the server holds exactly `entries` (values, tags, TTLs, versions, the tag
/// index), the foreign keys of the fixture in every database `entries` use when
/// `with_foreign` is set, none of the deleted entries, and matching index counters.
fn assert_holds(con: &mut Connection, entries: &[Saved], versions: Versions, with_foreign: bool) {
    wait_removals_done(con);
    let origin = HcInfo::read(con).origin;
    let dbs: BTreeSet<u32> = entries.iter().map(|e| e.db).collect();
    let mut seen_versions = BTreeSet::new();
    for &db in &dbs {
        select(con, db);
        let in_db: Vec<&Saved> = entries.iter().filter(|e| e.db == db).collect();
        let now = server_time_ms(con);
        for entry in &in_db {
            let key = show(&entry.key);
            let kind: String = query(con, redis::cmd("TYPE").arg(&entry.key));
            assert_eq!(kind, ENTRY_TYPE, "TYPE of {key} in db {db}");
            assert_eq!(
                hc_get(con, entry.key.as_slice()).as_deref(),
                Some(entry.value.as_slice()),
                "HC.GET {key} in db {db}"
            );
            assert_eq!(
                raw_tags(con, &entry.key),
                entry.tags,
                "HC.TAGS {key} in db {db}"
            );
            let Some((value, tags, pttl, fetched_origin, version)) = fetch(con, &entry.key) else {
                panic!("HC.FETCH {key} in db {db}: a miss");
            };
            assert_eq!(value, entry.value, "HC.FETCH {key} value in db {db}");
            assert_eq!(tags, entry.tags, "HC.FETCH {key} tags in db {db}");
            assert_eq!(fetched_origin, origin, "HC.FETCH {key} origin in db {db}");
            match versions {
                Versions::AsSaved => {
                    assert_eq!(version, entry.version, "HC.FETCH {key} version in db {db}")
                }
                Versions::Renumbered => assert!(
                    version > 0 && seen_versions.insert(version),
                    "HC.FETCH {key} version {version} in db {db}: not new"
                ),
            }
            let expire_at: i64 = query(con, redis::cmd("PEXPIRETIME").arg(&entry.key));
            match entry.expire_at {
                None => {
                    assert_eq!(expire_at, -1, "PEXPIRETIME {key} in db {db}");
                    assert_eq!(pttl, -1, "HC.FETCH {key} pttl in db {db}");
                }
                Some(at) => {
                    assert_eq!(expire_at, at, "PEXPIRETIME {key} in db {db}");
                    assert!(
                        pttl > 0 && pttl <= at - now && pttl > at - now - 600_000,
                        "HC.FETCH {key} pttl {pttl} in db {db}, expected about {}",
                        at - now
                    );
                }
            }
        }
        // HC.MGET of every entry, a deleted one and a missing one.
        let mut mget = redis::cmd("HC.MGET");
        for entry in &in_db {
            mget.arg(&entry.key);
        }
        mget.arg(DELETED[0]).arg("missing");
        let values: Vec<Option<Vec<u8>>> = query(con, &mget);
        let mut expected: Vec<Option<Vec<u8>>> =
            in_db.iter().map(|e| Some(e.value.clone())).collect();
        expected.extend([None, None]);
        assert_eq!(values, expected, "HC.MGET in db {db}");

        // The tag index, tag by tag.
        let mut by_tag: BTreeMap<&[u8], Vec<Vec<u8>>> = BTreeMap::new();
        for entry in &in_db {
            for tag in &entry.tags {
                by_tag.entry(tag).or_default().push(entry.key.clone());
            }
        }
        for (tag, keys) in by_tag {
            let keys = sorted(keys);
            assert_eq!(
                raw_tagkeys(con, tag),
                keys,
                "HC.TAGKEYS {} in db {db}",
                show(tag)
            );
            assert_eq!(
                tagcard(con, tag),
                keys.len() as i64,
                "HC.TAGCARD {} in db {db}",
                show(tag)
            );
        }
        assert_eq!(tagcard(con, DELETED_TAG), 0, "HC.TAGCARD doomed in db {db}");

        // Nothing else in the keyspace; the deleted entries are gone.
        for key in DELETED {
            assert_eq!(hc_get(con, key), None, "HC.GET {} in db {db}", show(key));
            assert_eq!(fetch(con, key), None, "HC.FETCH {} in db {db}", show(key));
        }
        let mut expected_keys: Vec<Vec<u8>> = in_db.iter().map(|e| e.key.clone()).collect();
        if with_foreign {
            expected_keys.extend(foreign_keys(db));
        }
        assert_eq!(
            raw_keys(con),
            sorted(expected_keys),
            "the keys of db {db} (KEYS *)"
        );
    }
    if with_foreign {
        assert_foreign_keys(con);
    }
    select(con, 0);
    let expected = counts_of(entries);
    assert_eq!(
        HcInfo::read(con).counts(),
        expected,
        "INFO hybridcache (keys, tags, tag_links)"
    );
    let report = hc_check(con);
    assert_eq!(
        (report.keys, report.links, report.pending_removals),
        (expected.0, expected.2, 0),
        "HC.CHECK {report:?}"
    );
    assert_check_clean(con);
}

/// The keys of other types the fixture RDB holds next to the entries.
fn assert_foreign_keys(con: &mut Connection) {
    select(con, 0);
    let kind: String = query(con, redis::cmd("TYPE").arg("plain:string"));
    assert_eq!(kind, "string");
    let value: String = query(con, redis::cmd("GET").arg("plain:string"));
    assert_eq!(value, "hello");
    let hash: BTreeMap<String, String> = query(con, redis::cmd("HGETALL").arg("plain:hash"));
    assert_eq!(
        hash,
        BTreeMap::from([
            ("f1".to_string(), "v1".to_string()),
            ("f2".to_string(), "v2".to_string())
        ])
    );
    select(con, 3);
    let value: String = query(con, redis::cmd("GET").arg("plain:db3"));
    assert_eq!(value, "db3 string");
    select(con, 0);
}

/// A server started on a copy of the fixture RDB (its data directory's `dump.rdb`).
fn server_on_format1_rdb() -> RedisServer {
    let mut server = RedisServer::new();
    server.shutdown(Shutdown::NoSave);
    let target = server.dir().join("dump.rdb");
    std::fs::copy(fixture("dump.rdb"), &target)
        .unwrap_or_else(|e| panic!("cannot copy the fixture RDB to {}: {e}", target.display()));
    server.start_again();
    let keys: i64 = query(&mut server.connection(), &redis::cmd("DBSIZE"));
    assert!(
        keys > 0,
        "the server did not load the fixture RDB\n{}",
        server.log_tail()
    );
    server
}

#[test]
fn the_model_of_the_fixture_counts_what_the_generator_reported() {
    assert_eq!(counts_of(&format1_entries()), FORMAT1_COUNTS);
    assert_eq!(long_tag().len(), 300);
    assert_eq!(big_value().len(), 102_400);
}

/// 64-bit FNV-1a: enough to notice a fixture rewritten by mistake.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[test]
fn the_format1_fixtures_are_the_files_written_by_c826878() {
    for (name, len, hash) in [
        ("dump.rdb", 37_786, 0x0972_cdc3_6531_3c82),
        ("dumps.txt", 1_157, 0xf3b4_7e4f_36b7_0356),
    ] {
        let bytes = std::fs::read(fixture(name))
            .unwrap_or_else(|e| panic!("cannot read fixture {name}: {e}"));
        assert_eq!(
            (bytes.len(), fnv1a(&bytes)),
            (len, hash),
            "tests/fixtures/format1/{name} changed: these files pin the format of c826878 and \
             must never be regenerated with a newer module (see their README.md)"
        );
    }
    let rdb = std::fs::read(fixture("dump.rdb")).unwrap_or_default();
    assert!(rdb.starts_with(b"REDIS0010"), "RDB version 10 header");
}

#[test]
fn every_entry_of_a_format1_rdb_loads_with_its_value_tags_ttl_and_version() {
    let server = server_on_format1_rdb();
    let mut con = server.connection();
    assert_holds(&mut con, &format1_entries(), Versions::AsSaved, true);
    assert_eq!(HcInfo::read(&mut con).counts(), FORMAT1_COUNTS);
}

#[test]
fn entries_saved_as_deleted_in_a_format1_rdb_stay_deleted_and_are_removed() {
    let rdb = std::fs::read(fixture("dump.rdb")).unwrap_or_default();
    for value in [b"deleted 1".as_slice(), b"deleted 2"] {
        assert!(
            rdb.windows(value.len()).any(|w| w == value),
            "the fixture RDB does not hold the deleted entry {}",
            show(value)
        );
    }
    let server = server_on_format1_rdb();
    let mut con = server.connection();
    for key in DELETED {
        assert_eq!(hc_get(&mut con, key), None, "HC.GET {}", show(key));
    }
    assert_eq!(raw_tagkeys(&mut con, DELETED_TAG), Vec::<Vec<u8>>::new());
    assert_eq!(
        raw_tagkeys(&mut con, b"shared:x"),
        [b"e:shared1".to_vec(), b"e:shared2".to_vec()]
    );
    wait_removals_done(&mut con);
    for key in DELETED {
        let exists: i64 = query(&mut con, redis::cmd("EXISTS").arg(key));
        assert_eq!(exists, 0, "EXISTS {}", show(key));
    }
    let dbsize: i64 = query(&mut con, &redis::cmd("DBSIZE"));
    assert_eq!(dbsize, 14, "db 0: 12 entries and 2 keys of other types");
    assert_check_clean(&mut con);
}

#[test]
fn deltag_after_loading_a_format1_rdb_removes_the_tagged_keys_and_no_other() {
    let server = server_on_format1_rdb();
    let mut con = server.connection();
    let removed: [&[u8]; 5] = [b"e:shared1", b"e:shared2", BIN_KEY, b"e:ttl", b"e:ttl2"];
    let mut deltag = redis::cmd("HC.DELTAG");
    deltag
        .arg("shared:x")
        .arg(b"\xff\xfe".as_slice())
        .arg("ttl");
    let count: i64 = query(&mut con, &deltag);
    assert_eq!(count, 5, "HC.DELTAG shared:x \\xff\\xfe ttl in db 0");
    for key in removed {
        assert_eq!(hc_get(&mut con, key), None, "HC.GET {}", show(key));
    }
    // Db 3's entry tagged shared:x stays (the tag index is per database).
    let rest: Vec<Saved> = format1_entries()
        .into_iter()
        .filter(|e| !(e.db == 0 && removed.contains(&e.key.as_slice())))
        .collect();
    assert_eq!(rest.len(), 9);
    assert_holds(&mut con, &rest, Versions::AsSaved, true);
    for key in removed {
        let exists: i64 = query(&mut con, redis::cmd("EXISTS").arg(key));
        assert_eq!(exists, 0, "EXISTS {}", show(key));
    }
    // A write after the load is numbered after every loaded version, and the tag works.
    let (_, version): (String, u64) = query(
        &mut con,
        redis::cmd("HC.SET")
            .arg("e:new")
            .arg("new")
            .arg("GETVERSION")
            .arg("TAGS")
            .arg("shared:x"),
    );
    assert!(version > 17, "version {version} of a write after the load");
    assert_eq!(hc_get(&mut con, "e:new"), Some(b"new".to_vec()));
    assert_eq!(raw_tagkeys(&mut con, b"shared:x"), [b"e:new".to_vec()]);
    assert_eq!(hc_deltag(&mut con, &["all"]), 1, "HC.DELTAG all: e:three");
    assert_check_clean(&mut con);
}

#[test]
fn debug_reload_after_loading_a_format1_rdb_keeps_everything() {
    let server = server_on_format1_rdb();
    let mut con = server.connection();
    wait_removals_done(&mut con);
    let _: () = query(&mut con, redis::cmd("DEBUG").arg("RELOAD"));
    assert_holds(&mut con, &format1_entries(), Versions::AsSaved, true);
}

#[test]
fn save_and_restart_after_loading_a_format1_rdb_keeps_everything() {
    let mut server = server_on_format1_rdb();
    let mut con = server.connection();
    wait_removals_done(&mut con);
    let _: () = query(&mut con, &redis::cmd("SAVE"));
    drop(con);
    let written = std::fs::read(server.dir().join("dump.rdb")).unwrap_or_default();
    let fixture_rdb = std::fs::read(fixture("dump.rdb")).unwrap_or_default();
    assert_ne!(written, fixture_rdb, "SAVE did not write a new RDB");
    server.kill();
    server.start_again();
    let mut con = server.connection();
    assert_holds(&mut con, &format1_entries(), Versions::AsSaved, true);
}

/// The lines of `dumps.txt`: `(key, payload)`.
fn format1_dumps() -> Vec<(Vec<u8>, Vec<u8>)> {
    let text = std::fs::read_to_string(fixture("dumps.txt"))
        .unwrap_or_else(|e| panic!("cannot read dumps.txt: {e}"));
    let hex = |word: &str| -> Vec<u8> {
        assert!(
            word.len().is_multiple_of(2),
            "odd hex length in dumps.txt: {word}"
        );
        (0..word.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(&word[i..i + 2], 16)
                    .unwrap_or_else(|e| panic!("bad hex in dumps.txt: {e}"))
            })
            .collect()
    };
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(words.len(), 2, "dumps.txt line {line:?}");
            (hex(words[0]), hex(words[1]))
        })
        .collect()
}

#[test]
fn restore_of_format1_dump_payloads_gives_the_entries_back_with_their_tags() {
    let dumps = format1_dumps();
    let live: [&[u8]; 7] = [
        b"e:notags",
        b"e:onetag",
        b"e:three",
        b"e:ten",
        b"e:longtag",
        BIN_KEY,
        b"e:empty",
    ];
    let keys: Vec<&[u8]> = dumps.iter().map(|(k, _)| k.as_slice()).collect();
    let mut expected_keys = live.to_vec();
    expected_keys.push(DELETED[0]);
    assert_eq!(keys, expected_keys, "the keys of dumps.txt");

    let server = RedisServer::new();
    let mut con = server.connection();
    for (key, payload) in &dumps {
        let reply = call(
            &mut con,
            &[
                b"RESTORE".as_slice(),
                key.as_slice(),
                b"0",
                payload.as_slice(),
            ],
        );
        assert_eq!(reply, Ok(redis::Value::Okay), "RESTORE {}", show(key));
    }
    // dead:1 was dumped after HC.DELTAG doomed: it restores as deleted.
    assert_eq!(hc_get(&mut con, DELETED[0]), None);
    let expected: Vec<Saved> = format1_entries()
        .into_iter()
        .filter(|e| e.db == 0 && live.contains(&e.key.as_slice()))
        .collect();
    assert_eq!(expected.len(), live.len());
    assert_holds(&mut con, &expected, Versions::Renumbered, false);
    // Restored tags work like written ones.
    assert_eq!(hc_deltag(&mut con, &["all"]), 2, "HC.DELTAG all");
    for key in [b"e:three".as_slice(), BIN_KEY] {
        assert_eq!(hc_get(&mut con, key), None, "HC.GET {}", show(key));
    }
    assert_check_clean(&mut con);
}
