//! The nats-server test support (`support::nats`): a server starts on a free
//! loopback port, greets a raw TCP client with its `INFO` line, takes extra
//! flags and a config file, and is gone once dropped.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

mod support;
use support::nats::NatsServer;

/// The `INFO {...}` line a server sends to a new connection.
fn info_line(server: &NatsServer) -> String {
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, server.port())).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .expect("read INFO");
    assert!(line.starts_with("INFO {"), "not an INFO line: {line:?}");
    // nats-server 2.15 ends it with `} \r\n` (a space before CRLF).
    assert!(
        line.ends_with("\r\n") && line.trim_end().ends_with('}'),
        "INFO line not terminated: {line:?}"
    );
    line
}

#[test]
fn a_started_server_greets_a_raw_client_with_info() {
    let server = NatsServer::start();
    assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
    let info = info_line(&server);
    assert!(info.contains("\"max_payload\""), "{info}");
    assert!(
        info.contains(&format!("\"port\":{}", server.port())),
        "{info}"
    );
}

#[test]
fn extra_flags_reach_the_server() {
    let server = NatsServer::start_with(&["--server_name", "nats-smoke"]);
    let info = info_line(&server);
    assert!(info.contains("\"server_name\":\"nats-smoke\""), "{info}");
}

#[test]
fn a_config_file_sets_max_payload() {
    let server = NatsServer::start_with_config("max_payload: 65536\n");
    let info = info_line(&server);
    assert!(info.contains("\"max_payload\":65536,"), "{info}");
}

#[test]
fn servers_get_ports_of_their_own() {
    let a = NatsServer::start();
    let b = NatsServer::start();
    assert_ne!(a.port(), b.port());
    info_line(&a);
    info_line(&b);
}

#[test]
fn a_dropped_server_is_gone() {
    let server = NatsServer::start();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, server.port()));
    drop(server);
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "{addr} still accepts connections after drop"
    );
}
