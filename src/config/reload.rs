//! What a reload (SIGHUP) changes: which keys differ between two configurations, which of them
//! take effect in the running understudy, and the configuration to publish (the one place that
//! decides it: a key that needs a restart keeps its old value until then).

use super::Config;

/// Keys a reload (SIGHUP) applies at once; the supervisor reads these when it acts, the scorer
/// gets its thresholds. Any other changed key needs a restart, except [`NEW_INSTANCE_KEYS`].
pub const LIVE_KEYS: &[&str] = &[
    "STABLE_WINDOW",
    "MIN_MIRRORED",
    "MAX_5XX_DELTA",
    "MAX_CLIENT_ERROR_DELTA",
    "MAX_LOG_ERROR_DELTA",
    "MAX_LOG_WARN_DELTA",
    "MIN_ENDPOINT_PAIRS",
    "MAX_ENDPOINTS",
    "MAX_P95_RATIO",
    "MAX_BODY_DIFF",
    "DIFF_IGNORE",
    "DIFF_UNORDERED",
    "DIFF_IGNORE_HEADERS",
    "DIFF_RELATIVE",
    "DIFF_ABSOLUTE",
    "CONFIDENCE",
    "MAX_RSS_RATIO",
    "MAX_CPU_RATIO",
    "PLAIN_LOG_ERROR_REGEX",
    "PLAIN_LOG_WARN_REGEX",
    "EVALUATE_EVERY",
    "REPLAY",
    "REPLAY_KEEP",
    "REPLAY_RATE",
    "REPLAY_REPEAT",
    "MAX_BASE_SIZE",
    "MIN_FREE_DISK",
    "MAX_UNPACKED_SIZE",
];

/// Keys a reload publishes that are read when an instance starts (its command, port, probes and
/// address): instances started from now on get them, those already running keep the old values
/// until they restart.
pub const NEW_INSTANCE_KEYS: &[&str] = &[
    // Each instance keeps the grace it was started with for its own stop.
    "SHUTDOWN_GRACE",
    "UPSTREAM_HOST",
    "PROPERTIES_FILE_NAME",
    "PORT_KEY",
    "JAR_COMMAND",
    "EXEC_COMMAND",
    "READY_PATH",
    "HEALTH_PATH",
    // Understudy's own heartbeat (status.json, the systemd watchdog's limit) follows it at once.
    "HEARTBEAT_EVERY",
    "HEARTBEAT_MISSES",
    "READY_TIMEOUT",
];

/// A reloaded configuration merged with the one in force, and what changed, by when it applies.
#[derive(Debug)]
pub struct Reload {
    /// What to publish: the new values of live and new-instance keys, the old ones of the rest.
    pub config: Config,
    /// Changed keys applied at once ([`LIVE_KEYS`]).
    pub applied: Vec<&'static str>,
    /// Changed keys that apply to instances started from now on ([`NEW_INSTANCE_KEYS`]).
    pub new_instances: Vec<&'static str>,
    /// Changed keys that keep their old value until understudy restarts.
    pub restart: Vec<&'static str>,
}

/// Merge a re-read configuration `new` into the one in force `old`: a changed key that needs a
/// restart keeps its old value, so no part of understudy uses a value another part does not.
pub fn merge(old: &Config, mut new: Config) -> Reload {
    // Not a key: set once by `main`, a re-read `.env` does not carry it.
    new.watchdog = old.watchdog.clone();
    let (mut applied, mut new_instances, mut restart) = (Vec::new(), Vec::new(), Vec::new());
    for f in FIELDS {
        if !(f.differs)(old, &new) {
            continue;
        }
        if LIVE_KEYS.contains(&f.key) {
            applied.push(f.key);
        } else if NEW_INSTANCE_KEYS.contains(&f.key) {
            new_instances.push(f.key);
        } else {
            (f.keep)(old, &mut new);
            restart.push(f.key);
        }
    }
    Reload {
        config: new,
        applied,
        new_instances,
        restart,
    }
}

