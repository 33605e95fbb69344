//! Many machines in one dashboard (issue 15): a local controller (`serve --replay`, plain http
//! on loopback) registers other real controllers on loopback, over https with certificates
//! the test makes (`ca_file`): their health, a machine that stops and comes back, the active
//! machine's API, pages, actions and live stream through the local controller, the All
//! machines view. Every answer the local controller gives is searched for the registered
//! tokens: none may carry one.
use std::{
    fs,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{
    Message,
    client::IntoClientRequest,
    http::{HeaderName, HeaderValue},
};

use crate::common::{TestDir, marker, path_str, require_root, workspace};
use crate::controller_api::{
    RECORDING, Reply, SHIPPED_RULE, Served, csrf_of, log_in, runtime, self_signed,
};

/// How long the local controller may take to see a machine's new state (it polls every 2 s,
/// a poll of a machine that went away ends at its connect timeout, 3 s).
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);

/// Every answer a controller (or the hub) gave, headers and body, to search for tokens.
#[derive(Default)]
pub(crate) struct Seen(Vec<String>);

impl Seen {
    pub(crate) fn keep(&mut self, reply: Reply) -> Reply {
        let mut text = format!("{} ", reply.status);
        for (name, value) in &reply.headers {
            text.push_str(&format!(
                "{name}: {}\n",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        text.push_str(&reply.body);
        self.0.push(text);
        reply
    }

    /// How many answers were kept.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    #[track_caller]
    pub(crate) fn assert_no_token(&self, tokens: &[&str]) {
        assert!(!self.0.is_empty(), "no answer was looked at");
        for answer in &self.0 {
            for token in tokens {
                assert!(
                    !answer.contains(token),
                    "a machine's token was sent to the client:\n{answer}"
                );
            }
        }
    }
}

/// The recording with `mark` in the dropper's path (in most of its events, alerts among
/// them), so that each machine's events are its own.
fn marked_recording(dir: &TestDir, mark: &str) -> PathBuf {
    let text = fs::read_to_string(workspace(RECORDING)).expect("read the recording");
    let path = dir.join(format!("{mark}.jsonl"));
    let dropper = "/tmp/.x-update";
    fs::write(&path, text.replace(dropper, &format!("{dropper}-{mark}")))
        .expect("write the recording");
    path
}

/// A remote controller's files: its directory (config, token, certificate) outlives a stop,
/// so it comes back on the same port with the same token.
struct RemoteHome {
    dir: TestDir,
    cert: PathBuf,
    key: PathBuf,
    recording: PathBuf,
    /// The recording's mark (in every path of its events).
    mark: String,
}

impl RemoteHome {
    fn new(name: &str) -> RemoteHome {
        let mark = format!("{}-{name}", marker());
        let dir = TestDir::new(&mark);
        let (cert, key) = self_signed(dir.path());
        let recording = marked_recording(&dir, &mark);
        RemoteHome {
            dir,
            cert,
            key,
            recording,
            mark,
        }
    }

    /// Its config: https on `port` (0: any), its own token, audit log and machines file.
    fn config(&self, port: u16) -> PathBuf {
        let path = self.dir.join(format!("secmon-{port}.toml"));
        let d = |name: &str| path_str(&self.dir.join(name));
        fs::write(
            &path,
            format!(
                "[storage]\nenabled = false\n\n[response]\ncontrol_socket = {:?}\n\n\
                 [controller]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = {:?}\n\
                 audit_log = {:?}\ntls_cert = {:?}\ntls_key = {:?}\n",
                d("control.sock"),
                d("controller.token"),
                d("controller-audit.log"),
                path_str(&self.cert),
                path_str(&self.key),
            ),
        )
        .expect("write the config");
        path
    }

    /// `serve --replay` of its recording on `port`.
    fn serve_replay(&self, port: u16) -> Served {
        let config = path_str(&self.config(port));
        let recording = path_str(&self.recording);
        let rules = workspace("rules");
        Served::start_with(
            &[
                "--replay", &recording, "--speed", "max", "--config", &config, "--rules", &rules,
            ],
            Some(&self.cert),
        )
    }

    /// The live monitor (root), https on any port.
    fn serve_live(&self) -> Served {
        let config = path_str(&self.config(0));
        let rules = workspace("rules");
        Served::start_with(&["--config", &config, "--rules", &rules], Some(&self.cert))
    }
}

/// A free loopback port below the kernel's ephemeral range (`ip_local_port_range`, 32768 and
/// up by default): a machine that stops must find its port free when it comes back, and no
/// outgoing connection of another test takes a port from here in the meantime (nor does a
/// listener on port 0).
fn port_outside_the_ephemeral_range() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let span = low.saturating_sub(20_000).max(1);
    let start = 20_000 + u16::try_from(std::process::id() % u32::from(span)).unwrap_or(0);
    (0..span)
        .map(|i| 20_000 + (start - 20_000 + i) % span)
        .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free loopback port below the ephemeral range")
}

/// Registers `served` on `local` as `name`, trusting `ca_file`.
#[track_caller]
fn register(seen: &mut Seen, local: &Served, name: &str, served: &Served, ca_file: Option<&Path>) {
    let mut body = json!({"name": name, "url": served.base, "token": served.token});
    if let Some(ca) = ca_file {
        body["ca_file"] = json!(path_str(ca));
    }
    let reply = seen.keep(local.call("POST", "/api/v1/machines", Some(body)));
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.json()["machine"]["name"], name);
}

/// The machine `name` as `/api/v1/machines` lists it.
fn machine(seen: &mut Seen, local: &Served, name: &str) -> Value {
    let reply = seen.keep(local.call("GET", "/api/v1/machines", None));
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["machines"]
        .as_array()
        .expect("machines")
        .iter()
        .find(|m| m["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Waits until machine `name` is `state`; returns its row.
#[track_caller]
fn wait_for_state(seen: &mut Seen, local: &Served, name: &str, state: &str) -> Value {
    let deadline = Instant::now() + HEALTH_TIMEOUT;
    loop {
        let row = machine(seen, local, name);
        if row["state"] == state {
            return row;
        }
        assert!(
            Instant::now() < deadline,
            "machine {name} was not {state} within {HEALTH_TIMEOUT:?}: {row}"
        );
        thread::sleep(Duration::from_millis(200));
    }
}

/// The local controller: a replay of the recording, plain http on loopback; and its mark.
fn local_controller(dir: &TestDir) -> (Served, String) {
    let mark = format!("{}-local", marker());
    let recording = path_str(&marked_recording(dir, &mark));
    (
        Served::start(&["--replay", &recording, "--speed", "max"]),
        mark,
    )
}

/// Registered machines show their health (version, uptime, host); one that stops is shown
/// unreachable with why, and reachable again once it serves again on the same port, without
/// anyone asking. A certificate nobody trusted makes a machine unreachable with a TLS error.
/// Bad registrations are refused; removing forgets the machine. No answer holds a token.
#[test]
fn registered_machines_are_watched_and_come_back_by_themselves() {
    let dir = TestDir::new(&marker());
    let (local, _) = local_controller(&dir);
    let mut seen = Seen::default();
    let home_1 = RemoteHome::new("one");
    let home_2 = RemoteHome::new("two");
    let one = home_1.serve_replay(0);
    let two = home_2.serve_replay(port_outside_the_ephemeral_range());
    register(&mut seen, &local, "one", &one, Some(&home_1.cert));
    register(&mut seen, &local, "two", &two, Some(&home_2.cert));
    // The right address with no CA file: Mozilla's roots do not know the test's certificate.
    register(&mut seen, &local, "untrusted", &one, None);

    let list = seen
        .keep(local.call("GET", "/api/v1/machines", None))
        .json();
    let names: Vec<&str> = list["machines"]
        .as_array()
        .expect("machines")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["local", "one", "two", "untrusted"],
        "the local machine first"
    );

    for name in ["one", "two"] {
        let row = wait_for_state(&mut seen, &local, name, "reachable");
        assert_eq!(row["version"], env!("CARGO_PKG_VERSION"), "{row}");
        assert!(
            row["uptime_secs"].is_u64() && row["host"].is_string(),
            "{row}"
        );
        assert!(row["last_seen"].is_string(), "{row}");
    }
    let untrusted = wait_for_state(&mut seen, &local, "untrusted", "unreachable");
    let why = untrusted["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("TLS") && why.contains("certificate"),
        "{untrusted}"
    );

    // Two stops: shown unreachable, with why.
    let port = two.addr.port();
    two.stop();
    let row = wait_for_state(&mut seen, &local, "two", "unreachable");
    assert!(
        row["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{row}"
    );
    assert!(
        row["last_seen"].is_string(),
        "the last answer is remembered: {row}"
    );
    assert_eq!(machine(&mut seen, &local, "one")["state"], "reachable");
    // It serves again on the same port (same token file): reachable again by itself.
    let two = home_2.serve_replay(port);
    assert_eq!(two.addr.port(), port);
    wait_for_state(&mut seen, &local, "two", "reachable");

    // What is refused, and removing.
    for (body, status) in [
        (
            json!({"name": "one", "url": one.base, "token": one.token}),
            409,
        ),
        (
            json!({"name": "local", "url": one.base, "token": one.token}),
            400,
        ),
        (
            json!({"name": "x", "url": "http://192.0.2.1:9988", "token": one.token}),
            400,
        ),
        (json!({"name": "x", "url": one.base, "token": "short"}), 400),
    ] {
        let reply = seen.keep(local.call("POST", "/api/v1/machines", Some(body)));
        assert_eq!(reply.status, status, "{}", reply.body);
    }
    let removed = seen.keep(local.call("DELETE", "/api/v1/machines/untrusted", None));
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert!(machine(&mut seen, &local, "untrusted").is_null());

    // The Machines page lists them (and never a token).
    let (cookie_id, _) = log_in(&local);
    let cookie = format!("secmon_session={cookie_id}");
    let page = seen.keep(local.request("GET", "/machines", &[("cookie", &cookie)], None));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("data-machine=\"two\""), "{}", page.body);

    // The machines file: root only, beside the token file, with both tokens.
    let file = local.monitor.home().join("machines.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &fs::metadata(&file).expect("machines file").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let stored = fs::read_to_string(&file).expect("read the machines file");
    assert!(stored.contains(&one.token) && stored.contains(&two.token));
    // The audit log says who registered and removed what, without the token.
    let audit = local.audit();
    assert!(
        audit
            .iter()
            .any(|l| l["action"] == "register machine" && l["ok"] == true),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|l| l["action"] == "remove machine" && l["ok"] == true),
        "{audit:?}"
    );
    let audit_text = fs::read_to_string(&local.audit_log).expect("read the audit log");
    assert!(!audit_text.contains(&one.token) && !audit_text.contains(&two.token));

    seen.assert_no_token(&[&one.token, &two.token]);
    two.stop();
    one.stop();
    local.stop();
}

/// A rule's `enabled` as `/api/v1/rules` lists it on `served`.
fn rule_enabled(rules: &Value, name: &str) -> bool {
    rules["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no rule {name}: {rules}"))["enabled"]
        .as_bool()
        .expect("enabled")
}

fn probe_state(probes: &Value, family: &str) -> String {
    probes["probes"]
        .as_array()
        .expect("probes")
        .iter()
        .find(|p| p["family"] == family)
        .unwrap_or_else(|| panic!("no family {family}: {probes}"))["state"]
        .as_str()
        .expect("state")
        .to_string()
}

/// The active machine, through the local controller only: over the API
/// (`/api/v1/machines/NAME/api/...`) and as a browser session that chose it (pages, actions,
/// the live stream), a remote's events, rules and probes are read, and a rule and a probe
/// switched there change that machine and no other. The local audit log names the machine.
#[test]
fn the_active_machine_is_read_and_acted_on_through_this_controller() {
    require_root();
    let _no_flood = crate::common::no_machine_flood();
    let dir = TestDir::new(&marker());
    let (local, local_mark) = local_controller(&dir);
    let mut seen = Seen::default();
    let live_home = RemoteHome::new("live");
    let replay_home = RemoteHome::new("replay");
    let live = live_home.serve_live();
    let replay = replay_home.serve_replay(0);
    register(&mut seen, &local, "live", &live, Some(&live_home.cert));
    register(
        &mut seen,
        &local,
        "replay",
        &replay,
        Some(&replay_home.cert),
    );
    wait_for_state(&mut seen, &local, "replay", "reachable");
    wait_for_state(&mut seen, &local, "live", "reachable");

    // ---- the API path
    let rules = seen.keep(local.call("GET", "/api/v1/machines/replay/api/rules", None));
    assert_eq!(rules.status, 200, "{}", rules.body);
    let switches = |rules: &Value| -> Vec<(String, bool)> {
        rules["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .map(|r| (r["name"].to_string(), r["enabled"] == true))
            .collect()
    };
    assert_eq!(
        switches(&rules.json()),
        switches(&replay.get_ok("/api/v1/rules"))
    );
    let probes = seen.keep(local.call("GET", "/api/v1/machines/live/api/probes", None));
    assert_eq!(
        probe_state(&probes.json(), "kernel"),
        "on",
        "{}",
        probes.body
    );
    let off = seen.keep(local.call(
        "PUT",
        &format!("/api/v1/machines/replay/api/rules/{SHIPPED_RULE}"),
        Some(json!({"enabled": false})),
    ));
    assert_eq!(off.status, 200, "{}", off.body);
    assert!(!rule_enabled(&replay.get_ok("/api/v1/rules"), SHIPPED_RULE));
    assert!(
        rule_enabled(&live.get_ok("/api/v1/rules"), SHIPPED_RULE),
        "another machine changed"
    );
    assert!(
        rule_enabled(&local.get_ok("/api/v1/rules"), SHIPPED_RULE),
        "this machine changed"
    );
    let missing = seen.keep(local.call("GET", "/api/v1/machines/nope/api/status", None));
    assert_eq!(missing.status, 404, "{}", missing.body);

    // ---- a browser session that chose the live machine
    let (cookie_id, _) = log_in(&local);
    let session = format!("secmon_session={cookie_id}");
    let csrf = csrf_of(&local, &session);
    let origin = local.base.clone();
    let form = "content-type";
    let select = seen.keep(local.request(
        "POST",
        "/ui/machines/select",
        &[
            ("cookie", &session),
            ("x-csrf-token", &csrf),
            ("origin", &origin),
            (form, "application/x-www-form-urlencoded"),
        ],
        Some(b"machine=live&back=/probes"),
    ));
    assert_eq!(select.status, 303, "{}", select.body);
    assert_eq!(select.header("location"), Some("/probes"));
    let set = select.header("set-cookie").unwrap_or_default().to_string();
    assert!(
        set.starts_with("secmon_machine=live;") && set.contains("HttpOnly"),
        "{set}"
    );
    let cookies = format!("{session}; secmon_machine=live");

    // The probes page is the live machine's, in this controller's shell that names it.
    let page = seen.keep(local.request("GET", "/probes", &with_cookie(&cookies, &[]), None));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("data-machine=\"live\""), "{}", page.body);
    assert!(page.body.contains("remote-banner"), "{}", page.body);
    assert!(
        page.body.contains(&csrf),
        "the local session's CSRF token is in the shell"
    );
    assert!(
        page.body.contains("data-family=\"kernel\""),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("switch off"),
        "the live machine's probes are switchable"
    );
    // Switch its kernel probes off from the page's button (HTMX post with the local CSRF).
    let switched = seen.keep(local.request(
        "POST",
        "/ui/probes/kernel",
        &with_cookie(
            &cookies,
            &[
                ("x-csrf-token", &csrf),
                ("origin", &origin),
                ("hx-request", "true"),
                (form, "application/x-www-form-urlencoded"),
            ],
        ),
        Some(b"to=off"),
    ));
    assert_eq!(switched.status, 200, "{}", switched.body);
    assert_eq!(probe_state(&live.get_ok("/api/v1/probes"), "kernel"), "off");
    assert_eq!(
        probe_state(&local.get_ok("/api/v1/probes"), "kernel"),
        "replay"
    );
    // Without the local CSRF token nothing is forwarded.
    let refused = seen.keep(local.request(
        "POST",
        "/ui/probes/kernel",
        &with_cookie(
            &cookies,
            &[
                ("origin", &origin),
                (form, "application/x-www-form-urlencoded"),
            ],
        ),
        Some(b"to=on"),
    ));
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(probe_state(&live.get_ok("/api/v1/probes"), "kernel"), "off");
    let on = seen.keep(local.call(
        "PUT",
        "/api/v1/machines/live/api/probes/kernel",
        Some(json!({"enabled": true})),
    ));
    assert_eq!(on.status, 200, "{}", on.body);
    assert_eq!(probe_state(&live.get_ok("/api/v1/probes"), "kernel"), "on");

    // The live machine's event stream, as an API client gets it through this controller.
    let mark = marker();
    let program = crate::common::copy_executable("/bin/true", &dir.join(&mark));
    let exec = api_stream_through(&local, "live", &mark, &program);
    seen.0.push(exec.clone());
    assert!(exec.contains(&path_str(&program)), "{exec}");

    // Its rules page, and the live stream of the replay machine through this controller.
    let rules_page = seen.keep(local.request("GET", "/rules", &with_cookie(&cookies, &[]), None));
    assert!(
        rules_page
            .body
            .contains(&format!("data-rule=\"{SHIPPED_RULE}\"")),
        "{}",
        rules_page.body
    );
    let cookies_replay = format!("{session}; secmon_machine=replay");
    let status_page = seen.keep(local.request(
        "GET",
        "/status",
        &[("cookie", cookies_replay.as_str())],
        None,
    ));
    assert!(
        status_page.body.contains("data-machine=\"replay\""),
        "{}",
        status_page.body
    );
    let html = live_update_through(&local, &cookies_replay, &origin);
    seen.0.push(html.clone());
    assert!(
        html.contains(&replay_home.mark),
        "the replay machine's events: {html}"
    );
    assert!(!html.contains(&local_mark), "this machine's events: {html}");

    // The local audit log has every change sent to a machine, with the machine.
    let audit = local.audit();
    let remote: Vec<&Value> = audit
        .iter()
        .filter(|l| l["action"] == "remote request")
        .collect();
    for expected in [
        format!("replay: PUT /api/v1/rules/{SHIPPED_RULE}"),
        "live: POST /ui/probes/kernel".to_string(),
        "live: PUT /api/v1/probes/kernel".to_string(),
    ] {
        assert!(
            remote
                .iter()
                .any(|l| l["target"] == expected.as_str() && l["ok"] == true),
            "no audit line for {expected}: {remote:?}"
        );
    }

    seen.assert_no_token(&[&live.token, &replay.token]);
    replay.stop();
    live.stop();
    local.stop();
}

/// Opens `/api/v1/machines/NAME/api/events?text=MARK` on the local controller with its token,
/// runs `program` (on this host, which the live machine watches) and returns the first message
/// holding its exec.
fn api_stream_through(local: &Served, name: &str, mark: &str, program: &Path) -> String {
    let rt = runtime();
    rt.block_on(async {
        let mut request = format!(
            "ws://{}/api/v1/machines/{name}/api/events?text={mark}",
            local.addr
        )
        .into_client_request()
        .expect("a WebSocket request");
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {}", local.token)).expect("value"),
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the machine's event stream through the local controller");
        let status = std::process::Command::new(program)
            .status()
            .expect("run the program");
        assert!(status.success());
        let exe = path_str(program);
        loop {
            let message = tokio::time::timeout(Duration::from_secs(15), socket.next())
                .await
                .expect("the exec within 15 s")
                .expect("the stream is open")
                .expect("a message");
            if let Message::Text(text) = message {
                let value: Value = serde_json::from_str(&text).expect("JSON messages");
                let found = value["events"].as_array().is_some_and(|events| {
                    events
                        .iter()
                        .any(|e| e["event_type"] == "process_exec" && e["exe"] == exe.as_str())
                });
                if found {
                    return text.to_string();
                }
            }
        }
    })
}

/// `cookie: cookies` and `extra`.
fn with_cookie<'a>(cookies: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![("cookie", cookies)];
    headers.extend_from_slice(extra);
    headers
}

/// Opens `/ui/live` on the local controller as a browser session with `cookies`, sends the
/// page's (empty) filter and returns the first answer: the active machine's recent events.
fn live_update_through(local: &Served, cookies: &str, origin: &str) -> String {
    let rt = runtime();
    rt.block_on(async {
        let mut request = format!("ws://{}/ui/live", local.addr)
            .into_client_request()
            .expect("a WebSocket request");
        for (name, value) in [("cookie", cookies), ("origin", origin)] {
            request.headers_mut().insert(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the live stream through the local controller");
        socket
            .send(Message::text(r#"{"text":"","min_risk":""}"#))
            .await
            .expect("send the filter");
        let deadline = Duration::from_secs(15);
        loop {
            let message = tokio::time::timeout(deadline, socket.next())
                .await
                .expect("an answer within 15 s")
                .expect("the stream is open")
                .expect("a message");
            if let Message::Text(text) = message
                && text.contains("rows-process")
            {
                return text.to_string();
            }
        }
    })
}

/// The All machines view: every machine's alerts merged with their host, and per machine the
/// alerts of the last hour by severity.
#[test]
fn all_machines_merges_every_machines_alerts() {
    let dir = TestDir::new(&marker());
    let (local, local_mark) = local_controller(&dir);
    let mut seen = Seen::default();
    let home = RemoteHome::new("alerts");
    let remote = home.serve_replay(0);
    register(&mut seen, &local, "remote", &remote, Some(&home.cert));
    wait_for_state(&mut seen, &local, "remote", "reachable");
    let own = local.get_ok("/api/v1/alerts/counts");
    assert_eq!(own["window_secs"], 3600);
    assert!(
        own["malicious"].as_u64().unwrap_or(0) + own["suspicious"].as_u64().unwrap_or(0) > 0,
        "{own}"
    );

    // Until the remote's replay is over and polled: its alerts are here, with its counts.
    let remote_counts = || {
        let counts = remote.get_ok("/api/v1/alerts/counts");
        json!({"suspicious": counts["suspicious"], "malicious": counts["malicious"]})
    };
    let deadline = Instant::now() + HEALTH_TIMEOUT;
    let all = loop {
        let all = seen
            .keep(local.call("GET", "/api/v1/all-machines/alerts", None))
            .json();
        let alerts = all["alerts"].as_array().expect("alerts");
        let from = |m: &str| alerts.iter().any(|a| a["machine"] == m);
        let counted = all["counts"]
            .as_array()
            .expect("counts")
            .iter()
            .find(|c| c["machine"] == "remote")
            .map(|c| c["alerts_last_hour"].clone());
        let marked = alerts
            .iter()
            .any(|a| a["machine"] == "remote" && a.to_string().contains(&home.mark));
        if from("local") && marked && counted == Some(remote_counts()) {
            break all;
        }
        assert!(
            Instant::now() < deadline,
            "not every machine's alerts and counts: {all}"
        );
        thread::sleep(Duration::from_millis(200));
    };
    let alerts = all["alerts"].as_array().expect("alerts");
    let times: Vec<chrono::DateTime<chrono::FixedOffset>> = alerts
        .iter()
        .filter_map(|a| a["timestamp"].as_str())
        .map(|t| chrono::DateTime::parse_from_rfc3339(t).expect("an RFC 3339 time"))
        .collect();
    assert_eq!(times.len(), alerts.len());
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    assert!(alerts.iter().all(|a| a["host"].is_string()), "{all}");
    assert!(
        !alerts
            .iter()
            .any(|a| a["machine"] == "remote" && a.to_string().contains(&local_mark)),
        "{all}"
    );

    let (cookie_id, _) = log_in(&local);
    let cookie = format!("secmon_session={cookie_id}");
    let page = seen.keep(local.request("GET", "/all-machines", &[("cookie", &cookie)], None));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("data-machine=\"remote\""),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("data-machine=\"remote\" data-type="),
        "the remote's alerts are listed: {}",
        page.body
    );
    seen.assert_no_token(&[&remote.token]);
    remote.stop();
    local.stop();
}

/// In a real browser (headless Chromium): log in to the local controller, add the live
/// machine on the Machines page, show it, see its live events (a program the test runs there)
/// and switch one of its probe families off and on from its probes page. The pages never
/// hold the machine's token.
#[test]
fn web_a_machine_is_added_shown_watched_and_its_probe_switched() {
    use crate::web::{Browser, PAGE_TIMEOUT, run_program, wait_until};
    require_root();
    let _no_flood = crate::common::no_machine_flood();
    let dir = TestDir::new(&marker());
    let (local, _) = local_controller(&dir);
    let home = RemoteHome::new("web");
    let remote = home.serve_live();
    let browser = Browser::start(&local.base);
    let no_token_in_page = |what: &str| {
        let html = browser.js("return document.documentElement.outerHTML", vec![]);
        let html = html.as_str().unwrap_or_default();
        assert!(
            !html.is_empty() && !html.contains(&remote.token),
            "the token is in {what}"
        );
    };
    assert!(browser.log_in(&local.token), "the token was refused");

    browser.goto("/machines");
    browser.type_into("#add-machine input[name=name]", "lab");
    browser.type_into("#add-machine input[name=url]", &remote.base);
    browser.type_into("#add-machine input[name=token]", &remote.token);
    browser.type_into("#add-machine input[name=ca_file]", &path_str(&home.cert));
    browser.click("#add-machine button[type=submit]");
    wait_until("the machine reachable on the page", HEALTH_TIMEOUT, || {
        let state = browser
            .text("#machines-table tr[data-machine=lab] .machine-state")
            .unwrap_or_default();
        (state == "reachable").then_some(()).ok_or(state)
    });
    let typed = browser.js(
        "return document.querySelector('#add-machine input[name=token]').value",
        vec![],
    );
    assert_eq!(
        typed, "",
        "the token stays in the form once the machine is added"
    );
    no_token_in_page("the Machines page");
    browser.screenshot("machines");

    // Show it: the live page is now the lab machine's, and the header says so.
    browser.click_now("#machines-table tr[data-machine=lab] td.act button");
    wait_until("the lab machine shown", PAGE_TIMEOUT, || {
        let shown = browser.js("return document.body.dataset.machine", vec![]);
        (browser.path() == "/" && shown == "lab")
            .then_some(())
            .ok_or_else(|| format!("{} {shown}", browser.path()))
    });
    assert!(
        browser
            .text(".remote-banner")
            .is_some_and(|t| t.contains("lab"))
    );
    let mark = marker();
    let program = crate::common::copy_executable("/bin/true", &dir.join(&mark));
    browser.filter_live(&mark);
    run_program(&program, &[]);
    browser.wait_for_row(
        "#rows-process .row",
        "exec",
        &path_str(&program),
        PAGE_TIMEOUT,
    );
    no_token_in_page("the live page");
    browser.screenshot("machines-live-remote");

    // Its probes: switch the kernel family off, then on again.
    for to in ["off", "on"] {
        browser.goto("/probes");
        browser.click("#probes-table button[data-family=kernel]");
        wait_until(
            &format!("the lab machine's kernel probes {to}"),
            PAGE_TIMEOUT,
            || {
                let state = browser
                    .text("#probes-table tr[data-family=kernel] .probe-state")
                    .unwrap_or_default();
                (state == to).then_some(()).ok_or(state)
            },
        );
        assert_eq!(probe_state(&remote.get_ok("/api/v1/probes"), "kernel"), to);
        assert_eq!(
            probe_state(&local.get_ok("/api/v1/probes"), "kernel"),
            "replay"
        );
    }
    no_token_in_page("the probes page");
    drop(browser);
    remote.stop();
    local.stop();
}
