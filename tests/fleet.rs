//! The contract with fleet rollout engines, checked against docs/fleet.md itself: the requests
//! Argo Rollouts' `web` metric provider and Flagger's `confirm-promotion` webhook send, as the
//! docs configure them, to a real (paused) understudy, and what the documented conditions make
//! of the answers. The URL paths, headers, `jsonPath`, conditions, example answers and Flagger's
//! payload are all read from the docs, so the docs and the API cannot drift apart.

use std::net::SocketAddr;
use std::time::Duration;

use regex_lite::Regex;
use serde_json::Value;

use crate::support::*;

/// Fast scoring: a verdict other than wait after 20 pairs and 2 s without a regression.
const FAST: &str = "STABLE_WINDOW=2s\nMIN_MIRRORED=20\nEVALUATE_EVERY=250ms";

/// What Go's `net/http` adds to every request (both engines are Go programs).
const GO_CLIENT: [(&str, &str); 2] = [
    ("User-Agent", "Go-http-client/1.1"),
    ("Accept-Encoding", "gzip"),
];

fn docs() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/fleet.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The bodies of the fenced blocks of language `lang`.
fn fenced(text: &str, lang: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim_start() == format!("```{lang}") => current = Some(String::new()),
            Some(block) if line.trim_start() == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// The first capture of `pattern` in `text`, with YAML's outer quotes taken off.
fn field(text: &str, pattern: &str) -> Option<String> {
    let v = Regex::new(pattern).unwrap().captures(text)?[1]
        .trim()
        .to_string();
    let unquoted = ['\'', '"']
        .iter()
        .find_map(|q| v.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)));
    Some(unquoted.unwrap_or(&v).to_string())
}

/// The path of the URL in a `url:` line (`http://{{args.canary-host}}:8081/api/verdict`).
fn url_path(block: &str) -> String {
    let url = field(block, r"(?m)^\s*url:\s*(\S+)\s*$").expect("a url");
    let rest = url.split_once("://").expect("an absolute URL").1;
    format!("/{}", rest.split_once('/').expect("a path").1)
}

/// One metric of an Argo Rollouts AnalysisTemplate, as the docs write it.
#[derive(Debug)]
struct ArgoMetric {
    path: String,
    headers: Vec<(String, String)>,
    json_path: String,
    success: String,
    failure: String,
}

/// Every `web` metric in the docs' YAML.
fn argo_metrics(docs: &str) -> Vec<ArgoMetric> {
    let header =
        Regex::new(r#"(?m)^\s*-\s*key:\s*"?([A-Za-z-]+)"?\s*\n\s*value:\s*"?([^"\n]+?)"?\s*$"#)
            .unwrap();
    let metrics: Vec<ArgoMetric> = fenced(docs, "yaml")
        .into_iter()
        .filter(|b| b.contains("jsonPath:"))
        .map(|b| ArgoMetric {
            path: url_path(&b),
            headers: header
                .captures_iter(&b)
                .map(|c| (c[1].to_string(), c[2].to_string()))
                .collect(),
            json_path: field(&b, r"(?m)^\s*jsonPath:\s*(.+)$").unwrap(),
            success: field(&b, r"(?m)^\s*successCondition:\s*(.+)$").expect("successCondition"),
            failure: field(&b, r"(?m)^\s*failureCondition:\s*(.+)$").expect("failureCondition"),
        })
        .collect();
    assert!(
        metrics.len() >= 2,
        "the docs show the template and the version-pinned variant: {metrics:#?}"
    );
    for m in &metrics {
        assert!(
            m.headers
                .iter()
                .any(|(k, v)| k == "Accept" && v == "application/json"),
            "the template asks for JSON: {m:?}"
        );
    }
    metrics
}

/// A measurement's phase as Argo Rollouts decides it from both conditions.
#[derive(Debug, PartialEq)]
enum Phase {
    Successful,
    Failed,
    Inconclusive,
}

/// The value at a `jsonPath` of the forms the docs use: `{$}` and `{$.a.b}`.
fn at_json_path<'a>(body: &'a Value, json_path: &str) -> &'a Value {
    let inner = json_path
        .strip_prefix("{$")
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or_else(|| panic!("jsonPath {json_path:?} is not {{$...}}"));
    inner
        .split('.')
        .filter(|k| !k.is_empty())
        .fold(body, |v, k| {
            v.get(k)
                .unwrap_or_else(|| panic!("{json_path}: no field {k:?} in {body}"))
        })
}

