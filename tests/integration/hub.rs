//! Hub mode (`secmon-tui hub --nats URL`, docs/fleet.md): a real nats-server on a free
//! loopback port, three machines on this host publishing to it (one live monitor with real
//! probes, two replaying recordings under their own host names, each with its own mark in
//! its events), and the hub serving the dashboard for all of them over HTTP. Every answer the
//! hub gives is searched for the hosts' tokens.
use std::{
    fs,
    os::unix::fs::OpenOptionsExt,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use secmon::fleet::{Connection, HostStatus, consumer::Fleet};
use serde_json::{Value, json};

use crate::common::{
    AS_NOBODY, Instance, READY_TIMEOUT, STOP_TIMEOUT, TestDir, marker, nats::NatsServer, path_str,
    require_root, workspace,
};
use crate::controller_api::Served;
use crate::fleet::{STOP_GRACE_SECS, audit_lines, publisher_config, write_token};
use crate::machines::Seen;

/// How long the hub may take to see a host's new state (statuses come every 2 s; a host is
/// unreachable 6 s after its last).
const STATE_TIMEOUT: Duration = Duration::from_secs(30);
/// The line the hub prints once it serves.
const SERVING: &str = "secmon: hub: serving ";

/// The attack story with `mark` in the dropper's path (most of its events, its alerts).
fn marked_story(dir: &Path, mark: &str) -> String {
    let text = fs::read_to_string(workspace("tests/fixtures/recordings/attack-story.jsonl"))
        .expect("read the story");
    let path = dir.join(format!("{mark}.jsonl"));
    fs::write(
        &path,
        text.replace("/tmp/.x-update", &format!("/tmp/.x-update-{mark}")),
    )
    .expect("write the recording");
    path_str(&path)
}

/// A replaying publisher (`serve --replay --speed max`, which stays up after the recording):
/// returns once it exports and answers control requests.
fn start_replay(recording: &str, config: &str, host: &str) -> Instance {
    let mut instance = Instance::start(&[
        "serve", "--replay", recording, "--speed", "max", "--config", config,
    ]);
    instance.wait_for_stderr("control on", |l| {
        l.contains(&format!("NATS: exporting as host {host}"))
            && l.contains("answering control requests")
    });
    instance
}

/// `hub --nats URL --host-tokens DIR`: the hub and a client for it.
fn start_hub(nats_url: &str, host_tokens: &Path) -> Served {
    let mut hub = Instance::start(&[
        "hub",
        "--nats",
        nats_url,
        "--host-tokens",
        &path_str(host_tokens),
    ]);
    let line = hub.wait_for_stderr_within("the hub's address", READY_TIMEOUT, |l| {
        l.starts_with(SERVING)
    });
    let url = line
        .strip_prefix(SERVING)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    let token_file = hub.home().join("controller.token");
    Served::attach(hub, &url, &token_file)
}

/// A host's control token in the hub's directory (mode 600, as required).
fn give_token(dir: &Path, host: &str, token: &str) {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join(format!("{host}.token")))
        .expect("create the host's token file");
    std::io::Write::write_all(&mut file, format!("{token}\n").as_bytes()).expect("write it");
}

