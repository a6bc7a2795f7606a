//! The permessage-deflate negotiation (RFC 7692 section 7): a client's
//! offer, a server's choice among offers, and the client's checks of the
//! answer.

use std::collections::HashSet;
use std::fmt::Write as _;

use http::HeaderMap;
use http::header::SEC_WEBSOCKET_EXTENSIONS;

use super::{DeflateParams, PERMESSAGE_DEFLATE, PerMessageDeflate};

/// A server's answer to a permessage-deflate offer that the client must
/// refuse (RFC 7692 section 7: the client "MUST _Fail the WebSocket
/// Connection_").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeflateResponseError {
    /// The answer names permessage-deflate more than once.
    #[error("permessage-deflate answered more than once")]
    Repeated,
    /// A parameter the extension does not define, or one the client may
    /// not be sent.
    #[error("unknown permessage-deflate parameter {0:?}")]
    UnknownParameter(String),
    /// A parameter given twice.
    #[error("permessage-deflate parameter {0:?} given twice")]
    DuplicateParameter(String),
    /// A parameter with a value it may not have (a window outside 8 to 15,
    /// a leading zero, a value where none is allowed or none where one is
    /// required).
    #[error("invalid value for permessage-deflate parameter {0:?}")]
    InvalidValue(String),
    /// A parameter the offer asked for that an accepting server must
    /// include.
    #[error("permessage-deflate answer lacks {0}, which was offered")]
    MissingParameter(&'static str),
    /// A window larger than the offer allowed.
    #[error("permessage-deflate {param}={got} exceeds the {allowed} offered")]
    WindowTooLarge {
        /// The parameter.
        param: &'static str,
        /// The value the offer allowed.
        allowed: u8,
        /// The value answered.
        got: u8,
    },
}

/// One element of a `Sec-WebSocket-Extensions` list: the extension's name
/// and its parameters, a value unquoted. `None` for an element that does not
/// parse.
struct Element<'a> {
    name: &'a str,
    params: Vec<(&'a str, Option<String>)>,
}

/// Splits `value` at `separator`, outside quoted strings.
fn split_outside_quotes(value: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == separator && !quoted {
            parts.push(&value[start..i]);
            start = i + 1;
        }
    }
    parts.push(&value[start..]);
    parts
}

fn is_token(value: &str) -> bool {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    !value.is_empty() && value.bytes().all(tchar)
}

/// RFC 6455 section 9.1: `extension-param = token [ "=" (token |
/// quoted-string) ]`, and a quoted value must be a token once unquoted.
fn parse_element(element: &str) -> Option<Element<'_>> {
    let mut parts = split_outside_quotes(element, ';').into_iter();
    let name = parts.next()?.trim();
    if !is_token(name) {
        return None;
    }
    let mut params = Vec::new();
    for part in parts {
        let (key, value) = match part.split_once('=') {
            None => (part.trim(), None),
            Some((key, value)) => {
                let value = value.trim();
                let value = match value.strip_prefix('"') {
                    Some(rest) => rest.strip_suffix('"')?.replace('\\', ""),
                    None => value.to_owned(),
                };
                if !is_token(&value) {
                    return None;
                }
                (key.trim(), Some(value))
            }
        };
        if !is_token(key) {
            return None;
        }
        params.push((key, value));
    }
    Some(Element { name, params })
}

/// Every element of every `Sec-WebSocket-Extensions` header, in order;
/// `None` for one that does not parse (or a header that is not text).
fn elements(headers: &HeaderMap) -> impl Iterator<Item = Option<Element<'_>>> {
    headers
        .get_all(SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .flat_map(|value| match value.to_str() {
            Ok(text) => split_outside_quotes(text, ',')
                .into_iter()
                .filter(|element| !element.trim().is_empty())
                .map(parse_element)
                .collect::<Vec<_>>(),
            Err(_) => vec![None],
        })
}

