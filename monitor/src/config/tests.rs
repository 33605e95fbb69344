//! The configuration's tests: parsing, positions and wording of errors, the fixtures in
//! tests/valid_configs and tests/invalid_configs, lookup order and file trust.

use std::io;
use std::path::{Path, PathBuf};

use super::value::check_webhook;
use super::*;
use crate::event::{Family, Severity};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("x.toml"))
}

fn parse_err(text: &str) -> ConfigError {
    match parse(text) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e,
    }
}

fn line_col(e: &ConfigError) -> (usize, usize) {
    let at = e.position().expect("error has a position");
    (at.line, at.column)
}

fn workspace_dir(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

#[test]
fn defaults() {
    let c = Config::default();
    assert!(c.monitoring.enable_process);
    assert!(c.monitoring.enable_network);
    assert!(c.monitoring.enable_filesystem);
    assert!(c.monitoring.enable_kernel);
    assert!(!c.threat_detection.enable_heuristics);
    assert_eq!(c.threat_detection.confidence_threshold, 0.6);
    assert!(c.threat_detection.rules_dirs.is_empty());
    assert!(c.response.enable_alerts);
    assert_eq!(c.response.alert_webhook, None);
    assert_eq!(c.response.log_level, Severity::Suspicious);
    assert_eq!(c.response.log_file, None);
    assert_eq!(c.monitoring.enabled_families(), Family::ALL.to_vec());
    assert!(c.storage.enabled);
    assert_eq!(c.storage.path, PathBuf::from("/var/lib/secmon/events.db"));
    assert_eq!(c.storage.retention_days, 30);
    assert_eq!(c.storage.max_size_mb, 1024);
}

#[test]
fn storage_section() {
    let c = parse("[storage]\nenabled = false\n").expect("parse");
    assert!(!c.storage.enabled);
    assert_eq!(c.storage.retention_days, 30);
    let c = parse("storage = { retention_days = 0, max_size_mb = 0 }\n").expect("parse");
    assert_eq!((c.storage.retention_days, c.storage.max_size_mb), (0, 0));
    let c = parse("[storage]\nretention_days = 36_500\n").expect("parse");
    assert_eq!(c.storage.retention_days, MAX_RETENTION_DAYS);

    let e = parse_err("[storage]\nretention_days = -1\n");
    assert_eq!(
        e.to_string(),
        "x.toml:2:18: invalid value for `retention_days`: -1 is negative"
    );
    let e = parse_err("[storage]\nretention_days = 36501\n");
    assert_eq!(
        e.to_string(),
        "x.toml:2:18: invalid value for `retention_days`: 36501 is too large (at most 36500)"
    );
    let e = parse_err("[storage]\nmax_size_mb = 99999999999999999999999\n");
    assert_eq!(line_col(&e), (2, 15));
    assert!(
        e.to_string().contains("is too large (at most 16777216)"),
        "{e}"
    );
    let e = parse_err("[storage]\nmax_size_mb = 1.5\n");
    assert_eq!(
        e.to_string(),
        "x.toml:2:15: wrong type for `max_size_mb`: expected a whole number of MiB \
         (0: no limit), found float"
    );
    let e = parse_err("[storage]\nretention_days = \"30d\"\n");
    assert!(matches!(
        e,
        ConfigError::WrongType {
            found: "string",
            ..
        }
    ));
    let e = parse_err("[storage]\npath = \"\"\n");
    assert!(matches!(&e, ConfigError::InvalidValue { key, .. } if key == "path"));
    assert_eq!(line_col(&e), (2, 8));
    let e = parse_err("[storage]\nenabled = 1\n");
    assert_eq!(line_col(&e), (2, 11));
    let e = parse_err("[storage]\nretention = 3\n");
    assert_eq!(
        e.to_string(),
        "x.toml:2:1: unknown key `retention` in [storage]; expected one of enabled, path, \
         retention_days, max_size_mb"
    );
}

#[test]
fn empty_text_and_empty_sections_are_defaults() {
    assert_eq!(parse("").expect("parse"), Config::default());
    assert_eq!(
        parse("# nothing\n[monitoring]\n[threat_detection]\n[response]\n[storage]\n")
            .expect("parse"),
        Config::default()
    );
}

#[test]
fn shipped_file_is_the_default() {
    let shipped = Config::parse(DEFAULT_CONFIG_TOML, Path::new("config/secmon.toml"))
        .expect("shipped config parses");
    assert_eq!(shipped, Config::default());
    let (_, warnings) =
        Config::parse_with_warnings(DEFAULT_CONFIG_TOML, Path::new("config/secmon.toml"))
            .expect("shipped config parses");
    assert_eq!(warnings, []);
    // And it spells out every key: every field of a config with every optional key set.
    for (section, keys) in every_key() {
        for key in keys {
            if matches!(
                key.as_str(),
                "alert_webhook"
                    | "webhook_header"
                    | "webhook_header_file"
                    | "log_file"
                    | "alert_log"
                    | "token_file"
                    | "credentials"
                    | "ca_file"
                    | "cert"
                    | "key"
                    | "host"
            ) && section != "controller"
            {
                // Optional with no default: shown commented out.
                assert!(
                    DEFAULT_CONFIG_TOML.contains(&format!("# {key} = ")),
                    "[{section}] {key} documented"
                );
            } else {
                assert!(
                    DEFAULT_CONFIG_TOML.contains(&format!("\n{key} = ")),
                    "[{section}] {key} present"
                );
            }
        }
    }
}

/// Every section and its keys, read from the structs themselves (a config with every optional
/// key set, serialised).
fn every_key() -> Vec<(String, Vec<String>)> {
    let mut config = Config::default();
    let response = &mut config.response;
    response.alert_webhook = Some("https://h/".to_string());
    response.webhook_header = Some("A: b".to_string());
    response.webhook_header_file = Some(PathBuf::from("/h"));
    response.log_file = Some(PathBuf::from("/l"));
    response.alert_log = Some(PathBuf::from("/a"));
    let nats = &mut config.export.nats;
    nats.token_file = Some(PathBuf::from("/t"));
    nats.credentials = Some(PathBuf::from("/c"));
    nats.ca_file = Some(PathBuf::from("/ca"));
    nats.cert = Some(PathBuf::from("/cert"));
    nats.key = Some(PathBuf::from("/key"));
    nats.host = Some("h".to_string());
    let toml::Value::Table(root) = toml::Value::try_from(&config).expect("serialise") else {
        panic!("a config serialises to a table");
    };
    // `[export]` holds tables only (`[export.nats]`): their keys are listed.
    let sections: Vec<(String, Vec<String>)> = root
        .into_iter()
        .flat_map(|(section, table)| {
            let table = table.as_table().expect("a section").clone();
            if section == "export" {
                table
                    .into_iter()
                    .map(|(sub, inner)| {
                        let keys = inner.as_table().expect("a table").keys().cloned();
                        (format!("export.{sub}"), keys.collect())
                    })
                    .collect::<Vec<(String, Vec<String>)>>()
            } else {
                vec![(section, table.keys().cloned().collect())]
            }
        })
        .collect();
    assert_eq!(sections.len(), 6);
    assert!(sections.iter().map(|(_, keys)| keys.len()).sum::<usize>() >= 27);
    sections
}

#[test]
fn full_file() {
    let text = r#"
[monitoring]
enable_process = true
enable_network = false
enable_filesystem = true
enable_kernel = false

[threat_detection]
provider = "rules"
enable_heuristics = true
confidence_threshold = 0.85
rules_dirs = ["/etc/secmon/rules.d", "/opt/rules"]

[response]
enable_alerts = false
alert_webhook = "https://hooks.example.com:8443/secmon?x=1"
log_level = "malicious"
log_file = "/var/log/secmon/events.jsonl"

[storage]
enabled = false
path = "/srv/secmon/history.db"
retention_days = 7
max_size_mb = 0x100
"#;
    let c = parse(text).expect("parse");
    assert_eq!(
        c,
        Config {
            monitoring: Monitoring {
                enable_process: true,
                enable_network: false,
                enable_filesystem: true,
                enable_kernel: false,
            },
            threat_detection: ThreatDetection {
                enable_heuristics: true,
                confidence_threshold: 0.85,
                rules_dirs: vec![
                    PathBuf::from("/etc/secmon/rules.d"),
                    PathBuf::from("/opt/rules")
                ],
            },
            response: Response {
                enable_alerts: false,
                alert_webhook: Some("https://hooks.example.com:8443/secmon?x=1".to_string()),
                log_level: Severity::Malicious,
                log_file: Some(PathBuf::from("/var/log/secmon/events.jsonl")),
                ..Response::default()
            },
            storage: Storage {
                enabled: false,
                path: PathBuf::from("/srv/secmon/history.db"),
                retention_days: 7,
                max_size_mb: 256,
            },
            controller: crate::config::Controller::default(),
            export: crate::config::Export::default(),
        }
    );
    assert_eq!(
        c.monitoring.enabled_families(),
        vec![Family::Process, Family::File]
    );
}

#[test]
fn partial_file_keeps_other_defaults() {
    let c = parse("[response]\nlog_level = \"benign\"\n").expect("parse");
    assert_eq!(c.response.log_level, Severity::Benign);
    assert_eq!(c.monitoring, Monitoring::default());
    assert_eq!(c.threat_detection, ThreatDetection::default());
    assert!(c.response.enable_alerts);
}

#[test]
fn inline_tables_dotted_keys_and_integer_threshold() {
    let c = parse(
        "monitoring = { enable_kernel = false }\n\
         threat_detection.confidence_threshold = 1\n\
         threat_detection.rules_dirs = []\n",
    )
    .expect("parse");
    assert!(!c.monitoring.enable_kernel);
    assert_eq!(c.threat_detection.confidence_threshold, 1.0);
}

#[test]
fn serialised_config_round_trips() {
    let mut c = Config::default();
    c.response.alert_webhook = Some("http://localhost:9000/alert".to_string());
    c.response.log_file = Some(PathBuf::from("/tmp/secmon.log"));
    c.threat_detection.rules_dirs = vec![PathBuf::from("rules")];
    c.threat_detection.confidence_threshold = 0.25;
    for config in [Config::default(), c] {
        let text = toml::to_string(&config).expect("serialise");
        assert_eq!(parse(&text).expect("reparse"), config, "{text}");
    }
}

#[test]
fn unknown_key() {
    let e = Config::parse(
        "[monitoring]\nenable_process = true\nenable_procss = false\n",
        Path::new("config/bad.toml"),
    )
    .expect_err("unknown key");
    assert!(matches!(&e, ConfigError::UnknownKey { key, section, .. }
        if key == "enable_procss" && section == "monitoring"));
    assert_eq!(
        e.to_string(),
        "config/bad.toml:3:1: unknown key `enable_procss` in [monitoring]; expected one of \
         enable_process, enable_network, enable_filesystem, enable_kernel"
    );
}

#[test]
fn unknown_key_in_inline_table() {
    let e = parse("\nresponse = { enable_alerts = true, colour = \"red\" }\n");
    let e = e.expect_err("unknown key");
    assert_eq!(line_col(&e), (2, 36));
    assert!(e.to_string().contains("unknown key `colour` in [response]"));
}

#[test]
fn unknown_top_level_key() {
    let e = parse_err("verbose = true\n");
    assert_eq!(line_col(&e), (1, 1));
    assert_eq!(
        e.to_string(),
        "x.toml:1:1: unknown key `verbose` at the top level; expected one of \
         [monitoring], [threat_detection], [response], [storage], [controller], [export]"
    );
}

#[test]
fn unknown_section() {
    let e = parse_err("[monitoring]\nenable_kernel = true\n\n[monitorng]\n");
    assert!(matches!(&e, ConfigError::UnknownSection { section, .. } if section == "monitorng"));
    assert_eq!(
        e.to_string(),
        "x.toml:4:2: unknown section `[monitorng]`; expected one of \
         [monitoring], [threat_detection], [response], [storage], [controller], [export]"
    );
}

#[test]
fn first_problem_in_file_order_is_reported() {
    // `zzz` sorts after `aaa` but comes first in the file.
    let e = parse_err("[monitoring]\nzzz = 1\naaa = 2\n");
    assert_eq!(line_col(&e), (2, 1));
}

#[test]
fn wrong_type() {
    let text = "# secmon\n\n[threat_detection]\nprovider = \"rules\"\n\
                confidence_threshold = \"0.6\"\n";
    let e = parse_err(text);
    assert_eq!(
        e.to_string(),
        "x.toml:5:24: wrong type for `confidence_threshold`: expected a number between 0 \
         and 1, found string"
    );

    let e = parse_err("[monitoring]\nenable_network = \"yes\"\n");
    assert_eq!(line_col(&e), (2, 18));
    assert_eq!(
        e.to_string(),
        "x.toml:2:18: wrong type for `enable_network`: expected a boolean (true or false), \
         found string"
    );

    let e = parse_err("[response]\nlog_level = 2\n");
    assert!(matches!(
        e,
        ConfigError::WrongType {
            found: "integer",
            ..
        }
    ));
    assert_eq!(line_col(&e), (2, 13));

    let e = parse_err("[threat_detection]\nrules_dirs = \"/etc/rules\"\n");
    assert!(matches!(
        e,
        ConfigError::WrongType {
            found: "string",
            ..
        }
    ));
    assert_eq!(line_col(&e), (2, 14));

    let e = parse_err("[threat_detection]\nrules_dirs = [\"/a\", 7]\n");
    assert_eq!(
        e.to_string(),
        "x.toml:2:21: wrong type for `rules_dirs[1]`: expected a string (a directory path), \
         found integer"
    );
}

#[test]
fn section_of_wrong_type() {
    let e = parse_err("monitoring = true\n");
    assert_eq!(
        e.to_string(),
        "x.toml:1:14: wrong type for `monitoring`: expected a table (a [section]), \
         found boolean"
    );
    let e = parse_err("[[response]]\nenable_alerts = true\n");
    assert!(matches!(e, ConfigError::WrongType { found: "array", .. }));
}

#[test]
fn out_of_range_threshold() {
    let e = parse_err("[threat_detection]\nconfidence_threshold = 1.5\n");
    assert!(matches!(&e, ConfigError::InvalidValue { key, .. } if key == "confidence_threshold"));
    assert_eq!(
        e.to_string(),
        "x.toml:2:24: invalid value for `confidence_threshold`: 1.5 is outside [0, 1]"
    );
    let e = parse_err("threat_detection = { confidence_threshold = -1 }\n");
    assert_eq!(line_col(&e), (1, 45));
    assert!(e.to_string().contains("-1 is outside [0, 1]"));
    let e = parse_err("[threat_detection]\nconfidence_threshold = nan\n");
    assert_eq!(line_col(&e), (2, 24));
    for bad in ["inf", "-inf", "+inf", "-nan", "1e400"] {
        let e = parse_err(&format!(
            "[threat_detection]\nconfidence_threshold = {bad}\n"
        ));
        assert!(e.position().is_some(), "{bad}: {e}");
    }
    // Whole numbers: negative, beyond the key's bound, beyond 64 bits.
    for (key, bad) in [
        ("[storage]\nretention_days", "-1"),
        ("[storage]\nmax_size_mb", "99999999999999"),
        ("[response]\nlog_max_size_mb", "-5"),
        ("[response]\ndeny_ttl_secs", "99999999999999999999"),
    ] {
        let e = parse_err(&format!("{key} = {bad}\n"));
        assert!(e.position().is_some(), "{key} = {bad}: {e}");
    }
    // The bounds themselves are fine.
    for ok in ["0", "0.0", "1", "1.0"] {
        let text = format!("[threat_detection]\nconfidence_threshold = {ok}\n");
        parse(&text).expect(ok);
    }
}

#[test]
fn bad_webhook_url() {
    let e = parse_err("[response]\nalert_webhook = \"ftp://example.com/hook\"\n");
    assert_eq!(
        e.to_string(),
        "x.toml:2:17: invalid value for `alert_webhook`: \"ftp://example.com/hook\" is not \
         an http:// or https:// URL"
    );
    let e = parse_err("[response]\n  alert_webhook = \"https:///hook\"\n");
    assert_eq!(line_col(&e), (2, 19));
    assert!(e.to_string().ends_with("\"https:///hook\" has no host"));
}

#[test]
fn webhook_secrets_are_checked_and_never_quoted() {
    let c = parse(
        "[response]\nalert_webhook = \"https://h/x\"\nwebhook_header = \"Authorization: Bearer s3cret\"\n",
    )
    .expect("parse");
    assert_eq!(
        c.response.webhook_header.as_deref(),
        Some("Authorization: Bearer s3cret")
    );
    let c = parse("[response]\nwebhook_header_file = \"/etc/secmon/hook\"\n").expect("parse");
    assert_eq!(
        c.response.webhook_header_file,
        Some(PathBuf::from("/etc/secmon/hook"))
    );
    let e = parse_err("[response]\nwebhook_header = \"Bearer s3cret\"\n");
    assert_eq!(line_col(&e), (2, 18));
    assert!(!e.to_string().contains("s3cret"), "{e}");
    let e = parse_err(
        "[response]\nwebhook_header = \"A: b\"\nwebhook_header_file = \"/etc/secmon/hook\"\n",
    );
    assert_eq!(line_col(&e), (3, 23));
    assert!(e.to_string().contains("not both"), "{e}");
    // A bad URL's message does not show its password or query values.
    let e = parse_err("[response]\nalert_webhook = \"ftp://u:pw@h/?k=s3cret\"\n");
    let text = e.to_string();
    assert!(
        text.contains("\"ftp://***@h/?k=***\" is not an http"),
        "{text}"
    );
}

#[test]
fn response_enforcement_keys() {
    let c = parse(
        "[response]\nenforce = true\nallowlist = [\"sshd\", \"/usr/bin/tmux\"]\n\
         deny_ttl_secs = 0\nalert_log = \"/var/log/secmon/alerts.jsonl\"\n\
         control_socket = \"/tmp/s.sock\"\nlog_max_size_mb = 0\n",
    )
    .expect("parse");
    let r = &c.response;
    assert!(r.enforce);
    assert_eq!(r.allowlist, vec!["sshd", "/usr/bin/tmux"]);
    assert_eq!(r.deny_ttl_secs, 0);
    assert_eq!(
        r.alert_log.as_deref(),
        Some(Path::new("/var/log/secmon/alerts.jsonl"))
    );
    assert_eq!(r.control_socket, PathBuf::from("/tmp/s.sock"));
    assert_eq!(r.log_max_size_mb, 0);
    // A path to sshd protects it too; without enforcement the allowlist may be anything.
    parse("[response]\nenforce = true\nallowlist = [\"/usr/sbin/sshd\"]\n").expect("path");
    parse("[response]\nallowlist = []\n").expect("enforce off");
    let d = Response::default();
    assert!(!d.enforce);
    assert_eq!(d.allowlist, vec!["sshd"]);
    assert_eq!(d.deny_ttl_secs, 3600);
    assert_eq!(d.control_socket, PathBuf::from(DEFAULT_CONTROL_SOCKET));
}

#[test]
fn enforcement_policy_keys() {
    // sshd is protected whatever the allowlist says: an empty one is fine.
    let c = parse("[response]\nenforce = true\nallowlist = []\n").expect("empty allowlist");
    assert!(c.response.allowlist.is_empty());
    let c =
        parse("[response]\nsystem_binary_rules = [\"curl_to_c2\"]\nrule_denies_per_minute = 5\n")
            .expect("policy keys");
    assert_eq!(c.response.system_binary_rules, ["curl_to_c2"]);
    assert_eq!(c.response.rule_denies_per_minute, 5);
    assert_eq!(Response::default().rule_denies_per_minute, 30);
    let e = parse_err("[response]\nrule_denies_per_minute = 601\n");
    assert!(e.to_string().contains("too large (at most 600)"), "{e}");
    let e = parse_err("[response]\nrule_denies_per_minute = -1\n");
    assert!(e.to_string().contains("is negative"), "{e}");
    let e = parse_err("[response]\nsystem_binary_rules = [1]\n");
    assert!(e.to_string().contains("a rule name"), "{e}");
    let e = parse_err("[response]\nallowlist = [\"sshd\", 3]\n");
    assert_eq!(
        e.to_string(),
        "x.toml:2:22: wrong type for `allowlist[1]`: expected a string (a program name or \
         path), found integer"
    );
    let e = parse_err("[response]\nallowlist = [\"\"]\n");
    assert!(matches!(&e, ConfigError::InvalidValue { key, .. } if key == "allowlist[0]"));
    let e = parse_err("[response]\ndeny_ttl_secs = -1\n");
    assert_eq!(
        e.to_string(),
        "x.toml:2:17: invalid value for `deny_ttl_secs`: -1 is negative"
    );
    let e = parse_err("[response]\ndeny_ttl_secs = 99999999999\n");
    assert!(
        e.to_string().contains("is too large (at most 31536000)"),
        "{e}"
    );
    let e = parse_err("[response]\nenforce = \"yes\"\n");
    assert!(matches!(e, ConfigError::WrongType { .. }));
    let e = parse_err("[response]\ncontrol_socket = \"\"\n");
    assert!(matches!(&e, ConfigError::InvalidValue { key, .. } if key == "control_socket"));
}

#[test]
fn webhook_check() {
    for good in [
        "http://localhost",
        "https://hooks.example.com/services/T0/B0/x",
        "HTTPS://example.com:443",
        "http://user:pw@10.0.0.1:8080/alert?a=b#c",
        "http://[::1]:9000/",
        "http://example.com:/",
    ] {
        assert_eq!(check_webhook(good), Ok(()), "{good}");
    }
    for bad in [
        "",
        "example.com",
        "ftp://example.com",
        "http://",
        "http:///path",
        "http://:80/",
        "http://user@/x",
        "http://example.com:http/",
        "http://example.com:70000/",
        "http://exa mple.com/",
        "http://[::1/",
        "http://[::1]x/",
    ] {
        assert!(check_webhook(bad).is_err(), "{bad}");
    }
}

#[test]
fn bad_log_level_and_empty_strings() {
    let e = parse_err("[response]\nlog_level = \"warning\"\n");
    assert_eq!(
        e.to_string(),
        "x.toml:2:13: invalid value for `log_level`: \"warning\" is not one of benign, \
         suspicious, malicious"
    );
    let e = parse_err("[response]\nlog_file = \"\"\n");
    assert!(matches!(&e, ConfigError::InvalidValue { key, .. } if key == "log_file"));
    assert_eq!(line_col(&e), (2, 12));
    let e = parse_err("[threat_detection]\nprovider = \"\"\n");
    assert_eq!(line_col(&e), (2, 12));
    let e = parse_err("[threat_detection]\nrules_dirs = [\"a\", \"\"]\n");
    assert!(matches!(&e, ConfigError::InvalidValue { key, .. } if key == "rules_dirs[1]"));
    assert_eq!(line_col(&e), (2, 20));
}

#[test]
fn syntax_errors() {
    let e = parse_err("[monitoring]\nenable_process = tru\n");
    assert!(matches!(e, ConfigError::Syntax { .. }));
    assert_eq!(line_col(&e), (2, 18));
    assert!(e.to_string().starts_with("x.toml:2:18: invalid TOML: "));
    assert!(!e.to_string().contains('\n'));

    let e = parse_err("[monitoring]\nenable_process = true\nenable_process = false\n");
    assert_eq!(
        e.to_string(),
        "x.toml:3:1: invalid TOML: duplicate key `enable_process`"
    );
    let e = parse_err("[response]\n\n[response]\n");
    assert_eq!(
        e.to_string(),
        "x.toml:3:2: invalid TOML: duplicate key `response`"
    );
}

#[test]
fn columns_count_characters_and_crlf() {
    let e = parse_err("# é\r\n[response]\r\nlog_level = \"é\"\r\n");
    assert_eq!(line_col(&e), (3, 13));
    let p = Position::of_offset("aé\nb", Path::new("f"), 100);
    assert_eq!((p.line, p.column), (2, 2));
    let p = Position::of_offset("aé", Path::new("f"), 2); // inside the é
    assert_eq!((p.line, p.column), (1, 2));
}

#[test]
fn as_root_a_config_others_can_change_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    if !crate::secure_fs::strict_modes() {
        return; // the temporary file is not root's
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = dir.path().join("secmon.toml");
    std::fs::write(&path, "[response]\nenable_alerts = true\n").expect("write");
    let chmod = |mode| {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod")
    };
    chmod(0o600);
    Config::load(&path).expect("root's, 0600");
    chmod(0o620);
    let e = Config::load(&path).expect_err("group-writable");
    assert!(matches!(e, ConfigError::Untrusted(_)), "{e:?}");
    assert!(e.position().is_none());
    assert_eq!(
        e.to_string(),
        format!(
            "{0}: refusing to use this config file as root: its mode 0620 lets its group \
             change it (owner root (uid 0)); fix: sudo chmod go-w {0}",
            path.display()
        )
    );
    Config::load_with(&path, false).expect("not checked when not root");
    chmod(0o644);
    std::os::unix::fs::chown(&path, Some(65534), None).expect("chown nobody");
    let e = Config::load(&path).expect_err("nobody's");
    assert!(
        e.to_string()
            .contains("config file as root: it is owned by nobody (uid 65534), not root"),
        "{e}"
    );
    // The directory above it counts too.
    std::os::unix::fs::chown(&path, Some(0), None).expect("chown root");
    Config::load(&path).expect("root's again");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let e = Config::load(&path).expect_err("world-writable directory");
    assert!(
        e.to_string()
            .contains("this directory holding the config file as root: its mode 0777"),
        "{e}"
    );
}

#[test]
fn unreadable_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.toml");
    let e = Config::load(&missing).expect_err("missing file");
    assert!(matches!(&e, ConfigError::Read { path, error }
        if path == &missing && error.kind() == io::ErrorKind::NotFound));
    assert!(e.position().is_none());
    let msg = e.to_string();
    assert!(msg.starts_with(&format!("{}: cannot read config file: ", missing.display())));
    assert!(msg.contains("os error 2"), "{msg}");

    // A directory is not readable as a file either.
    let e = Config::load(dir.path()).expect_err("directory");
    assert!(matches!(e, ConfigError::Read { .. }));
}

