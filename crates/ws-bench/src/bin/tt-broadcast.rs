//! Reference broadcast server on tokio-tungstenite 0.30, written the
//! straightforward way its `server` (chat) example is: a shared map of
//! unbounded channels, one writer task per client, and a clone and a send
//! per recipient for each message. Like `broadcast_server`, the room is the
//! URL path and the sender receives its own messages.
//!
//! Run with: `cargo run --release -p ws-bench --bin tt-broadcast -- [ADDR]`
//! (default `127.0.0.1:9103`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{StreamExt, TryStreamExt, future};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

type Rooms = Arc<Mutex<HashMap<String, HashMap<SocketAddr, UnboundedSender<Message>>>>>;

async fn handle_connection(rooms: Rooms, stream: TcpStream, addr: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let mut path = String::new();
    // tungstenite's callback signature, whose error type is large.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| {
        path = request.uri().path().to_owned();
        Ok(response)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let (tx, rx) = unbounded_channel();
    rooms
        .lock()
        .unwrap()
        .entry(path.clone())
        .or_default()
        .insert(addr, tx);

    let (outgoing, incoming) = ws.split();
    let broadcast_incoming = incoming.try_for_each(|message| {
        if message.is_text() || message.is_binary() {
            let rooms = rooms.lock().unwrap();
            if let Some(peers) = rooms.get(&path) {
                for recipient in peers.values() {
                    let _ = recipient.send(message.clone());
                }
            }
        }
        future::ok(())
    });
    // The example's `rx.map(Ok).forward(outgoing)`, without tokio-stream.
    let mut rx = rx;
    let receive_from_others = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
        .map(Ok)
        .forward(outgoing);
    tokio::pin!(broadcast_incoming, receive_from_others);
    future::select(broadcast_incoming, receive_from_others).await;

    let mut rooms = rooms.lock().unwrap();
    if let Some(peers) = rooms.get_mut(&path) {
        peers.remove(&addr);
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9103".into());
    let rooms = Rooms::default();
    let listener = TcpListener::bind(&addr).await?;
    loop {
        let (stream, peer) = listener.accept().await?;
        tokio::spawn(handle_connection(rooms.clone(), stream, peer));
    }
}
