//! What a reload (SIGHUP) changes: which keys differ between two configurations, and which of
//! them take effect in the running understudy.

use super::Config;

/// Keys a reload (SIGHUP) applies to the running understudy; any other changed key is named as
/// needing a restart. The supervisor reads these when it acts; the scorer gets its thresholds.
pub const LIVE_KEYS: &[&str] = &[
    "UPSTREAM_HOST",
    "PROPERTIES_FILE_NAME",
    "PORT_KEY",
    "JAR_COMMAND",
    "EXEC_COMMAND",
    "READY_PATH",
    "HEALTH_PATH",
    "HEARTBEAT_EVERY",
    "HEARTBEAT_MISSES",
    "READY_TIMEOUT",
    "SHUTDOWN_GRACE",
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

/// Whether one key's value differs between two configurations.
type Differs = fn(&Config, &Config) -> bool;

/// A table entry per key: `field.path => "KEY"` becomes the key and a check of that field.
macro_rules! fields {
    ($($($field:ident).+ => $key:literal),* $(,)?) => {
        &[$(($key, |old: &Config, new: &Config| old.$($field).+ != new.$($field).+)),*]
    };
}

/// Every key with the field it sets, in the order [`changed_keys`] names them.
const FIELDS: &[(&str, Differs)] = fields!(
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
        diff.max_body => "DIFF_MAX_BODY",
        limits.header_bytes => "MAX_HEADER_BYTES",
        limits.headers => "MAX_HEADERS",
        limits.request_body => "MAX_REQUEST_BODY",
        limits.connections => "MAX_CONNECTIONS",
        diff.sample => "DIFF_SAMPLE",
        diff.ignore => "DIFF_IGNORE",
        diff.unordered => "DIFF_UNORDERED",
        diff.ignore_headers => "DIFF_IGNORE_HEADERS",
        diff.noise_cancel => "NOISE_CANCEL",
        score.diff_relative => "DIFF_RELATIVE",
        score.diff_absolute => "DIFF_ABSOLUTE",
        score.confidence => "CONFIDENCE",
        score.max_rss_ratio => "MAX_RSS_RATIO",
        score.max_cpu_ratio => "MAX_CPU_RATIO",
        score.plain_error_regex => "PLAIN_LOG_ERROR_REGEX",
        score.plain_warn_regex => "PLAIN_LOG_WARN_REGEX",
        score.evaluate_every => "EVALUATE_EVERY",
        diff.replay.on => "REPLAY",
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
        upstream_timeout => "UPSTREAM_TIMEOUT",
        send_timeout => "SEND_TIMEOUT",
        answer_buffer => "ANSWER_BUFFER",
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
        .filter(|(_, differs)| differs(old, new))
        .map(|(key, _)| *key)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::load;
    use crate::config::KEYS;

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
        for k in LIVE_KEYS {
            assert!(KEYS.iter().any(|d| d.key == *k), "{k} is a key");
        }
        // Every key a reload can change is compared (SCHEME has one value), so none is ignored.
        for d in KEYS.iter().filter(|d| d.key != "SCHEME") {
            assert!(
                FIELDS.iter().any(|(k, _)| *k == d.key),
                "{} is compared",
                d.key
            );
        }
    }
}
