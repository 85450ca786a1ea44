//! Shard channels in Redis Cluster: where a shard's events are published when they travel
//! only within their shard (`SSUBSCRIBE`, `RedisModule_PublishMessageShard`).
//!
//! A shard channel is hashed to a slot like a key, and a node accepts `SSUBSCRIBE` only for
//! channels of slots its shard serves. So a shard's channel is named after one of its slots:
//! the lowest slot its primary serves, written as a hash tag in front of the configured
//! channel: `{<tag>}hc:invalidations`, where `<tag>` is the shortest decimal number that
//! hashes to that slot ([`slot_tag`]). Subscribers compute it from `CLUSTER SLOTS`; the
//! module publishes on every channel of that form its node has subscribers for, so that a
//! subscriber that moved to another slot's channel (after a reshard) is served at once.

use std::sync::LazyLock;

/// Slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// Redis Cluster's CRC16 (XMODEM).
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of a key (or shard channel) name, with Redis's hash-tag rule: when the name
/// holds `{...}` with at least one byte between the first `{` and the next `}`, only those
/// bytes are hashed.
pub fn key_slot(name: &[u8]) -> u16 {
    let hashed = name
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = name.get(open + 1..)?;
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| rest.get(..close)).flatten()
        })
        .unwrap_or(name);
    crc16(hashed) % SLOTS
}

/// For every slot, the smallest number whose decimal form hashes to it.
static TAGS: LazyLock<Vec<u32>> = LazyLock::new(|| {
    let mut tags = vec![u32::MAX; usize::from(SLOTS)];
    let mut missing = usize::from(SLOTS);
    let mut n: u32 = 0;
    while missing > 0 {
        let slot = usize::from(crc16(n.to_string().as_bytes()) % SLOTS);
        if let Some(tag) = tags.get_mut(slot) {
            if *tag == u32::MAX {
                *tag = n;
                missing -= 1;
            }
        }
        n += 1;
    }
    tags
});

/// The shortest decimal number that hashes to `slot` (slots past the last are taken modulo
/// [`SLOTS`]).
pub fn slot_tag(slot: u16) -> u32 {
    TAGS.get(usize::from(slot % SLOTS)).copied().unwrap_or(0)
}

/// The shard channel of the shard whose lowest slot is `slot`, for the configured channel
/// `base`.
pub fn shard_channel(base: &[u8], slot: u16) -> Vec<u8> {
    let mut name = format!("{{{}}}", slot_tag(slot)).into_bytes();
    name.extend_from_slice(base);
    name
}

/// Whether `name` is a shard channel of `base` (as [`shard_channel`] names them).
pub fn is_shard_channel(name: &[u8], base: &[u8]) -> bool {
    shard_channel(base, key_slot(name)) == name
}

/// A glob pattern (`PUBSUB SHARDCHANNELS`) matching every shard channel of `base` (and maybe
/// more: check each with [`is_shard_channel`]).
pub fn shard_channel_pattern(base: &[u8]) -> Vec<u8> {
    let mut pattern = b"{*}".to_vec();
    for &b in base {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            pattern.push(b'\\');
        }
        pattern.push(b);
    }
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        // An empty tag hashes the whole name.
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
    }

    #[test]
    fn every_slot_has_a_short_tag_and_a_channel_in_it() {
        for slot in 0..SLOTS {
            let tag = slot_tag(slot);
            assert!(tag < 1_000_000, "slot {slot}: {tag}");
            let channel = shard_channel(b"hc:invalidations", slot);
            assert_eq!(
                key_slot(&channel),
                slot,
                "{}",
                String::from_utf8_lossy(&channel)
            );
            assert!(is_shard_channel(&channel, b"hc:invalidations"));
        }
        assert_eq!(
            shard_channel(b"hc:invalidations", 0),
            format!("{{{}}}hc:invalidations", slot_tag(0)).into_bytes()
        );
    }

    #[test]
    fn other_names_are_not_shard_channels() {
        let base = b"hc:invalidations";
        for name in [
            &b"hc:invalidations"[..],
            b"{x}hc:invalidations",
            b"{0}hc:other",
            b"{00}hc:invalidations",
        ] {
            let canonical = shard_channel(base, key_slot(name)) == name;
            assert_eq!(is_shard_channel(name, base), canonical);
            assert!(!is_shard_channel(name, base) || name.starts_with(b"{"));
        }
        // A base with braces keeps the tag in front as the hash tag.
        let channel = shard_channel(b"a{b}c", 42);
        assert_eq!(key_slot(&channel), 42);
    }

    #[test]
    fn the_pattern_escapes_glob_characters() {
        assert_eq!(shard_channel_pattern(b"hc:inv"), b"{*}hc:inv".to_vec());
        assert_eq!(
            shard_channel_pattern(b"a*b?[c]\\"),
            b"{*}a\\*b\\?\\[c\\]\\\\".to_vec()
        );
    }
}
