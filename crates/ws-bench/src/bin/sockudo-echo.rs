//! Reference echo server with permessage-deflate on sockudo-ws 3: the Rust
//! peer of the compressed echo benchmark (`scripts/bench_deflate.py`).
//! It negotiates with sockudo-ws' default policy (windows up to 15 bits,
//! context takeover unless the client asks otherwise, level 6) and echoes
//! every text and binary message; a client that offers no compression is
//! refused.
//!
//! Run with: `cargo run --release -p ws-bench --bin sockudo-echo -- [ADDR]`
//! (default `127.0.0.1:9103`).

use sockudo_ws::DeflateConfig;
use tokio::net::TcpListener;

fn main() -> std::io::Result<()> {
    // quanta calibrates its clock on first use; do it before the runtime.
    sockudo_ws::init_clock();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9103".into());
    tokio::runtime::Runtime::new()?.block_on(async {
        let listener = TcpListener::bind(&addr).await?;
        ws_bench::sockudo::serve_echo(listener, DeflateConfig::default()).await
    })
}
