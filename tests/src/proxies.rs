//! Real proxies for the tests: `tinyproxy` (HTTP `CONNECT`, with or
//! without Basic credentials) and `microsocks` (SOCKS5, with or without a
//! user name and password), both Debian packages that `.ci/run` installs.
//! Each runs in the foreground on a free loopback port, from a
//! configuration in a temporary directory of its own, and is killed when
//! dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running proxy process.
#[derive(Debug)]
pub struct ProxyProcess {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    dir: PathBuf,
}

impl ProxyProcess {
    /// The proxy's URL with `scheme` and the credentials it was started
    /// with, if any.
    pub fn url(&self, scheme: &str, credentials: Option<(&str, &str)>) -> String {
        match credentials {
            Some((user, password)) => format!("{scheme}://{user}:{password}@{}", self.addr),
            None => format!("{scheme}://{}", self.addr),
        }
    }

    /// What it logged (tinyproxy's log file; empty for microsocks).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    fn spawn(mut command: Command, port: u16, dir: PathBuf, what: &str) -> Self {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("{what} is needed for the proxy tests (Debian package {what}): {error}")
            });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "{what} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { addr, child, dir }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

fn temp_dir(what: &str, port: u16) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ws-{what}-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// Starts `tinyproxy`: with Basic `credentials` if given, and allowing
/// `CONNECT` only to `connect_ports` if any are given (tinyproxy answers
/// 403 for the others).
pub fn tinyproxy(credentials: Option<(&str, &str)>, connect_ports: &[u16]) -> ProxyProcess {
    let port = free_port();
    let dir = temp_dir("tinyproxy", port);
    let mut config = format!(
        "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 64\nLogLevel Connect\n\
         LogFile \"{}\"\nAllow 127.0.0.1\nDisableViaHeader Yes\n",
        dir.join("log").display()
    );
    if let Some((user, password)) = credentials {
        config.push_str(&format!("BasicAuth {user} {password}\n"));
    }
    for port in connect_ports {
        config.push_str(&format!("ConnectPort {port}\n"));
    }
    let file = dir.join("tinyproxy.conf");
    std::fs::write(&file, config).expect("the configuration is written");
    let mut command = Command::new("tinyproxy");
    command.arg("-d").arg("-c").arg(&file);
    ProxyProcess::spawn(command, port, dir, "tinyproxy")
}

/// Starts `microsocks`, a SOCKS5 proxy, with a user name and password if
/// `credentials` are given.
pub fn microsocks(credentials: Option<(&str, &str)>) -> ProxyProcess {
    let port = free_port();
    let dir = temp_dir("microsocks", port);
    let mut command = Command::new("microsocks");
    command.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
    if let Some((user, password)) = credentials {
        command.args(["-u", user, "-P", password]);
    }
    ProxyProcess::spawn(command, port, dir, "microsocks")
}
