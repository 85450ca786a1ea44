//! A raw RESP2 client: any byte strings as arguments, and replies read byte by byte as the
//! server sent them, each checked to be well-formed RESP.
//!
//! Where redis-rs is the right client for ordinary tests, this one is for tests that judge
//! the wire itself: a fuzzer that sends empty, binary or NUL-bearing arguments and checks
//! every byte of every reply (`tests/command_fuzz/`), or a checker of what a subscriber
//! receives. A reply that is not RESP is an `Err` naming what is wrong, never a guess.
//!
//! ```no_run
//! use hybridcache_tests::resp::{words, Reply, RespConnection};
//!
//! # let port = 0;
//! let mut con = RespConnection::connect(port);
//! let reply = con.call(&words(&["PING"])).unwrap();
//! assert_eq!(reply, Reply::Status(b"PONG".to_vec()));
//! // A pipeline: send several commands, then read as many replies.
//! con.send(&[&words(&["SET", "k", "v"]), &[b"GET".to_vec(), b"k".to_vec()]]).unwrap();
//! assert_eq!(con.read().unwrap(), Reply::Status(b"OK".to_vec()));
//! assert_eq!(con.read().unwrap(), Reply::Bulk(Some(b"v".to_vec())));
//! ```

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long one reply (and one write) may take before the server is considered hung.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+...`: a simple string.
    Status(Vec<u8>),
    /// `-...`: an error, its code and message.
    Error(Vec<u8>),
    /// `:...`.
    Int(i64),
    /// `$...`: a bulk string, `None` for the nil bulk (`$-1`).
    Bulk(Option<Vec<u8>>),
    /// `*...`: an array, `None` for the nil array (`*-1`).
    Array(Option<Vec<Reply>>),
}

/// A client connection speaking raw RESP2 to a server on the loopback interface.
#[derive(Debug)]
pub struct RespConnection {
    reader: BufReader<TcpStream>,
}

impl RespConnection {
    /// Connects to `127.0.0.1:port`, with [`REPLY_TIMEOUT`] on reads and writes.
    ///
    /// # Panics
    /// When the connection cannot be made.
    pub fn connect(port: u16) -> RespConnection {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("cannot connect to port {port}: {e}"));
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(REPLY_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        RespConnection {
            reader: BufReader::with_capacity(64 * 1024, stream),
        }
    }

    /// Writes `commands`, each given as its words, in one go (a pipeline when there are
    /// several); read their replies with [`read`](Self::read).
    pub fn send(&mut self, commands: &[&[Vec<u8>]]) -> Result<(), String> {
        self.reader
            .get_mut()
            .write_all(&encode_commands(commands))
            .map_err(|e| format!("write failed: {e}"))
    }

    /// Reads one reply; `Err` when the connection failed or the bytes are not RESP.
    pub fn read(&mut self) -> Result<Reply, String> {
        read_reply(&mut self.reader)
    }

    /// Sends one command and reads its reply.
    pub fn call(&mut self, words: &[Vec<u8>]) -> Result<Reply, String> {
        self.send(&[words])?;
        self.read()
    }
}

/// `commands` as RESP arrays of bulk strings, one after the other.
pub fn encode_commands(commands: &[&[Vec<u8>]]) -> Vec<u8> {
    let mut out = Vec::new();
    for words in commands {
        out.extend_from_slice(format!("*{}\r\n", words.len()).as_bytes());
        for word in words.iter() {
            out.extend_from_slice(format!("${}\r\n", word.len()).as_bytes());
            out.extend_from_slice(word);
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// Reads one reply from `reader`; `Err` when reading failed or the bytes are not RESP2
/// (a line not ended by CRLF, an unknown type byte, a length that is not a number, a bulk
/// not followed by CRLF).
pub fn read_reply(reader: &mut impl BufRead) -> Result<Reply, String> {
    let line = read_line(reader)?;
    let (kind, rest) = line
        .split_first()
        .ok_or_else(|| "empty reply line".to_string())?;
    match kind {
        b'+' => Ok(Reply::Status(rest.to_vec())),
        b'-' => Ok(Reply::Error(rest.to_vec())),
        b':' => Ok(Reply::Int(number(rest)?)),
        b'$' => {
            let len = number(rest)?;
            if len < 0 {
                return Ok(Reply::Bulk(None));
            }
            let mut body = vec![0; len as usize + 2];
            reader
                .read_exact(&mut body)
                .map_err(|e| format!("read of a {len}-byte bulk failed: {e}"))?;
            if !body.ends_with(b"\r\n") {
                return Err(format!("bulk of {len} bytes not ended by CRLF"));
            }
            body.truncate(len as usize);
            Ok(Reply::Bulk(Some(body)))
        }
        b'*' => {
            let len = number(rest)?;
            if len < 0 {
                return Ok(Reply::Array(None));
            }
            let items = (0..len)
                .map(|_| read_reply(reader))
                .collect::<Result<_, _>>()?;
            Ok(Reply::Array(Some(items)))
        }
        _ => Err(format!("unknown reply type: {:?}", show(&line))),
    }
}

/// One CRLF-ended line, without its CRLF.
fn read_line(reader: &mut impl BufRead) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    let n = reader
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("read failed: {e}"))?;
    if n == 0 {
        return Err("the server closed the connection".into());
    }
    if !line.ends_with(b"\r\n") {
        return Err(format!("reply line not ended by CRLF: {:?}", show(&line)));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn number(text: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| format!("not a RESP integer: {:?}", show(text)))
}

/// The words of a command given as text.
pub fn words(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|w| w.as_bytes().to_vec()).collect()
}

/// Bytes for a message: lossy, escaped, cut to 120 characters.
pub fn show(bytes: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(&bytes[..bytes.len().min(120)])
        .escape_debug()
        .collect();
    if bytes.len() > 120 {
        format!("{text}...({} bytes)", bytes.len())
    } else {
        text
    }
}

/// A command for a message: its first eight words, [`show`]n, and how many there are.
pub fn describe(words: &[Vec<u8>]) -> String {
    let shown: Vec<String> = words.iter().take(8).map(|w| show(w)).collect();
    let more = if words.len() > 8 {
        format!(" ...({} args)", words.len())
    } else {
        String::new()
    };
    format!("[{}]{more}", shown.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(mut bytes: &[u8]) -> Result<Reply, String> {
        read_reply(&mut bytes)
    }

    fn bulk(text: &str) -> Reply {
        Reply::Bulk(Some(text.as_bytes().to_vec()))
    }

    #[test]
    fn commands_are_encoded_as_arrays_of_bulk_strings_byte_for_byte() {
        let set = vec![b"SET".to_vec(), b"k\0\r\n".to_vec(), Vec::new()];
        let ping = words(&["PING"]);
        assert_eq!(
            encode_commands(&[&set, &ping]),
            b"*3\r\n$3\r\nSET\r\n$4\r\nk\0\r\n\r\n$0\r\n\r\n*1\r\n$4\r\nPING\r\n"
        );
    }

    #[test]
    fn every_reply_type_is_read_with_its_bytes_as_sent() {
        assert_eq!(parse(b"+OK\r\n"), Ok(Reply::Status(b"OK".to_vec())));
        assert_eq!(parse(b"-ERR no\r\n"), Ok(Reply::Error(b"ERR no".to_vec())));
        assert_eq!(parse(b":-42\r\n"), Ok(Reply::Int(-42)));
        assert_eq!(parse(b"$5\r\na\r\n\0b\r\n"), Ok(bulk("a\r\n\0b")));
        assert_eq!(parse(b"$0\r\n\r\n"), Ok(bulk("")));
        assert_eq!(parse(b"$-1\r\n"), Ok(Reply::Bulk(None)));
        assert_eq!(parse(b"*-1\r\n"), Ok(Reply::Array(None)));
        assert_eq!(parse(b"*0\r\n"), Ok(Reply::Array(Some(Vec::new()))));
        assert_eq!(
            parse(b"*2\r\n$1\r\nx\r\n*1\r\n:7\r\n"),
            Ok(Reply::Array(Some(vec![
                bulk("x"),
                Reply::Array(Some(vec![Reply::Int(7)]))
            ])))
        );
    }

    #[test]
    fn a_pipeline_of_replies_is_read_one_at_a_time() {
        let mut bytes: &[u8] = b"+OK\r\n:1\r\n$-1\r\n";
        assert_eq!(read_reply(&mut bytes), Ok(Reply::Status(b"OK".to_vec())));
        assert_eq!(read_reply(&mut bytes), Ok(Reply::Int(1)));
        assert_eq!(read_reply(&mut bytes), Ok(Reply::Bulk(None)));
        assert_eq!(
            read_reply(&mut bytes),
            Err("the server closed the connection".to_string())
        );
    }

    #[test]
    fn bytes_that_are_not_resp_are_errors_that_say_why() {
        let cases: [(&[u8], &str); 8] = [
            (b"", "the server closed the connection"),
            (b"+OK\n", "reply line not ended by CRLF"),
            (b"+OK", "reply line not ended by CRLF"),
            (b"\r\n", "empty reply line"),
            (b"?x\r\n", "unknown reply type"),
            (b":1.5\r\n", "not a RESP integer"),
            (b"$3\r\nabcd\r\n", "bulk of 3 bytes not ended by CRLF"),
            (b"$10\r\nabc\r\n", "read of a 10-byte bulk failed"),
        ];
        for (bytes, why) in cases {
            match parse(bytes) {
                Err(e) => assert!(e.starts_with(why), "{bytes:?}: {e}"),
                Ok(reply) => panic!("{bytes:?} read as {reply:?}"),
            }
        }
        assert!(parse(b"*2\r\n:1\r\n").is_err(), "an array cut short");
    }

    #[test]
    fn messages_show_bytes_escaped_and_cut() {
        assert_eq!(show(b"a\0\n"), "a\\0\\n");
        let long = show(&[b'x'; 200]);
        assert!(long.starts_with(&"x".repeat(120)) && long.ends_with("...(200 bytes)"));
        let many: Vec<Vec<u8>> = (0..10).map(|i| vec![b'0' + i]).collect();
        assert_eq!(describe(&many), "[0, 1, 2, 3, 4, 5, 6, 7] ...(10 args)");
        assert_eq!(describe(&words(&["GET", "k"])), "[GET, k]");
    }
}
