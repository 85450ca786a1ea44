//! Parsing of `HC.SET` options. Pure Rust: arguments in, [`SetOptions`] or an error out.

use crate::error::CommandError;
use hybridcache_protocol::command::option;

const COMMAND: &str = "hc.set";

/// When the entry expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No time to live (an existing one is cleared, as SET does).
    Never,
    /// Keep the time to live of the entry being replaced (KEEPTTL).
    Keep,
    /// Milliseconds from now (EX, PX).
    In(i64),
    /// Unix time in milliseconds (EXAT, PXAT).
    At(i64),
}

impl Expiry {
    /// The absolute expiry in Unix milliseconds given the current time, `None` for
    /// [`Expiry::Never`] and [`Expiry::Keep`]; an error when it does not fit an `i64`.
    pub fn deadline(self, now_ms: i64) -> Result<Option<i64>, CommandError> {
        match self {
            Expiry::Never | Expiry::Keep => Ok(None),
            Expiry::At(at) => Ok(Some(at)),
            Expiry::In(ms) => now_ms
                .checked_add(ms)
                .map(Some)
                .ok_or(CommandError::InvalidExpire(COMMAND)),
        }
    }
}

/// NX / XX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Always,
    IfAbsent,
    IfPresent,
}

/// Everything after `HC.SET key value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOptions<'a> {
    pub expiry: Expiry,
    pub condition: Condition,
    /// As given, possibly repeated (the entry removes repeats): the arguments after TAGS.
    pub tags: &'a [&'a [u8]],
    /// GETVERSION: reply `[origin, version]` instead of `OK`.
    pub get_version: bool,
    /// LEASE token: write only if nothing changed since the read that issued the token.
    pub lease: Option<&'a [u8]>,
}

impl<'a> SetOptions<'a> {
    /// Parses `[EX s | PX ms | EXAT s | PXAT ms | KEEPTTL] [NX | XX] [TAGS tag ...]`.
    /// Options are case-insensitive and may come in any order; TAGS is last and takes every
    /// remaining argument as a tag.
    pub fn parse(args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        let mut expiry: Option<Expiry> = None;
        let mut condition: Option<Condition> = None;
        let mut get_version = false;
        let mut lease: Option<&[u8]> = None;
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            let mut buf = [0u8; KEYWORD_MAX];
            let name = uppercase_keyword(arg, &mut buf);
            let timed = |unit: i64, absolute: bool, rest: &mut std::slice::Iter<&[u8]>| {
                let keyword = keyword_of(name);
                let raw = rest.next().ok_or(CommandError::MissingValue(keyword))?;
                let n = parse_i64(raw)?;
                if n <= 0 {
                    return Err(CommandError::InvalidExpire(COMMAND));
                }
                let ms = n
                    .checked_mul(unit)
                    .ok_or(CommandError::InvalidExpire(COMMAND))?;
                Ok(if absolute {
                    Expiry::At(ms)
                } else {
                    Expiry::In(ms)
                })
            };
            let new_expiry = match name {
                b"EX" => Some(timed(1000, false, &mut rest)?),
                b"PX" => Some(timed(1, false, &mut rest)?),
                b"EXAT" => Some(timed(1000, true, &mut rest)?),
                b"PXAT" => Some(timed(1, true, &mut rest)?),
                b"KEEPTTL" => Some(Expiry::Keep),
                _ => None,
            };
            if let Some(new_expiry) = new_expiry {
                if expiry.replace(new_expiry).is_some() {
                    return Err(CommandError::ExpiryConflict);
                }
                continue;
            }
            if name == b"GETVERSION" {
                get_version = true;
                continue;
            }
            if name == b"LEASE" {
                let token = rest.next().ok_or(CommandError::MissingValue("LEASE"))?;
                if lease.replace(token).is_some() {
                    return Err(CommandError::RepeatedOption("LEASE"));
                }
                continue;
            }
            let new_condition = match name {
                b"NX" => Condition::IfAbsent,
                b"XX" => Condition::IfPresent,
                b"TAGS" => {
                    let tags = rest.as_slice();
                    if tags.is_empty() {
                        return Err(CommandError::NoTags);
                    }
                    return Ok(Self {
                        expiry: expiry.unwrap_or(Expiry::Never),
                        condition: condition.unwrap_or(Condition::Always),
                        tags,
                        get_version,
                        lease,
                    });
                }
                _ => return Err(CommandError::unknown_option(arg)),
            };
            // NX NX is NX, as for SET; NX XX is a contradiction.
            if condition
                .replace(new_condition)
                .is_some_and(|old| old != new_condition)
            {
                return Err(CommandError::ConditionConflict);
            }
        }
        Ok(Self {
            expiry: expiry.unwrap_or(Expiry::Never),
            condition: condition.unwrap_or(Condition::Always),
            tags: &[],
            get_version,
            lease,
        })
    }
}

