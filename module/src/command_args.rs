//! The arguments of each command as `COMMAND DOCS` shows them (redis-cli 7.2+ and
//! valkey-cli turn them into the hints they print while one types). Pure data; the
//! `RedisModule_SetCommandInfo` call that hands them to the server is in `command_info`.
//!
//! The grammar is the one the handlers parse (`set_options`, `commands::read`,
//! `commands::events`); keywords come from the protocol crate so the docs cannot drift from
//! what the module accepts.

use hybridcache_protocol::command::{self, events, option};

/// What an argument is (the server's `RedisModuleCommandArgType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A key name, found by the command's key spec of this index.
    Key(usize),
    String,
    Integer,
    /// A Unix time (seconds or milliseconds, as the name says).
    UnixTime,
    /// A keyword standing alone: its [`Arg::token`].
    PureToken,
    /// Exactly one of these.
    OneOf(&'static [Arg]),
    /// These, in order.
    Block(&'static [Arg]),
}

/// One argument of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Arg {
    pub name: &'static str,
    pub kind: Kind,
    /// The keyword before the value (`EX` of `EX seconds`), or the keyword itself of a
    /// [`Kind::PureToken`].
    pub token: Option<&'static str>,
    pub optional: bool,
    /// The argument may repeat (its token, if any, is given once: `TAGS tag [tag ...]`).
    pub multiple: bool,
}

const fn arg(name: &'static str, kind: Kind) -> Arg {
    Arg {
        name,
        kind,
        token: None,
        optional: false,
        multiple: false,
    }
}

const fn key(name: &'static str) -> Arg {
    arg(name, Kind::Key(0))
}

const fn keyword(name: &'static str, token: &'static str) -> Arg {
    arg(name, Kind::PureToken).token(token)
}

impl Arg {
    const fn token(self, token: &'static str) -> Arg {
        Arg {
            token: Some(token),
            ..self
        }
    }

    const fn optional(self) -> Arg {
        Arg {
            optional: true,
            ..self
        }
    }

    const fn multiple(self) -> Arg {
        Arg {
            multiple: true,
            ..self
        }
    }
}

const EXPIRATION: [Arg; 5] = [
    arg("seconds", Kind::Integer).token(option::EX),
    arg("milliseconds", Kind::Integer).token(option::PX),
    arg("unix-time-seconds", Kind::UnixTime).token(option::EXAT),
    arg("unix-time-milliseconds", Kind::UnixTime).token(option::PXAT),
    keyword("keepttl", option::KEEPTTL),
];

const CONDITION: [Arg; 2] = [keyword("nx", option::NX), keyword("xx", option::XX)];

/// `HC.SET key value [EX s | PX ms | EXAT unix-s | PXAT unix-ms | KEEPTTL] [NX | XX]
/// [LEASE token] [GETVERSION] [TAGS tag ...]` (the options may come in any order; TAGS
/// takes every argument after it).
const SET: [Arg; 7] = [
    key("key"),
    arg("value", Kind::String),
    arg("expiration", Kind::OneOf(&EXPIRATION)).optional(),
    arg("condition", Kind::OneOf(&CONDITION)).optional(),
    arg("token", Kind::String).token(option::LEASE).optional(),
    keyword("getversion", option::GETVERSION).optional(),
    arg("tag", Kind::String)
        .token(option::TAGS)
        .optional()
        .multiple(),
];

const ONE_KEY: [Arg; 1] = [key("key")];

const KEYS: [Arg; 1] = [key("key").multiple()];

const ALWAYS: [Arg; 1] = [keyword("always", option::ALWAYS).optional()];

/// `HC.FETCH key [LEASE [ALWAYS]]`
const FETCH: [Arg; 2] = [
    key("key"),
    arg("lease", Kind::Block(&ALWAYS))
        .token(option::LEASE)
        .optional(),
];

const TAGS: [Arg; 1] = [arg("tag", Kind::String).multiple()];

const ONE_TAG: [Arg; 1] = [arg("tag", Kind::String)];

const SINCE: [Arg; 2] = [arg("origin", Kind::String), arg("seq", Kind::Integer)];

/// `HC.EVENTS SINCE origin seq [COUNT n]`
const EVENTS: [Arg; 2] = [
    arg("since", Kind::Block(&SINCE)).token(events::SINCE),
    arg("count", Kind::Integer).token(events::COUNT).optional(),
];

