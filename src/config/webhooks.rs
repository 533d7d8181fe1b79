//! The keys for the webhooks that receive events: where (`WEBHOOK_URLS`, http or https), in what
//! shape (`WEBHOOK_FORMAT`), and which private CA an https receiver may be signed by
//! (`WEBHOOK_CA_FILE`). A CA file is read and checked here, at start, so a bad one exits 64
//! instead of failing every delivery later.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::parse::{comma_list, invalid, Raw, MAX_PATH_LEN};
use super::ConfigError;

/// Largest CA file read: a bundle of every public root is about 200 KiB.
const MAX_CA_FILE: u64 = 1 << 20;

/// What each POST carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WebhookFormat {
    /// The event as JSON, for programs (the same fields as the admin API's event stream).
    #[default]
    Json,
    /// `{"text": "..."}`, one readable line per event, for chat (Slack, Mattermost, Discord's
    /// Slack-compatible endpoint).
    Slack,
}

/// A private CA that https receivers may be signed by, besides the system's roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookCa {
    /// The file as resolved (relative values are in the base dir), for messages.
    pub path: PathBuf,
    /// Its PEM text, checked at start to hold certificates rustls accepts as roots.
    pub pem: String,
}

impl WebhookCa {
    /// Adds the file's certificates to `roots`, as the webhook client trusts them: how many, or
    /// why one cannot be a root (checked at start, so a bad file exits 64 there).
    pub fn add_to(&self, roots: &mut rustls::RootCertStore) -> Result<usize, String> {
        let shown = self.path.display();
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(self.pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("{shown} is not PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("{shown} holds a certificate TLS cannot use: {e}"))?;
            added += 1;
        }
        Ok(added)
    }
}

/// The webhook keys, validated.
pub(super) struct Webhooks {
    pub(super) urls: Vec<String>,
    pub(super) format: WebhookFormat,
    pub(super) ca: Option<WebhookCa>,
}

/// WEBHOOK_URLS, WEBHOOK_FORMAT, WEBHOOK_CA_FILE.
pub(super) fn webhooks(base: &Path, raw: &Raw) -> Result<Webhooks, ConfigError> {
    Ok(Webhooks {
        urls: webhook_urls(raw)?,
        format: webhook_format(raw)?,
        ca: webhook_ca(base, raw)?,
    })
}

/// Most receivers in WEBHOOK_URLS.
const MAX_WEBHOOKS: usize = 16;
/// Longest WEBHOOK_URLS, in bytes.
const MAX_WEBHOOK_URLS_LEN: usize = 16 * 1024;

/// WEBHOOK_URLS: comma-separated `http(s)://host[:port]/path` URLs. Every refusal shows the value
/// through [`receiver_shown`]: a receiver's path, query and credentials may be its secret.
fn webhook_urls(raw: &Raw) -> Result<Vec<String>, ConfigError> {
    let expected = "comma-separated http:// or https:// URLs such as https://hooks.example.com/understudy or http://127.0.0.1:9000/hooks, at most 16";
    let v = raw.text_shown(
        "WEBHOOK_URLS",
        MAX_WEBHOOK_URLS_LEN,
        expected,
        redacted_list,
    )?;
    let urls = comma_list(v);
    let bad = urls.iter().enumerate().find(|(_, u)| !usable(u));
    if let Some((i, u)) = bad {
        return Err(invalid("WEBHOOK_URLS", &receiver_shown(i + 1, u), expected));
    }
    if urls.len() > MAX_WEBHOOKS {
        return Err(invalid("WEBHOOK_URLS", &redacted_list(v), expected));
    }
    Ok(urls)
}

/// Whether `url` is an http or https URL with a host and, if written, a port that names one.
fn usable(url: &str) -> bool {
    url.parse::<http::Uri>().is_ok_and(|uri| {
        // A port past 65535 parses as an authority but names no port at all. The
        // credentials' `user:password@` (sent as Basic authorization) hold no port.
        let written = uri.authority().map_or("", |a| a.as_str());
        let written = written.rsplit_once('@').map_or(written, |(_, host)| host);
        let after_host = written.rsplit_once(']').map_or(written, |(_, p)| p);
        let bad_port = after_host.contains(':') && uri.port_u16().is_none();
        matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() && !bad_port
    })
}

/// WEBHOOK_FORMAT: json or slack.
fn webhook_format(raw: &Raw) -> Result<WebhookFormat, ConfigError> {
    let v = raw.get("WEBHOOK_FORMAT");
    match v.trim().to_ascii_lowercase().as_str() {
        "json" => Ok(WebhookFormat::Json),
        "slack" => Ok(WebhookFormat::Slack),
        _ => Err(invalid(
            "WEBHOOK_FORMAT",
            v,
            "json (each event as JSON) or slack ({\"text\": ...}, one readable line per event)",
        )),
    }
}

/// WEBHOOK_CA_FILE: a PEM file (in the base dir, or an absolute path) of CA certificates, or empty.
fn webhook_ca(base: &Path, raw: &Raw) -> Result<Option<WebhookCa>, ConfigError> {
    let expected = "a readable PEM file of CA certificates (-----BEGIN CERTIFICATE-----), in the base dir or an absolute path, or empty";
    let v = raw.text("WEBHOOK_CA_FILE", MAX_PATH_LEN, expected)?;
    if v.is_empty() {
        return Ok(None);
    }
    let path = base.join(v);
    let refuse = |why: String| invalid("WEBHOOK_CA_FILE", v, &format!("{expected}; {why}"));
    let size = std::fs::metadata(&path)
        .map_err(|e| refuse(format!("{} cannot be read: {e}", path.display())))?
        .len();
    if size > MAX_CA_FILE {
        return Err(refuse(format!(
            "{} holds {size} bytes, more than a CA file's {MAX_CA_FILE}",
            path.display()
        )));
    }
    let pem = std::fs::read(&path)
        .map_err(|e| refuse(format!("{} cannot be read: {e}", path.display())))?;
    let pem = String::from_utf8(pem)
        .map_err(|_| refuse(format!("{} is not PEM text", path.display())))?;
    let ca = WebhookCa { path, pem };
    check_ca(&ca).map_err(refuse)?;
    Ok(Some(ca))
}

/// Whether `ca` holds at least one certificate and rustls takes every one as a root: the same
/// roots the webhooks trust, without the system's.
fn check_ca(ca: &WebhookCa) -> Result<(), String> {
    if ca.add_to(&mut rustls::RootCertStore::empty())? == 0 {
        return Err(format!("{} holds no PEM certificate", ca.path.display()));
    }
    Ok(())
}

/// A URL as anything but the config file may show it (metrics, logs, errors): its scheme, host
/// and port alone. A chat webhook's path is its secret (Slack's `/services/T/B/key`, Discord's
/// `/api/webhooks/id/token`, Mattermost's `/hooks/key`), as are a query and `user:password@`.
pub fn redacted(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest))
            if scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            (format!("{scheme}://"), rest)
        }
        _ => (String::new(), url),
    };
    let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(end);
    // In a usable URL, an `@` past the authority is the path's or the query's; in another, the
    // "authority" may be the start of credentials that hold a `/`, `?` or `#`.
    if !authority.contains('@') && after.contains('@') && !usable(url) {
        return format!("{scheme}(host hidden: the URL does not parse)");
    }
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{scheme}{host}")
}