/// A condition of the forms the docs use: clauses `result[.field...] == "literal"` joined by
/// `&&`, with `{{args.version}}` standing for `version`.
fn holds(condition: &str, result: &Value, version: &str) -> bool {
    let clause = Regex::new(r#"^result((?:\.[a-z_]+)*) == "([^"]*)"$"#).unwrap();
    condition.split("&&").all(|c| {
        let m = clause
            .captures(c.trim())
            .unwrap_or_else(|| panic!("clause {c:?} of {condition:?} is not result... == \"...\""));
        let value = m[1]
            .split('.')
            .filter(|k| !k.is_empty())
            .fold(result, |v, k| {
                v.get(k)
                    .unwrap_or_else(|| panic!("{condition}: no field {k:?} in {result}"))
            });
        let literal = m[2].replace("{{args.version}}", version);
        value.as_str() == Some(literal.as_str())
    })
}

/// What Argo Rollouts makes of `body` under `m`, the rollout being about `version`.
fn phase(m: &ArgoMetric, body: &Value, version: &str) -> Phase {
    let result = at_json_path(body, &m.json_path);
    let (success, failure) = (
        holds(&m.success, result, version),
        holds(&m.failure, result, version),
    );
    match (success, failure) {
        (_, true) => Phase::Failed,
        (true, false) => Phase::Successful,
        (false, false) => Phase::Inconclusive,
    }
}

/// Argo's `web` provider: a GET with the template's headers (and Go's own); a non-2xx answer
/// would be an Error measurement, so it must be 200 and JSON.
fn argo_measure(addr: SocketAddr, m: &ArgoMetric) -> Value {
    let mut headers: Vec<(&str, &str)> = m
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    headers.extend(GO_CLIENT);
    let (code, text) = http_request(addr, "GET", &m.path, &headers, "").unwrap();
    assert_eq!(code, 200, "GET {}: {text}", m.path);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("GET {} is not JSON ({e}): {text}", m.path))
}

/// The docs' Flagger webhook: its path, and the payload Flagger POSTs.
fn flagger_gate(docs: &str) -> (String, String) {
    let canary = fenced(docs, "yaml")
        .into_iter()
        .find(|b| b.contains("kind: Canary"))
        .expect("a Flagger Canary in the docs");
    assert_eq!(
        field(&canary, r"(?m)^\s*type:\s*(\S+)\s*$").as_deref(),
        Some("confirm-promotion"),
        "{canary}"
    );
    let payload = fenced(docs, "json")
        .into_iter()
        .find(|b| b.contains("\"phase\""))
        .expect("Flagger's payload in the docs");
    (url_path(&canary), payload)
}

/// Flagger's call: POST, JSON payload, `Content-Type: application/json`.
fn flagger_call(addr: SocketAddr, path: &str, payload: &str) -> (u16, Value) {
    let mut headers = vec![("Content-Type", "application/json")];
    headers.extend(GO_CLIENT);
    let (code, text) = http_request(addr, "POST", path, &headers, payload).unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("POST {path} is not JSON ({e}): {text}"));
    (code, body)
}

/// The docs' example answer that has `key`.
fn example(docs: &str, key: &str) -> Value {
    fenced(docs, "json")
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).unwrap_or_else(|e| panic!("{e}: {b}")))
        .find(|v| v.get(key).is_some())
        .unwrap_or_else(|| panic!("no example with {key:?} in docs/fleet.md"))
}

/// The live answer has exactly the example's fields, each of the same JSON type (null stands
/// for any: `version` is null when nothing is under test).
fn same_shape(live: &Value, example: &Value) {
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let (l, e) = (live.as_object().unwrap(), example.as_object().unwrap());
    let mut lk: Vec<_> = l.keys().collect();
    let mut ek: Vec<_> = e.keys().collect();
    lk.sort();
    ek.sort();
    assert_eq!(lk, ek, "live {live} vs documented {example}");
    for (k, v) in e {
        let (a, b) = (kind(&l[k]), kind(v));
        assert!(
            a == b || a == "null" || b == "null",
            "{k}: live {a} vs documented {b}"
        );
    }
}

/// v1.0.0 running, understudy paused (with the token, over TCP), then v1.1.0 with `faults` under
/// test. Returns the admin address and token.
fn paused_canary(name: &str, faults: &str) -> (Base, Understudy, SocketAddr, String) {
    let base = Base::new(name);
    base.write_env(FAST);
    let u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let (addr, token) = admin(&base);
    let (code, body) = api(addr, "POST", "/api/pause", Some(&token), "");
    assert_eq!(code, 200, "{body}");
    base.drop_fixture("1.1.0", faults);
    base.wait_testing();
    (base, u, addr, token)
}

/// Send user traffic through the proxy until the verdict (as Argo reads it) is `want`.
fn traffic_until(u: &Understudy, addr: SocketAddr, m: &ArgoMetric, want: &str) -> Value {
    let mut i = 0;
    wait_until(
        &format!("the verdict {want}"),
        Duration::from_secs(30),
        || {
            for _ in 0..5 {
                let path = ["/", "/api/items", "/health"][i % 3];
                assert_eq!(u.get(path).0, 200, "users are served by running");
                i += 1;
            }
            let v = argo_measure(addr, m);
            (v["verdict"] == want).then_some(v)
        },
    )
}

