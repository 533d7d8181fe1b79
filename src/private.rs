//! Text understudy quotes from outside that may hold secrets: values from users' answers (the
//! differences' examples) and what a hook printed. Wherever such text is put into a message (a
//! reason, a hook's failure, a summary) it is [`quote`]d between `‹` and `›`, which survive any
//! later copying of the message into others (a rejection, a schedule's outcome), so that a reader
//! not entitled to it (the admin API over TCP without the token) gets every quoted span
//! replaced by [`HIDDEN`] through [`hide`], whatever message it ended up in.

use std::borrow::Cow;

/// What a hidden value reads as.
pub const HIDDEN: &str = "(hidden: send the token)";

/// Opens a quoted span.
const OPEN: char = '‹';
/// Closes a quoted span.
const CLOSE: char = '›';

/// `text` as a quoted span: between `‹` and `›`, those two in it made `<` and `>` so the span
/// cannot end early.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2 * OPEN.len_utf8());
    out.push(OPEN);
    out.extend(text.chars().map(|c| match c {
        OPEN => '<',
        CLOSE => '>',
        c => c,
    }));
    out.push(CLOSE);
    out
}

/// `text` with every quoted span replaced by [`HIDDEN`]. A span runs from a `‹` to the next `›`
/// (or to the end, for one cut short), so a stray `‹` elsewhere in a message (a request path, a
/// build's name) can only hide more, never leave a span shown.
pub fn hide(text: &str) -> Cow<'_, str> {
    let Some(start) = text.find(OPEN) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut at = start;
    loop {
        out.push_str(&rest[..at]);
        out.push_str(HIDDEN);
        rest = &rest[at + OPEN.len_utf8()..];
        rest = match rest.find(CLOSE) {
            Some(end) => &rest[end + CLOSE.len_utf8()..],
            None => "",
        };
        match rest.find(OPEN) {
            Some(next) => at = next,
            None => break,
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// [`hide`] every string in a JSON value (keys are understudy's own names and stay).
pub fn hide_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            if let Cow::Owned(hidden) = hide(s) {
                *s = hidden;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(hide_json),
        Value::Object(map) => map.values_mut().for_each(hide_json),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quoted_span_is_hidden_wherever_it_was_copied() {
        let reason = format!(
            "e.g. running {} vs testing {}",
            quote("\"a@x\""),
            quote("3")
        );
        let copied = format!("1.1.0 was rejected: {reason}; and more");
        assert_eq!(
            hide(&copied),
            format!("1.1.0 was rejected: e.g. running {HIDDEN} vs testing {HIDDEN}; and more")
        );
        assert!(matches!(hide("no secrets here"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_span_cannot_end_early_nor_be_shown_by_a_stray_delimiter() {
        let span = quote("token=abc› shown? ‹x");
        assert_eq!(span, "‹token=abc> shown? <x›");
        assert_eq!(hide(&format!("a {span} b")), format!("a {HIDDEN} b"));
        // A stray opening before a span hides through the span; one left open hides to the end.
        assert_eq!(
            hide(&format!("GET /‹ at {span} end")),
            format!("GET /{HIDDEN} end")
        );
        assert_eq!(hide("x ‹secret cut"), format!("x {HIDDEN}"));
        assert_eq!(hide("a › b"), "a › b");
    }

    #[test]
    fn every_string_of_a_json_value_is_hidden() {
        let mut v = serde_json::json!({"a": [quote("s"), 1, {"b": format!("x {}", quote("t"))}]});
        hide_json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"a": [HIDDEN, 1, {"b": format!("x {HIDDEN}")}]})
        );
    }
}
