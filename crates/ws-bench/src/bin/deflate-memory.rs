//! Heap bytes one server connection holds after one compressed message each
//! way, for each permessage-deflate memory mode: the figures of
//! `docs/compression.md`.
//!
//! Run with: `cargo run --release -p ws-bench --bin deflate-memory`
//!
//! Each mode builds 200 server connections (with their clients), sends a
//! 4 KiB JSON-like message each way on each, and counts the heap the
//! server connections hold: what one takes when built, plus what its side
//! of the exchange left held (the clients' bytes are left out). The per-thread compressor and inflater of the modes without
//! context takeover are counted once, in the total, not per connection.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use ws_proto::{Config, Connection, Message, PerMessageDeflate, Role};

struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, counting bytes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's layout is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as allocated above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const CONNECTIONS: usize = 200;

fn held() -> isize {
    HELD.load(Ordering::Relaxed)
}

/// One message from `client` to `server` and back; returns the heap bytes
/// the server's side of it left held (the client's work, and the buffers
/// in flight, are not counted).
fn exchange(client: &mut Connection, server: &mut Connection, message: &Message) -> isize {
    let mut wire = ws_proto::BytesMut::new();
    client.send(message, &mut wire).unwrap();
    let start = held();
    server.handle_bytes(&wire);
    let received = server.poll_message().unwrap().unwrap();
    let mut back = ws_proto::BytesMut::new();
    server.send(&received, &mut back).unwrap();
    drop(received);
    server.release_idle_buffers();
    let server_held = held() - start - back.capacity() as isize;
    client.handle_bytes(&back);
    client.poll_message().unwrap().unwrap();
    server_held
}

fn main() {
    let mut text: String = (0..400)
        .map(|i| format!("{{\"seq\":{i},\"user\":\"u{}\",\"ok\":true}},", i % 37))
        .collect();
    text.truncate(4096);
    let message = Message::text(text);
    let modes = [
        ("no compression", None),
        (
            "context takeover, window 15, memory level 8",
            Some(PerMessageDeflate::default()),
        ),
        (
            "context takeover, window 12, memory level 5",
            Some(
                PerMessageDeflate::default()
                    .server_max_window_bits(12)
                    .client_max_window_bits(12)
                    .mem_level(5),
            ),
        ),
        (
            "context takeover, window 10, memory level 4",
            Some(
                PerMessageDeflate::default()
                    .server_max_window_bits(10)
                    .client_max_window_bits(10)
                    .mem_level(4),
            ),
        ),
        (
            "no context takeover either way (per-thread state)",
            Some(
                PerMessageDeflate::default()
                    .server_no_context_takeover(true)
                    .client_no_context_takeover(true),
            ),
        ),
    ];
    for (name, settings) in modes {
        let config = Config::default().compression(settings.clone());
        let params = settings.as_ref().map(|settings| {
            let mut headers = ws_proto::http::HeaderMap::new();
            headers.insert(
                ws_proto::http::header::SEC_WEBSOCKET_EXTENSIONS,
                settings.offer().parse().unwrap(),
            );
            settings.accept(&headers).expect("accepted")
        });
        let mut clients: Vec<Connection> = (0..CONNECTIONS)
            .map(|_| {
                Connection::builder(Role::Client)
                    .config(config.clone())
                    .deflate(params)
                    .build()
            })
            .collect();
        let before = held();
        let idle: Vec<Connection> = (0..CONNECTIONS)
            .map(|_| {
                Connection::builder(Role::Server)
                    .config(config.clone())
                    .deflate(params)
                    .build()
            })
            .collect();
        let idle_bytes = (held() - before) / CONNECTIONS as isize;
        drop(idle);
        let make_server = || {
            Connection::builder(Role::Server)
                .config(config.clone())
                .deflate(params)
                .build()
        };
        // Warm up: the per-thread state of this mode (and the scratch
        // buffer) is made here, once, outside the count.
        exchange(&mut clients[0], &mut make_server(), &message);
        let mut servers: Vec<Connection> = (1..CONNECTIONS).map(|_| make_server()).collect();
        let mut grown = 0;
        for (client, server) in clients.iter_mut().skip(1).zip(&mut servers) {
            grown += exchange(client, server, &message);
        }
        let used = idle_bytes + grown / (CONNECTIONS - 1) as isize;
        println!(
            "{{\"mode\": \"{name}\", \"idle_bytes\": {idle_bytes}, \
             \"after_one_message_bytes\": {used}, \"connections\": {CONNECTIONS}}}"
        );
    }
}
