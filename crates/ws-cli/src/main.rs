//! `ws`: a WebSocket client for the terminal and for scripts, and the two
//! example servers to try it against. `ws --help` says everything;
//! `cargo install --path crates/ws-cli` installs it.

use std::process::ExitCode;

mod args;
mod connect;
mod output;
mod serve;

fn main() -> ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        let filter = tracing_subscriber::EnvFilter::from_default_env();
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let command = match args::parse(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(error) => {
            eprintln!("ws: {error}");
            return ExitCode::from(connect::USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ws: cannot start: {error}");
            return ExitCode::from(connect::OWN_ERROR);
        }
    };
    let code = match command {
        args::Command::Help => {
            print!("{}", args::HELP);
            0
        }
        args::Command::Version => {
            println!("ws {}", env!("CARGO_PKG_VERSION"));
            0
        }
        args::Command::Serve { addr, mode } => runtime.block_on(serve::run(addr, mode)),
        args::Command::Connect(options) => runtime.block_on(connect::run(*options)),
    };
    // Stdin may still be read by a blocking thread: do not wait for it.
    runtime.shutdown_background();
    ExitCode::from(code)
}
