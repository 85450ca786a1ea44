//! Command docs and ACL categories: `COMMAND DOCS` lists each HC command's arguments on
//! every server (Redis 7.0 included), and where the server lets modules set ACL categories
//! (Redis 7.2+, Valkey) the commands are in the categories their flags imply, `@keyspace`
//! for the deletes, and the module's own `@hybridcache` (Redis 7.4+, Valkey). On Redis 7.0
//! they are in none, and `@hybridcache` does not exist.

use hybridcache_protocol::command;
use hybridcache_tests::hc::{call, query};
use hybridcache_tests::RedisServer;
use redis::Value;

/// The text of a simple or bulk string reply.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// The field/value pairs of a map reply (RESP3) or a flat array of pairs (RESP2).
fn pairs(value: &Value) -> Vec<(String, Value)> {
    match value {
        Value::Map(entries) => entries
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, v.clone())))
            .collect(),
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|pair| match pair {
                [k, v] => Some((text(k)?, v.clone())),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn field<'a>(fields: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) | Value::Set(items) => items.iter().filter_map(text).collect(),
        _ => Vec::new(),
    }
}

/// One argument as `COMMAND DOCS` describes it.
#[derive(Debug)]
struct DocArg {
    name: String,
    kind: String,
    token: Option<String>,
    key_spec_index: Option<i64>,
    flags: Vec<String>,
    args: Vec<DocArg>,
}

impl DocArg {
    fn parse(value: &Value) -> DocArg {
        let fields = pairs(value);
        let get = |name: &str| field(&fields, name).and_then(text);
        DocArg {
            name: get("name").unwrap_or_default(),
            kind: get("type").unwrap_or_default(),
            token: get("token"),
            key_spec_index: match field(&fields, "key_spec_index") {
                Some(Value::Int(i)) => Some(*i),
                _ => None,
            },
            flags: field(&fields, "flags").map(strings).unwrap_or_default(),
            args: parse_args(field(&fields, "arguments")),
        }
    }

    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// The argument as a syntax line writes it: `[TAGS tag [tag ...]]`, `NX|XX`.
    fn syntax(&self) -> String {
        let mut out = match self.kind.as_str() {
            "pure-token" => self.token.clone().unwrap_or_default(),
            "oneof" => self
                .args
                .iter()
                .map(DocArg::syntax)
                .collect::<Vec<_>>()
                .join("|"),
            "block" => {
                let inner = syntax(&self.args);
                match &self.token {
                    Some(token) => format!("{token} {inner}"),
                    None => inner,
                }
            }
            _ => {
                let value = if self.has("multiple") {
                    format!("{0} [{0} ...]", self.name)
                } else {
                    self.name.clone()
                };
                match &self.token {
                    Some(token) => format!("{token} {value}"),
                    None => value,
                }
            }
        };
        if self.has("optional") {
            out = format!("[{out}]");
        }
        out
    }
}

fn parse_args(value: Option<&Value>) -> Vec<DocArg> {
    match value {
        Some(Value::Array(items)) => items.iter().map(DocArg::parse).collect(),
        _ => Vec::new(),
    }
}

