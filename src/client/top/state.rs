//! What `vigie top` shows and how keys change it, with no terminal: the
//! dashboard's board, the cursor, the line being typed (a filter or a
//! command) and the last command's result.

use crate::client::{
    dashboard::{Board, Metric, SortKey},
    run::Run,
};

/// What the keyboard is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Moving, sorting, selecting.
    Browse,
    /// Typing a filter (applied as it is typed).
    Filter(String),
    /// Typing a command to run on the selection.
    Command(String),
}

/// What a key asks of the program around the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing beyond redrawing.
    None,
    /// Leave.
    Quit,
    /// Run this command on these hosts (fleet indexes).
    Run(String, Vec<usize>),
}

/// A key, as the state understands it (the terminal's events are mapped to
/// these by the loop, so that the state can be driven by tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A printable character.
    Char(char),
    /// Ctrl with a letter.
    Ctrl(char),
    Enter,
    Esc,
    Backspace,
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
}

/// The whole screen's state.
#[derive(Debug)]
pub struct Top {
    /// The hosts and their figures.
    pub board: Board,
    /// The cursor's position among the rows shown.
    pub cursor: usize,
    /// The first row on screen.
    pub scroll: usize,
    /// What the keyboard is doing.
    pub mode: Mode,
    /// The command running or last run, if any.
    pub run: Option<Run>,
    /// A message for the status line (a refusal, a hint).
    pub message: Option<String>,
}

impl Top {
    /// A screen of this board.
    pub fn new(board: Board) -> Self {
        Self {
            board,
            cursor: 0,
            scroll: 0,
            mode: Mode::Browse,
            run: None,
            message: None,
        }
    }

    /// Applies a key; `page` is how many rows the table shows.
    pub fn key(&mut self, key: Key, page: usize) -> Action {
        // Ctrl-C leaves from anywhere: raw mode turns it into a key.
        if key == Key::Ctrl('c') {
            return Action::Quit;
        }
        self.message = None;
        match &mut self.mode {
            Mode::Browse => self.browse(key, page),
            Mode::Filter(text) => {
                match key {
                    Key::Char(c) => text.push(c),
                    Key::Backspace => {
                        text.pop();
                    }
                    Key::Esc => text.clear(),
                    Key::Enter => {}
                    _ => return Action::None,
                }
                let text = text.clone();
                self.board.set_filter(&text);
                if matches!(key, Key::Enter | Key::Esc) {
                    self.mode = Mode::Browse;
                }
                self.clamp(page);
                Action::None
            }
            Mode::Command(text) => match key {
                Key::Char(c) => {
                    text.push(c);
                    Action::None
                }
                Key::Backspace => {
                    text.pop();
                    Action::None
                }
                Key::Esc => {
                    self.mode = Mode::Browse;
                    Action::None
                }
                Key::Enter => {
                    let command = text.trim().to_owned();
                    self.mode = Mode::Browse;
                    if command.is_empty() {
                        return Action::None;
                    }
                    let hosts = self.targets();
                    if hosts.is_empty() {
                        self.message = Some("no host to run it on".into());
                        return Action::None;
                    }
                    Action::Run(command, hosts)
                }
                _ => Action::None,
            },
        }
    }

    fn browse(&mut self, key: Key, page: usize) -> Action {
        let count = self.board.shown_count();
        match key {
            Key::Char('q') | Key::Esc => return Action::Quit,
            Key::Up | Key::Char('k') => self.cursor = self.cursor.saturating_sub(1),
            Key::Down | Key::Char('j') => self.cursor += 1,
            Key::PageUp => self.cursor = self.cursor.saturating_sub(page.max(1)),
            Key::PageDown => self.cursor += page.max(1),
            Key::Home | Key::Char('g') => self.cursor = 0,
            Key::End | Key::Char('G') => self.cursor = count.saturating_sub(1),
            Key::Char('c') => self.board.sort_by(SortKey::By(Metric::Cpu)),
            Key::Char('m') => self.board.sort_by(SortKey::By(Metric::Memory)),
            Key::Char('l') => self.board.sort_by(SortKey::By(Metric::Load)),
            Key::Char('d') => self.board.sort_by(SortKey::By(Metric::Disk)),
            Key::Char('n') => self.board.sort_by(SortKey::Name),
            Key::Char(' ') => {
                if let Some(host) = self.board.shown_at(self.cursor).map(|r| r.host) {
                    self.board.toggle(host);
                    self.cursor += 1;
                }
            }
            Key::Char('a') => self.board.toggle_shown(),
            Key::Char('/') => self.mode = Mode::Filter(self.board.filter().to_owned()),
            Key::Char('!') | Key::Char('x') => self.mode = Mode::Command(String::new()),
            _ => {}
        }
        self.clamp(page);
        Action::None
    }

