//! Who may use the playground, and how much: the guard in front of the
//! handlers for a back end that anonymous visitors reach through a
//! documentation site (tutorial section 6.6).
//!
//! - **Origins**: a page may drive the WebSocket and the API only from the
//!   playground's own origin or an allowed one (local use also allows any
//!   loopback origin, for `trunk serve`). Requests without an `Origin`
//!   header (curl, scripts) are not pages and pass.
//! - **Client addresses**: open WebSockets per address, and new sandboxes
//!   per address per minute (governor's keyed limiter).
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
        let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("");
        let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
        if !host.is_empty() && authority.eq_ignore_ascii_case(host) {
            return true;
        }
        if self.allowed.contains(&origin) {
            return true;
        }
        self.loopback && is_loopback(authority)
    }

    /// The client's address: the peer's, or the first of X-Forwarded-For
    /// when the back end is told to trust it.
    pub fn client(&self, headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
        if self.trust_forwarded_for {
            let forwarded = headers
                .get("x-forwarded-for")
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.split(',').next())
                .and_then(|a| a.trim().parse::<IpAddr>().ok());
            if let Some(address) = forwarded {
                return address;
            }
        }
        peer.ip()
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
/// playground itself (its inline boot script by hash, WebAssembly allowed),
/// connections only to itself, framing only by itself and `frame_ancestors`.
pub fn content_security_policy(static_dir: &Path, frame_ancestors: &[String]) -> String {
    let scripts: String = inline_script_hashes(static_dir)
        .iter()
        .map(|hash| format!(" '{hash}'"))
        .collect();
    let ancestors: String = frame_ancestors
        .iter()
        .map(|a| format!(" {}", normalize(a)))
        .collect();
    format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{scripts}; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'self'{ancestors}"
    )
}

/// `sha256-…` of each inline `<script>` of the built `index.html` (Trunk
/// writes one to start the WebAssembly), so the CSP can allow exactly them.
fn inline_script_hashes(static_dir: &Path) -> Vec<String> {
    let Ok(html) = std::fs::read_to_string(static_dir.join("index.html")) else {
        return Vec::new();
    };
    let mut hashes = Vec::new();
    let mut rest = html.as_str();
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
    fn forwarded_addresses_count_only_when_trusted() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let forwarded = headers(&[("x-forwarded-for", "203.0.113.7, 10.0.0.1")]);
        assert_eq!(access(true, &[]).client(&forwarded, peer), peer.ip());
        let mut config = Config::defaults();
        config.trust_forwarded_for = true;
        let trusting = Access::new(&config, &config.limits());
        assert_eq!(
            trusting.client(&forwarded, peer),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn the_csp_allows_the_boot_script_by_hash_and_the_embedding_sites() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("index.html"),
            "<script type=\"module\">boot();</script><script src=\"/x.js\"></script>",
        )
        .unwrap();
        let csp = content_security_policy(dir.path(), &["https://docs.example.com".into()]);
        let digest = sha2::Sha256::digest(b"boot();");
        let expected = base64::engine::general_purpose::STANDARD.encode(digest);
        assert!(csp.contains(&format!("'sha256-{expected}'")), "{csp}");
        assert_eq!(csp.matches("sha256-").count(), 1, "only the inline script");
        assert!(
            csp.contains("frame-ancestors 'self' https://docs.example.com"),
            "{csp}"
        );
        assert!(!csp.contains("'unsafe-eval'"), "wasm-unsafe-eval only");
    }
}
