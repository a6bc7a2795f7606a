//! The load generator: speaks raw RFC 6455 over TCP with frames built (and
//! masked) once, so that it costs the server under test as little as
//! possible, and prints one line of JSON with what it measured.
//!
//! Run with: `cargo run --release -p ws-bench --bin ws-load -- MODE --addr HOST:PORT [options]`
//!
//! Modes:
//! - `echo`: `--connections N --depth D --size B [--binary] --duration S`:
//!   N connections each keep D messages in flight; messages/s, MB/s and
//!   p50/p99/p99.9 round trip.
//! - `handshake`: `--connections N --messages M --duration S`: N workers
//!   each connect, exchange M messages one at a time, close, and repeat;
//!   handshakes/s.
//! - `idle`: `--connections N --server-pid PID`: holds N idle connections
//!   and reports the growth of the server's resident memory per connection.
//! - `fanout`: `--receivers N --size B --window W --duration S [--server-pid PID]`:
//!   N receivers and one publisher in one room (`--path`, default `/`); the
//!   publisher keeps W messages in flight, paced by its own copies coming
//!   back. Deliveries/s, p50/p99 publish-to-receive latency, server memory.
//!   `--receivers-at ADDR,ADDR...` spreads the receivers over several
//!   servers in turn (instances on a backplane; the publisher stays on
//!   `--addr`), `--server-pid` then takes their pids, comma-separated, and
//!   `--broker-pid PID` reports the broker's CPU time (`broker_cpu_s`).
//!
//! `fanout --deflate` has every connection offer permessage-deflate (the
//! server compresses each publication, for instance once for all with
//! `broadcast_server --deflate`), publishes JSON-like text after the
//! 16-byte stamp, and has each receiver inflate the head of what it gets
//! (the stamp and sequence number; see `Head`).
//!
//! `echo --deflate` offers permessage-deflate without context takeover
//! either way (so the load's one compressed frame is valid every time) and
//! sends JSON-like text; it fails if the server declines, and also reports
//! the bytes on the wire per message each way.
//!
//! Every mode takes `--warmup S` (default 1): nothing is counted before it,
//! and `--tls-ca PATH` to speak `wss://` (server name `localhost`, trusting
//! the CA in PATH).

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::{Sleep, sleep_until};

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Set by `--tls-ca`: connections speak TLS first.
static TLS: OnceLock<tokio_rustls::TlsConnector> = OnceLock::new();

/// A connection, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Stream = Box<dyn Io>;

