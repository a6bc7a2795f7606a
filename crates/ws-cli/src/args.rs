//! The command line: what `ws --help` says, and parsing it.

use std::time::Duration;

/// `ws --help`.
pub(crate) const HELP: &str = "\
ws: talk to a WebSocket server from the terminal or a script.

Usage:
  ws [OPTIONS] URL                  open URL; send stdin's lines, print what arrives
  ws [OPTIONS] URL --send MSG...    send, print the replies, close
  ws serve [ADDR] --echo|--broadcast
                                    run a server to try things against

URL is ws://host[:port]/path or wss://... Lines typed (or piped) are sent as
text messages; each message received is printed on stdout as it arrives:
text as is, binary as its length and a hex preview. End of input (Ctrl-D)
closes the connection with 1000, once the replies have stopped coming
(250 ms without one, 2 s at most), and waits for the server's answer;
Ctrl-C quits at once.

Connecting:
  -H, --header 'NAME: VALUE'  add a header to the upgrade request (repeatable)
      --subprotocol NAME      ask for a subprotocol (repeatable)
      --origin ORIGIN         send this Origin header
      --proxy URL             go through a proxy: http://, https://, socks5://,
                              socks5h://, with user:password@ if it needs them
                              (default: HTTPS_PROXY for wss, HTTP_PROXY for ws,
                              ALL_PROXY, NO_PROXY, as curl reads them)
      --no-proxy              connect directly, whatever the environment says
      --ca FILE               trust the CA certificates in FILE (PEM) for wss://
      --ping-interval SECS    ping every SECS seconds (default 20; 0: never)
      --ping-timeout SECS     give up when a pong takes longer (default 10;
                              less than the interval)
      --deflate               offer permessage-deflate (the default)
      --no-deflate            do not offer it

Sending:
      --send MSG              send MSG (repeatable), then wait for the replies
      --send-file FILE        send FILE as one message (text if it is UTF-8)
      --binary                send lines and MSG as binary messages
  -n, --count N               with --send: replies to wait for (default 1; 0:
                              close at once)
      --timeout SECS          with --send: stop waiting for replies after SECS

Output:
      --json                  one JSON object per event on stdout
  -v, --verbose               also show pings, pongs, and the close code and
                              reason (on stderr)
      --trace                 show the handshake and every message both ways
                              (on stderr)
  -h, --help                  show this help
  -V, --version               show the version

Serving:
  ws serve [ADDR] --echo      echo every message back (default 127.0.0.1:9001)
  ws serve [ADDR] --broadcast send every message to everyone on the same path
                              (default 127.0.0.1:9002)

Exit status:
  0  closed normally (1000, or 1001 when the server goes away)
  1  an error of this command's own (a file it cannot read)
  2  bad usage
  3  could not connect: name, network, proxy, TLS, timeout
  4  the server refused the upgrade (its HTTP status is printed)
  5  the heartbeat timed out: no pong within --ping-timeout
  6  closed abnormally: another close code, a protocol error, the
     connection lost
  7  --timeout passed before the replies arrived
  130 interrupted (Ctrl-C)

Examples:
  ws wss://echo.example/                       interactive
  echo hello | ws ws://127.0.0.1:9001/        one message, then close
  ws ws://127.0.0.1:9001/ --send hi --send ho -n 2 --json
  HTTPS_PROXY=http://proxy:3128 ws wss://example.com/feed > log
  ws serve --echo
";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Command {
    Help,
    Version,
    Connect(Box<Connect>),
    Serve { addr: Option<String>, mode: Serve },
}

/// `ws serve --echo` or `--broadcast`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Serve {
    Echo,
    Broadcast,
}

/// `ws URL ...`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Connect {
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) subprotocols: Vec<String>,
    pub(crate) origin: Option<String>,
    pub(crate) proxy: Proxy,
    pub(crate) ca: Option<String>,
    pub(crate) ping_interval: Option<Duration>,
    pub(crate) ping_timeout: Option<Duration>,
    pub(crate) deflate: bool,
    pub(crate) send: Vec<Outgoing>,
    pub(crate) binary: bool,
    pub(crate) count: usize,
    pub(crate) timeout: Option<Duration>,
    pub(crate) json: bool,
    pub(crate) verbose: bool,
    pub(crate) trace: bool,
}

/// Where the proxy comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Proxy {
    #[default]
    Environment,
    Url(String),
    Off,
}

/// A message given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outgoing {
    Message(String),
    File(String),
}

/// Seconds, as a fraction or a whole number; 0 is none.
fn seconds(flag: &str, value: &str) -> Result<Option<Duration>, String> {
    let secs: f64 = value
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s >= 0.0)
        .ok_or_else(|| format!("{flag} takes a number of seconds, not {value:?}"))?;
    Ok((secs > 0.0).then(|| Duration::from_secs_f64(secs)))
}