/// `host` as `/api/v1/hosts` lists it (`Null` when not listed).
fn host_row(seen: &mut Seen, hub: &Served, host: &str) -> Value {
    let reply = seen.keep(hub.call("GET", "/api/v1/hosts", None));
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .find(|h| h["host"] == host)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Waits until `accept` takes `host`'s row; returns it.
#[track_caller]
fn wait_for_host(
    seen: &mut Seen,
    hub: &Served,
    host: &str,
    what: &str,
    accept: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + STATE_TIMEOUT;
    loop {
        let row = host_row(seen, hub, host);
        if accept(&row) {
            return row;
        }
        assert!(
            Instant::now() < deadline,
            "host {host} was not {what} within {STATE_TIMEOUT:?}: {row}"
        );
        thread::sleep(Duration::from_millis(200));
    }
}

fn reachable(row: &Value) -> bool {
    row["state"] == "reachable"
}

/// The events (as text) of `path` on the hub.
fn events_text(seen: &mut Seen, hub: &Served, path: &str) -> Vec<String> {
    let reply = seen.keep(hub.call("GET", path, None));
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
    reply.json()["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(Value::to_string)
        .collect()
}

/// Three machines publish; the hub lists all three, shows each one's own events and history,
/// sends a control request to one host only (the others see nothing and keep their state),
/// shows a host whose publisher stops as unreachable and then reachable again, drops a message
/// delivered twice, escapes what a host sends, and never sends a token to the client.
#[test]
fn the_hub_shows_three_hosts_and_acts_on_one_only() {
    require_root();
    let mark = marker();
    let dir = TestDir::new(&format!("hub-{mark}"));
    let nats = NatsServer::start(&dir.join("store"));
    let url = nats.url();
    let (live, r1, r2) = (
        format!("hl-{mark}"),
        format!("hr1-{mark}"),
        format!("hr2-{mark}"),
    );
    let tokens = ["1".repeat(64), "2".repeat(64), "3".repeat(64)];
    let homes = [dir.join("live"), dir.join("r1"), dir.join("r2")];
    let configs: Vec<String> = [&live, &r1, &r2]
        .iter()
        .zip(&homes)
        .map(|(host, home)| publisher_config(home, &url, host, 16, STOP_GRACE_SECS))
        .collect();
    let host_tokens = dir.join("host-tokens");
    fs::create_dir(&host_tokens).expect("the hub's token directory");
    for ((host, home), token) in [&live, &r1, &r2].iter().zip(&homes).zip(&tokens) {
        write_token(home, token);
        give_token(&host_tokens, host, token);
    }

    // The hub first: it sees every event published from then on.
    let hub = start_hub(&url, &host_tokens);
    let mut seen = Seen::default();
    let mut live_monitor = Instance::start(&["--json", "--config", &configs[0]]);
    live_monitor.wait_ready();
    let story1 = marked_story(dir.path(), &format!("m1{mark}"));
    let story2 = marked_story(dir.path(), &format!("m2{mark}"));
    let replay1 = start_replay(&story1, &configs[1], &r1);
    let mut replay2 = start_replay(&story2, &configs[2], &r2);

    // All three are listed, reachable, with their probes as they say.
    for host in [&live, &r1, &r2] {
        wait_for_host(&mut seen, &hub, host, "reachable", reachable);
    }
    let row = host_row(&mut seen, &hub, &live);
    assert_eq!(row["probes"]["file"], "on", "{row}");
    assert_eq!(row["control"], true, "{row}");
    assert_eq!(row["token_here"], true, "{row}");
    let machines = seen.keep(hub.call("GET", "/api/v1/machines", None)).json();
    for host in [&live, &r1, &r2] {
        assert!(
            machines["machines"]
                .as_array()
                .expect("machines")
                .iter()
                .any(|m| m["name"] == *host && m["nats"] == true),
            "{host} on the Machines list: {machines}"
        );
    }

    // Per host: each replay's events and alerts are its own (its mark, never the other's).
    let (m1, m2) = (format!("x-update-m1{mark}"), format!("x-update-m2{mark}"));
    let deadline = Instant::now() + STATE_TIMEOUT;
    let (alerts1, history1) = loop {
        let alerts = events_text(
            &mut seen,
            &hub,
            &format!("/api/v1/hosts/{r1}/events?alerts=true"),
        );
        let history = events_text(
            &mut seen,
            &hub,
            &format!("/api/v1/hosts/{r1}/history?type=alerts"),
        );
        if !alerts.is_empty() && alerts.len() == history.len() {
            break (alerts, history);
        }
        assert!(
            Instant::now() < deadline,
            "{r1}: {} alerts live, {} in the stream's history",
            alerts.len(),
            history.len()
        );
        thread::sleep(Duration::from_millis(300));
    };
    for event in alerts1.iter().chain(&history1) {
        assert!(
            !event.contains(&m2),
            "{r2}'s event shown as {r1}'s: {event}"
        );
    }
    assert!(alerts1.iter().any(|e| e.contains(&m1)), "{alerts1:?}");
    assert!(history1.iter().any(|e| e.contains(&m1)), "{history1:?}");
    let events2 = events_text(&mut seen, &hub, &format!("/api/v1/hosts/{r2}/events"));
    assert!(events2.iter().any(|e| e.contains(&m2)));
    assert!(events2.iter().all(|e| !e.contains(&m1)));
    let live_events = events_text(&mut seen, &hub, &format!("/api/v1/hosts/{live}/events"));
    assert!(
        !live_events.is_empty(),
        "the live host's events reach the hub"
    );
    assert!(
        live_events
            .iter()
            .all(|e| !e.contains(&m1) && !e.contains(&m2))
    );
    // The All machines view merges both replays' alerts, each under its host.
    let all = seen
        .keep(hub.call("GET", "/api/v1/all-machines/alerts", None))
        .json();
    let all_alerts = all["alerts"].as_array().expect("alerts");
    for (host, own) in [(&r1, &m1), (&r2, &m2)] {
        let theirs: Vec<&Value> = all_alerts.iter().filter(|a| a["host"] == *host).collect();
        assert!(!theirs.is_empty(), "no alert of {host} in {all}");
        assert!(
            theirs
                .iter()
                .all(|a| !a.to_string().contains(if own == &m1 { &m2 } else { &m1 }))
        );
    }

    // A control request reaches only its host, with that host's token.
    let reply = seen.keep(hub.call(
        "POST",
        &format!("/api/v1/hosts/{live}/control"),
        Some(json!({"action": "set_probe", "family": "file", "enabled": false})),
    ));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["host"], *live);
    assert_eq!(answer["done"], "file probes off");
    wait_for_host(&mut seen, &hub, &live, "file off", |row| {
        row["probes"]["file"] == "off"
    });
    let audit_live = audit_lines(&homes[0].join("audit.log"));
    assert_eq!(audit_live.len(), 1, "{audit_live:?}");
    assert_eq!(audit_live[0]["ok"], true);
    for home in &homes[1..] {
        let audit = audit_lines(&home.join("audit.log"));
        assert!(audit.is_empty(), "another host saw the request: {audit:?}");
    }
    for host in [&r1, &r2] {
        let row = host_row(&mut seen, &hub, host);
        assert_ne!(row["probes"]["file"], "off", "{row}");
    }
    let hub_audit = hub.audit();
    assert!(
        hub_audit.iter().any(|l| l["action"] == "nats control"
            && l["target"] == format!("{live}: set_probe")
            && l["ok"] == true),
        "{hub_audit:?}"
    );
    // The page's form does the same (back on), and says what the host answered.
    let form = "action=set_probe&family=file&enabled=true";
    let bearer = format!("Bearer {}", hub.token);
    let reply = seen.keep(hub.request(
        "POST",
        &format!("/ui/hosts/{live}/control"),
        &[
            ("authorization", &bearer),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some(form.as_bytes()),
    ));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("file probes on"), "{}", reply.body);
    wait_for_host(&mut seen, &hub, &live, "file on", |row| {
        row["probes"]["file"] == "on"
    });
    // A replay has no probes: its own checks say so.
    let reply = seen.keep(hub.call(
        "POST",
        &format!("/api/v1/hosts/{r1}/control"),
        Some(json!({"action": "set_probe", "family": "file", "enabled": false})),
    ));
    assert_eq!(reply.json()["ok"], false, "{}", reply.body);
    assert!(
        reply.body.contains("replaying a recording"),
        "{}",
        reply.body
    );
    assert_eq!(audit_lines(&homes[1].join("audit.log")).len(), 1);
    assert!(audit_lines(&homes[2].join("audit.log")).is_empty());
    assert_eq!(audit_lines(&homes[0].join("audit.log")).len(), 2);
    // A host the hub never saw (a wildcard, say) is not asked.
    for host in ["*", ">", "nobody-here"] {
        let reply = seen.keep(hub.call(
            "POST",
            &format!(
                "/api/v1/hosts/{}/control",
                host.replace('*', "%2A").replace('>', "%3E")
            ),
            Some(json!({"action": "reload_rules"})),
        ));
        assert_eq!(reply.status, 404, "{host}: {}", reply.body);
    }

    // A publisher that stops: unreachable; started again: reachable.
    replay2.signal(libc::SIGTERM);
    let (status, _, stderr) = replay2.finish(STOP_TIMEOUT);
    assert!(status.success(), "{}", stderr.join("\n"));
    let row = wait_for_host(&mut seen, &hub, &r2, "unreachable", |row| {
        row["state"] == "unreachable"
    });
    assert!(
        row["error"]
            .as_str()
            .is_some_and(|e| e.contains("no status")),
        "{row}"
    );
    assert!(
        reachable(&host_row(&mut seen, &hub, &r1)),
        "the others stay reachable"
    );
    replay2 = start_replay(&story2, &configs[2], &r2);
    wait_for_host(&mut seen, &hub, &r2, "reachable again", reachable);

    // At least once on the wire, once on the hub: a message sent twice is taken once.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let fleet = rt
        .block_on(Fleet::connect(&Connection::plain(&url), "secmon", "SECMON"))
        .expect("connect");
    let event = fs::read_to_string(&story1)
        .expect("the story")
        .lines()
        .find(|l| l.contains("\"file_open\""))
        .expect("a file_open")
        .to_string();
    let dup = format!("hd-{mark}");
    rt.block_on(async {
        for _ in 0..2 {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                format!("{dup}:run:1").as_str(),
            );
            fleet
                .client()
                .publish_with_headers(
                    format!("secmon.{dup}.file_open"),
                    headers,
                    event.clone().into(),
                )
                .await
                .expect("publish");
        }
        // What a host says is shown escaped: a hostile host name and version.
        let status = HostStatus {
            host: "x".to_string(),
            version: "<script>alert(1)</script>".to_string(),
            started: "2026-12-03T00:00:00Z".to_string(),
            uptime_secs: 1,
            events: 0,
            events_per_sec: 0.0,
            published: 0,
            spool_bytes: 0,
            connected: true,
            losses: Default::default(),
            lost_total: 0,
            probes: [("file".to_string(), "<b>on</b>".to_string())].into(),
            control: false,
        };
        let payload = serde_json::to_vec(&status).expect("JSON");
        fleet
            .client()
            .publish("secmon.<img_src=x_onerror=alert(1)>.status", payload.into())
            .await
            .expect("publish");
        fleet.client().flush().await.expect("flush");
    });
    let row = wait_for_host(&mut seen, &hub, &dup, "seen", |row| !row.is_null());
    let deadline = Instant::now() + STATE_TIMEOUT;
    while events_text(&mut seen, &hub, &format!("/api/v1/hosts/{dup}/events")).is_empty() {
        assert!(Instant::now() < deadline, "{dup}'s event never came: {row}");
        thread::sleep(Duration::from_millis(200));
    }
    // Both copies were taken (the second counted as a duplicate), one is shown.
    let deadline = Instant::now() + STATE_TIMEOUT;
    loop {
        let feed = seen.keep(hub.call("GET", "/api/v1/hosts", None)).json()["feed"].clone();
        if feed["duplicates"].as_u64().is_some_and(|d| d >= 1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second copy was never counted: {feed}"
        );
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        events_text(&mut seen, &hub, &format!("/api/v1/hosts/{dup}/events")).len(),
        1,
        "a message delivered twice is shown once"
    );
    wait_for_host(
        &mut seen,
        &hub,
        "<img_src=x_onerror=alert(1)>",
        "seen",
        |row| !row.is_null(),
    );

    // The pages: every host, escaped, no token.
    for path in [
        "/machines",
        "/all-machines",
        &format!("/hosts/{live}"),
        &format!("/hosts/{r1}"),
        "/",
    ] {
        let page = seen.keep(hub.call("GET", path, None));
        assert_eq!(page.status, 200, "GET {path}: {}", page.body);
        assert!(
            !page.body.contains("<script>alert"),
            "{path}: {}",
            page.body
        );
        assert!(!page.body.contains("<img_src"), "{path}: {}", page.body);
        assert!(!page.body.contains("<b>on</b>"), "{path}: {}", page.body);
    }
    let machines_page = seen.keep(hub.call("GET", "/machines", None)).body;
    for host in [&live, &r1, &r2] {
        assert!(
            machines_page.contains(host.as_str()),
            "{host} on the Machines page"
        );
    }
    assert!(
        machines_page.contains("&lt;img_src=x_onerror=alert(1)&gt;"),
        "the hostile host, escaped"
    );
    let page = seen
        .keep(hub.call("GET", &format!("/hosts/{live}"), None))
        .body;
    assert!(page.contains("probe family"), "{page}");
    let history = seen.keep(hub.call("GET", &format!("/ui/hosts/{r1}/history?type=alerts"), None));
    assert_eq!(history.status, 200, "{}", history.body);
    assert!(
        history.body.contains(&m1) && !history.body.contains(&m2),
        "{}",
        history.body
    );
    let hostile = seen.keep(hub.call("GET", "/hosts/%3Cimg_src=x_onerror=alert(1)%3E", None));
    assert_eq!(hostile.status, 200, "{}", hostile.body);
    assert!(
        hostile
            .body
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        hostile.body
    );
    assert!(
        hostile.body.contains("&lt;b&gt;on&lt;/b&gt;"),
        "{}",
        hostile.body
    );
    let token_refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    assert!(seen.len() > 10, "too few answers looked at");
    seen.assert_no_token(&token_refs);

    for instance in [live_monitor, replay1, replay2] {
        instance.signal(libc::SIGTERM);
        let (status, _, stderr) = instance.finish(STOP_TIMEOUT);
        assert!(status.success(), "{}", stderr.join("\n"));
    }
    hub.stop();
}

