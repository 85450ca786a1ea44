//! The adapter between the commands and the fill-lease table ([`crate::fills`]): issuing a
//! lease for `HC.FETCH ... LEASE`, checking one for `HC.SET ... LEASE`.

use crate::fills::{decode_token, encode_token, FillVerdict};
use crate::key_handle::KeyHandle;
use crate::limits::fill_bounds;
use crate::state::with_state;
use redis_module::raw;
use redis_module::RedisString;

/// A lease on `name` in `db`, as the token the client passes back.
pub(crate) fn issue(db: i32, name: &[u8]) -> String {
    let bounds = fill_bounds();
    with_state(|s| {
        s.fills.set_bounds(bounds);
        let position = s.fills.lease(db, name);
        encode_token(s.sequencer.origin(), position)
    })
}

/// Whether a fill of `name` with `tags`, computed after the read that issued `token`, may
/// be written now. Counts the outcome.
pub(crate) fn fill_allowed(
    ctx: *mut raw::RedisModuleCtx,
    db: i32,
    name: &RedisString,
    token: &[u8],
    tags: &[&[u8]],
) -> bool {
    let origin_matches = |origin: &[u8]| with_state(|s| s.sequencer.origin().as_bytes() == origin);
    let Some((_, position)) = decode_token(token).filter(|(o, _)| origin_matches(o)) else {
        with_state(|s| s.fills.count_foreign());
        return false;
    };
    // The entry stored now: a tag it carries that was removed since the read means the key
    // was logically deleted since, even though the removal timer has not reached it yet.
    let stored = KeyHandle::peek(ctx, name.inner);
    let stored_tags: Vec<&[u8]> = match stored.as_ref().map(KeyHandle::entry) {
        Some(Ok(Some(entry))) => entry.tags().collect(),
        _ => Vec::new(),
    };
    let verdict = with_state(|s| {
        s.fills.check(
            db,
            name.as_slice(),
            position,
            tags.iter().copied().chain(stored_tags.iter().copied()),
        )
    });
    verdict == FillVerdict::Accept
}
