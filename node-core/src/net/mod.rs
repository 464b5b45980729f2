//! The network a cache lives on: binding its FTP port on every interface (IPv6 and IPv4 on
//! one socket where the host allows), which addresses other nodes can reach it at, and the
//! tracker's reachability probe of an advertised address, and [`portmap`]ping the cache's
//! ports on a home router.

pub mod portmap;
pub mod probe;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;

use tokio::net::TcpListener;

/// The most further addresses a node lists beside its advertised one (the tracker's limit).
pub const MAX_EXTRA_ADDRS: usize = 4;
/// The FTP control port a cache listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 7880;
/// The passive (data) ports a cache uses unless told otherwise: 32 ports after the control
/// port, enough for 16 sessions moving chunks at once.
pub const DEFAULT_PASSIVE_PORTS: RangeInclusive<u16> = 7881..=7912;

/// Binds `addr`. The IPv6 unspecified address (`[::]:PORT`) is bound dual-stack
/// (IPV6_V6ONLY off: IPv4 clients arrive as `::ffff:a.b.c.d`); where the host has IPv6
/// off, it falls back to `0.0.0.0:PORT`. Every other address is bound as given.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    if addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        match bind_dual_stack(addr) {
            Ok(l) => return Ok(l),
            Err(e) => {
                tracing::info!("IPv6 is not available ({e}); listening on IPv4 only");
                let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port());
                return bind_plain(v4);
            }
        }
    }
    bind_plain(addr)
}

fn bind_plain(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    finish(socket)
}

fn bind_dual_stack(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV6,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_only_v6(false)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    finish(socket)
}

fn finish(socket: socket2::Socket) -> std::io::Result<TcpListener> {
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

/// Parses a passive port range `A-B` (both 1024–65535, `A <= B`).
pub fn parse_port_range(s: &str) -> Result<RangeInclusive<u16>, String> {
    let bad = || format!("{s:?} is not a port range like 7881-7912");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (u16, u16) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a < 1024 || a > b {
        return Err(format!(
            "{s:?}: the range must go up from a port of 1024 or above"
        ));
    }
    Ok(a..=b)
}

/// Whether `ip` can be reached from the internet: not loopback, private (RFC 1918,
/// fc00::/7), link-local, multicast, unspecified, shared (CGNAT 100.64/10), benchmarking,
/// reserved or a documentation range. IPv4-mapped IPv6 is judged as its IPv4.
pub fn is_public(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let cgnat = a == 100 && (64..128).contains(&b);
    let documentation =
        (a, b, c) == (192, 0, 2) || (a, b, c) == (198, 51, 100) || (a, b, c) == (203, 0, 113);
    let benchmarking = a == 198 && (b == 18 || b == 19);
    let protocol = (a, b, c) == (192, 0, 0);
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || a == 0
        || a >= 240
        || cgnat
        || documentation
        || benchmarking
        || protocol)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let unique_local = (s[0] & 0xfe00) == 0xfc00;
    let link_local = (s[0] & 0xffc0) == 0xfe80;
    let documentation = s[0] == 0x2001 && s[1] == 0x0db8;
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b;
    // Global unicast is 2000::/3.
    let global_unicast = (s[0] & 0xe000) == 0x2000;
    global_unicast
        && !(ip.is_loopback()
            || ip.is_multicast()
            || ip.is_unspecified()
            || unique_local
            || link_local
            || documentation
            || nat64)
}

/// The host's global IPv6 addresses (Linux: `/proc/net/if_inet6`), without temporary
/// (privacy) and deprecated ones, which change or die while a cache runs. Empty where the
/// host has none or the file cannot be read.
pub fn global_ipv6_addrs() -> Vec<Ipv6Addr> {
    proc_net("if_inet6")
        .map(|text| parse_if_inet6(&text))
        .unwrap_or_default()
}

/// A file of `/proc/net` as this thread sees it (`/proc/net` is the main thread's network
/// namespace; a thread that entered another one finds its own under `/proc/thread-self`).
fn proc_net(file: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/thread-self/net/{file}"))
        .or_else(|_| std::fs::read_to_string(format!("/proc/net/{file}")))
        .ok()
}

/// IFA_F_TEMPORARY, IFA_F_DEPRECATED, IFA_F_TENTATIVE and IFA_F_DADFAILED.
const UNSTABLE_FLAGS: u32 = 0x01 | 0x20 | 0x40 | 0x08;

fn parse_if_inet6(text: &str) -> Vec<Ipv6Addr> {
    let mut found = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [hex, _index, _prefix, _scope, flags, ..] = fields[..] else {
            continue;
        };
        let (Ok(bits), Ok(flags)) = (
            u128::from_str_radix(hex, 16),
            u32::from_str_radix(flags, 16),
        ) else {
            continue;
        };
        let ip = Ipv6Addr::from(bits);
        if hex.len() == 32
            && flags & UNSTABLE_FLAGS == 0
            && is_public_v6(ip)
            && !found.contains(&ip)
        {
            found.push(ip);
        }
    }
    found
}

