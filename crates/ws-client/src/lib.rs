//! The Tokio WebSocket client: `connect(url)` over the `ws-proto` core.
