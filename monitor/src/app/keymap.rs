//! Key → [`Action`], by input mode and view: the whole keyboard in one place (the help
//! overlay and docs/tui.md list the same keys). [`App::update`] applies the action.
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::{App, Mode, View};
use crate::event::Family;

/// Rows a page key moves.
pub const PAGE_ROWS: usize = 10;
/// The families keys `1`–`4` switch, in key order.
pub const FAMILY_KEYS: [Family; 4] = [
    Family::Process,
    Family::File,
    Family::Network,
    Family::Kernel,
];

/// What a key asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Quit,
    FocusNext,
    FocusPrev,
    /// Towards newer events (up the table).
    SelectNewer(usize),
    /// Towards older events (down the table).
    SelectOlder(usize),
    /// Back to following the newest event.
    SelectNewest,
    SelectOldest,
    OpenDetail,
    /// `e`: the selected event's process — every pane filtered to its pid, the focus on its
    /// process events.
    ShowProcessEvents,
    /// `i`: the incident view of the selected event's process.
    OpenIncident,
    /// `Left` (true) / `Right` (false) in the incident view: fold or unfold the selected
    /// process's events.
    FoldProcess(bool),
    /// `Z`: the presenter layout on or off.
    TogglePresenter,
    /// Closes the detail view, the help overlay or the rules pane (the innermost open).
    Close,
    ToggleFamily(Family),
    /// `p`: the next key picks a family.
    ChooseProbe,
    ReloadRules,
    ToggleRulesPane,
    ToggleSelectedRule,
    SimulateBlock,
    AskEnforce,
    Confirm(bool),
    /// `D`: the kernel's deny entries.
    ToggleBlocksPane,
    /// Removes the selected deny entry.
    UnblockSelected,
    /// `h`: the stored history.
    ToggleHistory,
    /// `/` in the history view: edit its query.
    EditHistoryQuery,
    HistoryQueryChar(char),
    HistoryQueryBackspace,
    /// Ctrl-U: empties the query being edited.
    HistoryQueryClear,
    /// Runs the edited query.
    RunHistoryQuery,
    /// Leaves the query as it was.
    CancelHistoryQuery,
    StartFilter,
    FilterChar(char),
    FilterBackspace,
    FilterClearText,
    /// Ends filter input, keeping the filter.
    FilterAccept,
    ClearFilter,
    ToggleSuspiciousOnly,
    TogglePause,
    Clear,
    ToggleHelp,
    /// Nothing to do (a key that only cancels a prompt).
    Cancel,
    /// Demo `n`: the next step.
    DemoNext,
    /// Demo `p`: the previous step again.
    DemoPrevious,
    /// Demo `a`: auto-play on or off.
    DemoAuto,
    /// Demo `Space`: pause or resume auto-play.
    DemoPause,
    /// Demo `b`: simulate blocking the step's offender.
    DemoBlock,
    /// Demo `N`: the narration instead of (or beside) the event panes.
    DemoToggleNarration,
}

