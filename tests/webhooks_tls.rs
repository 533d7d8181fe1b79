//! Webhooks over https, where people read: a CA and a server certificate made in the test, a
//! small TLS receiver on loopback, and the real binary posting Slack-shaped lines to it; without
//! the CA file the same receiver is refused, and the loss is counted and logged.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;

use crate::support::*;

/// A private CA (its PEM) and a server certificate it signed for `localhost` and 127.0.0.1.
fn make_certificates() -> (String, rustls::ServerConfig) {
    make_certificates_for(&["localhost", "127.0.0.1"])
}

/// A private CA (its PEM) and a server certificate it signed for `names`.
fn make_certificates_for(names: &[&str]) -> (String, rustls::ServerConfig) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "understudy test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let server_params = rcgen::CertificateParams::new(names).unwrap();
    let server = server_params.signed_by(&server_key, &ca).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let chain = vec![CertificateDer::from(server.der().to_vec())];
    // The process default: *ring*, the one provider the features build (as in understudy).
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    (ca.pem(), config)
}

/// What the receiver saw: each request's head and body, and each failed handshake's error.
#[derive(Default)]
struct Seen {
    requests: Vec<(String, Value)>,
    handshake_errors: Vec<String>,
}

/// An https receiver on a loopback port, one connection at a time: answers 200 to each POST and
/// records it. Dropped, it stops accepting and its thread is joined.
struct TlsReceiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    _server: Listening,
}

impl TlsReceiver {
    fn start(config: rustls::ServerConfig) -> TlsReceiver {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (config, sink) = (Arc::new(config), seen.clone());
        let server = Listening::start(move |tcp| serve_one(&config, tcp, &sink));
        TlsReceiver {
            addr: server.addr,
            seen,
            _server: server,
        }
    }
}

/// A loopback listener whose thread hands each accepted connection to a handler; dropped, it
/// stops accepting and its thread is joined.
struct Listening {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listening {
    fn start(mut handle: impl FnMut(TcpStream) + Send + 'static) -> Listening {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    return;
                }
                if let Ok(tcp) = stream {
                    handle(tcp);
                }
            }
        });
        Listening {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr); // wakes the accept
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl TlsReceiver {
    /// The head (lowercased) of the request whose Slack line is `text`, once it has come.
    fn head_of(&self, text: &str) -> String {
        let (head, _) = wait_until(
            &format!("{text:?} at the https receiver"),
            Duration::from_secs(20),
            || {
                let seen = self.seen.lock().unwrap();
                seen.requests
                    .iter()
                    .find(|(_, body)| body["text"] == text)
                    .cloned()
            },
        );
        head.to_ascii_lowercase()
    }
}

