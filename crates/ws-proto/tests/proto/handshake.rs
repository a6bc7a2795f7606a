//! RFC 6455 section 4: the opening handshake.

use bytes::BytesMut;
use http::{HeaderValue, StatusCode, header};
use ws_proto::{
    ClientRequest, Decoded, HeaderError, RequestError, RequestLimits, RequestParser, ResponseError,
    accept_key, validate_request, write_accept,
};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn request(extra: &str) -> String {
    format!(
        "GET /chat?room=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

fn parse(bytes: &[u8]) -> Result<Decoded<http::Request<()>>, RequestError> {
    RequestParser::default().parse(bytes)
}

fn validate(text: &str) -> Result<ws_proto::UpgradeRequest, RequestError> {
    match parse(text.as_bytes())? {
        Decoded::Done { value, .. } => validate_request(&value),
        Decoded::NeedMore(_) => panic!("complete request"),
    }
}

mod section_1_3_accept_key {
    use super::*;

    #[test]
    fn sample_nonce_from_the_rfc() {
        assert_eq!(accept_key(KEY.as_bytes()), ACCEPT);
    }
}

mod section_4_2_1_server_reads_the_request {
    use super::*;

    #[test]
    fn valid_request_is_accepted_with_protocols_in_order() {
        let upgrade = validate(&request("Sec-WebSocket-Protocol: chat, superchat\r\n")).unwrap();
        assert_eq!(upgrade.accept_key(), ACCEPT);
        assert_eq!(upgrade.protocols(), ["chat", "superchat"]);
    }

    #[test]
    fn request_arriving_byte_by_byte_is_parsed_once_complete() {
        let text = request("");
        let mut parser = RequestParser::default();
        for end in 1..text.len() {
            assert!(matches!(
                parser.parse(&text.as_bytes()[..end]),
                Ok(Decoded::NeedMore(1))
            ));
        }
        let Ok(Decoded::Done { value, consumed }) = parser.parse(text.as_bytes()) else {
            panic!("complete");
        };
        assert_eq!(consumed, text.len());
        assert_eq!(value.uri().path(), "/chat");
        assert_eq!(value.uri().query(), Some("room=1"));
    }

    #[test]
    fn bytes_after_the_head_are_not_consumed() {
        let mut bytes = request("").into_bytes();
        let head = bytes.len();
        bytes.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]);
        let Ok(Decoded::Done { consumed, .. }) = parse(&bytes) else {
            panic!()
        };
        assert_eq!(consumed, head);
    }

    #[test]
    fn header_tokens_are_case_insensitive_lists() {
        let text = request("")
            .replace("Upgrade: websocket", "upgrade: WebSocket")
            .replace(
                "Connection: Upgrade",
                "Connection: keep-alive\r\nConnection: foo, UPGRADE",
            );
        assert!(validate(&text).is_ok());
    }

    #[test]
    fn each_defect_has_its_own_error_and_status() {
        let cases: [(String, RequestError, u16); 8] = [
            (
                request("").replace("GET", "POST"),
                RequestError::MethodNotGet(http::Method::POST),
                405,
            ),
            (
                request("").replace("HTTP/1.1", "HTTP/1.0"),
                RequestError::HttpVersion(http::Version::HTTP_10),
                505,
            ),
            (
                request("").replace("Upgrade: websocket\r\n", ""),
                RequestError::NotUpgrade,
                426,
            ),
            (
                request("").replace("Connection: Upgrade", "Connection: close"),
                RequestError::MissingConnectionUpgrade,
                400,
            ),
            (
                request("").replace("Host: server.example.com\r\n", ""),
                RequestError::MissingHost,
                400,
            ),
            (
                request("").replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""),
                RequestError::MissingKey,
                400,
            ),
            (
                request("").replace(KEY, "c2hvcnQ="),
                RequestError::InvalidKey,
                400,
            ),
            (
                request("").replace("Version: 13", "Version: 12"),
                RequestError::UnsupportedVersion(Some("12".into())),
                426,
            ),
        ];
        for (text, error, status) in cases {
            assert_eq!(validate(&text), Err(error.clone()));
            assert_eq!(error.status().as_u16(), status, "{error}");
        }
    }

    #[test]
    fn unsupported_version_rejection_names_version_13() {
        let rejection = RequestError::UnsupportedVersion(Some("12".into())).rejection();
        let mut out = BytesMut::new();
        rejection.write(&mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{text}"
        );
        assert!(text.contains("sec-websocket-version: 13\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
    }

    #[test]
    fn request_line_cap_414() {
        let limits = RequestLimits::default();
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(limits.max_request_line));
        assert_eq!(
            parse(long.as_bytes()).unwrap_err(),
            RequestError::RequestLineTooLong { limit: 8192 }
        );
        // Also while the line is still arriving.
        assert_eq!(
            parse(&long.as_bytes()[..8200]).unwrap_err(),
            RequestError::RequestLineTooLong { limit: 8192 }
        );
    }

    #[test]
    fn header_size_cap_431_before_the_head_is_complete() {
        let mut text = "GET / HTTP/1.1\r\n".to_owned();
        while text.len() < 17 * 1024 {
            text.push_str(
                "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            );
        }
        let error = parse(text.as_bytes()).unwrap_err();
        assert_eq!(error, RequestError::HeadersTooLarge { limit: 16384 });
        assert_eq!(error.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }

    #[test]
    fn header_count_cap_431() {
        let extra: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            parse(request(&extra).as_bytes()).unwrap_err(),
            RequestError::TooManyHeaders { limit: 100 }
        );
    }

    #[test]
    fn garbage_is_a_400() {
        let error = parse(b"\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n").unwrap_err();
        assert!(matches!(error, RequestError::Malformed(_)), "{error:?}");
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    }

    /// Issue 25, item 12: a TLS ClientHello on a plain port is answered at
    /// once, from its first bytes, instead of waiting for a blank line that
    /// never comes.
    #[test]
    fn a_tls_client_hello_is_a_400_from_its_first_bytes() {
        for hello in [
            &b"\x16"[..],
            b"\x16\x03",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ] {
            let error = parse(hello).unwrap_err();
            assert_eq!(error, RequestError::TlsOnPlainPort);
            assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        }
    }

    /// Issue 25, item 11. RFC 9112 section 2.2: "a recipient MAY recognize
    /// a single LF as a line terminator and ignore any preceding CR." A
    /// request with bare LF line endings is parsed when its blank line
    /// arrives, in one piece or byte by byte.
    #[test]
    fn bare_lf_line_endings_are_accepted() {
        let text = request("").replace("\r\n", "\n");
        let upgrade = validate(&text).unwrap();
        assert_eq!(upgrade.accept_key(), ACCEPT);
        let mut parser = RequestParser::default();
        for end in 1..text.len() {
            assert!(matches!(
                parser.parse(&text.as_bytes()[..end]),
                Ok(Decoded::NeedMore(1))
            ));
        }
        let Ok(Decoded::Done { consumed, .. }) = parser.parse(text.as_bytes()) else {
            panic!("complete")
        };
        assert_eq!(consumed, text.len());
        // Mixed endings, and a frame's bytes after the head.
        let mut mixed = request("").replacen("\r\n", "\n", 2).into_bytes();
        let head = mixed.len();
        mixed.extend_from_slice(b"\x81\x80");
        let Ok(Decoded::Done { consumed, .. }) = parse(&mixed) else {
            panic!("complete")
        };
        assert_eq!(consumed, head);
    }

    /// Issue 25, item 9. RFC 9112 section 3.2: "A server MUST respond with a
    /// 400 (Bad Request) status code to any HTTP/1.1 request message that
    /// lacks a Host header field and to any such message that contains more
    /// than one Host header field line". Two keys or two versions are as
    /// ambiguous.
    #[test]
    fn duplicate_host_key_or_version_is_a_400() {
        let other_key = "AQIDBAUGBwgJCgsMDQ4PEA==";
        let cases = [
            ("Host: evil.example.com\r\n".to_owned(), "Host"),
            (
                format!("Sec-WebSocket-Key: {other_key}\r\n"),
                "Sec-WebSocket-Key",
            ),
            (format!("Sec-WebSocket-Key: {KEY}\r\n"), "Sec-WebSocket-Key"),
            (
                "Sec-WebSocket-Version: 8\r\n".to_owned(),
                "Sec-WebSocket-Version",
            ),
        ];
        for (extra, name) in cases {
            let error = validate(&request(&extra)).unwrap_err();
            assert_eq!(error, RequestError::DuplicateHeader(name), "{extra}");
            assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        }
    }
}

mod section_4_2_2_server_response {
    use super::*;

    #[test]
    fn accept_response_bytes() {
        let upgrade = validate(&request("Sec-WebSocket-Protocol: chat\r\n")).unwrap();
        let mut extra = http::HeaderMap::new();
        extra.insert(header::SET_COOKIE, HeaderValue::from_static("a=b"));
        let mut out = BytesMut::new();
        write_accept(&upgrade, Some("chat"), &extra, &mut out).unwrap();
        assert_eq!(
            &out[..],
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Protocol: chat\r\nset-cookie: a=b\r\n\r\n"
            )
            .as_bytes()
        );
    }

    /// Issue 25, item 10: a subprotocol chosen by the application is a
    /// token; a CR or LF in it would split the response.
    #[test]
    fn a_chosen_protocol_that_is_not_a_token_is_refused() {
        let upgrade = validate(&request("")).unwrap();
        for bad in ["chat\r\nSet-Cookie: a=b", "", "a b", "chat,other"] {
            let mut out = BytesMut::new();
            let error = write_accept(&upgrade, Some(bad), &http::HeaderMap::new(), &mut out);
            assert!(matches!(error, Err(HeaderError::Token { .. })), "{bad:?}");
            assert!(out.is_empty(), "nothing written for {bad:?}");
        }
    }
}

