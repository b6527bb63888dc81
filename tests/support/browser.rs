//! A real browser for the console tests: Debian's headless Chromium driven by
//! its chromedriver over the W3C WebDriver protocol (plain JSON over HTTP, so
//! this small client rides on reqwest and adds no dependency).
//!
//! The tests run when `BROWSER_TESTS=1` (CI sets it): then a browser that
//! cannot start FAILS the test. Without it, [`Browser::start`] prints a note
//! and returns `None`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

/// The env var that turns the browser tests on.
pub const ENABLE: &str = "BROWSER_TESTS";

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
    base: String,
    _profile: tempfile::TempDir,
}

/// An element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

fn binary(env: &str, default: &str) -> PathBuf {
    std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

impl Browser {
    /// Starts chromedriver and a fresh headless Chromium; `None` (with a note)
    /// when the browser tests are not switched on.
    pub async fn start(test: &str) -> Option<Browser> {
        if std::env::var(ENABLE).as_deref() != Ok("1") {
            eprintln!("{test}: skipped, set {ENABLE}=1 to run it in headless Chromium");
            return None;
        }
        let chromium = binary("BROWSER_TESTS_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = binary("BROWSER_TESTS_CHROMEDRIVER", "/usr/bin/chromedriver");
        for b in [&chromium, &chromedriver] {
            assert!(
                b.exists(),
                "{ENABLE}=1 but {} is missing (apt-get install chromium chromium-driver)",
                b.display()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Its own process group, so the Chromium it starts is ended with it.
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{ENABLE}=1 but chromedriver does not start: {e}"));
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .ok()
                    .is_some_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{ENABLE}=1 but chromedriver never became ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--disable-quic".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1100,900".into(),
            "--force-device-scale-factor=1".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let mut browser = Browser {
            http,
            session: String::new(),
            driver,
            base,
            _profile: profile,
        };
        let created = browser
            .raw("POST", "/session", caps)
            .await
            .unwrap_or_else(|e| panic!("{ENABLE}=1 but Chromium does not start: {e}"));
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {created}"))
            .to_string();
        Some(browser)
    }

    async fn raw(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let r = request
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status();
        let v: Value = r.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {}", v["value"]));
        }
        Ok(v["value"].clone())
    }

    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.raw(method, &path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    /// Opens a URL and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({"url": url})).await;
    }

    /// The address of the current page.
    pub async fn url(&self) -> String {
        self.cmd("GET", "/url", json!({}))
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The visible text of the whole page.
    pub async fn text(&self) -> String {
        let body = self.find("body").await.expect("a page has a body");
        self.text_of(&body).await
    }

    /// The elements matching a CSS selector.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let v = self
            .cmd(
                "POST",
                "/elements",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(|s| Element(s.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element matching a CSS selector, if any.
    pub async fn find(&self, css: &str) -> Option<Element> {
        self.find_all(css).await.into_iter().next()
    }

    /// The element matching `css`; the test fails when there is none.
    pub async fn get(&self, css: &str) -> Element {
        match self.find(css).await {
            Some(e) => e,
            None => panic!(
                "no element {css} on {}:\n{}",
                self.url().await,
                self.text().await
            ),
        }
    }

    /// The visible text of an element.
    pub async fn text_of(&self, e: &Element) -> String {
        let v = self
            .cmd("GET", &format!("/element/{}/text", e.0), json!({}))
            .await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// Clicks an element (as a user would: a button submits its form).
    pub async fn click(&self, e: &Element) {
        self.cmd("POST", &format!("/element/{}/click", e.0), json!({}))
            .await;
    }

    /// Types into a field.
    pub async fn type_into(&self, e: &Element, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{}/value", e.0),
            json!({"text": text}),
        )
        .await;
    }

    /// Runs a script in the page (test set-up only: the console itself has none).
    pub async fn execute(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// A cookie the browser holds for the current page, with its flags.
    pub async fn cookie(&self, name: &str) -> Option<Value> {
        let all = self.cmd("GET", "/cookie", json!({})).await;
        all.as_array()?.iter().find(|c| c["name"] == name).cloned()
    }

    /// Waits until the page's text contains `needle` (the page may reload
    /// itself meanwhile), and returns the text.
    pub async fn wait_for_text(&self, needle: &str, timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // A page being replaced by its reload may briefly have no body.
            let text = match self.find("body").await {
                Some(body) => match self
                    .raw(
                        "GET",
                        &format!("/session/{}/element/{}/text", self.session, body.0),
                        json!({}),
                    )
                    .await
                {
                    Ok(v) => v.as_str().unwrap_or_default().to_string(),
                    Err(_) => String::new(),
                },
                None => String::new(),
            };
            if text.contains(needle) {
                return text;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{needle:?} did not appear within {timeout:?}; the page says:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG screenshot of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let v = self.cmd("GET", "/screenshot", json!({})).await;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("a base64 PNG")
    }

    /// Sets the viewport size.
    pub async fn resize(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        )
        .await;
    }

    /// Ends the session (closing Chromium) and chromedriver.
    pub async fn close(mut self) {
        let _ = self
            .raw("DELETE", &format!("/session/{}", self.session), json!({}))
            .await;
        self.kill();
    }

    fn kill(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A test that panicked did not call close(): leave no browser behind.
        self.kill();
    }
}