/// Every command and its arguments (empty: the command takes none).
pub(crate) const TABLE: [(&str, &[Arg]); 15] = [
    (command::SET, &SET),
    (command::GET, &ONE_KEY),
    (command::MGET, &KEYS),
    (command::FETCH, &FETCH),
    (command::DEL, &KEYS),
    (command::DELTAG, &TAGS),
    (command::TAGS, &ONE_KEY),
    (command::TAGKEYS, &ONE_TAG),
    (command::TAGCARD, &ONE_TAG),
    (command::CHECK, &[]),
    (command::HELLO, &[]),
    (command::EVENTS, &EVENTS),
    (command::STALE, &KEYS),
    (command::STALETAG, &TAGS),
    (command::DELTAGALL, &TAGS),
];

/// The arguments of a command, `None` for a name that is not one of ours.
pub(crate) fn of(name: &str) -> Option<&'static [Arg]> {
    TABLE
        .iter()
        .find(|(command, _)| command.eq_ignore_ascii_case(name))
        .map(|(_, args)| *args)
}

/// The shapes the server refuses (`moduleValidateCommandArgs`) or that make no sense in
/// the docs; `None` when `args` are well formed. (The tables are constants: checking them
/// once in the unit tests is enough.)
#[cfg(test)]
pub(crate) fn problem(args: &[Arg]) -> Option<String> {
    for (i, arg) in args.iter().enumerate() {
        let bad = |what: &str| Some(format!("{}: {what}", arg.name));
        let valid_name = !arg.name.is_empty()
            && arg
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_name {
            return bad("names are lowercase words joined by dashes");
        }
        if args[..i].iter().any(|before| before.name == arg.name) {
            return bad("named twice");
        }
        if let Some(token) = arg.token {
            if token.is_empty() || token.bytes().any(|b| !b.is_ascii_uppercase()) {
                return bad("tokens are uppercase keywords");
            }
        }
        match arg.kind {
            Kind::PureToken if arg.token.is_none() => return bad("a pure token needs its token"),
            Kind::OneOf(subargs) | Kind::Block(subargs) => {
                if subargs.is_empty() {
                    return bad("oneof and block need sub-arguments");
                }
                if subargs.iter().any(|sub| matches!(sub.kind, Kind::Key(_))) {
                    return bad("keys are top-level arguments (key specs find them there)");
                }
                if let Some(problem) = problem(subargs) {
                    return Some(format!("{}: {problem}", arg.name));
                }
            }
            _ => {}
        }
    }
    None
}

/// Every index of a key spec that `args` refer to.
#[cfg(test)]
pub(crate) fn key_spec_indexes(args: &[Arg]) -> Vec<usize> {
    args.iter()
        .filter_map(|arg| match arg.kind {
            Kind::Key(index) => Some(index),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_docs_and_nothing_else_does() {
        for name in command::ALL {
            assert!(of(name).is_some(), "{name} has no argument table");
        }
        assert_eq!(TABLE.len(), command::ALL.len());
        assert!(of("HC.NOPE").is_none());
        assert_eq!(
            of("hc.set"),
            of(command::SET),
            "looked up case-insensitively"
        );
    }

    #[test]
    fn every_table_is_well_formed() {
        for (name, args) in TABLE {
            assert_eq!(problem(args), None, "{name}");
        }
    }

    #[test]
    fn malformed_tables_are_caught() {
        let no_token = [arg("nx", Kind::PureToken)];
        assert!(problem(&no_token).is_some_and(|p| p.contains("pure token")));
        let empty = [arg("choice", Kind::OneOf(&[]))];
        assert!(problem(&empty).is_some_and(|p| p.contains("sub-arguments")));
        const NESTED: [Arg; 1] = [arg("bad name", Kind::String)];
        let nested = [arg("block", Kind::Block(&NESTED))];
        assert!(problem(&nested).is_some_and(|p| p.starts_with("block: bad name")));
        let twice = [key("key"), key("key")];
        assert!(problem(&twice).is_some_and(|p| p.contains("twice")));
        const KEY_INSIDE: [Arg; 1] = [key("key")];
        let key_inside = [arg("block", Kind::Block(&KEY_INSIDE))];
        assert!(problem(&key_inside).is_some_and(|p| p.contains("top-level")));
    }

    #[test]
    fn set_lists_its_options_in_the_readme_order() {
        let names: Vec<&str> = SET.iter().map(|a| a.name).collect();
        assert_eq!(
            names,
            [
                "key",
                "value",
                "expiration",
                "condition",
                "token",
                "getversion",
                "tag"
            ]
        );
        assert!(
            SET[2..].iter().all(|a| a.optional),
            "only key and value are required"
        );
        let tags = SET[6];
        assert_eq!((tags.token, tags.multiple), (Some(option::TAGS), true));
    }

    #[test]
    fn commands_without_arguments_have_an_empty_table() {
        assert_eq!(of(command::HELLO).map(<[Arg]>::len), Some(0));
        assert_eq!(of(command::CHECK).map(<[Arg]>::len), Some(0));
    }
}