/// RFC 7692 section 7.1.2: a window is "a decimal integer value without
/// leading zeroes between 8 to 15, inclusive".
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || value.len() > 2 {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

impl PerMessageDeflate {
    /// The client's offer, the value of its `Sec-WebSocket-Extensions`
    /// element: `client_max_window_bits` always (it can limit its window,
    /// as browsers say), and each other parameter these settings ask for.
    pub fn offer(&self) -> String {
        let this = self.clamped();
        let mut offer = String::from(PERMESSAGE_DEFLATE);
        if this.server_no_context_takeover {
            offer.push_str("; server_no_context_takeover");
        }
        if this.client_no_context_takeover {
            offer.push_str("; client_no_context_takeover");
        }
        if this.server_max_window_bits < 15 {
            let _ = write!(
                offer,
                "; server_max_window_bits={}",
                this.server_max_window_bits
            );
        }
        offer.push_str("; client_max_window_bits");
        if this.client_max_window_bits < 15 {
            let _ = write!(offer, "={}", this.client_max_window_bits);
        }
        offer
    }

    /// A server's choice among the client's offers in `headers`: the first
    /// permessage-deflate offer it can accept, and the parameters of the
    /// answer (RFC 7692 section 7: "the server [...] can choose to accept
    /// one of them"). An offer with an unknown, duplicate or malformed
    /// parameter is declined, as is one that does not let a server set to
    /// a `client_max_window_bits` under 15 limit the client's window.
    /// `None`: no offer accepted, the connection goes on without
    /// compression.
    pub fn accept(&self, headers: &HeaderMap) -> Option<DeflateParams> {
        let this = self.clamped();
        elements(headers)
            .flatten()
            .filter(|element| element.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE))
            .find_map(|element| this.accept_offer(&element.params))
    }

    fn accept_offer(&self, params: &[(&str, Option<String>)]) -> Option<DeflateParams> {
        let mut chosen = DeflateParams {
            server_no_context_takeover: self.server_no_context_takeover,
            client_no_context_takeover: self.client_no_context_takeover,
            server_max_window_bits: self.server_max_window_bits,
            client_max_window_bits: 15,
        };
        let mut seen = HashSet::new();
        // `Some(None)`: offered without a value.
        let mut client_window: Option<Option<u8>> = None;
        for (name, value) in params {
            let name = name.to_ascii_lowercase();
            if !seen.insert(name.clone()) {
                return None;
            }
            match (name.as_str(), value) {
                ("server_no_context_takeover", None) => chosen.server_no_context_takeover = true,
                ("client_no_context_takeover", None) => chosen.client_no_context_takeover = true,
                ("server_max_window_bits", Some(value)) => {
                    let bits = window_bits(value)?;
                    chosen.server_max_window_bits = chosen.server_max_window_bits.min(bits);
                }
                ("client_max_window_bits", None) => client_window = Some(None),
                ("client_max_window_bits", Some(value)) => {
                    client_window = Some(Some(window_bits(value)?));
                }
                _ => return None,
            }
        }
        chosen.client_max_window_bits = match client_window {
            // Section 7.1.2.2: without the parameter in the offer, the
            // server may not limit the client's window.
            None if self.client_max_window_bits < 15 => return None,
            None => 15,
            Some(offered) => self.client_max_window_bits.min(offered.unwrap_or(15)),
        };
        Some(chosen)
    }

    /// The client's checks of the server's answer in `headers` (RFC 7692
    /// section 7): `Ok(None)` when the server declined (no
    /// permessage-deflate element), the settled parameters when it
    /// accepted our offer.
    ///
    /// # Errors
    ///
    /// A [`DeflateResponseError`] for an answer the client must refuse.
    pub fn check_answer(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<DeflateParams>, DeflateResponseError> {
        let this = self.clamped();
        let mut answers = elements(headers)
            .flatten()
            .filter(|element| element.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE));
        let Some(answer) = answers.next() else {
            return Ok(None);
        };
        if answers.next().is_some() {
            return Err(DeflateResponseError::Repeated);
        }
        let mut settled = DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: this.client_no_context_takeover,
            server_max_window_bits: 15,
            client_max_window_bits: this.client_max_window_bits,
        };
        let mut seen = HashSet::new();
        let invalid = |name: &str| DeflateResponseError::InvalidValue(name.to_owned());
        for (name, value) in &answer.params {
            let name = name.to_ascii_lowercase();
            if !seen.insert(name.clone()) {
                return Err(DeflateResponseError::DuplicateParameter(name));
            }
            match (name.as_str(), value) {
                ("server_no_context_takeover", None) => settled.server_no_context_takeover = true,
                ("client_no_context_takeover", None) => settled.client_no_context_takeover = true,
                ("server_max_window_bits", Some(value)) => {
                    let bits = window_bits(value).ok_or_else(|| invalid(&name))?;
                    if bits > this.server_max_window_bits {
                        return Err(DeflateResponseError::WindowTooLarge {
                            param: "server_max_window_bits",
                            allowed: this.server_max_window_bits,
                            got: bits,
                        });
                    }
                    settled.server_max_window_bits = bits;
                }
                // Section 7.1.2.2: the answer's client_max_window_bits
                // has a value, at most the offer's.
                ("client_max_window_bits", Some(value)) => {
                    let bits = window_bits(value).ok_or_else(|| invalid(&name))?;
                    if bits > this.client_max_window_bits {
                        return Err(DeflateResponseError::WindowTooLarge {
                            param: "client_max_window_bits",
                            allowed: this.client_max_window_bits,
                            got: bits,
                        });
                    }
                    settled.client_max_window_bits = bits;
                }
                (
                    "server_no_context_takeover"
                    | "client_no_context_takeover"
                    | "server_max_window_bits"
                    | "client_max_window_bits",
                    _,
                ) => return Err(invalid(&name)),
                _ => return Err(DeflateResponseError::UnknownParameter(name)),
            }
        }
        // Section 7.1.1.1: a server accepting an offer with
        // server_no_context_takeover "MUST include" it; 7.1.2.1 likewise
        // for server_max_window_bits.
        if this.server_no_context_takeover && !settled.server_no_context_takeover {
            return Err(DeflateResponseError::MissingParameter(
                "server_no_context_takeover",
            ));
        }
        if this.server_max_window_bits < 15 && !seen.contains("server_max_window_bits") {
            return Err(DeflateResponseError::MissingParameter(
                "server_max_window_bits",
            ));
        }
        Ok(Some(settled))
    }
}

