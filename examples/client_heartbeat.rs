//! A long-lived client with a heartbeat: it pings the server every
//! `--ping-interval` seconds and gives up on the connection when a pong
//! takes longer than `--ping-timeout`. Every message received is printed.
//!
//! The pair is checked before connecting: the interval must be greater than
//! the timeout, otherwise the program prints the error and exits with 1.
//! When the heartbeat times out it prints the heartbeat-timeout error and
//! exits with 1, unless `--reconnect` is given, in which case it reconnects
//! with exponential backoff and jitter.
//!
//! Run with:
//! `cargo run --example client_heartbeat -- URL [--ping-interval SECS] [--ping-timeout SECS] [--reconnect]`
//! (defaults 60 and 5; fractions such as 0.5 are allowed).

use std::process::ExitCode;
use std::time::Duration;

use ws_client::{App, Callbacks, Client, CloseCode, Message, Reconnect, WebSocketSender};

struct Printer;

impl Callbacks for Printer {
    fn on_open(&mut self, _sender: &WebSocketSender) {
        println!("connected");
    }

    fn on_reconnect(&mut self, _sender: &WebSocketSender) {
        println!("reconnected");
    }

    fn on_message(&mut self, _sender: &WebSocketSender, message: Message) {
        match message {
            Message::Text(text) => println!("{text}"),
            Message::Binary(data) => println!("<{} bytes>", data.len()),
            _ => {}
        }
    }

    fn on_pong(&mut self, _payload: &[u8]) {
        tracing::debug!("pong");
    }

    fn on_error(&mut self, error: &ws_client::AppError) {
        eprintln!("error: {error}");
    }

    fn on_close(&mut self, code: Option<CloseCode>, reason: &str) {
        match code {
            Some(code) => println!("closed: {code} {reason}"),
            None => println!("closed"),
        }
    }
}

struct Args {
    url: String,
    ping_interval: f64,
    ping_timeout: f64,
    reconnect: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        url: String::new(),
        ping_interval: 60.0,
        ping_timeout: 5.0,
        reconnect: false,
    };
    let seconds = |flag: &str, value: Option<String>| -> Result<f64, String> {
        value
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("{flag} needs a number of seconds"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ping-interval" => parsed.ping_interval = seconds(&arg, args.next())?,
            "--ping-timeout" => parsed.ping_timeout = seconds(&arg, args.next())?,
            "--reconnect" => parsed.reconnect = true,
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            url if parsed.url.is_empty() => parsed.url = url.to_owned(),
            extra => return Err(format!("unexpected argument {extra}")),
        }
    }
    if parsed.url.is_empty() {
        return Err("missing URL".into());
    }
    Ok(parsed)
}

#[tokio::main]
async fn main() -> ExitCode {
    ws_examples::init_logging();
    let args = match parse_args() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("{error}");
            eprintln!(
                "usage: client_heartbeat URL [--ping-interval SECS] [--ping-timeout SECS] [--reconnect]"
            );
            return ExitCode::from(2);
        }
    };
    let client = Client::builder()
        .ping_interval(Some(Duration::from_secs_f64(args.ping_interval)))
        .ping_timeout(Some(Duration::from_secs_f64(args.ping_timeout)));
    // Check the pair before connecting, with the client's own rule.
    if let Err(error) = client.clone().build() {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }
    let mut app = App::new(args.url).client(client);
    if args.reconnect {
        app = app.reconnect(Reconnect::new().max_delay(Duration::from_secs(10)));
    }
    let mut printer = Printer;
    tokio::select! {
        outcome = app.run_forever(&mut printer) => match outcome {
            // The error was printed by `on_error`.
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        },
        () = ws_examples::shutdown_signal() => ExitCode::SUCCESS,
    }
}