/// Longer than any option keyword.
const KEYWORD_MAX: usize = 16;

/// `arg` in upper case, in `buf` (no allocation per option); empty when it is too long to
/// be a keyword.
fn uppercase_keyword<'b>(arg: &[u8], buf: &'b mut [u8; KEYWORD_MAX]) -> &'b [u8] {
    match buf.get_mut(..arg.len()) {
        Some(upper) => {
            upper.copy_from_slice(arg);
            upper.make_ascii_uppercase();
            upper
        }
        None => &[],
    }
}

fn keyword_of(upper: &[u8]) -> &'static str {
    match upper {
        b"EX" => option::EX,
        b"PX" => option::PX,
        b"EXAT" => option::EXAT,
        _ => option::PXAT,
    }
}

/// A strict decimal integer, as Redis reads one: optional '-', digits, no spaces or '+'.
pub fn parse_i64(raw: &[u8]) -> Result<i64, CommandError> {
    let text = std::str::from_utf8(raw).map_err(|_| CommandError::NotAnInteger)?;
    if text.starts_with('+') || text.is_empty() {
        return Err(CommandError::NotAnInteger);
    }
    text.parse().map_err(|_| CommandError::NotAnInteger)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses options the test expects to be valid; a rejection yields an impossible value
    /// so that the assertion on it fails.
    fn ok(args: &[&str]) -> SetOptions<'static> {
        parse(args).unwrap_or(SetOptions {
            expiry: Expiry::At(i64::MIN),
            condition: Condition::Always,
            tags: &[b"<rejected>"],
            get_version: false,
            lease: None,
        })
    }

    fn parse(args: &[&str]) -> Result<SetOptions<'static>, CommandError> {
        let owned: Vec<&'static [u8]> = args
            .iter()
            .map(|a| &*Box::leak(a.as_bytes().to_vec().into_boxed_slice()))
            .collect();
        SetOptions::parse(Vec::leak(owned))
    }

    #[test]
    fn no_options_means_no_ttl_no_condition_no_tags() {
        let o = ok(&[]);
        assert_eq!(o.expiry, Expiry::Never);
        assert_eq!(o.condition, Condition::Always);
        assert!(o.tags.is_empty());
    }

    #[test]
    fn units_are_converted_to_milliseconds() {
        assert_eq!(ok(&["EX", "2"]).expiry, Expiry::In(2000));
        assert_eq!(ok(&["px", "5"]).expiry, Expiry::In(5));
        assert_eq!(ok(&["EXAT", "3"]).expiry, Expiry::At(3000));
        assert_eq!(ok(&["PxAt", "7"]).expiry, Expiry::At(7));
        assert_eq!(ok(&["KEEPTTL"]).expiry, Expiry::Keep);
    }

    #[test]
    fn options_combine_in_any_order_with_tags_last() {
        let o = ok(&["NX", "EX", "10", "TAGS", "a", "b", "a"]);
        assert_eq!(o.condition, Condition::IfAbsent);
        assert_eq!(o.expiry, Expiry::In(10_000));
        assert_eq!(o.tags, vec![&b"a"[..], b"b", b"a"]);
        assert_eq!(ok(&["XX"]).condition, Condition::IfPresent);
    }

    #[test]
    fn getversion_is_a_flag_before_tags() {
        assert!(ok(&["GETVERSION", "EX", "1", "TAGS", "a"]).get_version);
        assert!(!ok(&["EX", "1"]).get_version);
        assert_eq!(ok(&["TAGS", "GETVERSION"]).tags, vec![&b"GETVERSION"[..]]);
    }

    #[test]
    fn everything_after_tags_is_a_tag() {
        let o = ok(&["TAGS", "a", "EX", "10"]);
        assert_eq!(o.tags, vec![&b"a"[..], b"EX", b"10"]);
        assert_eq!(o.expiry, Expiry::Never);
    }

    #[test]
    fn bad_ttls_are_rejected() {
        for bad in ["0", "-1"] {
            assert_eq!(
                parse(&["EX", bad]).unwrap_err(),
                CommandError::InvalidExpire("hc.set")
            );
        }
        for bad in ["abc", "1.5", "+3", " 3", "", "99999999999999999999"] {
            assert_eq!(
                parse(&["PX", bad]).unwrap_err(),
                CommandError::NotAnInteger,
                "{bad}"
            );
        }
        assert_eq!(
            parse(&["EX", "9223372036854775807"]).unwrap_err(),
            CommandError::InvalidExpire("hc.set")
        );
        assert_eq!(
            parse(&["EX"]).unwrap_err(),
            CommandError::MissingValue("EX")
        );
    }

    #[test]
    fn relative_deadline_that_overflows_is_rejected() {
        let o = ok(&["PX", "9223372036854775000"]);
        assert_eq!(
            o.expiry.deadline(1_700_000_000_000),
            Err(CommandError::InvalidExpire("hc.set"))
        );
        assert_eq!(Expiry::In(5).deadline(10), Ok(Some(15)));
        assert_eq!(Expiry::Never.deadline(10), Ok(None));
    }

    #[test]
    fn conflicting_options_are_rejected() {
        assert_eq!(
            parse(&["EX", "1", "PX", "1"]).unwrap_err(),
            CommandError::ExpiryConflict
        );
        assert_eq!(
            parse(&["EX", "1", "EX", "1"]).unwrap_err(),
            CommandError::ExpiryConflict
        );
        assert_eq!(
            parse(&["KEEPTTL", "EX", "1"]).unwrap_err(),
            CommandError::ExpiryConflict
        );
        assert_eq!(
            parse(&["NX", "XX"]).unwrap_err(),
            CommandError::ConditionConflict
        );
    }

    #[test]
    fn a_repeated_condition_is_the_condition_and_lease_takes_a_token() {
        assert_eq!(ok(&["NX", "NX"]).condition, Condition::IfAbsent);
        let options = ok(&["lease", "abc:7", "EX", "5", "TAGS", "t"]);
        assert_eq!(options.lease, Some(b"abc:7".as_slice()));
        assert_eq!(options.tags, vec![b"t".as_slice()]);
        assert_eq!(ok(&["EX", "5"]).lease, None);
        assert_eq!(
            parse(&["LEASE"]).unwrap_err(),
            CommandError::MissingValue("LEASE")
        );
        assert_eq!(
            parse(&["LEASE", "a:1", "LEASE", "a:2"]).unwrap_err(),
            CommandError::RepeatedOption("LEASE")
        );
    }

    #[test]
    fn tags_without_a_tag_and_unknown_options_are_rejected() {
        assert_eq!(parse(&["TAGS"]).unwrap_err(), CommandError::NoTags);
        assert_eq!(
            parse(&["FOO\r\n"]).unwrap_err(),
            CommandError::UnknownOption("FOO??".into())
        );
        assert_eq!(
            parse(&["一Ā%"]).unwrap_err(),
            CommandError::UnknownOption("???".into())
        );
    }
}