/// The hub binds loopback unless TLS is set up, as the controller does.
#[test]
fn the_hub_refuses_plain_http_off_loopback() {
    let dir = TestDir::new(&format!("hub-{}", marker()));
    let mut hub = Instance::start(&[
        "hub",
        "--nats",
        "nats://127.0.0.1:1",
        "--listen",
        "0.0.0.0:0",
        "--token-file",
        &path_str(&dir.join("hub.token")),
    ]);
    let line = hub.wait_for_stderr("the refusal", |l| l.contains("not a loopback address"));
    assert!(line.contains("tls_cert"), "{line}");
    let (status, _, _) = hub.finish(STOP_TIMEOUT);
    assert!(!status.success());
    assert!(!dir.join("hub.token").exists(), "nothing was made");
}

/// The hub needs no root: as `nobody`, with its files in a directory of its own, it connects,
/// serves, makes its token file (mode 600) and stops at --duration.
#[test]
fn the_hub_runs_as_a_normal_user() {
    use std::os::unix::fs::MetadataExt;
    require_root();
    let dir = TestDir::new(&format!("hub-{}", marker()));
    let nats = NatsServer::start(&dir.join("store"));
    let home = dir.join("nobody");
    fs::create_dir(&home).expect("the hub's directory");
    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).expect("chown it to nobody");
    let config = home.join("secmon.toml");
    fs::write(&config, "").expect("an empty config");
    let mut cmd = std::process::Command::new(AS_NOBODY[0]);
    cmd.args(&AS_NOBODY[1..]);
    cmd.args([
        crate::common::BIN,
        "hub",
        "--nats",
        &nats.url(),
        "--listen",
        "127.0.0.1:0",
        "--config",
        &path_str(&config),
        "--token-file",
        &path_str(&home.join("hub.token")),
        "--audit-log",
        &path_str(&home.join("audit.log")),
        "--duration",
        "3",
    ])
    .current_dir("/");
    let out = crate::common::run(&mut cmd, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("secmon: hub: serving http://127.0.0.1:"),
        "{stderr}"
    );
    let token = fs::metadata(home.join("hub.token")).expect("the hub's token file");
    assert_eq!(token.uid(), 65534);
    assert_eq!(token.mode() & 0o777, 0o600);
}

