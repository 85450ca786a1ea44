//! A Redis Cluster of real `redis-server` processes, each a [`RedisServer`] (module loaded,
//! own temporary directory, killed on drop), formed with plain `CLUSTER` commands; with
//! failover and resharding helpers that wait until every node agrees again.
//!
//! A cluster is expensive: 3 primaries with 1 replica each is 6 processes and about 2 s
//! of startup (a primary waits 2 s after boot before it declares the cluster ok). Tests
//! that do not need failover can use `replicas(0)`.

use crate::hc::error_text;
use crate::info::{info_section, parse_info};
use crate::ports::free_cluster_port;
use crate::server::{RedisServer, ServerBuilder};
use redis::{Connection, FromRedisValue, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// `cluster-node-timeout` of the nodes, in milliseconds: a primary is considered failed
/// this long after it stops answering, and a replica takes over about a second later. A
/// node blocked for longer (a long command on a loaded machine) is failed over too; a test
/// that blocks nodes on purpose raises it with `.arg("--cluster-node-timeout")`.
pub const NODE_TIMEOUT_MS: u64 = 1000;

/// How long forming the cluster, a failover or the convergence after a slot migration may
/// take.
pub const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);

/// Interval between two polls of the nodes' state.
const CLUSTER_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Keys moved by one `MIGRATE`.
const MIGRATE_BATCH: usize = 100;

/// `MIGRATE` timeout, in milliseconds.
const MIGRATE_TIMEOUT_MS: u64 = 10_000;

/// The `redis-server` arguments of every node, before the caller's (which override them).
///
/// `cluster-require-full-coverage no`: when a primary fails, only its slots are unavailable
/// until the failover, as a client sees it when one shard goes down; the other shards keep
/// serving. (The harness checks slot coverage itself instead of trusting `cluster_state`.)
/// `cluster-replica-validity-factor 0`: a replica always takes over, however long it was
/// disconnected, so that failover does not depend on timing.
const CLUSTER_ARGS: [&str; 10] = [
    "--cluster-enabled",
    "yes",
    "--cluster-config-file",
    "nodes.conf",
    "--cluster-node-timeout",
    "1000",
    "--cluster-require-full-coverage",
    "no",
    "--cluster-replica-validity-factor",
    "0",
];

/// The hash slot of `key`: CRC16 (XMODEM) of the key, or of its hash tag (the part between
/// the first `{` and the next `}`, when not empty), modulo 16384 — the protocol crate's, which
/// the module and the client use for shard channels.
pub fn key_slot(key: impl AsRef<[u8]>) -> u16 {
    hybridcache_protocol::shard::key_slot(key.as_ref())
}

/// Configures a [`RedisCluster`] before starting it (defaults: 3 primaries, 1 replica
/// each, the module loaded on every node).
///
/// ```no_run
/// use hybridcache_tests::RedisCluster;
/// let cluster = RedisCluster::builder()
///     .primaries(3)
///     .replicas(1)
///     .arg("--maxmemory").arg("10mb")
///     .module_arg("CHANNEL").module_arg("my:channel")
///     .start();
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until start() is called"]
pub struct ClusterBuilder {
    primaries: usize,
    replicas: usize,
    server: ServerBuilder,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        Self {
            primaries: 3,
            replicas: 1,
            server: RedisServer::builder()
                .pick_port_with(free_cluster_port)
                .args(CLUSTER_ARGS),
        }
    }
}

impl ClusterBuilder {
    /// Number of primaries; the slots are split evenly between them.
    pub fn primaries(mut self, primaries: usize) -> Self {
        self.primaries = primaries;
        self
    }

    /// Number of replicas of each primary.
    pub fn replicas(mut self, replicas_per_primary: usize) -> Self {
        self.replicas = replicas_per_primary;
        self
    }

