//! User text shown in error replies and logs. Pure Rust.
//!
//! redis-module turns reply strings into C strings one character per byte (so a character
//! such as U+0100 becomes a NUL byte and panics), and passes log messages to Redis as a
//! printf format: user text is reduced to printable ASCII without '%'.

/// At most `max` characters of `raw`, printable ASCII only; anything else becomes '?'.
pub fn printable(raw: &[u8], max: usize) -> String {
    String::from_utf8_lossy(raw)
        .chars()
        .take(max)
        .map(|c| {
            if c.is_ascii_graphic() && c != '%' || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_printable_ascii_without_percent_survives() {
        assert_eq!(printable("a 一Ā%s\r\n\0b".as_bytes(), 64), "a ???s???b");
        assert_eq!(printable(b"abcdef", 3), "abc");
        assert_eq!(printable(&[0xff, b'x'], 8), "?x");
    }
}
