//! Integers too large for `u64` / `i64`: serde_json (without `arbitrary_precision`, which would
//! change every number in the program) reads them as `f64`, so two that differ in their low digits
//! compared equal. Before parsing, each such literal is rewritten as a marked string holding its
//! digits, which the walker compares as written: a JSON integer literal has one spelling (no
//! leading zeros, no `+`), so equal digits are equal numbers.

use serde_json::Value;

/// What a marked string starts with: a NUL, which a body's own string can only hold through the
/// escape `\u0000`; a value string of the body's own starting with one gets a second ([`parse`]),
/// so no string of the body ever reads as a mark.
const MARK: &str = "\u{0}int:";

/// A JSON body as a value, with every integer literal too large for `u64` / `i64` kept as a
/// marked string of its digits ([`digits`]). `None` when it is not JSON.
pub(crate) fn parse(body: &[u8]) -> Option<Value> {
    let v = serde_json::from_slice(body).ok()?;
    // The body as parsed is the judge of what is JSON: a rewrite only ever touches a number or a
    // string in a value's place. Bodies without a large integer or a string starting with a NUL,
    // nearly all of them, are read once.
    match rewritten(body) {
        Some(b) => serde_json::from_slice(&b).ok(),
        None => Some(v),
    }
}

/// The digits (sign included) of an integer too large for `u64` / `i64`, when `v` is one.
pub(crate) fn digits(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => s.strip_prefix(MARK),
        _ => None,
    }
}

/// A serialised example as the body wrote it: each mark taken out (`"\u0000int:123…"` shows as
/// `123…`), and the NUL added before a string of the body's own taken out again.
pub(crate) fn unmarked(mut text: String) -> String {
    const OPENING_NUL: &str = "\"\\u0000";
    let mut from = 0;
    while let Some(at) = text[from..].find(OPENING_NUL).map(|n| from + n) {
        from = at + 1;
        // In serialised JSON a quote after a backslash is inside a string: one opening a string
        // follows `[`, `{`, `,` or `:`.
        if at > 0 && text.as_bytes()[at - 1] == b'\\' {
            continue;
        }
        let start = at + OPENING_NUL.len();
        if text[start..].starts_with("\\u0000") {
            text.replace_range(start - 6..start, "");
        } else if text[start..].starts_with("int:") {
            // The closing quote; an example cut short may have lost it.
            let end = text[start..]
                .find('"')
                .map_or(text.len(), |n| start + n + 1);
            let inner = text[start + 4..end].trim_end_matches('"').to_string();
            text.replace_range(at..end, &inner);
            from = at + inner.len();
        }
    }
    text
}

/// The body with every integer literal that `u64` / `i64` cannot hold written as a marked
/// string, and a NUL put before every value string starting with one; `None` when neither occurs
/// (nothing to rewrite). `body` is valid JSON.
fn rewritten(body: &[u8]) -> Option<Vec<u8>> {
    const NUL: &[u8] = b"\\u0000";
    let (mut out, mut copied, mut i) = (None::<Vec<u8>>, 0, 0);
    while i < body.len() {
        let b = body[i];
        if b == b'"' {
            let end = string_end(body, i + 1);
            let key = body[end..]
                .iter()
                .find(|c| !c.is_ascii_whitespace())
                .is_some_and(|&c| c == b':');
            if !key && body[i + 1..].starts_with(NUL) {
                let o = out.get_or_insert_with(|| Vec::with_capacity(body.len() + 64));
                o.extend_from_slice(&body[copied..=i]);
                o.extend_from_slice(NUL);
                copied = i + 1;
            }
            i = end;
            continue;
        }
        if b != b'-' && !b.is_ascii_digit() {
            i += 1;
            continue;
        }
        let end = i + body[i..]
            .iter()
            .position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
            .unwrap_or(body.len() - i);
        let token = &body[i..end];
        if too_large(token) {
            let o = out.get_or_insert_with(|| Vec::with_capacity(body.len() + 64));
            o.extend_from_slice(&body[copied..i]);
            o.extend_from_slice(b"\"\\u0000int:");
            o.extend_from_slice(token);
            o.push(b'"');
            copied = end;
        }
        i = end;
    }
    let mut o = out?;
    o.extend_from_slice(&body[copied..]);
    Some(o)
}

/// Just past the closing quote of the string whose text starts at `from`.
fn string_end(body: &[u8], mut from: usize) -> usize {
    while from < body.len() {
        match body[from] {
            b'\\' => from += 2,
            b'"' => return from + 1,
            _ => from += 1,
        }
    }
    body.len()
}

/// Whether `token` is a JSON integer literal that neither `u64` nor `i64` can hold.
fn too_large(token: &[u8]) -> bool {
    let unsigned = token.strip_prefix(b"-").unwrap_or(token);
    let integer =
        !unsigned.is_empty() && unsigned[0] != b'0' && unsigned.iter().all(u8::is_ascii_digit);
    if !integer || unsigned.len() < 19 {
        return false;
    }
    let Ok(text) = std::str::from_utf8(token) else {
        return false;
    };
    text.parse::<u64>().is_err() && text.parse::<i64>().is_err()
}
