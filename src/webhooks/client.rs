//! The one HTTP client webhooks POST with: hyper-util's pooled client over rustls (hyper-rustls),
//! trusting the system's roots and `WEBHOOK_CA_FILE`, through the proxy that `HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` name (upper or lower case, as reqwest and Go's clients
//! read them; http:// proxies only). Built from crates the rest of understudy already compiles,
//! for one POST; redirects are not followed (a 3xx is a failed delivery that names its status), as
//! curl does by default: a 301 or 302 would turn the POST into a GET and lose the event unseen.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::prelude::{Engine, BASE64_STANDARD};
use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, PROXY_AUTHORIZATION};
use http::{Request, StatusCode, Uri};
use http_body_util::Full;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use percent_encoding::percent_decode_str;
use rustls::RootCertStore;
use tokio::net::TcpStream;

use super::resolve::ThreadResolver;
use crate::config::WebhookCa;

/// How long one POST may take, connecting and the TLS handshake included, before it counts as
/// failed.
const POST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection to a receiver is kept for the next event.
const POOL_IDLE: Duration = Duration::from_secs(30);

type BoxError = Box<dyn StdError + Send + Sync>;

/// TCP connections whose hosts are looked up off tokio's blocking pool (see [`ThreadResolver`]).
type Http = HttpConnector<ThreadResolver>;

/// One receiver's client: how it is reached and what it is told, chosen once when its task starts.
pub struct Poster {
    client: Client<HttpsConnector<Route>, Full<Bytes>>,
    /// The URL without its credentials: the only form that goes on the wire.
    target: Uri,
    /// Basic authorization from the URL's `user:password@`, as curl and browsers send it.
    auth: Option<HeaderValue>,
    /// Basic authorization for a forward proxy (http receivers; https ones send it in CONNECT).
    proxy_auth: Option<HeaderValue>,
}

impl Poster {
    /// The client for `target`, its hosts looked up by `resolver`; the error says why not, without
    /// the URL (it may hold credentials).
    pub fn new(
        target: &str,
        ca: Option<&WebhookCa>,
        resolver: ThreadResolver,
    ) -> Result<Poster, String> {
        let (target, auth) = without_credentials(target)?;
        let proxy = Matcher::from_env().intercept(&target);
        let (route, proxy_auth) = route(&target, proxy, resolver)?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(ca)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(route);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(https);
        Ok(Poster {
            client,
            target,
            auth,
            proxy_auth,
        })
    }

    /// POSTs `body` (JSON) once, labelled with its event's name and sequence number: the answer's
    /// status, or why none came.
    pub async fn post(&self, event: &str, seq: u64, body: Bytes) -> Result<StatusCode, String> {
        let mut req = Request::post(self.target.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("X-Understudy-Event", event)
            .header("X-Understudy-Seq", seq)
            .body(Full::new(body))
            .map_err(|e| format!("cannot make the request: {e}"))?;
        let headers = req.headers_mut();
        if let Some(a) = &self.auth {
            headers.insert(AUTHORIZATION, a.clone());
        }
        if let Some(a) = &self.proxy_auth {
            headers.insert(PROXY_AUTHORIZATION, a.clone());
        }
        match tokio::time::timeout(POST_TIMEOUT, self.client.request(req)).await {
            Err(_) => Err(format!("no answer within {} s", POST_TIMEOUT.as_secs())),
            Ok(Err(e)) => Err(why(&e)),
            Ok(Ok(answer)) => Ok(answer.status()),
        }
    }
}

/// How to reach `target`, given the proxy the environment names for it (if any), and the
/// authorization a forward proxy is sent. Only http:// proxies are spoken to: TLS to the proxy
/// itself, or SOCKS, would otherwise be spoken to in plain HTTP, credentials and all.
fn route(
    target: &Uri,
    proxy: Option<Intercept>,
    resolver: ThreadResolver,
) -> Result<(Route, Option<HeaderValue>), String> {
    let mut http = HttpConnector::new_with_resolver(resolver);
    http.enforce_http(false);
    http.set_nodelay(true);
    let Some(proxy) = proxy else {
        return Ok((Route::Direct(http), None));
    };
    let to = proxy.uri().clone();
    if to.scheme_str() != Some("http") {
        let shown = crate::config::redacted(&to.to_string());
        return Err(format!(
            "the proxy {shown} that HTTPS_PROXY, HTTP_PROXY or ALL_PROXY names is not an http:// \
             one, the only kind webhooks use; name an http:// proxy, or the receiver's host in \
             NO_PROXY"
        ));
    }
    if target.scheme_str() == Some("https") {
        let mut tunnel = Tunnel::new(to, http);
        if let Some(a) = proxy.basic_auth() {
            tunnel = tunnel.with_auth(a.clone());
        }
        return Ok((Route::Tunnel(tunnel), None));
    }
    Ok((
        Route::Forward { http, proxy: to },
        proxy.basic_auth().cloned(),
    ))
}

/// `e` and its sources, as one line: hyper's own text ("client error (Connect)") hides the
/// cause, such as an unknown certificate issuer.
fn why(e: &dyn StdError) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// `url` without its `user:password@`, and those as a Basic authorization header (none for an
/// empty `@`, as reqwest read it).
fn without_credentials(url: &str) -> Result<(Uri, Option<HeaderValue>), String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("the URL cannot be used: {e}"))?;
    let written = uri.authority().map_or("", |a| a.as_str()).to_string();
    let Some((userinfo, host)) = written.rsplit_once('@') else {
        return Ok((uri, None));
    };
    let auth = match userinfo.split_once(':').unwrap_or((userinfo, "")) {
        ("", "") => None,
        (user, password) => {
            let pair = format!(
                "{}:{}",
                percent_decode_str(user).decode_utf8_lossy(),
                percent_decode_str(password).decode_utf8_lossy()
            );
            let mut auth = HeaderValue::try_from(format!("Basic {}", BASE64_STANDARD.encode(pair)))
                .map_err(|e| format!("the URL's credentials cannot be sent: {e}"))?;
            auth.set_sensitive(true);
            Some(auth)
        }
    };
    let mut parts = uri.into_parts();
    parts.authority = Some(
        host.parse()
            .map_err(|e| format!("the URL's host cannot be used: {e}"))?,
    );
    let uri = Uri::from_parts(parts).map_err(|e| format!("the URL cannot be used: {e}"))?;
    Ok((uri, auth))
}

