//! `ws serve`: the echo and broadcast servers of the examples, to try
//! `ws` (or anything else) against.

use tokio::net::TcpListener;
use ws_server::{Hub, Message, Publication, Server, WebSocket};

use crate::args::Serve;
use crate::connect::OWN_ERROR;

/// Serves until Ctrl-C or SIGTERM; the exit status.
pub(crate) async fn run(addr: Option<String>, mode: Serve) -> u8 {
    let addr = addr.unwrap_or_else(|| match mode {
        Serve::Echo => "127.0.0.1:9001".to_owned(),
        Serve::Broadcast => "127.0.0.1:9002".to_owned(),
    });
    let listener = match TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "ws serve: cannot listen on {addr}: {error} (another port: ws serve 127.0.0.1:PORT)"
            );
            return OWN_ERROR;
        }
    };
    let local = listener.local_addr().map_or(addr, |a| a.to_string());
    let what = match mode {
        Serve::Echo => "echo",
        Serve::Broadcast => "broadcast: every message goes to everyone on the same path",
    };
    println!("listening on ws://{local}/ ({what}); Ctrl-C to stop");
    // Any page may connect: this server is for trying things out.
    let builder = Server::builder().any_origin();
    let served = match mode {
        Serve::Echo => {
            builder
                .serve(echo, listener)
                .with_graceful_shutdown(shutdown())
                .await
        }
        Serve::Broadcast => {
            let hub = Hub::new();
            let handler = move |ws: WebSocket| broadcast(hub.clone(), ws);
            builder
                .serve(handler, listener)
                .with_graceful_shutdown(shutdown())
                .await
        }
    };
    match served {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("ws serve: {error}");
            OWN_ERROR
        }
    }
}

async fn echo(mut ws: WebSocket) {
    let mut batch = Vec::new();
    while let Ok(1..) = ws.recv_many(&mut batch, 16).await {
        if ws.send_many(&mut batch).await.is_err() {
            break;
        }
    }
}

async fn broadcast(hub: Hub, mut ws: WebSocket) {
    let room = ws.path().to_owned();
    let Some(member) = hub.register(&ws) else {
        return;
    };
    member.join(&room);
    let mut batch = Vec::new();
    while let Ok(1..) = ws.recv_many(&mut batch, 16).await {
        batch.retain(Message::is_data);
        let _ = hub.publish_many(batch.drain(..).map(|m| Publication::room(&room, m)));
    }
}

async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = interrupt => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    let _ = interrupt.await;
}
