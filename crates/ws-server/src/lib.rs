//! The Tokio WebSocket server: `serve(handler, addr)` over the `ws-proto` core.
