//! What `ws` prints: messages on stdout (as they are, or one JSON object
//! per event with `--json`), everything else on stderr.

use std::io::Write;

use ws_client::Message;

/// Where and how events are printed.
pub(crate) struct Output {
    pub(crate) json: bool,
    pub(crate) verbose: bool,
    pub(crate) trace: bool,
    /// Incoming messages are marked `< ` (stdout is a terminal).
    pub(crate) marked: bool,
}

/// A JSON string literal.
pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn hex(data: &[u8], limit: usize) -> String {
    let shown: Vec<String> = data
        .iter()
        .take(limit)
        .map(|b| format!("{b:02x}"))
        .collect();
    let more = if data.len() > limit { " ..." } else { "" };
    format!("{}{more}", shown.join(" "))
}

impl Output {
    fn out(&self, line: &str) {
        let mut stdout = std::io::stdout().lock();
        // A closed pipe (`ws URL | head -1`) ends the output, not the
        // command with a panic.
        let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
    }

    fn err(&self, line: &str) {
        eprintln!("{line}");
    }

    /// The connection is open.
    pub(crate) fn open(&self, url: &str, protocol: Option<&str>, deflate: bool) {
        if self.json {
            let protocol = protocol.map_or("null".to_owned(), json_string);
            self.out(&format!(
                "{{\"event\":\"open\",\"url\":{},\"protocol\":{protocol},\"deflate\":{deflate}}}",
                json_string(url)
            ));
        } else if self.verbose {
            let protocol = protocol
                .map(|p| format!(", subprotocol {p}"))
                .unwrap_or_default();
            let deflate = if deflate { ", permessage-deflate" } else { "" };
            self.err(&format!("* connected to {url}{protocol}{deflate}"));
        }
    }

    /// A message arrived.
    pub(crate) fn received(&self, message: &Message) {
        match message {
            Message::Text(text) => {
                if self.json {
                    self.out(&format!(
                        "{{\"event\":\"message\",\"type\":\"text\",\"data\":{}}}",
                        json_string(text)
                    ));
                } else if self.marked {
                    self.out(&format!("< {text}"));
                } else {
                    self.out(text);
                }
            }
            Message::Binary(data) => {
                if self.json {
                    self.out(&format!(
                        "{{\"event\":\"message\",\"type\":\"binary\",\"length\":{},\"hex\":\"{}\"}}",
                        data.len(),
                        hex(data, usize::MAX).replace(' ', "")
                    ));
                } else {
                    let mark = if self.marked { "< " } else { "" };
                    self.out(&format!(
                        "{mark}[binary, {} bytes] {}",
                        data.len(),
                        hex(data, 32)
                    ));
                }
            }
            Message::Ping(data) | Message::Pong(data) => {
                let kind = if matches!(message, Message::Ping(_)) {
                    "ping"
                } else {
                    "pong"
                };
                if self.json {
                    self.out(&format!(
                        "{{\"event\":\"{kind}\",\"hex\":\"{}\"}}",
                        hex(data, 125).replace(' ', "")
                    ));
                } else if self.verbose {
                    self.err(&format!("* {kind} received ({} bytes)", data.len()));
                }
            }
            Message::Close(_) => {}
        }
    }

    /// A message is about to go out (`--trace`).
    pub(crate) fn sending(&self, message: &Message) {
        if !self.trace {
            return;
        }
        match message {
            Message::Text(text) => self.err(&format!("> text, {} bytes: {text}", text.len())),
            Message::Binary(data) => {
                self.err(&format!(
                    "> binary, {} bytes: {}",
                    data.len(),
                    hex(data, 32)
                ));
            }
            _ => {}
        }
    }

    /// The handshake's request and response heads (`--trace`).
    pub(crate) fn handshake(&self, request: &str, response: &str) {
        if self.trace {
            self.err(&format!(
                "--- request ---\n{request}--- response ---\n{response}---"
            ));
        }
    }

    /// The connection closed, with the peer's code and reason if it sent
    /// them.
    pub(crate) fn closed(&self, code: Option<u16>, reason: &str) {
        if self.json {
            let code = code.map_or("null".to_owned(), |c| c.to_string());
            self.out(&format!(
                "{{\"event\":\"close\",\"code\":{code},\"reason\":{}}}",
                json_string(reason)
            ));
        } else if self.verbose {
            match code {
                Some(code) => self.err(&format!("* closed: {code} {reason}")),
                None => self.err("* closed without a code"),
            }
        }
    }

    /// An error, with what to do next.
    pub(crate) fn error(&self, message: &str) {
        if self.json {
            self.out(&format!(
                "{{\"event\":\"error\",\"message\":{}}}",
                json_string(message)
            ));
        }
        self.err(&format!("ws: {message}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_what_they_must() {
        assert_eq!(
            json_string("a\"b\\c\nd\u{1}é"),
            "\"a\\\"b\\\\c\\nd\\u0001é\""
        );
    }

    #[test]
    fn hex_previews_are_bounded() {
        assert_eq!(hex(&[0, 255, 16], 32), "00 ff 10");
        assert_eq!(hex(&[1; 40], 2), "01 01 ...");
    }
}
