//! Free loopback ports.

use std::net::{Ipv4Addr, TcpListener};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_can_be_bound_on_loopback_and_is_never_6379() {
        let port = free_port();
        assert_ne!(port, 6379);
        assert!(TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok());
    }
}
