//! The callback style of Python's `WebSocketApp`: `on_open` starts a thread
//! that sends `hello 0`, `hello 1` and `hello 2` a second apart through a
//! clone of the sender, then closes the connection; `on_message` prints each
//! reply and `on_close` the close code.
//!
//! Run with: `cargo run --example client_app -- [URL]` (default
//! `ws://127.0.0.1:9001/`, where `cargo run --release --example echo_server`
//! listens).

use std::process::ExitCode;
use std::time::Duration;

use ws_client::{App, AppError, Callbacks, CloseCode, Message, WebSocketSender};

struct Hello;

impl Callbacks for Hello {
    fn on_open(&mut self, sender: &WebSocketSender) {
        println!("opened");
        // The sender is cloneable and works from any thread: `try_send` and
        // `close` do not need the runtime.
        let sender = sender.clone();
        std::thread::spawn(move || {
            for i in 0..3 {
                std::thread::sleep(Duration::from_secs(1));
                if let Err(error) = sender.try_send(Message::text(format!("hello {i}"))) {
                    eprintln!("send failed: {error}");
                    return;
                }
            }
            std::thread::sleep(Duration::from_secs(1));
            let _ = sender.close(CloseCode::NORMAL, "done");
        });
    }

    fn on_message(&mut self, _sender: &WebSocketSender, message: Message) {
        if let Some(text) = message.as_text() {
            println!("received: {text}");
        }
    }

    fn on_error(&mut self, error: &AppError) {
        eprintln!("error: {error}");
    }

    fn on_close(&mut self, code: Option<CloseCode>, reason: &str) {
        match code {
            Some(code) => println!("closed: {code} {reason}"),
            None => println!("closed"),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    ws_examples::init_logging();
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9001/".into());
    match App::new(url).run_forever(&mut Hello).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
