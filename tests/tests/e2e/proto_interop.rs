//! The sans-I/O core, driven by a minimal loop in this file, against
//! tokio-tungstenite in both roles: handshake, messages of every kind and
//! size, fragmentation, and the close handshake.

use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::{self, protocol::frame::coding::CloseCode as TCode};
use ws_proto::{
    ClientRequest, CloseCode, CloseFrame, Config, Connection, Decoded, Message, RequestParser,
    Role, State, validate_request, write_accept,
};

const LIMIT: Duration = Duration::from_secs(20);

/// Reads until `parse` has a complete head; returns it and the bytes read
/// after it.
async fn read_head<T, E: std::fmt::Debug>(
    stream: &mut TcpStream,
    mut parse: impl FnMut(&[u8]) -> Result<Decoded<T>, E>,
) -> (T, BytesMut) {
    let mut buf = BytesMut::new();
    loop {
        assert!(
            stream.read_buf(&mut buf).await.unwrap() > 0,
            "eof in handshake"
        );
        if let Decoded::Done { value, consumed } = parse(&buf).unwrap() {
            let _ = buf.split_to(consumed);
            return (value, buf);
        }
    }
}

/// Echoes every data message until the close handshake completes; returns
/// the peer's close frame.
async fn echo(stream: &mut TcpStream, mut conn: Connection) -> Option<CloseFrame> {
    let mut out = BytesMut::new();
    loop {
        while let Some(message) = conn.poll_message().unwrap() {
            if message.is_data() {
                conn.send(&message, &mut out).unwrap();
            }
        }
        conn.poll_transmit(&mut out);
        stream.write_all(&out).await.unwrap();
        out.clear();
        if conn.state() == State::Closed {
            return conn.close_received().flatten().cloned();
        }
        if stream.read_buf(conn.read_buffer()).await.unwrap() == 0 {
            conn.handle_eof();
        }
    }
}

fn messages() -> Vec<tungstenite::Message> {
    vec![
        tungstenite::Message::text("hello"),
        tungstenite::Message::text("κόσμε €𝄞"),
        tungstenite::Message::binary(vec![0u8; 0]),
        tungstenite::Message::binary((0..=255u8).cycle().take(70_000).collect::<Vec<_>>()),
        tungstenite::Message::binary(vec![0x5Au8; 1 << 20]),
    ]
}

#[tokio::test]
async fn core_as_server_echoes_tungstenite_client() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/echo?x=1", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut parser = RequestParser::default();
        let (request, rest) = read_head(&mut stream, |buf| parser.parse(buf)).await;
        assert_eq!(request.uri().path(), "/echo");
        let upgrade = validate_request(&request).unwrap();
        assert_eq!(upgrade.protocols(), ["chat"]);
        let mut out = BytesMut::new();
        write_accept(&upgrade, Some("chat"), &Default::default(), &mut out).unwrap();
        stream.write_all(&out).await.unwrap();
        let mut conn = Connection::new(Role::Server, Config::default());
        conn.handle_bytes(&rest);
        echo(&mut stream, conn).await
    });

    let client = async {
        let mut request =
            tungstenite::client::IntoClientRequest::into_client_request(&url).unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", "chat".parse().unwrap());
        let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
        for message in messages() {
            ws.send(message.clone()).await.unwrap();
            assert_eq!(ws.next().await.unwrap().unwrap(), message);
        }
        // A ping is answered by the core on its own.
        ws.send(tungstenite::Message::Ping(b"are you there".to_vec().into()))
            .await
            .unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            tungstenite::Message::Pong(b"are you there".to_vec().into())
        );
        ws.close(Some(tungstenite::protocol::CloseFrame {
            code: TCode::Away,
            reason: "done".into(),
        }))
        .await
        .unwrap();
        // The core's reply completes the close handshake.
        while let Some(message) = ws.next().await {
            match message {
                Ok(tungstenite::Message::Close(Some(frame))) => assert_eq!(frame.code, TCode::Away),
                Ok(other) => panic!("unexpected {other:?}"),
                Err(tungstenite::Error::ConnectionClosed) => break,
                Err(error) => panic!("{error}"),
            }
        }
    };
    timeout(LIMIT, client)
        .await
        .expect("client finished in time");
    let close = timeout(LIMIT, server).await.unwrap().unwrap();
    assert_eq!(close, Some(CloseFrame::new(CloseCode::GOING_AWAY, "done")));
}

#[tokio::test]
async fn core_as_client_talks_to_tungstenite_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
        // Echo, but send every binary message as three fragments.
        while let Some(message) = ws.next().await {
            match message.unwrap() {
                tungstenite::Message::Close(_) => break,
                message @ tungstenite::Message::Text(_) => ws.send(message).await.unwrap(),
                tungstenite::Message::Binary(data) => {
                    use tungstenite::protocol::frame::{
                        Frame,
                        coding::{Data, OpCode},
                    };
                    let third = data.len() / 3;
                    let parts = [
                        (OpCode::Data(Data::Binary), false, data.slice(..third)),
                        (
                            OpCode::Data(Data::Continue),
                            false,
                            data.slice(third..2 * third),
                        ),
                        (OpCode::Data(Data::Continue), true, data.slice(2 * third..)),
                    ];
                    for (opcode, fin, part) in parts {
                        let frame = Frame::message(part, opcode, fin);
                        ws.send(tungstenite::Message::Frame(frame)).await.unwrap();
                    }
                }
                _ => {}
            }
        }
        // Drain until tungstenite has flushed its close reply.
        while ws.next().await.is_some() {}
    });

    let client = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut out = BytesMut::new();
        let mut handshake = ClientRequest::new(addr.to_string(), "/")
            .write(&mut out)
            .unwrap();
        stream.write_all(&out).await.unwrap();
        out.clear();
        let (response, rest) = read_head(&mut stream, |buf| handshake.parse_response(buf)).await;
        assert_eq!(response.status, 101);
        let mut conn = Connection::new(Role::Client, Config::default());
        conn.handle_bytes(&rest);
        for message in messages().into_iter().map(|m| match m {
            tungstenite::Message::Text(t) => Message::text(t.as_str()),
            tungstenite::Message::Binary(b) => Message::binary(b.to_vec()),
            _ => unreachable!(),
        }) {
            conn.send(&message, &mut out).unwrap();
            stream.write_all(&out).await.unwrap();
            out.clear();
            let echoed = loop {
                if let Some(echoed) = conn.poll_message().unwrap() {
                    break echoed;
                }
                assert!(stream.read_buf(conn.read_buffer()).await.unwrap() > 0);
            };
            assert_eq!(echoed, message);
        }
        conn.close(Some(CloseFrame::new(CloseCode::NORMAL, "bye")), &mut out)
            .unwrap();
        assert_eq!(conn.state(), State::Closing);
        stream.write_all(&out).await.unwrap();
        out.clear();
        let close = echo(&mut stream, conn).await;
        assert_eq!(close.map(|f| f.code), Some(CloseCode::NORMAL));
    };
    timeout(LIMIT, client)
        .await
        .expect("client finished in time");
    timeout(LIMIT, server).await.unwrap().unwrap();
}