#[derive(Debug, Clone)]
struct Args {
    mode: String,
    addr: SocketAddr,
    path: String,
    connections: usize,
    depth: usize,
    size: usize,
    binary: bool,
    deflate: bool,
    duration: f64,
    warmup: f64,
    messages: usize,
    window: usize,
    server_pid: Option<u32>,
    /// `--server-pid` may name several processes (a server on a backplane):
    /// fan-out sums their memory and CPU.
    server_pids: Vec<u32>,
    /// `--receivers-at`: where the fan-out receivers connect, in turn
    /// (default `--addr`, where the publisher connects).
    receivers_at: Vec<SocketAddr>,
    /// `--broker-pid`: a broker (Redis) whose CPU fan-out reports apart.
    broker_pid: Option<u32>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().ok_or("missing MODE")?;
    let mut parsed = Args {
        mode,
        addr: "127.0.0.1:9001".parse().unwrap_or_else(|_| unreachable!()),
        path: "/".into(),
        connections: 64,
        depth: 1,
        size: 5,
        binary: false,
        deflate: false,
        duration: 5.0,
        warmup: 1.0,
        messages: 10,
        window: 16,
        server_pid: None,
        server_pids: Vec::new(),
        receivers_at: Vec::new(),
        broker_pid: None,
    };
    while let Some(flag) = args.next() {
        if flag == "--binary" {
            parsed.binary = true;
            continue;
        }
        if flag == "--deflate" {
            parsed.deflate = true;
            continue;
        }
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let bad = || format!("bad value for {flag}: {value}");
        match flag.as_str() {
            "--addr" => parsed.addr = value.parse().map_err(|_| format!("bad address {value}"))?,
            "--path" => parsed.path = value.clone(),
            "--connections" | "--receivers" => {
                parsed.connections = value.parse().map_err(|_| bad())?
            }
            "--depth" => parsed.depth = value.parse().map_err(|_| bad())?,
            "--size" => parsed.size = value.parse().map_err(|_| bad())?,
            "--duration" => parsed.duration = value.parse().map_err(|_| bad())?,
            "--warmup" => parsed.warmup = value.parse().map_err(|_| bad())?,
            "--messages" => parsed.messages = value.parse().map_err(|_| bad())?,
            "--window" => parsed.window = value.parse().map_err(|_| bad())?,
            "--server-pid" => {
                parsed.server_pids = value
                    .split(',')
                    .map(|pid| pid.parse().map_err(|_| bad()))
                    .collect::<Result<_, _>>()?;
                parsed.server_pid = parsed.server_pids.first().copied();
            }
            "--receivers-at" => {
                parsed.receivers_at = value
                    .split(',')
                    .map(|addr| addr.parse().map_err(|_| bad()))
                    .collect::<Result<_, _>>()?;
            }
            "--broker-pid" => parsed.broker_pid = Some(value.parse().map_err(|_| bad())?),
            "--tls-ca" => {
                let _ = TLS.set(ws_bench::tls_connector(value.as_ref()));
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(parsed)
}

/// A client frame: FIN, `opcode`, masked with [`MASK`].
fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&MASK);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    frame
}

/// The header of the server frame at the start of `buf`, once it is all
/// there: the opcode, the header length and the payload length.
fn frame_head(buf: &[u8]) -> Option<(u8, usize, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let (header, len) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (4, usize::from(u16::from_be_bytes([buf[2], buf[3]]))),
        127 if buf.len() >= 10 => {
            let mut len = [0u8; 8];
            len.copy_from_slice(&buf[2..10]);
            (10, u64::from_be_bytes(len) as usize)
        }
        126 | 127 => return None,
        len => (2, usize::from(len)),
    };
    let header = header + if buf[1] & 0x80 != 0 { 4 } else { 0 };
    Some((opcode, header, len))
}

/// The next complete server frame at the start of `buf`: its opcode, the
/// header length and the payload length.
fn next_frame(buf: &[u8]) -> Option<(u8, usize, usize)> {
    frame_head(buf).filter(|&(_, header, len)| buf.len() >= header + len)
}

/// Connects and completes the opening handshake; returns the stream and
/// any bytes that came after the response head.
async fn open(addr: SocketAddr, path: &str) -> io::Result<(Stream, BytesMut)> {
    open_with(addr, path, false).await
}

/// The offer of `echo --deflate`: no context either way, so that one
/// compressed frame is valid every time it is sent.
const DEFLATE_OFFER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits";

async fn open_with(addr: SocketAddr, path: &str, deflate: bool) -> io::Result<(Stream, BytesMut)> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    // Leave no TIME_WAIT behind on this side when the connection is dropped.
    tcp.set_zero_linger()?;
    let mut stream: Stream = match TLS.get() {
        Some(tls) => {
            let name =
                rustls_pki_types::ServerName::try_from("localhost").map_err(io::Error::other)?;
            Box::new(tls.connect(name, tcp).await?)
        }
        None => Box::new(tcp),
    };
    let extensions = if deflate {
        format!("Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n")
    } else {
        String::new()
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                return Err(io::Error::other("handshake refused"));
            }
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            if deflate && !head.contains("permessage-deflate") {
                return Err(io::Error::other("the server declined permessage-deflate"));
            }
            buf.advance(end + 4);
            return Ok((stream, buf));
        }
    }
}

/// Percentile `p` (0 to 100) of sorted microseconds.
fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// The CPU time a process has used, user and system, in clock ticks
/// (`/proc/PID/stat` fields 14 and 15).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

/// The window in which results count.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn new(args: &Args) -> Self {
        let start = Instant::now() + Duration::from_secs_f64(args.warmup);
        Self {
            start,
            end: start + Duration::from_secs_f64(args.duration),
        }
    }

    fn counts(&self, now: Instant) -> bool {
        now >= self.start && now < self.end
    }

    /// One timer for the end of the window, made once per task.
    fn end_timer(&self) -> Sleep {
        sleep_until(self.end.into())
    }
}