/// One connection: the TLS handshake, one request (head, then the body by Content-Length),
/// a 200 that closes.
fn serve_one(config: &Arc<rustls::ServerConfig>, tcp: TcpStream, seen: &Mutex<Seen>) {
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let conn = rustls::ServerConnection::new(config.clone()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let request = loop {
        match tls.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => {
                if tls.conn.is_handshaking() || e.kind() == std::io::ErrorKind::InvalidData {
                    seen.lock().unwrap().handshake_errors.push(e.to_string());
                }
                return;
            }
        }
        let text = String::from_utf8_lossy(&buf).to_string();
        let Some((head, rest)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let len = content_length(head);
        if rest.len() >= len {
            break (head.to_string(), rest[..len].to_string());
        }
    };
    let body = serde_json::from_str(&request.1).unwrap_or(Value::Null);
    seen.lock().unwrap().requests.push((request.0, body));
    let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

#[test]
fn an_https_webhook_signed_by_the_ca_file_gets_one_slack_line_per_event() {
    let (ca_pem, config) = make_certificates();
    let receiver = TlsReceiver::start(config);
    let base = Base::new("webhook-tls");
    std::fs::write(base.path.join("ca.pem"), &ca_pem).unwrap();
    let url = format!("https://localhost:{}/hook", receiver.addr.port());
    // As /metrics names the receiver: never its path.
    let shown = format!("https://localhost:{} (#1)", receiver.addr.port());
    base.write_env(&format!(
        "WEBHOOK_URLS={url}\nWEBHOOK_CA_FILE=ca.pem\nWEBHOOK_FORMAT=slack"
    ));
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    base.drop_fixture("1.1.0", "--crash-at-start");
    let (head, body) = wait_until(
        "1.1.0's rejection at the https receiver",
        Duration::from_secs(20),
        || {
            let seen = receiver.seen.lock().unwrap();
            seen.requests
                .iter()
                .find(|(_, body)| {
                    body["text"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("understudy: app 1.1.0 rejected: "))
                })
                .cloned()
        },
    );
    assert!(head.starts_with("POST /hook HTTP/1.1"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    assert_eq!(
        body.as_object().unwrap().len(),
        1,
        "only `text`, as Slack takes it: {body}"
    );
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("fatal: cannot load configuration"),
        "why, from the build's stderr: {text}"
    );
    let seen = receiver.seen.lock().unwrap();
    let texts: Vec<&str> = seen
        .requests
        .iter()
        .filter_map(|(_, b)| b["text"].as_str())
        .collect();
    for line in [
        "understudy: app 1.0.0 found: app-1.0.0",
        "understudy: app 1.0.0 is ready as running",
    ] {
        assert!(
            texts.contains(&line),
            "one line per event, from the first on: {texts:#?}"
        );
    }
    let log = u.log_text();
    assert!(
        !log.lines()
            .any(|l| l.contains("ignoring") && l.contains("ca.pem")),
        "the CA file in the base dir is no stray build: {log}"
    );
    assert!(
        seen.handshake_errors.is_empty(),
        "{:?}",
        seen.handshake_errors
    );
    drop(seen);
    delivered_are_counted_naming_only(&base, &shown);
    u.stop();
}

/// `/metrics` counts deliveries to the receiver, named as `shown` (never its path).
fn delivered_are_counted_naming_only(base: &Base, shown: &str) {
    let (admin_addr, _) = admin(base);
    let (_, metrics) = http(admin_addr, "GET", "/metrics").unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("understudy_webhook_delivered_total{")
                && l.contains(shown)
                && !l.ends_with(" 0")),
        "{metrics}"
    );
}

#[test]
fn without_the_ca_file_the_receiver_is_refused_and_the_loss_counted_and_logged() {
    let (_, config) = make_certificates();
    let receiver = TlsReceiver::start(config);
    let base = Base::new("webhook-tls-unknown");
    let url = format!("https://localhost:{}/hook", receiver.addr.port());
    let shown = format!("https://localhost:{} (#1)", receiver.addr.port());
    base.write_env(&format!("WEBHOOK_URLS={url}\nWEBHOOK_FORMAT=slack"));
    let mut u = Understudy::start(&base);
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let (admin_addr, _) = admin(&base);
    // Five attempts with backoff (0.5 + 1 + 2 + 4 s) before the first event is given up.
    wait_until(
        "a dropped event in /metrics",
        Duration::from_secs(30),
        || {
            let (_, text) = http(admin_addr, "GET", "/metrics").ok()?;
            text.lines()
                .any(|l| {
                    l.starts_with("understudy_webhook_dropped_total{")
                        && l.contains(&shown)
                        && !l.ends_with(" 0")
                })
                .then_some(())
        },
    );
    let log = u.log_text();
    let warning = log
        .lines()
        .find(|l| l.contains("given up") && l.contains(&shown))
        .unwrap_or_else(|| panic!("a warning names the receiver: {log}"));
    assert!(
        warning.contains("invalid peer certificate") && warning.contains("UnknownIssuer"),
        "and why: {warning}"
    );
    assert!(!log.contains("panicked"), "{log}");
    {
        let seen = receiver.seen.lock().unwrap();
        assert!(seen.requests.is_empty(), "nothing was sent in the clear");
        assert!(
            !seen.handshake_errors.is_empty(),
            "understudy hung up in the handshake"
        );
    }
    assert_eq!(u.get("/").0, 200, "users are served all along");
    u.stop();
}

#[test]
fn a_ca_file_that_is_not_pem_exits_64_naming_key_and_value() {
    let base = Base::new("webhook-ca-bad");
    std::fs::write(base.path.join("ca.pem"), "not a certificate\n").unwrap();
    for value in ["ca.pem", "missing.pem"] {
        base.write_env(&format!(
            "WEBHOOK_URLS=https://localhost:9/hook\nWEBHOOK_CA_FILE={value}"
        ));
        let (code, _, err) = cli(&base, &["run"]);
        assert_eq!(code, 64, "{err}");
        assert!(
            err.contains("WEBHOOK_CA_FILE") && err.contains(value) && err.contains("PEM"),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// An egress proxy on a loopback port, as a company's: `CONNECT host:port` opens a tunnel to that
/// port on loopback (for https receivers); any other request is an http one handed to it, recorded
/// and answered 200 here. Every request head is recorded. Also serves as a plain http receiver.
struct Proxy {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    _server: Listening,
}

impl Proxy {
    fn start() -> Proxy {
        let heads = Arc::new(Mutex::new(Vec::new()));
        let sink = heads.clone();
        let server = Listening::start(move |tcp| {
            let sink = sink.clone();
            std::thread::spawn(move || proxy_one(tcp, &sink));
        });
        Proxy {
            addr: server.addr,
            heads,
            _server: server,
        }
    }

    /// The heads recorded so far, lowercased.
    fn heads(&self) -> Vec<String> {
        let heads = self.heads.lock().unwrap();
        heads.iter().map(|h| h.to_ascii_lowercase()).collect()
    }
}

/// One connection to the proxy: a tunnel for CONNECT, else one request answered 200.
fn proxy_one(mut tcp: TcpStream, heads: &Mutex<Vec<String>>) {
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte: nothing past the head is taken from a tunnel's first TLS bytes.
    while !buf.ends_with(b"\r\n\r\n") {
        match tcp.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    heads.lock().unwrap().push(head.clone());
    if let Some(target) = head.strip_prefix("CONNECT ") {
        let port = target
            .split([' ', '\r'])
            .next()
            .and_then(|a| a.rsplit_once(':'));
        let Some(Ok(port)) = port.map(|(_, p)| p.parse::<u16>()) else {
            return;
        };
        let Ok(upstream) = TcpStream::connect(("127.0.0.1", port)) else {
            return;
        };
        let _ = tcp.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
        tcp.set_read_timeout(None).unwrap();
        let (mut up_read, mut client_write) =
            (upstream.try_clone().unwrap(), tcp.try_clone().unwrap());
        let back = std::thread::spawn(move || {
            let _ = std::io::copy(&mut up_read, &mut client_write);
            let _ = client_write.shutdown(std::net::Shutdown::Write);
        });
        let (mut client_read, mut up_write) = (tcp, upstream);
        let _ = std::io::copy(&mut client_read, &mut up_write);
        let _ = up_write.shutdown(std::net::Shutdown::Write);
        let _ = back.join();
        return;
    }
    let mut body = vec![0u8; content_length(&head)];
    if tcp.read_exact(&mut body).is_ok() {
        let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }
}

#[test]
fn through_the_proxy_the_environment_names_https_tunnels_and_http_is_handed_over_each_with_its_credentials(
) {
    // Named for a host only the proxy reaches (it tunnels any name to loopback), and for no
    // address: verified against the receiver's name, never the proxy's.
    let (ca_pem, config) = make_certificates_for(&["receiver.invalid"]);
    let receiver = TlsReceiver::start(config);
    let proxy = Proxy::start();
    let direct = Proxy::start();
    let base = Base::new("webhook-proxy");
    std::fs::write(base.path.join("ca.pem"), &ca_pem).unwrap();
    let https_url = format!(
        "https://hook:s3cret@receiver.invalid:{}/hook",
        receiver.addr.port()
    );
    // A name only the proxy could resolve: understudy must hand this one over, not connect.
    let http_url = "http://plain:pw@receiver.invalid:8080/plain";
    let direct_url = format!("http://127.0.0.1:{}/direct", direct.addr.port());
    base.write_env(&format!(
        "WEBHOOK_URLS={https_url},{http_url},{direct_url}\nWEBHOOK_CA_FILE=ca.pem\nWEBHOOK_FORMAT=slack"
    ));
    let proxy_url = format!("http://egress:pa55@127.0.0.1:{}", proxy.addr.port());
    let mut u = Understudy::start_with_env(
        &base,
        &[
            ("HTTPS_PROXY", proxy_url.as_str()),
            ("HTTP_PROXY", proxy_url.as_str()),
            ("NO_PROXY", "127.0.0.1"),
        ],
    );
    base.drop_fixture("1.0.0", "");
    u.wait_serving();
    let head = receiver.head_of("understudy: app 1.0.0 is ready as running");
    assert!(head.starts_with("post /hook http/1.1"), "{head}");
    assert!(
        !head.contains("proxy-authorization"),
        "the proxy's credentials stay with it: {head}"
    );
    // base64("hook:s3cret"): the URL's credentials, as Basic authorization, not in the URL.
    assert!(
        head.contains(
            "authorization: basic aG9vazpzM2NyZXQ="
                .to_ascii_lowercase()
                .as_str()
        ),
        "{head}"
    );
    let heads = wait_until(
        "the http line handed to the proxy",
        Duration::from_secs(20),
        || {
            let heads = proxy.heads();
            heads
                .iter()
                .any(|h| h.starts_with("post http://receiver.invalid:8080/plain http/1.1"))
                .then_some(heads)
        },
    );
    each_credential_in_its_place(&heads, receiver.addr.port());
    let direct_heads = wait_until(
        "the direct receiver's lines",
        Duration::from_secs(20),
        || Some(direct.heads()).filter(|h| !h.is_empty()),
    );
    let direct_only = direct_heads
        .iter()
        .all(|h| h.starts_with("post /direct http/1.1"));
    assert!(direct_only, "{direct_heads:#?}");
    let log = u.log_text();
    assert!(
        !log.contains("s3cret") && !log.contains("pa55") && !log.contains(":pw"),
        "{log}"
    );
    u.stop();
}

/// What the proxy saw: the tunnel to the https receiver (port `tunnelled`) and each handed-over
/// http request carry the proxy's credentials; the handed-over ones also carry the receiver's own,
/// out of the request line; the host `NO_PROXY` names never came.
fn each_credential_in_its_place(heads: &[String], tunnelled: u16) {
    // base64("egress:pa55"): the proxy's own credentials, on the tunnel and on the handed request.
    let proxy_auth = &"proxy-authorization: basic ZWdyZXNzOnBhNTU=".to_ascii_lowercase();
    let tunnel = format!("connect receiver.invalid:{} http/1.1", tunnelled);
    assert!(
        heads
            .iter()
            .any(|h| h.starts_with(&tunnel) && h.contains(proxy_auth)),
        "{heads:#?}"
    );
    // base64("plain:pw"): the receiver's own credentials ride along, out of the request line.
    let auth = &"\r\nauthorization: basic cGxhaW46cHc=".to_ascii_lowercase();
    assert!(
        heads
            .iter()
            .filter(|h| h.starts_with("post "))
            .all(|h| h.contains(proxy_auth) && h.contains(auth) && !h.contains("pw@")),
        "{heads:#?}"
    );
    assert!(
        heads.iter().all(|h| !h.contains("/direct")),
        "NO_PROXY's host is not handed over: {heads:#?}"
    );
}
