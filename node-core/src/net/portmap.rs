//! Port mapping on a home router: asks the router to forward the cache's FTP control port
//! and its passive range to this host, by UPnP IGD (through `igd-next`) or else NAT-PMP
//! (RFC 6886, spoken here: a dozen bytes over UDP), renews the lease before it ends and
//! removes the mappings when the cache stops.
//!
//! Mappings are 1:1 (external port = internal port, the passive ports the FTP server names
//! in EPSV replies) and all-or-nothing: if the router refuses one port, the ports already
//! mapped are removed again and the cache stays unmapped (the tracker's probe then tells the
//! user what to forward by hand).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use igd_next::PortMappingProtocol;
use tokio::net::UdpSocket;
use tokio::time::timeout;

/// How long a mapping is asked for; renewed at half of it.
pub const LEASE: Duration = Duration::from_secs(3600);
/// How long the UPnP search for a router may take.
const UPNP_SEARCH: Duration = Duration::from_secs(2);
/// How long one UPnP request (a SOAP call to the router) may take.
const UPNP_REQUEST: Duration = Duration::from_secs(2);
/// NAT-PMP's first retransmission time; it doubles for each of [`NATPMP_TRIES`] sends
/// (RFC 6886 §3.1 allows nine; three keep a cache without a router's help from waiting long).
const NATPMP_FIRST_WAIT: Duration = Duration::from_millis(250);
const NATPMP_TRIES: u32 = 3;
/// The NAT-PMP server port on the gateway.
const NATPMP_PORT: u16 = 5351;
/// What the router's mapping table shows for ours.
const DESCRIPTION: &str = "Rivulet cache";

/// How a mapping was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Upnp,
    NatPmp,
}

impl Protocol {
    /// The name a user knows it by.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Upnp => "UPnP",
            Protocol::NatPmp => "NAT-PMP",
        }
    }
}

/// Why no mapping could be made (or renewed), in words for the user.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("no router answered UPnP or NAT-PMP ({upnp}; {natpmp})")]
    NoRouter { upnp: String, natpmp: String },
    #[error("the router refused to map TCP port {port} by {}: {reason}", protocol.label())]
    Refused {
        protocol: Protocol,
        port: u16,
        reason: String,
    },
    #[error("talking to the router: {0}")]
    Io(#[from] std::io::Error),
}

/// Ports mapped on a router to this host.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub protocol: Protocol,
    /// The router's external address, as it says (behind a second NAT it differs from
    /// what the tracker sees).
    pub external_ip: Option<IpAddr>,
    /// The ports mapped, each to the same port here.
    pub ports: Vec<u16>,
    /// This host's address on the router's side.
    pub local: Ipv4Addr,
    /// The router.
    gateway: Gateway,
}

#[derive(Clone, Debug)]
enum Gateway {
    Upnp(igd_next::aio::Gateway<igd_next::aio::tokio::Tokio>),
    NatPmp(SocketAddrV4),
}

/// Maps every port of `ports` (TCP, 1:1) on the router in front of this host: by UPnP if a
/// router answers the search, else by NAT-PMP to the default gateway. Both searches run at
/// once, so a host whose router speaks neither waits for one timeout (about 2.5 s), not two.
pub async fn map(ports: &[u16]) -> Result<Mapping, MapError> {
    let natpmp = discover(Protocol::NatPmp);
    tokio::pin!(natpmp);
    let mut natpmp_found = None;
    let upnp = {
        let upnp = discover(Protocol::Upnp);
        tokio::pin!(upnp);
        loop {
            tokio::select! {
                found = &mut upnp => break found,
                found = &mut natpmp, if natpmp_found.is_none() => natpmp_found = Some(found),
            }
        }
    };
    let upnp = match upnp {
        Ok(gateway) => return map_with(gateway, ports).await,
        Err(e) => e,
    };
    let natpmp = match natpmp_found {
        Some(found) => found,
        None => natpmp.await,
    };
    match natpmp {
        Ok(gateway) => map_with(gateway, ports).await,
        Err(natpmp) => Err(MapError::NoRouter { upnp, natpmp }),
    }
}

/// [`map`] by one protocol only.
pub async fn map_by(protocol: Protocol, ports: &[u16]) -> Result<Mapping, MapError> {
    match discover(protocol).await {
        Ok(gateway) => map_with(gateway, ports).await,
        Err(e) => {
            let not_tried = "not tried".to_owned();
            Err(match protocol {
                Protocol::Upnp => MapError::NoRouter {
                    upnp: e,
                    natpmp: not_tried,
                },
                Protocol::NatPmp => MapError::NoRouter {
                    upnp: not_tried,
                    natpmp: e,
                },
            })
        }
    }
}

