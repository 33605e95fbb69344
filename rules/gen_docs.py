#!/usr/bin/env python3
"""Regenerates the rule reference at the end of docs/rules.md from the rule files.

Usage: python3 rules/gen_docs.py            (from the repository root; rewrites docs/rules.md)
       python3 rules/gen_docs.py --check    (exit status 1 if docs/rules.md is out of date)

Everything between the BEGIN/END GENERATED markers in docs/rules.md is replaced; the rest of
the file is left alone. Each rule's `description` is expected in the pack's house format:

    <Label>. Tactic: <tactic>. ATT&CK: <id> <name> (<link>); ... What: ... Why: ... False positives: ...

The loader only reads *.json files, so this script can live next to the rules.
"""
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = os.path.join(ROOT, "rules")
DOC = os.path.join(ROOT, "docs", "rules.md")
BEGIN = "<!-- BEGIN GENERATED RULES (python3 rules/gen_docs.py) -->"
END = "<!-- END GENERATED RULES -->"

TACTICS = [
    ("execution", "Execution", "TA0002"),
    ("persistence", "Persistence", "TA0003"),
    ("privilege_escalation", "Privilege Escalation", "TA0004"),
    ("defense_evasion", "Defense Evasion", "TA0005"),
    ("credential_access", "Credential Access", "TA0006"),
    ("discovery", "Discovery", "TA0007"),
    ("command_and_control", "Command and Control", "TA0011"),
    ("impact", "Impact", "TA0040"),
]

DESC = re.compile(
    r"^(?P<title>.*?)\. Tactic: (?P<tactic>.*?)\. ATT&CK: (?P<attack>.*?)\. "
    r"What: (?P<what>.*?) Why: (?P<why>.*?) False positives: (?P<fp>.*)$",
    re.S,
)
TECH = re.compile(r"(T\d{4}(?:\.\d{3})?) (.*?) \((https://attack\.mitre\.org/[^)]*)\)")


def load():
    packs = []
    for dirpath, dirnames, filenames in os.walk(RULES):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith(".json") and not name.startswith("."):
                path = os.path.join(dirpath, name)
                # utf-8-sig: the loader accepts a byte-order mark too.
                with open(path, encoding="utf-8-sig") as f:
                    packs.append((os.path.relpath(path, ROOT), json.load(f)))
    return packs


def severity_alone(score):
    if score >= 0.85:
        return "malicious on its own"
    if score >= 0.6:
        return "suspicious on its own"
    return "weak signal: benign on its own, adds to other matches"


def md(text):
    return text.replace("|", "\\|")


def rule_section(path, rule):
    m = DESC.match(rule["description"])
    if not m:
        sys.exit(f"{path}: rule {rule['name']}: description not in the house format")
    techs = TECH.findall(m.group("attack"))
    attack = "; ".join(f"[{t}]({link}) {name}" for t, name, link in techs)
    lines = [f"#### `{rule['name']}` — {rule['label']}", ""]
    lines.append("| | |")
    lines.append("| --- | --- |")
    lines.append(f"| Tactic | {m.group('tactic')} |")
    lines.append(f"| ATT&CK | {attack} |")
    lines.append(f"| Score | {rule['risk_score']} ({severity_alone(rule['risk_score'])}) |")
    lines.append(f"| Action | `{rule['action']}`{'' if rule.get('enabled', True) else ' (disabled by default)'} |")
    lines.append(f"| Event types | {', '.join('`' + t + '`' for t in rule['event_types'])} |")
    req = rule.get("requires")
    if req:
        lines.append(
            f"| Chain | requires [`{req['rule']}`](#{anchor(req['rule'])}) within {req.get('within_secs', 60)} s, "
            f"scope `{req.get('scope', 'process')}` |"
        )
    lines.append(f"| File | [`{path}`](../{path}) |")
    lines.append(f"| Tests | {len(rule.get('tests', []))} |")
    lines.append("")
    lines.append(f"**What.** {m.group('what').strip()}")
    lines.append("")
    lines.append(f"**Why.** {m.group('why').strip()}")
    lines.append("")
    lines.append(f"**Known false positives.** {m.group('fp').strip()}")
    lines.append("")
    lines.append(f"**Recommendation.** {rule['recommendation']}")
    lines.append("")
    lines.append("```text")
    lines.append(rule["condition"])
    lines.append("```")
    lines.append("")
    return "\n".join(lines)


def anchor(name):
    # Every rule section gets an explicit <a id="name"> anchor, so links do not depend on how a
    # renderer turns headings into anchors.
    return name


def generate():
    packs = load()
    rules, lists, macros = [], {}, {}
    for path, pack in packs:
        for name, items in pack.get("lists", {}).items():
            lists.setdefault(name, []).extend(items)
        macros.update(pack.get("macros", {}))
        for rule in pack.get("rules", []):
            rules.append((path, rule))
    out = [BEGIN, "", "## The shipped rules", ""]
    out.append(f"{len(rules)} rules in {len(packs)} files. Score: the rule's `risk_score`; "
               "the severity column says what the rule alone makes of an event.")
    out.append("")
    out.append("| Rule | Label | Tactic | Score | Severity alone | Action |")
    out.append("| --- | --- | --- | --- | --- | --- |")
    order = {d: i for i, (d, _, _) in enumerate(TACTICS)}
    rules.sort(key=lambda pr: (order.get(pr[0].split(os.sep)[1], 99), pr[0]))
    for path, rule in rules:
        tactic = DESC.match(rule["description"]).group("tactic")
        sev = "malicious" if rule["risk_score"] >= 0.85 else "suspicious" if rule["risk_score"] >= 0.6 else "benign (weak)"
        out.append(f"| [`{rule['name']}`](#{anchor(rule['name'])}) | {md(rule['label'])} | {tactic} | "
                   f"{rule['risk_score']} | {sev} | `{rule['action']}` |")
    out.append("")
    for directory, title, ta in TACTICS:
        group = [(p, r) for p, r in rules if p.split(os.sep)[1] == directory]
        if not group:
            continue
        out.append(f"### {title} ([{ta}](https://attack.mitre.org/tactics/{ta}/))")
        out.append("")
        for path, rule in group:
            out.append(f'<a id="{anchor(rule["name"])}"></a>')
            out.append("")
            out.append(rule_section(path, rule))
    out.append("## Shared lists")
    out.append("")
    out.append("Defined in [`rules/lists.json`](../rules/lists.json). Extend any of them from your own "
               "rules directory (see [Extending a list](#extending-a-list-without-touching-the-rules)).")
    out.append("")
    out.append("| List | Entries |")
    out.append("| --- | --- |")
    for name in sorted(lists):
        items = ", ".join(f"`{i}`" for i in lists[name])
        out.append(f"| `{name}` | {md(items)} |")
    out.append("")
    out.append("## Shared macros")
    out.append("")
    for name in sorted(macros):
        out.append(f"- `{name}`: `{md(macros[name])}`")
    out.append("")
    out.append(END)
    return "\n".join(out) + "\n"


def main():
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < 0:
        sys.exit(f"{DOC}: the BEGIN/END GENERATED markers are missing")
    new = text[:start] + generate() + text[end + len(END) + 1:]
    if "--check" in sys.argv[1:]:
        if new != text:
            print("docs/rules.md is out of date: run python3 rules/gen_docs.py", file=sys.stderr)
            sys.exit(1)
        return
    with open(DOC, "w", encoding="utf-8") as f:
        f.write(new)


if __name__ == "__main__":
    main()