#[test]
fn documented_template_passes_argo_validation() {
    // The limits Argo Rollouts' ValidateMetric enforces, so the documented template is accepted.
    for block in fenced(&docs(), "yaml")
        .iter()
        .filter(|b| b.contains("jsonPath:"))
    {
        let num = |key: &str| {
            field(block, &format!(r"(?m)^\s*{key}:\s*(-?\d+)")).map(|v| v.parse::<i64>().unwrap())
        };
        let count = num("count").expect("a count, so a run of wait ends");
        let failure = num("failureLimit").unwrap_or(0);
        let success = num("consecutiveSuccessLimit").unwrap_or(0);
        let inconclusive = num("inconclusiveLimit").unwrap_or(0);
        assert!(block.contains("interval:"), "count > 1 needs an interval");
        assert_eq!(failure, 0, "the first reject fails the run");
        assert_eq!(success, 1, "the first promote ends the run Successful");
        assert!(
            count >= failure + success && count >= inconclusive,
            "{block}"
        );
        assert_eq!(
            inconclusive, count,
            "wait keeps measuring until count (then the run is Inconclusive)"
        );
    }
    let docs = docs();
    assert!(docs.contains("ADMIN_LISTEN=0.0.0.0:8081"));
    assert!(docs.contains("understudy pause"));
}

/// Three pairs of the twenty needed: every engine's check says wait (inconclusive), and the
/// Flagger gate holds, saying why.
fn too_little_evidence_waits_and_holds_flagger(u: &Understudy, addr: SocketAddr, docs: &str) {
    let metrics = argo_metrics(docs);
    let (gate_path, payload) = flagger_gate(docs);
    for _ in 0..3 {
        assert_eq!(u.get("/").0, 200);
    }
    let v = wait_until("three pairs scored", Duration::from_secs(10), || {
        let v = argo_measure(addr, &metrics[0]);
        (v["pairs"] == 3).then_some(v)
    });
    assert_eq!(v["verdict"], "wait", "{v}");
    assert_eq!(v["version"], "1.1.0", "{v}");
    let reasons = v["reasons"].as_array().unwrap();
    assert!(
        !reasons.is_empty() && reasons[0].as_str().unwrap().contains("too little traffic"),
        "{v}"
    );
    same_shape(&v, &example(docs, "reasons"));
    for m in &metrics {
        assert_eq!(
            phase(m, &argo_measure(addr, m), "1.1.0"),
            Phase::Inconclusive
        );
    }
    let (code, gate) = flagger_call(addr, &gate_path, &payload);
    assert_eq!(code, 403, "wait holds Flagger's promotion: {gate}");
    assert_eq!(gate["verdict"], "wait");
    let message = gate["message"].as_str().unwrap();
    assert!(
        message.starts_with("understudy's verdict is wait: ")
            && message.contains("too little traffic"),
        "{gate}"
    );
    same_shape(&gate, &example(docs, "message"));
}

