//! The web dashboard end to end: the real `secmon-tui serve` and a real headless Chromium
//! driven over WebDriver (chromedriver, `fantoccini`), doing what an operator does: log in,
//! watch real activity arrive on the live page, switch a probe family and a rule, simulate a
//! block, search the history, and open a process whose name and arguments are HTML.
//!
//! Each test starts its own monitor (`Instance`, with a private config, history and token),
//! its own chromedriver on a free loopback port and a Chromium with a fresh profile in a
//! temporary directory. Screenshots go to target/web-screenshots/ (for a look after a run;
//! one of them is docs/web-live.png). Chromium and chromedriver come from Debian's `chromium`
//! and `chromium-driver` (`cargo xtask setup` installs them).

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::common::{
    Instance, Monitor, TestDir, copy_executable, die_with_parent, marker, next_id,
    no_machine_flood, path_str, require_root, spawn, wait_child, workspace,
};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a test waits for the page to show what it caused.
pub(crate) const PAGE_TIMEOUT: Duration = Duration::from_secs(15);
/// How soon a real exec must be on the live page for the page to count as live: it is
/// redrawn every 250 ms, so a page that waits for a reload or a slow poll misses this by far.
/// Not a speed target (those are benchmarks): an idle machine shows it in ~70 ms, and the
/// debug build beside the other tests' browsers and monitors, with the web at a low priority,
/// took just over a second once.
const LIVE_WITHIN: Duration = Duration::from_secs(5);
/// How often the page is looked at while waiting.
const POLL: Duration = Duration::from_millis(50);
/// A desktop and a phone (an iPhone 12–15's CSS width).
const DESKTOP: (u32, u32) = (1366, 900);
const PHONE: (u32, u32) = (390, 844);

/// How long a test waits for a program's row before running the program again.
const RERUN_AFTER: Duration = Duration::from_secs(3);

/// Polls `f` until it gives something or `timeout` passes (then panics, saying `what` and
/// what `last` says about the last state).
#[track_caller]
pub(crate) fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not within {timeout:?}; last seen: {last}")
            }
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// A free loopback port (free a moment ago: a clash makes the driver fail, and it is retried).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("its address").port()
}

/// One event row of the page, as the tests look at it.
#[derive(Debug, Deserialize)]
pub(crate) struct Row {
    text: String,
    /// `exec`, `open`, `exit`…
    op: String,
    marker: String,
    /// The matched rules' names (the label's tooltip).
    rules: String,
    label: String,
    href: String,
}

/// A running `secmon-tui serve` and how to reach it.
struct Served {
    instance: Instance,
    base: String,
    token: String,
}

impl Served {
    /// Starts `secmon-tui serve ARGS` (its private config listens on a free loopback port)
    /// and waits until it serves.
    fn start(args: &[&str]) -> Served {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        let mut instance = Instance::start(&all);
        if !args.contains(&"--replay") {
            instance.wait_ready();
        }
        let line = Monitor::wait_for_stderr(&instance, "`controller: serving`", |l| {
            l.contains("controller: serving ")
        });
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .trim_end_matches('/')
            .to_string();
        // `(log in with the token in FILE, root only)`
        let token_file = line
            .split_once("the token in ")
            .and_then(|(_, rest)| rest.rsplit_once(", root only"))
            .map(|(file, _)| file.to_string())
            .unwrap_or_else(|| panic!("no token file in {line:?}"));
        let token = fs::read_to_string(&token_file)
            .unwrap_or_else(|e| panic!("read the controller's token {token_file}: {e}"))
            .trim()
            .to_string();
        Served {
            instance,
            base,
            token,
        }
    }