/// The router in front of this host as `protocol` finds it, or why none answered.
async fn discover(protocol: Protocol) -> Result<Gateway, String> {
    match protocol {
        Protocol::Upnp => upnp_gateway().await.map(Gateway::Upnp),
        Protocol::NatPmp => {
            let gateway = default_gateway().ok_or("NAT-PMP: no default IPv4 gateway")?;
            natpmp_external(gateway).await?;
            Ok(Gateway::NatPmp(gateway))
        }
    }
}

async fn map_with(gateway: Gateway, ports: &[u16]) -> Result<Mapping, MapError> {
    let router = match &gateway {
        Gateway::Upnp(g) => g.addr,
        Gateway::NatPmp(g) => SocketAddr::V4(*g),
    };
    let local = local_ip_towards(router.ip()).await?;
    let mut mapping = Mapping {
        protocol: match gateway {
            Gateway::Upnp(_) => Protocol::Upnp,
            Gateway::NatPmp(_) => Protocol::NatPmp,
        },
        external_ip: None,
        ports: Vec::new(),
        local,
        gateway,
    };
    for &port in ports {
        if let Err(e) = mapping.add(port).await {
            mapping.remove().await;
            return Err(e);
        }
        mapping.ports.push(port);
    }
    mapping.external_ip = mapping.external().await;
    tracing::info!(
        "mapped TCP ports {} on the router by {} (external address {:?})",
        port_list(&mapping.ports),
        mapping.protocol.label(),
        mapping.external_ip
    );
    Ok(mapping)
}

impl Mapping {
    /// Asks for every port again, for another [`LEASE`].
    pub async fn renew(&self) -> Result<(), MapError> {
        for &port in &self.ports {
            self.add(port).await?;
        }
        tracing::debug!("renewed {} port mappings", self.ports.len());
        Ok(())
    }

    /// Removes every mapping (each request bounded; failures are logged: the lease ends
    /// them anyway).
    pub async fn remove(&self) {
        for &port in &self.ports {
            let removed = match &self.gateway {
                Gateway::Upnp(g) => {
                    match timeout(UPNP_REQUEST, g.remove_port(PortMappingProtocol::TCP, port)).await
                    {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("timed out".to_owned()),
                    }
                }
                Gateway::NatPmp(gw) => natpmp_map(*gw, port, 0).await.map(|_| ()),
            };
            if let Err(e) = removed {
                tracing::debug!("removing the mapping of port {port}: {e}");
            }
        }
        tracing::info!(
            "removed the {} mappings of TCP ports {}",
            self.protocol.label(),
            port_list(&self.ports)
        );
    }

    async fn add(&self, port: u16) -> Result<(), MapError> {
        let refused = |reason: String| MapError::Refused {
            protocol: self.protocol,
            port,
            reason,
        };
        let lease = LEASE.as_secs() as u32;
        match &self.gateway {
            Gateway::Upnp(g) => {
                let local = SocketAddr::V4(SocketAddrV4::new(self.local, port));
                match timeout(
                    UPNP_REQUEST,
                    g.add_port(PortMappingProtocol::TCP, port, local, lease, DESCRIPTION),
                )
                .await
                {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(refused(e.to_string())),
                    Err(_) => Err(refused("no answer".to_owned())),
                }
            }
            Gateway::NatPmp(gw) => match natpmp_map(*gw, port, lease).await {
                Ok(external) if external == port => Ok(()),
                Ok(external) => {
                    // Not 1:1: EPSV replies would name a port nobody can reach. Undo it.
                    let _ = natpmp_map(*gw, port, 0).await;
                    Err(refused(format!("it offered port {external} instead")))
                }
                Err(e) => Err(refused(e)),
            },
        }
    }

    async fn external(&self) -> Option<IpAddr> {
        match &self.gateway {
            Gateway::Upnp(g) => timeout(UPNP_REQUEST, g.get_external_ip()).await.ok()?.ok(),
            Gateway::NatPmp(gw) => natpmp_external(*gw).await.ok().map(IpAddr::V4),
        }
    }
}

/// Maps the cache's control port and passive range when it needs it: bound to every
/// interface, seen by the tracker from a public IPv4 address that is not this host's own
/// (so a NAT sits between). `None` when no mapping is needed or none could be made (logged:
/// the tracker's probe then tells the user what to forward). With the mapping, the public
/// address it serves under: the tracker's `seen_from`.
pub async fn map_behind_nat(
    bound: SocketAddr,
    seen_from: Option<IpAddr>,
    passive_ports: (u16, u16),
) -> Option<(Mapping, Ipv4Addr)> {
    let IpAddr::V4(public) = seen_from?.to_canonical() else {
        return None;
    };
    let seen = IpAddr::V4(public);
    if !bound.ip().is_unspecified() || !super::is_public(seen) {
        return None;
    }
    if is_own_address(seen).await {
        tracing::debug!("{seen} is this host's own address: no port mapping needed");
        return None;
    }
    let mut ports = vec![bound.port()];
    ports.extend((passive_ports.0..=passive_ports.1).filter(|p| *p != bound.port()));
    match map(&ports).await {
        Ok(mapping) => Some((mapping, public)),
        Err(e) => {
            tracing::warn!("could not map the cache's ports on the router: {e}");
            None
        }
    }
}