#[test]
fn load_and_lookup_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let explicit = dir.path().join("explicit.toml");
    let system = dir.path().join("system.toml");
    std::fs::write(&explicit, "[monitoring]\nenable_kernel = false\n").expect("write");
    std::fs::write(&system, "[monitoring]\nenable_network = false\n").expect("write");

    let (c, source) =
        Config::load_or_default_from(Some(&explicit), &system).expect("explicit loads");
    assert_eq!(source, ConfigSource::Explicit(explicit.clone()));
    assert_eq!(source.path(), Some(explicit.as_path()));
    assert!(!c.monitoring.enable_kernel && c.monitoring.enable_network);

    let (c, source) = Config::load_or_default_from(None, &system).expect("system loads");
    assert_eq!(source, ConfigSource::System(system.clone()));
    assert!(c.monitoring.enable_kernel && !c.monitoring.enable_network);
    assert_eq!(source.to_string(), system.display().to_string());

    let absent = dir.path().join("absent.toml");
    let (c, source) = Config::load_or_default_from(None, &absent).expect("built-in");
    assert_eq!(source, ConfigSource::BuiltIn);
    assert_eq!(source.path(), None);
    assert_eq!(c, Config::default());
    assert!(source.to_string().starts_with("built-in defaults"));

    // An explicit path that cannot be read is an error, not a silent fallback.
    let e = Config::load_or_default_from(Some(&absent), &system).expect_err("no fallback");
    assert!(matches!(e, ConfigError::Read { .. }));

    // Errors name the file they came from.
    std::fs::write(&system, "[monitoring]\nenable_kernel = 1\n").expect("write");
    let e = Config::load_or_default_from(None, &system).expect_err("bad system file");
    assert!(
        e.to_string()
            .starts_with(&format!("{}:2:17: ", system.display()))
    );
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

