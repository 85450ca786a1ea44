//! Where the subscription may connect: one server, or any node of a cluster (every node
//! receives every event over the cluster bus), learnt from the seeds and from `CLUSTER SLOTS`.

use redis::{ConnectionAddr, ConnectionInfo, Value};

/// The servers the subscription tries, in turn.
#[derive(Debug, Clone)]
pub(crate) struct Nodes {
    known: Vec<ConnectionInfo>,
    next: usize,
    /// Cluster mode: learn more nodes from `CLUSTER SLOTS`, check `cluster_state`.
    pub(crate) cluster: bool,
}

impl Nodes {
    pub(crate) fn single(info: ConnectionInfo) -> Self {
        Self {
            known: vec![info],
            next: 0,
            cluster: false,
        }
    }

    pub(crate) fn cluster(seeds: Vec<ConnectionInfo>) -> Self {
        Self {
            known: seeds,
            next: 0,
            cluster: true,
        }
    }

    /// The node to try now; each call moves on to the next one.
    pub(crate) fn next(&mut self) -> Option<ConnectionInfo> {
        let info = self.known.get(self.next % self.known.len().max(1))?.clone();
        self.next = self.next.wrapping_add(1);
        Some(info)
    }

    /// Adds the nodes of a `CLUSTER SLOTS` reply not known yet (with the seeds' settings:
    /// credentials, protocol, TLS).
    pub(crate) fn learn(&mut self, reply: &Value) {
        let Some(template) = self.known.first().cloned() else {
            return;
        };
        for (host, port) in slot_nodes(reply) {
            if self.known.iter().any(|k| same_node(k.addr(), &host, port)) {
                continue;
            }
            let addr = match template.addr() {
                ConnectionAddr::TcpTls {
                    insecure,
                    tls_params,
                    ..
                } => ConnectionAddr::TcpTls {
                    host,
                    port,
                    insecure: *insecure,
                    tls_params: tls_params.clone(),
                },
                _ => ConnectionAddr::Tcp(host, port),
            };
            self.known.push(template.clone().set_addr(addr));
        }
    }

    /// The connection settings of the seeds (credentials, protocol, TLS) for `host:port`.
    pub(crate) fn info_for(&self, host: &str, port: u16) -> Option<ConnectionInfo> {
        let template = self.known.first()?.clone();
        let addr = match template.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: host.to_string(),
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host.to_string(), port),
        };
        Some(template.set_addr(addr))
    }

    /// Nodes known.
    pub(crate) fn len(&self) -> usize {
        self.known.len()
    }
}

fn same_node(addr: &ConnectionAddr, host: &str, port: u16) -> bool {
    match addr {
        ConnectionAddr::Tcp(h, p)
        | ConnectionAddr::TcpTls {
            host: h, port: p, ..
        } => h == host && *p == port,
        _ => false,
    }
}

/// Every (host, port) in a `CLUSTER SLOTS` reply: `[[start, end, [host, port, id, ...],
/// replica...], ...]`. Entries of another shape are skipped.
pub(crate) fn slot_nodes(reply: &Value) -> Vec<(String, u16)> {
    let mut nodes = Vec::new();
    let Value::Array(ranges) = reply else {
        return nodes;
    };
    for range in ranges {
        let Value::Array(fields) = range else {
            continue;
        };
        for node in fields.iter().skip(2) {
            let Value::Array(node) = node else {
                continue;
            };
            let host = match node.first() {
                Some(Value::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
                Some(Value::SimpleString(h)) => h.clone(),
                _ => continue,
            };
            let port = match node.get(1) {
                Some(Value::Int(p)) => u16::try_from(*p).ok(),
                _ => None,
            };
            if let Some(port) = port.filter(|_| !host.is_empty() && host != "?") {
                if !nodes.contains(&(host.clone(), port)) {
                    nodes.push((host, port));
                }
            }
        }
    }
    nodes
}

/// A shard as `CLUSTER SLOTS` shows it: its primary and the lowest slot it serves (which
/// names the shard's event channel, [`hybridcache_protocol::shard`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shard {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) lowest_slot: u16,
}

