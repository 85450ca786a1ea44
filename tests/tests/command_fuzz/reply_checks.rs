//! What a reply must look like: error replies, and the forms of `HC.FETCH` and `HC.HELLO`.

use hybridcache_protocol::command::{self, LEASE_VERSION};
use hybridcache_protocol::{DEFAULT_CHANNEL, FORMAT_VERSION, MODULE_NAME};
use hybridcache_tests::resp::{show, Reply};

/// What is wrong with error reply `text`, if anything: it must start with an uppercase
/// code, hold no control character, and (for the module's commands) only printable ASCII.
pub(crate) fn error_reply_problem(text: &[u8], module: bool) -> Option<String> {
    let code_len = text.iter().position(|&b| b == b' ').unwrap_or(text.len());
    let code = &text[..code_len];
    if code.len() < 2
        || !code[0].is_ascii_uppercase()
        || !code
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
    {
        return Some(format!(
            "error reply without an uppercase code: {:?}",
            show(text)
        ));
    }
    if text.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Some(format!(
            "error reply with a control character: {:?}",
            show(text)
        ));
    }
    if module && text.iter().any(|&b| b >= 0x80) {
        return Some(format!(
            "module error reply with non-ASCII bytes: {:?}",
            show(text)
        ));
    }
    None
}

/// Calls `f` on the text of every error reply in `reply`, nested ones included.
pub(crate) fn visit_errors(reply: &Reply, f: &mut impl FnMut(&[u8])) {
    match reply {
        Reply::Error(text) => f(text),
        Reply::Array(Some(items)) => items.iter().for_each(|i| visit_errors(i, f)),
        _ => {}
    }
}

/// What the words of an `HC.FETCH` command ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FetchForm {
    /// `HC.FETCH key`.
    Plain,
    /// `HC.FETCH key LEASE`: a token on a miss, nil on a hit.
    Lease,
    /// `HC.FETCH key LEASE ALWAYS`: a token either way.
    LeaseAlways,
    /// One or two words after the key that are not these: a syntax error.
    UnknownOption,
    /// No key, or three words after it: an arity error.
    WrongArity,
}

/// The form of `HC.FETCH` command `words` (any case).
pub(crate) fn fetch_form(words: &[Vec<u8>]) -> FetchForm {
    let is = |word: &Vec<u8>, option: &str| word.eq_ignore_ascii_case(option.as_bytes());
    match words {
        [_, _] => FetchForm::Plain,
        [_, _, lease] if is(lease, command::option::LEASE) => FetchForm::Lease,
        [_, _, lease, always]
            if is(lease, command::option::LEASE) && is(always, command::option::ALWAYS) =>
        {
            FetchForm::LeaseAlways
        }
        [_, _, _] | [_, _, _, _] => FetchForm::UnknownOption,
        _ => FetchForm::WrongArity,
    }
}

/// The token (if any) of a well-formed `HC.FETCH key LEASE [ALWAYS]` reply from the server
/// of `origin`, or what is wrong with the reply: a token on a miss, and on a hit only
/// with `always`.
pub(crate) fn leased_read(
    reply: &Reply,
    origin: &[u8],
    always: bool,
) -> Result<Option<Vec<u8>>, String> {
    let Reply::Array(Some(items)) = reply else {
        return Err(format!("HC.FETCH ... LEASE answered {reply:?}"));
    };
    let [value, Reply::Array(Some(tags)), Reply::Int(pttl), Reply::Bulk(Some(from)), Reply::Int(version), Reply::Bulk(token)] =
        items.as_slice()
    else {
        return Err(format!("HC.FETCH ... LEASE answered {reply:?}"));
    };
    if from != origin {
        return Err(format!("HC.FETCH ... LEASE names origin {:?}", show(from)));
    }
    if let Some(token) = token {
        let well_formed_token = token
            .strip_prefix(origin)
            .and_then(|rest| rest.strip_prefix(b":"))
            .is_some_and(|digits| !digits.is_empty() && digits.iter().all(u8::is_ascii_digit));
        if !well_formed_token {
            return Err(format!("HC.FETCH ... LEASE gave token {:?}", show(token)));
        }
    }
    let shape_ok = match value {
        Reply::Bulk(None) => tags.is_empty() && *pttl == -2 && *version == 0,
        Reply::Bulk(Some(_)) => {
            (*pttl == -1 || *pttl >= 0)
                && *version >= 0
                && tags.iter().all(|t| matches!(t, Reply::Bulk(Some(_))))
        }
        _ => false,
    };
    if !shape_ok {
        return Err(format!("HC.FETCH ... LEASE answered {reply:?}"));
    }
    let hit = matches!(value, Reply::Bulk(Some(_)));
    if token.is_some() != (!hit || always) {
        let form = if always { "LEASE ALWAYS" } else { "LEASE" };
        return Err(format!(
            "HC.FETCH ... {form} on a {} answered {reply:?}",
            if hit { "hit" } else { "miss" }
        ));
    }
    Ok(token.clone())
}

