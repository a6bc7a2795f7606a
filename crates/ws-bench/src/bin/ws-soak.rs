//! The soak client: many connections for minutes, killed and reconnected at
//! random, some of them slow readers, every message numbered so that loss
//! and reordering are counted. Prints one line of JSON. `scripts/soak.sh`
//! runs it against the example servers and adds the servers' memory and
//! descriptors.
//!
//! Run with: `cargo run --release -p ws-bench --bin ws-soak -- MODE --addr HOST:PORT [options]`
//!
//! - `echo`: each connection sends a numbered text message every
//!   `--interval-ms` (default 1 000) and checks that the echoes come back
//!   in order, each once.
//! - `broadcast`: connections join rooms of `--room-size` (default 100,
//!   the path `/soak/N`); each publishes a numbered message every
//!   `--interval-ms` and checks that every other publisher's messages
//!   arrive in order, each once.
//!
//! Options: `--connections N` (default 1 000), `--duration S` (default
//! 30), `--kill-every S` (default 10: each connection lives a random time
//! up to twice this, then closes cleanly or is reset, half and half, and
//! reconnects), `--slow PERCENT` (default 10: that share of connections
//! reads in bursts, every 200 ms, what arrived meanwhile: behind, but
//! keeping up on average).
//!
//! The client is tokio-tungstenite: an independent implementation, which
//! answers the servers' heartbeat pings as it reads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, connect_async};

