//! The adapter between the commands and the fill-lease table ([`crate::fills`]): issuing a
//! lease for `HC.FETCH ... LEASE`, checking one for `HC.SET ... LEASE`.

use crate::fills::{decode_token, encode_token, FillVerdict};
use crate::key_handle::KeyHandle;
use crate::limits::fill_bounds;
use crate::state::with_state;
use redis_module::raw;
use redis_module::RedisString;

/// A lease on `name` in `db`, as the token the client passes back.
pub(crate) fn issue(ctx: *mut raw::RedisModuleCtx, db: i32, name: &[u8]) -> String {
    // Before the lease exists, so that no DEL of the missing key can pass unseen.
    crate::command_filter::ensure_registered(ctx);
    let bounds = fill_bounds();
    let token = with_state(|s| {
        s.fills.set_bounds(bounds);
        let position = s.fills.lease(db, name);
        encode_token(s.sequencer.origin(), position)
    });
    crate::state::note_lease_issued();
    token
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
    // Looking at the key first lets Redis expire it if its time has passed (an expiry after
    // the read is a change), without opening it for writing (which would touch a WATCH on
    // a refused write). A tag of the entry stored now that was removed since the read means
    // the key was logically deleted since, though the removal timer has not reached it.
    let stored = KeyHandle::peek(ctx, name.inner);
    let stored_tags = stored
        .as_ref()
        .and_then(|key| key.entry().ok().flatten())
        .map(|entry| entry.tags());
    let decoded = decode_token(token);
    with_state(|s| match decoded {
        Some((origin, position)) if s.sequencer.origin().as_bytes() == origin => {
            let tags = tags
                .iter()
                .copied()
                .chain(stored_tags.into_iter().flatten());
            s.fills.check(db, name.as_slice(), position, tags) == FillVerdict::Accept
        }
        _ => {
            s.fills.count_foreign();
            false
        }
    })
}
