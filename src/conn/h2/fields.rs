//! The rules for header fields when a message crosses between HTTP/1.x and HTTP/2, as
//! pure functions: what `h2` does not check on a received request (RFC 9113 §8.2–§8.3),
//! and the HTTP/1.x-only fields removed from a message about to be sent as HTTP/2.
//!
//! `h2` itself already refuses, as a malformed stream: connection-specific fields
//! (`Connection`, `Keep-Alive`, `Proxy-Connection`, `Transfer-Encoding`, `Upgrade`), `TE`
//! other than `trailers`, upper-case names, CR, LF or NUL in a value, pseudo-header misuse,
//! and a `Content-Length` that disagrees with the DATA received.

use http::header::{self, HeaderMap, HeaderName};
use http::request::Parts;
use http::{Method, Request, Response, Version};

use crate::wire::{MessageFields, ParseError, TargetForm};

/// Fields that mean something only to an HTTP/1.x connection (RFC 9113 §8.2.2).
const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Removes what an HTTP/2 message must not carry (RFC 9113 §8.2.2): the fields named by
/// `Connection`, the connection-specific fields, and `TE` unless it is exactly `trailers`.
pub(crate) fn strip_connection_specific(headers: &mut HeaderMap) {
    // Most messages have none: one pass over the names, no lookups.
    let any = headers
        .keys()
        .any(|name| *name == header::TE || CONNECTION_SPECIFIC.contains(&name.as_str()));
    if !any {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in CONNECTION_SPECIFIC {
        headers.remove(name);
    }
    if headers
        .get_all(header::TE)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        headers.remove(header::TE);
    }
}

/// Checks what `h2` leaves to its user on a received request and derives what the server
/// hands over as for an HTTP/1.x request, in order:
///
/// 1. A field value starts or ends with a space or tab → malformed (§8.2.1): 400.
/// 2. `Host` and `:authority` both present and different → 400 (§8.3.1).
/// 3. Neither `:authority` nor `Host` (except `CONNECT`, whose `:authority` `h2` checks)
///    → 400, as an HTTP/1.1 request without `Host` (RFC 9112 §3.2).
/// 4. The authority stays in the URI, as hyper hands it over (a `Host` field only if the
///    client sent one): the proxy reads the URI's authority first, and writes `Host` from
///    it for an HTTP/1.1 next hop (§8.3.1).
/// 5. The target form: `CONNECT` → authority-form, `:path` `*` → asterisk-form (`OPTIONS`
///    only, else 400), otherwise origin-form (`:scheme` and `:authority` are not a proxy
///    request's absolute-form in HTTP/2).
/// 6. `Content-Length`, when sent, is the exact body length (`h2` enforced it).
pub(crate) fn check_request(parts: &Parts) -> Result<(MessageFields, TargetForm), ParseError> {
    if parts
        .headers
        .values()
        .any(|v| has_outer_whitespace(v.as_bytes()))
    {
        return Err(ParseError::Syntax(
            "field value with leading or trailing whitespace",
        ));
    }
    let authority = parts.uri.authority();
    let mut fields = MessageFields::new(Version::HTTP_2);
    let host_lines = parts.headers.get_all(header::HOST).iter().count();
    fields.host_count = host_lines.max(usize::from(authority.is_some())) as u32;
    match (authority, parts.headers.get(header::HOST)) {
        (Some(authority), Some(host))
            if !host
                .as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes()) =>
        {
            return Err(ParseError::Host("differs from :authority"));
        }
        (None, None) if parts.method != Method::CONNECT => {
            return Err(ParseError::Host("missing"));
        }
        _ => {}
    }
    if host_lines > 1 {
        return Err(ParseError::Host("repeated"));
    }
    let target_form = if parts.method == Method::CONNECT {
        TargetForm::Authority
    } else if parts.uri.path() == "*" {
        if parts.method != Method::OPTIONS {
            return Err(ParseError::Syntax("asterisk-form is for OPTIONS only"));
        }
        TargetForm::Asterisk
    } else {
        TargetForm::Origin
    };
    fields.content_length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .map(|v| crate::wire::headers::fold_content_length(None, v.as_bytes()));
    Ok((fields, target_form))
}

fn has_outer_whitespace(value: &[u8]) -> bool {
    let outer = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    outer(value.first()) || outer(value.last())
}