/// Runs `io` unless the window's end (`end`) comes first (`None`).
///
/// `end` is one timer for the whole run, registered once and then only
/// polled: a timeout per read would add a timer entry and remove it again
/// for every read, work done on the cores the server under test shares.
async fn before_end<F: Future>(mut end: Pin<&mut Sleep>, io: F) -> Option<F::Output> {
    let mut io = pin!(io);
    poll_fn(|cx| {
        if let Poll::Ready(out) = io.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if end.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// Payloads larger than this are not buffered: their bytes are read into a
/// scratch buffer and dropped as they arrive. Buffering them cost the load
/// generator a copy per growth of its buffer (a fifth of its time at 1 MiB),
/// on the cores it shares with the server under test.
const SKIP_ABOVE: usize = 64 * 1024;

/// One echo connection: keeps `depth` messages in flight until the window
/// ends; returns the round trips measured, in microseconds.
/// JSON-like text of `size` bytes, as a market-data or chat feed sends.
fn json_text(size: usize) -> String {
    let mut text = String::with_capacity(size + 64);
    let mut i = 0u64;
    while text.len() < size {
        let price = 100 + (i * 7919) % 900;
        text.push_str(&format!(
            "{{\"seq\":{i},\"sym\":\"S{}\",\"px\":{price}.{:02},\"qty\":{},\"side\":\"{}\"}},",
            i % 50,
            (i * 31) % 100,
            (i * 13) % 1000,
            if i.is_multiple_of(3) { "buy" } else { "sell" }
        ));
        i += 1;
    }
    text.truncate(size);
    text
}

/// The message a client sends, compressed without context (what a
/// permessage-deflate client with client_no_context_takeover sends every
/// time), RSV1 set and masked.
fn deflated_frame(text: &str) -> Vec<u8> {
    let params = no_context();
    let mut conn = ws_proto::Connection::builder(ws_proto::Role::Client)
        .config(ws_proto::Config::default().compression(Some(Default::default())))
        .mask_keys(|| MASK)
        .deflate(Some(params))
        .build();
    let mut out = BytesMut::new();
    let _ = conn.send(&ws_proto::Message::text(text.to_owned()), &mut out);
    out.to_vec()
}

/// Bytes on the wire, both ways, over every `echo --deflate` connection.
static WIRE_SENT: AtomicU64 = AtomicU64::new(0);
static WIRE_RECEIVED: AtomicU64 = AtomicU64::new(0);

async fn echo_connection(args: Arc<Args>, window: Window) -> io::Result<Vec<u32>> {
    let (mut stream, mut buf) = open_with(args.addr, &args.path, args.deflate).await?;
    let opcode = if args.binary { 0x2 } else { 0x1 };
    let frame = if args.deflate {
        deflated_frame(&json_text(args.size))
    } else {
        masked_frame(opcode, &vec![b'x'; args.size])
    };
    let batch = frame.repeat(args.depth);
    let mut sent: VecDeque<Instant> = VecDeque::with_capacity(args.depth);
    let mut latencies = Vec::new();
    // The payload bytes of a large frame still to come, and its opcode.
    let mut skipping: Option<(usize, u8)> = None;
    let mut scratch = Vec::new();
    // The opcodes of the frames completed by the last read.
    let mut frames = Vec::new();

    let mut end = pin!(window.end_timer());
    stream.write_all(&batch).await?;
    let now = Instant::now();
    sent.extend(std::iter::repeat_n(now, args.depth));
    loop {
        frames.clear();
        // Into the scratch buffer while a large payload is being skipped,
        // into `buf` otherwise.
        let read = match skipping {
            Some((left, _)) => {
                if scratch.is_empty() {
                    scratch = vec![0; SKIP_ABOVE];
                }
                let want = left.min(scratch.len());
                before_end(end.as_mut(), stream.read(&mut scratch[..want])).await
            }
            None => before_end(end.as_mut(), stream.read_buf(&mut buf)).await,
        };
        let n = match read {
            None => break,
            Some(Ok(0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Some(Err(error)) => return Err(error),
            Some(Ok(n)) => n,
        };
        if window.counts(Instant::now()) && args.deflate {
            WIRE_RECEIVED.fetch_add(n as u64, Ordering::Relaxed);
        }
        if let Some((left, opcode)) = skipping {
            if n == left {
                skipping = None;
                frames.push(opcode);
            } else {
                skipping = Some((left - n, opcode));
            }
        } else {
            while let Some((opcode, header, len)) = frame_head(&buf) {
                let have = buf.len() - header;
                if have >= len {
                    buf.advance(header + len);
                    frames.push(opcode);
                } else if len > SKIP_ABOVE {
                    buf.clear();
                    skipping = Some((len - have, opcode));
                    break;
                } else {
                    break;
                }
            }
        }
        let now = Instant::now();
        let mut answered = 0;
        for &opcode in &frames {
            match opcode {
                0x1 | 0x2 => {
                    let start = sent.pop_front().unwrap_or(now);
                    if window.counts(now) {
                        latencies.push(now.duration_since(start).as_micros() as u32);
                    }
                    answered += 1;
                }
                0x8 => return Ok(latencies),
                _ => {}
            }
        }
        if now >= window.end {
            break;
        }
        if answered > 0 {
            if args.deflate && window.counts(now) {
                WIRE_SENT.fetch_add((answered * frame.len()) as u64, Ordering::Relaxed);
            }
            stream.write_all(&batch[..answered * frame.len()]).await?;
            sent.extend(std::iter::repeat_n(Instant::now(), answered));
        }
    }
    Ok(latencies)
}

async fn echo(args: Arc<Args>) -> String {
    let window = Window::new(&args);
    let tasks: Vec<_> = (0..args.connections)
        .map(|_| tokio::spawn(echo_connection(args.clone(), window)))
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        match task.await {
            Ok(Ok(mut measured)) => latencies.append(&mut measured),
            _ => errors += 1,
        }
    }
    latencies.sort_unstable();
    let messages = latencies.len() as f64 / args.duration;
    let wire = if args.deflate {
        let count = latencies.len().max(1) as f64;
        format!(
            ",\"wire_bytes_sent_per_msg\":{:.0},\"wire_bytes_received_per_msg\":{:.0}",
            WIRE_SENT.load(Ordering::Relaxed) as f64 / count,
            WIRE_RECEIVED.load(Ordering::Relaxed) as f64 / count
        )
    } else {
        String::new()
    };
    format!(
        "{{\"mode\":\"echo\",\"connections\":{},\"depth\":{},\"size\":{},\"msgs_per_sec\":{:.0},\
         \"mb_per_sec\":{:.2},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"errors\":{}{wire}}}",
        args.connections,
        args.depth,
        args.size,
        messages,
        messages * args.size as f64 / 1e6,
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 99.9),
        errors
    )
}

/// Connect, `messages` round trips, close; repeated until the window ends.
async fn handshake_worker(args: Arc<Args>, window: Window) -> io::Result<u64> {
    let frame = masked_frame(0x1, b"hello");
    let close = masked_frame(0x8, &1000u16.to_be_bytes());
    let mut done = 0;
    while Instant::now() < window.end {
        let (mut stream, mut buf) = open(args.addr, &args.path).await?;
        let mut received = 0;
        stream.write_all(&frame).await?;
        let mut closed = false;
        while !closed {
            if next_frame(&buf).is_none() && stream.read_buf(&mut buf).await? == 0 {
                break;
            }
            while let Some((opcode, header, len)) = next_frame(&buf) {
                buf.advance(header + len);
                match opcode {
                    0x1 | 0x2 => {
                        received += 1;
                        if received < args.messages {
                            stream.write_all(&frame).await?;
                        } else {
                            stream.write_all(&close).await?;
                        }
                    }
                    0x8 => closed = true,
                    _ => {}
                }
            }
        }
        drop(stream);
        if closed && window.counts(Instant::now()) {
            done += 1;
        }
    }
    Ok(done)
}

async fn handshake(args: Arc<Args>) -> String {
    let window = Window::new(&args);
    let tasks: Vec<_> = (0..args.connections)
        .map(|_| tokio::spawn(handshake_worker(args.clone(), window)))
        .collect();
    let mut total = 0;
    let mut errors = 0;
    for task in tasks {
        match task.await {
            Ok(Ok(done)) => total += done,
            _ => errors += 1,
        }
    }
    format!(
        "{{\"mode\":\"handshake\",\"connections\":{},\"messages\":{},\"handshakes_per_sec\":{:.0},\"errors\":{}}}",
        args.connections,
        args.messages,
        total as f64 / args.duration,
        errors
    )
}

/// Opens `count` connections, at most 64 handshakes at a time.
async fn open_many(args: &Arc<Args>, count: usize) -> Vec<(Stream, BytesMut)> {
    let gate = Arc::new(Semaphore::new(64));
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let gate = gate.clone();
            let args = args.clone();
            let addr = match args.receivers_at.len() {
                0 => args.addr,
                n => args.receivers_at[i % n],
            };
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await;
                open_with(addr, &args.path, args.deflate).await
            })
        })
        .collect();
    let mut streams = Vec::with_capacity(count);
    for task in tasks {
        if let Ok(Ok(stream)) = task.await {
            streams.push(stream);
        }
    }
    streams
}

