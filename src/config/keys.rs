//! Every config key, its default and its meaning, listed once in [`KEYS`]; `.env.example` is
//! generated from the same table by [`example`], so the two cannot drift.

use super::dotenv::dotenv_quote;

/// A config key, its default and a one-line description, as shown in `.env.example`.
pub struct KeyDoc {
    /// Upper-case key as written in `.env`.
    pub key: &'static str,
    /// Default value, as text; empty means "unset".
    pub default: &'static str,
    /// What the key controls.
    pub doc: &'static str,
}

/// Every config key understudy reads, in the order `.env.example` lists them.
pub const KEYS: &[KeyDoc] = &[
    KeyDoc { key: "IDENTIFIER", default: "", doc: "Name prefix of your builds: myapp for myapp-1.2.3.jar (required)." },
    KeyDoc { key: "LISTEN", default: "127.0.0.1:8080", doc: "Address the proxy listens on for users; a bare port means 0.0.0.0:<port>." },
    KeyDoc { key: "PORT_RANGE", default: "20000-20099", doc: "Ports handed to child instances; ports already bound are skipped." },
    KeyDoc { key: "SCHEME", default: "http", doc: "Scheme used to reach the children; only http is supported." },
    KeyDoc { key: "UPSTREAM_HOST", default: "127.0.0.1", doc: "Host the children listen on, as the proxy reaches them." },
    KeyDoc { key: "PROPERTIES_FILE_NAME", default: "", doc: "Properties file (a name in the base dir, or an absolute path) copied into each instance folder with the port key rewritten; the original is never changed. One that cannot be read is refused at start (exit 64) and at a reload." },
    KeyDoc { key: "PORT_KEY", default: "server.port", doc: "Key holding the port in the properties file (or -D<key>=<port> for a jar without one)." },
    KeyDoc { key: "JAR_COMMAND", default: "java -jar {artifact}", doc: "How a .jar is started, split into words as a shell would (quote a word with spaces); {artifact}, {port} and {dir} are replaced. A command you set whose program (its first word, looked up on PATH) is not there or cannot be run is refused at start (exit 64) and at a reload." },
    KeyDoc { key: "EXEC_COMMAND", default: "{artifact}", doc: "How an executable build is started, split into words as a shell would; {artifact}, {port} and {dir} are replaced. A command you set whose program (its first word unless a placeholder, looked up on PATH) is not there or cannot be run is refused at start (exit 64) and at a reload." },
    KeyDoc { key: "READY_PATH", default: "", doc: "Path that must answer 2xx before an instance is ready; empty means the port accepting connections is enough." },
    KeyDoc { key: "HEALTH_PATH", default: "", doc: "Path each ready child must answer 2xx on every HEARTBEAT_EVERY; empty means its port accepting connections is enough." },
    KeyDoc { key: "HEARTBEAT_EVERY", default: "2s", doc: "How often each ready child is probed (HEALTH_PATH, or its port); also how often .understudy/status.json is rewritten. A reload (SIGHUP) paces status.json and the systemd watchdog's limit at once; children started from then on are probed at the new pace." },
    KeyDoc { key: "HEARTBEAT_MISSES", default: "3", doc: "Heartbeats missed in a row after which running is restarted and testing rejected (\"stopped answering\")." },
    KeyDoc { key: "READY_TIMEOUT", default: "60s", doc: "How long an instance may take to become ready before it is rejected." },
    KeyDoc { key: "SHUTDOWN_GRACE", default: "10s", doc: "Time between SIGTERM and SIGKILL when stopping an instance; also bounds draining." },
    KeyDoc { key: "SETTLE_TIME", default: "500ms", doc: "How long a dropped build must stay unchanged (and closed) before it is picked up." },
    KeyDoc { key: "BODY_TIMEOUT", default: "60s", doc: "How long a user may send nothing while sending a request body (nginx's client_body_timeout); a body read ahead costs understudy a connection, not running's, so a pause on a mobile network need not fail the upload; longer silences close the connection." },
    KeyDoc { key: "HEADER_TIMEOUT", default: "10s", doc: "How long a user may take to send a whole request head, and how long a keep-alive connection may sit idle; slower (slowloris) or idler connections are closed." },
    KeyDoc { key: "MAX_HEADER_BYTES", default: "64KiB", doc: "Largest request head (request line and headers) a user may send; larger ones are answered 431 (414 when the request line alone is)." },
    KeyDoc { key: "MAX_HEADERS", default: "100", doc: "Most header fields in one request (1 to 100); more are answered 431." },
    KeyDoc { key: "MAX_REQUEST_BODY", default: "100MiB", doc: "Largest request body a user may send: a larger declared one is answered 413 before anything is forwarded, a chunked one (counted as sent: sizes, extensions and trailers too) is cut off and answered 413." },
    KeyDoc { key: "MAX_CONNECTIONS", default: "10000", doc: "Most user connections open at once; past it understudy stops accepting (new users wait in the listen backlog) and closes idle keep-alive connections to make room." },
    KeyDoc { key: "UPSTREAM_TIMEOUT", default: "60s", doc: "How long running may send nothing while understudy waits for its answer head or the next part of its body; the user then gets 504 (or, mid-body, a closed connection)." },
    KeyDoc { key: "SEND_TIMEOUT", default: "60s", doc: "How long a user may take no byte of an answer before the connection is closed (as nginx's send_timeout); the same bound for admin API connections, such as an event stream nobody reads." },
    KeyDoc { key: "REQUEST_BUFFER", default: "1MiB", doc: "How much of one request body understudy reads from the user before running is asked (it answers Expect: 100-continue itself), so a slow upload never holds running's connection: in memory within ANSWER_MEMORY, past it on disk within ANSWER_SPILL; a larger body streams on at the user's pace; 0: every body streams at the user's pace, and Expect: 100-continue goes on to running (for apps that read a body as it streams in)." },
    KeyDoc { key: "ANSWER_BUFFER", default: "1MiB", doc: "How much of one answer understudy reads from running ahead of a slow user, so running's connection is freed at running's pace." },
    KeyDoc { key: "ANSWER_MEMORY", default: "64MiB", doc: "How much all answers read ahead, and request bodies read before running is asked, may hold in memory together; past it both spill to unnamed temporary files under .understudy/ (within ANSWER_SPILL)." },
    KeyDoc { key: "ANSWER_SPILL", default: "1GiB", doc: "How much all answers read ahead may hold on disk together (never below MIN_FREE_DISK free); past it and ANSWER_MEMORY, answers stream at the user's pace. Request bodies read ahead (REQUEST_BUFFER) share it." },
    KeyDoc { key: "MIRROR_METHODS", default: "GET,HEAD,OPTIONS", doc: "Methods copied to the testing instance; others go to running only." },
    KeyDoc { key: "MIRROR_MAX_BODY", default: "64KiB", doc: "Largest request body copied to testing; larger requests are not mirrored. Queued copies hold at most MIRROR_QUEUE × (this + MAX_HEADER_BYTES), and as many more while testing and the secondary answer (MIRROR_CONCURRENCY each)." },
    KeyDoc { key: "MIRROR_QUEUE", default: "1024", doc: "Mirrored copies waiting for testing; when full, copies are dropped and counted." },
    KeyDoc { key: "MIRROR_CONCURRENCY", default: "64", doc: "Mirrored requests in flight to testing at once." },
    KeyDoc { key: "MIRROR_TIMEOUT", default: "10s", doc: "How long testing may take to answer a mirrored copy before it counts as failed." },
    KeyDoc { key: "WORKER_THREADS", default: "auto", doc: "Proxy threads, each with its own event loop (as nginx's workers); auto means one per core." },
    KeyDoc { key: "CPU_AFFINITY", default: "auto", doc: "auto: each proxy thread stays on one CPU, a different one per thread, when the threads are one per CPU of the process's affinity mask and no CPU quota is below that (nginx's worker_cpu_affinity, which is off unless set there); off: the scheduler moves them." },
    KeyDoc { key: "LOG_DIR", default: "", doc: "Directory for understudy's own log (understudy.log); empty logs to stderr." },
    KeyDoc { key: "LOG_LEVEL", default: "info", doc: "understudy's own log level: error, warn, info, debug or trace." },
    KeyDoc { key: "LOG_FORMAT", default: "text", doc: "understudy's own log: text lines, or json (one object per line with the event's fields, for log shippers)." },
    KeyDoc { key: "STABLE_WINDOW", default: "10m", doc: "How long testing must be scored without a regression before it is promoted." },
    KeyDoc { key: "MIN_MIRRORED", default: "100", doc: "Mirrored pairs needed before any verdict; below it understudy waits and says so." },
    KeyDoc { key: "MAX_5XX_DELTA", default: "0.01", doc: "Largest allowed excess of testing's 5xx rate over that of running's version (the secondary's answers to the same copies; running's where no secondary answered), overall and per endpoint (0.01 = 1 point)." },
    KeyDoc { key: "MAX_CLIENT_ERROR_DELTA", default: "0.05", doc: "Largest allowed share of requests that running's version (the secondary, else running) answers 2xx and testing answers 4xx." },
    KeyDoc { key: "MAX_LOG_ERROR_DELTA", default: "0.05", doc: "Largest allowed excess of testing's error log lines per mirrored request over the secondary's (running's without one)." },
    KeyDoc { key: "MAX_LOG_WARN_DELTA", default: "0.5", doc: "Largest allowed excess of testing's warn log lines per mirrored request over the secondary's (running's without one)." },
    KeyDoc { key: "MAX_ENDPOINTS", default: "256", doc: "Endpoints scored one by one (and the same number of differing paths per endpoint); pairs of any further endpoint (and their differences in answers) are counted and judged together as \"(other endpoints)\", so endless distinct paths cannot grow memory." },
    KeyDoc { key: "MIN_ENDPOINT_PAIRS", default: "5", doc: "Pairs an endpoint needs before its own rates are judged, and before it is judged gone on testing (until then a vanished-looking endpoint makes the verdict wait, and so does one with a changed status or more 5xx on testing, or too few copies to judge its latency alone that look slower on testing, while replay can bring its pairs; REPLAY=auto replays its recorded requests); the answers of endpoints with fewer compared pairs are judged together, per field path." },
    KeyDoc { key: "MAX_P95_RATIO", default: "2", doc: "Reject when testing's p95 latency exceeds the secondary's (running's version, same copies, same path) by this factor, the shift is significant at CONFIDENCE over moments of 250 ms (a stall is one observation, not a regression); empty reports only. Without a secondary (NOISE_CANCEL=off) latency is reported, never judged." },
    KeyDoc { key: "CANARY_STEPS", default: "", doc: "Shares of users served by testing, writes included, after the shadow verdict says promote, e.g. 5%,25%,50% (percentages: a share under 1 needs its %, so 0.05 is refused rather than read as 0.05 %): each step is judged on real answers for CANARY_STEP_WINDOW, then the next; after the last, the promotion. Empty: the full switch at once." },
    KeyDoc { key: "CANARY_STEP_WINDOW", default: "2m", doc: "How long each canary step is judged before the next; with too little evidence it waits up to 3 windows, then holds and says so." },
    KeyDoc { key: "CANARY_STICKY", default: "ip", doc: "What places a user in a canary step: ip, header:NAME or cookie:NAME. A user keeps its side within a step and stays on testing as the share grows; a request without the header or cookie goes to running. Behind a front proxy or TLS terminator every request has its address, so ip puts all users on one side: use header:X-Real-IP (or a cookie) there." },
    KeyDoc { key: "MAX_BODY_DIFF", default: "auto", doc: "Reject when a difference (one path of one endpoint, not noise) is in more than this share of same-status answers; auto means 0.05 where the secondary measured the noise and report only where it did not (NOISE_CANCEL off, or the secondary given up after three failures); a number applies everywhere; empty reports only." },
    KeyDoc { key: "DIFF_MAX_BODY", default: "256KiB", doc: "Largest answer body compared field by field (JSON) or line by line (text); larger bodies compare by length and hash only, and are not counted among the answers compared that a promotion needs; 0: answers are judged by status and headers alone, and no body is waited for." },
    KeyDoc { key: "DIFF_SAMPLE", default: "1", doc: "Share of mirrored requests whose answers are compared (0 to 1), to bound the cost of diffing." },
    KeyDoc { key: "DIFF_IGNORE", default: "", doc: "Comma-separated JSON paths that are known noise ($.meta.request_id, $.items[*].updated_at); everything under them is ignored. In `.env`, single-quote the value: unquoted, `$` starts a variable." },
    KeyDoc { key: "DIFF_UNORDERED", default: "", doc: "Comma-separated JSON array paths whose order does not matter ($.tags), single-quoted in `.env` as DIFF_IGNORE's." },
    KeyDoc { key: "DIFF_IGNORE_HEADERS", default: "Date,Server,Set-Cookie,Content-Length,ETag,Age,Last-Modified,Expires", doc: "Response headers not compared (hop-by-hop ones never are); for Set-Cookie only the values are ignored, cookie names still compare." },
    KeyDoc { key: "NOISE_CANCEL", default: "on", doc: "on runs a second instance of running's version while a build is tested and mirrors to both: differences that running has with itself are noise and do not count; off saves that instance (differences are then 'noise unknown')." },
    KeyDoc { key: "DIFF_RELATIVE", default: "0.2", doc: "A difference counts only when its rate is more than this share above its noise rate (0.2 = 20 %)." },
    KeyDoc { key: "DIFF_ABSOLUTE", default: "0.03", doc: "...and more than this many points above it (0.03 = 3 points of the endpoint's pairs)." },
    KeyDoc { key: "CONFIDENCE", default: "0.99", doc: "Confidence a rate comparison (5xx, 2xx→4xx, differences) or latency shift (Wilcoxon signed-rank against the secondary) needs before it rejects or clears; below it the verdict waits." },
    KeyDoc { key: "MAX_RSS_RATIO", default: "", doc: "Reject when testing's memory (RSS) exceeds running's by this factor (e.g. 2.0); empty reports only (the resources score still falls with the ratio: 75 at 2×, 0 at 5×)." },
    KeyDoc { key: "MAX_CPU_RATIO", default: "", doc: "Reject when testing's CPU time per request exceeds running's by this factor (e.g. 2.0); empty reports only (the resources score still falls with the ratio: 75 at 2×, 0 at 5×)." },
    KeyDoc { key: "PLAIN_LOG_ERROR_REGEX", default: "(?i)\\b(error|fatal|panic|exception)\\b", doc: "Regex marking a non-JSON log line as an error." },
    KeyDoc { key: "PLAIN_LOG_WARN_REGEX", default: "(?i)\\bwarn(ing)?\\b", doc: "Regex marking a non-JSON log line as a warning." },
    KeyDoc { key: "EVALUATE_EVERY", default: "5s", doc: "How often the scorer evaluates testing and logs the score." },
    KeyDoc { key: "REPLAY", default: "auto", doc: "auto replays recent user requests (GET/HEAD without a body, kept in memory only, never on disk) to testing and the secondary, never running, when live pairs come too slowly to reach MIN_MIRRORED within STABLE_WINDOW or the verdict waits on an endpoint's pairs (MIN_ENDPOINT_PAIRS), that endpoint's requests first; testing is then judged against the secondary; off disables it and keeps nothing." },
    KeyDoc { key: "REPLAY_KEEP", default: "1000", doc: "Recent distinct requests (method, path and query) kept for replay, in at most 4 MiB (the oldest forgotten past it; a request whose path and headers count over 16 KiB, see Low traffic, replayed, is not kept); at most one is recorded every 50 ms, besides the next request of an endpoint the verdict waits on with nothing to replay. A reload (SIGHUP) applies a new value within a second; a smaller one keeps the most recent." },
    KeyDoc { key: "REPLAY_RATE", default: "20", doc: "Replayed requests sent per second at most while replay is wanted; replays use only the mirror's spare capacity (none while a user's copy waits in the mirror queue, at most a quarter of MIRROR_CONCURRENCY in flight)." },
    KeyDoc { key: "REPLAY_REPEAT", default: "3", doc: "Times one request (method, path and query) may be replayed to one testing instance, even when forgotten and recorded again, so a single URL cannot make the evidence; a request of an endpoint the verdict waits on, up to four times the copies its latency needs to be judged alone (4 × (MIN_ENDPOINT_PAIRS, at least 30, + 20): 200 by default) if that is more." },
    KeyDoc { key: "MAX_BASE_SIZE", default: "10GiB", doc: "Base dir size budget; past it old rejected builds, then the oldest archives, are deleted, only as far as that brings the base dir back under (otherwise they are kept and over_budget says what takes the room). An instance's stdout or stderr past 1/32 of it (1 MiB to 1 GiB) is rotated." },
    KeyDoc { key: "MIN_FREE_DISK", default: "1GiB", doc: "Free disk to keep; below it old rejected builds, then the oldest archives, are deleted, only as far as that brings it back (otherwise they are kept and over_budget says so). A new build waits, installed and untested, until its protected copy fits above it." },
    KeyDoc { key: "MAX_UNPACKED_SIZE", default: "2GiB", doc: "Largest total size a .zip bundle may unpack to, every file, folder and link counting 4 KiB besides its bytes; a bigger one is rejected. A rollback unpacking an archive holds the build to it, not its instances' logs, which only MIN_FREE_DISK bounds." },
    KeyDoc { key: "PROMOTE_AT", default: "", doc: "RFC 3339 instant (2026-12-01T03:00:00Z) at which the build then under test is promoted, once; at most 366 days ahead; empty means none." },
    KeyDoc { key: "MISSED_SCHEDULE_GRACE", default: "1h", doc: "How late a scheduled promotion may still fire (after understudy was down); later it is recorded as missed." },
    KeyDoc { key: "PRE_START", default: "", doc: "Hook run before a new build starts (as testing, or as the first build); failing or timing out rejects the build." },
    KeyDoc { key: "PRE_PROMOTE", default: "", doc: "Hook run before a promotion starts; failing leaves running untouched and the build testing." },
    KeyDoc { key: "POST_PROMOTE", default: "", doc: "Hook run after a promotion's switch, once the old version has drained, and before that version is archived; a failure is reported. Run again at start if understudy stopped while it ran." },
    KeyDoc { key: "POST_ROLLBACK", default: "", doc: "Hook run after a rollback's switch, once the old version has drained, and before that version is archived; a failure is reported. Run again at start if understudy stopped while it ran." },
    KeyDoc { key: "HOOK_LOG_MAX", default: "1MiB", doc: "Largest hooks.log (in the folder a hook ran for, its UNDERSTUDY_DIR); past it the older half is dropped with a marker line, so a chatty hook cannot fill the disk." },
    KeyDoc { key: "HOOK_TIMEOUT", default: "60s", doc: "How long a hook may run before it is killed and counts as failed." },
    KeyDoc { key: "ROLLBACK_WINDOW", default: "5m", doc: "After a promotion, how long the new running is watched (5xx rate against the one before the switch, crashes) and rolled back automatically when worse; 0 turns the guard off." },
    KeyDoc { key: "WEBHOOK_URLS", default: "", doc: "Comma-separated http:// or https:// URLs each event is POSTed to, in order, retried with backoff; a slow one loses events (counted), never delays understudy." },
    KeyDoc { key: "WEBHOOK_FORMAT", default: "json", doc: "What each webhook POST carries: json (the event, for programs) or slack ({\"text\": ...}, one readable line per event, for Slack, Mattermost or Discord's /slack endpoint)." },
    KeyDoc { key: "WEBHOOK_CA_FILE", default: "", doc: "PEM file of CA certificates (in the base dir, or an absolute path) an https webhook may be signed by, besides the system's trusted roots; empty means the system's alone." },
    KeyDoc { key: "ADMIN_LISTEN", default: "127.0.0.1:8081", doc: "Address of the admin API (status, promote, abort, ...); a bare port means loopback, off disables it. LISTEN's port on the same (or a wildcard) address is refused at start (exit 64). The unix socket .understudy/admin.sock is always served." },
    KeyDoc { key: "MAX_ADMIN_CONNECTIONS", default: "256", doc: "Most admin API connections open at once (SSE streams included); past it new ones wait in the backlog, so the admin side can never use up the descriptors the proxy and the children need. Event streams (`GET /api/events`: dashboards and other SSE clients) take at most half of them (rounded down; none with 1): a stream past that gets 503 at once, so status, verdict, gate, metrics and steering always find a connection. A stream whose client takes nothing for `SEND_TIMEOUT` is dropped." },
    KeyDoc { key: "ADMIN_HOSTS", default: "", doc: "Comma-separated extra names the admin API answers to in Host (the listen address and localhost always work); any other Host gets 421, so a web page cannot read the API through DNS rebinding." },
    KeyDoc { key: "ADMIN_TOKEN", default: "", doc: "Bearer token for mutating admin calls over TCP; empty means a random one kept in .understudy/admin.token (mode 0600)." },
];