    /// The hosts a command goes to: the selection, or the host under the
    /// cursor when nothing is selected.
    pub fn targets(&mut self) -> Vec<usize> {
        let selected = self.board.selection();
        if !selected.is_empty() {
            return selected;
        }
        self.board
            .shown_at(self.cursor)
            .map(|r| vec![r.host])
            .unwrap_or_default()
    }

    /// Keeps the cursor on a row and on screen.
    pub fn clamp(&mut self, page: usize) {
        let count = self.board.shown_count();
        self.cursor = self.cursor.min(count.saturating_sub(1));
        let page = page.max(1);
        if self.cursor < self.scroll {
            self.scroll = self.cursor;
        } else if self.cursor >= self.scroll + page {
            self.scroll = self.cursor + 1 - page;
        }
        self.scroll = self.scroll.min(count.saturating_sub(page));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::dashboard::Thresholds;

    fn top() -> Top {
        Top::new(Board::new(
            (0..5).map(|i| (i, format!("h{i}"))),
            Thresholds::default(),
        ))
    }

    fn keys(top: &mut Top, text: &str) -> Action {
        let mut last = Action::None;
        for c in text.chars() {
            last = top.key(Key::Char(c), 3);
        }
        last
    }

    #[test]
    fn a_command_goes_to_the_selection_or_else_the_host_under_the_cursor() {
        let mut t = top();
        t.board.sort_by(SortKey::Name);
        t.key(Key::Down, 3);
        keys(&mut t, "!");
        keys(&mut t, "uptime");
        assert_eq!(t.key(Key::Enter, 3), Action::Run("uptime".into(), vec![1]));
        // Space selects and moves down.
        keys(&mut t, "  ");
        assert_eq!(t.board.selection(), [1, 2]);
        keys(&mut t, "x");
        keys(&mut t, "df -h");
        assert_eq!(
            t.key(Key::Enter, 3),
            Action::Run("df -h".into(), vec![1, 2])
        );
        // Esc leaves the prompt without running anything.
        keys(&mut t, "!rm");
        assert_eq!(t.key(Key::Esc, 3), Action::None);
        assert_eq!(t.mode, Mode::Browse);
    }

    #[test]
    fn the_filter_applies_as_typed_and_the_cursor_stays_on_a_row() {
        let mut t = top();
        t.key(Key::End, 3);
        assert_eq!(t.cursor, 4);
        assert_eq!(t.scroll, 2, "the cursor is kept on screen");
        keys(&mut t, "/h3");
        assert_eq!(t.board.shown_count(), 1);
        assert_eq!(t.cursor, 0);
        t.key(Key::Enter, 3);
        assert_eq!(t.mode, Mode::Browse);
        assert_eq!(t.board.filter(), "h3");
        // Typed keys in the filter are not commands: "q" did not quit.
        keys(&mut t, "/");
        assert_eq!(t.key(Key::Char('q'), 3), Action::None);
        assert_eq!(t.key(Key::Esc, 3), Action::None, "Esc clears the filter");
        assert_eq!(t.board.shown_count(), 5);
    }

    #[test]
    fn q_esc_and_ctrl_c_leave() {
        let mut t = top();
        assert_eq!(t.key(Key::Char('q'), 3), Action::Quit);
        assert_eq!(t.key(Key::Esc, 3), Action::Quit);
        keys(&mut t, "!ls");
        assert_eq!(t.key(Key::Ctrl('c'), 3), Action::Quit, "even while typing");
    }
}
