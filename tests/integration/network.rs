//! net_connect, net_accept, net_listen, net_udp, net_close. Loopback only.
//!
//! For every network event `source_*` is the local end and `target_*` the remote end.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use serde_json::Value;

use crate::common::{assert_field, gettid, monitor, test_pid};

/// The textual address as the monitor prints it (`127.0.0.1`, `::1`).
fn ip(addr: &SocketAddr) -> String {
    addr.ip().to_string()
}

fn tcp_connect(loopback: &str) {
    let mon = monitor();
    let listener = TcpListener::bind(format!("{loopback}:0")).expect("bind a loopback listener");
    let server = listener.local_addr().expect("listener address");

    let cp = mon.checkpoint();
    let client = TcpStream::connect(server).expect("connect over loopback");
    let local = client.local_addr().expect("client address");

    let e = mon.expect(
        &cp,
        "net_connect",
        &format!("TCP connect to {server}"),
        |e| e["target_port"] == server.port(),
    );
    assert_field(&e, "protocol", "tcp");
    assert_field(&e, "pid", test_pid());
    assert_field(&e, "tid", gettid());
    assert_field(&e, "target_ip", ip(&server));
    assert_field(&e, "source_ip", ip(&local));
    assert_field(&e, "source_port", local.port());
}

#[test]
fn tcp_connect_v4_is_net_connect() {
    tcp_connect("127.0.0.1");
}

#[test]
fn tcp_connect_v6_is_net_connect() {
    tcp_connect("[::1]");
}

#[test]
fn tcp_accept_is_net_accept() {
    let mon = monitor();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
    let server = listener.local_addr().expect("listener address");

    let cp = mon.checkpoint();
    let client = TcpStream::connect(server).expect("connect over loopback");
    let local = client.local_addr().expect("client address");
    let (accepted, peer) = listener.accept().expect("accept");
    assert_eq!(peer, local);

    let e = mon.expect(&cp, "net_accept", &format!("accept on {server}"), |e| {
        e["source_port"] == server.port() || e["target_port"] == local.port()
    });
    assert_field(&e, "protocol", "tcp");
    assert_field(&e, "pid", test_pid());
    assert_field(&e, "tid", gettid());
    assert_field(&e, "source_ip", "127.0.0.1");
    assert_field(&e, "source_port", server.port());
    assert_field(&e, "target_ip", "127.0.0.1");
    assert_field(&e, "target_port", local.port());
    drop(accepted);
}

#[test]
fn tcp_listen_is_net_listen() {
    let mon = monitor();
    let cp = mon.checkpoint();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
    let server = listener.local_addr().expect("listener address");

    let e = mon.expect(&cp, "net_listen", &format!("listen on {server}"), |e| {
        e["source_port"] == server.port()
    });
    assert_field(&e, "protocol", "tcp");
    assert_field(&e, "pid", test_pid());
    assert_field(&e, "tid", gettid());
    assert_field(&e, "source_ip", "127.0.0.1");
}

#[test]
fn udp_sendto_is_net_udp() {
    let mon = monitor();
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind the receiver");
    let to = receiver.local_addr().expect("receiver address");
    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind the sender");
    let from = sender.local_addr().expect("sender address");

    let cp = mon.checkpoint();
    sender.send_to(b"secmon", to).expect("sendto");
    receiver
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set a read timeout");
    let mut buf = [0u8; 16];
    let (n, peer) = receiver.recv_from(&mut buf).expect("the datagram arrives");
    assert_eq!((&buf[..n], peer), (&b"secmon"[..], from));

    let e = mon.expect(&cp, "net_udp", &format!("sendto {to}"), |e| {
        e["target_port"] == to.port()
    });
    assert_field(&e, "protocol", "udp");
    assert_field(&e, "pid", test_pid());
    assert_field(&e, "tid", gettid());
    assert_field(&e, "target_ip", "127.0.0.1");
    assert_field(&e, "source_ip", "127.0.0.1");
    assert_field(&e, "source_port", from.port());
}

#[test]
fn udp_connect_is_net_connect() {
    let mon = monitor();
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind the receiver");
    let to = receiver.local_addr().expect("receiver address");
    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind the sender");
    let from = sender.local_addr().expect("sender address");

    let cp = mon.checkpoint();
    sender.connect(to).expect("UDP connect");
    let e = mon.expect(&cp, "net_connect", &format!("UDP connect to {to}"), |e| {
        e["target_port"] == to.port()
    });
    assert_field(&e, "protocol", "udp");
    assert_field(&e, "pid", test_pid());
    assert_field(&e, "target_ip", "127.0.0.1");
    assert_field(&e, "source_ip", "127.0.0.1");
    assert_field(&e, "source_port", from.port());
}

const CLIENT_SENDS: usize = 3000;
const SERVER_SENDS: usize = 1234;

/// A TCP connection over loopback: the client sends CLIENT_SENDS bytes, the server answers
/// with SERVER_SENDS bytes, the client closes, then the server. Returns (server, client)
/// addresses.
fn exchange_and_close() -> (SocketAddr, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
    let server_addr = listener.local_addr().expect("listener address");
    let mut client = TcpStream::connect(server_addr).expect("connect");
    let client_addr = client.local_addr().expect("client address");
    let (mut server, _) = listener.accept().expect("accept");
    for s in [&client, &server] {
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set a read timeout");
    }

    client
        .write_all(&[7u8; CLIENT_SENDS])
        .expect("client sends");
    let mut got = vec![0u8; CLIENT_SENDS];
    server.read_exact(&mut got).expect("server receives");
    server
        .write_all(&[9u8; SERVER_SENDS])
        .expect("server answers");
    let mut got = vec![0u8; SERVER_SENDS];
    client.read_exact(&mut got).expect("client receives");

    client.shutdown(Shutdown::Both).expect("client shutdown");
    drop(client);
    let mut rest = [0u8; 1];
    assert_eq!(server.read(&mut rest).expect("server reads EOF"), 0);
    drop(server);
    (server_addr, client_addr)
}