/// One key and the fields it sets.
struct Field {
    key: &'static str,
    /// Whether its value differs between two configurations.
    differs: fn(&Config, &Config) -> bool,
    /// Put the old configuration's value (every field the key sets) back into the new one.
    keep: fn(&Config, &mut Config),
}

/// A table entry per key: `field.path | other.path => "KEY"` becomes the key, a check of its
/// fields and how to keep their old values.
macro_rules! fields {
    ($($($($field:ident).+)|+ => $key:literal),* $(,)?) => {
        &[$(Field {
            key: $key,
            differs: |old: &Config, new: &Config| false $(|| old.$($field).+ != new.$($field).+)+,
            keep: |old: &Config, new: &mut Config| {
                $(new.$($field).+ = old.$($field).+.clone();)+
            },
        }),*]
    };
}

/// Every key with the fields it sets, in the order [`changed_keys`] names them.
const FIELDS: &[Field] = fields!(
        identifier => "IDENTIFIER",
        listen => "LISTEN",
        port_range => "PORT_RANGE",
        upstream_host => "UPSTREAM_HOST",
        properties_file => "PROPERTIES_FILE_NAME",
        port_key => "PORT_KEY",
        jar_command => "JAR_COMMAND",
        exec_command => "EXEC_COMMAND",
        ready_path => "READY_PATH",
        health_path => "HEALTH_PATH",
        heartbeat_every => "HEARTBEAT_EVERY",
        heartbeat_misses => "HEARTBEAT_MISSES",
        ready_timeout => "READY_TIMEOUT",
        shutdown_grace => "SHUTDOWN_GRACE",
        settle_time => "SETTLE_TIME",
        mirror_methods => "MIRROR_METHODS",
        mirror_max_body => "MIRROR_MAX_BODY",
        mirror_queue => "MIRROR_QUEUE",
        mirror_concurrency => "MIRROR_CONCURRENCY",
        mirror_timeout => "MIRROR_TIMEOUT",
        worker_threads => "WORKER_THREADS",
        cpu_affinity => "CPU_AFFINITY",
        log_dir => "LOG_DIR",
        log_level => "LOG_LEVEL",
        log_format => "LOG_FORMAT",
        score.stable_window => "STABLE_WINDOW",
        score.min_mirrored => "MIN_MIRRORED",
        score.max_5xx_delta => "MAX_5XX_DELTA",
        score.max_client_error_delta => "MAX_CLIENT_ERROR_DELTA",
        score.max_log_error_delta => "MAX_LOG_ERROR_DELTA",
        score.max_log_warn_delta => "MAX_LOG_WARN_DELTA",
        score.min_endpoint_pairs => "MIN_ENDPOINT_PAIRS",
        score.max_endpoints => "MAX_ENDPOINTS",
        score.max_p95_ratio => "MAX_P95_RATIO",
        score.max_body_diff => "MAX_BODY_DIFF",
        diff.max_body | score.diff_max_body => "DIFF_MAX_BODY",
        limits.header_bytes => "MAX_HEADER_BYTES",
        limits.headers => "MAX_HEADERS",
        limits.request_body => "MAX_REQUEST_BODY",
        limits.connections => "MAX_CONNECTIONS",
        diff.sample | score.diff_sample => "DIFF_SAMPLE",
        diff.ignore => "DIFF_IGNORE",
        diff.unordered => "DIFF_UNORDERED",
        diff.ignore_headers => "DIFF_IGNORE_HEADERS",
        diff.noise_cancel | score.noise_cancel => "NOISE_CANCEL",
        score.diff_relative => "DIFF_RELATIVE",
        score.diff_absolute => "DIFF_ABSOLUTE",
        score.confidence => "CONFIDENCE",
        score.max_rss_ratio => "MAX_RSS_RATIO",
        score.max_cpu_ratio => "MAX_CPU_RATIO",
        score.plain_error_regex => "PLAIN_LOG_ERROR_REGEX",
        score.plain_warn_regex => "PLAIN_LOG_WARN_REGEX",
        score.evaluate_every => "EVALUATE_EVERY",
        diff.replay.on | score.replay => "REPLAY",
        diff.replay.keep => "REPLAY_KEEP",
        diff.replay.rate => "REPLAY_RATE",
        diff.replay.repeat => "REPLAY_REPEAT",
        max_base_size => "MAX_BASE_SIZE",
        min_free_disk => "MIN_FREE_DISK",
        max_unpacked_size => "MAX_UNPACKED_SIZE",
        hooks.pre_start => "PRE_START",
        hooks.pre_promote => "PRE_PROMOTE",
        hooks.post_promote => "POST_PROMOTE",
        hooks.post_rollback => "POST_ROLLBACK",
        hook_timeout => "HOOK_TIMEOUT",
        rollback_window => "ROLLBACK_WINDOW",
        webhook_urls => "WEBHOOK_URLS",
        webhook_format => "WEBHOOK_FORMAT",
        webhook_ca => "WEBHOOK_CA_FILE",
        header_timeout => "HEADER_TIMEOUT",
        body_timeout => "BODY_TIMEOUT",
        upstream_timeout => "UPSTREAM_TIMEOUT",
        send_timeout => "SEND_TIMEOUT",
        answer_buffer => "ANSWER_BUFFER",
        request_buffer => "REQUEST_BUFFER",
        answer_memory => "ANSWER_MEMORY",
        answer_spill => "ANSWER_SPILL",
        promote_at => "PROMOTE_AT",
        missed_schedule_grace => "MISSED_SCHEDULE_GRACE",
        admin_listen => "ADMIN_LISTEN",
        admin_token => "ADMIN_TOKEN",
        admin_connections => "MAX_ADMIN_CONNECTIONS",
        admin_hosts => "ADMIN_HOSTS",
        hook_log_max => "HOOK_LOG_MAX",
        canary.steps => "CANARY_STEPS",
        canary.step_window => "CANARY_STEP_WINDOW",
        canary.sticky => "CANARY_STICKY",
);