    /// Appends one `redis-server` argument for every node (after the harness and cluster
    /// defaults, so it overrides them).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.server = self.server.arg(arg);
        self
    }

    /// Appends several `redis-server` arguments for every node.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.server = self.server.args(args);
        self
    }

    /// Appends one argument of every node's `--loadmodule <path> ...`.
    pub fn module_arg(mut self, arg: impl Into<String>) -> Self {
        self.server = self.server.module_arg(arg);
        self
    }

    /// Loads this module library instead of [`module_path()`](crate::module_path()).
    pub fn module_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.server = self.server.module_path(path);
        self
    }

    /// Starts plain Redis nodes, without the module.
    pub fn without_module(mut self) -> Self {
        self.server = self.server.without_module();
        self
    }

    /// Starts the nodes, assigns the slots, joins the nodes and attaches the replicas, and
    /// waits until the cluster is consistent ([`RedisCluster::wait_until_consistent`]).
    ///
    /// Nodes `0..primaries` are the primaries, in slot order; node `primaries + j` is a
    /// replica of primary `j % primaries`.
    ///
    /// # Panics
    /// When there is no primary or more primaries than slots, when a node does not start,
    /// or when the cluster does not form within [`CLUSTER_TIMEOUT`] (the message quotes
    /// every node's view and log).
    pub fn start(self) -> RedisCluster {
        let primaries = self.primaries;
        assert!(
            (1..=usize::from(SLOTS)).contains(&primaries),
            "a cluster needs between 1 and {SLOTS} primaries, not {primaries}"
        );
        let count = primaries * (1 + self.replicas);
        let nodes: Vec<RedisServer> = (0..count).map(|_| self.server.clone().start()).collect();
        let ids = nodes
            .iter()
            .map(|node| node_query::<String>(node, redis::cmd("CLUSTER").arg("MYID")))
            .collect();
        let cluster = RedisCluster { nodes, ids };

        for (i, primary) in cluster.nodes[..primaries].iter().enumerate() {
            let (first, last) = slot_share(i, primaries);
            // Distinct epochs up front, as redis-cli does: no epoch collision to resolve.
            let epoch = i + 1;
            node_query::<()>(
                primary,
                redis::cmd("CLUSTER").arg("SET-CONFIG-EPOCH").arg(epoch),
            );
            node_query::<()>(
                primary,
                redis::cmd("CLUSTER")
                    .arg("ADDSLOTSRANGE")
                    .arg(first)
                    .arg(last),
            );
        }
        let first_port = cluster.nodes[0].port();
        for node in &cluster.nodes[1..] {
            node_query::<()>(
                node,
                redis::cmd("CLUSTER")
                    .arg("MEET")
                    .arg("127.0.0.1")
                    .arg(first_port),
            );
        }
        cluster.wait_for("every node to know every other node", || {
            cluster.nodes.iter().try_for_each(|node| {
                let view = cluster.view(node)?;
                cluster.sees_all_running(node, &view)
            })
        });
        for (j, replica) in cluster.nodes[primaries..].iter().enumerate() {
            let primary_id = &cluster.ids[j % primaries];
            node_query::<()>(
                replica,
                redis::cmd("CLUSTER").arg("REPLICATE").arg(primary_id),
            );
        }
        cluster.wait_until_consistent();
        cluster
    }
}

/// Slots `first..=last` of primary `i` of `primaries` (an even split).
fn slot_share(i: usize, primaries: usize) -> (usize, usize) {
    let slots = usize::from(SLOTS);
    (i * slots / primaries, (i + 1) * slots / primaries - 1)
}

/// A Redis Cluster of [`RedisServer`]s on loopback. Every node is killed on drop.
///
/// Roles change with failovers: [`primaries`](Self::primaries) and
/// [`replicas`](Self::replicas) read them from the running nodes, and the slot owners come
/// from the nodes' live `CLUSTER NODES`.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    /// `CLUSTER MYID` of each node, in the order of `nodes`.
    ids: Vec<String>,
}

impl RedisCluster {
    /// A builder for a cluster with non-default settings.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// Starts `primaries` primaries with `replicas_per_primary` replicas each (see
    /// [`ClusterBuilder::start`]).
    pub fn start(primaries: usize, replicas_per_primary: usize) -> RedisCluster {
        Self::builder()
            .primaries(primaries)
            .replicas(replicas_per_primary)
            .start()
    }