impl App {
    /// The action a key stands for in the current mode and view.
    pub fn action_for_key(&self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('C')) {
            return Some(Action::Quit);
        }
        match &self.mode {
            Mode::Filter => {
                return match key.code {
                    KeyCode::Enter => Some(Action::FilterAccept),
                    KeyCode::Esc => Some(Action::ClearFilter),
                    KeyCode::Backspace => Some(Action::FilterBackspace),
                    KeyCode::Char('u') if ctrl => Some(Action::FilterClearText),
                    KeyCode::Char(c) if !ctrl => Some(Action::FilterChar(c)),
                    _ => None,
                };
            }
            Mode::ChooseProbe => {
                return Some(match key.code {
                    KeyCode::Char('1' | 'p') => Action::ToggleFamily(Family::Process),
                    KeyCode::Char('2' | 'f') => Action::ToggleFamily(Family::File),
                    KeyCode::Char('3' | 'n') => Action::ToggleFamily(Family::Network),
                    KeyCode::Char('4' | 'k') => Action::ToggleFamily(Family::Kernel),
                    _ => Action::Cancel,
                });
            }
            Mode::ConfirmEnforce(_) => {
                return Some(Action::Confirm(matches!(
                    key.code,
                    KeyCode::Char('y' | 'Y')
                )));
            }
            Mode::HistoryQuery => {
                return match key.code {
                    KeyCode::Enter => Some(Action::RunHistoryQuery),
                    KeyCode::Esc => Some(Action::CancelHistoryQuery),
                    KeyCode::Backspace => Some(Action::HistoryQueryBackspace),
                    KeyCode::Char('u') if ctrl => Some(Action::HistoryQueryClear),
                    KeyCode::Char(c) if !ctrl => Some(Action::HistoryQueryChar(c)),
                    _ => None,
                };
            }
            Mode::Normal => {}
        }
        if self.help {
            // Any key closes the help.
            return Some(Action::ToggleHelp);
        }
        if self.detail.is_some() {
            return match key.code {
                KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q') => Some(Action::Close),
                KeyCode::Up | KeyCode::Char('k') => Some(Action::SelectNewer(1)),
                KeyCode::Down | KeyCode::Char('j') => Some(Action::SelectOlder(1)),
                KeyCode::PageUp => Some(Action::SelectNewer(PAGE_ROWS)),
                KeyCode::PageDown => Some(Action::SelectOlder(PAGE_ROWS)),
                KeyCode::Char('b') => Some(Action::SimulateBlock),
                KeyCode::Char('B') => Some(Action::AskEnforce),
                KeyCode::Char('e') => Some(Action::ShowProcessEvents),
                KeyCode::Char('i') => Some(Action::OpenIncident),
                KeyCode::Char('Z') => Some(Action::TogglePresenter),
                KeyCode::Char('?') => Some(Action::ToggleHelp),
                _ => None,
            };
        }
        if let Some(action) = navigation_action(key.code) {
            return Some(action);
        }
        if key.code == KeyCode::Char('Z') {
            return Some(Action::TogglePresenter);
        }
        // The views' keys open (or, pressed again, close) their view from anywhere.
        match key.code {
            KeyCode::Char('R') => return Some(Action::ToggleRulesPane),
            KeyCode::Char('D') => return Some(Action::ToggleBlocksPane),
            KeyCode::Char('h') => return Some(Action::ToggleHistory),
            _ => {}
        }
        match self.view {
            View::Rules => {
                return match key.code {
                    KeyCode::Esc | KeyCode::Char('q') => Some(Action::ToggleRulesPane),
                    KeyCode::Char(' ') | KeyCode::Enter => Some(Action::ToggleSelectedRule),
                    KeyCode::Char('r') => Some(Action::ReloadRules),
                    KeyCode::Char('?') => Some(Action::ToggleHelp),
                    KeyCode::Char(c @ '1'..='4') => family_key(c).map(Action::ToggleFamily),
                    _ => None,
                };
            }
            View::Blocks => {
                return match key.code {
                    KeyCode::Esc | KeyCode::Char('q') => Some(Action::ToggleBlocksPane),
                    KeyCode::Char('u') | KeyCode::Delete => Some(Action::UnblockSelected),
                    KeyCode::Char('?') => Some(Action::ToggleHelp),
                    _ => None,
                };
            }
            View::History => {
                return match key.code {
                    KeyCode::Esc | KeyCode::Char('q') => Some(Action::ToggleHistory),
                    KeyCode::Char('/') => Some(Action::EditHistoryQuery),
                    KeyCode::Char('r') => Some(Action::RunHistoryQuery),
                    KeyCode::Enter => Some(Action::OpenDetail),
                    KeyCode::Char('?') => Some(Action::ToggleHelp),
                    _ => None,
                };
            }
            View::Incident => {
                return match key.code {
                    KeyCode::Esc | KeyCode::Char('q' | 'i') => Some(Action::Close),
                    KeyCode::Enter => Some(Action::OpenDetail),
                    KeyCode::Char('e') => Some(Action::ShowProcessEvents),
                    KeyCode::Left | KeyCode::Char('-') => Some(Action::FoldProcess(true)),
                    KeyCode::Right | KeyCode::Char('+') => Some(Action::FoldProcess(false)),
                    KeyCode::Char('b') => Some(Action::SimulateBlock),
                    KeyCode::Char('B') => Some(Action::AskEnforce),
                    KeyCode::Char('?') => Some(Action::ToggleHelp),
                    _ => None,
                };
            }
            View::Live => {}
        }
        if self.demo.is_some()
            && let Some(action) = demo_action(key.code)
        {
            return Some(action);
        }
        Some(match key.code {
            KeyCode::Char('q') => Action::Quit,
            KeyCode::Char('?') => Action::ToggleHelp,
            KeyCode::Tab => Action::FocusNext,
            KeyCode::BackTab => Action::FocusPrev,
            KeyCode::Enter => Action::OpenDetail,
            KeyCode::Char('e') => Action::ShowProcessEvents,
            KeyCode::Char('i') => Action::OpenIncident,
            KeyCode::Esc => Action::ClearFilter,
            KeyCode::Char(c @ '1'..='4') => Action::ToggleFamily(family_key(c)?),
            KeyCode::Char('p') => Action::ChooseProbe,
            KeyCode::Char('r') => Action::ReloadRules,
            KeyCode::Char('b') => Action::SimulateBlock,
            KeyCode::Char('B') => Action::AskEnforce,
            KeyCode::Char('/') => Action::StartFilter,
            KeyCode::Char('f') => Action::ToggleSuspiciousOnly,
            KeyCode::Char(' ') => Action::TogglePause,
            KeyCode::Char('c') => Action::Clear,
            _ => return None,
        })
    }
}

/// The demo's keys over the live view (`p` is no longer the probe prompt there).
fn demo_action(code: KeyCode) -> Option<Action> {
    Some(match code {
        KeyCode::Char('n') => Action::DemoNext,
        KeyCode::Char('p') => Action::DemoPrevious,
        KeyCode::Char('a') => Action::DemoAuto,
        KeyCode::Char(' ') => Action::DemoPause,
        KeyCode::Char('b') => Action::DemoBlock,
        KeyCode::Char('N') => Action::DemoToggleNarration,
        _ => return None,
    })
}

/// Keys that move a selection, the same in every view.
fn navigation_action(code: KeyCode) -> Option<Action> {
    Some(match code {
        KeyCode::Up | KeyCode::Char('k') => Action::SelectNewer(1),
        KeyCode::Down | KeyCode::Char('j') => Action::SelectOlder(1),
        KeyCode::PageUp => Action::SelectNewer(PAGE_ROWS),
        KeyCode::PageDown => Action::SelectOlder(PAGE_ROWS),
        KeyCode::Home | KeyCode::Char('g') => Action::SelectNewest,
        KeyCode::End | KeyCode::Char('G') => Action::SelectOldest,
        _ => return None,
    })
}

fn family_key(c: char) -> Option<Family> {
    let index = c.to_digit(10)?.checked_sub(1)?;
    FAMILY_KEYS.get(index as usize).copied()
}
