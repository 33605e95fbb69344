//! The rules pane (`R`): every rule with its enabled state, score, action and hits; `Space`
//! toggles the selected rule at once.
use ratatui::{
    Frame,
    layout::{Constraint, Rect},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Row, Table},
};

use std::path::{Path, PathBuf};

use super::{Styles, Theme, clean, hint, keep_tail};
use crate::app::App;

pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let styles = Styles::new(theme);
    let title = Line::from(vec![
        Span::styled(
            format!(" ▶ Rules ({}) ", app.rules.len()),
            styles.title(true),
        ),
        Span::styled(
            " Space: enable/disable  r: reload  Esc: back ",
            styles.dim(),
        ),
    ]);
    let block = Block::new()
        .borders(Borders::TOP)
        .title(title)
        .border_style(styles.bold());
    let rule_width = if area.width >= 120 { 36 } else { 26 };
    // What the fixed columns and the spaces between the six leave the file column: a path
    // longer than that keeps its end (the file name and line) in view.
    let file_width = usize::from(area.width).saturating_sub(rule_width + 3 + 5 + 14 + 8 + 5);
    let data_rows = usize::from(area.height.saturating_sub(2)).max(1);
    let start = app.rule_selected.saturating_sub(data_rows - 1);
    let rows = app
        .rules
        .iter()
        .enumerate()
        .skip(start)
        .take(data_rows)
        .map(|(i, rule)| {
            let enabled = if rule.enabled {
                Span::styled("on", styles.ok())
            } else {
                Span::styled("off", styles.warn())
            };
            let mut row = Row::new(vec![
                Cell::from(enabled),
                Cell::from(clean(&rule.name).into_owned()),
                Cell::from(Line::from(format!("{:.2}", rule.score)).right_aligned()),
                Cell::from(rule.action.as_str()),
                Cell::from(Line::from(rule.hits.to_string()).right_aligned()),
                Cell::from(keep_tail(
                    &format!(
                        "{}:{}",
                        clean(&shown_path(&rule.file, &app.rule_dirs)),
                        rule.line
                    ),
                    file_width,
                )),
            ]);
            if i == app.rule_selected {
                row = row.style(styles.selected(true));
            } else if !rule.enabled {
                row = row.style(styles.dim());
            }
            row
        });
    let widths = [
        Constraint::Length(3),
        Constraint::Length(rule_width as u16),
        Constraint::Length(5),
        Constraint::Length(14),
        Constraint::Length(8),
        Constraint::Fill(1),
    ];
    let header = Row::new(["on", "rule", "score", "action", "hits", "file"]).style(styles.dim());
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .column_spacing(1);
    frame.render_widget(table, area);
    if app.rules.is_empty() {
        hint(
            frame,
            area,
            "  no rules loaded (see --rules DIR and docs/rules.md)",
            &styles,
        );
    }
}

/// A rule's file as the column shows it: relative to the rule directory it came from (the
/// deepest one that holds it), else the whole path; `.` and `..` resolved either way, by the
/// text alone (the file system is not asked).
pub fn shown_path(file: &Path, dirs: &[PathBuf]) -> String {
    let file = normalise(file);
    let relative = dirs
        .iter()
        .map(|dir| normalise(dir))
        .filter_map(|dir| {
            let depth = dir.components().count();
            file.strip_prefix(&dir)
                .ok()
                .map(|rest| (depth, rest.to_path_buf()))
        })
        .filter(|(_, rest)| !rest.as_os_str().is_empty())
        .max_by_key(|(depth, _)| *depth)
        .map(|(_, rest)| rest);
    relative.unwrap_or(file).display().to_string()
}

/// `path` with `.` and `..` resolved by the text alone (the project's lexical rules for kernel
/// paths, `crate::paths::normalize`).
fn normalise(path: &Path) -> PathBuf {
    PathBuf::from(crate::paths::normalize(&path.to_string_lossy()))
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::shown_path;

    #[test]
    fn rule_files_show_relative_to_their_directory() {
        let dirs = [
            PathBuf::from("/src/secmon/monitor/../rules"),
            PathBuf::from("/etc/secmon/rules.d"),
        ];
        let shown = |file: &str| shown_path(Path::new(file), &dirs);
        assert_eq!(
            shown("/src/secmon/monitor/../rules/credential_access/credential_files.json"),
            "credential_access/credential_files.json"
        );
        assert_eq!(shown("/etc/secmon/rules.d/./local.json"), "local.json");
        // Outside every directory: the whole path, normalised.
        assert_eq!(shown("/opt/x/../y/./z.json"), "/opt/y/z.json");
        assert_eq!(shown("/../a.json"), "/a.json");
        assert_eq!(
            shown_path(Path::new("../r/./a/../b.json"), &[]),
            "../r/b.json"
        );
    }

    #[test]
    fn the_deepest_directory_wins() {
        let dirs = [PathBuf::from("/r"), PathBuf::from("/r/extra")];
        assert_eq!(shown_path(Path::new("/r/extra/a.json"), &dirs), "a.json");
        assert_eq!(shown_path(Path::new("/r/b/a.json"), &dirs), "b/a.json");
        // A directory that is only a prefix of the name is not its directory.
        let dirs = [PathBuf::from("/r/ext")];
        assert_eq!(
            shown_path(Path::new("/r/extra/a.json"), &dirs),
            "/r/extra/a.json"
        );
    }
}
