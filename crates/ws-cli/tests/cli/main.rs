//! The `ws` binary driven as users and scripts drive it: with pipes,
//! against `ws serve`, against servers that misbehave on purpose (for the
//! exit statuses), through a real proxy set in the environment, and in a
//! pseudo-terminal.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn ws() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ws"));
    for name in ["http_proxy", "https_proxy", "all_proxy", "no_proxy"] {
        command
            .env_remove(name)
            .env_remove(name.to_ascii_uppercase());
    }
    command
}

/// Runs `ws args...` with `input` on stdin; its output.
fn run(args: &[&str], input: &str) -> Output {
    run_with(ws().args(args), input)
}

fn run_with(command: &mut Command, input: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    wait(child)
}

/// Waits for `child`, killing it after 30 s.
fn wait(mut child: Child) -> Output {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("ws did not finish in 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `ws serve 127.0.0.1:0 MODE`, and the URL it listens on.
struct Serving {
    child: Child,
    url: String,
}

impl Serving {
    fn start(mode: &str) -> Self {
        let mut child = ws()
            .args(["serve", "127.0.0.1:0", mode])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .split_whitespace()
            .find(|word| word.starts_with("ws://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_owned();
        Self { child, url }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn help_reads_like_a_unix_tool_and_usage_errors_exit_2() {
    let help = run(&["--help"], "");
    assert_eq!(help.status.code(), Some(0));
    let help = text(&help.stdout);
    for part in [
        "Usage:",
        "--proxy",
        "--send",
        "--json",
        "Exit status:",
        "Examples:",
    ] {
        assert!(help.contains(part), "{part} missing from --help");
    }
    let none = run(&[], "");
    assert_eq!(none.status.code(), Some(2));
    assert!(text(&none.stderr).contains("missing URL"));
    let heartbeat = run(
        &[
            "ws://127.0.0.1:1/",
            "--ping-interval",
            "1",
            "--ping-timeout",
            "2",
        ],
        "",
    );
    assert_eq!(heartbeat.status.code(), Some(2));
    assert!(text(&heartbeat.stderr).contains("must be greater than --ping-timeout"));
}

#[test]
fn lines_piped_in_come_back_and_end_of_input_closes_normally() {
    let server = Serving::start("--echo");
    let out = run(&[&server.url], "first line\nsecond line\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "first line\nsecond line\n");
}

#[test]
fn send_count_and_json_for_scripts() {
    let server = Serving::start("--echo");
    let out = run(
        &[
            &server.url,
            "--send",
            "a \"quoted\" one",
            "--send",
            "b",
            "-n",
            "2",
            "--json",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0].starts_with("{\"event\":\"open\""), "{}", lines[0]);
    assert_eq!(
        lines[1],
        r#"{"event":"message","type":"text","data":"a \"quoted\" one"}"#
    );
    assert_eq!(lines[2], r#"{"event":"message","type":"text","data":"b"}"#);
    assert_eq!(lines[3], r#"{"event":"close","code":1000,"reason":""}"#);
}

#[test]
fn a_file_that_is_not_utf8_goes_as_binary_and_prints_as_hex() {
    let server = Serving::start("--echo");
    let path = std::env::temp_dir().join(format!("ws-cli-binary-{}", std::process::id()));
    std::fs::write(&path, [0xff, 0x00, 0x10, 0x80]).unwrap();
    let out = run(&[&server.url, "--send-file", path.to_str().unwrap()], "");
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "[binary, 4 bytes] ff 00 10 80\n");
    let missing = run(&[&server.url, "--send-file", "/nonexistent/file"], "");
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("cannot read /nonexistent/file"));
}

#[test]
fn ws_serve_broadcast_reaches_the_other_clients_of_the_path() {
    let server = Serving::start("--broadcast");
    let url = format!("{}room", server.url);
    let mut listener = ws()
        .args([&url, "-v"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once it says it is connected, it is in the room.
    let mut stderr = BufReader::new(listener.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("connected"), "{line}");
    let sender = run(&[&url, "--send", "to everyone"], "");
    assert_eq!(sender.status.code(), Some(0));
    assert_eq!(text(&sender.stdout), "to everyone\n");
    drop(listener.stdin.take());
    let out = wait(listener);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "to everyone\n");
}

/// A server on a free port that does the opening handshake by hand, then
/// `after` with the socket (on a thread of its own).
fn raw_server(after: impl Fn(&mut TcpStream) + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read_exact(&mut byte).is_ok() {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let key = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("Sec-WebSocket-Key: ")
                        .or(l.strip_prefix("sec-websocket-key: "))
                })
                .unwrap_or_default()
                .trim()
                .to_owned();
            let accept = ws_client::proto::accept_key(key.as_bytes());
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            let _ = stream.write_all(response.as_bytes());
            after(&mut stream);
        }
    });
    addr
}

#[test]
fn exit_statuses_say_what_happened() {
    // 3: nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let refused = run(&[&format!("ws://{closed}/")], "");
    assert_eq!(refused.status.code(), Some(3));
    assert!(text(&refused.stderr).contains("is the server running"));

    // 4: the upgrade is refused, and the status printed.
    let forbidding = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = forbidding.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in forbidding.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let rejected = run(&[&format!("ws://{addr}/")], "");
    assert_eq!(rejected.status.code(), Some(4));
    assert!(
        text(&rejected.stderr).contains("403"),
        "{}",
        text(&rejected.stderr)
    );

    // 5: no pong comes back.
    // The socket stays open, unread, while the closure sleeps.
    let silent = raw_server(|_| std::thread::sleep(Duration::from_secs(5)));
    // Input stays open: the connection is not closing, only silent.
    let mut waiting = ws()
        .args([
            &format!("ws://{silent}/"),
            "--ping-interval",
            "0.6",
            "--ping-timeout",
            "0.3",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let open_input = waiting.stdin.take();
    let heartbeat = wait(waiting);
    drop(open_input);
    assert_eq!(
        heartbeat.status.code(),
        Some(5),
        "{}",
        text(&heartbeat.stderr)
    );

    // 6: the server closes with 1011.
    let failing = raw_server(|stream| {
        let _ = stream.write_all(&[0x88, 0x02, 0x03, 0xf3]);
        std::thread::sleep(Duration::from_millis(500));
    });
    let abnormal = run(&[&format!("ws://{failing}/"), "--send", "x"], "");
    assert_eq!(
        abnormal.status.code(),
        Some(6),
        "{}",
        text(&abnormal.stderr)
    );
    assert!(text(&abnormal.stderr).contains("1011"));

    // 7: the replies do not come within --timeout.
    let mute = raw_server(|_| std::thread::sleep(Duration::from_secs(3)));
    let late = run(
        &[&format!("ws://{mute}/"), "--send", "x", "--timeout", "0.3"],
        "",
    );
    assert_eq!(late.status.code(), Some(7), "{}", text(&late.stderr));
}

#[test]
fn only_https_proxy_set_reaches_a_wss_server() {
    let pki = ws_tests::pki::pki(&["localhost"]);
    let dir = std::env::temp_dir().join(format!("ws-cli-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tls =
        ws_server::TlsConfig::from_pem(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes()).unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let echo = |mut ws: ws_server::WebSocket| async move {
        while let Some(Ok(message)) = ws.recv().await {
            if ws.send(message).await.is_err() {
                break;
            }
        }
    };
    let serve = ws_server::Server::builder().tls(tls).serve(echo, listener);
    runtime.spawn(serve.into_future());

    let proxy = ws_tests::proxies::tinyproxy(None, &[]);
    let url = format!("wss://localhost:{port}/");
    let out = run_with(
        ws().args([&url, "--ca", ca.to_str().unwrap(), "--send", "secure hello"])
            .env("HTTPS_PROXY", proxy.url("http", None)),
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "secure hello\n");
    assert!(
        proxy.log().contains(&format!("localhost:{port}")),
        "{}",
        proxy.log()
    );

    // A proxy that is down, and what to do about it.
    drop(proxy);
    let down = run_with(
        ws().args([&url, "--ca", ca.to_str().unwrap(), "--send", "x"])
            .env("HTTPS_PROXY", "http://127.0.0.1:1"),
        "",
    );
    assert_eq!(down.status.code(), Some(3));
    assert!(
        text(&down.stderr).contains("--no-proxy"),
        "{}",
        text(&down.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn interactive_in_a_pseudo_terminal() {
    let server = Serving::start("--echo");
    // Python's pty module gives ws a terminal: type a line, read the
    // echo (marked "< "), then Ctrl-D, and report ws's exit status.
    let script = r#"
import os, pty, sys, time, select
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], sys.argv[2]])
seen = b""
def read_until(needle, limit=10):
    global seen
    end = time.time() + limit
    while needle not in seen and time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    return needle in seen
assert read_until(b"Ctrl-D"), seen
os.write(fd, b"typed line\r")
assert read_until(b"< typed line"), seen
os.write(fd, b"\x04")
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"#;
    let out = Command::new("python3")
        .args(["-c", script, env!("CARGO_BIN_EXE_ws"), &server.url])
        .output()
        .expect("python3 runs the pseudo-terminal test");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "0");
}