/// rustls with the system's trusted roots and those of `ca`.
fn tls_config(ca: Option<&WebhookCa>) -> Result<rustls::ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    if system.certs.is_empty() {
        let why: Vec<String> = system.errors.iter().map(|e| e.to_string()).collect();
        tracing::warn!(
            "webhooks: no trusted root certificates found on this system ({}); https receivers \
             are trusted only if WEBHOOK_CA_FILE signs them",
            if why.is_empty() {
                "none installed".to_string()
            } else {
                why.join("; ")
            }
        );
    }
    roots.add_parsable_certificates(system.certs);
    if let Some(ca) = ca {
        ca.add_to(&mut roots)?;
    }
    // *ring*, named rather than taken from the process default (which would panic if a second
    // provider were ever compiled in). rustls 0.23.48 deprecates it for lacking post-quantum key
    // exchange; aws-lc-rs, which has it, needs cmake and is the slowest crate to build.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS cannot be set up: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// How a receiver is reached: straight, through a proxy's CONNECT tunnel (https receivers), or
/// by handing the request to a forward proxy (http receivers).
#[derive(Clone)]
enum Route {
    Direct(Http),
    Tunnel(Tunnel<Http>),
    Forward { http: Http, proxy: Uri },
}

impl tower_service::Service<Uri> for Route {
    type Response = Hop;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Hop, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Neither connector waits for readiness: each call connects on its own.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        match self {
            Route::Direct(http) => {
                let connecting = http.call(dst);
                Box::pin(async move { Ok(Hop::new(connecting.await?, false)) })
            }
            Route::Tunnel(tunnel) => {
                let connecting = tunnel.call(dst);
                Box::pin(async move { Ok(Hop::new(connecting.await?, false)) })
            }
            Route::Forward { http, proxy } => {
                let connecting = http.call(proxy.clone());
                Box::pin(async move { Ok(Hop::new(connecting.await?, true)) })
            }
        }
    }
}

/// A connection to a receiver or a proxy; one to a forward proxy says so, so the request goes
/// out in absolute form (`POST http://host/path`), as a proxy needs it.
struct Hop {
    io: TokioIo<TcpStream>,
    forward_proxy: bool,
}

impl Hop {
    fn new(io: TokioIo<TcpStream>, forward_proxy: bool) -> Hop {
        Hop { io, forward_proxy }
    }
}

impl Connection for Hop {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.forward_proxy)
    }
}

impl Read for Hop {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for Hop {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url_and_become_basic_authorization() {
        let (uri, auth) =
            without_credentials("https://Aladdin:open%20sesame@h.example:8443/in?x=1").unwrap();
        assert_eq!(uri.to_string(), "https://h.example:8443/in?x=1");
        // base64("Aladdin:open sesame")
        assert_eq!(auth.unwrap(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        let (uri, auth) = without_credentials("http://127.0.0.1:9000/hooks").unwrap();
        assert_eq!(
            (uri.to_string().as_str(), auth),
            ("http://127.0.0.1:9000/hooks", None)
        );
        let (_, auth) = without_credentials("http://token@h/p").unwrap();
        assert_eq!(auth.unwrap(), "Basic dG9rZW46"); // base64("token:")
        let (uri, auth) = without_credentials("http://@h/p").unwrap();
        assert_eq!((uri.to_string().as_str(), auth), ("http://h/p", None));
    }

    #[test]
    fn only_http_proxies_are_spoken_to_tunnelled_for_https_handed_over_for_http() {
        let https: Uri = "https://h.example/in".parse().unwrap();
        let http: Uri = "http://h.example/in".parse().unwrap();
        let via = |proxy: &str, target: &Uri| {
            let m = Matcher::builder().all(proxy.to_string()).build();
            route(target, m.intercept(target), ThreadResolver::default())
        };
        let direct = route(&https, None, ThreadResolver::default());
        assert!(matches!(direct, Ok((Route::Direct(_), None))));
        assert!(matches!(
            via("http://u:p@proxy:3128", &https),
            Ok((Route::Tunnel(_), None))
        ));
        let Ok((Route::Forward { proxy, .. }, Some(auth))) = via("http://u:p@proxy:3128", &http)
        else {
            panic!("an http receiver is handed to the proxy with its credentials");
        };
        assert_eq!(proxy.to_string(), "http://proxy:3128/");
        assert_eq!(auth, "Basic dTpw"); // base64("u:p")
        for other in [
            "https://u:secret@proxy:443",
            "socks5h://proxy:1080",
            "socks5://proxy",
        ] {
            for target in [&https, &http] {
                let Err(why) = via(other, target) else {
                    panic!("{other} is refused");
                };
                assert!(why.contains("http://") && !why.contains("secret"), "{why}");
            }
        }
    }

    #[test]
    fn a_cause_is_named_once() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("client error (Connect)")
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::other(
            "invalid peer certificate: UnknownIssuer",
        ));
        assert_eq!(
            why(&e),
            "client error (Connect): invalid peer certificate: UnknownIssuer"
        );
    }
}