/// What is wrong with `reply` to an `HC.FETCH` of `form` that must fail, if anything.
pub(crate) fn fetch_error_problem(form: FetchForm, reply: &Reply) -> Option<String> {
    let expected: &[u8] = match form {
        FetchForm::UnknownOption => b"ERR syntax error, unknown option '",
        FetchForm::WrongArity => b"ERR wrong number of arguments",
        _ => return None,
    };
    match reply {
        // A key outside the restricted user's patterns.
        Reply::Error(text) if text.starts_with(b"NOPERM") => None,
        Reply::Error(text) if text.starts_with(expected) => None,
        _ => Some(format!(
            "HC.FETCH of form {form:?} answered {reply:?}, not {:?}...",
            show(expected)
        )),
    }
}

/// What is wrong with a reply to `HC.HELLO` from the server of `origin`, if anything.
pub(crate) fn hello_problem(reply: &Reply, origin: &[u8]) -> Option<String> {
    let text = |t: &str| Reply::Bulk(Some(t.as_bytes().to_vec()));
    let expected = [
        text("module"),
        text(MODULE_NAME),
        text("version"),
        text(env!("CARGO_PKG_VERSION")),
        text("events"),
        Reply::Int(i64::from(FORMAT_VERSION)),
        text("leases"),
        Reply::Int(LEASE_VERSION),
        text("channel"),
        text(DEFAULT_CHANNEL),
        text("origin"),
        Reply::Bulk(Some(origin.to_vec())),
        text("sharded"),
        Reply::Int(0),
    ];
    match reply {
        Reply::Array(Some(items)) if items.as_slice() == expected.as_slice() => None,
        _ => Some(format!("HC.HELLO answered {reply:?}")),
    }
}

/// An array reply of bulk strings, as sorted lossy text.
pub(crate) fn sorted_texts(reply: Option<Reply>) -> Option<Vec<String>> {
    let Some(Reply::Array(Some(items))) = reply else {
        return None;
    };
    let mut out = Vec::new();
    for item in items {
        let Reply::Bulk(Some(bytes)) = item else {
            return None;
        };
        out.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    out.sort();
    Some(out)
}

#[test]
fn error_replies_are_judged_by_their_code_and_characters() {
    assert_eq!(error_reply_problem(b"ERR syntax error", true), None);
    assert_eq!(error_reply_problem(b"WRONGTYPE Operation", true), None);
    assert_eq!(error_reply_problem(b"EXECABORT Transaction", false), None);
    assert_eq!(error_reply_problem(b"NOPERM", false), None);
    assert!(error_reply_problem(b"err lower case", false).is_some());
    assert!(error_reply_problem(b"", false).is_some());
    assert!(error_reply_problem(b" ERR leading space", false).is_some());
    assert!(error_reply_problem(b"ERR nul \0 inside", false).is_some());
    assert!(error_reply_problem(b"ERR tab \t inside", false).is_some());
    assert!(error_reply_problem("ERR caf\u{e9}".as_bytes(), true).is_some());
    assert_eq!(error_reply_problem("ERR caf\u{e9}".as_bytes(), false), None);
}