/// The rows of the live view on the page now: (host column, whole text), every tab and the
/// alerts.
fn live_rows(browser: &crate::web::Browser) -> Vec<(String, String)> {
    let rows = browser.js(
        "return Array.from(document.querySelectorAll('.live .row')).map(r => {
            const host = r.querySelector('.host');
            return [host ? host.textContent : '', r.textContent];
        });",
        vec![],
    );
    serde_json::from_value(rows).expect("rows as the script returns them")
}

/// Waits until the live view holds a row of `host` containing `needle`, and only rows of
/// `host`; returns how many.
#[track_caller]
fn wait_for_rows_of(browser: &crate::web::Browser, host: &str, needle: &str) -> usize {
    crate::web::wait_until(
        &format!("rows of {host} only, one with {needle:?}"),
        STATE_TIMEOUT,
        || {
            let rows = live_rows(browser);
            let others: Vec<&(String, String)> = rows.iter().filter(|(h, _)| h != host).collect();
            let found = rows.iter().any(|(_, text)| text.contains(needle));
            if found && others.is_empty() {
                Ok(rows.len())
            } else {
                Err(format!(
                    "{} rows, {} of another host (first: {:?}), one with the needle: {found}",
                    rows.len(),
                    others.len(),
                    others.first()
                ))
            }
        },
    )
}