async fn idle(args: Arc<Args>) -> String {
    let pid = args.server_pid.unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid).unwrap_or(0);
    let streams = open_many(&args, args.connections).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid).unwrap_or(0);
    let opened = streams.len();
    let per = (after.saturating_sub(before) * 1024) as f64 / opened.max(1) as f64;
    drop(streams);
    format!(
        "{{\"mode\":\"idle\",\"connections\":{opened},\"rss_before_kib\":{before},\
         \"rss_after_kib\":{after},\"bytes_per_connection\":{per:.0}}}"
    )
}

/// Nanoseconds from `epoch` (the start of the run) to `at`, carried in
/// fan-out payloads.
fn stamp(epoch: Instant, at: Instant) -> u64 {
    at.duration_since(epoch).as_nanos() as u64
}

/// The room a fan-out receiver makes in its buffer before each read.
/// Reading into what was left of the 4 KiB handshake buffer took a call
/// per delivery of a 4 KiB message, and the generator then spent more of
/// the two cores it shares with the server than the server did.
const RECEIVE_CHUNK: usize = 16 * 1024;

/// One fan-out receiver: reads until the window ends; returns the
/// publish-to-receive latencies, in microseconds, and how many messages it
/// missed: gaps in the publisher's sequence numbers (bytes 8..16 of each
/// payload of 16 bytes or more), which only the server's slow-consumer
/// policy makes.
/// What the `--deflate` offer settles: no context kept either way.
fn no_context() -> ws_proto::DeflateParams {
    let mut params = ws_proto::DeflateParams::default();
    params.server_no_context_takeover = true;
    params.client_no_context_takeover = true;
    params
}