#[test]
fn valid_fixtures_parse() {
    for file in toml_files(&workspace_dir("tests/valid_configs")) {
        if let Err(e) = Config::load(&file) {
            panic!("{}: {e}", file.display());
        }
    }
}

/// Each invalid fixture starts with `# expect: LINE:COL: TEXT`; the error must read
/// `<path>:LINE:COL: ...TEXT...`.
#[test]
fn invalid_fixtures_fail_with_position() {
    for file in toml_files(&workspace_dir("tests/invalid_configs")) {
        let text = std::fs::read_to_string(&file).expect("read fixture");
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: no `# expect:` line", file.display()));
        let (line, rest) = expect.split_once(':').expect("LINE:");
        let (col, wanted) = rest.split_once(": ").expect("COL: ");
        let e = match Config::load(&file) {
            Ok(_) => panic!("{} parsed but should not", file.display()),
            Err(e) => e,
        };
        let msg = e.to_string();
        let name = file.file_name().expect("name").to_string_lossy();
        assert!(msg.contains(name.as_ref()), "{msg}");
        let prefix = format!("{}:{line}:{col}: ", file.display());
        assert!(msg.starts_with(&prefix), "{msg}\nwanted prefix {prefix}");
        assert!(msg.contains(wanted), "{msg}\nwanted {wanted}");
    }
}