/// Types `host` into the live page's host filter and waits for the server to apply it.
#[track_caller]
fn filter_by_host(browser: &crate::web::Browser, host: &str) {
    browser.wait_live();
    browser.type_into("#filter-host", host);
    crate::web::wait_until("the host filter in force", crate::web::PAGE_TIMEOUT, || {
        let state = browser.text("#ws-state").unwrap_or_default();
        if state.contains(&format!("host {host}")) {
            Ok(())
        } else {
            Err(state)
        }
    });
}

/// A real browser on the hub: a live monitor and a replay publish under their own host
/// names; the Machines page lists both; the live page shows their events with their host and
/// its host filter keeps one host's only (a hostile host name shown as text); a host's page
/// shows its own events live; a probe switched from a host's page reaches that host only.
#[test]
fn web_the_hub_shows_each_host_live_and_switches_a_probe_of_one() {
    use crate::web::{Browser, PAGE_TIMEOUT, wait_until};
    require_root();
    let mark = marker();
    let dir = TestDir::new(&format!("hubweb-{mark}"));
    let nats = NatsServer::start(&dir.join("store"));
    let url = nats.url();
    let (live, replayed) = (format!("wl-{mark}"), format!("wr-{mark}"));
    let tokens = ["4".repeat(64), "5".repeat(64)];
    let homes = [dir.join("live"), dir.join("replay")];
    let host_tokens = dir.join("host-tokens");
    fs::create_dir(&host_tokens).expect("the hub's token directory");
    let mut configs = Vec::new();
    for ((host, home), token) in [&live, &replayed].iter().zip(&homes).zip(&tokens) {
        configs.push(publisher_config(home, &url, host, 16, STOP_GRACE_SECS));
        write_token(home, token);
        give_token(&host_tokens, host, token);
    }
    let hub = start_hub(&url, &host_tokens);
    let mut live_monitor = Instance::start(&["--json", "--config", &configs[0]]);
    live_monitor.wait_ready();

    let browser = Browser::start(&hub.base);
    let no_token_in_page = |what: &str| {
        let html = browser.js("return document.documentElement.outerHTML", vec![]);
        let html = html.as_str().unwrap_or_default();
        assert!(!html.is_empty(), "{what}: no page");
        for token in &tokens {
            assert!(
                !html.contains(token.as_str()),
                "a host's token is in {what}"
            );
        }
    };
    assert!(browser.log_in(&hub.token), "the hub's token was refused");

    // The live page, merged: the live host's rows carry its name.
    browser.wait_live();
    wait_until("a row of the live host", STATE_TIMEOUT, || {
        let rows = live_rows(&browser);
        rows.iter()
            .any(|(host, _)| *host == live)
            .then_some(())
            .ok_or_else(|| format!("{} rows: {:?}", rows.len(), rows.first()))
    });
    // Filtered by a host that has not published yet: its events show as they come, alone
    // (the live host's keep coming and are not shown).
    filter_by_host(&browser, &replayed);
    let story = marked_story(dir.path(), &format!("w{mark}"));
    let replay = start_replay(&story, &configs[1], &replayed);
    wait_for_rows_of(&browser, &replayed, &format!("x-update-w{mark}"));
    browser.screenshot("hub-live-filtered");
    // Its alert's "simulate block" is asked of that host (its answer is prefixed with its name)
    // and not of the hub; its pids are not offered the hub's process view.
    browser.click_now(".alerts .row.hosted button.simulate");
    wait_until("the replayed host's answer", PAGE_TIMEOUT, || {
        let said = browser.text("#live-action").unwrap_or_default();
        said.starts_with(&format!("{replayed}: "))
            .then_some(())
            .ok_or(said)
    });
    let process_links = browser.js(
        "return document.querySelectorAll('.live .row.hosted a[href^=\"/process/\"]').length",
        vec![],
    );
    assert_eq!(
        process_links, 0,
        "a host's pid links to the hub's process view"
    );
    let replay_audited = audit_lines(&homes[1].join("audit.log")).len();
    // Another host: the list is redone with its rows only.
    filter_by_host(&browser, &live);
    wait_for_rows_of(&browser, &live, "");

    // A hostile host name (a NATS subject token may hold `<`, `>`, `=`) is shown as text.
    let hostile = "<img_src=x_onerror=alert(1)>";
    filter_by_host(&browser, hostile);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let event = fs::read_to_string(&story)
        .expect("the story")
        .lines()
        .find(|l| l.contains("\"file_open\""))
        .expect("a file_open")
        .to_string();
    rt.block_on(async {
        let fleet = Fleet::connect(&Connection::plain(&url), "secmon", "SECMON")
            .await
            .expect("connect");
        fleet
            .client()
            .publish(format!("secmon.{hostile}.file_open"), event.into())
            .await
            .expect("publish");
        fleet.client().flush().await.expect("flush");
    });
    wait_for_rows_of(&browser, hostile, "");
    let injected = browser.js(
        "return document.querySelectorAll('.live img, .live [onerror]').length",
        vec![],
    );
    assert_eq!(injected, 0, "the host name became markup");

    // The Machines page lists both hosts, reachable.
    browser.goto("/machines");
    for host in [&live, &replayed] {
        wait_until(&format!("{host} reachable"), STATE_TIMEOUT, || {
            let state = browser
                .text(&format!(
                    "#machines-table tr[data-machine='{host}'] .machine-state"
                ))
                .unwrap_or_default();
            (state == "reachable").then_some(()).ok_or(state)
        });
    }
    no_token_in_page("the Machines page");
    browser.screenshot("hub-machines");

    // The replayed host's page: its own events, as they came (before the page was opened).
    browser.click_now(&format!(
        "#machines-table tr[data-machine='{replayed}'] td.act a"
    ));
    wait_until("the replayed host's page", PAGE_TIMEOUT, || {
        let path = browser.path();
        (path == format!("/hosts/{replayed}"))
            .then_some(())
            .ok_or(path)
    });
    browser.wait_live();
    wait_for_rows_of(&browser, &replayed, &format!("x-update-w{mark}"));
    browser.screenshot("hub-host-replayed");

    // The live host's page: its events arrive; switch its kernel probes off, then on.
    browser.goto(&format!("/hosts/{live}"));
    browser.wait_live();
    let before = live_rows(&browser).len();
    wait_until("new rows of the live host", STATE_TIMEOUT, || {
        let rows = live_rows(&browser);
        let count = rows.len();
        (rows.iter().all(|(host, _)| *host == live) && count > before)
            .then_some(())
            .ok_or_else(|| format!("{count} rows (were {before})"))
    });
    for (to, audited) in [("off", 1), ("on", 2)] {
        browser.click_now("table.probes tr[data-family=kernel] button");
        wait_until("the host's answer", PAGE_TIMEOUT, || {
            let said = browser.text("#control-result").unwrap_or_default();
            said.contains(&format!("kernel probes {to}"))
                .then_some(())
                .ok_or_else(|| {
                    format!(
                        "{said:?}; the hub's audit: {:?}; the probes: {:?}",
                        hub.audit(),
                        browser.text("table.probes")
                    )
                })
        });
        wait_until(
            &format!("kernel probes {to} on the page"),
            STATE_TIMEOUT,
            || {
                let state = browser
                    .text("table.probes tr[data-family=kernel] .probe-state")
                    .unwrap_or_default();
                (state == to).then_some(()).ok_or(state)
            },
        );
        // It reached the live host, and only it.
        assert_eq!(audit_lines(&homes[0].join("audit.log")).len(), audited);
        assert_eq!(
            audit_lines(&homes[1].join("audit.log")).len(),
            replay_audited
        );
    }
    no_token_in_page("a host's page");
    browser.screenshot("hub-host-live");
    assert!(
        browser.open_alert().is_none(),
        "a page opened an alert: something ran"
    );

    drop(browser);
    for instance in [live_monitor, replay] {
        instance.signal(libc::SIGTERM);
        let (status, _, stderr) = instance.finish(STOP_TIMEOUT);
        assert!(status.success(), "{}", stderr.join("\n"));
    }
    hub.stop();
}