/// What a fan-out receiver counts: round trips from the publisher's stamp,
/// and the sequence numbers it missed.
#[derive(Default)]
struct Tally {
    latencies: Vec<u32>,
    last_seq: Option<u64>,
    missed: u64,
}

impl Tally {
    /// A message whose payload starts with the publisher's stamp and
    /// sequence number, arrived at `arrived` (counted when `counts`).
    fn note(&mut self, payload: &[u8], arrived: u64, counts: bool) {
        if payload.len() >= 16 {
            let seq = u64::from_be_bytes(payload[8..16].try_into().unwrap_or_default());
            if let Some(last) = self.last_seq {
                self.missed += seq.saturating_sub(last + 1);
            }
            self.last_seq = Some(seq);
        }
        if payload.len() >= 8 && counts {
            let sent = u64::from_be_bytes(payload[..8].try_into().unwrap_or_default());
            let latency = arrived.saturating_sub(sent) / 1000;
            self.latencies.push(latency.min(u64::from(u32::MAX)) as u32);
        }
    }
}

/// What a `--deflate` receiver reads of a compressed message: its first
/// 16 bytes (the stamp and the sequence number), inflated from the start of
/// the payload. The server compresses without context (the `--deflate`
/// offer), so every message is a DEFLATE stream of its own and its head
/// inflates alone.
///
/// 1 000 receivers inflating what they get bound the run on two cores long
/// before the server does, so the load does less than a real client: it
/// inflates only the head (which proves the data is DEFLATE), and a
/// receiver given the very same compressed bytes that another receiver on
/// its thread already read takes that head from a cache (`HEADS`). The
/// cache only helps when the server sent identical bytes, which is what
/// compressing once for everyone produces. Whole messages are checked by
/// the end-to-end tests.
struct Head(zlib_rs::Inflate);

