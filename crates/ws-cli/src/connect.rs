//! `ws URL`: connect, send, print, close; and the exit status that says
//! how it went.

use std::io::IsTerminal;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::time::Instant;
use ws_client::http::{HeaderName, HeaderValue};
use ws_client::{
    BuildError, Client, CloseCode, ConnectError, Message, PerMessageDeflate, Settings,
    WebSocketReceiver,
};

use crate::args::{Connect, Outgoing, Proxy};
use crate::output::Output;

/// Closed normally.
const OK: u8 = 0;
/// An error of the command's own: a file it cannot read, a port it
/// cannot listen on.
pub(crate) const OWN_ERROR: u8 = 1;
/// Bad usage.
pub(crate) const USAGE: u8 = 2;
/// Could not connect.
const CONNECT_FAILED: u8 = 3;
/// The server refused the upgrade.
const REJECTED: u8 = 4;
/// No pong within the ping timeout.
const HEARTBEAT: u8 = 5;
/// Closed abnormally.
const ABNORMAL: u8 = 6;
/// `--timeout` passed before the replies arrived.
const TIMED_OUT: u8 = 7;
/// Interrupted by Ctrl-C.
const INTERRUPTED: u8 = 130;

/// After the end of input, the close waits until no message has arrived
/// for this long...
const QUIET: Duration = Duration::from_millis(250);
/// ...or this long at most.
const LINGER: Duration = Duration::from_secs(2);

/// Runs `ws URL ...`; the exit status.
pub(crate) async fn run(c: Connect) -> u8 {
    let out = Output {
        json: c.json,
        verbose: c.verbose,
        trace: c.trace,
        marked: !c.json && std::io::stdout().is_terminal() && std::io::stdin().is_terminal(),
    };
    let client = match client(&c) {
        Ok(client) => client,
        Err(error) => {
            out.error(&error);
            return USAGE;
        }
    };
    // Files are read before connecting: a missing one is this command's
    // error, not the server's.
    let mut outgoing = Vec::new();
    for item in &c.send {
        match item {
            Outgoing::Message(text) => outgoing.push(message(text.clone().into_bytes(), c.binary)),
            Outgoing::File(path) => match std::fs::read(path) {
                Ok(data) => outgoing.push(message(data, c.binary)),
                Err(error) => {
                    out.error(&format!("cannot read {path}: {error}"));
                    return OWN_ERROR;
                }
            },
        }
    }

    let (ws, response) = match client.connect(&c.url).await {
        Ok(connected) => connected,
        Err(error) => {
            let (message, code) = describe(&error);
            out.error(&message);
            return code;
        }
    };
    if out.trace {
        let mut request = format!("GET {} HTTP/1.1\n", ws.request().uri());
        for (name, value) in ws.request().headers() {
            request.push_str(&format!(
                "{name}: {}\n",
                value.to_str().unwrap_or("<binary>")
            ));
        }
        let mut head = format!("HTTP/1.1 {}\n", response.status);
        for (name, value) in &response.headers {
            head.push_str(&format!(
                "{name}: {}\n",
                value.to_str().unwrap_or("<binary>")
            ));
        }
        out.handshake(&request, &head);
    }
    out.open(
        &c.url,
        response.protocol.as_deref(),
        response.deflate.is_some(),
    );
    let (rx, tx) = ws.split();
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);

    if outgoing.is_empty() {
        interactive(&c, &out, rx, tx, interrupt).await
    } else {
        let mut rx = rx;
        for message in outgoing {
            out.sending(&message);
            if tx.send(message).await.is_err() {
                break;
            }
        }
        let deadline = c.timeout.map(|t| tokio::time::Instant::now() + t);
        let mut replies = 0;
        let mut failed = None;
        while replies < c.count {
            let next = async {
                match deadline {
                    Some(at) => tokio::time::timeout_at(at, rx.recv()).await.ok(),
                    None => Some(rx.recv().await),
                }
            };
            tokio::select! {
                next = next => match next {
                    None => {
                        out.error(&format!(
                            "{replies} of {} replies within --timeout; closing", c.count
                        ));
                        let _ = tx.close(CloseCode::NORMAL, "");
                        finish(&out, rx, None).await;
                        return TIMED_OUT;
                    }
                    Some(Some(Ok(message))) => {
                        replies += usize::from(message.is_data());
                        out.received(&message);
                    }
                    Some(Some(Err(error))) => {
                        failed = Some(error);
                        break;
                    }
                    Some(None) => break,
                },
                _ = &mut interrupt => return INTERRUPTED,
            }
        }
        let _ = tx.close(CloseCode::NORMAL, "");
        finish(&out, rx, failed).await
    }
}