/// Runs `openssl ARGS` in `dir`; panics with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA (`ca.pem`) and, signed by it, a certificate for 127.0.0.1 (`server.pem`,
/// `server.key`) and a client certificate (`client.pem`, `client.key`), in `dir`.
fn nats_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=secmon test CA"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    for (name, usage, names) in [
        (
            "server",
            "serverAuth",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        ),
        ("client", "clientAuth", ""),
    ] {
        let mut request = vec!["req", "-subj"];
        let subject = format!("/CN=secmon test {name}");
        request.push(&subject);
        request.extend(ec);
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        request.extend(["-keyout", &key, "-out", &csr]);
        openssl(dir, &request);
        fs::write(
            dir.join(&ext),
            format!(
                "{names}basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                 extendedKeyUsage={usage}\n"
            ),
        )
        .expect("write the extensions");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &pem,
                "-extfile",
                &ext,
            ],
        );
    }
}

/// A secret file of mode 600 holding `text`.
fn private_file(path: &Path, text: &str) {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .expect("create the file");
    std::io::Write::write_all(&mut file, format!("{text}\n").as_bytes()).expect("write it");
}

/// NATS over TLS with client certificates and a token (nats-server `verify: true` and
/// `authorization { token }`): a publisher exports over it and the hub reads it (its events
/// and its history), both with `[export.nats]`'s / the hub's TLS and token options. A
/// publisher with a wrong token is told why it cannot log in, keeps running, and keeps its
/// events in its spool. (`.creds` files need nats-server's operator mode, JWTs signed by an
/// operator and account nkeys: not set up here; the token is the same option path.)
#[test]
fn nats_over_tls_with_a_token_carries_events_and_a_wrong_token_is_told() {
    require_root();
    let mark = marker();
    let dir = TestDir::new(&format!("hub-tls-{mark}"));
    let certs = dir.join("certs");
    fs::create_dir(&certs).expect("the certificates' directory");
    nats_certificates(&certs);
    let pem = |name: &str| path_str(&certs.join(name));
    let nats_token = "6".repeat(48);
    let nats = NatsServer::start_configured(
        &dir.join("store"),
        &format!(
            "tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?}, verify: true, timeout: 5 }}\n\
             authorization {{ token: {nats_token:?} }}",
            pem("server.pem"),
            pem("server.key"),
            pem("ca.pem"),
        ),
    );
    let url = nats.url_with("tls");
    let token_file = dir.join("nats.token");
    private_file(&token_file, &nats_token);
    let wrong_token_file = dir.join("wrong-nats.token");
    private_file(&wrong_token_file, &"7".repeat(48));
    // The TLS and login lines of [export.nats] (the last section of the publisher's config).
    let tls_publisher = |host: &str, home: &Path, token: &Path| {
        let config = publisher_config(home, &url, host, 16, 1);
        let mut text = fs::read_to_string(&config).expect("the publisher's config");
        text.push_str(&format!(
            "token_file = {:?}\nca_file = {:?}\ncert = {:?}\nkey = {:?}\n",
            path_str(token),
            pem("ca.pem"),
            pem("client.pem"),
            pem("client.key"),
        ));
        fs::write(&config, text).expect("write the publisher's config");
        write_token(home, &"8".repeat(64));
        config
    };

    let mut hub = Instance::start(&[
        "hub",
        "--nats",
        &url,
        "--nats-token-file",
        &path_str(&token_file),
        "--nats-ca-file",
        &pem("ca.pem"),
        "--nats-cert",
        &pem("client.pem"),
        "--nats-key",
        &pem("client.key"),
    ]);
    let line = hub.wait_for_stderr_within("the hub's address", READY_TIMEOUT, |l| {
        l.starts_with(SERVING)
    });
    let hub_url = line
        .strip_prefix(SERVING)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    let hub_token_file = hub.home().join("controller.token");
    let hub = Served::attach(hub, &hub_url, &hub_token_file);
    let mut seen = Seen::default();

    let host = format!("tls-{mark}");
    let config = tls_publisher(&host, &dir.join("good"), &token_file);
    let story = marked_story(dir.path(), &format!("t{mark}"));
    let publisher = start_replay(&story, &config, &host);
    let row = wait_for_host(&mut seen, &hub, &host, "reachable over TLS", reachable);
    assert_eq!(row["nats_connected"], true, "{row}");
    let own = format!("x-update-t{mark}");
    let deadline = Instant::now() + STATE_TIMEOUT;
    loop {
        let live = events_text(&mut seen, &hub, &format!("/api/v1/hosts/{host}/events"));
        let stored = events_text(&mut seen, &hub, &format!("/api/v1/hosts/{host}/history"));
        if live.iter().any(|e| e.contains(&own)) && stored.iter().any(|e| e.contains(&own)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{host}'s events over TLS: {} live, {} in the history",
            live.len(),
            stored.len()
        );
        thread::sleep(Duration::from_millis(200));
    }

    // A wrong token: told, still running, its events kept in its spool.
    let bad = format!("badtoken-{mark}");
    let bad_home = dir.join("bad");
    let config = tls_publisher(&bad, &bad_home, &wrong_token_file);
    let mut refused = Instance::start(&[
        "serve", "--replay", &story, "--speed", "max", "--config", &config,
    ]);
    let told = refused.wait_for_stderr("the refusal told", |l| {
        l.contains("NATS:") && l.contains("authorization violation")
    });
    assert!(told.contains("token or credentials"), "{told}");
    assert!(
        !told.contains(&"7".repeat(48)),
        "the token is not printed: {told}"
    );
    let spooled = || -> u64 {
        fs::read_dir(bad_home.join("spool"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    };
    let deadline = Instant::now() + STATE_TIMEOUT;
    while spooled() == 0 {
        assert!(Instant::now() < deadline, "nothing waits in the spool");
        thread::sleep(Duration::from_millis(200));
    }
    assert!(
        host_row(&mut seen, &hub, &bad).is_null(),
        "a host that could not log in is listed"
    );
    refused.signal(libc::SIGTERM);
    let (status, _, stderr) = refused.finish(STOP_TIMEOUT);
    assert!(status.success(), "{}", stderr.join("\n"));

    publisher.signal(libc::SIGTERM);
    let (status, _, stderr) = publisher.finish(STOP_TIMEOUT);
    assert!(status.success(), "{}", stderr.join("\n"));
    seen.assert_no_token(&[&nats_token]);
    hub.stop();
}
