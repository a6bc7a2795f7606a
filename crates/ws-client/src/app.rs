//! The callback style: [`App::run_forever`] with a [`Callbacks`] value, and
//! opt-in reconnection with [`Reconnect`].

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

use ws_proto::{CloseCode, Message};
use ws_tokio::{Error, WebSocketSender};

use crate::client::ClientBuilder;
use crate::error::ConnectError;

/// What an [`App`] calls as the connection goes. Every method has an empty
/// default: implement those you need.
///
/// The callbacks run one at a time on the task running
/// [`App::run_forever`]; keep them short, and hand long work to another task
/// or thread with a clone of the sender.
pub trait Callbacks: Send {
    /// The connection is open. `sender` (cloneable, usable from any task or
    /// thread) sends on it. Subscribe here.
    fn on_open(&mut self, sender: &WebSocketSender) {
        let _ = sender;
    }

    /// The connection is open again after a reconnect. The default calls
    /// [`on_open`](Self::on_open), so that subscriptions made there are
    /// made again.
    fn on_reconnect(&mut self, sender: &WebSocketSender) {
        self.on_open(sender);
    }

    /// A text or binary message arrived.
    fn on_message(&mut self, sender: &WebSocketSender, message: Message) {
        let _ = (sender, message);
    }

    /// A ping arrived; it has been answered already.
    fn on_ping(&mut self, payload: &[u8]) {
        let _ = payload;
    }

    /// A pong arrived, for the heartbeat's ping or unsolicited.
    fn on_pong(&mut self, payload: &[u8]) {
        let _ = payload;
    }

    /// Connecting failed, or the connection failed.
    fn on_error(&mut self, error: &AppError) {
        let _ = error;
    }

    /// The connection ended. `code` and `reason` are from the peer's close
    /// frame; `code` is `None` when it had none or the connection was lost.
    fn on_close(&mut self, code: Option<CloseCode>, reason: &str) {
        let _ = (code, reason);
    }
}

/// Why [`App::run_forever`] stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// Connecting failed with an error that retrying cannot fix (a 4xx
    /// answer, a bad URL or setting), or reconnecting is off or gave up.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The open connection failed (a heartbeat timeout, a protocol error,
    /// a lost connection) and reconnecting is off or gave up.
    #[error(transparent)]
    Connection(#[from] Error),
}

/// When and how often an [`App`] reconnects.
///
/// The delay before retry `n` (1, 2, ...) is `initial_delay * 2^(n-1)`,
/// capped at `max_delay`, then multiplied by a random factor between 0.5
/// and 1 so that many clients of one server do not retry in step. The count
/// starts again only after a connection that stayed open for
/// `stable_after`: a server that accepts and closes at once (overloaded,
/// or refusing this client) is retried ever more slowly, not every second
/// forever.
///
/// A server that closes with 1008 (Policy Violation) or 1003 (Unsupported
/// Data) has refused this client, and another try would be refused alike:
/// those codes end [`App::run_forever`] by default
/// ([`fatal_close_codes`](Self::fatal_close_codes)).
#[derive(Debug, Clone)]
pub struct Reconnect {
    initial_delay: Duration,
    max_delay: Duration,
    max_retries: Option<u32>,
    stable_after: Duration,
    fatal_close_codes: Vec<CloseCode>,
}

impl Default for Reconnect {
    /// 1 s initial delay, 30 s at most, retrying forever; the count starts
    /// again after 10 s of a connection; 1008 and 1003 are fatal.
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            max_retries: None,
            stable_after: Duration::from_secs(10),
            fatal_close_codes: vec![CloseCode::POLICY_VIOLATION, CloseCode::UNSUPPORTED_DATA],
        }
    }
}

impl Reconnect {
    /// The defaults: 1 s, doubling up to 30 s, forever.
    pub fn new() -> Self {
        Self::default()
    }

    /// The delay before the first retry; default 1 s.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// The longest delay between retries; default 30 s.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Gives up after this many retries in a row; default `None`, never.
    /// Retries in a row are those not separated by a connection that stayed
    /// open for [`stable_after`](Self::stable_after).
    pub fn max_retries(mut self, retries: Option<u32>) -> Self {
        self.max_retries = retries;
        self
    }

    /// How long a connection must stay open for the count of retries (and
    /// so the delay) to start again; default 10 s.
    pub fn stable_after(mut self, uptime: Duration) -> Self {
        self.stable_after = uptime;
        self
    }

    /// Close codes from the server that end the app instead of a
    /// reconnect; default 1008 (Policy Violation) and 1003 (Unsupported
    /// Data). Empty: reconnect whatever the code.
    pub fn fatal_close_codes(mut self, codes: impl IntoIterator<Item = CloseCode>) -> Self {
        self.fatal_close_codes = codes.into_iter().collect();
        self
    }

    /// The delay before retry `attempt` (from 1), with jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doubled = self
            .initial_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(30));
        let capped = doubled.min(self.max_delay);
        // A random factor in [0.5, 1): "equal jitter".
        let random = RandomState::new().hash_one(attempt);
        let fraction = 0.5 + (random >> 11) as f64 / (1u64 << 53) as f64 / 2.0;
        capped.mul_f64(fraction)
    }
}