/// A request head as HTTP/2 sends it, for tracing (`get -v`): the pseudo-fields, then the
/// fields, one `name: value` per line.
pub fn render_request<B>(request: &Request<B>) -> Vec<u8> {
    let uri = request.uri();
    let mut out = format!(
        ":method: {}\n:scheme: {}\n:authority: {}\n:path: {}\n",
        request.method(),
        uri.scheme_str().unwrap_or(""),
        uri.authority().map_or("", |a| a.as_str()),
        uri.path_and_query().map_or("/", |p| p.as_str()),
    )
    .into_bytes();
    render_fields(&mut out, request.headers());
    out
}

/// A response head as HTTP/2 received it, rendered as [`render_request`] does.
pub fn render_response<B>(response: &Response<B>) -> Vec<u8> {
    let mut out = format!(":status: {}\n", response.status().as_u16()).into_bytes();
    render_fields(&mut out, response.headers());
    out
}

fn render_fields(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_render_for_tracing_pseudo_fields_first() {
        let request = Request::post("https://example.test:8443/a?b=1")
            .header("accept", "*/*")
            .body(())
            .unwrap();
        assert_eq!(
            String::from_utf8(render_request(&request)).unwrap(),
            ":method: POST\n:scheme: https\n:authority: example.test:8443\n:path: /a?b=1\naccept: */*\n"
        );
        let response = Response::builder()
            .status(404)
            .header("content-length", "0")
            .body(())
            .unwrap();
        assert_eq!(
            String::from_utf8(render_response(&response)).unwrap(),
            ":status: 404\ncontent-length: 0\n"
        );
    }
    use http::HeaderValue;
    use http::Request;

    fn parts(method: &str, uri: &str, fields: &[(&str, &str)]) -> Parts {
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .version(Version::HTTP_2);
        for (name, value) in fields {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_checklist_in_order() {
        type Expect = Result<TargetForm, u16>;
        type Fields = &'static [(&'static str, &'static str)];
        let cases: [(&str, &str, Fields, Expect); 9] = [
            ("GET", "https://a.test/x", &[], Ok(TargetForm::Origin)),
            (
                "GET",
                "https://a.test/x",
                &[("host", "A.test")],
                Ok(TargetForm::Origin),
            ),
            // 1. outer whitespace
            ("GET", "https://a.test/", &[("x", " v")], Err(400)),
            // 2. Host disagrees with :authority
            ("GET", "https://a.test/", &[("host", "b.test")], Err(400)),
            // 3. no authority at all
            ("GET", "/x", &[], Err(400)),
            ("GET", "/x", &[("host", "a"), ("host", "a")], Err(400)),
            ("CONNECT", "a.test:443", &[], Ok(TargetForm::Authority)),
            // 5. asterisk-form
            ("OPTIONS", "https://a.test*", &[], Ok(TargetForm::Asterisk)),
            ("GET", "https://a.test*", &[], Err(400)),
        ];
        for (method, uri, fields, expected) in cases {
            let mut p = match uri.strip_suffix('*') {
                None => {
                    Request::builder()
                        .method(method)
                        .uri(uri)
                        .body(())
                        .unwrap()
                        .into_parts()
                        .0
                }
                // `:path` `*`, as `h2` hands it over.
                Some(_) => {
                    let uri = http::Uri::builder()
                        .scheme("https")
                        .authority("a.test")
                        .path_and_query("*")
                        .build()
                        .unwrap();
                    Request::builder()
                        .method(method)
                        .uri(uri)
                        .body(())
                        .unwrap()
                        .into_parts()
                        .0
                }
            };
            for (name, value) in fields {
                p.headers
                    .append(*name, HeaderValue::from_str(value).unwrap());
            }
            let got = check_request(&p)
                .map(|(_, form)| form)
                .map_err(|e| e.status().as_u16());
            assert_eq!(got, expected, "{method} {uri} {fields:?}");
        }
    }

    #[test]
    fn the_authority_counts_as_the_host_and_content_length_is_read() {
        let p = parts(
            "POST",
            "https://a.test:8443/up",
            &[("content-length", "12")],
        );
        let (fields, _) = check_request(&p).unwrap();
        assert_eq!(fields.host_count, 1);
        assert_eq!(fields.content_length, Some(Ok(12)));
        assert_eq!(fields.version, Version::HTTP_2);
    }

    #[test]
    fn connection_specific_fields_are_removed() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "close, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "gzip"),
            ("x-end", "2"),
        ] {
            headers.append(name, HeaderValue::from_static(value));
        }
        strip_connection_specific(&mut headers);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-end"]);

        let mut headers = HeaderMap::new();
        headers.insert("te", HeaderValue::from_static("trailers"));
        strip_connection_specific(&mut headers);
        assert_eq!(headers["te"], "trailers");
    }
}