/// The shards of a `CLUSTER SLOTS` reply, one per primary, in the order of their lowest
/// slot.
pub(crate) fn shards(reply: &Value) -> Vec<Shard> {
    let mut shards: Vec<Shard> = Vec::new();
    let Value::Array(ranges) = reply else {
        return shards;
    };
    for range in ranges {
        let Value::Array(fields) = range else {
            continue;
        };
        let (Some(Value::Int(start)), Some(Value::Array(primary))) =
            (fields.first(), fields.get(2))
        else {
            continue;
        };
        let Ok(start) = u16::try_from(*start) else {
            continue;
        };
        let host = match primary.first() {
            Some(Value::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
            Some(Value::SimpleString(h)) => h.clone(),
            _ => continue,
        };
        let Some(port) = (match primary.get(1) {
            Some(Value::Int(p)) => u16::try_from(*p).ok(),
            _ => None,
        }) else {
            continue;
        };
        if host.is_empty() || host == "?" {
            continue;
        }
        match shards.iter_mut().find(|s| s.host == host && s.port == port) {
            Some(shard) => shard.lowest_slot = shard.lowest_slot.min(start),
            None => shards.push(Shard {
                host,
                port,
                lowest_slot: start,
            }),
        }
    }
    shards.sort_by_key(|s| s.lowest_slot);
    shards
}

/// Whether a `CLUSTER INFO` reply says the cluster serves requests.
pub(crate) fn cluster_state_ok(info: &str) -> bool {
    info.lines()
        .any(|line| line.trim_end() == "cluster_state:ok")
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::IntoConnectionInfo;

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    fn slots() -> Value {
        Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("127.0.0.1", 7000),
                node("127.0.0.1", 7003),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(16383),
                node("127.0.0.1", 7001),
                node("?", 7009),
                Value::Nil,
            ]),
        ])
    }

    #[test]
    fn slot_nodes_lists_primaries_and_replicas_once() {
        assert_eq!(
            slot_nodes(&slots()),
            [
                ("127.0.0.1".to_string(), 7000),
                ("127.0.0.1".to_string(), 7003),
                ("127.0.0.1".to_string(), 7001)
            ]
        );
        assert!(slot_nodes(&Value::Nil).is_empty());
        assert!(slot_nodes(&Value::Array(vec![Value::Int(1)])).is_empty());
    }

    #[test]
    fn learnt_nodes_are_tried_in_turn_after_the_seeds() {
        let seed = "redis://:secret@127.0.0.1:7000/"
            .into_connection_info()
            .unwrap();
        let mut nodes = Nodes::cluster(vec![seed]);
        nodes.learn(&slots());
        assert_eq!(nodes.len(), 3);
        let order: Vec<String> = (0..4)
            .map(|_| nodes.next().unwrap().addr().to_string())
            .collect();
        assert_eq!(
            order,
            [
                "127.0.0.1:7000",
                "127.0.0.1:7003",
                "127.0.0.1:7001",
                "127.0.0.1:7000"
            ]
        );
        let learnt = nodes.next().unwrap();
        assert_eq!(learnt.redis_settings().password(), Some("secret"));
    }

    #[test]
    fn shards_are_primaries_with_their_lowest_slot() {
        let mut reply = slots();
        if let Value::Array(ranges) = &mut reply {
            // A second range of the first primary, below its first one.
            ranges.insert(
                0,
                Value::Array(vec![
                    Value::Int(9000),
                    Value::Int(9001),
                    node("127.0.0.1", 7001),
                ]),
            );
        }
        assert_eq!(
            shards(&reply),
            [
                Shard {
                    host: "127.0.0.1".into(),
                    port: 7000,
                    lowest_slot: 0
                },
                Shard {
                    host: "127.0.0.1".into(),
                    port: 7001,
                    lowest_slot: 5461
                },
            ]
        );
        assert!(shards(&Value::Nil).is_empty());
    }

    #[test]
    fn cluster_state_is_read_from_cluster_info() {
        assert!(cluster_state_ok(
            "cluster_enabled:1\r\ncluster_state:ok\r\n"
        ));
        assert!(!cluster_state_ok("cluster_state:fail\r\n"));
        assert!(!cluster_state_ok(""));
    }
}