    /// Every node, in start order, including those killed since.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Node `index` (in start order).
    ///
    /// # Panics
    /// When there is no such node.
    pub fn node(&self, index: usize) -> &RedisServer {
        self.nodes
            .get(index)
            .unwrap_or_else(|| panic!("the cluster has {} nodes, not {index}+1", self.len()))
    }

    /// Node `index`, to kill or restart it (a restarted node keeps its port, directory and
    /// `nodes.conf`, so it rejoins the cluster).
    ///
    /// # Panics
    /// When there is no such node.
    pub fn node_mut(&mut self, index: usize) -> &mut RedisServer {
        let len = self.len();
        self.nodes
            .get_mut(index)
            .unwrap_or_else(|| panic!("the cluster has {len} nodes, not {index}+1"))
    }

    /// Number of nodes, running or not.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no node (never: it has at least one primary).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The nodes whose process the harness has not killed or shut down.
    pub fn running_nodes(&self) -> Vec<&RedisServer> {
        self.nodes.iter().filter(|n| n.pid().is_some()).collect()
    }

    /// The running nodes that are primaries now (`role:master`).
    pub fn primaries(&self) -> Vec<&RedisServer> {
        self.with_role("master")
    }

    /// The running nodes that are replicas now (`role:slave`).
    pub fn replicas(&self) -> Vec<&RedisServer> {
        self.with_role("slave")
    }

    /// The running nodes that replicate `primary` now.
    pub fn replicas_of(&self, primary: &RedisServer) -> Vec<&RedisServer> {
        let port = primary.port().to_string();
        self.running_nodes()
            .into_iter()
            .filter(|node| {
                let info = node.info("replication");
                info.get("role").map(String::as_str) == Some("slave")
                    && info.get("master_port") == Some(&port)
            })
            .collect()
    }

    /// The position of `server` in [`nodes`](Self::nodes).
    ///
    /// # Panics
    /// When `server` is not a node of this cluster.
    pub fn index_of(&self, server: &RedisServer) -> usize {
        self.nodes
            .iter()
            .position(|node| node.port() == server.port())
            .unwrap_or_else(|| {
                panic!(
                    "the server on port {} is not a node of this cluster",
                    server.port()
                )
            })
    }

    /// The cluster node id of `server` (`CLUSTER MYID`, 40 hex digits).
    ///
    /// # Panics
    /// When `server` is not a node of this cluster.
    pub fn node_id(&self, server: &RedisServer) -> &str {
        &self.ids[self.index_of(server)]
    }

    /// The hash slot of `key` (see [`key_slot`]).
    pub fn slot_of(key: impl AsRef<[u8]>) -> u16 {
        key_slot(key)
    }

    /// The primary that owns `slot`, as the first running node sees it now.
    ///
    /// # Panics
    /// When no running node answers, or the slot has no owner among the nodes.
    pub fn slot_owner(&self, slot: u16) -> &RedisServer {
        let observer = *self
            .running_nodes()
            .first()
            .unwrap_or_else(|| panic!("no node of the cluster is running"));
        let view = self
            .view(observer)
            .unwrap_or_else(|e| panic!("{e}\n{}", observer.log_tail()));
        let owner = view
            .iter()
            .find(|entry| entry.owns(slot))
            .unwrap_or_else(|| {
                panic!(
                    "node on port {} sees no owner of slot {slot}\n{}",
                    observer.port(),
                    self.state_report()
                )
            });
        self.node_by_id(&owner.id)
    }

    /// The primary that owns the slot of `key` (see [`slot_owner`](Self::slot_owner)).
    pub fn node_for_key(&self, key: &str) -> &RedisServer {
        self.slot_owner(key_slot(key))
    }

    /// The `redis://` URL of every running node, for a cluster client.
    pub fn urls(&self) -> Vec<String> {
        self.running_nodes()
            .into_iter()
            .map(RedisServer::url)
            .collect()
    }

