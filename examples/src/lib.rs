//! Runnable examples of the workspace; see the files beside this crate and `cargo run --example NAME`.