/// Each bounded whole number: 0 and its maximum are accepted, one past either end is not.
#[test]
fn whole_numbers_fail_one_past_their_bounds() {
    for (section, key, max) in [
        ("storage", "retention_days", u64::from(MAX_RETENTION_DAYS)),
        ("storage", "max_size_mb", MAX_HISTORY_MB),
        ("response", "log_max_size_mb", MAX_HISTORY_MB),
        ("response", "deny_ttl_secs", MAX_DENY_TTL_SECS),
        (
            "response",
            "rule_denies_per_minute",
            u64::from(MAX_RULE_DENIES_PER_MINUTE),
        ),
    ] {
        for ok in [0, max] {
            parse(&format!("[{section}]\n{key} = {ok}\n"))
                .unwrap_or_else(|e| panic!("{key} = {ok}: {e}"));
        }
        let column = key.len() + 4;
        let e = parse_err(&format!("[{section}]\n{key} = {}\n", max + 1));
        assert_eq!(
            e.to_string(),
            format!(
                "x.toml:2:{column}: invalid value for `{key}`: {} is too large (at most {max})",
                max + 1
            )
        );
        let e = parse_err(&format!("[{section}]\n{key} = -1\n"));
        assert_eq!(
            e.to_string(),
            format!("x.toml:2:{column}: invalid value for `{key}`: -1 is negative")
        );
    }
    // Beyond 64 and beyond 128 bits: still an error at the value.
    let e = parse_err("[storage]\nretention_days = 340282366920938463463374607431768211455\n");
    assert!(
        e.to_string().contains("is too large (at most 36500)"),
        "{e}"
    );
    let e = parse_err("[storage]\nretention_days = 999999999999999999999999999999999999999\n");
    assert_eq!(line_col(&e), (2, 18));
}