/// Lines from stdin go out; messages print as they come; end of input
/// closes.
async fn interactive(
    c: &Connect,
    out: &Output,
    mut rx: WebSocketReceiver,
    tx: ws_client::WebSocketSender,
    mut interrupt: std::pin::Pin<&mut impl std::future::Future<Output = std::io::Result<()>>>,
) -> u8 {
    if std::io::stdin().is_terminal() && !c.json {
        eprintln!(
            "connected to {}: type a message and Enter to send; Ctrl-D closes, Ctrl-C quits",
            c.url
        );
    }
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut reading = true;
    // After the end of input: when to close (the replies to the last lines
    // may still be on their way: a server answers a close at once, and
    // would drop them), and the latest that can be.
    let mut close_at: Option<(Instant, Instant)> = None;
    let mut failed = None;
    loop {
        let closing = close_at.map(|(quiet, latest)| quiet.min(latest));
        tokio::select! {
            line = lines.next_line(), if reading => match line {
                Ok(Some(line)) => {
                    let message = message(line.into_bytes(), c.binary);
                    out.sending(&message);
                    if tx.send(message).await.is_err() {
                        reading = false;
                    }
                }
                Ok(None) | Err(_) => {
                    reading = false;
                    let now = Instant::now();
                    close_at = Some((now + QUIET, now + LINGER));
                }
            },
            () = tokio::time::sleep_until(closing.unwrap_or_else(Instant::now)), if closing.is_some() => {
                close_at = None;
                let _ = tx.close(CloseCode::NORMAL, "");
            }
            received = rx.recv() => match received {
                Some(Ok(message)) => {
                    out.received(&message);
                    if let Some((quiet, _)) = &mut close_at {
                        *quiet = Instant::now() + QUIET;
                    }
                }
                Some(Err(error)) => failed = Some(error),
                None => break,
            },
            _ = &mut interrupt => return INTERRUPTED,
        }
    }
    status(out, &rx, failed)
}

/// Prints what still arrives until the connection has closed; the exit
/// status.
async fn finish(
    out: &Output,
    mut rx: WebSocketReceiver,
    mut failed: Option<ws_client::Error>,
) -> u8 {
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(received) = rx.recv().await {
            match received {
                Ok(message) => out.received(&message),
                Err(error) => failed = Some(error),
            }
        }
    })
    .await;
    if drained.is_err() {
        out.error("the server did not answer the close within 10 s");
        return ABNORMAL;
    }
    status(out, &rx, failed)
}

/// The exit status of a connection that has ended.
fn status(out: &Output, rx: &WebSocketReceiver, failed: Option<ws_client::Error>) -> u8 {
    let frame = rx.close_frame();
    let code = frame.map(|f| u16::from(f.code));
    out.closed(code, frame.map_or("", |f| f.reason.as_str()));
    match failed {
        Some(ws_client::Error::KeepaliveTimeout) => {
            out.error("no pong within --ping-timeout: the server or the network is not answering");
            HEARTBEAT
        }
        Some(error) => {
            out.error(&format!("connection failed: {error}"));
            ABNORMAL
        }
        None => match code {
            None | Some(1000 | 1001) => OK,
            Some(code) => {
                out.error(&format!("closed with code {code}"));
                ABNORMAL
            }
        },
    }
}