/// A long-running client in the callback style of Python's `WebSocketApp`.
///
/// ```no_run
/// use ws_client::{App, Callbacks, Message, WebSocketSender};
///
/// struct Printer;
///
/// impl Callbacks for Printer {
///     fn on_open(&mut self, sender: &WebSocketSender) {
///         let _ = sender.try_send(Message::text("hello"));
///     }
///     fn on_message(&mut self, _sender: &WebSocketSender, message: Message) {
///         println!("{message:?}");
///     }
/// }
///
/// # async fn run() -> Result<(), ws_client::AppError> {
/// App::new("ws://127.0.0.1:9001/").run_forever(&mut Printer).await
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct App {
    url: String,
    client: ClientBuilder,
    reconnect: Option<Reconnect>,
}

impl App {
    /// An app for `url`, with the client's default settings and no
    /// reconnection.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            client: ClientBuilder::default(),
            reconnect: None,
        }
    }

    /// The client settings: headers, heartbeat, timeouts, limits.
    pub fn client(mut self, client: ClientBuilder) -> Self {
        self.client = client;
        self
    }

    /// Reconnects after network errors, 5xx answers and connections that
    /// end without this end closing them. A 4xx answer stays fatal, and so
    /// do the policy's fatal close codes (1008 and 1003 by default).
    pub fn reconnect(mut self, policy: Reconnect) -> Self {
        self.reconnect = Some(policy);
        self
    }

    /// Connects and calls `callbacks` until the connection ends, then
    /// reconnects if asked to.
    ///
    /// Returns `Ok(())` once the application closed the connection (with
    /// [`WebSocketSender::close`] or by dropping every sender), or when the
    /// server closed it and reconnecting is off.
    ///
    /// # Errors
    ///
    /// The error that ended it; it was given to
    /// [`on_error`](Callbacks::on_error) first.
    pub async fn run_forever<C: Callbacks>(self, callbacks: &mut C) -> Result<(), AppError> {
        // Pings and pongs reach the callbacks too.
        let mut builder = self.client;
        builder.settings = builder.settings.control_frames(true);
        let client = match builder.build() {
            Ok(client) => client,
            Err(error) => {
                let error = AppError::Connect(error.into());
                callbacks.on_error(&error);
                return Err(error);
            }
        };
        let mut retries = 0u32;
        let mut opened_before = false;
        loop {
            let outcome = match client.connect(&self.url).await {
                Err(error) => {
                    let retry = error.is_retryable();
                    let error = AppError::Connect(error);
                    callbacks.on_error(&error);
                    if retry { Err(error) } else { return Err(error) }
                }
                Ok((ws, _response)) => {
                    let opened_at = tokio::time::Instant::now();
                    let (mut receiver, sender) = ws.split();
                    if opened_before {
                        tracing::debug!("reconnected");
                        callbacks.on_reconnect(&sender);
                    } else {
                        callbacks.on_open(&sender);
                    }
                    opened_before = true;
                    let mut failure = None;
                    while let Some(item) = receiver.recv().await {
                        match item {
                            Ok(Message::Ping(payload)) => callbacks.on_ping(&payload),
                            Ok(Message::Pong(payload)) => callbacks.on_pong(&payload),
                            Ok(message) => callbacks.on_message(&sender, message),
                            Err(error) => failure = Some(error),
                        }
                    }
                    // As websocket-client: on_error, then on_close.
                    let failure = failure.map(AppError::Connection);
                    if let Some(error) = &failure {
                        callbacks.on_error(error);
                    }
                    let frame = receiver.close_frame();
                    let code = frame.map(|f| f.code);
                    callbacks.on_close(code, frame.map(|f| f.reason.as_str()).unwrap_or(""));
                    // Only a connection that stayed up a while starts the
                    // count of retries again (issue 25, item 6).
                    if let Some(policy) = &self.reconnect
                        && opened_at.elapsed() >= policy.stable_after
                    {
                        retries = 0;
                    }
                    match failure {
                        Some(error) => Err(error),
                        None if receiver.initiated_close() => return Ok(()),
                        None if self.reconnect.as_ref().is_some_and(|policy| {
                            code.is_some_and(|code| policy.fatal_close_codes.contains(&code))
                        }) =>
                        {
                            tracing::debug!(
                                ?code,
                                "the server refused this client: not reconnecting"
                            );
                            return Ok(());
                        }
                        None => Ok(()),
                    }
                }
            };
            let Some(policy) = &self.reconnect else {
                return outcome;
            };
            retries += 1;
            if policy.max_retries.is_some_and(|max| retries > max) {
                tracing::debug!(retries, "giving up reconnecting");
                return outcome;
            }
            let delay = policy.delay(retries);
            tracing::debug!(?delay, attempt = retries, "reconnecting");
            tokio::time::sleep(delay).await;
        }
    }
}