#[test]
fn threshold_fails_just_outside_zero_to_one() {
    let above = 1.0_f64.next_up();
    let below = (-0.0_f64).next_down();
    for bad in [above, below] {
        let e = parse_err(&format!(
            "[threat_detection]\nconfidence_threshold = {bad:?}\n"
        ));
        assert_eq!(
            e.to_string(),
            format!(
                "x.toml:2:24: invalid value for `confidence_threshold`: {bad} is outside [0, 1]"
            )
        );
    }
    let e = parse_err("[threat_detection]\nconfidence_threshold = -inf\n");
    assert!(e.to_string().ends_with(": -inf is outside [0, 1]"), "{e}");
}

#[test]
fn every_checked_type_says_what_it_expects() {
    for (text, expected) in [
        (
            "[monitoring]\nenable_kernel = 0",
            "a boolean (true or false)",
        ),
        ("[storage]\npath = 1", "a string (a file path)"),
        (
            "[storage]\nretention_days = true",
            "a whole number of days (0: keep forever)",
        ),
        (
            "[response]\nalert_webhook = 1",
            "a string (an http:// or https:// URL)",
        ),
        (
            "[response]\nwebhook_header = []",
            "a string (an HTTP header line, \"Name: value\")",
        ),
        (
            "[response]\nlog_level = {}",
            "a string (\"benign\", \"suspicious\" or \"malicious\")",
        ),
        (
            "[response]\ndeny_ttl_secs = 1.0",
            "a whole number of seconds (0: no expiry)",
        ),
        (
            "[response]\nrule_denies_per_minute = \"5\"",
            "a whole number a minute (0: none)",
        ),
        (
            "[response]\nallowlist = \"sshd\"",
            "an array of program names or paths (strings)",
        ),
        (
            "[response]\nsystem_binary_rules = \"r\"",
            "an array of rule names (strings)",
        ),
        (
            "[response]\nsystem_binary_rules = [[]]",
            "a string (a rule name)",
        ),
        (
            "[threat_detection]\nrules_dirs = {}",
            "an array of directory paths (strings)",
        ),
        ("storage = []", "a table (a [section])"),
        // A struct would take an array as its fields in order; a section does not.
        ("monitoring = [false]", "a table (a [section])"),
    ] {
        let e = parse_err(text);
        assert!(
            matches!(&e, ConfigError::WrongType { expected: want, .. } if want == expected),
            "{text}: {e}"
        );
    }
    // A string that itself says ", expected " does not confuse the wording.
    let e = parse_err("[monitoring]\nenable_kernel = \"no, expected nothing\"\n");
    assert_eq!(
        e.to_string(),
        "x.toml:2:17: wrong type for `enable_kernel`: expected a boolean (true or false), \
         found string"
    );
}

