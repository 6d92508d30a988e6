//! The client's address, decided once per request: the TCP peer, or — when the peer is one
//! of `[http] trusted_proxies` — the right-most `X-Forwarded-For` hop that is not a trusted
//! proxy. Audit rows, the login throttle and access checks all read it through
//! [`super::access::client_ip`]. A client talking to us directly cannot forge its address:
//! its `X-Forwarded-For` is ignored.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use crate::app::AppState;

/// The request's client address, as [`resolve`] decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Middleware: puts the [`ClientAddr`] of the request into its extensions.
pub async fn client_addr(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if let Some(peer) = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
    {
        let addr = resolve(peer, req.headers(), &state.config.trusted_proxies);
        req.extensions_mut().insert(ClientAddr(addr));
    }
    next.run(req).await
}

/// The client of a request that came from `peer` with `headers`.
///
/// Walks `X-Forwarded-For` from the right (the hop our proxy added) while the address in
/// hand is a trusted proxy; stops at the first hop that is not (the client as the outermost
/// trusted proxy saw it) or at an entry that is no address (the proxy's own view is kept).
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(&canonical(*ip)));
    if !is_trusted(&peer) {
        return canonical(peer);
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = canonical(peer);
    for hop in hops.iter().rev() {
        if !is_trusted(&client) {
            break;
        }
        match parse_hop(hop) {
            Some(ip) => client = ip,
            None => break,
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(canonical)
}

/// IPv4-mapped IPv6 (`::ffff:127.0.0.1`, a dual-stack socket's view) as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A client talking to us directly cannot pick its address in the audit log.
    #[test]
    fn forged_header_from_an_untrusted_peer_is_ignored() {
        let trusted = nets(&["127.0.0.1/32"]);
        let h = xff(&["198.51.100.7"]);
        assert_eq!(resolve(ip("203.0.113.9"), &h, &trusted), ip("203.0.113.9"));
        // Without any trusted proxy configured, the header never counts.
        assert_eq!(resolve(ip("127.0.0.1"), &h, &[]), ip("127.0.0.1"));
    }

    /// Behind nginx: the hop nginx appended is the client; what the client itself put in
    /// front of it (a forged left-most entry) is not believed.
    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = nets(&["127.0.0.1/32", "10.0.0.0/8"]);
        let h = xff(&["6.6.6.6, 198.51.100.7"]);
        assert_eq!(resolve(ip("127.0.0.1"), &h, &trusted), ip("198.51.100.7"));
        // Two proxies in a row (a load balancer, then nginx), over two header lines.
        let h = xff(&["6.6.6.6, 198.51.100.7", "10.0.0.5"]);
        assert_eq!(resolve(ip("127.0.0.1"), &h, &trusted), ip("198.51.100.7"));
        // A garbage hop stops the walk at the proxy that handed it over.
        let h = xff(&["198.51.100.7, not-an-ip"]);
        assert_eq!(resolve(ip("127.0.0.1"), &h, &trusted), ip("127.0.0.1"));
        // No header: the proxy itself.
        assert_eq!(
            resolve(ip("127.0.0.1"), &HeaderMap::new(), &trusted),
            ip("127.0.0.1")
        );
        // Ports and IPv6 in the header, a v4-mapped peer.
        let h = xff(&["[2001:db8::1]:4711"]);
        assert_eq!(
            resolve(ip("::ffff:127.0.0.1"), &h, &trusted),
            ip("2001:db8::1")
        );
    }
}
