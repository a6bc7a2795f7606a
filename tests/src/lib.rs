//! End-to-end tests live in `tests/e2e`. This library holds what other
//! crates' tests share with them: real proxy servers, started on free
//! loopback ports from configuration files the tests write themselves, and
//! certificates for `wss://`.

pub mod pki;
pub mod proxies;
