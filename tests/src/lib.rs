//! End-to-end tests live in `tests/e2e`. This library holds what other
//! crates' tests share with them: real proxy servers, started on free
//! loopback ports from configuration files the tests write themselves.

pub mod proxies;