/// Keeps `mapping` alive until `stop`: renews it at half its lease (a minute after a failed
/// renewal), then removes it.
pub async fn keep(
    mapping: Mapping,
    stop: tokio_util::sync::CancellationToken,
) -> Result<(), std::convert::Infallible> {
    let mut wait = LEASE / 2;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => break,
        }
        wait = match mapping.renew().await {
            Ok(()) => LEASE / 2,
            Err(e) => {
                tracing::warn!("renewing the port mappings: {e}; trying again in a minute");
                Duration::from_secs(60)
            }
        };
    }
    mapping.remove().await;
    Ok(())
}

fn port_list(ports: &[u16]) -> String {
    match ports {
        [] => "(none)".to_owned(),
        [one] => one.to_string(),
        [first, .., last] => format!("{first}…{last} ({} ports)", ports.len()),
    }
}

async fn upnp_gateway() -> Result<igd_next::aio::Gateway<igd_next::aio::tokio::Tokio>, String> {
    let mut options = igd_next::SearchOptions::default();
    options.timeout = Some(UPNP_SEARCH);
    options.single_search_timeout = Some(UPNP_SEARCH);
    match timeout(
        UPNP_SEARCH + Duration::from_millis(500),
        igd_next::aio::tokio::search_gateway(options),
    )
    .await
    {
        Ok(Ok(gateway)) => Ok(gateway),
        Ok(Err(e)) => Err(format!("UPnP: {e}")),
        Err(_) => Err("UPnP: no answer".to_owned()),
    }
}

/// The address this host sends from towards `ip` (a UDP "connect" sends nothing).
async fn local_ip_towards(ip: IpAddr) -> std::io::Result<Ipv4Addr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await?;
    socket.connect((ip, 9)).await?;
    match socket.local_addr()?.ip() {
        IpAddr::V4(v4) => Ok(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped().ok_or_else(|| {
            std::io::Error::other(format!("the router {ip} is not reached over IPv4"))
        }),
    }
}

/// Whether `ip` is one of this host's own addresses (then no NAT sits between this host
/// and whoever saw it as `ip`, and nothing needs mapping).
pub async fn is_own_address(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    let bind: SocketAddr = match ip {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let Ok(socket) = UdpSocket::bind(bind).await else {
        return false;
    };
    socket.connect((ip, 9)).await.is_ok()
        && socket
            .local_addr()
            .is_ok_and(|local| local.ip().to_canonical() == ip)
}

/// The default IPv4 gateway (Linux: the route table of this thread's network namespace).
fn default_gateway() -> Option<SocketAddrV4> {
    let text = super::proc_net("route")?;
    parse_default_gateway(&text).map(|ip| SocketAddrV4::new(ip, NATPMP_PORT))
}

fn parse_default_gateway(text: &str) -> Option<Ipv4Addr> {
    text.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_iface, destination, gateway, ..] = fields[..] else {
            return None;
        };
        if destination != "00000000" {
            return None;
        }
        let bits = u32::from_str_radix(gateway, 16).ok()?;
        // The kernel writes the address in host (little-endian) byte order.
        let ip = Ipv4Addr::from(bits.to_le_bytes());
        (!ip.is_unspecified()).then_some(ip)
    })
}

/// One NAT-PMP request to `gateway`, resent with doubling waits; the reply of the expected
/// opcode with a success result.
async fn natpmp_request(gateway: SocketAddrV4, request: &[u8]) -> Result<Vec<u8>, String> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .await
        .map_err(|e| e.to_string())?;
    socket.connect(gateway).await.map_err(|e| e.to_string())?;
    let mut wait = NATPMP_FIRST_WAIT;
    let mut reply = [0u8; 64];
    for _ in 0..NATPMP_TRIES {
        socket.send(request).await.map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(received) = tokio::time::timeout_at(deadline, socket.recv(&mut reply)).await {
            let Ok(n) = received else { break };
            let reply = &reply[..n];
            // Version 0, opcode 128 + ours and, for a mapping, our internal port; anything
            // else (a late answer to an earlier request) is not the answer to this one.
            let ours = reply.len() >= 8
                && reply[0] == 0
                && reply[1] == 128 + request[1]
                && (request[1] == 0 || reply.get(8..10) == request.get(4..6));
            if ours {
                let result = u16::from_be_bytes([reply[2], reply[3]]);
                return match result {
                    0 => Ok(reply.to_vec()),
                    1 => Err("NAT-PMP: unsupported version".to_owned()),
                    2 => Err("NAT-PMP: not authorized (mapping is turned off)".to_owned()),
                    3 => Err("NAT-PMP: the router has no network".to_owned()),
                    4 => Err("NAT-PMP: the router is out of resources".to_owned()),
                    r => Err(format!("NAT-PMP: result code {r}")),
                };
            }
        }
        wait *= 2;
    }
    Err(format!("NAT-PMP: no answer from {}", gateway.ip()))
}

