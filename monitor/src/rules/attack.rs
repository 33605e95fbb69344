//! MITRE ATT&CK (Enterprise) reference data for rule metadata: the tactics a rule's `tactic`
//! may name, the shape of a technique id, and the names of the techniques the shipped pack
//! uses (for the generated rule reference; an id without a name here is still valid).

use std::fmt;

/// An ATT&CK Enterprise tactic, in the matrix's order.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tactic {
    Reconnaissance,
    ResourceDevelopment,
    InitialAccess,
    Execution,
    Persistence,
    PrivilegeEscalation,
    DefenseEvasion,
    CredentialAccess,
    Discovery,
    LateralMovement,
    Collection,
    CommandAndControl,
    Exfiltration,
    Impact,
}

impl Tactic {
    pub const ALL: [Tactic; 14] = [
        Tactic::Reconnaissance,
        Tactic::ResourceDevelopment,
        Tactic::InitialAccess,
        Tactic::Execution,
        Tactic::Persistence,
        Tactic::PrivilegeEscalation,
        Tactic::DefenseEvasion,
        Tactic::CredentialAccess,
        Tactic::Discovery,
        Tactic::LateralMovement,
        Tactic::Collection,
        Tactic::CommandAndControl,
        Tactic::Exfiltration,
        Tactic::Impact,
    ];

    /// The value a rule file writes (`"tactic": "defense_evasion"`), also the pack's
    /// directory name for the tactic.
    pub fn key(self) -> &'static str {
        self.table().0
    }

    /// ATT&CK's name for it: `Defense Evasion`.
    pub fn name(self) -> &'static str {
        self.table().1
    }

    /// ATT&CK's id: `TA0005`.
    pub fn id(self) -> &'static str {
        self.table().2
    }

    pub fn url(self) -> String {
        format!("https://attack.mitre.org/tactics/{}/", self.id())
    }

    pub fn from_key(key: &str) -> Option<Tactic> {
        Tactic::ALL.into_iter().find(|t| t.key() == key)
    }

    fn table(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Tactic::Reconnaissance => ("reconnaissance", "Reconnaissance", "TA0043"),
            Tactic::ResourceDevelopment => {
                ("resource_development", "Resource Development", "TA0042")
            }
            Tactic::InitialAccess => ("initial_access", "Initial Access", "TA0001"),
            Tactic::Execution => ("execution", "Execution", "TA0002"),
            Tactic::Persistence => ("persistence", "Persistence", "TA0003"),
            Tactic::PrivilegeEscalation => {
                ("privilege_escalation", "Privilege Escalation", "TA0004")
            }
            Tactic::DefenseEvasion => ("defense_evasion", "Defense Evasion", "TA0005"),
            Tactic::CredentialAccess => ("credential_access", "Credential Access", "TA0006"),
            Tactic::Discovery => ("discovery", "Discovery", "TA0007"),
            Tactic::LateralMovement => ("lateral_movement", "Lateral Movement", "TA0008"),
            Tactic::Collection => ("collection", "Collection", "TA0009"),
            Tactic::CommandAndControl => ("command_and_control", "Command and Control", "TA0011"),
            Tactic::Exfiltration => ("exfiltration", "Exfiltration", "TA0010"),
            Tactic::Impact => ("impact", "Impact", "TA0040"),
        }
    }
}

impl fmt::Display for Tactic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// `T` and four digits, optionally `.` and a three-digit sub-technique: `T1059`, `T1059.004`.
pub fn is_technique_id(id: &str) -> bool {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let Some(rest) = id.strip_prefix('T') else {
        return false;
    };
    match rest.split_once('.') {
        None => digits(rest, 4),
        Some((technique, sub)) => digits(technique, 4) && digits(sub, 3),
    }
}

/// The technique's page: `T1204.002` → `https://attack.mitre.org/techniques/T1204/002/`.
pub fn technique_url(id: &str) -> String {
    format!(
        "https://attack.mitre.org/techniques/{}/",
        id.replace('.', "/")
    )
}

/// ATT&CK's name for a technique, when this table has it.
pub fn technique_name(id: &str) -> Option<&'static str> {
    TECHNIQUE_NAMES
        .binary_search_by_key(&id, |&(known, _)| known)
        .ok()
        .map(|i| TECHNIQUE_NAMES[i].1)
}

