//! Free loopback ports.

use std::net::{Ipv4Addr, TcpListener};

/// Redis Cluster listens for its bus on the client port plus this offset.
pub const CLUSTER_BUS_OFFSET: u16 = 10_000;

/// Attempts of [`free_cluster_port`] before it gives up.
const CLUSTER_PORT_ATTEMPTS: usize = 200;

/// A loopback TCP port that was free a moment ago: the OS picks one for a listener bound to
/// port 0, and the listener is dropped. Another process may take it before the caller binds
/// it, so callers retry on "address in use".
///
/// # Panics
/// When no loopback listener can be bound at all.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("cannot bind a loopback port to find a free one: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("cannot read the address of a loopback listener: {e}"))
        .port()
}

/// A loopback port `p` such that `p` and its cluster bus port `p + 10000` were both free a
/// moment ago (and `p + 10000` is at most 65535). Like [`free_port`], another process may
/// take either before the caller binds it; callers retry on "address in use".
///
/// # Panics
/// When no such pair is found in a few hundred attempts.
pub fn free_cluster_port() -> u16 {
    for _ in 0..CLUSTER_PORT_ATTEMPTS {
        let port = free_port();
        let Some(bus) = port.checked_add(CLUSTER_BUS_OFFSET) else {
            continue;
        };
        if TcpListener::bind((Ipv4Addr::LOCALHOST, bus)).is_ok() {
            return port;
        }
    }
    panic!(
        "found no loopback port p with p and p+{CLUSTER_BUS_OFFSET} both free in {CLUSTER_PORT_ATTEMPTS} attempts"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_can_be_bound_on_loopback_and_is_never_6379() {
        let port = free_port();
        assert_ne!(port, 6379);
        assert!(TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok());
    }

    #[test]
    fn a_free_cluster_port_leaves_room_for_its_bus_port() {
        let port = free_cluster_port();
        let bus = port
            .checked_add(CLUSTER_BUS_OFFSET)
            .expect("the bus port must fit in 16 bits");
        assert!(TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok());
        assert!(TcpListener::bind((Ipv4Addr::LOCALHOST, bus)).is_ok());
    }
}
