//! End-to-end tests over loopback against tokio-tungstenite, an
//! independent implementation of RFC 6455.

mod client;
mod deflate;
mod deflate_sockudo;
mod hub;
mod inline;
mod proto_interop;
mod proxy;
mod server;
mod tls;