#[test]
fn unknown_keys_are_escaped_and_found_in_nested_tables() {
    let e = parse_err("[storage]\n\"a\\u0007b\" = 1\n");
    assert_eq!(
        e.to_string(),
        "x.toml:2:1: unknown key `a\\u{7}b` in [storage]; expected one of enabled, path, \
         retention_days, max_size_mb"
    );
    let e = parse_err("[storage.extra]\nx = 1\n");
    assert!(
        matches!(&e, ConfigError::UnknownKey { key, section, .. }
            if key == "extra" && section == "storage"),
        "{e}"
    );
}

/// `[threat_detection] provider` selected nothing and is gone: the value the shipped file used
/// to spell out is a warning, any other value an error.
#[test]
fn provider_is_deprecated() {
    let text = "[threat_detection]\nprovider = \"rules\"\nenable_heuristics = true\n";
    let (config, warnings) =
        Config::parse_with_warnings(text, Path::new("x.toml")).expect("still accepted");
    assert!(config.threat_detection.enable_heuristics);
    assert_eq!(warnings.len(), 1);
    assert_eq!(
        warnings[0].to_string(),
        "x.toml:2:1: `provider` was removed: rules always analyse events (`enable_heuristics` \
         adds the seed heuristic); `provider = \"rules\"` is ignored: delete the line"
    );
    let (_, warnings) = Config::parse_with_warnings(
        "threat_detection = { provider = \"rules\" }\n",
        Path::new("x"),
    )
    .expect("inline table");
    assert_eq!(warnings.len(), 1);

    for bad in ["\"heuristics\"", "\"\"", "1"] {
        let e = parse_err(&format!("[threat_detection]\nprovider = {bad}\n"));
        assert_eq!(line_col(&e), (2, 12), "{bad}");
        assert!(
            e.to_string().ends_with(
                "`provider` was removed: rules always analyse events \
                 (`enable_heuristics` adds the seed heuristic); delete the line"
            ),
            "{e}"
        );
    }
    // Not a key of any other section, and never written back.
    let e = parse_err("[response]\nprovider = \"rules\"\n");
    assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e}");
    assert!(
        !toml::to_string(&Config::default())
            .expect("serialise")
            .contains("provider")
    );
}