/// `ip:port` as an address string (`[v6]:port` for IPv6).
pub fn host_port(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip.to_canonical(), port).to_string()
}

/// The addresses a cache bound to `bound` advertises, first the one to put in
/// `NodeRegistration::advertise`. A loopback or specific bind advertises itself. An
/// unspecified bind advertises `seen_from` (what the tracker saw this host as) when that
/// is a public IP, then (bound to `[::]`) the host's global IPv6 addresses; with none of
/// them, `seen_from` as a LAN address, or loopback, which only a LAN tracker accepts.
pub fn advertised_addrs(
    bound: SocketAddr,
    seen_from: Option<IpAddr>,
    ipv6: &[Ipv6Addr],
) -> Vec<String> {
    let port = bound.port();
    if !bound.ip().is_unspecified() {
        return vec![bound.to_string()];
    }
    let mut addrs = Vec::new();
    if let Some(ip) = seen_from.map(|ip| ip.to_canonical())
        && is_public(ip)
    {
        addrs.push(host_port(ip, port));
    }
    // A socket bound to 0.0.0.0 takes no IPv6.
    for v6 in ipv6.iter().filter(|_| bound.is_ipv6()) {
        let a = host_port(IpAddr::V6(*v6), port);
        if !addrs.contains(&a) {
            addrs.push(a);
        }
    }
    if addrs.is_empty() {
        // Nothing public: what the tracker saw (a LAN address) or, last, loopback.
        let ip = seen_from
            .map(|ip| ip.to_canonical())
            .filter(|ip| !ip.is_unspecified())
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        addrs.push(host_port(ip, port));
    }
    addrs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses_are_told_from_the_rest() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "224.0.0.1",
            "0.0.0.0",
            "100.64.0.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "ff02::1",
            "fd00::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} is not public");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "2a00:1450:4001::1",
            "::ffff:8.8.4.4",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn port_ranges_parse_or_say_why_not() {
        assert_eq!(parse_port_range("7881-7912").unwrap(), 7881..=7912);
        assert_eq!(parse_port_range("5000-5000").unwrap(), 5000..=5000);
        for bad in ["7881", "9-20", "7912-7881", "a-b", "7881-70000"] {
            assert!(parse_port_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn if_inet6_keeps_stable_global_addresses_only() {
        let text = "\
2a0012340000000000000000000000ab 02 40 00 80     eth0
2a0012340000000000000000000000cd 02 40 00 01     eth0
fe800000000000000000000000000001 02 40 20 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
";
        assert_eq!(
            parse_if_inet6(text),
            vec!["2a00:1234::ab".parse::<Ipv6Addr>().unwrap()]
        );
    }

    #[test]
    fn an_unspecified_bind_advertises_the_public_address_then_global_ipv6() {
        let any: SocketAddr = "[::]:7880".parse().unwrap();
        let v6: Ipv6Addr = "2a00:1234::ab".parse().unwrap();
        assert_eq!(
            advertised_addrs(any, Some("8.8.8.8".parse().unwrap()), &[v6]),
            vec!["8.8.8.8:7880".to_owned(), "[2a00:1234::ab]:7880".to_owned()]
        );
        // Behind a LAN tracker: what it saw.
        assert_eq!(
            advertised_addrs(any, Some("::ffff:192.168.1.5".parse().unwrap()), &[]),
            vec!["192.168.1.5:7880".to_owned()]
        );
        let v4_only: SocketAddr = "0.0.0.0:7880".parse().unwrap();
        assert_eq!(
            advertised_addrs(v4_only, Some("8.8.8.8".parse().unwrap()), &[v6]),
            vec!["8.8.8.8:7880".to_owned()]
        );
        let lo: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            advertised_addrs(lo, Some("8.8.8.8".parse().unwrap()), &[v6]),
            vec!["127.0.0.1:4000".to_owned()]
        );
    }

    #[tokio::test]
    async fn a_dual_stack_listener_takes_ipv6_and_ipv4_clients() {
        let listener = listen("[::]:0".parse().unwrap()).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accept = tokio::spawn(async move {
            let mut from = Vec::new();
            for _ in 0..2 {
                let (_, peer) = listener.accept().await.unwrap();
                from.push(peer.ip().to_canonical());
            }
            from
        });
        let v6 = tokio::net::TcpStream::connect(("::1", port)).await;
        let v4 = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
        assert!(v6.is_ok() && v4.is_ok(), "{v6:?} {v4:?}");
        let from = tokio::time::timeout(std::time::Duration::from_secs(5), accept)
            .await
            .unwrap()
            .unwrap();
        assert!(from.contains(&"::1".parse::<IpAddr>().unwrap()), "{from:?}");
        assert!(
            from.contains(&"127.0.0.1".parse::<IpAddr>().unwrap()),
            "{from:?}"
        );
    }
}