    /// `GET /api/v1/PATH` with the token, as JSON.
    fn api(&self, path: &str) -> Value {
        let url = format!("{}/api/v1/{path}", self.base);
        let mut response = ureq::get(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .call()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let text = response
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {text}"))
    }

    /// The stored events `query` (a history query string) finds.
    fn history(&self, query: &str) -> Vec<Value> {
        let page = self.api(&format!("history?{query}"));
        page["events"].as_array().cloned().unwrap_or_default()
    }
}

/// chromedriver and a headless Chromium session; both end when this is dropped.
pub(crate) struct Browser {
    client: Option<Client>,
    rt: tokio::runtime::Runtime,
    driver: Child,
    base: String,
    shots: PathBuf,
    /// The Chromium profile and the driver's log.
    dir: TestDir,
}

impl Browser {
    pub(crate) fn start(base: &str) -> Browser {
        let dir = TestDir::new(&format!("secmon-web-{}", marker()));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the WebDriver client");
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port();
            let log = fs::File::create(dir.join("chromedriver.log")).expect("driver log");
            let mut cmd = Command::new(CHROMEDRIVER);
            cmd.arg(format!("--port={port}"))
                .arg(format!(
                    "--log-path={}",
                    path_str(&dir.join("chromedriver.log"))
                ))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("driver log"))
                .stderr(log);
            die_with_parent(&mut cmd);
            if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
                panic!(
                    "{CHROMEDRIVER} or {CHROMIUM} is missing: install Debian's chromium and \
                     chromium-driver (`cargo xtask setup` does)"
                );
            }
            let mut driver = spawn(&mut cmd);
            let up = Instant::now() + Duration::from_secs(20);
            while Instant::now() < up
                && TcpStream::connect(("127.0.0.1", port)).is_err()
                && driver.try_wait().ok().flatten().is_none()
            {
                thread::sleep(POLL);
            }
            let profile = dir.join("profile");
            let capabilities = json!({
                "browserName": "chrome",
                // An alert a page opens stays open, for the test to see.
                "unhandledPromptBehavior": "ignore",
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": [
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-dev-shm-usage",
                        "--disable-quic",
                        "--no-first-run",
                        "--no-default-browser-check",
                        "--disable-background-networking",
                        "--disable-component-update",
                        "--disable-sync",
                        "--disable-extensions",
                        "--hide-scrollbars",
                        format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                        format!("--user-data-dir={}", path_str(&profile)),
                    ],
                },
            });
            let Value::Object(capabilities) = capabilities else {
                unreachable!("a JSON object")
            };
            let url = format!("http://127.0.0.1:{port}");
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            let session = rt.block_on(
                ClientBuilder::new(connector)
                    .capabilities(capabilities)
                    .connect(&url),
            );
            match session {
                Ok(client) => {
                    return Browser {
                        client: Some(client),
                        rt,
                        driver,
                        base: base.to_string(),
                        shots: PathBuf::from(workspace("target/web-screenshots")),
                        dir,
                    };
                }
                Err(e) => {
                    last_error = format!(
                        "{e}; driver log:\n{}",
                        fs::read_to_string(dir.join("chromedriver.log")).unwrap_or_default()
                    );
                    let _ = driver.kill();
                    let _ = driver.wait();
                }
            }
        }
        panic!("cannot start a Chromium session: {last_error}");
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("the session is open")
    }

    fn run<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
    ) -> T {
        self.rt
            .block_on(f)
            .unwrap_or_else(|e| panic!("WebDriver: {what}: {e}"))
    }

    pub(crate) fn goto(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.run(&format!("go to {url}"), self.client().goto(&url));
    }

    pub(crate) fn path(&self) -> String {
        self.run("the URL", self.client().current_url())
            .path()
            .to_string()
    }

    fn title(&self) -> String {
        self.run("the title", self.client().title())
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page.
    pub(crate) fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.run("a script", self.client().execute(script, args))
    }

    /// The text of the first element matching `css`, if there is one.
    pub(crate) fn text(&self, css: &str) -> Option<String> {
        let value = self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            vec![json!(css)],
        );
        value.as_str().map(String::from)
    }

    pub(crate) fn click(&self, css: &str) {
        let element = self.run(
            &format!("find {css}"),
            self.client().find(Locator::Css(css)),
        );
        self.run(&format!("click {css}"), element.click());
    }

    /// Clicks the element `css` in the page's own script, for elements in a part of the page
    /// that is redrawn every few seconds: a WebDriver click (find, then click) could meet the
    /// old one. htmx wires a swapped-in element only when the swap settles (20 ms later, when
    /// it takes the `htmx-added` class off): a click before that does nothing, so this waits.
    #[track_caller]
    pub(crate) fn click_now(&self, css: &str) {
        wait_until(&format!("{css} to click"), PAGE_TIMEOUT, || {
            let clicked = self.js(
                "const e = document.querySelector(arguments[0]);
                 if (!e) { return 'nothing there'; }
                 if (e.closest('.htmx-added')) { return 'not wired yet'; }
                 e.click();
                 return 'clicked';",
                vec![json!(css)],
            );
            (clicked == "clicked")
                .then_some(())
                .ok_or_else(|| clicked.to_string())
        });
    }

    fn click_xpath(&self, xpath: &str) {
        let element = self.run(
            &format!("find {xpath}"),
            self.client().find(Locator::XPath(xpath)),
        );
        self.run(&format!("click {xpath}"), element.click());
    }

    pub(crate) fn type_into(&self, css: &str, text: &str) {
        let element = self.run(
            &format!("find {css}"),
            self.client().find(Locator::Css(css)),
        );
        self.run(&format!("clear {css}"), element.clear());
        self.run(&format!("type into {css}"), element.send_keys(text));
    }

    /// The text of the alert a page opened, if one is open.
    pub(crate) fn open_alert(&self) -> Option<String> {
        self.rt.block_on(self.client().get_alert_text()).ok()
    }

    /// The event rows under `css` (e.g. `#rows-process .row`).
    fn rows(&self, css: &str) -> Vec<Row> {
        let value = self.js(
            "return Array.from(document.querySelectorAll(arguments[0])).map(r => {
                const q = s => r.querySelector(s);
                return {
                    text: r.textContent,
                    op: q('.op') ? q('.op').textContent : '',
                    marker: q('.marker') ? q('.marker').textContent : '',
                    rules: q('.rules') ? (q('.rules').getAttribute('title') || '') : '',
                    label: q('.rules') ? q('.rules').textContent : '',
                    href: q('a.proc') ? q('a.proc').getAttribute('href') : '',
                };
            });",
            vec![json!(css)],
        );
        serde_json::from_value(value).expect("rows as the script returns them")
    }

    /// Waits for a row under `css` of operation `op` (any: `""`) containing `needle`.
    #[track_caller]
    /// The first row now shown in `css` of operation `op` (any if empty) holding `needle`.
    fn find_row(&self, css: &str, op: &str, needle: &str) -> Option<Row> {
        self.rows(css)
            .into_iter()
            .find(|r| (op.is_empty() || r.op == op) && r.text.contains(needle))
    }

    pub(crate) fn wait_for_row(&self, css: &str, op: &str, needle: &str, timeout: Duration) -> Row {
        wait_until(
            &format!("a {op} row with {needle:?} in {css}"),
            timeout,
            || {
                let rows = self.rows(css);
                let count = rows.len();
                rows.into_iter()
                    .find(|r| (op.is_empty() || r.op == op) && r.text.contains(needle))
                    .ok_or_else(|| {
                        format!(
                            "{count} rows: {}; the page's state: {:?}, figures: {:?}",
                            self.text(css).unwrap_or_default(),
                            self.text("#ws-state").unwrap_or_default(),
                            self.text("#live-stats").unwrap_or_default()
                        )
                    })
            },
        )
    }

    /// Logs in with `token`; true when the live page opened.
    pub(crate) fn log_in(&self, token: &str) -> bool {
        self.goto("/login");
        self.type_into("#token", token);
        self.click("form button[type=submit]");
        wait_until("the answer to the login", PAGE_TIMEOUT, || {
            let ready = self.js("return document.readyState", vec![]);
            if ready != "complete" {
                return Err(format!("document {ready}"));
            }
            if self.path() == "/" && self.text("#ws-state").is_some() {
                Ok(true)
            } else if self.text(".msg.err").is_some() {
                Ok(false)
            } else {
                Err(format!(
                    "at {}: {}",
                    self.path(),
                    self.text("body").unwrap_or_default()
                ))
            }
        })
    }

    /// Waits for the live page's WebSocket (the server's own "live" in the header).
    #[track_caller]
    pub(crate) fn wait_live(&self) {
        wait_until("the live stream connected", PAGE_TIMEOUT, || {
            let state = self.text("#ws-state").unwrap_or_default();
            if state.starts_with("live") {
                Ok(())
            } else {
                Err(state)
            }
        });
    }

    /// Types `text` into the live page's filter and waits for the server to apply it.
    #[track_caller]
    pub(crate) fn filter_live(&self, text: &str) {
        self.wait_live();
        self.type_into("#filter-text", text);
        wait_until("the filter in force", PAGE_TIMEOUT, || {
            let state = self.text("#ws-state").unwrap_or_default();
            if state.contains(text) {
                Ok(())
            } else {
                Err(state)
            }
        });
    }

    fn set_size(&self, (width, height): (u32, u32)) {
        self.run("resize", self.client().set_window_size(width, height));
    }

    /// The page's width beyond the window's (0: nothing to scroll sideways).
    fn overflow(&self) -> i64 {
        self.js(
            "return document.documentElement.scrollWidth - window.innerWidth",
            vec![],
        )
        .as_i64()
        .unwrap_or(i64::MAX)
    }

    /// Saves a screenshot as target/web-screenshots/NAME.png; returns its path.
    pub(crate) fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.run("a screenshot", self.client().screenshot());
        fs::create_dir_all(&self.shots).expect("create target/web-screenshots");
        let path = self.shots.join(format!("{name}.png"));
        fs::write(&path, png).expect("write the screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), client.close()).await
            });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = &self.dir;
    }
}

