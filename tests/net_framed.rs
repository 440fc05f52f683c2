//! `Framed<KcpStream, LengthDelimitedCodec>` round trips: framing belongs to
//! codecs, and a stream that is `AsyncRead + AsyncWrite` gets it for free.
#![cfg(feature = "tokio")]

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use kcp_rs::net::{KcpListener, KcpStream, SessionConfig};
use kcp_rs::KcpConfig;
use tokio::time::timeout;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

async fn round_trip(cfg: SessionConfig) {
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let mut framed = Framed::new(s, LengthDelimitedCodec::new());
        while let Some(frame) = framed.next().await {
            let frame = frame.unwrap();
            let done = frame.is_empty();
            framed.send(frame.freeze()).await.unwrap();
            if done {
                break;
            }
        }
    });
    let s = KcpStream::connect(addr, cfg).await.unwrap();
    let framed = Framed::new(s, LengthDelimitedCodec::new());
    let frames: Vec<Bytes> = (0..300usize)
        .map(|i| Bytes::from(vec![(i % 256) as u8; (i * 131) % 20_000 + 1]))
        .chain(std::iter::once(Bytes::new()))
        .collect();
    // Write and read at once: the echo comes back while we write (with
    // either side only writing, any transport's buffers fill up).
    let (mut sink, mut stream) = framed.split();
    let write = async {
        for f in &frames {
            sink.feed(f.clone()).await.unwrap();
        }
        sink.flush().await.unwrap();
    };
    let read = async {
        for (i, f) in frames.iter().enumerate() {
            let got = stream.next().await.unwrap().unwrap();
            assert_eq!(got, *f, "frame {i}");
        }
    };
    tokio::join!(write, read);
    server.await.unwrap();
}

#[tokio::test]
async fn framed_round_trip_message_mode() {
    timeout(
        Duration::from_secs(30),
        round_trip(SessionConfig::default()),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn framed_round_trip_stream_mode() {
    let cfg = SessionConfig {
        kcp: KcpConfig {
            stream: true,
            ..KcpConfig::fast()
        },
        ..SessionConfig::default()
    };
    timeout(Duration::from_secs(30), round_trip(cfg))
        .await
        .unwrap();
}
