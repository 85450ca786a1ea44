//! What a run measures and how much: the full run and the QUICK one (`QUICK=1`).

use std::time::Duration;

/// Parameters of one benchmark run.
#[derive(Debug, Clone)]
pub struct Config {
    /// `QUICK=1`: fewer rounds, smaller sizes, under two minutes.
    pub quick: bool,
    /// Rounds of every comparison; figures are medians over them.
    pub rounds: usize,

    /// redis-benchmark connections (`-c`).
    pub clients: u32,
    /// redis-benchmark requests per run (`-n`) without pipelining, the same for every row.
    pub requests: u64,
    /// ... and with pipelining (runs 3 to 8 times faster: more requests keep them long
    /// enough for a noisy machine), the same for every row.
    pub pipelined_requests: u64,
    /// redis-benchmark key space (`-r`).
    pub keyspace: u64,
    /// Pipeline depths (`-P`).
    pub pipelines: Vec<u32>,
    /// Bytes of every value written.
    pub value_size: usize,
    /// Tags of every throughput write.
    pub write_tags: Vec<String>,

    /// Entries written for the memory comparison.
    pub memory_entries: u64,
    /// Tags drawn (3 per entry) from this many, so that each tag holds many keys.
    pub tag_pool: u64,
    /// Entries of the memory-by-tag-shape table, one column each.
    pub memory_shape_sizes: Vec<u64>,
    /// Rounds at each of those sizes (a fill of a million entries takes seconds).
    pub memory_shape_rounds: fn(u64) -> usize,

    /// Keys of the tag deleted, one comparison per size.
    pub deltag_sizes: Vec<u64>,
    /// Rounds at each size (the biggest sizes take long to fill).
    pub deltag_rounds: fn(u64) -> usize,
    /// How long the PING prober runs on the idle server to show the machine's noise floor
    /// (about as long as HC.DELTAG of the biggest size takes to reclaim memory).
    pub idle_window: Duration,
    /// Longest wait for used_memory to come back near its pre-fill level.
    pub reclaim_timeout: Duration,

    /// Timed L1 hits per round.
    pub l1_reads: usize,
    /// Timed round trips per round (HC.GET, GET, redis client-side cache).
    pub rtt_reads: usize,
    /// Length of each get_or_set throughput run.
    pub gos_duration: Duration,
    /// Concurrent get_or_set tasks.
    pub gos_tasks: usize,
    /// Hot keys of the get_or_set workload (cached before the run).
    pub gos_hot_keys: u64,
    /// One call in this many is on a fresh key.
    pub gos_fresh_every: u64,
    /// Writes timed per round for invalidation propagation.
    pub propagation_writes: usize,
    /// Changes flooded per round at one handle.
    pub flood_events: u64,
    /// Connections writing the flood at once (each pipelined), so that the producer
    /// outpaces the handle.
    pub flood_producers: u64,

    /// Rounds of the replay scenario (each takes a few seconds).
    pub replay_rounds: usize,
    /// Entries in the L1 of the handle whose subscription is cut.
    pub replay_entries: u64,
    /// Entries changed during the outage ...
    pub replay_changed: u64,
    /// ... by this many writes in all.
    pub replay_writes: u64,
    /// How long the subscription stays cut.
    pub replay_outage: Duration,

    /// HC.SET writes per cluster traffic run (split evenly over the shards).
    pub cluster_writes: u64,
    /// Pipeline depths of the cluster traffic runs.
    pub cluster_pipelines: Vec<usize>,
    /// Writes timed for propagation in the cluster, per setting of `sharded-events`.
    pub cluster_propagation_writes: usize,
    /// Keys per shard the propagation writes rotate over.
    pub cluster_propagation_keys: usize,
}

impl Config {
    /// The configuration for `QUICK` set or not.
    pub fn new(quick: bool) -> Self {
        let tags = ["tag:a", "tag:b", "tag:c"].map(String::from).to_vec();
        if quick {
            Self {
                quick,
                rounds: 3,
                clients: 50,
                requests: 50_000,
                pipelined_requests: 200_000,
                keyspace: 100_000,
                pipelines: vec![1, 16],
                value_size: 100,
                write_tags: tags,
                memory_entries: 50_000,
                tag_pool: 500,
                memory_shape_sizes: vec![50_000, 200_000],
                memory_shape_rounds: |_| 1,
                deltag_sizes: vec![1_000, 100_000],
                deltag_rounds: |_| 3,
                idle_window: Duration::from_secs(1),
                reclaim_timeout: Duration::from_secs(30),
                l1_reads: 100_000,
                rtt_reads: 5_000,
                gos_duration: Duration::from_millis(700),
                gos_tasks: 8,
                gos_hot_keys: 1_000,
                gos_fresh_every: 100,
                propagation_writes: 500,
                flood_events: 200_000,
                flood_producers: 4,
                replay_rounds: 1,
                replay_entries: 100_000,
                replay_changed: 1_000,
                replay_writes: 20_000,
                replay_outage: Duration::from_secs(2),
                cluster_writes: 3_000,
                cluster_pipelines: vec![1, 16],
                cluster_propagation_writes: 1_000,
                cluster_propagation_keys: 4,
            }
        } else {
            Self {
                quick,
                rounds: 5,
                clients: 50,
                requests: 200_000,
                pipelined_requests: 500_000,
                keyspace: 100_000,
                pipelines: vec![1, 16],
                value_size: 100,
                write_tags: tags,
                memory_entries: 100_000,
                tag_pool: 1_000,
                memory_shape_sizes: vec![100_000, 1_000_000],
                memory_shape_rounds: |size| if size >= 1_000_000 { 1 } else { 3 },
                deltag_sizes: vec![1_000, 100_000, 1_000_000],
                deltag_rounds: |size| if size >= 1_000_000 { 3 } else { 5 },
                idle_window: Duration::from_secs(5),
                reclaim_timeout: Duration::from_secs(120),
                l1_reads: 200_000,
                rtt_reads: 10_000,
                gos_duration: Duration::from_millis(1500),
                gos_tasks: 8,
                gos_hot_keys: 1_000,
                gos_fresh_every: 100,
                propagation_writes: 1_000,
                flood_events: 500_000,
                flood_producers: 4,
                replay_rounds: 3,
                replay_entries: 100_000,
                replay_changed: 1_000,
                replay_writes: 20_000,
                replay_outage: Duration::from_secs(2),
                cluster_writes: 15_000,
                cluster_pipelines: vec![1, 16],
                cluster_propagation_writes: 3_000,
                cluster_propagation_keys: 4,
            }
        }
    }

    /// "QUICK" or "full".
    pub fn mode(&self) -> &'static str {
        if self.quick {
            "QUICK"
        } else {
            "full"
        }
    }
}