    /// Kills primary `index` (SIGKILL) and waits until one of its replicas has taken over
    /// and the cluster is consistent again; returns the promoted node. Takes about 2-3 s
    /// (failure detection after [`NODE_TIMEOUT_MS`], then the election).
    ///
    /// Replication is asynchronous: a write the replica had not received when the primary
    /// died is lost, as in production (a write a few milliseconds old can be). A test that
    /// needs its writes to survive sends `WAIT 1 <ms>` to the primary first.
    ///
    /// # Panics
    /// When node `index` is not a running primary with a replica, or the failover does not
    /// complete within [`CLUSTER_TIMEOUT`].
    pub fn kill_primary_and_wait_failover(&mut self, index: usize) -> &RedisServer {
        let victim = self.node(index);
        let port = victim.port();
        assert!(
            victim.pid().is_some(),
            "node {index} (port {port}) is not running"
        );
        let role = victim.info("replication").get("role").cloned();
        assert_eq!(
            role.as_deref(),
            Some("master"),
            "node {index} (port {port}) is not a primary"
        );
        let candidates: Vec<usize> = self
            .replicas_of(victim)
            .into_iter()
            .map(|replica| self.index_of(replica))
            .collect();
        assert!(
            !candidates.is_empty(),
            "primary {index} (port {port}) has no replica to take over\n{}",
            self.state_report()
        );
        let victim_id = self.ids[index].clone();
        let slots: Vec<u16> = self
            .view(self.node(index))
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .find(|entry| entry.id == victim_id)
            .map(|entry| entry.ranges.iter().map(|&(first, _)| first).collect())
            .unwrap_or_default();

        self.node_mut(index).kill();
        let promoted = self.wait_for(
            &format!("a replica of the killed primary {index} (port {port}) to be promoted"),
            || {
                candidates
                    .iter()
                    .copied()
                    .find(|&i| role_of(self.node(i)) == "master")
                    .ok_or_else(|| format!("no promotion yet among nodes {candidates:?}"))
            },
        );
        self.wait_until_consistent();
        let promoted_id = self.ids[promoted].clone();
        for slot in slots {
            let owner = self.slot_owner(slot).port();
            assert_eq!(
                owner,
                self.node(promoted).port(),
                "slot {slot} of the killed primary went to port {owner}, not to the promoted node {promoted_id}"
            );
        }
        self.node(promoted)
    }