fn message(data: Vec<u8>, binary: bool) -> Message {
    match (binary, String::from_utf8(data)) {
        (false, Ok(text)) => Message::text(text),
        (_, Ok(text)) => Message::binary(text.into_bytes()),
        (_, Err(error)) => Message::binary(error.into_bytes()),
    }
}

/// The client the options describe; a usage error otherwise.
fn client(c: &Connect) -> Result<Client, String> {
    let mut builder = Client::builder()
        .ping_interval(c.ping_interval)
        .ping_timeout(c.ping_timeout)
        .compression(c.deflate.then(PerMessageDeflate::default))
        .settings(Settings::default().control_frames(c.verbose || c.json));
    for (name, value) in &c.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("-H: {name:?} is not a header name"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("-H: the value of {name} cannot go in a header"))?;
        builder = builder.header(name, value);
    }
    builder = builder.protocols(c.subprotocols.iter().cloned());
    if let Some(origin) = &c.origin {
        builder = builder.origin(origin);
    }
    builder = match &c.proxy {
        Proxy::Environment => builder,
        Proxy::Url(url) => builder.proxy(url),
        Proxy::Off => builder.no_proxy(),
    };
    if let Some(ca) = &c.ca {
        builder = builder.add_root_certificates_pem_file(ca);
    }
    builder.build().map_err(|error| match error {
        BuildError::Tls(detail) => format!("--ca: {detail}"),
        BuildError::InvalidProxy(detail) => {
            format!("--proxy or the environment: invalid proxy {detail}")
        }
        other => other.to_string(),
    })
}

/// What went wrong connecting, with what to do next; and the exit status.
fn describe(error: &ConnectError) -> (String, u8) {
    const PROXY_HINT: &str =
        "check --proxy, or HTTPS_PROXY/HTTP_PROXY/ALL_PROXY; --no-proxy connects directly";
    match error {
        ConnectError::Rejected(rejected) => {
            let hint = match rejected.status.as_u16() {
                401 | 403 => ": check the credentials (-H 'Authorization: ...') or --origin",
                404 => ": check the URL's path",
                400 | 426 => ": is this a WebSocket endpoint?",
                500..=599 => ": the server failed; try again later",
                _ => "",
            };
            (
                format!(
                    "the server refused the upgrade: HTTP {}{hint}",
                    rejected.status
                ),
                REJECTED,
            )
        }
        ConnectError::InvalidResponse(_) | ConnectError::ClosedDuringHandshake => {
            (format!("{error}: is this a WebSocket endpoint?"), REJECTED)
        }
        ConnectError::Build(_)
        | ConnectError::InvalidUrl(_)
        | ConnectError::UnsupportedScheme(_)
        | ConnectError::MissingHost => (
            format!("{error}: the URL is ws://host[:port]/path or wss://host[:port]/path"),
            USAGE,
        ),
        ConnectError::Refused { .. } => (
            format!("{error}: is the server running, on this port?"),
            CONNECT_FAILED,
        ),
        ConnectError::Resolve { .. } => (format!("{error}: check the host name"), CONNECT_FAILED),
        ConnectError::Tls(_) => (
            format!(
                "{error}; for a server whose certificate comes from a private CA, pass --ca FILE"
            ),
            CONNECT_FAILED,
        ),
        ConnectError::ConnectTimeout(_) | ConnectError::HandshakeTimeout(_) => (
            format!("{error}: is the host reachable (through the proxy, if any)?"),
            CONNECT_FAILED,
        ),
        ConnectError::ProxyAuth { .. }
        | ConnectError::ProxyRefused { .. }
        | ConnectError::Socks { .. }
        | ConnectError::ProxyUnreachable { .. }
        | ConnectError::ProxyProtocol { .. } => (format!("{error}; {PROXY_HINT}"), CONNECT_FAILED),
        _ => (error.to_string(), CONNECT_FAILED),
    }
}