fn syntax(args: &[DocArg]) -> String {
    args.iter()
        .map(DocArg::syntax)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `COMMAND DOCS name`: the command's fields, empty when the server has no docs for it.
fn docs(con: &mut redis::Connection, name: &str) -> Vec<(String, Value)> {
    let reply: Value = query(con, redis::cmd("COMMAND").arg("DOCS").arg(name));
    pairs(&reply)
        .into_iter()
        .find(|(command, _)| command.eq_ignore_ascii_case(name))
        .map(|(_, fields)| pairs(&fields))
        .unwrap_or_default()
}

/// Every command's syntax as the README writes it (placeholders named as in the docs).
const SYNTAX: [(&str, &str); 15] = [
    (
        command::SET,
        "key value [EX seconds|PX milliseconds|EXAT unix-time-seconds|PXAT unix-time-milliseconds|KEEPTTL] [NX|XX] [LEASE token] [GETVERSION] [TAGS tag [tag ...]]",
    ),
    (command::GET, "key"),
    (command::MGET, "key [key ...]"),
    (command::FETCH, "key [LEASE [ALWAYS]]"),
    (command::DEL, "key [key ...]"),
    (command::DELTAG, "tag [tag ...]"),
    (command::TAGS, "key"),
    (command::TAGKEYS, "tag"),
    (command::TAGCARD, "tag"),
    (command::CHECK, ""),
    (command::HELLO, ""),
    (command::EVENTS, "SINCE origin seq [COUNT count]"),
    (command::STALE, "key [key ...]"),
    (command::STALETAG, "tag [tag ...]"),
    (command::DELTAGALL, "tag [tag ...]"),
];

#[test]
fn command_docs_give_every_command_its_summary_and_arguments() {
    let server = RedisServer::new();
    let mut con = server.connection();
    assert_eq!(SYNTAX.len(), command::ALL.len());
    for (name, expected) in SYNTAX {
        let fields = docs(&mut con, name);
        assert!(!fields.is_empty(), "{name}: no COMMAND DOCS entry");
        let summary = field(&fields, "summary").and_then(text).unwrap_or_default();
        assert!(!summary.is_empty(), "{name}: no summary");
        assert_eq!(
            field(&fields, "module").and_then(text).as_deref(),
            Some(hybridcache_protocol::MODULE_NAME),
            "{name}"
        );
        let args = parse_args(field(&fields, "arguments"));
        assert_eq!(syntax(&args), expected, "{name}");
    }
}

#[test]
fn hc_set_documents_the_types_of_its_options() {
    let server = RedisServer::new();
    let mut con = server.connection();
    let args = parse_args(field(&docs(&mut con, command::SET), "arguments"));
    let [key, value, expiration, condition, lease, getversion, tags] = args.as_slice() else {
        panic!("HC.SET has 7 arguments: {args:?}");
    };
    assert_eq!((key.kind.as_str(), key.key_spec_index), ("key", Some(0)));
    assert!(!key.has("optional") && !value.has("optional"));
    assert_eq!(value.kind, "string");
    assert_eq!(
        (expiration.kind.as_str(), expiration.has("optional")),
        ("oneof", true)
    );
    let choices: Vec<(&str, Option<&str>)> = expiration
        .args
        .iter()
        .map(|a| (a.kind.as_str(), a.token.as_deref()))
        .collect();
    assert_eq!(
        choices,
        [
            ("integer", Some("EX")),
            ("integer", Some("PX")),
            ("unix-time", Some("EXAT")),
            ("unix-time", Some("PXAT")),
            ("pure-token", Some("KEEPTTL")),
        ]
    );
    assert_eq!(
        (condition.kind.as_str(), condition.has("optional")),
        ("oneof", true)
    );
    assert_eq!(
        (
            lease.kind.as_str(),
            lease.token.as_deref(),
            lease.has("optional")
        ),
        ("string", Some("LEASE"), true)
    );
    assert_eq!(
        (getversion.kind.as_str(), getversion.has("optional")),
        ("pure-token", true)
    );
    assert_eq!(
        (
            tags.token.as_deref(),
            tags.has("optional"),
            tags.has("multiple")
        ),
        (Some("TAGS"), true, true)
    );
    // The keys of the other key commands are found by their key spec too.
    for name in [
        command::GET,
        command::MGET,
        command::FETCH,
        command::DEL,
        command::TAGS,
    ] {
        let args = parse_args(field(&docs(&mut con, name), "arguments"));
        assert_eq!(
            args.first().map(|a| (a.kind.as_str(), a.key_spec_index)),
            Some(("key", Some(0))),
            "{name}"
        );
    }
}

/// What the server lets a module do with ACL categories, from what it reports itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CategorySupport {
    /// `SetCommandACLCategories`: Redis 7.2+, Valkey.
    categories: bool,
    /// `AddACLCategory`: Redis 7.4+, Valkey (8.1 and 9.1 checked).
    module_category: bool,
}