    /// Moves `slot` and its keys from primary `from` to primary `to`, the way `redis-cli
    /// --cluster reshard` does: `IMPORTING` on `to`, `MIGRATING` on `from`, `MIGRATE` of
    /// every key (until `CLUSTER GETKEYSINSLOT` finds none, so concurrent writers are fine:
    /// they follow `ASK` redirections to `to`), then `SETSLOT ... NODE` on every primary,
    /// and waits until every node agrees that `to` owns the slot.
    ///
    /// # Panics
    /// When `from` does not own the slot, a command fails, or the nodes do not agree within
    /// [`CLUSTER_TIMEOUT`].
    pub fn migrate_slot(&self, slot: u16, from: &RedisServer, to: &RedisServer) {
        assert!(slot < SLOTS, "there is no slot {slot}");
        assert_ne!(
            from.port(),
            to.port(),
            "migrate_slot: source and target are one node"
        );
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        let from_view = self.view(from).unwrap_or_else(|e| panic!("{e}"));
        let owner = from_view.iter().find(|entry| entry.owns(slot));
        assert!(
            owner.is_some_and(|entry| entry.id == from_id),
            "slot {slot} is not owned by the source (port {}) but by {:?}",
            from.port(),
            owner.map(|entry| entry.port)
        );
        let setslot = |node: &RedisServer, state: &str, id: &str| {
            node_query::<()>(
                node,
                redis::cmd("CLUSTER")
                    .arg("SETSLOT")
                    .arg(slot)
                    .arg(state)
                    .arg(id),
            );
        };
        setslot(to, "IMPORTING", from_id);
        setslot(from, "MIGRATING", to_id);

        let mut source = from.connection();
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        loop {
            loop {
                let keys: Vec<Vec<u8>> = con_query(
                    &mut source,
                    from,
                    redis::cmd("CLUSTER")
                        .arg("GETKEYSINSLOT")
                        .arg(slot)
                        .arg(MIGRATE_BATCH),
                );
                if keys.is_empty() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "slot {slot} still had keys on port {} after {CLUSTER_TIMEOUT:?} of migration",
                    from.port()
                );
                // "OK", or "NOKEY" when the keys were deleted meanwhile.
                let _: Value = con_query(
                    &mut source,
                    from,
                    redis::cmd("MIGRATE")
                        .arg("127.0.0.1")
                        .arg(to.port())
                        .arg("")
                        .arg(0)
                        .arg(MIGRATE_TIMEOUT_MS)
                        .arg("KEYS")
                        .arg(&keys),
                );
            }
            // The target first: it takes the slot with a new config epoch.
            setslot(to, "NODE", to_id);
            let handover = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("NODE")
                .arg(to_id)
                .query::<Value>(&mut source);
            match handover {
                Ok(_) => break,
                // A key arrived after GETKEYSINSLOT (a module writing one itself): move it.
                Err(e)
                    if error_text(&e).contains("still hold keys") && Instant::now() < deadline =>
                {
                    continue
                }
                Err(e) => panic!(
                    "CLUSTER SETSLOT {slot} NODE on the source (port {}) failed: {}\n{}",
                    from.port(),
                    error_text(&e),
                    from.log_tail()
                ),
            }
        }
        for primary in self.primaries() {
            if primary.port() != from.port() && primary.port() != to.port() {
                setslot(primary, "NODE", to_id);
            }
        }
        self.wait_for(
            &format!("every node to see slot {slot} on port {}", to.port()),
            || {
                self.consistency()?;
                self.running_nodes().into_iter().try_for_each(|node| {
                    let view = self.view(node)?;
                    let owner = view.iter().find(|entry| entry.owns(slot));
                    match owner {
                        Some(entry) if entry.id == to_id => Ok(()),
                        other => Err(format!(
                            "node on port {} sees slot {slot} on {:?}",
                            node.port(),
                            other.map(|entry| entry.port)
                        )),
                    }
                })
            },
        );
    }

    /// Waits until every running node reports `cluster_state:ok`, sees every other running
    /// node as healthy, and sees the same slot map, with every slot owned by a running,
    /// non-failed primary; and until every running replica's link to its primary is up.
    ///
    /// # Panics
    /// When that does not happen within [`CLUSTER_TIMEOUT`] (the message quotes every
    /// node's view and log).
    pub fn wait_until_consistent(&self) {
        self.wait_for("the cluster to be consistent", || self.consistency());
    }

    /// Every node's `CLUSTER INFO` state, `CLUSTER NODES` and log tail, for failure
    /// messages.
    pub fn state_report(&self) -> String {
        let mut out = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            out.push_str(&format!(
                "=== node {i}, port {}, id {}\n",
                node.port(),
                self.ids[i]
            ));
            if node.pid().is_none() {
                out.push_str("(not running)\n");
                continue;
            }
            let text = |cmd: &mut redis::Cmd| -> String {
                node.client()
                    .get_connection_with_timeout(Duration::from_secs(1))
                    .and_then(|mut con| cmd.query::<String>(&mut con))
                    .unwrap_or_else(|e| format!("(no answer: {e})"))
            };
            let info = text(redis::cmd("CLUSTER").arg("INFO"));
            let state = parse_info(&info).get("cluster_state").cloned();
            out.push_str(&format!(
                "cluster_state:{}\n",
                state.as_deref().unwrap_or("?")
            ));
            out.push_str(&text(redis::cmd("CLUSTER").arg("NODES")));
            out.push('\n');
            out.push_str(&node.log_tail());
            out.push('\n');
        }
        out
    }

    /// The running nodes whose `INFO replication` role is `role`.
    fn with_role(&self, role: &str) -> Vec<&RedisServer> {
        self.running_nodes()
            .into_iter()
            .filter(|node| role_of(node) == role)
            .collect()
    }

    /// The node with cluster id `id`.
    fn node_by_id(&self, id: &str) -> &RedisServer {
        let index = self
            .ids
            .iter()
            .position(|known| known == id)
            .unwrap_or_else(|| panic!("node id {id} is not one of this cluster's nodes"));
        &self.nodes[index]
    }

    /// `node`'s `CLUSTER NODES`, parsed.
    fn view(&self, node: &RedisServer) -> Result<Vec<NodeEntry>, String> {
        view_on(&mut node.connection(), node)
    }

    /// Whether `view` (of `node`) has every running node, healthy and connected.
    fn sees_all_running(&self, node: &RedisServer, view: &[NodeEntry]) -> Result<(), String> {
        for (i, other) in self.nodes.iter().enumerate() {
            if other.pid().is_none() {
                continue;
            }
            let entry = view.iter().find(|entry| entry.id == self.ids[i]);
            match entry {
                Some(entry) if entry.healthy() => {}
                Some(entry) => {
                    return Err(format!(
                        "node on port {} sees port {} as {} ({})",
                        node.port(),
                        other.port(),
                        entry.flags.join(","),
                        if entry.connected {
                            "connected"
                        } else {
                            "disconnected"
                        }
                    ))
                }
                None => {
                    return Err(format!(
                        "node on port {} does not know port {} yet",
                        node.port(),
                        other.port()
                    ))
                }
            }
        }
        Ok(())
    }

    /// `Ok` when the cluster is consistent (see [`wait_until_consistent`]), else why not.
    ///
    /// [`wait_until_consistent`]: Self::wait_until_consistent
    fn consistency(&self) -> Result<(), String> {
        let running: BTreeSet<&str> = self
            .nodes
            .iter()
            .zip(&self.ids)
            .filter(|(node, _)| node.pid().is_some())
            .map(|(_, id)| id.as_str())
            .collect();
        let mut agreed: Option<(u16, Vec<SlotRange>)> = None;
        let mut views: Vec<(u16, Vec<NodeEntry>)> = Vec::new();
        for node in self.running_nodes() {
            let port = node.port();
            // One connection per node and poll: polls must not pile up TIME_WAIT sockets.
            let mut con = node.connection();
            let info: String = con_query(&mut con, node, redis::cmd("CLUSTER").arg("INFO"));
            let state = parse_info(&info).get("cluster_state").cloned();
            if state.as_deref() != Some("ok") {
                return Err(format!(
                    "node on port {port} reports cluster_state:{state:?}"
                ));
            }
            let view = view_on(&mut con, node)?;
            self.sees_all_running(node, &view)?;
            views.push((port, view.clone()));
            let map = slot_map(&view).map_err(|e| format!("node on port {port}: {e}"))?;
            for (first, last, owner) in &map {
                if !running.contains(owner.as_str()) {
                    return Err(format!(
                        "node on port {port} sees slots {first}-{last} on {owner}, which is not running"
                    ));
                }
            }
            match &agreed {
                None => agreed = Some((port, map)),
                Some((other, other_map)) if *other_map != map => {
                    return Err(format!(
                        "nodes on ports {other} and {port} disagree on the slot map: {other_map:?} vs {map:?}"
                    ))
                }
                Some(_) => {}
            }
            let replication = info_section(&mut con, "replication");
            if replication.get("role").map(String::as_str) == Some("slave") {
                let link = replication.get("master_link_status");
                if link.map(String::as_str) != Some("up") {
                    return Err(format!(
                        "replica on port {port} has master_link_status:{link:?}"
                    ));
                }
            }
        }
        // Every node knows which primary each replica follows: a primary sends shard
        // messages (SPUBLISH) only to the replicas it knows of.
        let claims: Vec<(String, String)> = views
            .iter()
            .flat_map(|(_, view)| view.iter())
            .filter(|e| {
                e.flags.iter().any(|f| f == "myself") && e.flags.iter().any(|f| f == "slave")
            })
            .map(|e| (e.id.clone(), e.master.clone()))
            .collect();
        for (port, view) in &views {
            for (replica, master) in &claims {
                let seen = view
                    .iter()
                    .find(|e| &e.id == replica)
                    .map(|e| e.master.as_str());
                if seen != Some(master.as_str()) {
                    return Err(format!(
                        "node on port {port} does not know yet that {replica} replicates {master} (sees {seen:?})"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Polls `check` every [`CLUSTER_POLL_INTERVAL`] until it returns `Ok`.
    ///
    /// # Panics
    /// When [`CLUSTER_TIMEOUT`] passes first: the message names `what`, the last reason
    /// `check` gave, and every node's state.
    fn wait_for<T>(&self, what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
        let started = Instant::now();
        loop {
            match check() {
                Ok(value) => return value,
                Err(reason) if started.elapsed() >= CLUSTER_TIMEOUT => panic!(
                    "timed out after {CLUSTER_TIMEOUT:?} waiting for {what}; last: {reason}\n{}",
                    self.state_report()
                ),
                Err(_) => std::thread::sleep(CLUSTER_POLL_INTERVAL),
            }
        }
    }
}

/// A slot range and the id of the primary that owns it.
type SlotRange = (u16, u16, String);

/// The slot map of a `CLUSTER NODES` view: contiguous ranges, merged per owner.
///
/// # Errors
/// When a slot has no owner, or its owner is failing.
fn slot_map(view: &[NodeEntry]) -> Result<Vec<SlotRange>, String> {
    let mut ranges: Vec<SlotRange> = Vec::new();
    for entry in view {
        for &(first, last) in &entry.ranges {
            if !entry.is_master() || entry.failing() {
                return Err(format!(
                    "slots {first}-{last} are on port {}, flagged {}",
                    entry.port,
                    entry.flags.join(",")
                ));
            }
            ranges.push((first, last, entry.id.clone()));
        }
    }
    ranges.sort();
    let mut merged: Vec<SlotRange> = Vec::new();
    let mut next: u32 = 0;
    for (first, last, owner) in ranges {
        if u32::from(first) != next {
            return Err(format!("slot {next} has no owner"));
        }
        next = u32::from(last) + 1;
        match merged.last_mut() {
            Some(previous) if previous.2 == owner => previous.1 = last,
            _ => merged.push((first, last, owner)),
        }
    }
    if next != u32::from(SLOTS) {
        return Err(format!("slot {next} has no owner"));
    }
    Ok(merged)
}

/// One line of `CLUSTER NODES`:
/// `<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...`
#[derive(Debug, Clone)]
struct NodeEntry {
    id: String,
    port: u16,
    flags: Vec<String>,
    /// The primary's id when the node is a replica (`-` otherwise).
    master: String,
    connected: bool,
    /// Owned slot ranges (migration markers like `[5->-id]` left out).
    ranges: Vec<(u16, u16)>,
}

impl NodeEntry {
    fn parse(line: &str) -> Option<NodeEntry> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            return None;
        }
        let address = fields[1].split([',', '@']).next()?;
        let port = address.rsplit_once(':')?.1.parse().ok()?;
        let mut ranges = Vec::new();
        for slot in fields[8..].iter().filter(|s| !s.starts_with('[')) {
            let (first, last) = slot.split_once('-').unwrap_or((slot, slot));
            ranges.push((first.parse().ok()?, last.parse().ok()?));
        }
        Some(NodeEntry {
            id: fields[0].to_string(),
            port,
            flags: fields[2].split(',').map(str::to_string).collect(),
            master: fields[3].to_string(),
            connected: fields[7] == "connected",
            ranges,
        })
    }

    fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    fn is_master(&self) -> bool {
        self.has_flag("master")
    }

    fn failing(&self) -> bool {
        self.has_flag("fail") || self.has_flag("fail?")
    }

    /// Known, reachable and not failing.
    fn healthy(&self) -> bool {
        self.connected && !self.failing() && !self.has_flag("handshake") && !self.has_flag("noaddr")
    }

    fn owns(&self, slot: u16) -> bool {
        self.ranges
            .iter()
            .any(|&(first, last)| (first..=last).contains(&slot))
    }
}

/// `CLUSTER NODES` of `node` (connected by `con`), parsed.
fn view_on(con: &mut Connection, node: &RedisServer) -> Result<Vec<NodeEntry>, String> {
    let text: String = con_query(con, node, redis::cmd("CLUSTER").arg("NODES"));
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            NodeEntry::parse(line).ok_or_else(|| {
                format!(
                    "node on port {} printed a CLUSTER NODES line not understood: {line}",
                    node.port()
                )
            })
        })
        .collect()
}

/// `node`'s `INFO replication` role (`master` or `slave`).
fn role_of(node: &RedisServer) -> String {
    node.info("replication")
        .get("role")
        .cloned()
        .unwrap_or_default()
}

/// Runs `cmd` on a new connection to `node`.
///
/// # Panics
/// When the command fails (the message quotes the node's log).
fn node_query<T: FromRedisValue>(node: &RedisServer, cmd: &redis::Cmd) -> T {
    con_query(&mut node.connection(), node, cmd)
}

/// Runs `cmd` on `con`, a connection to `node`.
///
/// # Panics
/// When the command fails (the message quotes the node's log).
fn con_query<T: FromRedisValue>(con: &mut Connection, node: &RedisServer, cmd: &redis::Cmd) -> T {
    cmd.query(con).unwrap_or_else(|e| {
        panic!(
            "{} on port {} failed: {}\n{}",
            String::from_utf8_lossy(&cmd.get_packed_command()).replace("\r\n", " "),
            node.port(),
            error_text(&e),
            node.log_tail()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_slots_match_redis() {
        // Values from CLUSTER KEYSLOT on Redis 7.0.
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("bar"), 5061);
        assert_eq!(key_slot(""), 0);
    }

    #[test]
    fn a_hash_tag_decides_the_slot_unless_empty() {
        assert_eq!(key_slot("{user1000}.following"), key_slot("user1000"));
        assert_eq!(key_slot("a{user1000}b{x}"), key_slot("user1000"));
        assert_eq!(key_slot("foo{}{bar}"), key_slot("foo{}{bar}".as_bytes()));
        assert_ne!(key_slot("foo{}{bar}"), key_slot("bar"));
        // An unclosed brace: the whole name is hashed (CRC16-XMODEM of "foo{bar" % 16384).
        assert_eq!(key_slot("foo{bar"), 15278);
    }

    #[test]
    fn slot_shares_cover_every_slot_once() {
        for primaries in [1, 2, 3, 5, 7] {
            let mut next = 0;
            for i in 0..primaries {
                let (first, last) = slot_share(i, primaries);
                assert_eq!(first, next);
                assert!(last >= first);
                next = last + 1;
            }
            assert_eq!(next, usize::from(SLOTS));
        }
    }

    #[test]
    fn cluster_nodes_lines_parse_with_slots_and_migration_markers() {
        let line = "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@40001,host myself,master - 0 0 1 connected 0-5460 7000 [5461->-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f]";
        let entry = NodeEntry::parse(line).expect("the line parses");
        assert_eq!(entry.port, 30001);
        assert!(entry.is_master() && entry.healthy());
        assert_eq!(entry.ranges, [(0, 5460), (7000, 7000)]);
        assert!(entry.owns(7000) && !entry.owns(5461));
        let failed = "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30002@40002 master,fail - 1 1 2 disconnected";
        let entry = NodeEntry::parse(failed).expect("the line parses");
        assert!(entry.failing() && !entry.healthy() && entry.ranges.is_empty());
    }

    #[test]
    fn a_slot_map_needs_full_coverage_by_healthy_primaries() {
        let parse = |line: &str| NodeEntry::parse(line).expect("the line parses");
        let a = "a 127.0.0.1:1@2 master - 0 0 1 connected 0-100";
        let b = "b 127.0.0.1:3@4 master - 0 0 2 connected 101-16383";
        let map = slot_map(&[parse(a), parse(b)]).expect("full coverage");
        assert_eq!(map.len(), 2);
        assert!(slot_map(&[parse(a)]).is_err());
        let b_failed = "b 127.0.0.1:3@4 master,fail - 0 0 2 connected 101-16383";
        assert!(slot_map(&[parse(a), parse(b_failed)]).is_err());
    }
}