/// Vili's lower-case `.env` keys and the keys they mean here, so a Vili `.env` works unchanged.
const VILI_ALIASES: &[(&str, &str)] = &[
    ("port", "LISTEN"),
    ("scheme", "SCHEME"),
    ("endpoint", "UPSTREAM_HOST"),
    ("port_range", "PORT_RANGE"),
    ("identifier", "IDENTIFIER"),
    ("log_dir", "LOG_DIR"),
    ("properties_file_name", "PROPERTIES_FILE_NAME"),
    ("port_identifier", "PORT_KEY"),
];

/// Map a key as written (upper case, or a Vili lower-case key) to the canonical key.
pub(super) fn canonical_key(key: &str) -> Option<&'static str> {
    if let Some((_, k)) = VILI_ALIASES.iter().find(|(alias, _)| *alias == key) {
        return Some(k);
    }
    let upper = key.to_ascii_uppercase();
    let upper = upper.strip_prefix("UNDERSTUDY_").unwrap_or(&upper);
    KEYS.iter().find(|k| k.key == upper).map(|k| k.key)
}

/// Names in understudy's own `UNDERSTUDY_` namespace that are not config keys: what it sets for
/// its children and hooks, its own plumbing (self-upgrade, the watchdog, fault injection), and
/// the knobs of its test suite and benchmarks, which run it with them set.
const NOT_KEYS: &[&str] = &[
    "VERSION",
    "PREVIOUS",
    "DIR",
    "PORT",
    "ROLE",
    "HOOK",
    "HANDOVER",
    "WATCHDOG_EXE",
    "REQUIRE_BROWSER",
    "SCREENSHOT",
    "SOAK_SECS",
];