/// The router's external IPv4 address (opcode 0).
async fn natpmp_external(gateway: SocketAddrV4) -> Result<Ipv4Addr, String> {
    let reply = natpmp_request(gateway, &[0, 0]).await?;
    let ip: [u8; 4] = reply
        .get(8..12)
        .and_then(|b| b.try_into().ok())
        .ok_or("NAT-PMP: a short reply")?;
    Ok(Ipv4Addr::from(ip))
}

/// Maps TCP `port` to the same port for `lifetime` seconds (0: removes it); the external
/// port the router chose.
async fn natpmp_map(gateway: SocketAddrV4, port: u16, lifetime: u32) -> Result<u16, String> {
    let mut request = vec![0, 2, 0, 0];
    request.extend_from_slice(&port.to_be_bytes());
    // Removing asks for external port 0, as RFC 6886 §3.4 says.
    let suggested = if lifetime == 0 { 0 } else { port };
    request.extend_from_slice(&suggested.to_be_bytes());
    request.extend_from_slice(&lifetime.to_be_bytes());
    let reply = natpmp_request(gateway, &request).await?;
    reply
        .get(10..12)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| "NAT-PMP: a short reply".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_gateway_is_read_from_the_route_table() {
        let text = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t004DA8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth0\t00000000\t014DA8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
";
        assert_eq!(
            parse_default_gateway(text),
            Some(Ipv4Addr::new(192, 168, 77, 1))
        );
        assert_eq!(parse_default_gateway("Iface\tDestination\n"), None);
    }

    #[tokio::test]
    async fn own_addresses_are_told_from_others() {
        assert!(is_own_address("127.0.0.1".parse().unwrap()).await);
        assert!(is_own_address("::ffff:127.0.0.1".parse().unwrap()).await);
        // A documentation address is nobody's here.
        assert!(!is_own_address("192.0.2.7".parse().unwrap()).await);
    }

    /// A NAT-PMP router on loopback that maps what it is asked, then one that offers other
    /// ports: the first is used 1:1, the second is refused and undone.
    #[tokio::test]
    async fn natpmp_maps_one_to_one_or_not_at_all() {
        for offset in [0u16, 1] {
            let router = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let SocketAddr::V4(addr) = router.local_addr().unwrap() else {
                unreachable!()
            };
            let seen = tokio::spawn(async move {
                let mut asked = Vec::new();
                let mut buf = [0u8; 64];
                while let Ok(Ok((n, from))) =
                    timeout(Duration::from_millis(1500), router.recv_from(&mut buf)).await
                {
                    let req = buf[..n].to_vec();
                    let mut reply = vec![0, 128 + req[1], 0, 0, 0, 0, 0, 1];
                    if req[1] == 0 {
                        reply.extend_from_slice(&[11, 77, 0, 2]);
                    } else {
                        let internal = u16::from_be_bytes([req[4], req[5]]);
                        let lifetime = u32::from_be_bytes([req[8], req[9], req[10], req[11]]);
                        let external = if lifetime == 0 { 0 } else { internal + offset };
                        reply.extend_from_slice(&internal.to_be_bytes());
                        reply.extend_from_slice(&external.to_be_bytes());
                        reply.extend_from_slice(&lifetime.to_be_bytes());
                        asked.push((internal, lifetime));
                    }
                    router.send_to(&reply, from).await.unwrap();
                }
                asked
            });
            let mapped = map_with(Gateway::NatPmp(addr), &[7880, 7881]).await;
            let asked = seen.await.unwrap();
            if offset == 0 {
                let m = mapped.unwrap();
                assert_eq!(m.ports, vec![7880, 7881]);
                assert_eq!(m.external_ip, Some("11.77.0.2".parse().unwrap()));
                assert_eq!(asked, vec![(7880, 3600), (7881, 3600)]);
            } else {
                let e = mapped.unwrap_err().to_string();
                assert!(e.contains("offered port 7881"), "{e}");
                // The odd mapping was undone at once; nothing else was asked.
                assert_eq!(asked, vec![(7880, 3600), (7880, 0)]);
            }
        }
    }
}