impl DeflateParams {
    /// The server's answer: the value of its `Sec-WebSocket-Extensions`
    /// header, each setting that differs from the extension's defaults
    /// spelled out.
    pub fn answer(&self) -> String {
        let mut answer = String::from(PERMESSAGE_DEFLATE);
        if self.server_no_context_takeover {
            answer.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            answer.push_str("; client_no_context_takeover");
        }
        if self.server_max_window_bits < 15 {
            let _ = write!(
                answer,
                "; server_max_window_bits={}",
                self.server_max_window_bits
            );
        }
        if self.client_max_window_bits < 15 {
            let _ = write!(
                answer,
                "; client_max_window_bits={}",
                self.client_max_window_bits
            );
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(
                SEC_WEBSOCKET_EXTENSIONS,
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn quoted_values_and_separators_inside_quotes() {
        let element = parse_element("x; a=\"1,2\"").map(|e| e.params.len());
        // A comma inside quotes is not a token once unquoted: refused.
        assert!(element.is_none());
        let parsed = parse_element("permessage-deflate; client_max_window_bits=\"10\"").unwrap();
        assert_eq!(parsed.params[0].1.as_deref(), Some("10"));
        assert_eq!(split_outside_quotes("a, b; c=\"d,e\"", ',').len(), 2);
    }

    #[test]
    fn section_7_1_2_window_values() {
        assert_eq!(window_bits("8"), Some(8));
        assert_eq!(window_bits("15"), Some(15));
        for bad in ["7", "16", "08", "", "1a", "015"] {
            assert_eq!(window_bits(bad), None, "{bad}");
        }
    }

    #[test]
    fn section_7_first_acceptable_offer_wins() {
        let server = PerMessageDeflate::default();
        let offers = headers(&[
            "permessage-deflate; unknown_param, permessage-deflate; server_max_window_bits=10",
            "permessage-deflate",
        ]);
        let params = server.accept(&offers).unwrap();
        assert_eq!(params.server_max_window_bits, 10);
        assert_eq!(
            params.answer(),
            "permessage-deflate; server_max_window_bits=10"
        );
    }

    #[test]
    fn section_7_duplicate_or_malformed_parameters_decline_the_offer() {
        let server = PerMessageDeflate::default();
        for offer in [
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; x",
        ] {
            assert_eq!(server.accept(&headers(&[offer])), None, "{offer}");
        }
        assert_eq!(server.accept(&headers(&["x-other"])), None);
    }

    #[test]
    fn section_7_1_2_2_server_limit_needs_the_clients_consent() {
        let server = PerMessageDeflate::default().client_max_window_bits(10);
        assert_eq!(server.accept(&headers(&["permessage-deflate"])), None);
        let params = server
            .accept(&headers(&["permessage-deflate; client_max_window_bits"]))
            .unwrap();
        assert_eq!(params.client_max_window_bits, 10);
        let params = server
            .accept(&headers(&["permessage-deflate; client_max_window_bits=9"]))
            .unwrap();
        assert_eq!(params.client_max_window_bits, 9);
        assert!(params.answer().ends_with("client_max_window_bits=9"));
    }

    #[test]
    fn section_7_client_checks_the_answer() {
        let client = PerMessageDeflate::default().server_max_window_bits(10);
        assert_eq!(
            client.offer(),
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits"
        );
        let ok = client
            .check_answer(&headers(&[
                "permessage-deflate; server_max_window_bits=9; client_max_window_bits=12",
            ]))
            .unwrap()
            .unwrap();
        assert_eq!(
            (ok.server_max_window_bits, ok.client_max_window_bits),
            (9, 12)
        );
        assert_eq!(client.check_answer(&headers(&[])), Ok(None));
        let bad = [
            (
                "permessage-deflate",
                DeflateResponseError::MissingParameter("server_max_window_bits"),
            ),
            (
                "permessage-deflate; server_max_window_bits=11",
                DeflateResponseError::WindowTooLarge {
                    param: "server_max_window_bits",
                    allowed: 10,
                    got: 11,
                },
            ),
            (
                "permessage-deflate; server_max_window_bits=10; client_max_window_bits",
                DeflateResponseError::InvalidValue("client_max_window_bits".into()),
            ),
            (
                "permessage-deflate; server_max_window_bits=10; foo",
                DeflateResponseError::UnknownParameter("foo".into()),
            ),
            (
                "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
                DeflateResponseError::DuplicateParameter("server_max_window_bits".into()),
            ),
            (
                "permessage-deflate; server_max_window_bits=10, permessage-deflate",
                DeflateResponseError::Repeated,
            ),
        ];
        for (answer, error) in bad {
            assert_eq!(
                client.check_answer(&headers(&[answer])),
                Err(error),
                "{answer}"
            );
        }
    }

    #[test]
    fn section_7_1_1_1_no_context_takeover_must_be_acknowledged() {
        let client = PerMessageDeflate::default().server_no_context_takeover(true);
        assert_eq!(
            client.check_answer(&headers(&["permessage-deflate"])),
            Err(DeflateResponseError::MissingParameter(
                "server_no_context_takeover"
            ))
        );
        let server = PerMessageDeflate::default();
        let params = server.accept(&headers(&[&client.offer()])).unwrap();
        assert!(params.server_no_context_takeover);
        let settled = client
            .check_answer(&headers(&[&params.answer()]))
            .unwrap()
            .unwrap();
        assert_eq!(settled, params);
    }
}
