//! Drives the Autobahn|Testsuite fuzzing server (`wstest -m fuzzingserver`)
//! with this crate's client: reads the number of cases, runs each case by
//! echoing every text and binary message, then asks the server to write its
//! reports. `scripts/autobahn.sh client` runs it and checks the results.
//!
//! Run with: `cargo run --release --example autobahn_client -- BASE_URL AGENT`
//! (for example `ws://127.0.0.1:9002 ws-client`).

use std::process::ExitCode;
use std::time::Duration;

use ws_client::{Client, Message, PerMessageDeflate, proto::Config};

#[tokio::main]
async fn main() -> ExitCode {
    ws_examples::init_logging();
    let mut args = std::env::args().skip(1);
    let (Some(base), Some(agent)) = (args.next(), args.next()) else {
        eprintln!("usage: autobahn_client BASE_URL AGENT");
        return ExitCode::from(2);
    };
    match run(base.trim_end_matches('/'), &agent).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(base: &str, agent: &str) -> Result<(), Box<dyn std::error::Error>> {
    // The suite sends messages up to 16 MiB; the heartbeat would only add
    // pings the suite does not expect.
    let client = Client::builder()
        .config(
            Config::default()
                .max_message_size(64 << 20)
                .max_frame_size(64 << 20),
        )
        .ping_interval(None)
        // `config` replaced the whole core config: offer permessage-deflate
        // again (sections 12 and 13 of the suite).
        .compression(Some(PerMessageDeflate::default()))
        .close_timeout(Duration::from_secs(5))
        .build()?;

    let (mut ws, _) = client.connect(format!("{base}/getCaseCount")).await?;
    let count: u32 = match ws.recv().await {
        Some(Ok(Message::Text(text))) => text.parse()?,
        other => return Err(format!("unexpected answer to getCaseCount: {other:?}").into()),
    };
    while ws.recv().await.is_some() {}
    println!("{count} cases");

    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        let (mut ws, _) = match client.connect(&url).await {
            Ok(connected) => connected,
            Err(error) => {
                eprintln!("case {case}: {error}");
                continue;
            }
        };
        while let Some(item) = ws.recv().await {
            match item {
                Ok(message) => {
                    if ws.send(message).await.is_err() {
                        break;
                    }
                }
                Err(error) => {
                    tracing::debug!(case, %error, "connection failed");
                    break;
                }
            }
        }
        // Wait for the close to finish before the next case.
        while ws.recv().await.is_some() {}
    }

    let (mut ws, _) = client
        .connect(format!("{base}/updateReports?agent={agent}"))
        .await?;
    while ws.recv().await.is_some() {}
    println!("reports updated");
    Ok(())
}
