//! Sessions on sockets the caller made: `KcpListener::from_std` and
//! `KcpStream::connect_with_socket`.
#![cfg(feature = "tokio")]

use std::io::ErrorKind;
use std::time::Duration;

use kcp_rs::net::{KcpListener, KcpStream, SessionConfig};
use kcp_rs::KcpConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

#[tokio::test]
async fn listener_and_client_on_sockets_the_caller_bound() {
    timeout(Duration::from_secs(20), async {
        // Blocking sockets, as `std` makes them: the session layer switches
        // them to non-blocking mode.
        let server_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let server_addr = server_socket.local_addr().unwrap();
        let listener = KcpListener::from_std(server_socket, SessionConfig::default())
            .await
            .unwrap();
        assert_eq!(listener.local_addr().unwrap(), server_addr);

        let client_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let client_addr = client_socket.local_addr().unwrap();
        let mut client =
            KcpStream::connect_with_socket(client_socket, server_addr, SessionConfig::default())
                .await
                .unwrap();
        assert_eq!(client.local_addr().unwrap(), client_addr);
        assert_eq!(client.peer_addr().unwrap(), server_addr);

        client.write_all(b"from a socket of my own").await.unwrap();
        let (mut served, peer) = listener.accept().await.unwrap();
        assert_eq!(
            peer, client_addr,
            "the datagrams left from the caller's socket"
        );
        let mut buf = [0u8; 23];
        served.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"from a socket of my own");
        served.write_all(b"and back").await.unwrap();
        let mut buf = [0u8; 8];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"and back");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn unworkable_sockets_and_configs_are_refused() {
    // A socket never bound: nothing could reach it.
    let unbound = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    let err = KcpListener::from_std(unbound.into(), SessionConfig::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

    // An invalid configuration, before the socket is touched.
    let bad = SessionConfig {
        kcp: KcpConfig {
            interval: 0,
            ..KcpConfig::default()
        },
        ..SessionConfig::default()
    };
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let err = KcpListener::from_std(socket, bad.clone())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let err = KcpStream::connect_with_socket(socket, "127.0.0.1:9", bad)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

    // An IPv4 socket cannot reach an IPv6 peer.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    assert!(
        KcpStream::connect_with_socket(socket, "[::1]:9", SessionConfig::default())
            .await
            .is_err()
    );
}