/// Hashes a payload eight bytes at a time, for the per-thread cache of
/// heads (its keys are compared in full on a hit).
#[derive(Default)]
struct WordHasher(u64);

impl std::hash::Hasher for WordHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
            self.0 = (self.0 ^ word)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .rotate_left(29);
        }
        for &byte in words.remainder() {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
}

type HeadCache =
    std::collections::HashMap<Box<[u8]>, [u8; 16], std::hash::BuildHasherDefault<WordHasher>>;

thread_local! {
    /// The heads of the compressed payloads lately read on this thread.
    static HEADS: std::cell::RefCell<HeadCache> = Default::default();
}

impl Head {
    fn new() -> Self {
        Self(zlib_rs::Inflate::new(false, 15))
    }

    fn read(&mut self, compressed: &[u8]) -> Option<[u8; 16]> {
        if let Some(head) = HEADS.with_borrow(|heads| heads.get(compressed).copied()) {
            return Some(head);
        }
        let mut head = [0u8; 16];
        self.0.reset(false);
        let _ = self
            .0
            .decompress(compressed, &mut head, zlib_rs::InflateFlush::SyncFlush);
        if self.0.total_out() != 16 {
            return None;
        }
        HEADS.with_borrow_mut(|heads| {
            if heads.len() >= 1024 {
                heads.clear();
            }
            heads.insert(compressed.into(), head);
        });
        Some(head)
    }
}

/// A fan-out receiver: tallies each data frame's stamp and sequence
/// number, read from the head of a compressed one (RSV1 set).
async fn receiver(
    mut stream: Stream,
    mut buf: BytesMut,
    epoch: Instant,
    window: Window,
) -> (Vec<u32>, u64) {
    let mut tally = Tally::default();
    let mut head = Head::new();
    let mut end = pin!(window.end_timer());
    loop {
        buf.reserve(RECEIVE_CHUNK);
        let Some(Ok(1..)) = before_end(end.as_mut(), stream.read_buf(&mut buf)).await else {
            break;
        };
        // The clock is read once per read: every frame it completed
        // arrived then.
        let now = Instant::now();
        if now >= window.end {
            break;
        }
        let arrived = stamp(epoch, now);
        while let Some((opcode, header, len)) = next_frame(&buf) {
            if opcode == 0x1 || opcode == 0x2 {
                let payload = &buf[header..header + len];
                if buf[0] & 0x40 == 0 {
                    tally.note(payload, arrived, window.counts(now));
                } else if let Some(stamp) = head.read(payload) {
                    tally.note(&stamp, arrived, window.counts(now));
                }
            }
            buf.advance(header + len);
        }
    }
    (tally.latencies, tally.missed)
}

/// The CPU time `pids` spent over the measured window, in seconds.
async fn cpu_over(pids: Vec<u32>, window: Window) -> f64 {
    let ticks = |pids: &[u32]| pids.iter().filter_map(|&pid| cpu_ticks(pid)).sum::<u64>();
    tokio::time::sleep_until(window.start.into()).await;
    let before = ticks(&pids);
    tokio::time::sleep_until(window.end.into()).await;
    let after = ticks(&pids);
    // Clock ticks are hundredths of a second on Linux.
    after.saturating_sub(before) as f64 / 100.0
}

