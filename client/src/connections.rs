//! Connection wiring: opening the command connection (one server or a cluster), and what
//! the caches made from one builder share: that connection and the subscription.

use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::l2::{Connection, L2};
use crate::nodes::Nodes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::{ConnectionInfo, ProtocolVersion};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Where the cache's Redis is.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Single(redis::Client),
    /// Seed nodes of a Redis Cluster.
    Cluster(Vec<ConnectionInfo>),
}

/// `info` speaking RESP3: redis-rs then notices a closed connection at once and reconnects,
/// instead of on the next command.
fn resp3(info: &ConnectionInfo) -> ConnectionInfo {
    info.clone().set_redis_settings(
        info.redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3),
    )
}

/// An open command connection.
pub(crate) struct Opened {
    pub(crate) con: Connection,
    /// Where the subscription may connect.
    pub(crate) nodes: Nodes,
    /// The database the cache works in.
    pub(crate) db: u32,
    /// The server's address (for a cluster, the seeds'), for error messages.
    pub(crate) label: String,
}

/// Opens the command connection to `target`; `timeout` bounds connecting and each command.
pub(crate) async fn open(target: Target, timeout: Duration) -> Result<Opened> {
    match target {
        Target::Single(client) => {
            let info = client.get_connection_info().clone();
            let db = u32::try_from(info.redis_settings().db())
                .map_err(|_| Error::Config("negative database number".into()))?;
            let manager_config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1)
                .set_max_delay(timeout);
            let con = ConnectionManager::new_with_config(
                redis::Client::open(resp3(&info))?,
                manager_config,
            )
            .await?;
            Ok(Opened {
                con: Connection::Single(con),
                nodes: Nodes::single(resp3(&info)),
                db,
                label: info.addr().to_string(),
            })
        }
        Target::Cluster(seeds) => {
            if seeds.is_empty() {
                return Err(Error::Config("no cluster node given".into()));
            }
            if seeds.iter().any(|s| s.redis_settings().db() != 0) {
                return Err(Error::Config("a Redis Cluster has only database 0".into()));
            }
            let client = ClusterClientBuilder::new(seeds.clone())
                .use_protocol(ProtocolVersion::RESP3)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .build()?;
            let con = client.get_async_connection().await?;
            let label = seeds
                .iter()
                .map(|s| s.addr().to_string())
                .collect::<Vec<_>>()
                .join(",");
            let seeds = seeds.iter().map(resp3).collect();
            Ok(Opened {
                con: Connection::Cluster(con),
                nodes: Nodes::cluster(seeds),
                db: 0,
                label,
            })
        }
    }
}

/// What the caches made from one builder share: the Redis connection and the subscription
/// (which stops when this is dropped).
pub(crate) struct Connections {
    l2: L2,
    hub: Arc<Hub>,
    db: u32,
    shutdown: watch::Sender<bool>,
}

impl Connections {
    pub(crate) fn new(l2: L2, hub: Arc<Hub>, db: u32, shutdown: watch::Sender<bool>) -> Self {
        Self {
            l2,
            hub,
            db,
            shutdown,
        }
    }

    pub(crate) fn l2(&self) -> &L2 {
        &self.l2
    }

    pub(crate) fn hub(&self) -> &Hub {
        &self.hub
    }

    pub(crate) fn db(&self) -> u32 {
        self.db
    }
}

impl Drop for Connections {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