/// How the receiver at `position` (1 for the first) of WEBHOOK_URLS is named wherever it is
/// shown: [`redacted`], and its place, which tells apart receivers on one host (every Slack hook).
pub fn receiver_shown(position: usize, url: &str) -> String {
    format!("{} (#{position})", redacted(url))
}

/// A whole WEBHOOK_URLS value as errors may show it: each comma-separated URL as
/// [`receiver_shown`] names it.
fn redacted_list(v: &str) -> String {
    let urls: Vec<String> = comma_list(v)
        .iter()
        .enumerate()
        .map(|(i, u)| receiver_shown(i + 1, u))
        .collect();
    urls.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{invalid_key, load_set};

    #[test]
    fn only_the_scheme_host_and_port_show() {
        for (url, shown) in [
            // The chat services' forms: the path is the secret.
            (
                "https://hooks.slack.com/services/T000/B000/XXXXSECRET",
                "https://hooks.slack.com",
            ),
            (
                "https://discord.com/api/webhooks/123/tok3n/slack",
                "https://discord.com",
            ),
            (
                "https://chat.example:8065/hooks/k3y",
                "https://chat.example:8065",
            ),
            ("http://h/p?token=s3cret#frag", "http://h"),
            ("http://h?token=s3cret", "http://h"),
            ("http://h#s3cret", "http://h"),
            (
                "http://user:s3cret@hooks.example:9000/in?x=1",
                "http://hooks.example:9000",
            ),
            ("http://a@b@h/p", "http://h"),
            ("http://h/p?mail=a@b", "http://h"),
            ("http://[::1]:9000/s3cret", "http://[::1]:9000"),
            ("http://u:s3cret@[fe80::1]/in", "http://[fe80::1]"),
            ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
            ("https://h.example", "https://h.example"),
            // Refused ones, shown in the refusal.
            ("https://h:70000/s3cret", "https://h:70000"),
            ("ops:s3cret@h/in", "h"),
            ("hooks.example.com/s3cret", "hooks.example.com"),
            ("u:s3cret@h://x", "h:"),
            (
                "http://u:s3c?ret@h/x",
                "http://(host hidden: the URL does not parse)",
            ),
            (
                "https:/u:s3cret@h/x",
                "(host hidden: the URL does not parse)",
            ),
            ("https://", "https://"),
        ] {
            assert_eq!(redacted(url), shown, "{url}");
        }
        assert_eq!(
            receiver_shown(2, "https://hooks.slack.com/services/T0/B0/XXXX"),
            "https://hooks.slack.com (#2)"
        );
    }

    #[test]
    fn too_many_or_too_long_urls_are_refused_without_their_credentials() {
        // Credentials as a user name only (a token): such URLs pass the check of each URL, so
        // the count is what refuses them.
        let many: Vec<String> = (0..17)
            .map(|i| format!("https://hunter2@h{i}.example/in"))
            .collect();
        let long = format!(
            "https://ops:hunter2@h.example/{}",
            "x".repeat(MAX_WEBHOOK_URLS_LEN)
        );
        for value in [many.join(","), long] {
            let r = load_set("IDENTIFIER=a\n", &[("WEBHOOK_URLS", &value)]);
            let message = r.as_ref().map(|_| ()).unwrap_err().to_string();
            let (k, v, expected) = invalid_key(r);
            assert_eq!(k, "WEBHOOK_URLS");
            assert!(!message.contains("hunter2"), "{message}");
            assert!(
                !message.contains("/in") && !message.contains("xxx"),
                "{message}"
            );
            assert!(v.starts_with("https://h"), "{v}");
            assert!(v.contains(" (#1)"), "{v}");
            assert!(expected.contains("at most"), "{expected}");
        }
    }

    #[test]
    fn https_urls_are_taken_and_other_schemes_refused() {
        let set = [(
            "WEBHOOK_URLS",
            "https://hooks.example.com/services/T0/B0/x, http://127.0.0.1:9000/hooks",
        )];
        let cfg = load_set("IDENTIFIER=a\n", &set).unwrap();
        assert_eq!(cfg.webhook_urls.len(), 2);
        assert_eq!(cfg.webhook_format, WebhookFormat::Json);
        assert_eq!(cfg.webhook_ca, None);
        for (bad, shown) in [
            ("ftp://h/s3cret", "ftp://h (#2)"),
            ("https://", "https:// (#2)"),
            ("hooks.example.com/s3cret", "hooks.example.com (#2)"),
            ("https://h:70000/s3cret", "https://h:70000 (#2)"),
        ] {
            let value = format!("http://good.example/in,{bad}");
            let (k, v, expected) =
                invalid_key(load_set("IDENTIFIER=a\n", &[("WEBHOOK_URLS", &value)]));
            assert_eq!((k.as_str(), v.as_str()), ("WEBHOOK_URLS", shown));
            assert!(expected.contains("https://"), "{expected}");
        }
    }

    #[test]
    fn urls_with_a_user_and_password_are_taken() {
        let urls = "https://ops:hunter2@h.example/in, http://ops:pw@127.0.0.1:9000/in";
        let cfg = load_set("IDENTIFIER=a\n", &[("WEBHOOK_URLS", urls)]).unwrap();
        assert_eq!(cfg.webhook_urls.len(), 2);
        let (k, v, _) = invalid_key(load_set(
            "IDENTIFIER=a\n",
            &[("WEBHOOK_URLS", "https://ops:hunter2@h:70000/in")],
        ));
        assert_eq!(
            (k.as_str(), v.as_str()),
            ("WEBHOOK_URLS", "https://h:70000 (#1)")
        );
    }

    #[test]
    fn the_format_is_json_or_slack() {
        let cfg = load_set("IDENTIFIER=a\n", &[("WEBHOOK_FORMAT", " Slack ")]).unwrap();
        assert_eq!(cfg.webhook_format, WebhookFormat::Slack);
        let (k, v, expected) =
            invalid_key(load_set("IDENTIFIER=a\n", &[("WEBHOOK_FORMAT", "teams")]));
        assert_eq!((k.as_str(), v.as_str()), ("WEBHOOK_FORMAT", "teams"));
        assert!(expected.contains("slack"), "{expected}");
    }

    #[test]
    fn a_ca_file_of_pem_certificates_is_read_relative_to_the_base_dir() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).unwrap().pem();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".env"),
            "IDENTIFIER=a\nWEBHOOK_CA_FILE=ca.pem\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("ca.pem"), &pem).unwrap();
        let cfg = crate::config::Config::load(dir.path(), &std::collections::BTreeMap::new(), &[])
            .unwrap();
        let ca = cfg.webhook_ca.unwrap();
        assert_eq!((ca.path, ca.pem), (dir.path().join("ca.pem"), pem));
    }

    #[test]
    fn a_ca_file_that_is_missing_or_not_a_certificate_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "hello, not a certificate\n").unwrap();
        let bad_der = dir.path().join("bad-der.pem");
        std::fs::write(
            &bad_der,
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let binary = dir.path().join("binary.pem");
        std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x80]).unwrap();
        let missing = dir.path().join("missing.pem");
        for file in [
            &garbage,
            &bad_der,
            &binary,
            &missing,
            &dir.path().to_path_buf(),
        ] {
            let value = file.display().to_string();
            let (k, v, expected) =
                invalid_key(load_set("IDENTIFIER=a\n", &[("WEBHOOK_CA_FILE", &value)]));
            assert_eq!(
                (k.as_str(), v.as_str()),
                ("WEBHOOK_CA_FILE", value.as_str())
            );
            assert!(expected.contains("PEM"), "{expected}");
        }
    }
}