/// The techniques the shipped pack names, sorted by id. A rule may name others; add them here
/// so the rule reference shows their names (a test checks the shipped pack's are all here).
const TECHNIQUE_NAMES: &[(&str, &str)] = &[
    ("T1003.007", "OS Credential Dumping: Proc Filesystem"),
    (
        "T1003.008",
        "OS Credential Dumping: /etc/passwd and /etc/shadow",
    ),
    ("T1006", "Direct Volume Access"),
    ("T1014", "Rootkit"),
    ("T1016", "System Network Configuration Discovery"),
    ("T1027", "Obfuscated Files or Information"),
    ("T1033", "System Owner/User Discovery"),
    ("T1036.004", "Masquerading: Masquerade Task or Service"),
    (
        "T1036.005",
        "Masquerading: Match Legitimate Resource Name or Location",
    ),
    (
        "T1037.004",
        "Boot or Logon Initialization Scripts: RC Scripts",
    ),
    ("T1040", "Network Sniffing"),
    ("T1046", "Network Service Discovery"),
    ("T1053.002", "Scheduled Task/Job: At"),
    ("T1053.003", "Scheduled Task/Job: Cron"),
    ("T1053.006", "Scheduled Task/Job: Systemd Timers"),
    ("T1055.008", "Process Injection: Ptrace System Calls"),
    ("T1055.009", "Process Injection: Proc Memory"),
    ("T1057", "Process Discovery"),
    ("T1059", "Command and Scripting Interpreter"),
    ("T1059.004", "Command and Scripting Interpreter: Unix Shell"),
    ("T1059.006", "Command and Scripting Interpreter: Python"),
    ("T1068", "Exploitation for Privilege Escalation"),
    ("T1069.001", "Permission Groups Discovery: Local Groups"),
    (
        "T1070.002",
        "Indicator Removal: Clear Linux or Mac System Logs",
    ),
    ("T1070.003", "Indicator Removal: Clear Command History"),
    ("T1070.004", "Indicator Removal: File Deletion"),
    ("T1070.006", "Indicator Removal: Timestomp"),
    ("T1082", "System Information Discovery"),
    ("T1083", "File and Directory Discovery"),
    ("T1087.001", "Account Discovery: Local Account"),
    ("T1095", "Non-Application Layer Protocol"),
    ("T1098", "Account Manipulation"),
    ("T1098.004", "Account Manipulation: SSH Authorized Keys"),
    ("T1105", "Ingress Tool Transfer"),
    ("T1136.001", "Create Account: Local Account"),
    ("T1140", "Deobfuscate/Decode Files or Information"),
    ("T1190", "Exploit Public-Facing Application"),
    ("T1204.002", "User Execution: Malicious File"),
    ("T1205.002", "Traffic Signaling: Socket Filters"),
    ("T1485", "Data Destruction"),
    ("T1496", "Resource Hijacking"),
    ("T1505.003", "Server Software Component: Web Shell"),
    ("T1539", "Steal Web Session Cookie"),
    (
        "T1543.002",
        "Create or Modify System Process: Systemd Service",
    ),
    (
        "T1546.004",
        "Event Triggered Execution: Unix Shell Configuration Modification",
    ),
    (
        "T1547.006",
        "Boot or Logon Autostart Execution: Kernel Modules and Extensions",
    ),
    (
        "T1547.013",
        "Boot or Logon Autostart Execution: XDG Autostart Entries",
    ),
    (
        "T1548.001",
        "Abuse Elevation Control Mechanism: Setuid and Setgid",
    ),
    (
        "T1548.003",
        "Abuse Elevation Control Mechanism: Sudo and Sudo Caching",
    ),
    ("T1552", "Unsecured Credentials"),
    ("T1552.001", "Unsecured Credentials: Credentials In Files"),
    ("T1552.004", "Unsecured Credentials: Private Keys"),
    (
        "T1552.005",
        "Unsecured Credentials: Cloud Instance Metadata API",
    ),
    ("T1554", "Compromise Host Software Binary"),
    (
        "T1555.003",
        "Credentials from Password Stores: Credentials from Web Browsers",
    ),
    (
        "T1555.005",
        "Credentials from Password Stores: Password Managers",
    ),
    (
        "T1556.003",
        "Modify Authentication Process: Pluggable Authentication Modules",
    ),
    ("T1557", "Adversary-in-the-Middle"),
    ("T1561.001", "Disk Wipe: Disk Content Wipe"),
    ("T1561.002", "Disk Wipe: Disk Structure Wipe"),
    ("T1562.001", "Impair Defenses: Disable or Modify Tools"),
    (
        "T1562.003",
        "Impair Defenses: Impair Command History Logging",
    ),
    ("T1564", "Hide Artifacts"),
    ("T1564.001", "Hide Artifacts: Hidden Files and Directories"),
    ("T1565.001", "Data Manipulation: Stored Data Manipulation"),
    ("T1571", "Non-Standard Port"),
    (
        "T1574.006",
        "Hijack Execution Flow: Dynamic Linker Hijacking",
    ),
    ("T1611", "Escape to Host"),
    ("T1620", "Reflective Code Loading"),
    ("T1622", "Debugger Evasion"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn technique_ids_are_checked_by_shape() {
        for good in ["T1059", "T1059.004", "T0001.000"] {
            assert!(is_technique_id(good), "{good}");
        }
        for bad in [
            "",
            "T",
            "t1059",
            "T105",
            "T10590",
            "T1059.4",
            "T1059.0041",
            "T1059.",
            "1059",
        ] {
            assert!(!is_technique_id(bad), "{bad}");
        }
        assert_eq!(
            technique_url("T1204.002"),
            "https://attack.mitre.org/techniques/T1204/002/"
        );
    }

    #[test]
    fn the_name_table_is_sorted_and_well_formed() {
        assert!(TECHNIQUE_NAMES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(TECHNIQUE_NAMES.iter().all(|(id, _)| is_technique_id(id)));
        assert_eq!(technique_name("T1105"), Some("Ingress Tool Transfer"));
        assert_eq!(technique_name("T9999"), None);
    }

    #[test]
    fn tactics_round_trip_through_their_keys() {
        for tactic in Tactic::ALL {
            assert_eq!(Tactic::from_key(tactic.key()), Some(tactic));
        }
        assert_eq!(Tactic::from_key("Execution"), None);
        assert_eq!(
            Tactic::CommandAndControl.url(),
            "https://attack.mitre.org/tactics/TA0011/"
        );
    }
}
