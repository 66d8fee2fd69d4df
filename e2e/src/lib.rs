//! Harness for the browser tests: a real back end serving the built front
//! end (Trunk's `dist/`), a `chromedriver`, and a headless Chromium session.
//!
//! `cargo xtask test` builds the front end and installs Chromium first;
//! run alone, the tests fail with a message saying what is missing.

pub mod balancer;
pub mod record;
pub mod static_site;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use backend::{Backend, Config};
use fantoccini::{Client, ClientBuilder, Locator};

/// The project root (the workspace directory), from where cargo runs the
/// tests now, not where they were compiled (a shared target directory).
pub fn project_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    Path::new(&manifest_dir)
        .parent()
        .expect("e2e sits in the workspace")
        .to_path_buf()
}

/// The built front end: `$PLAYGROUND_DIST`, or `dist/` at the root.
pub fn dist_dir() -> PathBuf {
    let dir = std::env::var_os("PLAYGROUND_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("dist"));
    assert!(
        dir.join("index.html").is_file(),
        "no built front end in {}: run `cargo xtask test` (it builds it with Trunk first)",
        dir.display()
    );
    dir
}

/// A running back end on a free port, with its own Redis and database.
pub struct Server {
    pub addr: SocketAddr,
    pub backend: std::sync::Arc<backend::Playground>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<()>>,
    // Keeps Redis running and the data directory alive.
    _owner: Backend,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts a back end serving the built front end.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> Server {
        Server::launch(Some(dist_dir()), tweak).await
    }

    /// Starts a back end serving its API and WebSocket only (no built
    /// front end needed): the lesson recorder's.
    pub async fn start_api_only(tweak: impl FnOnce(&mut Config)) -> Server {
        Server::launch(None, tweak).await
    }

    async fn launch(dist: Option<PathBuf>, tweak: impl FnOnce(&mut Config)) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::defaults();
        config.data_dir = dir.path().to_path_buf();
        config.static_dir = dist.unwrap_or_else(|| dir.path().join("no-front-end"));
        // Counts, not timeouts, are under test: a herd on a loaded machine
        // must not turn into fallbacks (see backend/tests/common).
        config.redis_timeout_ms = 5_000;
        // Likewise herds count every load: the most connections, and the
        // longest wait for one. Tests of a saturated database set their own.
        config.db_connections = 100;
        config.db_wait_ms = 30_000;
        tweak(&mut config);
        let owner = Backend::start(config).expect("back end starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut server = Server {
            addr,
            backend: owner.playground.clone(),
            stop: None,
            serving: None,
            _owner: owner,
            _dir: dir,
        };
        server.serve_on(listener);
        server
    }

    fn serve_on(&mut self, listener: tokio::net::TcpListener) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = self._owner.share();
        self.stop = Some(stop);
        self.serving = Some(tokio::spawn(async move {
            let _ = serving
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await;
        }));
    }

    /// Stops serving HTTP and WebSockets (closing open sockets), as if the
    /// back end had gone away; Redis and the data stay.
    pub async fn stop_serving(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            let _ = serving.await;
        }
    }

    /// Serves again on the same address after [`Server::stop_serving`].
    pub async fn serve_again(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("the same port again");
        self.serve_on(listener);
    }

    /// The page URL for a sandbox.
    pub fn page(&self, sandbox: &str) -> String {
        format!("http://{}/?sandbox={sandbox}", self.addr)
    }

    /// Stops this back end's Redis, as if it had crashed.
    pub fn stop_redis(&mut self) {
        if let Some(redis) = self._owner.embedded_redis.as_mut() {
            redis.stop();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A `chromedriver` child process on a free port; killed on drop.
pub struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    pub fn start() -> Driver {
        let port = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let program = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        // A process group of its own: the browsers it starts join it, and
        // the drop ends the whole group (killing chromedriver alone left its
        // browsers running, hundreds after a few test runs).
        let child = std::os::unix::process::CommandExt::process_group(&mut Command::new(&program), 0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {program}: {e}. `cargo xtask test` installs chromium and chromium-driver")
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, port }
    }

    /// A new headless Chromium session with the given window size.
    pub async fn browser(&self, width: u32, height: u32) -> Client {
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let capabilities = serde_json::json!({
            "goog:chromeOptions": {
                "binary": binary,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--window-size={width},{height}"),
                ]
            }
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let client = ClientBuilder::native()
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session");
        // Window sizes include the browser's frame; grow the window until
        // the page's viewport itself is the size asked for.
        let _ = client.set_window_size(width, height).await;
        let inner = client
            .execute("return [window.innerWidth, window.innerHeight];", vec![])
            .await
            .ok()
            .and_then(|v| serde_json::from_value::<(u32, u32)>(v).ok());
        if let Some((w, h)) = inner {
            let _ = client
                .set_window_size(width + width.saturating_sub(w), height + height.saturating_sub(h))
                .await;
        }
        client
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group's id is chromedriver's pid (`process_group(0)`).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `check` returns `Some`, polling the page; fails with `what`
/// and the page's text after `timeout`.
pub async fn wait_for<T, F, Fut>(client: &Client, what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            let text = match client.find(Locator::Css("body")).await {
                Ok(body) => body.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            panic!("timed out waiting for {what}; the page says:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How long [`wait_for_text`] waits: long enough for a loaded 2-core
/// machine, and a failing test still ends.
pub const TEXT_WAIT: Duration = Duration::from_secs(60);

/// Waits until the text of the first element matching `css` passes `ok`
/// (for [`TEXT_WAIT`] at most); returns that text. Fails as [`wait_for`]
/// does, naming `what`.
pub async fn wait_for_text(client: &Client, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    wait_for(client, what, TEXT_WAIT, || async {
        text_of(client, css).await.filter(|t| ok(t))
    })
    .await
}

/// With `SCREENSHOTS_DIR` set, scrolls `css` into view and saves a
/// screenshot as `{dir}/{name}.png`, for people reviewing the UI.
pub async fn review_screenshot(client: &Client, name: &str, css: &str) {
    let Some(dir) = std::env::var_os("SCREENSHOTS_DIR") else {
        return;
    };
    let script = format!("document.querySelector({css:?})?.scrollIntoView({{block: 'center'}});");
    let _ = client.execute(&script, vec![]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    if let Ok(png) = client.screenshot().await {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(PathBuf::from(dir).join(format!("{name}.png")), png);
    }
}

/// Waits until at least `n` elements match `css`; returns their texts in
/// page order.
pub async fn texts_of(client: &Client, css: &str, n: usize) -> Vec<String> {
    wait_for(
        client,
        &format!("{n} of {css}"),
        Duration::from_secs(60),
        || async {
            let found = client.find_all(Locator::Css(css)).await.ok()?;
            if found.len() < n {
                return None;
            }
            let mut texts = Vec::new();
            for element in found {
                texts.push(element.text().await.ok()?);
            }
            Some(texts)
        },
    )
    .await
}

/// Clicks the first element matching `css`.
pub async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no element {css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
}

/// Picks `value` in the first `<select>` matching `css`.
pub async fn select(client: &Client, css: &str, value: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no element {css}: {e}"))
        .select_by_value(value)
        .await
        .unwrap_or_else(|e| panic!("cannot pick {value} in {css}: {e}"));
}

/// The text of the first element matching `css`, if any.
pub async fn text_of(client: &Client, css: &str) -> Option<String> {
    client.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

/// An attribute of the first element matching `css`, if any.
pub async fn attr_of(client: &Client, css: &str, attr: &str) -> Option<String> {
    client.find(Locator::Css(css)).await.ok()?.attr(attr).await.ok()?
}

/// The current value of the first form field matching `css`, if any.
pub async fn value_of(client: &Client, css: &str) -> Option<String> {
    client
        .find(Locator::Css(css))
        .await
        .ok()?
        .prop("value")
        .await
        .ok()?
}

/// A plain HTTP GET, as `curl` would send it; returns the whole response.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// Runs axe-core (installed by `cargo xtask setup --tests` from
/// `e2e/package-lock.json`) on the current page or frame; returns one line
/// per violation: the rule, its help text and where (up to three nodes).
pub async fn axe_violations(client: &Client) -> Vec<String> {
    let path = project_root().join("e2e/node_modules/axe-core/axe.min.js");
    let source = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; `cargo xtask setup --tests` installs it", path.display()));
    client
        .execute(&format!("{source}\nreturn true;"), vec![])
        .await
        .expect("axe-core loads");
    let script = r#"
        const done = arguments[arguments.length - 1];
        axe.run(document, { resultTypes: ["violations"] })
            .then(r => done(r.violations.map(v =>
                v.id + ": " + v.help + " [" + v.nodes.slice(0, 3).map(n => n.target.join(" ")).join(" | ") + "]")))
            .catch(e => done(["axe failed: " + e]));
    "#;
    let found = client.execute_async(script, vec![]).await.expect("axe runs");
    found
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Waits until the page (or frame) says it is connected and every panel
/// it shows has its code (a lab panel's module is fetched when the panel is
/// first shown; until then a "Loading…" card holds its place); returns the
/// badge's text (it names the sandbox).
pub async fn wait_live(client: &Client) -> String {
    wait_for(
        client,
        "the WebSocket to connect and the panels to load",
        Duration::from_secs(60),
        || async {
            let live = text_of(client, "[data-testid=link]")
                .await
                .filter(|t| t.starts_with("Live"))?;
            let loading = client
                .find_all(Locator::Css("[data-testid=panel-loading]"))
                .await
                .ok()?;
            loading.is_empty().then_some(live)
        },
    )
    .await
}

/// Waits (at most a minute) until the element matching `css` is there
/// and enabled.
pub async fn wait_enabled(client: &Client, css: &str) {
    wait_for(
        client,
        &format!("{css} to be enabled"),
        Duration::from_secs(60),
        || async {
            let element = client.find(Locator::Css(css)).await.ok()?;
            element.is_enabled().await.ok().filter(|e| *e)
        },
    )
    .await;
}

/// Presses the lesson step's run button once it is enabled and waits
/// until the experiment says it is done (failing on "stopped").
pub async fn run_experiment(client: &Client) {
    let wait = Duration::from_secs(60);
    wait_enabled(client, "[data-testid=run-experiment]").await;
    click(client, "[data-testid=run-experiment]").await;
    wait_for(client, "the experiment to finish", wait, || async {
        let status = text_of(client, "[data-testid=experiment-status]").await?;
        assert!(!status.contains("stopped"), "{status}");
        status.starts_with("Done").then_some(())
    })
    .await;
}