mod section_4_1_client {
    use super::*;

    fn client_request() -> ClientRequest {
        ClientRequest::new("server.example.com", "/chat")
            .key(KEY)
            .origin("http://example.com")
            .protocol("chat")
            .protocol("superchat")
    }

    fn response(extra: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n{extra}\r\n"
        )
    }

    fn check(response: &str) -> Result<Decoded<ws_proto::HandshakeResponse>, ResponseError> {
        let mut out = BytesMut::new();
        client_request()
            .write(&mut out)
            .unwrap()
            .parse_response(response.as_bytes())
    }

    #[test]
    fn request_bytes() {
        let mut out = BytesMut::new();
        client_request()
            .header(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"))
            .write(&mut out)
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            format!(
                "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\
                 Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
                 authorization: Bearer t\r\n\r\n"
            )
        );
    }

    #[test]
    fn generated_keys_are_16_random_bytes() {
        use base64::Engine as _;
        let a = ClientRequest::new("h", "/");
        let b = ClientRequest::new("h", "/");
        assert_ne!(a.key_value(), b.key_value());
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(a.key_value())
            .unwrap();
        assert_eq!(decoded.len(), 16);
    }

    #[test]
    fn request_is_accepted_by_the_server_side() {
        let mut out = BytesMut::new();
        client_request().write(&mut out).unwrap();
        let Ok(Decoded::Done { value, .. }) = parse(&out) else {
            panic!()
        };
        let upgrade = validate_request(&value).unwrap();
        assert_eq!(upgrade.accept_key(), ACCEPT);
    }

    #[test]
    fn valid_response_with_chosen_protocol() {
        let text = response("Sec-WebSocket-Protocol: superchat\r\n");
        let Ok(Decoded::Done { value, consumed }) = check(&text) else {
            panic!()
        };
        assert_eq!(consumed, text.len());
        assert_eq!(value.protocol.as_deref(), Some("superchat"));
    }

    #[test]
    fn each_response_defect_is_a_distinct_error() {
        let cases = [
            (
                response("").replace("Upgrade: websocket\r\n", ""),
                ResponseError::MissingUpgrade,
            ),
            (
                response("").replace("Connection: Upgrade\r\n", ""),
                ResponseError::MissingConnectionUpgrade,
            ),
            (
                response("").replace(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n"), ""),
                ResponseError::MissingAccept,
            ),
            (
                response("").replace(ACCEPT, "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
                ResponseError::AcceptMismatch,
            ),
            (
                response("Sec-WebSocket-Protocol: other\r\n"),
                ResponseError::UnofferedProtocol("other".into()),
            ),
            (
                response("Sec-WebSocket-Extensions: permessage-deflate\r\n"),
                ResponseError::UnrequestedExtension("permessage-deflate".into()),
            ),
            // Issue 25, item 9: which of two answers counts is a guess.
            (
                response(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n")),
                ResponseError::DuplicateHeader("Sec-WebSocket-Accept"),
            ),
            (
                response("Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n"),
                ResponseError::DuplicateHeader("Sec-WebSocket-Protocol"),
            ),
        ];
        for (text, error) in cases {
            assert_eq!(check(&text), Err(error));
        }
    }

    #[test]
    fn rejection_carries_status_headers_and_body() {
        let text = "HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\nX-Why: origin\r\n\r\nno way";
        assert_eq!(check(&text[..text.len() - 2]), Ok(Decoded::NeedMore(2)));
        let Err(ResponseError::NotSwitchingProtocols(rejected)) = check(text) else {
            panic!()
        };
        assert_eq!(rejected.status, StatusCode::FORBIDDEN);
        assert_eq!(rejected.headers["x-why"], "origin");
        assert_eq!(&rejected.body[..], b"no way");
    }

    /// Issue 25, item 1: a rejection whose body arrives in later reads is
    /// whole once it has, however the bytes were split; before the fix the
    /// head was searched for again in the new bytes only, and never found.
    #[test]
    fn a_rejection_body_in_later_reads_is_not_lost() {
        let body = "x".repeat(2000);
        let text = format!(
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        for step in [1, 7, 100, 1460] {
            let mut out = BytesMut::new();
            let mut handshake = client_request().write(&mut out).unwrap();
            let mut end = 0;
            let result = loop {
                end = (end + step).min(text.len());
                match handshake.parse_response(&text.as_bytes()[..end]) {
                    Ok(Decoded::NeedMore(_)) if end < text.len() => {}
                    other => break other,
                }
            };
            let Err(ResponseError::NotSwitchingProtocols(rejected)) = result else {
                panic!("step {step}: {result:?}")
            };
            assert_eq!(rejected.status, StatusCode::UNAUTHORIZED);
            assert_eq!(rejected.body.len(), 2000, "step {step}");
        }
    }

    /// Issue 25, item 10: what the application gives for the request's
    /// headers is checked before anything is written.
    #[test]
    fn request_values_that_would_split_the_request_are_refused() {
        let cases = [
            ClientRequest::new("h", "/").origin("http://a\r\nX-Evil: 1"),
            ClientRequest::new("h", "/").protocol("chat\r\nX-Evil: 1"),
            ClientRequest::new("h", "/").protocol("two words"),
            ClientRequest::new("h", "/").extension("x\nX-Evil: 1"),
            ClientRequest::new("h\r\nX-Evil: 1", "/"),
            ClientRequest::new("h", "/ HTTP/1.1\r\nX-Evil: 1\r\n"),
        ];
        for request in cases {
            let mut out = BytesMut::new();
            assert!(request.write(&mut out).is_err(), "{request:?}");
            assert!(out.is_empty());
        }
    }
}
