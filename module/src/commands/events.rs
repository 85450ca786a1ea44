//! `HC.EVENTS SINCE <origin> <seq> [COUNT n]`: the changes published after `seq`, from the
//! event log, for a reader that missed some.

use super::{reply_array_header, reply_bytes, reply_null, REPLIED};
use crate::error::CommandError;
use crate::event_log::Since;
use crate::publisher;
use crate::state::with_state;
use hybridcache_protocol::command::events::{
    COUNT, DEFAULT_COUNT, MAX_COUNT, OK, OTHER_ORIGIN, SINCE, TOO_OLD,
};
use redis_module::{raw, Context, RedisError, RedisResult, RedisString};

/// A parsed request.
#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    origin: &'a [u8],
    seq: u64,
    count: u64,
}

fn parse<'a>(args: &[&'a [u8]]) -> Result<Request<'a>, RedisError> {
    let [since, origin, seq, rest @ ..] = args else {
        return Err(RedisError::WrongArity);
    };
    if !since.eq_ignore_ascii_case(SINCE.as_bytes()) {
        return Err(CommandError::unknown_events_option(since).into());
    }
    let seq = number(seq)?;
    let count = match rest {
        [] => DEFAULT_COUNT,
        [word, n] if word.eq_ignore_ascii_case(COUNT.as_bytes()) => {
            let n = number(n)?;
            if !(1..=MAX_COUNT).contains(&n) {
                return Err(CommandError::EventsCount(MAX_COUNT).into());
            }
            n
        }
        [word] if word.eq_ignore_ascii_case(COUNT.as_bytes()) => {
            return Err(CommandError::MissingValue("COUNT").into())
        }
        [word, ..] => return Err(CommandError::unknown_events_option(word).into()),
    };
    Ok(Request { origin, seq, count })
}

fn number(arg: &[u8]) -> Result<u64, RedisError> {
    std::str::from_utf8(arg)
        .ok()
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty())
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| CommandError::NotAnInteger.into())
}

pub fn hc_events(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    let words: Vec<&[u8]> = args.iter().skip(1).map(RedisString::as_slice).collect();
    let request = parse(&words)?;
    let same_origin = with_state(|s| s.sequencer.origin().as_bytes() == request.origin);
    let reply_status = |status: &str, last: u64| {
        reply_array_header(ctx, 3);
        reply_bytes(ctx, status.as_bytes());
        raw::reply_with_long_long(ctx.get_raw(), i64::try_from(last).unwrap_or(i64::MAX));
    };
    if !same_origin {
        let last = with_state(|s| s.events.log.last());
        reply_status(OTHER_ORIGIN, last);
        reply_null(ctx);
        return Ok(REPLIED);
    }
    let count = usize::try_from(request.count).unwrap_or(usize::MAX);
    match publisher::since(request.seq, count) {
        Since::Changes { message, last, .. } => {
            reply_status(OK, last);
            reply_bytes(ctx, &message);
        }
        Since::TooOld { last, .. } => {
            reply_status(TOO_OLD, last);
            reply_null(ctx);
        }
    }
    Ok(REPLIED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> Result<Request<'static>, String> {
        let args: Vec<&'static [u8]> = args
            .iter()
            .map(|a| -> &'static [u8] { Box::leak(a.as_bytes().to_vec().into_boxed_slice()) })
            .collect();
        parse(&args).map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn since_with_and_without_count() {
        assert_eq!(
            parsed(&["SINCE", "o", "12"]).unwrap(),
            Request {
                origin: b"o",
                seq: 12,
                count: DEFAULT_COUNT
            }
        );
        assert_eq!(parsed(&["since", "o", "0", "count", "5"]).unwrap().count, 5);
    }

    #[test]
    fn bad_requests_get_clear_errors() {
        assert!(parsed(&["SINCE", "o"]).unwrap_err().contains("WrongArity"));
        assert!(parsed(&["FROM", "o", "1"])
            .unwrap_err()
            .contains("unknown option"));
        assert!(parsed(&["SINCE", "o", "-1"])
            .unwrap_err()
            .contains("not an integer"));
        assert!(parsed(&["SINCE", "o", "+1"])
            .unwrap_err()
            .contains("not an integer"));
        assert!(parsed(&["SINCE", "o", "1", "COUNT", "0"])
            .unwrap_err()
            .contains("COUNT"));
        assert!(parsed(&["SINCE", "o", "1", "COUNT"])
            .unwrap_err()
            .contains("needs a value"));
        assert!(parsed(&["SINCE", "o", "1", "LIMIT", "3"])
            .unwrap_err()
            .contains("unknown option"));
        assert!(parsed(&["SINCE", "o", "1", "COUNT", "2", "COUNT", "3"])
            .unwrap_err()
            .contains("unknown option"));
    }
}