#[test]
fn engines_wait_then_promote_as_documented() {
    let docs = docs();
    let metrics = argo_metrics(&docs);
    let (gate_path, payload) = flagger_gate(&docs);
    let (base, mut u, addr, token) = paused_canary("fleet-promote", "");

    too_little_evidence_waits_and_holds_flagger(&u, addr, &docs);

    // Enough evidence: promote, shown but not acted on while paused.
    let v = traffic_until(&u, addr, &metrics[0], "promote");
    assert_eq!(v["version"], "1.1.0", "{v}");
    assert!(v["pairs"].as_u64().unwrap() >= 20, "{v}");
    assert!(v["score"].is_u64(), "{v}");
    same_shape(&v, &example(&docs, "reasons"));
    for m in &metrics {
        let body = argo_measure(addr, m);
        assert_eq!(phase(m, &body, "1.1.0"), Phase::Successful, "{m:?}: {body}");
        // A verdict about another build proves nothing for this rollout.
        let pinned = m.success.contains("{{args.version}}");
        let other = phase(m, &body, "9.9.9");
        assert_eq!(other == Phase::Inconclusive, pinned, "{m:?}: {body}");
    }
    let (code, gate) = flagger_call(addr, &gate_path, &payload);
    assert_eq!(code, 200, "promote lets Flagger promote: {gate}");
    // A script on the host gates on the CLI's exit code: 0 for promote.
    let (code, out, err) = cli(&base, &["verdict"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("promote"), "{out}");
    assert_eq!(gate["verdict"], "promote");
    assert_eq!(gate["message"], "understudy's verdict is promote");
    let (_, status) = api(addr, "GET", "/api/status", None, "");
    assert_eq!(status["paused"], true, "{status}");
    assert_eq!(base.version_of("running").as_deref(), Some("app-1.0.0"));
    assert_eq!(base.version_of("testing").as_deref(), Some("app-1.1.0"));

    // Unpaused, understudy promotes on its own, and the verdict is gone: why the docs pause it.
    let (code, body) = api(addr, "POST", "/api/resume", Some(&token), "");
    assert_eq!(code, 200, "{body}");
    wait_until("1.1.0 running", Duration::from_secs(20), || {
        (base.version_of("running").as_deref() == Some("app-1.1.0")).then_some(())
    });
    let v = wait_until("nothing under test", Duration::from_secs(10), || {
        let v = argo_measure(addr, &metrics[0]);
        v["version"].is_null().then_some(v)
    });
    assert_eq!(v["verdict"], "wait", "{v}");
    for m in &metrics {
        assert_eq!(
            phase(m, &argo_measure(addr, m), "1.1.0"),
            Phase::Inconclusive
        );
    }
    assert_eq!(flagger_call(addr, &gate_path, &payload).0, 403);
    u.stop();
}

#[test]
fn engines_see_a_regression_as_reject() {
    let docs = docs();
    let metrics = argo_metrics(&docs);
    let (gate_path, payload) = flagger_gate(&docs);
    // Every answer of 1.1.0 is a 500.
    let (base, mut u, addr, token) = paused_canary("fleet-reject", "--fail-path /");
    let v = traffic_until(&u, addr, &metrics[0], "reject");
    assert_eq!(v["version"], "1.1.0", "{v}");
    assert!(
        v["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("5xx rate")),
        "{v}"
    );
    same_shape(&v, &example(&docs, "reasons"));
    for m in &metrics {
        let body = argo_measure(addr, m);
        assert_eq!(phase(m, &body, "1.1.0"), Phase::Failed, "{m:?}: {body}");
    }
    let (code, gate) = flagger_call(addr, &gate_path, &payload);
    assert_eq!(code, 403, "reject holds Flagger's promotion: {gate}");
    // The CLI exits 4 for reject, with --json too.
    let (code, out, err) = cli(&base, &["verdict", "--json"]);
    assert_eq!(code, 4, "{out}{err}");
    assert!(out.contains("\"reject\""), "{out}");
    assert_eq!(gate["verdict"], "reject");
    let message = gate["message"].as_str().unwrap();
    assert!(
        message.starts_with("understudy's verdict is reject: ") && message.contains("5xx rate"),
        "{gate}"
    );
    // Paused: the build stays under test until the operator aborts it, as the docs say.
    assert_eq!(base.version_of("testing").as_deref(), Some("app-1.1.0"));
    let (code, body) = api(addr, "POST", "/api/abort", Some(&token), "");
    assert_eq!(code, 200, "{body}");
    let reason = base.path.join("rejected/app-1.1.0/reason.json");
    wait_until("1.1.0 rejected", Duration::from_secs(20), || {
        reason.is_file().then_some(())
    });
    assert_eq!(base.version_of("running").as_deref(), Some("app-1.0.0"));
    u.stop();
}

/// The reviewer's case: this host's `PRE_PROMOTE` refused the build (it stays testing, and is
/// not promoted until an operator says so), yet the gate answered 200 `promote` and a rollout
/// gated on it would ship the build. Both the gate and the verdict wait now, saying why.
#[test]
fn a_build_refused_by_pre_promote_is_not_passed_to_the_fleet() {
    let (base, mut u) = start_with_testing(
        "fleet-pre-promote",
        &format!("{FAST}\nPRE_PROMOTE=/bin/false"),
    );
    let (addr, _) = admin(&base);
    let mut i = 0;
    wait_until("the hook's refusal", Duration::from_secs(30), || {
        for _ in 0..5 {
            assert_eq!(u.get(["/", "/api/items"][i % 2]).0, 200);
            i += 1;
        }
        let (_, s) = api(addr, "GET", "/api/status", None, "");
        s["hook_failure"].is_string().then_some(())
    });
    let (code, gate) = api(
        addr,
        "POST",
        "/api/gate",
        None,
        r#"{"phase":"Progressing"}"#,
    );
    let message = gate["message"].as_str().unwrap_or_default();
    assert!(
        code == 403 && gate["verdict"] == "wait" && message.contains("PRE_PROMOTE"),
        "{code} {gate}"
    );
    let (_, v) = api(addr, "GET", "/api/verdict", None, "");
    assert_eq!(v["verdict"], "wait", "{v}");
    assert!(
        v["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains("understudy promote")),
        "{v}"
    );
    u.stop();
}
