//! The plain-text forms of the admin API's answers (`status`, `verdict`, `schedule`, `history`):
//! pure functions of the JSON, so they are tested without a running understudy.

use serde_json::{json, Value};

fn instance_line(part: &str, v: &Value) -> String {
    if v.is_null() {
        return format!("{part:<10}none\n");
    }
    let mut line = format!("{part:<10}{}", v["version"].as_str().unwrap_or("?"));
    if let Some(n) = v["instance"].as_u64() {
        line.push_str(&format!("  #{n}"));
    }
    if let Some(p) = v["port"].as_u64() {
        line.push_str(&format!("  port {p}"));
    }
    if let Some(p) = v["pid"].as_u64() {
        line.push_str(&format!("  pid {p}"));
    }
    match v["since"].as_str() {
        Some(since) => line.push_str(&format!("  ready since {since}")),
        None if v["ready"] == json!(true) => line.push_str("  ready"),
        None => line.push_str("  starting"),
    }
    line.push('\n');
    line
}

pub(super) fn verdict_text(v: &Value) -> String {
    let mut s = format!(
        "{} (score {})",
        v["verdict"].as_str().unwrap_or("?"),
        v["score"].as_u64().unwrap_or(0)
    );
    match v["evidence"]["text"].as_str().filter(|t| !t.is_empty()) {
        Some(evidence) => s.push_str(&format!(", {evidence}")),
        // No build, no pairs to speak of: the reason says so.
        None if v["version"].is_null() => {}
        None => {
            if let Some(pairs) = v["pairs"].as_u64() {
                s.push_str(&format!(", {pairs} pairs"));
            }
        }
    }
    let reasons: Vec<&str> = v["reasons"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !reasons.is_empty() {
        s.push_str(": ");
        s.push_str(&reasons.join("; "));
    }
    s
}

pub(super) fn schedule_text(v: &Value) -> String {
    let list = v["schedules"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "no scheduled promotions\n".to_string();
    }
    let mut out = String::new();
    for s in list {
        let what = s["version"].as_str().unwrap_or("the build under test");
        let mut line = format!(
            "#{}  {}  {what}  {}",
            s["id"],
            s["at"].as_str().unwrap_or("?"),
            s["state"].as_str().unwrap_or("?")
        );
        if let Some(r) = s["reason"].as_str() {
            line.push_str(&format!(": {r}"));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

pub(super) fn history_text(v: &Value) -> String {
    let mut out = String::new();
    let text = |x: &Value| x.as_str().unwrap_or("?").to_string();
    for s in v["switches"].as_array().into_iter().flatten() {
        let (at, to, share) = (text(&s["at"]), text(&s["to"]), &s["share"]);
        let line = match share["percent"].as_f64() {
            None => format!(
                "{at}  {} -> {to}  ({})",
                s["from"].as_str().unwrap_or("nothing"),
                text(&s["why"])
            ),
            Some(p) if p > 0.0 => format!(
                "{at}  {} serves {p} % of users, {to} the rest  (canary step)",
                text(&share["version"])
            ),
            Some(_) => format!(
                "{at}  {to} serves every user again  (canary of {} ended)",
                text(&share["version"])
            ),
        };
        out.push_str(&line);
        out.push('\n');
    }
    let canary = &v["canary"];
    out.push_str(&format!(
        "at {}: {} served users{}\n",
        text(&v["at"]),
        v["serving"].as_str().unwrap_or("nothing"),
        canary["percent"]
            .as_f64()
            .map_or(String::new(), |p| format!(
                ", and {} {p} % of them (a canary step)",
                text(&canary["version"])
            ))
    ));
    out
}

/// The status as a few aligned lines for a terminal.
/// "25 % (step 2 of 3), 40 s of 120 s, 312 answers".
fn canary_text(c: &Value) -> String {
    let elapsed = c["since"]
        .as_str()
        .and_then(|s| crate::instant::parse(s).ok())
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .map_or(String::new(), |d| format!("{} s of ", d.as_secs()));
    format!(
        "{} % (step {} of {}), {elapsed}{:.0} s, {} answers{}{}",
        c["weight"].as_f64().unwrap_or(0.0),
        c["step"],
        c["steps"],
        c["window_secs"].as_f64().unwrap_or(0.0),
        c["answers"],
        if c["held"] == true {
            "; holds: too little evidence (promote or abort)"
        } else {
            ""
        },
        c["waiting"]
            .as_str()
            .map_or(String::new(), |w| format!("; waiting: {w}"))
    )
}

pub(super) fn status_text(v: &Value) -> String {
    let mut out = instance_line("running", &v["running"]);
    if let Some(r) = v["restarting"].as_str() {
        let due = &v["restart_due"];
        let when = match (due["failures"].as_u64(), due["at"].as_str()) {
            (Some(n), Some(at)) => format!(" ({n} failures in a row; starts again at {at})"),
            _ => String::new(),
        };
        out.push_str(&format!("{:<10}{r} is restarting{when}\n", ""));
    }
    let held = &v["restart_held"];
    if let Some(r) = held["version"].as_str() {
        out.push_str(&format!(
            "{:<10}{r} is starting: users' requests wait for it, each up to {} s, then 503\n",
            "held",
            held["held_up_to_secs"].as_f64().unwrap_or(0.0)
        ));
    }
    out.push_str(&guard_text(v));
    out.push_str(&instance_line("testing", &v["testing"]));
    if !v["promoting"].is_null() {
        out.push_str(&instance_line("promoting", &v["promoting"]));
    }
    if !v["secondary"].is_null() {
        out.push_str(&instance_line("secondary", &v["secondary"]));
    }
    for key in ["installing", "pending"] {
        if let Some(x) = v[key].as_str() {
            // "installing" fills the label column: one space at least, as every other line.
            let waiting = v[format!("{key}_waiting")]
                .as_str()
                .map_or(String::new(), |w| format!(" (waiting: {w})"));
            out.push_str(&format!("{key:<9} {x}{waiting}\n"));
        }
    }
    if let Some(pid) = v["understudy"]["pid"].as_u64() {
        out.push_str(&format!(
            "{:<10}{} (pid {pid}, since {})\n",
            "itself",
            v["understudy"]["version"].as_str().unwrap_or("?"),
            v["understudy"]["started"].as_str().unwrap_or("?")
        ));
    }
    if !v["canary"].is_null() {
        out.push_str(&format!("{:<10}{}\n", "canary", canary_text(&v["canary"])));
    }
    if !v["verdict"].is_null() {
        out.push_str(&format!(
            "{:<10}{}\n",
            "verdict",
            verdict_text(&v["verdict"])
        ));
        out.push_str(&differs_text(&v["verdict"]));
    }
    if let (Some(version), Some(at)) = (
        v["last_rejected"]["version"].as_str(),
        v["last_rejected"]["at"].as_str(),
    ) {
        let reasons: Vec<&str> = (v["last_rejected"]["reasons"].as_array())
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        // A reason may quote an app's last lines: one line here.
        let why = reasons.join("; ").replace('\n', " ");
        out.push_str(&format!("{:<10}{version} at {at}: {why}\n", "rejected"));
    }
    for failed in v["filing_failed"].as_array().into_iter().flatten() {
        let failed = failed.as_str().unwrap_or_default().replace('\n', " ");
        out.push_str(&format!("{:<10}{failed}\n", "filing"));
    }
    out.push_str(&steering_text(v));
    out.push_str(&traffic_text(&v["counters"]));
    out
}

/// What the proxy did: requests forwarded and mirrored, and, when there were any, those
/// understudy answered itself because nothing could (503 with nothing serving, 502, 504): a
/// first build still starting showed `0 requests` while users were told 503.
fn traffic_text(c: &Value) -> String {
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    let mut line = format!(
        "{:<10}{} requests, {} mirrored, {} copies dropped",
        "traffic",
        n("requests"),
        n("mirrored"),
        n("dropped_copies")
    );
    let own: Vec<String> = [
        ("unavailable", "503"),
        ("bad_gateway", "502"),
        ("gateway_timeout", "504"),
    ]
    .iter()
    .filter(|(k, _)| n(k) > 0)
    .map(|(k, code)| format!("{} with {code}", n(k)))
    .collect();
    if !own.is_empty() {
        line.push_str(&format!("; understudy answered {}", own.join(", ")));
    }
    line.push('\n');
    line
}

/// The guard, right under `running` (which its rollback may leave empty): the rollback it is
/// carrying out, why, and the users' requests held for it; or why it could not; or its watch.
fn guard_text(v: &Value) -> String {
    let mut out = String::new();
    let r = &v["guard_rollback"];
    if !r.is_null() {
        let text = |x: &Value| x.as_str().unwrap_or("?").to_string();
        let (back, from) = (text(&r["version"]), text(&r["from"]));
        let step = match r["step"].as_str() {
            Some("starting") => "starting",
            _ => "being restored",
        };
        // A crash's reason quotes the app's last lines: one line here.
        let reason = text(&r["reason"]).replace('\n', " ");
        out.push_str(&format!(
            "{:<10}rolling back from {from} to {back} ({back} is {step}): {reason}\n",
            "guard"
        ));
        if r["requests_held"] == json!(true) {
            let down = r["down_since"].as_str().map_or(String::new(), |t| {
                format!("; {from} crashed at {t} and is not restarted")
            });
            out.push_str(&format!(
                "{:<10}users' requests wait for {back}, each up to {} s (UPSTREAM_TIMEOUT), then 503{down}\n",
                "held",
                r["held_up_to_secs"].as_f64().unwrap_or(0.0)
            ));
        }
    }
    for key in ["guard_failed", "guarded"] {
        if let Some(g) = v[key].as_str() {
            out.push_str(&format!("{:<10}{}\n", "guard", g.replace('\n', " ")));
        }
    }
    out
}

/// What steers the switches, one line each and only when there is something to say: the
/// transaction under way, the `PRE_PROMOTE` refusal that keeps a build testing (else an operator
/// who asked to promote sees nothing), pending schedules, pause, a full disk.
fn steering_text(v: &Value) -> String {
    let mut out = String::new();
    let t = &v["transaction"];
    if !t.is_null() {
        let from = t["from"]
            .as_str()
            .map_or(String::new(), |f| format!(" from {f}"));
        out.push_str(&format!(
            "{:<10}{} to {}{from} under way: {} ({})\n",
            "switch",
            t["kind"].as_str().unwrap_or("?"),
            t["version"].as_str().unwrap_or("?"),
            t["step"].as_str().unwrap_or("?").replace('_', " "),
            t["why"].as_str().unwrap_or("?")
        ));
    }
    if let Some(why) = v["hook_failure"].as_str() {
        out.push_str(&format!(
            "{:<10}{why}; it stays testing: promote again once fixed, or abort\n",
            "refused"
        ));
    }
    for sch in v["schedules"].as_array().into_iter().flatten() {
        if sch["state"] == "pending" {
            out.push_str(&format!(
                "{:<10}#{} promotes {} at {}\n",
                "scheduled",
                sch["id"],
                sch["version"].as_str().unwrap_or("the build under test"),
                sch["at"].as_str().unwrap_or("?")
            ));
        } else if sch["state"] == "promoting" {
            out.push_str(&format!(
                "{:<10}#{} (due {}) started the promotion of {} at {}; it fires once users are switched\n",
                "scheduled",
                sch["id"],
                sch["at"].as_str().unwrap_or("?"),
                sch["promoting"].as_str().unwrap_or("?"),
                sch["started_at"].as_str().unwrap_or("?")
            ));
        }
    }
    if v["paused"] == json!(true) {
        out.push_str(&format!(
            "{:<10}yes: no automatic promotion or rejection (understudy resume)\n",
            "paused"
        ));
    }
    if let Some(why) = v["disk_full"].as_str() {
        out.push_str(&format!(
            "{:<10}{why}; still serving, retrying every heartbeat\n",
            "disk full"
        ));
    }
    out
}

/// One line per answer difference that counts (or is not yet told from noise), for `status`.
pub(super) fn differs_text(verdict: &Value) -> String {
    let mut out = String::new();
    for d in verdict["diffs"].as_array().into_iter().flatten() {
        let judged = d["judgement"].as_str().unwrap_or("?");
        if judged != "counts" && judged != "unsure" {
            continue;
        }
        out.push_str(&format!(
            "{:<10}{} {} {}: {:.1}% of {} ({}); running {} vs testing {}\n",
            "differs",
            d["endpoint"].as_str().unwrap_or("?"),
            d["path"].as_str().unwrap_or("?"),
            d["kind"].as_str().unwrap_or("?"),
            d["rate"].as_f64().unwrap_or(0.0) * 100.0,
            d["of"],
            judged,
            d["running"].as_str().unwrap_or(""),
            d["testing"].as_str().unwrap_or("")
        ));
    }
    out
}
