//! Generators of valid messages: requests and answers a user or an app may send, rendered.

use super::*;

/// One header line as rendered: the value without blanks, and the blanks around it (which the
/// engine does not forward).
#[derive(Debug, Clone)]
pub(super) struct Field {
    pub(super) name: String,
    pub(super) value: String,
    pub(super) before: String,
    pub(super) after: String,
}

impl Field {
    pub(super) fn new(name: &str, value: &str) -> Field {
        Field {
            name: name.to_string(),
            value: value.to_string(),
            before: " ".to_string(),
            after: String::new(),
        }
    }

    pub(super) fn named(&self, lower: &str) -> bool {
        self.name.eq_ignore_ascii_case(lower)
    }

    pub(super) fn pair(&self) -> (String, String) {
        (self.name.clone(), self.value.clone())
    }
}

/// A token (RFC 9110 §5.6.2) that is none of [`SPECIAL`].
pub(super) fn free_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}".prop_filter("a name the engine treats specially", |n| {
        !SPECIAL.contains(&n.to_ascii_lowercase().as_str())
    })
}

/// A field named by `name`, its value visible ASCII with blanks inside (possibly empty), and
/// optional blanks around it.
pub(super) fn field(name: impl Strategy<Value = String>) -> impl Strategy<Value = Field> {
    (
        name,
        "([!-~]([ \t!-~]{0,16}[!-~])?)?",
        "[ \t]{0,2}",
        "[ \t]{0,2}",
    )
        .prop_map(|(name, value, before, after)| Field {
            name,
            value,
            before,
            after,
        })
}

/// A field with one of `names` and a value from `value`.
pub(super) fn field_of(
    names: &'static [&'static str],
    value: &'static str,
) -> impl Strategy<Value = Field> {
    field(select(names).prop_map(str::to_string))
        .prop_flat_map(move |f| value.prop_map(move |value| Field { value, ..f.clone() }))
}

/// A framing header: a `Content-Length` or `Transfer-Encoding: chunked`.
pub(super) fn framing_field() -> impl Strategy<Value = Field> {
    prop_oneof![
        field_of(&["Content-Length", "content-length"], "[0-9]{1,6}"),
        field_of(
            &["Transfer-Encoding", "transfer-encoding"],
            "chunked|Chunked"
        ),
    ]
}

/// Put each of `extra` into `fields` at its place (an index into the list as it grows).
pub(super) fn insert_all(mut fields: Vec<Field>, extra: Vec<(Index, Field)>) -> Vec<Field> {
    for (at, f) in extra {
        let i = at.index(fields.len() + 1);
        fields.insert(i, f);
    }
    fields
}

/// Header lines, each ended by `nl`, and the blank line.
pub(super) fn render_fields(s: &mut String, fields: &[Field], nl: &str) {
    for f in fields {
        s.push_str(&format!(
            "{}:{}{}{}{nl}",
            f.name, f.before, f.value, f.after
        ));
    }
    s.push_str(nl);
}

/// A request head a user may send.
#[derive(Debug, Clone)]
pub(super) struct Request {
    pub(super) method: &'static str,
    pub(super) target: String,
    pub(super) version: &'static str,
    pub(super) nl: &'static str,
    pub(super) fields: Vec<Field>,
}

impl Request {
    pub(super) fn render(&self) -> Vec<u8> {
        let nl = self.nl;
        let mut s = format!("{} {} {}{nl}", self.method, self.target, self.version);
        render_fields(&mut s, &self.fields, nl);
        s.into_bytes()
    }
}

pub(super) const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE",
];

/// An origin-form target: a path of characters no layer escapes, and maybe a query.
pub(super) fn origin_target() -> impl Strategy<Value = String> {
    "/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,24}(\\?[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,16})?"
}

/// A `Host` value: a name or an address, maybe a port (at most 65535: `[0-5]?[0-9]{1,4}` is).
pub(super) fn host_value() -> &'static str {
    "[a-z0-9][a-z0-9.-]{0,15}(:[0-5]?[0-9]{1,4})?"
}

prop_compose! {
    /// A valid request in origin form: one `Host` somewhere, ordinary headers, maybe a framing
    /// header (no chunked coding for HTTP/1.0) and `X-Forwarded-For` lines, CRLF or bare-LF
    /// lines, HTTP/1.1 or 1.0.
    pub(super) fn request()(
        method in select(METHODS),
        target in origin_target(),
        version in select(&["HTTP/1.1", "HTTP/1.0"][..]),
        nl in select(&["\r\n", "\n"][..]),
        fields in vec(field(free_name()), 0..8),
        host in field_of(&["Host", "host", "HOST"], host_value()),
        host_at in any::<Index>(),
        xffs in vec((any::<Index>(), field_of(
            &["X-Forwarded-For", "x-forwarded-for"],
            "[0-9]{1,3}(\\.[0-9]{1,3}){3}",
        )), 0..3),
        framing in proptest::option::of((any::<Index>(), framing_field())),
    ) -> Request {
        let mut extra = vec![(host_at, host)];
        extra.extend(xffs);
        // HTTP/1.0 has no chunked coding (RFC 9112 §6.1): such a request is refused.
        let chunked_10 = |f: &(Index, Field)| {
            version == "HTTP/1.0" && f.1.name.eq_ignore_ascii_case("transfer-encoding")
        };
        extra.extend(framing.filter(|f| !chunked_10(f)));
        Request { method, target, version, nl, fields: insert_all(fields, extra) }
    }
}

/// An answer head an app may send.
#[derive(Debug, Clone)]
pub(super) struct Reply {
    pub(super) version: &'static str,
    pub(super) status: u16,
    pub(super) reason: String,
    pub(super) nl: &'static str,
    pub(super) fields: Vec<Field>,
}

impl Reply {
    pub(super) fn render(&self) -> Vec<u8> {
        let nl = self.nl;
        let mut s = format!("{} {} {}{nl}", self.version, self.status, self.reason);
        render_fields(&mut s, &self.fields, nl);
        s.into_bytes()
    }
}

prop_compose! {
    /// A valid final answer: status 200–599, a reason of visible words, ordinary headers and a
    /// `Content-Length` or `Transfer-Encoding: chunked` somewhere.
    pub(super) fn reply()(
        version in select(&["HTTP/1.1", "HTTP/1.0"][..]),
        status in 200u16..600,
        reason in "([!-~]{1,8}( [!-~]{1,8}){0,3})?",
        nl in select(&["\r\n", "\n"][..]),
        fields in vec(field(free_name()), 0..8),
        framing in (any::<Index>(), framing_field()),
    ) -> Reply {
        Reply { version, status, reason, nl, fields: insert_all(fields, vec![framing]) }
    }
}

/// The user's side of an answer, any combination.
pub(super) fn asker() -> impl Strategy<Value = Asker> {
    any::<[bool; 4]>().prop_map(|[head, http10, close, upgrade]| Asker {
        head,
        http10,
        close,
        upgrade,
    })
}