/// The `UNDERSTUDY_*` environment variables among `names` that set no key, each with a known key
/// it was most likely meant as: a misspelt `UNDERSTUDY_STABLE_WINDOWS` is otherwise ignored
/// without a word, and the default runs.
pub fn unknown_env_keys<'a>(
    names: impl Iterator<Item = &'a str>,
) -> Vec<(&'a str, Option<&'static str>)> {
    names
        .filter_map(|name| {
            let rest = name.strip_prefix("UNDERSTUDY_")?;
            let ours = NOT_KEYS.contains(&rest) || rest.starts_with("INJECT_");
            (!ours && canonical_key(name).is_none()).then(|| (name, closest_key(rest)))
        })
        .collect()
}

/// The warnings for `.env` keys understudy does not know, each naming the key likely meant: one
/// wording at start and at each reload (SIGHUP), so a misspelling added later is not missed.
pub fn unknown_key_warnings(env_file: &std::path::Path, keys: &[String]) -> Vec<String> {
    keys.iter()
        .map(|k| {
            format!(
                "ignoring unknown key {k:?} in {}{}",
                env_file.display(),
                meant(closest_key(k))
            )
        })
        .collect()
}

/// The warnings for the `UNDERSTUDY_*` environment variables among `names` that set no key.
pub fn unknown_env_warnings<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    unknown_env_keys(names)
        .into_iter()
        .map(|(name, key)| {
            format!(
                "ignoring the environment variable {name}: no key of understudy's is named so{}",
                meant(key)
            )
        })
        .collect()
}