#[derive(Debug, Clone)]
struct Args {
    mode: String,
    addr: SocketAddr,
    connections: usize,
    duration: f64,
    interval: Duration,
    kill_every: f64,
    slow_percent: u64,
    room_size: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().ok_or("missing MODE (echo or broadcast)")?;
    let mut parsed = Args {
        mode,
        addr: "127.0.0.1:9001".parse().map_err(|_| "address")?,
        connections: 1000,
        duration: 30.0,
        interval: Duration::from_secs(1),
        kill_every: 10.0,
        slow_percent: 10,
        room_size: 100,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let bad = || format!("bad value for {flag}: {value}");
        match flag.as_str() {
            "--addr" => parsed.addr = value.parse().map_err(|_| bad())?,
            "--connections" => parsed.connections = value.parse().map_err(|_| bad())?,
            "--duration" => parsed.duration = value.parse().map_err(|_| bad())?,
            "--interval-ms" => {
                parsed.interval = Duration::from_millis(value.parse().map_err(|_| bad())?)
            }
            "--kill-every" => parsed.kill_every = value.parse().map_err(|_| bad())?,
            "--slow" => parsed.slow_percent = value.parse().map_err(|_| bad())?,
            "--room-size" => parsed.room_size = value.parse().map_err(|_| bad())?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(parsed)
}

/// What every connection adds to.
#[derive(Default)]
struct Counts {
    connects: AtomicU64,
    /// Answered 503: the server was at its connection limit (a client's
    /// new connection can overlap the end of its old one).
    busy: AtomicU64,
    connect_errors: AtomicU64,
    /// Connections open now, and the most at once.
    open: AtomicU64,
    peak: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    /// Echoes or publications that never came, though the connection
    /// closed cleanly (echo), or gaps in a publisher's run (broadcast).
    lost: AtomicU64,
    /// Arrived out of order, or twice.
    reordered: AtomicU64,
    /// Sent on a connection that was then reset: in flight, not counted
    /// as lost.
    abandoned: AtomicU64,
    clean_closes: AtomicU64,
    resets: AtomicU64,
    /// Connections the server closed because the heartbeat's pong was
    /// late (1011): the client fell behind in reading.
    heartbeat_closes: AtomicU64,
    /// Connections that ended otherwise without the client causing it.
    failures: AtomicU64,
}

impl Counts {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A connection ended without the client causing it: a heartbeat
    /// close if the server's close frame said 1011, a failure otherwise.
    fn ended_by_server(&self, close_code: Option<u16>) {
        let counter = if close_code == Some(1011) {
            &self.heartbeat_closes
        } else {
            &self.failures
        };
        Self::add(counter, 1);
    }
}

/// A small random number generator per connection (xorshift), seeded from
/// the connection's index: the run is the same each time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// How one connection's life ends.
enum End {
    Clean,
    Reset,
}

/// One client: connects, lives a random time, ends cleanly or with a
/// reset, and reconnects, until the run is over.
async fn client(index: usize, args: Arc<Args>, counts: Arc<Counts>, end_at: Instant) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1).wrapping_mul(0x2545_F491));
    let slow = rng.below(100) < args.slow_percent;
    let path = match args.mode.as_str() {
        "broadcast" => format!("/soak/{}", index / args.room_size.max(1)),
        _ => "/".to_owned(),
    };
    let url = format!("ws://{}{path}", args.addr);
    // A publisher's epoch changes with each connection: its sequence
    // starts again, and receivers start a new run for it.
    let mut epoch = 0u64;
    // Spread the first connections over a second.
    sleep(Duration::from_millis(rng.below(1000))).await;
    while Instant::now() < end_at {
        let lifetime = Duration::from_millis(rng.below((args.kill_every * 2000.0) as u64) + 500);
        let until = (Instant::now() + lifetime).min(end_at);
        let end = if rng.below(2) == 0 {
            End::Clean
        } else {
            End::Reset
        };
        epoch += 1;
        match connect_async(&url).await {
            Ok((ws, _)) => {
                Counts::add(&counts.connects, 1);
                let open = counts.open.fetch_add(1, Ordering::Relaxed) + 1;
                counts.peak.fetch_max(open, Ordering::Relaxed);
                let tag = (index as u64) << 32 | epoch;
                live(ws, &args, &counts, until, end, slow, tag).await;
                counts.open.fetch_sub(1, Ordering::Relaxed);
            }
            Err(error) => {
                let busy = matches!(
                    &error,
                    tokio_tungstenite::tungstenite::Error::Http(response)
                        if response.status() == 503
                );
                Counts::add(
                    if busy {
                        &counts.busy
                    } else {
                        &counts.connect_errors
                    },
                    1,
                );
                sleep(Duration::from_millis(100 + rng.below(400))).await;
            }
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// One connection's life. Messages are `TAG SEQ`: the tag names the
/// connection (client index and epoch), the sequence counts from 0.
async fn live(
    ws: Ws,
    args: &Args,
    counts: &Counts,
    until: Instant,
    end: End,
    slow: bool,
    tag: u64,
) {
    let (mut sink, mut stream) = ws.split();
    let mut next_send = 0u64;
    // Echo: the next sequence expected back. Broadcast: per publisher's
    // tag, the last sequence seen on this connection.
    let mut next_echo = 0u64;
    let mut runs: HashMap<u64, u64> = HashMap::new();
    let echo = args.mode != "broadcast";
    let mut tick = tokio::time::interval(args.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_read = Instant::now();
    let mut server_close = None;
    let deadline = sleep_until(until);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => break,
            _ = tick.tick() => {
                let text = format!("{tag} {next_send}");
                if sink.send(Message::text(text)).await.is_err() {
                    counts.ended_by_server(server_close);
                    return;
                }
                next_send += 1;
                Counts::add(&counts.sent, 1);
            }
            item = stream.next(), if !slow || last_read.elapsed() >= Duration::from_millis(200) => {
                let mut item = item;
                // A slow reader takes what arrived while it paused, then
                // pauses again.
                loop {
                    match item {
                        Some(Ok(Message::Text(text))) => {
                            check(&text, echo, tag, &mut next_echo, &mut runs, counts);
                        }
                        Some(Ok(Message::Close(frame))) => {
                            server_close = frame.map(|f| u16::from(f.code));
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => {
                            counts.ended_by_server(server_close);
                            return;
                        }
                    }
                    if !slow {
                        break;
                    }
                    match futures_util::FutureExt::now_or_never(stream.next()) {
                        Some(more) => item = more,
                        None => break,
                    }
                }
                last_read = Instant::now();
            }
            // A slow reader waits before its next read.
            () = sleep(Duration::from_millis(200)), if slow && last_read.elapsed() < Duration::from_millis(200) => {}
        }
    }
    match end {
        End::Clean => {
            Counts::add(&counts.clean_closes, 1);
            let _ = sink.send(Message::Close(None)).await;
            // What was sent before the close comes back before the
            // server's close frame.
            while let Some(Ok(message)) = stream.next().await {
                if let Message::Text(text) = message {
                    check(&text, echo, tag, &mut next_echo, &mut runs, counts);
                }
            }
            if echo {
                Counts::add(&counts.lost, next_send - next_echo);
            }
        }
        End::Reset => {
            Counts::add(&counts.resets, 1);
            if echo {
                Counts::add(&counts.abandoned, next_send - next_echo);
            }
            if let Ok(ws) = sink.reunite(stream)
                && let MaybeTlsStream::Plain(tcp) = ws.get_ref()
            {
                let _ = tcp.set_zero_linger();
            }
        }
    }
}

/// Counts one received message `TAG SEQ`: against the next echo expected
/// (echo), or against the run of its publisher (broadcast).
fn check(
    text: &str,
    echo: bool,
    tag: u64,
    next_echo: &mut u64,
    runs: &mut HashMap<u64, u64>,
    counts: &Counts,
) {
    Counts::add(&counts.received, 1);
    let mut parts = text.split(' ');
    let (Some(Ok(from)), Some(Ok(seq))) = (
        parts.next().map(str::parse::<u64>),
        parts.next().map(str::parse::<u64>),
    ) else {
        return;
    };
    if echo {
        if from != tag || seq < *next_echo {
            Counts::add(&counts.reordered, 1);
        } else {
            Counts::add(&counts.lost, seq - *next_echo);
            *next_echo = seq + 1;
        }
    } else {
        match runs.insert(from, seq) {
            Some(last) if seq <= last => Counts::add(&counts.reordered, 1),
            Some(last) => Counts::add(&counts.lost, seq - last - 1),
            None => {}
        }
    }
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => Arc::new(args),
        Err(error) => {
            eprintln!("ws-soak: {error}");
            std::process::exit(2);
        }
    };
    let counts = Arc::new(Counts::default());
    let end_at = Instant::now() + Duration::from_secs_f64(args.duration);
    let tasks: Vec<_> = (0..args.connections)
        .map(|i| tokio::spawn(client(i, args.clone(), counts.clone(), end_at)))
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    let c = &counts;
    let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    println!(
        "{{\"mode\":\"{}\",\"connections\":{},\"peak_open\":{},\"connects\":{},\"busy_503\":{},\
         \"connect_errors\":{},\"clean_closes\":{},\"resets\":{},\"heartbeat_closes\":{},\"failures\":{},\
         \"sent\":{},\"received\":{},\"lost\":{},\"reordered\":{},\"abandoned\":{}}}",
        args.mode,
        args.connections,
        get(&c.peak),
        get(&c.connects),
        get(&c.busy),
        get(&c.connect_errors),
        get(&c.clean_closes),
        get(&c.resets),
        get(&c.heartbeat_closes),
        get(&c.failures),
        get(&c.sent),
        get(&c.received),
        get(&c.lost),
        get(&c.reordered),
        get(&c.abandoned),
    );
}
