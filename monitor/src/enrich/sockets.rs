//! Socket endpoints the kernel probes could not see (the local end of a UDP socket, or
//! `accept(fd, NULL, NULL)` on a listener opened before the monitor started): find the socket's
//! inode through `/proc/<pid>/fd/<fd>` and look it up in `/proc/<pid>/net/{tcp,udp}{,6}`. Best
//! effort: the socket may be closed by the time we look.
use std::{
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

/// Which /proc/net tables to search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// Local and remote endpoint of a socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
}

pub fn endpoints(proc_root: &Path, pid: u32, fd: i32, protocol: Protocol) -> Option<Endpoints> {
    let process = proc_root.join(pid.to_string());
    let link = fs::read_link(process.join("fd").join(fd.to_string())).ok()?;
    let inode = socket_inode(&link.to_string_lossy())?;
    let tables = match protocol {
        Protocol::Tcp => ["tcp", "tcp6"],
        Protocol::Udp => ["udp", "udp6"],
    };
    tables.iter().find_map(|table| {
        let text = fs::read_to_string(process.join("net").join(table)).ok()?;
        find_inode(&text, inode)
    })
}

/// `socket:[12345]` → 12345.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Scans a /proc/net/tcp table: `sl local_address rem_address st ... uid timeout inode`.
fn find_inode(table: &str, inode: u64) -> Option<Endpoints> {
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.get(9)?.parse::<u64>().ok()? != inode {
            return None;
        }
        Some(Endpoints {
            local: parse_endpoint(cols.get(1)?)?,
            remote: parse_endpoint(cols.get(2)?)?,
        })
    })
}

/// `0100007F:1F90` (IPv4, host-order u32 in hex) or 32 hex digits (IPv6, four host-order u32).
fn parse_endpoint(text: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(addr, 16).ok()?.to_le_bytes(),
        )),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                let word = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&word.to_le_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some((ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tcp_lines() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 0100007F:D2F4 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1\n";
        let found = find_inode(table, 4242).expect("found");
        assert_eq!(found.local, (IpAddr::V4(Ipv4Addr::LOCALHOST), 8080));
        assert_eq!(found.remote, (IpAddr::V4(Ipv4Addr::LOCALHOST), 0xD2F4));
        assert!(find_inode(table, 1).is_none());
    }

    #[test]
    fn parses_ipv6_loopback() {
        let (ip, port) = parse_endpoint("00000000000000000000000001000000:0050").expect("endpoint");
        assert_eq!(ip, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(port, 80);
    }

    #[test]
    fn finds_a_real_socket_of_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        use std::os::fd::AsRawFd;
        let found = endpoints(
            Path::new("/proc"),
            std::process::id(),
            listener.as_raw_fd(),
            Protocol::Tcp,
        )
        .expect("listener in /proc/net/tcp");
        assert_eq!(found.local.1, port);
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let udp_port = udp.local_addr().expect("addr").port();
        let found = endpoints(
            Path::new("/proc"),
            std::process::id(),
            udp.as_raw_fd(),
            Protocol::Udp,
        )
        .expect("socket in /proc/net/udp");
        assert_eq!(found.local, (IpAddr::V4(Ipv4Addr::LOCALHOST), udp_port));
    }
}
