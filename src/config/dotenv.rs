//! The `.env` file, read by the usual dotenv rules, and values quoted so that they read back
//! exactly (for `.env.example`).

use std::path::Path;

use super::{cut, ConfigError, KEYS};

/// The entries of the `.env` at `path`, in order; no file means none.
pub(super) fn read_dotenv(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_dotenv(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Parse `.env` text by the usual dotenv rules (dotenvy): `# comments`, blank lines, `export `,
/// quotes, `KEY=value # comment`. A syntax error names the line where the bad entry starts.
fn parse_dotenv(path: &Path, text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines_read = std::cell::Cell::new(0);
    let reader = LineReader {
        rest: text.as_bytes(),
        lines_read: &lines_read,
    };
    let mut out = Vec::new();
    let mut done = 0;
    for entry in dotenvy::from_read_iter(reader) {
        match entry {
            Ok(kv) => {
                out.push(kv);
                done = lines_read.get();
            }
            Err(_) => {
                // The bad entry starts at the first line after the last good one that is
                // neither blank nor a comment.
                let (line, bad) = text
                    .lines()
                    .enumerate()
                    .skip(done)
                    .find(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                    .unwrap_or((done, ""));
                return Err(ConfigError::Syntax {
                    path: path.to_path_buf(),
                    line: line + 1,
                    text: shown_line(bad),
                });
            }
        }
    }
    Ok(out)
}

/// Whether a key's value may hold a secret, so a syntax error never echoes it: the token, the
/// receivers' URLs (a chat hook's path is its key), and every command line (`JAR_COMMAND`,
/// `EXEC_COMMAND`, the hooks), where a password on a `curl -u` is common.
fn may_hold_a_secret(key: &str) -> bool {
    matches!(key, "ADMIN_TOKEN" | "WEBHOOK_URLS")
        || key.starts_with("PRE_")
        || key.starts_with("POST_")
        || key.ends_with("_COMMAND")
}

/// A bad line as an error may show it (on stderr, in the journal, in LOG_DIR): whole when it sets
/// one of understudy's own keys that holds no secret; otherwise only the name it starts with, since
/// the rest may be a token, a URL or a command line with credentials, or another tool's secret.
fn shown_line(line: &str) -> String {
    let t = line.trim_start();
    let t = t.strip_prefix("export ").map_or(t, str::trim_start);
    let name_len = t
        .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .unwrap_or(t.len());
    let name = &t[..name_len];
    if KEYS.iter().any(|d| d.key == name) && !may_hold_a_secret(name) {
        cut(line)
    } else if name.is_empty() {
        "(the line: hidden, it may hold a secret)".to_string()
    } else {
        format!("{}… (the rest hidden: it may hold a secret)", cut(name))
    }
}

/// Hands dotenvy one line per read, so `lines_read` says how many lines the entries returned so
/// far took (dotenvy's errors carry no line number).
struct LineReader<'a> {
    rest: &'a [u8],
    lines_read: &'a std::cell::Cell<usize>,
}

impl std::io::Read for LineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.rest.is_empty() || buf.is_empty() {
            return Ok(0);
        }
        let line_end = self
            .rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(self.rest.len(), |i| i + 1);
        let n = line_end.min(buf.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        if n == line_end {
            self.lines_read.set(self.lines_read.get() + 1);
        }
        Ok(n)
    }
}

/// `v` as a dotenv value that reads back as exactly `v`.
pub(super) fn dotenv_quote(v: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_.,:/{}@%+<>".contains(c);
    if v.chars().all(plain) {
        v.to_string()
    } else if !v.contains('\'') {
        format!("'{v}'")
    } else {
        let escaped: String = v
            .chars()
            .flat_map(|c| match c {
                '\\' | '"' | '$' => vec!['\\', c],
                '\n' => vec!['\\', 'n'],
                c => vec![c],
            })
            .collect();
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;
    use crate::config::test_support::load;
    use crate::config::{Config, KEYS};

    #[test]
    fn dotenv_follows_the_usual_rules() {
        let cfg = load(
            "\u{feff}# a comment\n\
             export IDENTIFIER=app # the build name\n\
             \n   \n\
             LISTEN=\"127.0.0.1:1234\"\n\
             PORT_KEY='my.port'   # single quotes\n\
             READY_PATH=/health#not-a-comment\n\
             MIRROR_METHODS=GET # only GET\n\
             some_other_tool=1\n",
            &[],
        )
        .unwrap();
        assert_eq!(cfg.identifier, "app");
        assert_eq!(cfg.listen.port(), 1234);
        assert_eq!(cfg.port_key, "my.port");
        assert_eq!(cfg.ready_path.as_deref(), Some("/health#not-a-comment"));
        assert_eq!(cfg.mirror_methods, vec![Method::GET]);
        assert_eq!(cfg.unknown_keys, vec!["some_other_tool".to_string()]);
    }

    #[test]
    fn dotenv_syntax_errors_name_file_and_line() {
        for (text, line) in [
            ("IDENTIFIER=a\n\n# note\nLISTEN=1 2\n", 4),
            ("IDENTIFIER=a\nNOT A LINE\n", 2),
            (
                "# c\nIDENTIFIER=a\nJAR_COMMAND=\"java -jar {artifact}\n\nX=1\n",
                3,
            ),
            ("IDENTIFIER='a\nb'\nLISTEN=\"x\" y\n", 3),
        ] {
            match load(text, &[]) {
                Err(e @ ConfigError::Syntax { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(&format!(".env:{line}:")), "{text:?}: {msg}");
                }
                other => panic!("{text:?}: expected a syntax error, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_syntax_error_never_shows_a_secret_value() {
        for (text, key) in [
            ("IDENTIFIER=a\nADMIN_TOKEN=SuperSecretToken 12345678\n", "ADMIN_TOKEN"),
            (
                "IDENTIFIER=a\nexport WEBHOOK_URLS=https://hooks.slack.com/services/T/B/SuperSecret x\n",
                "WEBHOOK_URLS",
            ),
            ("IDENTIFIER=a\nOTHER_TOOL_PASSWORD=SuperSecret 2\n", "OTHER_TOOL_PASSWORD"),
            (
                "IDENTIFIER=a\nPOST_PROMOTE=curl -u deploy:SuperSecret https://ci.example/hook\n",
                "POST_PROMOTE",
            ),
            ("IDENTIFIER=a\nEXEC_COMMAND=./run --password SuperSecret \"x\n", "EXEC_COMMAND"),
            ("IDENTIFIER=a\nsuperSecret pasted\n", ""),
        ] {
            let msg = load(text, &[]).unwrap_err().to_string();
            assert!(!msg.contains("SuperSecret") && !msg.contains("superSecret"), "{msg}");
            assert!(msg.contains(".env:2:") && msg.contains(key), "{msg}");
        }
        // One of understudy's own keys is shown whole: the user sees what to fix.
        let msg = load("LISTEN=1 2\n", &[]).unwrap_err().to_string();
        assert!(msg.contains("LISTEN=1 2"), "{msg}");
    }

    #[test]
    fn env_example_reads_back_as_the_defaults() {
        let entries = parse_dotenv(Path::new(".env.example"), &Config::example()).unwrap();
        assert_eq!(entries.len(), KEYS.len());
        for ((key, value), doc) in entries.iter().zip(KEYS) {
            assert_eq!(key, doc.key);
            if doc.key != "IDENTIFIER" {
                assert_eq!(value, doc.default, "{key}");
            }
        }
        load(&Config::example(), &[]).unwrap();
    }
}