#[track_caller]
fn assert_bytes(e: &Value, field: &str, at_least: usize) {
    let n = e[field]
        .as_u64()
        .unwrap_or_else(|| panic!("`{field}` should be a number\n  in event: {e}"));
    assert!(
        n >= at_least as u64,
        "`{field}` should be at least {at_least}, got {n}\n  in event: {e}"
    );
}

#[track_caller]
fn assert_duration(e: &Value) {
    let d = e["duration_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("`duration_ms` should be a number\n  in event: {e}"));
    assert!(
        (0.0..60_000.0).contains(&d),
        "`duration_ms` should be between 0 and a minute, got {d}\n  in event: {e}"
    );
}

#[test]
fn tcp_close_reports_bytes_client_side() {
    let mon = monitor();
    let cp = mon.checkpoint();
    let (server, client) = exchange_and_close();

    let e = mon.expect(
        &cp,
        "net_close",
        &format!("close of the client end {client} -> {server}"),
        |e| e["source_port"] == client.port() && e["target_port"] == server.port(),
    );
    assert_field(&e, "protocol", "tcp");
    assert_field(&e, "pid", test_pid());
    assert_field(&e, "source_ip", "127.0.0.1");
    assert_field(&e, "target_ip", "127.0.0.1");
    assert_bytes(&e, "bytes_sent", CLIENT_SENDS);
    assert_bytes(&e, "bytes_received", SERVER_SENDS);
    assert_duration(&e);
}

#[test]
fn tcp_close_reports_bytes_server_side() {
    let mon = monitor();
    let cp = mon.checkpoint();
    let (server, client) = exchange_and_close();

    let e = mon.expect(
        &cp,
        "net_close",
        &format!("close of the server end {server} -> {client}"),
        |e| e["source_port"] == server.port() && e["target_port"] == client.port(),
    );
    assert_field(&e, "protocol", "tcp");
    assert_field(&e, "pid", test_pid());
    assert_bytes(&e, "bytes_sent", SERVER_SENDS);
    assert_bytes(&e, "bytes_received", CLIENT_SENDS);
    assert_duration(&e);
}

// ---------------------------------------------------------------------------------------------
// Failed connects. Each test uses a loopback address of its own (all of 127.0.0.0/8 reaches
// `lo`, where nothing listens on them): failures are counted per process and address, and this
// test binary is one process.

/// A blocking connect refused by the peer: reported with its errno.
#[test]
fn refused_connect_is_net_connect_failed_with_its_errno() {
    let mon = monitor();
    let target: SocketAddr = "127.77.1.1:9".parse().expect("an address");
    let cp = mon.checkpoint();
    let err = TcpStream::connect(target).expect_err("nothing listens there");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");

    let e = mon.expect(
        &cp,
        "net_connect_failed",
        &format!("the refused connect to {target}"),
        |e| e["target_ip"] == "127.77.1.1" && e["target_port"] == 9,
    );
    assert_field(&e, "protocol", "tcp");
    assert_field(&e, "pid", test_pid());
    assert_field(&e, "tid", gettid());
    assert_field(&e, "error", "ECONNREFUSED");
    assert_field(&e, "attempts", 1);
}

/// A non-blocking connect (std's `connect_timeout`) that fails while the thread waits in
/// poll(): the socket saw the failure, the errno is not known.
#[test]
fn refused_non_blocking_connect_is_net_connect_failed() {
    let mon = monitor();
    let target: SocketAddr = "127.77.1.2:9".parse().expect("an address");
    let cp = mon.checkpoint();
    TcpStream::connect_timeout(&target, Duration::from_secs(5)).expect_err("nothing listens");

    let e = mon.expect(
        &cp,
        "net_connect_failed",
        &format!("the refused non-blocking connect to {target}"),
        |e| e["target_ip"] == "127.77.1.2" && e["target_port"] == 9,
    );
    assert_field(&e, "pid", test_pid());
    assert_field(&e, "attempts", 1);
    assert!(e.get("error").is_none(), "no errno is known: {e}");
}

/// 150 refused connects to one address are three events (the 1st, 10th and 100th failure),
/// each with the count so far; the scan rule matches the last.
#[test]
fn a_port_scan_is_a_few_counted_events() {
    let mon = monitor();
    let cp = mon.checkpoint();
    for port in 1000..1150 {
        let target = SocketAddr::from(([127, 77, 1, 3], port));
        TcpStream::connect(target).expect_err("nothing listens");
    }
    let last = mon.expect(
        &cp,
        "net_connect_failed",
        "the 100th refused connect to 127.77.1.3",
        |e| e["target_ip"] == "127.77.1.3" && e["attempts"] == 100,
    );
    let rules: Vec<&str> = last["analysis"]["rules"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(rules.contains(&"connection_failures_burst"), "{last}");

    // Everything the scan caused has arrived once a later event has.
    mon.sync_point(crate::common::TestDir::new(&crate::common::marker()).path());
    let attempts: Vec<u64> = mon
        .events()
        .iter()
        .filter(|e| e["event_type"] == "net_connect_failed" && e["target_ip"] == "127.77.1.3")
        .filter_map(|e| e["attempts"].as_u64())
        .collect();
    assert_eq!(attempts, [1, 10, 100], "one event per power of ten");
}