/// ` (did you mean KEY?)`, or nothing when no key is near.
fn meant(key: Option<&str>) -> String {
    key.map(|k| format!(" (did you mean {k}?)"))
        .unwrap_or_default()
}

/// The key `name` is most likely a misspelling of: at most two edits away, the nearest first.
pub fn closest_key(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    KEYS.iter()
        .map(|k| (edits(&upper, k.key), k.key))
        .filter(|&(d, _)| d <= 2)
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance of two short ASCII names (a key name; longer input is cut at 64 bytes).
fn edits(a: &str, b: &str) -> usize {
    let (a, b) = (
        &a.as_bytes()[..a.len().min(64)],
        &b.as_bytes()[..b.len().min(64)],
    );
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The default of `key` in [`KEYS`].
pub(super) fn default_of(key: &str) -> &'static str {
    KEYS.iter()
        .find(|k| k.key == key)
        .map(|k| k.default)
        .unwrap_or("")
}

/// Text of `.env.example`: every key with its default and meaning, quoted so that it reads
/// back (by dotenv rules) as exactly the default.
pub(super) fn example() -> String {
    let mut out = String::from(
        "# understudy configuration: copy to <base dir>/.env and edit.\n\
         # Environment variables UNDERSTUDY_<KEY> override this file; CLI flags override both.\n\
         # Durations: 500ms, 30s, 10m, 1h. Sizes: 512KiB, 10MiB, 1GiB (or plain bytes).\n\
         # dotenv rules: `KEY=value # comment`; put values with spaces, #, $ or \\ in single quotes.\n\
         # Vili's keys (port, scheme, endpoint, port_range, identifier, log_dir,\n\
         # properties_file_name, port_identifier) are accepted too.\n\n",
    );
    for k in KEYS {
        out.push_str(&format!("# {}\n", k.doc));
        let value = if k.key == "IDENTIFIER" {
            "myapp"
        } else {
            k.default
        };
        out.push_str(&format!("{}={}\n\n", k.key, dotenv_quote(value)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::load_with;
    use crate::config::Config;

    #[test]
    fn vili_env_is_accepted() {
        let cfg = load_with(
            "port=8090\nscheme=http\nendpoint=localhost\nport_range=9000-9010\nidentifier=app\nlog_dir=\nproperties_file_name=local_override.properties\nport_identifier=server.port\n",
            &[],
            &[("local_override.properties", "server.port=1\n")],
        )
        .unwrap();
        assert_eq!(cfg.listen.port(), 8090);
        assert_eq!(cfg.port_range, (9000, 9010));
        assert_eq!(cfg.identifier, "app");
        assert_eq!(
            cfg.properties_file.as_deref(),
            Some("local_override.properties")
        );
        // What the user wrote is kept; the children are reached by that name.
        assert_eq!(cfg.upstream_host, "localhost");
    }

    #[test]
    fn misspelt_keys_are_found_with_what_they_meant() {
        assert_eq!(closest_key("STABLE_WINDOWS"), Some("STABLE_WINDOW"));
        assert_eq!(closest_key("stable_window"), Some("STABLE_WINDOW"));
        assert_eq!(closest_key("LISTN"), Some("LISTEN"));
        assert_eq!(closest_key("SOME_OTHER_TOOL"), None);
        assert_eq!(closest_key(&"X".repeat(10_000)), None);
        let env = [
            "UNDERSTUDY_STABLE_WINDOWS",
            "UNDERSTUDY_LISTEN",
            "UNDERSTUDY_VERSION",
            "UNDERSTUDY_INJECT_CRASH",
            "UNDERSTUDY_REQUIRE_BROWSER",
            "UNDERSTUDY_NONSENSE_NAME",
            "PATH",
        ];
        assert_eq!(
            unknown_env_keys(env.into_iter()),
            vec![
                ("UNDERSTUDY_STABLE_WINDOWS", Some("STABLE_WINDOW")),
                ("UNDERSTUDY_NONSENSE_NAME", None)
            ]
        );
    }

    #[test]
    fn env_example_is_current() {
        let committed = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example"));
        assert_eq!(
            committed,
            Config::example(),
            "regenerate with: cargo run -- example-env > .env.example"
        );
    }

    #[test]
    fn readme_documents_every_key() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        for k in KEYS {
            assert!(
                readme.contains(&format!("| `{}` |", k.key)),
                "README.md's config table lacks {}",
                k.key
            );
        }
    }
}