/// The keys whose values differ between two configurations, in `KEYS` order.
pub fn changed_keys(old: &Config, new: &Config) -> Vec<&'static str> {
    FIELDS
        .iter()
        .filter(|f| (f.differs)(old, new))
        .map(|f| f.key)
        .collect()
}

/// What the log says of changed keys that apply to instances started from now on.
pub fn new_instances_note(keys: &[&str]) -> String {
    format!(
        "reloaded configuration: {} {} to instances started from now on; those already running keep the old values until they restart",
        keys.join(", "),
        agree(keys, "applies", "apply")
    )
}

/// What the log says of changed keys that keep their old value until understudy restarts.
pub fn restart_note(keys: &[&str]) -> String {
    format!(
        "reloaded configuration: {} changed but {} effect only when understudy restarts",
        keys.join(", "),
        agree(keys, "takes", "take")
    )
}

/// The verb's form that agrees with the keys named: `one` for a single key, `many` otherwise.
fn agree<'a>(keys: &[&str], one: &'a str, many: &'a str) -> &'a str {
    if keys.len() == 1 {
        one
    } else {
        many
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One key takes effect, several take effect: the notes once said "LISTEN changed but take
    /// effect" and "READY_TIMEOUT apply to".
    #[test]
    fn reload_notes_agree_with_the_number_of_keys() {
        assert_eq!(
            restart_note(&["LISTEN"]),
            "reloaded configuration: LISTEN changed but takes effect only when understudy restarts"
        );
        assert!(restart_note(&["LISTEN", "PORT_RANGE"])
            .contains("LISTEN, PORT_RANGE changed but take effect only"));
        assert!(new_instances_note(&["READY_TIMEOUT"])
            .starts_with("reloaded configuration: READY_TIMEOUT applies to instances started"));
        assert!(new_instances_note(&["READY_TIMEOUT", "READY_PATH"])
            .contains("READY_TIMEOUT, READY_PATH apply to instances started"));
    }

    /// README says which keys a reload applies at once and which to new instances: every one of
    /// each list, so the paragraph cannot fall behind the code.
    #[test]
    fn readme_names_every_key_a_reload_applies() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        let start = readme
            .find("`SIGHUP` re-reads `.env`")
            .expect("the reload paragraph");
        let end = readme[start..]
            .find("\n\n")
            .map_or(readme.len(), |e| start + e);
        let paragraph = &readme[start..end];
        for k in LIVE_KEYS.iter().chain(NEW_INSTANCE_KEYS) {
            assert!(
                paragraph.contains(&format!("`{k}`")),
                "README's reload paragraph lacks {k}"
            );
        }
    }
    use crate::config::test_support::load;
    use crate::config::KEYS;

    #[test]
    fn a_key_that_needs_a_restart_keeps_its_old_value_in_the_published_config() {
        let old = load("IDENTIFIER=a\n", &[]).unwrap();
        let new = load(
            "IDENTIFIER=a\nDIFF_SAMPLE=0.5\nDIFF_MAX_BODY=1KiB\nNOISE_CANCEL=off\nMIN_MIRRORED=7\nHEALTH_PATH=/health\nREADY_TIMEOUT=9s\nPRE_PROMOTE=/bin/false\n",
            &[],
        )
        .unwrap();
        let r = merge(&old, new);
        assert_eq!(r.applied, vec!["MIN_MIRRORED"]);
        assert_eq!(r.new_instances, vec!["HEALTH_PATH", "READY_TIMEOUT"]);
        assert_eq!(
            r.restart,
            vec![
                "DIFF_MAX_BODY",
                "DIFF_SAMPLE",
                "NOISE_CANCEL",
                "PRE_PROMOTE"
            ]
        );
        let c = &r.config;
        assert_eq!(c.score.min_mirrored, 7);
        assert_eq!(c.health_path.as_deref(), Some("/health"));
        // The proxy samples and captures at the old rate and size until a restart: so does the
        // scorer, and running's capture as testing's.
        assert_eq!(c.diff.sample, old.diff.sample);
        assert_eq!(c.score.diff_sample, old.score.diff_sample);
        assert_eq!(c.diff.max_body, old.diff.max_body);
        assert_eq!(c.score.noise_cancel, old.score.noise_cancel);
        assert_eq!(c.hooks, old.hooks);
        assert_eq!(
            changed_keys(&old, c),
            vec!["HEALTH_PATH", "READY_TIMEOUT", "MIN_MIRRORED"],
            "only the keys that apply differ in what is published"
        );
    }

    #[test]
    fn a_reload_names_the_keys_that_changed() {
        let a = load("IDENTIFIER=a\n", &[]).unwrap();
        let b = load(
            "IDENTIFIER=a\nSTABLE_WINDOW=1s\nLISTEN=127.0.0.1:1\nMAX_BODY_DIFF=0.1\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            changed_keys(&a, &b),
            vec!["LISTEN", "STABLE_WINDOW", "MAX_BODY_DIFF"]
        );
        assert!(changed_keys(&a, &a).is_empty());
        for k in LIVE_KEYS.iter().chain(NEW_INSTANCE_KEYS) {
            assert!(KEYS.iter().any(|d| d.key == *k), "{k} is a key");
        }
        for k in NEW_INSTANCE_KEYS {
            assert!(
                !LIVE_KEYS.contains(k),
                "{k} is live or for new instances, not both"
            );
        }
        // Every key a reload can change is compared (SCHEME has one value), so none is ignored.
        for d in KEYS.iter().filter(|d| d.key != "SCHEME") {
            assert!(
                FIELDS.iter().any(|f| f.key == d.key),
                "{} is compared",
                d.key
            );
        }
    }
}