/// Runs `path ARGS` to its end.
pub(crate) fn run_program(path: &Path, args: &[&str]) -> u32 {
    let mut child = spawn(
        Command::new(path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let pid = child.id();
    wait_child(&mut child, Duration::from_secs(30));
    pid
}

/// How `path` ends when run.
fn run_status(path: &Path) -> std::process::ExitStatus {
    let mut child = spawn(
        Command::new(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_child(&mut child, Duration::from_secs(30))
}

/// Removes files this test put at the top of /tmp, however it ends.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

#[test]
fn web_login_refuses_a_wrong_token_and_every_page_fits_a_phone() {
    // A recording served: no root, no kernel; the pages have real content to lay out.
    let served = Served::start(&[
        "--replay",
        &workspace("tests/fixtures/recordings/attack-story.jsonl"),
        "--speed",
        "max",
    ]);
    let browser = Browser::start(&served.base);

    // Not logged in: every page leads to the login.
    browser.goto("/status");
    assert_eq!(browser.path(), "/login", "a page without a session");
    let wrong = format!("{}x", &served.token[..served.token.len() - 1]);
    assert!(!browser.log_in(&wrong), "a wrong token was accepted");
    assert_eq!(
        browser.text(".msg.err").as_deref(),
        Some("That is not the token.")
    );
    browser.goto("/");
    assert_eq!(browser.path(), "/login", "a wrong token opened a session");

    assert!(browser.log_in(&served.token), "the token was refused");
    browser.wait_live();
    // The recording's events and alerts are on the page, marked as the terminal UI marks them.
    let alert = wait_until("the recording's alerts", PAGE_TIMEOUT, || {
        browser
            .rows("#rows-alerts .row")
            .into_iter()
            .find(|r| r.marker == "!!")
            .ok_or_else(|| "no malicious alert".to_string())
    });
    assert!(
        !alert.label.is_empty() && !alert.rules.is_empty(),
        "{alert:?}"
    );
    assert!(!browser.rows("#rows-process .row").is_empty());
    browser.screenshot("live-replay-desktop");

    for (path, heading, check) in [
        ("/", None, "#rows-alerts .row"),
        ("/rules", Some("Rules"), "#rules-table tbody tr"),
        ("/probes", Some("Probes"), "#probes-table tr.replay"),
        ("/denies", Some("Deny entries"), "#denies"),
        ("/history", Some("History"), "#history-form"),
        ("/status", Some("Status"), "#losses"),
        ("/machines", Some("Machines"), "#machines-table"),
        ("/all-machines", Some("All machines"), "#all-machines"),
        (alert.href.as_str(), None, ".facts .proc-exe"),
    ] {
        for (size, name) in [(DESKTOP, "desktop"), (PHONE, "phone")] {
            browser.set_size(size);
            browser.goto(path);
            wait_until(&format!("{path} shows {check}"), PAGE_TIMEOUT, || {
                browser
                    .text(check)
                    .map(|_| ())
                    .ok_or_else(|| browser.path())
            });
            if let Some(heading) = heading {
                assert_eq!(browser.text("h1").as_deref(), Some(heading), "{path}");
            }
            let shot = format!(
                "{}-{name}",
                match path.trim_start_matches('/') {
                    "" => "live",
                    p if p.starts_with("process") => "process",
                    p => p,
                }
            );
            browser.screenshot(&shot);
            if size == PHONE {
                let width = browser.js("return window.innerWidth", vec![]);
                assert_eq!(width, json!(PHONE.0), "the window is a phone's width");
                assert!(
                    browser.overflow() <= 0,
                    "{path} is wider than a phone ({} px too wide); see {shot}.png",
                    browser.overflow()
                );
                // Nothing to press is hidden sideways (in a table that scrolls, say).
                let out_of_reach = browser.js(
                    "return Array.from(document.querySelectorAll('main button, main input, main select, main a'))
                        .filter(e => e.getClientRects().length > 0)
                        .filter(e => { const r = e.getBoundingClientRect();
                                       return r.left < 0 || r.right > window.innerWidth + 1; })
                        .map(e => e.outerHTML.slice(0, 120))",
                    vec![],
                );
                assert_eq!(
                    out_of_reach,
                    json!([]),
                    "{path}: controls beyond a phone's width; see {shot}.png"
                );
            }
        }
    }
    // The probes page says why nothing can be switched.
    browser.set_size(DESKTOP);
    browser.goto("/probes");
    let probes = browser.text("#probes-table").unwrap_or_default();
    assert!(probes.contains("a recording is served"), "{probes}");
    browser.goto("/status");
    assert!(
        browser
            .text("#enforcement")
            .is_some_and(|t| t.contains("replay")),
        "{:?}",
        browser.text("#status-body")
    );
    // Logging out ends the session.
    browser.click("button.logout");
    wait_until("the login page after logging out", PAGE_TIMEOUT, || {
        (browser.path() == "/login")
            .then_some(())
            .ok_or_else(|| browser.path())
    });
    browser.goto("/");
    assert_eq!(browser.path(), "/login", "the session outlived the logout");
    drop(browser);
    served.instance.signal(libc::SIGTERM);
    served.instance.finish(crate::common::STOP_TIMEOUT);
}

#[test]
fn web_live_page_shows_a_real_exec_and_hostile_names_as_text() {
    require_root();
    let _no_flood = no_machine_flood();
    let served = Served::start(&[]);
    let mark = marker();
    let dir = TestDir::new(&mark);
    let browser = Browser::start(&served.base);
    assert!(browser.log_in(&served.token), "the token was refused");
    browser.filter_live(&mark);
    // Enter in the filter's field sends it again rather than leaving the page.
    let field = browser.run(
        "find the filter",
        browser.client().find(Locator::Css("#filter-text")),
    );
    browser.run("press Enter", field.send_keys("\u{E007}"));
    browser.wait_live();
    let url = browser.run("the URL", browser.client().current_url());
    assert_eq!(
        (url.path(), url.query()),
        ("/", None),
        "Enter in the filter left the live page"
    );
    let title = browser.title();

    // A real exec is on the page at once (see `LIVE_WITHIN`).
    let exe = copy_executable("/bin/true", &dir.join("webexec"));
    let exe_s = path_str(&exe);
    run_program(&exe, &[]);
    let ran = Instant::now();
    browser.wait_for_row("#rows-process .row", "exec", &exe_s, PAGE_TIMEOUT);
    let took = ran.elapsed();
    eprintln!("web: the exec was on the live page after {took:?}");
    assert!(
        took <= LIVE_WITHIN,
        "the exec took {took:?} to show on the live page (at most {LIVE_WITHIN:?})"
    );
    browser.screenshot("live-exec");

    // A program named like markup, run with a script as its argument: shown as text.
    let name = "<img src=x onerror=alert(1)>";
    let argument = "<script>document.title='pwned'</script>";
    let hostile = copy_executable("/bin/sleep", &dir.join(name));
    let hostile_s = path_str(&hostile);
    // Its exec row (its exit row has the path too): the argument and the path, literally.
    // The web is best effort: a client that falls behind (its thread runs at nice 10, and the
    // tests beside this one load the machine) skips whole batches and is told "lost N". So the
    // program runs again, every few seconds, until one of its execs is on the page.
    let mut pids = Vec::new();
    let deadline = Instant::now() + PAGE_TIMEOUT;
    let row = loop {
        pids.push(run_program(&hostile, &[argument, "0"]));
        let ran = Instant::now();
        let found = loop {
            if let Some(row) = browser.find_row("#rows-process .row", "exec", argument) {
                break Some(row);
            }
            if ran.elapsed() >= RERUN_AFTER {
                break None;
            }
            thread::sleep(POLL);
        };
        if let Some(row) = found {
            break row;
        }
        assert!(
            Instant::now() < deadline,
            "no exec row with {argument:?} within {PAGE_TIMEOUT:?} ({} runs); the rows: {:?}",
            pids.len(),
            browser.text("#rows-process")
        );
    };
    let pid: u32 = row
        .href
        .strip_prefix("/process/")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("a process link: {row:?}"));
    assert!(
        pids.contains(&pid),
        "the row is one of the runs: {row:?} {pids:?}"
    );
    assert!(
        row.text.contains(&hostile_s),
        "the path, literally: {row:?}"
    );
    let check_inert = |page: &str| {
        assert_eq!(
            browser.open_alert(),
            None,
            "{page}: a script opened an alert"
        );
        assert!(!browser.title().contains("pwned"), "{page}: a script ran");
        let injected = browser.js(
            "return document.querySelectorAll('main img, main script, main [onerror]').length",
            vec![],
        );
        assert_eq!(
            injected,
            json!(0),
            "{page}: markup from the event became elements"
        );
    };
    check_inert("the live page");
    assert_eq!(browser.title(), title);
    browser.screenshot("live-hostile");

    // Its process view: the same text, inert.
    assert_eq!(row.href, format!("/process/{pid}"));
    browser.click_xpath(&format!(
        "//div[@id='rows-process']/div[contains(@class,'row')][contains(., 'pwned')]//a[@href='/process/{pid}']"
    ));
    wait_until("the process view", PAGE_TIMEOUT, || {
        browser.text(".proc-exe").ok_or_else(|| browser.path())
    });
    assert_eq!(browser.path(), format!("/process/{pid}"));
    assert_eq!(
        browser.text(".proc-exe").as_deref(),
        Some(hostile_s.as_str())
    );
    assert!(
        browser
            .text(".proc-cmdline")
            .is_some_and(|c| c.contains(argument)),
        "{:?}",
        browser.text(".facts")
    );
    assert_eq!(browser.text(".proc-name").as_deref(), Some(&name[..15]));
    check_inert("the process view");
    assert!(browser.title().starts_with(&format!("Process {pid} ")));
    browser.screenshot("process-hostile");
}

#[test]
fn web_probe_switch_stops_file_events_in_the_kernel() {
    require_root();
    let _no_flood = no_machine_flood();
    let served = Served::start(&[]);
    let mark = marker();
    let dir = TestDir::new(&mark);
    let browser = Browser::start(&served.base);
    assert!(browser.log_in(&served.token), "the token was refused");

    let switch = |to: &str| {
        browser.goto("/probes");
        browser.click("#probes-table button[data-family=file]");
        wait_until(&format!("the file probes {to}"), PAGE_TIMEOUT, || {
            let state = browser
                .text("#probes-table tr[data-family=file] .probe-state")
                .unwrap_or_default();
            (state == to).then_some(()).ok_or(state)
        });
    };
    // Events of the process family still flow: an exec after the open is the sync point
    // (events arrive in order, so an open would be on the page before it).
    let sync = |n: usize| {
        let exe = copy_executable("/bin/true", &dir.join(format!("websync{n}")));
        run_program(&exe, &[]);
        let exe_s = path_str(&exe);
        browser.wait_for_row("#rows-process .row", "exec", &exe_s, PAGE_TIMEOUT);
        exe_s
    };
    let file = dir.join("opened");
    let file_s = path_str(&file);

    switch("off");
    browser.screenshot("probes-file-off");
    browser.goto("/");
    browser.filter_live(&mark);
    // Created and opened with the probes off: neither open may show.
    fs::write(&file, b"x").expect("create the file");
    drop(fs::File::open(&file).expect("open the file"));
    let synced = sync(1);
    assert!(
        !browser
            .rows("#rows-file .row")
            .iter()
            .any(|r| r.text.contains(&file_s)),
        "an open with the file probes off is on the live page"
    );
    // Not stored either: once the later exec is in the history, the open would be too.
    let sync_name = Path::new(&synced)
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a name")
        .to_string();
    wait_until("the sync exec in the history", PAGE_TIMEOUT, || {
        let found = served.history(&format!("last=1h&process={sync_name}&type=process_exec"));
        (!found.is_empty())
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    });
    let stored = served.history(&format!("last=1h&path={file_s}"));
    assert!(stored.is_empty(), "stored with the probes off: {stored:?}");

    switch("on");
    browser.goto("/");
    browser.filter_live(&mark);
    drop(fs::File::open(&file).expect("open the file again"));
    let row = browser.wait_for_row("#rows-file .row", "open", &file_s, PAGE_TIMEOUT);
    assert!(row.text.contains("O_RDONLY"), "{row:?}");
    wait_until("the open in the history", PAGE_TIMEOUT, || {
        let found = served.history(&format!("last=1h&path={file_s}"));
        (!found.is_empty())
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    });
}

#[test]
fn web_rule_switch_changes_the_marking_and_a_block_is_simulated() {
    require_root();
    let _no_flood = no_machine_flood();
    let served = Served::start(&[]);
    let mark = marker();
    // exec_from_tmp_root (rules/execution/temp_dir_execution.json): a program run from the
    // top of /tmp is suspicious. Named `.tmp`, so that copying it there is not "dropping an
    // executable" (temp_executable_dropped leaves such names out), and its run no
    // dropped_file_executed: the rule is the only one to mark it.
    const RULE: &str = "exec_from_tmp_root";
    let first = PathBuf::from(format!("/tmp/{mark}-a.tmp"));
    let second = PathBuf::from(format!("/tmp/{mark}-b.tmp"));
    let _cleanup = Cleanup(vec![first.clone(), second.clone()]);
    let browser = Browser::start(&served.base);
    assert!(browser.log_in(&served.token), "the token was refused");
    // The chain rule dropped_file_executed off first: it counts an executable dropped into a
    // temp directory for the dropping process's tree for a minute, and the tests running
    // beside this one, in this same process, drop executables into /tmp. It would mark this
    // test's execs too, whatever RULE's switch says.
    switch_off(&browser, "dropped_file_executed");
    browser.goto("/");
    browser.filter_live(&mark);

    let first_s = path_str(&copy_executable("/bin/true", &first));
    run_program(&first, &[]);
    let row = browser.wait_for_row("#rows-process .row", "exec", &first_s, PAGE_TIMEOUT);
    assert_eq!(row.marker, "!", "{row:?}");
    assert_eq!(row.rules, RULE, "{row:?}");
    let alert = browser.wait_for_row("#rows-alerts .row", "exec", &first_s, PAGE_TIMEOUT);
    assert!(alert.label.contains("Temp Directory Root"), "{alert:?}");

    // "simulate block" on the alert: the outcome on the page, and in the deny entries'
    // simulated blocks; nothing is enforced.
    browser.click_xpath(&format!(
        "//div[@id='rows-alerts']/div[contains(@class,'row')][contains(., '{first_s}')]//button[contains(@class,'simulate')]"
    ));
    let outcome = wait_until("the simulated block's outcome", PAGE_TIMEOUT, || {
        browser
            .text("#live-action .msg")
            .ok_or_else(|| browser.text("#live-action").unwrap_or_default())
    });
    assert!(
        outcome.contains(&format!("would deny exec path {first_s}"))
            && outcome.contains("simulated"),
        "{outcome}"
    );
    browser.screenshot("live-simulated");
    browser.goto("/denies");
    let simulated = browser.text("ul.simulated").unwrap_or_default();
    assert!(
        simulated.contains(&format!("exec {first_s}")) && simulated.contains("would deny"),
        "{simulated}"
    );
    run_program(&first, &[]);
    assert!(
        first.exists(),
        "a simulated block must not enforce anything"
    );

    // The rule switched off on the rules page: the next such exec is not marked.
    switch_off(&browser, RULE);
    browser.screenshot("rules-switched");
    browser.goto("/");
    browser.filter_live(&mark);
    let second_s = path_str(&copy_executable("/bin/true", &second));
    run_program(&second, &[]);
    let row = browser.wait_for_row("#rows-process .row", "exec", &second_s, PAGE_TIMEOUT);
    assert_eq!(row.marker, "", "marked with the rule off: {row:?}");
    assert!(!row.rules.contains(RULE), "{row:?}");
}

/// Switches `rule` off on the rules page and waits until the page says so.
#[track_caller]
fn switch_off(browser: &Browser, rule: &str) {
    browser.goto("/rules");
    browser.click(&format!("tr[data-rule={rule}] button.switch"));
    wait_until(&format!("{rule} switched off"), PAGE_TIMEOUT, || {
        let state = browser
            .text(&format!("tr[data-rule={rule}] button.switch"))
            .unwrap_or_default();
        (state == "off").then_some(()).ok_or(state)
    });
}

#[test]
fn web_history_finds_earlier_events_pages_and_charts_them() {
    require_root();
    let _no_flood = no_machine_flood();
    let served = Served::start(&[]);
    let mark = marker();
    let dir = TestDir::new(&mark);
    // A name of its own, within a comm's 15 bytes: the history filters by process name.
    let name = format!("wh{}x{}", std::process::id() % 100_000, next_id());
    let exe = copy_executable("/bin/true", &dir.join(&name));
    // Earlier: before anyone looks.
    let pids: Vec<u32> = (0..3).map(|_| run_program(&exe, &[])).collect();

    let browser = Browser::start(&served.base);
    assert!(browser.log_in(&served.token), "the token was refused");
    // The form: the last hour, this process.
    browser.goto("/history");
    browser.click("details.filters summary");
    browser.type_into("#process", &name);
    let types = browser.run("the type", browser.client().find(Locator::Css("#type")));
    browser.run("choose process_exec", types.select_by_value("process_exec"));
    let form = browser.run("the period", browser.client().find(Locator::Css("#period")));
    browser.run("choose the last hour", form.select_by_value("1h"));
    browser.click("#history-form button[type=submit]");
    let found = wait_until("the three execs in the history", PAGE_TIMEOUT, || {
        let rows: Vec<Row> = browser
            .rows("#history-rows .row")
            .into_iter()
            .filter(|r| r.op == "exec" && r.text.contains(&name))
            .collect();
        if rows.len() == 3 {
            Ok(rows)
        } else {
            // The history writer commits in batches: search again.
            let shown = browser.text("main").unwrap_or_default();
            browser.run("refresh", browser.client().refresh());
            Err(format!(
                "{} rows at {}: {shown}",
                rows.len(),
                browser.path()
            ))
        }
    });
    for pid in &pids {
        assert!(
            found.iter().any(|r| r.href == format!("/process/{pid}")),
            "pid {pid} missing: {found:?}"
        );
    }
    assert!(browser.path() == "/history");
    let summary = browser.text("#history-summary").unwrap_or_default();
    assert!(summary.starts_with("3 events match"), "{summary}");
    // The chart: the three in its bars (each bar's tooltip says how many it holds).
    let bars = browser.js(
        "return Array.from(document.querySelectorAll('#history-chart g.bar title'))
            .map(t => t.textContent)",
        vec![],
    );
    let in_bars: u64 = bars
        .as_array()
        .expect("the bars' titles")
        .iter()
        .filter_map(|t| {
            t.as_str()?
                .split(": ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(in_bars, 3, "the chart's bars: {bars}");
    let rects = browser.js(
        "return document.querySelectorAll('#history-chart g.bar rect').length",
        vec![],
    );
    assert!(rects.as_u64().unwrap_or(0) >= 1, "no bar drawn: {rects}");
    assert!(
        browser
            .text("#history-chart figcaption")
            .is_some_and(|c| c.contains("per minute")),
        "{:?}",
        browser.text("#history-chart")
    );
    browser.screenshot("history");

    // Two a page: the newest two, then "older" has the third.
    browser.goto(&format!(
        "/history?period=1h&process={name}&type=process_exec&limit=2"
    ));
    let page_one = browser.rows("#history-rows .row");
    assert_eq!(page_one.len(), 2, "{page_one:?}");
    browser.click("a.older");
    let page_two = wait_until("the older page", PAGE_TIMEOUT, || {
        let rows = browser.rows("#history-rows .row");
        (browser.text("a.older").is_none() || rows.len() == 1)
            .then_some(rows)
            .ok_or_else(|| browser.path())
    });
    assert_eq!(page_two.len(), 1, "{page_two:?}");
    let mut seen: Vec<&str> = page_one
        .iter()
        .chain(&page_two)
        .map(|r| r.href.as_str())
        .collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(
        seen.len(),
        3,
        "the pages overlap: {page_one:?} {page_two:?}"
    );

    // A custom period, from an hour ago (local time, as the form's field gives it).
    let since = (chrono::Local::now() - chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    browser.goto(&format!(
        "/history?period=custom&since={since}&process={name}&type=process_exec"
    ));
    let rows = browser.rows("#history-rows .row");
    assert_eq!(rows.len(), 3, "{rows:?}");
}

#[test]
fn web_block_from_the_deny_page_kills_the_program_until_lifted() {
    use std::os::unix::process::ExitStatusExt;
    require_root();
    let _no_flood = no_machine_flood();
    let dir = TestDir::new(&marker());
    let config = dir.join("secmon.toml");
    let audit = dir.join("audit.log");
    fs::write(
        &config,
        format!(
            "[storage]\nenabled = false\n\n\
             [response]\nenforce = true\ncontrol_socket = {:?}\n\n\
             [controller]\nlisten = \"127.0.0.1:0\"\ntoken_file = {:?}\naudit_log = {:?}\n",
            path_str(&dir.join("control.sock")),
            path_str(&dir.join("controller.token")),
            path_str(&audit),
        ),
    )
    .expect("write the config");
    let served = Served::start(&["--config", &path_str(&config)]);
    let program = copy_executable("/bin/true", &dir.join("webblock"));
    let program_s = path_str(&program);
    assert!(run_status(&program).success(), "it runs before the block");

    let browser = Browser::start(&served.base);
    assert!(browser.log_in(&served.token), "the token was refused");
    browser.goto("/denies");
    assert_eq!(browser.text("b.mode").as_deref(), Some("enforce"));
    browser.type_into("form.deny input[name=exec]", &program_s);
    browser.type_into("form.deny input[name=reason]", "web test");
    browser.click("form.deny button.danger");
    // Confirmed first (hx-confirm).
    let question = wait_until("the confirmation", PAGE_TIMEOUT, || {
        browser.open_alert().ok_or_else(|| "no dialog".to_string())
    });
    assert!(question.contains("deny entry"), "{question}");
    browser.run("confirm", browser.client().accept_alert());
    let done = wait_until("the block's outcome", PAGE_TIMEOUT, || {
        browser
            .text("#deny-result .msg")
            .ok_or_else(|| browser.text("#deny-result").unwrap_or_default())
    });
    assert!(
        done.contains(&format!("denied: exec path {program_s}")),
        "{done}"
    );
    let listed = wait_until("the entry in the list", PAGE_TIMEOUT, || {
        browser
            .text("table.denies tbody")
            .filter(|t| t.contains(&program_s))
            .ok_or_else(|| browser.text("#denies").unwrap_or_default())
    });
    assert!(listed.contains("web test"), "{listed}");
    browser.screenshot("denies-enforcing");
    let status = run_status(&program);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "blocked: {status:?}");

    // Lifted (confirmed too): it runs again.
    browser.click("table.denies button");
    wait_until("the lift's confirmation", PAGE_TIMEOUT, || {
        browser.open_alert().ok_or_else(|| "no dialog".to_string())
    });
    browser.run("confirm", browser.client().accept_alert());
    wait_until("the list without the entry", PAGE_TIMEOUT, || {
        let list = browser.text("#denies").unwrap_or_default();
        list.contains("No deny entry.").then_some(()).ok_or(list)
    });
    assert!(run_status(&program).success(), "it runs once lifted");

    // Both are in the audit log, with the browser's address.
    let log = fs::read_to_string(&audit).expect("read the audit log");
    for action in ["\"block\"", "\"unblock\""] {
        assert!(
            log.lines()
                .any(|l| l.contains(action) && l.contains("127.0.0.1") && l.contains("true")),
            "no {action} in the audit log:\n{log}"
        );
    }
}