#[test]
fn controller_section_is_read_and_checked() {
    let c = parse(
        "[controller]\nenabled = true\nlisten = \"[::1]:9000\"\ntls_cert = \"/c.pem\"\n\
         tls_key = \"/k.pem\"\nallowed_origins = [\"https://admin.example:9988\"]\n",
    )
    .expect("parse");
    assert!(c.controller.enabled);
    assert_eq!(c.controller.listen.to_string(), "[::1]:9000");
    assert_eq!(c.controller.tls_key, Some(PathBuf::from("/k.pem")));
    assert_eq!(
        c.controller.allowed_origins,
        vec!["https://admin.example:9988"]
    );
    let bad = parse("[controller]\nlisten = \"localhost:9988\"\n");
    let message = bad.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("x.toml:2:") && message.contains("not an address and port"),
        "{message}"
    );
}

#[test]
fn nats_export_section_is_read_and_checked() {
    let c = parse(
        "[export.nats]\nenabled = true\nurl = \"nats://10.0.0.1:4222, tls://n2:4443\"\n\
         credentials = \"/etc/secmon/n.creds\"\nsubject_prefix = \"acme.secmon\"\n\
         stream = \"ACME\"\nhost = \"web-1\"\nspool_max_mb = 8\nstream_max_age_hours = 0\n\
         stop_grace_secs = 0\nevents_per_message = 256\n",
    )
    .expect("parse");
    let nats = &c.export.nats;
    assert_eq!(nats.events_per_message, 256);
    assert_eq!(
        Config::default().export.nats.events_per_message,
        crate::config::DEFAULT_EVENTS_PER_MESSAGE
    );
    assert!(nats.enabled);
    assert_eq!(nats.subject_prefix, "acme.secmon");
    assert_eq!(nats.host.as_deref(), Some("web-1"));
    assert_eq!(nats.spool_max_mb, 8);
    assert_eq!(nats.stream_max_age_hours, 0);
    assert_eq!(nats.stop_grace_secs, 0);
    assert_eq!(nats.credentials, Some(PathBuf::from("/etc/secmon/n.creds")));
    assert_eq!(
        nats.spool_dir,
        PathBuf::from(crate::config::DEFAULT_NATS_SPOOL)
    );

    for (text, position, wording) in [
        (
            "[export.nats]\nurl = \"http://x:4222\"\n",
            (2, 7),
            "not a nats:// or tls://",
        ),
        (
            "[export.nats]\nurl = \"nats://x:port\"\n",
            (2, 7),
            "port that is not a number",
        ),
        (
            "[export.nats]\nhost = \"web.1\"\n",
            (2, 8),
            "must not contain `.`",
        ),
        ("[export.nats]\nhost = \"a b\"\n", (2, 8), "whitespace"),
        ("[export.nats]\nhost = \"\"\n", (2, 8), "must not be empty"),
        (
            "[export.nats]\nsubject_prefix = \"a..b\"\n",
            (2, 18),
            "token between dots",
        ),
        (
            "[export.nats]\nsubject_prefix = \"a.>\"\n",
            (2, 18),
            "`*` or `>`",
        ),
        ("[export.nats]\nstream = \"S/1\"\n", (2, 10), "`/`"),
        ("[export.nats]\nspool_max_mb = -1\n", (2, 16), "negative"),
        (
            "[export.nats]\nstop_grace_secs = 61\n",
            (2, 19),
            "at most 60",
        ),
        (
            "[export.nats]\nevents_per_message = 1025\n",
            (2, 22),
            "at most 1024",
        ),
        (
            "[export.nats]\ntoken_file = \"/t\"\ncredentials = \"/c\"\n",
            (3, 15),
            "not both",
        ),
        ("[export.nats]\ncert = \"/c\"\n", (2, 8), "key is missing"),
    ] {
        let e = parse_err(text);
        assert_eq!(line_col(&e), position, "{text}: {e}");
        assert!(e.to_string().contains(wording), "{text}: {e}");
    }
    let e = parse_err("[export.nats]\nspool = 1\n");
    assert!(
        matches!(&e, ConfigError::UnknownKey { key, section, .. }
            if key == "spool" && section == "export.nats"),
        "{e}"
    );
    assert!(e.to_string().contains("in [export.nats]"), "{e}");
    let e = parse_err("[export.kafka]\nenabled = true\n");
    assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e}");
}

#[test]
fn subject_tokens_refuse_separators_wildcards_and_blanks() {
    use crate::config::subject_token_problem;
    assert_eq!(subject_token_problem("web-1_x"), None);
    for bad in ["", "a.b", "a*", ">", "a b", "a\tb", "a\u{7}"] {
        assert!(subject_token_problem(bad).is_some(), "{bad:?}");
    }
}