/// Parses the arguments after the program's name.
pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter().peekable();
    if args.peek().is_some_and(|a| a == "serve") {
        args.next();
        return parse_serve(args);
    }
    let mut c = Connect {
        deflate: true,
        count: 1,
        ping_interval: Some(Duration::from_secs(20)),
        ping_timeout: Some(Duration::from_secs(10)),
        ..Connect::default()
    };
    let mut url = None;
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value (see ws --help)"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "-H" | "--header" => {
                let header = value(&arg)?;
                let (name, val) = header
                    .split_once(':')
                    .ok_or_else(|| format!("{arg} takes 'NAME: VALUE', not {header:?}"))?;
                c.headers
                    .push((name.trim().to_owned(), val.trim().to_owned()));
            }
            "--subprotocol" => c.subprotocols.push(value(&arg)?),
            "--origin" => c.origin = Some(value(&arg)?),
            "--proxy" => c.proxy = Proxy::Url(value(&arg)?),
            "--no-proxy" => c.proxy = Proxy::Off,
            "--ca" => c.ca = Some(value(&arg)?),
            "--ping-interval" => c.ping_interval = seconds(&arg, &value(&arg)?)?,
            "--ping-timeout" => c.ping_timeout = seconds(&arg, &value(&arg)?)?,
            "--deflate" => c.deflate = true,
            "--no-deflate" => c.deflate = false,
            "--send" => c.send.push(Outgoing::Message(value(&arg)?)),
            "--send-file" => c.send.push(Outgoing::File(value(&arg)?)),
            "--binary" => c.binary = true,
            "-n" | "--count" => {
                let n = value(&arg)?;
                c.count = n
                    .parse()
                    .map_err(|_| format!("{arg} takes a number, not {n:?}"))?;
            }
            "--timeout" => c.timeout = seconds(&arg, &value(&arg)?)?,
            "--json" => c.json = true,
            "-v" | "--verbose" => c.verbose = true,
            "--trace" => {
                c.trace = true;
                c.verbose = true;
            }
            flag if flag.starts_with('-') && flag.len() > 1 => {
                return Err(format!("unknown option {flag} (see ws --help)"));
            }
            _ if url.is_some() => {
                return Err(format!("one URL at a time: {arg:?} is a second one"));
            }
            _ => url = Some(arg),
        }
    }
    c.url = url.ok_or("missing URL: ws [OPTIONS] URL (see ws --help)")?;
    if c.ping_interval.is_none() {
        // No pings, no pong to wait for.
        c.ping_timeout = None;
    }
    if let (Some(interval), Some(timeout)) = (c.ping_interval, c.ping_timeout)
        && interval <= timeout
    {
        return Err(format!(
            "--ping-interval ({}s) must be greater than --ping-timeout ({}s): \
             a ping is sent only after the last one was answered or timed out",
            interval.as_secs_f64(),
            timeout.as_secs_f64()
        ));
    }
    Ok(Command::Connect(Box::new(c)))
}

fn parse_serve(args: impl Iterator<Item = String>) -> Result<Command, String> {
    let (mut addr, mut mode) = (None, None);
    for arg in args {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--echo" => mode = Some(Serve::Echo),
            "--broadcast" => mode = Some(Serve::Broadcast),
            flag if flag.starts_with('-') => {
                return Err(format!(
                    "unknown option {flag} for ws serve (see ws --help)"
                ));
            }
            _ => addr = Some(arg),
        }
    }
    let mode = mode.ok_or("ws serve needs --echo or --broadcast (see ws --help)")?;
    Ok(Command::Serve { addr, mode })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Command, String> {
        parse(line.split_whitespace().map(str::to_owned))
    }

    fn connect(line: &str) -> Connect {
        match parse_str(line) {
            Ok(Command::Connect(c)) => *c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn options_and_url_in_any_order() {
        let c = connect("--json ws://h/ -n 3 --send a --send b --no-deflate --subprotocol chat");
        assert_eq!(c.url, "ws://h/");
        assert_eq!(c.count, 3);
        assert_eq!(
            c.send,
            [Outgoing::Message("a".into()), Outgoing::Message("b".into())]
        );
        assert!(c.json && !c.deflate);
        assert_eq!(c.subprotocols, ["chat"]);
    }

    #[test]
    fn the_heartbeat_rule_is_checked_with_a_reason() {
        let error = parse_str("ws://h/ --ping-interval 5 --ping-timeout 10").unwrap_err();
        assert!(error.contains("must be greater than"), "{error}");
        let c = connect("ws://h/ --ping-interval 0");
        assert_eq!((c.ping_interval, c.ping_timeout), (None, None));
        let c = connect("ws://h/ --ping-interval 1.5 --ping-timeout 0.5");
        assert_eq!(c.ping_interval, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn usage_errors_say_what_to_do() {
        assert!(parse_str("").unwrap_err().contains("missing URL"));
        assert!(
            parse_str("ws://a/ ws://b/")
                .unwrap_err()
                .contains("one URL")
        );
        assert!(
            parse_str("ws://a/ --bogus")
                .unwrap_err()
                .contains("unknown option")
        );
        assert!(
            parse_str("ws://a/ -H nocolon")
                .unwrap_err()
                .contains("NAME: VALUE")
        );
        assert!(
            parse_str("ws://a/ --send")
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(
            parse_str("serve")
                .unwrap_err()
                .contains("--echo or --broadcast")
        );
    }

    #[test]
    fn serve_takes_an_address_and_a_mode() {
        assert_eq!(
            parse_str("serve 127.0.0.1:0 --broadcast").unwrap(),
            Command::Serve {
                addr: Some("127.0.0.1:0".into()),
                mode: Serve::Broadcast
            }
        );
        assert_eq!(parse_str("--help").unwrap(), Command::Help);
    }
}
