//! A real `redis-server` per test, on a free loopback port, in a temporary
//! directory of its own, without persistence; and the project's
//! `broadcast_server --redis` as a process.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A loopback port nobody listens on now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `redis-server` of the test's own; stopped (killed) when dropped.
pub(crate) struct Redis {
    pub(crate) port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl Redis {
    /// Starts one on a free port. Panics with what to install if
    /// `redis-server` is missing (`.ci/run` installs it).
    pub(crate) fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts one with `extra` arguments, on a free port whose cluster bus
    /// port (10 000 above) is free too.
    pub(crate) fn start_with(extra: &[&str]) -> Self {
        let port = loop {
            let port = free_port();
            if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
                break port;
            }
        };
        let dir = std::env::temp_dir().join(format!("ws-redis-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Self {
            port,
            dir,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            child: None,
        };
        redis.restart();
        redis
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (SIGKILL: no goodbye to its clients).
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on the same port, empty, and waits until
    /// it answers.
    pub(crate) fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--loglevel", "warning"])
            .args(&self.extra)
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect(
                "redis-server is needed for these tests (Debian: apt-get install redis-server)",
            );
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(self.request(&[b"PING"]), Some(Reply::Simple(ref s)) if s == "PONG") {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends one command and reads its answer.
    pub(crate) fn request(&self, args: &[&[u8]]) -> Option<Reply> {
        use std::io::{BufReader, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        stream.write_all(&request).ok()?;
        Reply::read(&mut BufReader::new(stream))
    }

    /// The answer to a command that answers with text (`INFO`, `CLUSTER
    /// INFO`), or an empty string.
    pub(crate) fn info(&self, args: &[&[u8]]) -> String {
        match self.request(args) {
            Some(Reply::Bulk(text)) => String::from_utf8_lossy(&text).into_owned(),
            _ => String::new(),
        }
    }

    /// The number of subscribers of `channel` (`PUBSUB NUMSUB`).
    pub(crate) fn subscribers(&self, channel: &str) -> usize {
        match self.request(&[b"PUBSUB", b"NUMSUB", channel.as_bytes()]) {
            Some(Reply::Array(items)) => match items.get(1) {
                Some(Reply::Int(n)) => *n as usize,
                _ => 0,
            },
            _ => 0,
        }
    }

    /// Waits until `channel` has `count` subscribers.
    pub(crate) async fn wait_subscribers(&self, channel: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.subscribers(channel) != count {
            assert!(
                Instant::now() < deadline,
                "{channel} never had {count} subscribers (has {})",
                self.subscribers(channel)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `broadcast_server` example, built once (debug) for these tests.
fn broadcast_server_binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "ws-examples",
                "--example",
                "broadcast_server",
            ])
            .current_dir(&root)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building broadcast_server failed");
        let target =
            std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
        target.join("debug/examples/broadcast_server")
    })
}

/// A `broadcast_server --redis URL` process; killed when dropped. Its log
/// (stdout) is collected by a thread.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    child: Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    pub(crate) async fn start(redis_url: &str) -> Self {
        let binary = broadcast_server_binary();
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut child = Command::new(binary)
            .args([&addr.to_string(), "--redis", redis_url])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("broadcast_server starts");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "broadcast_server did not listen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { addr, child, log }
    }

    /// Whether the process is still running.
    pub(crate) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything it has logged so far.
    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Its resident memory, in KiB.
    pub(crate) fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("VmRSS:"))
                    .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// The last value of `counter` in its logged backplane stats.
    pub(crate) fn stat(&self, counter: &str) -> u64 {
        let needle = format!("{counter}: ");
        self.log()
            .lines()
            .filter(|line| line.contains("BackplaneStats"))
            .filter_map(|line| {
                let at = line.find(&needle)? + needle.len();
                line[at..]
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
            .next_back()
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Redis Cluster of three primaries (no replicas), each a
/// `redis-server --cluster-enabled yes` of the test's own; stopped when
/// dropped.
pub(crate) struct RedisCluster {
    pub(crate) nodes: Vec<Redis>,
}

impl RedisCluster {
    pub(crate) fn start() -> Self {
        let nodes: Vec<Redis> = (0..3)
            .map(|_| Redis::start_with(&["--cluster-enabled", "yes"]))
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli is needed for the cluster test");
        assert!(status.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            while !node
                .info(&[b"CLUSTER", b"INFO"])
                .contains("cluster_state:ok")
            {
                assert!(Instant::now() < deadline, "the cluster never came up");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Self { nodes }
    }

    /// The number of sharded channels each node carries
    /// (`PUBSUB SHARDCHANNELS`).
    pub(crate) fn shard_channels(&self) -> Vec<usize> {
        self.nodes
            .iter()
            .map(|node| match node.request(&[b"PUBSUB", b"SHARDCHANNELS"]) {
                Some(Reply::Array(items)) => items.len(),
                _ => 0,
            })
            .collect()
    }
}

/// An answer of Redis (RESP2, as a fresh connection speaks).
#[derive(Debug)]
pub(crate) enum Reply {
    Simple(String),
    Error,
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Reply>),
}

impl Reply {
    fn read(reader: &mut impl std::io::BufRead) -> Option<Self> {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        let (kind, rest) = line.split_at(1);
        Some(match kind {
            "+" => Self::Simple(rest.to_owned()),
            "-" => Self::Error,
            ":" => Self::Int(rest.parse().ok()?),
            "$" => {
                let Ok(len) = usize::try_from(rest.parse::<i64>().ok()?) else {
                    return Some(Self::Nil);
                };
                let mut data = vec![0; len + 2];
                reader.read_exact(&mut data).ok()?;
                data.truncate(len);
                Self::Bulk(data)
            }
            "*" => {
                let Ok(len) = usize::try_from(rest.parse::<i64>().ok()?) else {
                    return Some(Self::Nil);
                };
                Self::Array(
                    (0..len)
                        .map(|_| Self::read(reader))
                        .collect::<Option<_>>()?,
                )
            }
            _ => return None,
        })
    }
}
