//! Who may use the playground, and how much: the guard in front of the
//! handlers for a back end that anonymous visitors reach through a
//! documentation site (tutorial section 6.6).
//!
//! - **Origins**: a page may drive the WebSocket and the API only from an
//!   allowed origin: hosted, the playground's own (its `Host`) or one of
//!   `--allowed-origins`; local, a loopback one (the page itself, `trunk
//!   serve`) or one of `--allowed-origins`, never merely one that matches
//!   the `Host` header (a DNS-rebinding page would). Requests without an
//!   `Origin` header (curl, scripts) are not pages and pass.
//! - **Client addresses**: the peer's, or, behind a proxy, the address it
//!   appended to `X-Forwarded-For` (the last one: earlier ones are whatever
//!   the client sent). IPv6 clients count by their /64, which one host
//!   usually holds whole. Per address: open WebSockets, and new sandboxes
//!   per minute (governor's keyed limiter).
//! - **Security headers**: a Content-Security-Policy that allows the
//!   front end's own scripts by hash, `frame-ancestors` for embedding,
//!   `nosniff`, no referrer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use base64::Engine as _;
use sha2::Digest as _;

use crate::config::{Config, Limits};

/// The access policy and the per-client counts.
pub struct Access {
    /// Origins allowed besides the playground's own, as `scheme://host[:port]`.
    allowed: Vec<String>,
    /// Whether any loopback origin is allowed (local use).
    loopback: bool,
    trust_forwarded_for: bool,
    /// Open WebSockets by client address.
    sockets: Mutex<HashMap<IpAddr, usize>>,
    most_sockets: usize,
    /// New sandboxes by client address.
    new_sandboxes: governor::DefaultKeyedRateLimiter<IpAddr>,
}

/// An open WebSocket counted against its client; counted out on drop.
pub struct SocketSlot {
    access: Arc<Access>,
    client: IpAddr,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut sockets = lock(&self.access.sockets);
        if let Some(count) = sockets.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                sockets.remove(&self.client);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Access {
    /// The policy a configuration asks for.
    pub fn new(config: &Config, limits: &Limits) -> Access {
        let per_minute = NonZeroU32::new(limits.sandboxes_per_minute).unwrap_or(NonZeroU32::MIN);
        Access {
            allowed: config.allowed_origins.iter().map(|o| normalize(o)).collect(),
            loopback: !config.hosted,
            trust_forwarded_for: config.trust_forwarded_for,
            sockets: Mutex::new(HashMap::new()),
            most_sockets: limits.sockets_per_client,
            new_sandboxes: governor::RateLimiter::keyed(governor::Quota::per_minute(per_minute)),
        }
    }

    /// Whether the request may use the API or the WebSocket: no `Origin`
    /// (not a page), the playground's own origin, an allowed one, or (local
    /// use) a loopback one.
    pub fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get("origin").and_then(|o| o.to_str().ok()) else {
            return true;
        };
        let origin = normalize(origin);
        if self.allowed.contains(&origin) {
            return true;
        }
        let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
        if self.loopback {
            return is_loopback(authority);
        }
        let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("");
        !host.is_empty() && authority.eq_ignore_ascii_case(host)
    }

