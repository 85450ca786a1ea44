//! Just enough of an HTTP/1.1 client for the story: one request per connection, JSON in and
//! out, bounded by a timeout. (Keeps the demo free of an HTTP client dependency and of curl.)

use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest a request may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(5);

/// `method` `path` on `base` (`http://host:port`); the status and the JSON body.
pub async fn request(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    tokio::time::timeout(TIMEOUT, exchange(base, method, path, body))
        .await
        .map_err(|_| format!("{method} {base}{path}: no answer within {TIMEOUT:?}"))?
        .map_err(|e| format!("{method} {base}{path}: {e}"))
}

async fn exchange(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let host = base
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?
        .trim_end_matches('/');
    let mut stream = TcpStream::connect(host).await.map_err(|e| e.to_string())?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    stream
        .read_to_end(&mut reply)
        .await
        .map_err(|e| e.to_string())?;
    let reply = String::from_utf8(reply).map_err(|_| "the reply is not UTF-8")?;
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .ok_or("the reply has no end of headers")?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Err("chunked replies are not supported".into());
    }
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let json = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    Ok((status, json))
}
