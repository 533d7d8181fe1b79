//! Expectations: what the engine must make of a generated message.

use super::*;

/// How `head::parse` frames the body of a request with `fields` (none, or one framing header).
pub(super) fn expected_body(fields: &[Field]) -> Framing {
    let mut body = Framing::Empty;
    for f in fields {
        if f.named("transfer-encoding") {
            body = Framing::Chunked(Chunk::START);
        } else if f.named("content-length") {
            let n: u64 = f.value.parse().unwrap_or(0);
            body = if n > 0 {
                Framing::Length(n)
            } else {
                Framing::Empty
            };
        }
    }
    body
}

/// The headers the app receives for a request with `fields` (none hop-by-hop): all but
/// `X-Forwarded-For` in order, then one `x-forwarded-for` with the user's values and `peer`.
pub(super) fn expected_request_headers(fields: &[Field], peer: &[u8]) -> Vec<(String, String)> {
    let mut addresses: Vec<&str> = fields
        .iter()
        .filter(|f| f.named("x-forwarded-for"))
        .map(|f| f.value.as_str())
        .collect();
    let peer = text(peer);
    addresses.push(&peer);
    let mut headers: Vec<(String, String)> = fields
        .iter()
        .filter(|f| !f.named("x-forwarded-for"))
        .map(Field::pair)
        .collect();
    headers.push(("x-forwarded-for".to_string(), addresses.join(", ")));
    headers
}

/// The mirror's copy of a forwarded head has its path and, name by name, its header values in
/// order.
pub(super) fn check_copy(
    out: &[u8],
    path: &str,
    headers: &[(String, String)],
) -> Result<(), TestCaseError> {
    let Some((p, map)) = head::copy_of(out) else {
        return Err(TestCaseError::fail(format!("no copy of {:?}", text(out))));
    };
    prop_assert_eq!(p.as_str(), path);
    prop_assert_eq!(map.len(), headers.len());
    for (name, _) in headers {
        let got: Vec<&[u8]> = map
            .get_all(name.as_str())
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        let want: Vec<&[u8]> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
            .collect();
        prop_assert_eq!(got, want, "{}", name);
    }
    Ok(())
}

/// A token of a generated `Connection` line: a header of the message, another name, or one of
/// the options that name no header.
#[derive(Debug, Clone)]
pub(super) enum Tok {
    Field(Index),
    Other(String),
    Option(&'static str),
}

pub(super) fn tok() -> impl Strategy<Value = Tok> {
    prop_oneof![
        3 => any::<Index>().prop_map(Tok::Field),
        1 => free_name().prop_map(Tok::Other),
        1 => select(&["close", "keep-alive", "upgrade"][..]).prop_map(Tok::Option),
    ]
}

/// Ordinary headers with `Connection` lines among them, and the headers those lines do not name.
#[derive(Debug, Clone)]
pub(super) struct Named {
    pub(super) fields: Vec<Field>,
    pub(super) kept: Vec<Field>,
}

/// What may stand between two tokens of a `Connection` line.
pub(super) const SEPARATORS: &[&str] = &[",", ", ", " ,", ",,", " , \t"];

/// A `Connection` line as rendered (tokens in any case) and the names it gives.
pub(super) type ConnectionLine = (Index, Vec<(Tok, bool, &'static str)>, &'static str);

pub(super) fn render_connection(fields: &[Field], line: &ConnectionLine) -> (Field, Vec<String>) {
    let (_, toks, name) = line;
    let mut value = String::new();
    let mut named = Vec::new();
    for (k, (tok, upper, sep)) in toks.iter().enumerate() {
        let t = match tok {
            Tok::Field(i) if !fields.is_empty() => fields[i.index(fields.len())].name.clone(),
            Tok::Field(_) => "x-none".to_string(),
            Tok::Other(n) => n.clone(),
            Tok::Option(o) => o.to_string(),
        };
        if !matches!(tok, Tok::Option(_)) {
            named.push(t.to_ascii_lowercase());
        }
        if k > 0 {
            value.push_str(sep);
        }
        value.push_str(&if *upper { t.to_ascii_uppercase() } else { t });
    }
    (Field::new(name, &value), named)
}

/// One to three `Connection` lines (in any case) put among `fields`, naming some of them, other
/// names and options, in any case, with any separators.
pub(super) fn connection_lines(fields: Vec<Field>) -> impl Strategy<Value = Named> {
    let line = (
        any::<Index>(),
        vec((tok(), any::<bool>(), select(SEPARATORS)), 1..4),
        select(&["Connection", "connection", "CONNECTION"][..]),
    );
    vec(line, 1..3).prop_map(move |lines| {
        let mut named = Vec::new();
        let mut extra = Vec::new();
        for line in &lines {
            let (f, names) = render_connection(&fields, line);
            named.extend(names);
            extra.push((line.0, f));
        }
        let kept = fields
            .iter()
            .filter(|f| !named.contains(&f.name.to_ascii_lowercase()))
            .cloned()
            .collect();
        Named {
            fields: insert_all(fields.clone(), extra),
            kept,
        }
    })
}

/// One to eight ordinary headers with `Connection` lines among them.
pub(super) fn connection_named() -> impl Strategy<Value = Named> {
    vec(field(free_name()), 1..8).prop_flat_map(connection_lines)
}

/// A valid request with `Connection` lines that may name any of its headers, `Host`, framing and
/// `X-Forwarded-For` included (a user may send that; RFC 9110 §7.6.1 says such a sender is
/// wrong, not what a proxy then does to the message's framing).
pub(super) fn request_naming_any() -> impl Strategy<Value = Raw> {
    request().prop_flat_map(|req| {
        connection_lines(req.fields.clone()).prop_map(move |named| {
            Raw(Request {
                fields: named.fields,
                ..req.clone()
            }
            .render())
        })
    })
}

/// The same for answers.
pub(super) fn reply_naming_any() -> impl Strategy<Value = Raw> {
    reply().prop_flat_map(|reply| {
        connection_lines(reply.fields.clone()).prop_map(move |named| {
            Raw(Reply {
                fields: named.fields,
                ..reply.clone()
            }
            .render())
        })
    })
}

prop_compose! {
    /// A valid request whose target is in absolute form (any scheme case, maybe no path, maybe
    /// a query), with what the app should see: the authority and the origin form.
    pub(super) fn absolute_request()(
        req in request(),
        scheme in select(&["http://", "HTTP://", "https://"][..]),
        authority in host_value(),
        path in "(/[A-Za-z0-9._~-]{0,12})?",
        query in "(\\?[A-Za-z0-9=&]{0,8})?",
    ) -> (Request, String, String) {
        let origin = format!("{}{query}", if path.is_empty() { "/" } else { &path });
        let target = format!("{scheme}{authority}{path}{query}");
        (Request { target, ..req }, authority, origin)
    }
}