    /// The client as the limits count it: the peer's address or, when the
    /// back end is told to trust its proxy, the last `X-Forwarded-For`
    /// entry (the one that proxy appended); an IPv6 address by its /64.
    pub fn client(&self, headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
        let mut address = peer.ip();
        if self.trust_forwarded_for {
            let forwarded = headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|h| h.to_str().ok())
                .flat_map(|h| h.split(','))
                .next_back()
                .map(str::trim);
            match forwarded.map(parse_address) {
                Some(Some(forwarded)) => address = forwarded,
                Some(None) => tracing::debug!("X-Forwarded-For without an address; counting the proxy's"),
                None => {}
            }
        }
        by_network(address)
    }

    /// Counts a new WebSocket of `client` in, if it has room for one more.
    pub fn open_socket(self: &Arc<Self>, client: IpAddr) -> Option<SocketSlot> {
        let mut sockets = lock(&self.sockets);
        let count = sockets.entry(client).or_insert(0);
        if *count >= self.most_sockets {
            return None;
        }
        *count += 1;
        Some(SocketSlot {
            access: self.clone(),
            client,
        })
    }

    /// Whether `client` may open one more new sandbox now.
    pub fn may_create_sandbox(&self, client: IpAddr) -> bool {
        let allowed = self.new_sandboxes.check_key(&client).is_ok();
        // Forget addresses whose limit has refilled, so the map stays small.
        self.new_sandboxes.retain_recent();
        allowed
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]:5678`.
fn parse_address(text: &str) -> Option<IpAddr> {
    if let Ok(address) = text.parse::<IpAddr>() {
        return Some(address);
    }
    text.parse::<SocketAddr>().ok().map(|a| a.ip())
}

/// IPv6 addresses by their /64 (a host usually has a whole /64); IPv4 as
/// they are, IPv4-mapped ones too.
fn by_network(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// `https://Docs.Example.com/` → `https://docs.example.com`.
fn normalize(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Whether `host[:port]` names this machine.
fn is_loopback(authority: &str) -> bool {
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The Content-Security-Policy of every response: scripts only from the
/// playground itself (its inline boot scripts by hash, WebAssembly allowed),
/// connections only to itself, framing only by itself and `frame_ancestors`.
///
/// The hashes come from `index.html` as it is on disk now: a page served
/// later must get a policy computed from the bytes it was served with
/// ([`page_with_policy`]), or a front end rebuilt under a running back end
/// would be refused its own boot script.
pub fn content_security_policy(static_dir: &Path, frame_ancestors: &[String]) -> String {
    page_with_policy(static_dir, frame_ancestors)
        .map_or_else(|| policy_for_page("", frame_ancestors), |(_, policy)| policy)
}

/// The built front end's `index.html` as it is on disk now, with the
/// Content-Security-Policy that allows exactly its inline scripts: one
/// read, so the page and its policy always match. `None` when no front
/// end is built.
pub fn page_with_policy(static_dir: &Path, frame_ancestors: &[String]) -> Option<(String, String)> {
    let html = std::fs::read_to_string(static_dir.join("index.html")).ok()?;
    let policy = policy_for_page(&html, frame_ancestors);
    Some((html, policy))
}

/// The policy for a page whose inline scripts are those of `html`.
fn policy_for_page(html: &str, frame_ancestors: &[String]) -> String {
    let scripts: String = inline_script_hashes(html)
        .iter()
        .map(|hash| format!(" '{hash}'"))
        .collect();
    let ancestors: String = frame_ancestors
        .iter()
        .map(|a| format!(" {}", normalize(a)))
        .collect();
    format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{scripts}; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; \
         frame-ancestors 'self'{ancestors}"
    )
}

/// `sha256-…` of each inline `<script>` of the built `index.html` (Trunk
/// writes one to start the WebAssembly; index.html has one that reports a
/// failure to start), so the CSP can allow exactly them.
fn inline_script_hashes(html: &str) -> Vec<String> {
    let mut hashes = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let after = &rest[start..];
        let Some(open_end) = after.find('>') else {
            break;
        };
        let tag = &after[..open_end];
        let body = &after[open_end + 1..];
        let Some(close) = body.find("</script>") else {
            break;
        };
        if !tag.contains("src=") {
            let digest = sha2::Sha256::digest(&body.as_bytes()[..close]);
            hashes.push(format!(
                "sha256-{}",
                base64::engine::general_purpose::STANDARD.encode(digest)
            ));
        }
        rest = &body[close..];
    }
    hashes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, value.parse().unwrap());
        }
        headers
    }

    fn access(hosted: bool, allowed: &[&str]) -> Access {
        let mut config = Config::defaults();
        config.hosted = hosted;
        config.allowed_origins = allowed.iter().map(|a| a.to_string()).collect();
        Access::new(&config, &config.limits())
    }

    #[test]
    fn pages_from_other_origins_are_refused() {
        let hosted = access(true, &["https://docs.example.com"]);
        let from = |origin: &str| headers(&[("origin", origin), ("host", "play.example.com")]);
        assert!(
            hosted.origin_allowed(&headers(&[("host", "play.example.com")])),
            "curl"
        );
        assert!(
            hosted.origin_allowed(&from("https://play.example.com")),
            "same origin"
        );
        assert!(
            hosted.origin_allowed(&from("https://Docs.Example.com/")),
            "allowed"
        );
        assert!(!hosted.origin_allowed(&from("https://evil.example")));
        assert!(
            !hosted.origin_allowed(&from("http://127.0.0.1:8081")),
            "hosted: no loopback"
        );
        let local = access(false, &[]);
        assert!(
            local.origin_allowed(&from("http://127.0.0.1:8081")),
            "trunk serve"
        );
        assert!(local.origin_allowed(&from("http://localhost:3000")));
        assert!(!local.origin_allowed(&from("https://evil.example")));
        // DNS rebinding: a page whose name now points at 127.0.0.1 sends
        // its own name as Host; locally that is not enough.
        let rebound = headers(&[
            ("origin", "http://evil.example:8080"),
            ("host", "evil.example:8080"),
        ]);
        assert!(!local.origin_allowed(&rebound));
    }

    #[test]
    fn sockets_are_counted_per_client_and_given_back() {
        let access = Arc::new(access(true, &[]));
        let client: IpAddr = "10.0.0.1".parse().unwrap();
        let slots: Vec<_> = (0..8).map_while(|_| access.open_socket(client)).collect();
        assert_eq!(slots.len(), 8, "hosted: 8 sockets per client");
        assert!(access.open_socket(client).is_none());
        assert!(
            access.open_socket("10.0.0.2".parse().unwrap()).is_some(),
            "others unaffected"
        );
        drop(slots);
        assert!(access.open_socket(client).is_some());
    }

    #[test]
    fn new_sandboxes_are_rate_limited_per_client() {
        let access = access(true, &[]);
        let client: IpAddr = "10.0.0.1".parse().unwrap();
        let allowed = (0..100).filter(|_| access.may_create_sandbox(client)).count();
        assert_eq!(allowed, 6, "hosted: 6 a minute");
        assert!(access.may_create_sandbox("10.0.0.2".parse().unwrap()));
    }

    #[test]
    fn forwarded_addresses_count_only_when_trusted_and_only_the_proxys() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // The client wrote the first entry; the proxy appended the last.
        let forwarded = headers(&[("x-forwarded-for", "198.51.100.99, 203.0.113.7")]);
        assert_eq!(access(true, &[]).client(&forwarded, peer), peer.ip());
        let mut config = Config::defaults();
        config.trust_forwarded_for = true;
        let trusting = Access::new(&config, &config.limits());
        assert_eq!(trusting.client(&forwarded, peer), ip("203.0.113.7"));
        let with_port = headers(&[("x-forwarded-for", "203.0.113.7:4711")]);
        assert_eq!(trusting.client(&with_port, peer), ip("203.0.113.7"));
        let v6 = headers(&[("x-forwarded-for", "[2001:db8:1:2:3:4:5:6]:443")]);
        assert_eq!(trusting.client(&v6, peer), ip("2001:db8:1:2::"), "a /64");
        let garbage = headers(&[("x-forwarded-for", "not an address")]);
        assert_eq!(trusting.client(&garbage, peer), peer.ip());
    }

    #[test]
    fn the_csp_allows_the_boot_script_by_hash_and_the_embedding_sites() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("index.html"),
            "<script type=\"module\">boot();</script><script src=\"/x.js\"></script>\
             <div id=\"boot\"></div><script>watch();</script>",
        )
        .unwrap();
        let csp = content_security_policy(dir.path(), &["https://docs.example.com".into()]);
        for inline in [&b"boot();"[..], b"watch();"] {
            let digest = sha2::Sha256::digest(inline);
            let expected = base64::engine::general_purpose::STANDARD.encode(digest);
            assert!(csp.contains(&format!("'sha256-{expected}'")), "{csp}");
        }
        assert_eq!(csp.matches("sha256-").count(), 2, "only the inline scripts");
        assert!(
            csp.contains("frame-ancestors 'self' https://docs.example.com"),
            "{csp}"
        );
        assert!(!csp.contains("'unsafe-eval'"), "wasm-unsafe-eval only");
    }
}