fn expected_support(server: &RedisServer) -> CategorySupport {
    let info = server.info("server");
    if info.contains_key("valkey_version") {
        return CategorySupport {
            categories: true,
            module_category: true,
        };
    }
    let version: Vec<u32> = info
        .get("redis_version")
        .map(|v| v.split('.').filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default();
    let at_least = |major: u32, minor: u32| version.as_slice() >= [major, minor].as_slice();
    CategorySupport {
        categories: at_least(7, 2),
        module_category: at_least(7, 4),
    }
}

/// `ACL CAT`: every category the server knows.
fn all_categories(con: &mut redis::Connection) -> Vec<String> {
    let reply: Value = query(con, redis::cmd("ACL").arg("CAT"));
    strings(&reply)
}

/// `ACL CAT category`, lowercased; `None` when the server does not know the category.
fn category(con: &mut redis::Connection, name: &str) -> Option<Vec<String>> {
    let reply = call(con, &["ACL", "CAT", name]).ok()?;
    let mut commands: Vec<String> = strings(&reply).iter().map(|c| c.to_lowercase()).collect();
    commands.sort();
    Some(commands)
}

/// The ACL categories `COMMAND INFO` gives a command (its 7th field), without the `@`.
fn command_categories(con: &mut redis::Connection, name: &str) -> Vec<String> {
    let reply: Value = query(con, redis::cmd("COMMAND").arg("INFO").arg(name));
    let Value::Array(commands) = reply else {
        panic!("COMMAND INFO {name}: {reply:?}");
    };
    let Some(Value::Array(info)) = commands.first() else {
        panic!("COMMAND INFO {name}: {commands:?}");
    };
    let mut categories: Vec<String> = info
        .get(6)
        .map(strings)
        .unwrap_or_default()
        .iter()
        .map(|c| c.trim_start_matches('@').to_owned())
        .collect();
    categories.sort();
    categories
}

fn hc_commands_in(commands: &[String]) -> Vec<String> {
    commands
        .iter()
        .filter(|c| c.starts_with("hc."))
        .cloned()
        .collect()
}

fn lowercase_sorted(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|n| n.to_lowercase()).collect();
    names.sort();
    names
}

#[test]
fn commands_are_in_the_categories_their_server_supports() {
    let server = RedisServer::new();
    let support = expected_support(&server);
    let mut con = server.connection();
    let categories = all_categories(&mut con);
    assert_eq!(
        categories.iter().any(|c| c == "hybridcache"),
        support.module_category,
        "ACL CAT on {support:?}: {categories:?}"
    );
    if !support.categories {
        for name in command::ALL {
            assert_eq!(
                command_categories(&mut con, name),
                Vec::<String>::new(),
                "{name}"
            );
        }
        assert_eq!(
            category(&mut con, "keyspace").map(|c| hc_commands_in(&c)),
            Some(vec![])
        );
        return;
    }
    let module = |list: &[&str]| {
        let mut list: Vec<String> = list.iter().map(|c| c.to_string()).collect();
        if support.module_category {
            list.push("hybridcache".into());
        }
        list.sort();
        list
    };
    assert_eq!(
        command_categories(&mut con, command::GET),
        module(&["read", "fast"])
    );
    assert_eq!(
        command_categories(&mut con, command::SET),
        module(&["write", "slow"])
    );
    assert_eq!(
        command_categories(&mut con, command::DELTAG),
        module(&["write", "slow", "keyspace"])
    );
    assert_eq!(
        command_categories(&mut con, command::CHECK),
        module(&["read", "admin", "dangerous", "slow"])
    );
    assert_eq!(
        command_categories(&mut con, command::STALETAG),
        module(&["write", "slow", "keyspace"])
    );
    assert_eq!(
        command_categories(&mut con, command::DELTAGALL),
        module(&["write", "slow", "keyspace"])
    );
    assert_eq!(
        category(&mut con, "keyspace").map(|c| hc_commands_in(&c)),
        Some(lowercase_sorted(&[
            command::DEL,
            command::DELTAG,
            command::STALE,
            command::STALETAG,
            command::DELTAGALL
        ]))
    );
    assert_eq!(
        category(&mut con, "write").map(|c| hc_commands_in(&c)),
        Some(lowercase_sorted(&[
            command::SET,
            command::DEL,
            command::DELTAG,
            command::STALE,
            command::STALETAG,
            command::DELTAGALL
        ]))
    );
    assert_eq!(
        category(&mut con, "read").map(|c| hc_commands_in(&c)),
        Some(lowercase_sorted(&[
            command::GET,
            command::MGET,
            command::FETCH,
            command::TAGS,
            command::TAGKEYS,
            command::TAGCARD,
            command::CHECK,
            command::HELLO,
            command::EVENTS,
        ]))
    );
    assert_eq!(
        category(&mut con, "dangerous").map(|c| hc_commands_in(&c)),
        Some(lowercase_sorted(&[command::CHECK]))
    );
    if support.module_category {
        assert_eq!(
            category(&mut con, "hybridcache"),
            Some(lowercase_sorted(&command::ALL)),
            "@hybridcache holds every HC command and nothing else"
        );
    }
}