async fn fanout(args: Arc<Args>) -> String {
    let epoch = Instant::now();
    let receivers = open_many(&args, args.connections).await;
    let opened = receivers.len();
    let (mut publisher, mut pub_buf) = match open_with(args.addr, &args.path, args.deflate).await {
        Ok(opened) => opened,
        Err(error) => return format!("{{\"mode\":\"fanout\",\"error\":\"{error}\"}}"),
    };
    // Let the server put everyone in the room.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let window = Window::new(&args);
    let tasks: Vec<_> = receivers
        .into_iter()
        .map(|(stream, buf)| tokio::spawn(receiver(stream, buf, epoch, window)))
        .collect();

    let size = args.size.max(8);
    let opcode = 0x2;
    let mut payload = if args.deflate {
        // The stamp and the sequence number, then JSON-like text.
        let mut payload = vec![0u8; 16];
        payload.extend_from_slice(json_text(size.saturating_sub(16)).as_bytes());
        payload
    } else {
        vec![b'x'; size]
    };
    let published = AtomicU64::new(0);
    let mut seq = 0u64;
    let mut message = |payload: &mut Vec<u8>| {
        payload[..8].copy_from_slice(&stamp(epoch, Instant::now()).to_be_bytes());
        if payload.len() >= 16 {
            payload[8..16].copy_from_slice(&seq.to_be_bytes());
        }
        seq += 1;
        masked_frame(opcode, payload)
    };
    // The server's memory halfway through, sampled on a task of its own:
    // under overload the publisher may not come back to its loop then.
    let middle = window.start + (window.end - window.start) / 2;
    let pids = args.server_pids.clone();
    let rss_during = tokio::spawn(async move {
        tokio::time::sleep_until(middle.into()).await;
        pids.iter().filter_map(|&pid| rss_kib(pid)).sum::<u64>()
    });
    // The servers' (and the broker's) CPU time over the window, on tasks
    // of their own too.
    let server_cpu = tokio::spawn(cpu_over(args.server_pids.clone(), window));
    let broker_cpu = tokio::spawn(cpu_over(args.broker_pid.into_iter().collect(), window));
    let mut out = Vec::new();
    for _ in 0..args.window {
        out.extend(message(&mut payload));
    }
    let _ = publisher.write_all(&out).await;
    published.fetch_add(args.window as u64, Ordering::Relaxed);
    let mut end = pin!(window.end_timer());
    while let Some(Ok(1..)) = before_end(end.as_mut(), publisher.read_buf(&mut pub_buf)).await {
        let mut back = 0;
        while let Some((opcode, header, len)) = next_frame(&pub_buf) {
            pub_buf.advance(header + len);
            if opcode == 0x1 || opcode == 0x2 {
                back += 1;
            }
        }
        out.clear();
        for _ in 0..back {
            out.extend(message(&mut payload));
        }
        if !out.is_empty() && publisher.write_all(&out).await.is_err() {
            break;
        }
        published.fetch_add(back, Ordering::Relaxed);
        if Instant::now() >= window.end {
            break;
        }
    }
    let rss_during = rss_during.await.unwrap_or(0);
    let server_cpu_s = server_cpu.await.unwrap_or(0.0);
    let broker_cpu_s = broker_cpu.await.unwrap_or(0.0);
    let mut latencies = Vec::new();
    let mut dropped = 0;
    for task in tasks {
        if let Ok((mut measured, missed)) = task.await {
            latencies.append(&mut measured);
            dropped += missed;
        }
    }
    latencies.sort_unstable();
    format!(
        "{{\"mode\":\"fanout\",\"receivers\":{opened},\"size\":{size},\"deliveries_per_sec\":{:.0},\
         \"published\":{},\"dropped\":{dropped},\"p50_us\":{},\"p99_us\":{},\"server_rss_kib\":{rss_during},\
         \"server_cpu_s\":{server_cpu_s:.2},\"server_cpu_ns_per_delivery\":{:.0},\
         \"broker_cpu_s\":{broker_cpu_s:.2}}}",
        latencies.len() as f64 / args.duration,
        published.load(Ordering::Relaxed),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        server_cpu_s * 1e9 / (latencies.len().max(1) as f64),
    )
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => Arc::new(args),
        Err(error) => {
            eprintln!(
                "{error}\nusage: ws-load echo|handshake|idle|fanout --addr HOST:PORT [options]"
            );
            std::process::exit(2);
        }
    };
    let line = match args.mode.as_str() {
        "echo" => echo(args).await,
        "handshake" => handshake(args).await,
        "idle" => idle(args).await,
        "fanout" => fanout(args).await,
        other => {
            eprintln!("unknown mode {other}");
            std::process::exit(2);
        }
    };
    println!("{line}");
}
