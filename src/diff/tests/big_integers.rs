//! Integers too large for `u64` / `i64` compared exactly, by their digits (issue: they went
//! through `f64`, and two differing in their low digits were equal), and the rewrite of the bytes
//! that makes it so, which reads outside bytes: properties over any input.

use proptest::prelude::*;

use super::*;

const BIG: &str = "123456789012345678901234567890";
const BIG_PLUS_1: &str = "123456789012345678901234567891";

#[test]
fn integers_past_2_64_compare_by_their_digits() {
    let obj = |n: &str| format!(r#"{{"a":{n},"b":1}}"#);
    // Keys reordered so the bodies are not byte-equal: they are parsed and walked.
    let reordered = |n: &str| format!(r#"{{"b":1,"a":{n}}}"#);
    #[rustfmt::skip]
    let cases: Vec<(&str, String, String, Vec<Found>)> = vec![
        ("low digits differ", obj(BIG), reordered(BIG_PLUS_1), vec![p("$.a", Changed)]),
        ("equal", obj(BIG), reordered(BIG), vec![]),
        ("negative, low digits differ", obj(&format!("-{BIG}")), reordered(&format!("-{BIG_PLUS_1}")), vec![p("$.a", Changed)]),
        ("sign differs", obj(BIG), reordered(&format!("-{BIG}")), vec![p("$.a", Changed)]),
        ("2^64 against u64::MAX: both integers", obj("18446744073709551616"), reordered("18446744073709551615"), vec![p("$.a", Changed)]),
        ("just past i64::MIN", obj("-9223372036854775809"), reordered("-9223372036854775808"), vec![p("$.a", Changed)]),
        ("an integer against a float of its value is a type change, as 1 against 1.0",
            obj("1000000000000000000000000000000"), reordered("1e30"), vec![p("$.a", TypeChanged)]),
        ("against a string", obj(BIG), reordered(&format!("\"{BIG}\"")), vec![p("$.a", TypeChanged)]),
        ("in an array", format!("[{BIG},1]"), format!("[{BIG_PLUS_1}, 1]"), vec![p("$[*]", Changed)]),
        ("the rule for floats is kept: 1.0 and 1.00", obj("1.0"), reordered("1.00"), vec![]),
        ("and for 100 against 1e2", obj("100"), reordered("1e2"), vec![p("$.a", TypeChanged)]),
        ("large floats still compare as floats", obj("1.5e300"), reordered("15e299"), vec![]),
    ];
    for (name, r, t, want) in cases {
        assert_eq!(json_diffs(&r, &t, &[], &[]), want, "{name}");
    }
}

#[test]
fn large_integers_show_as_written_and_match_in_unordered_arrays() {
    let d = diff(
        &answer(
            JSON,
            &format!(r#"{{"a":{BIG},"o":{{"n":{BIG}}}}}"#),
            "1.0.0",
        ),
        &answer(JSON, &format!(r#"{{"a":{BIG_PLUS_1}}}"#), "1.1.0"),
        &DiffOptions::default(),
    );
    let at = |path: &str| d.iter().find(|d| d.path == path).unwrap();
    assert_eq!(
        (at("$.a").running.as_str(), at("$.a").testing.as_str()),
        (BIG, BIG_PLUS_1)
    );
    assert_eq!(
        at("$.o").running,
        format!(r#"{{"n":{BIG}}}"#),
        "unmarked inside a value"
    );
    let set = format!(r#"{{"t":[{BIG},{BIG_PLUS_1}]}}"#);
    let swapped = format!(r#"{{"t":[{BIG_PLUS_1},{BIG}]}}"#);
    let twice = format!(r#"{{"t":[{BIG},{BIG}]}}"#);
    assert_eq!(json_diffs(&set, &swapped, &[], &["$.t"]), vec![]);
    assert_eq!(
        json_diffs(&set, &twice, &[], &["$.t"]),
        vec![p("$.t[*]", Changed)]
    );
}

#[test]
fn digits_inside_strings_and_keys_are_left_alone() {
    let r = format!(r#"{{"k{BIG}":"a\"{BIG}\\","s":"{BIG}","n":{BIG}}}"#);
    let t = format!(r#"{{"s":"{BIG}","k{BIG}":"a\"{BIG}\\","n":{BIG_PLUS_1}}}"#);
    assert_eq!(json_diffs(&r, &t, &[], &[]), vec![p("$.n", Changed)]);
    let v = read(r.as_bytes()).unwrap();
    assert_eq!(v["s"], Value::from(BIG));
    assert_eq!(
        v[format!("k{BIG}").as_str()],
        Value::from(format!("a\"{BIG}\\"))
    );
}

/// A body's own string that looks like a mark (a NUL can be written `\u0000`) stays a string,
/// and shows as it was.
#[test]
fn a_string_of_the_body_never_reads_as_a_large_integer() {
    let forged = format!(r#"{{"a":"\u0000int:{BIG}","b":1,"n":{BIG}}}"#);
    let t = format!(r#"{{"b":1,"a":{BIG},"n":{BIG_PLUS_1}}}"#);
    assert_eq!(
        json_diffs(&forged, &t, &[], &[]),
        vec![p("$.a", TypeChanged), p("$.n", Changed)]
    );
    let same = format!(r#"{{"b":1, "a":"\u0000int:{BIG}","n":{BIG}}}"#);
    assert_eq!(json_diffs(&forged, &same, &[], &[]), vec![]);
    let d = diff(
        &answer(JSON, &forged, "1.0.0"),
        &answer(JSON, r#"{"a":"x","b":1}"#, "1.1.0"),
        &DiffOptions::default(),
    );
    assert_eq!(d[0].running, format!(r#""\u0000int:{BIG}""#));
    let nested = diff(
        &answer(
            JSON,
            r#"{"o":{"s":"\u0000\u0000x","t":"\"\u0000"},"b":1}"#,
            "1.0.0",
        ),
        &answer(JSON, r#"{"b":1}"#, "1.1.0"),
        &DiffOptions::default(),
    );
    assert_eq!(nested[0].running, r#"{"s":"\u0000\u0000x","t":"\"\u0000"}"#);
}

/// A body as the diff reads it, as JSON.
fn read(body: &[u8]) -> Option<Value> {
    let a = Answer {
        body,
        ..answer(JSON, "", "1.0.0")
    };
    parse_both(&a, &a).map(|(v, _)| v)
}

/// The value as serde_json reads it: each large integer kept as written turned into its float.
fn floats(v: Value) -> Value {
    match v {
        // As serde_json reads the digits (its rounding, not the standard library's).
        Value::String(s) if s.starts_with("\u{0}int:") => serde_json::from_str(&s[5..]).unwrap(),
        Value::Array(a) => Value::Array(a.into_iter().map(floats).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, floats(v))).collect()),
        v => v,
    }
}

/// Digits for a JSON integer literal, any length, either sign.
fn integer() -> impl Strategy<Value = String> {
    ("-?", "[1-9][0-9]{0,40}").prop_map(|(s, d)| format!("{s}{d}"))
}

/// A JSON document built from integers, floats, strings (with digits and escapes) and nesting.
fn document() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        integer(),
        "-?[1-9][0-9]{0,4}\\.[0-9]{1,5}(e[+-]?[0-9]{1,2})?",
        "[a-z0-9\\\\\"]{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("true".to_string()),
        Just("null".to_string()),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(("[a-z0-9]{0,4}", inner), 0..4).prop_map(|v| {
                let fields: Vec<String> = v
                    .into_iter()
                    .map(|(k, v)| format!("{}: {v}", serde_json::to_string(&k).unwrap()))
                    .collect();
                format!("{{ {} }}", fields.join(" , "))
            }),
        ]
    })
}

proptest! {
    /// Any bytes (most of them JSON's own): the reader never panics, reads as JSON exactly what
    /// serde_json reads, and the same values but for the large integers it keeps as written.
    #[test]
    fn any_bytes_are_json_exactly_when_serde_reads_them(
        body in prop::collection::vec(prop_oneof![
            4 => prop::sample::select(br#"{}[]",:0123456789-+.eE \u0tn"#.to_vec()),
            1 => any::<u8>(),
        ], 0..48),
        doc in document(),
    ) {
        for body in [&body[..], doc.as_bytes()] {
            let ours = read(body);
            let theirs = serde_json::from_slice::<Value>(body).ok();
            prop_assert_eq!(ours.clone().map(floats), theirs, "{:?}", String::from_utf8_lossy(body));
        }
    }

    /// Any document: it is read, and is equal to itself (reformatted), never to itself with one
    /// integer's last digit changed.
    #[test]
    fn an_integer_changed_in_any_document_is_found(doc in document(), n in integer(), last in 0u8..9) {
        let (r, t) = (format!("[{doc}, {n}]"), format!("[{doc},{n}]"));
        prop_assert!(read(r.as_bytes()).is_some(), "{}", r);
        prop_assert_eq!(json_diffs(&r, &t, &[], &[]), vec![]);
        let d = n.as_bytes()[n.len() - 1] - b'0';
        let other = format!("{}{}", &n[..n.len() - 1], if last >= d { last + 1 } else { last });
        // "-0" is a float to serde_json.
        prop_assume!(other != "-0");
        let changed = format!("[{doc},{other}]");
        prop_assert_eq!(json_diffs(&r, &changed, &[], &[]), vec![p("$[*]", Changed)]);
    }
}