fn set_user(admin: &mut redis::Connection, name: &str, rules: &[&str]) -> Result<Value, String> {
    let mut words = vec!["ACL", "SETUSER", name, "reset", "on", ">pw", "~*"];
    words.extend_from_slice(rules);
    call(admin, &words)
}

fn login(server: &RedisServer, name: &str) -> redis::Connection {
    let mut con = server.connection();
    let _: () = query(&mut con, redis::cmd("AUTH").arg(name).arg("pw"));
    con
}

fn is_noperm(reply: &Result<Value, String>) -> bool {
    matches!(reply, Err(e) if e.starts_with("NOPERM"))
}

#[test]
fn users_are_granted_and_denied_the_commands_by_category() {
    let server = RedisServer::new();
    let support = expected_support(&server);
    let mut admin = server.connection();

    let granted = set_user(&mut admin, "hc_only", &["+@hybridcache"]);
    let denied = set_user(&mut admin, "no_hc", &["+@all", "-@hybridcache"]);
    if !support.module_category {
        // The server has no such category: the rules are refused, nothing is granted.
        assert!(
            granted.is_err() && denied.is_err(),
            "{granted:?} {denied:?}"
        );
    } else {
        assert!(granted.is_ok() && denied.is_ok(), "{granted:?} {denied:?}");
        let mut hc_only = login(&server, "hc_only");
        assert_eq!(
            call(&mut hc_only, &[command::SET, "k", "v", "TAGS", "t"]),
            Ok(Value::Okay)
        );
        assert_eq!(
            call(&mut hc_only, &[command::GET, "k"]),
            Ok(Value::BulkString(b"v".to_vec()))
        );
        assert!(
            is_noperm(&call(&mut hc_only, &["GET", "k"])),
            "not a built-in command"
        );
        let mut no_hc = login(&server, "no_hc");
        assert!(is_noperm(&call(&mut no_hc, &[command::GET, "k"])));
        assert!(is_noperm(&call(&mut no_hc, &[command::HELLO])));
        assert_eq!(call(&mut no_hc, &["EXISTS", "k"]), Ok(Value::Int(1)));
    }

    // The server's own categories: a read-only user, and one denied the dangerous commands.
    set_user(&mut admin, "reader", &["+@all", "-@write"]).unwrap();
    set_user(&mut admin, "safe", &["+@all", "-@dangerous"]).unwrap();
    let mut reader = login(&server, "reader");
    let mut safe = login(&server, "safe");
    let write = call(&mut reader, &[command::SET, "k2", "v"]);
    let check = call(&mut safe, &[command::CHECK]);
    assert!(call(&mut reader, &[command::GET, "k2"]).is_ok());
    if support.categories {
        assert!(is_noperm(&write), "{write:?}");
        assert!(is_noperm(&check), "{check:?}");
    } else {
        // Redis 7.0: module commands are in no category, so only `+@all` reaches them and
        // no category rule takes them away (deny them by name).
        assert_eq!(write, Ok(Value::Okay));
        assert!(check.is_ok(), "{check:?}");
    }
}
