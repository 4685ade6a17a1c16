//! How the CLI writes: plain text with colours (only on a terminal, and
//! never when NO_COLOR is set), or one JSON object per line with `--json`;
//! a progress bar on a terminal for fan-outs; tables with aligned columns.

use std::io::{IsTerminal, Write};

use anstyle::{AnsiColor, Style};
use serde::Serialize;

use crate::client::text::visible;

/// Colours a host name always gets the same one of.
const HOST_COLORS: [AnsiColor; 6] = [
    AnsiColor::Cyan,
    AnsiColor::Magenta,
    AnsiColor::Blue,
    AnsiColor::Yellow,
    AnsiColor::Green,
    AnsiColor::BrightCyan,
];

/// When to use colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// The CLI's output.
#[derive(Debug)]
pub struct Printer {
    /// One JSON object per line instead of text.
    pub json: bool,
    color: bool,
    progress: bool,
}

impl Printer {
    /// A printer for these flags and the current terminal.
    pub fn new(json: bool, color: ColorChoice) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let color = match color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => !no_color && std::io::stdout().is_terminal(),
        };
        Self {
            json,
            color: color && !json,
            progress: !json && std::io::stderr().is_terminal(),
        }
    }

    /// Styles `text` when colours are on, after making it visible: every
    /// painted text may come from a host, and this is where it is made
    /// safe, so no caller can forget to. Colour codes are added after, so
    /// they are the only escape sequences vigie writes.
    pub fn paint(&self, style: Style, text: &str) -> String {
        self.colored(style, &visible(text))
    }

    /// Styles text that is already visible.
    fn colored(&self, style: Style, shown: &str) -> String {
        if self.color {
            format!("{}{shown}{}", style.render(), style.render_reset())
        } else {
            shown.to_owned()
        }
    }

    /// A host's name in its colour.
    pub fn host(&self, name: &str) -> String {
        self.paint(host_style(name), name)
    }

    /// Green for success, red otherwise.
    pub fn status(&self, ok: bool, text: &str) -> String {
        self.paint(status_style(ok), text)
    }

    /// Dimmed text.
    pub fn dim(&self, text: &str) -> String {
        self.paint(Style::new().dimmed(), text)
    }

    /// Bold text.
    pub fn bold(&self, text: &str) -> String {
        self.paint(Style::new().bold(), text)
    }

    /// Writes one JSON object as a line on stdout.
    pub fn json_line<T: Serialize>(&self, value: &T) {
        if let Ok(line) = serde_json::to_string(value) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", json_visible(line));
        }
    }

    /// Writes a line on stdout. Text from hosts in it must have gone
    /// through a painter or [`visible`].
    pub fn line(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
    }

    /// Writes a line on stderr; text from hosts in it must have gone
    /// through a painter or [`visible`].
    pub fn note(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{text}");
    }

    /// A progress bar over `total` hosts on stderr, hidden unless stderr
    /// is a terminal (and in JSON mode).
    pub fn progress(&self, total: usize, what: &str) -> indicatif::ProgressBar {
        if !self.progress || total < 2 {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {pos}/{len} hosts, {elapsed}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(what.to_owned());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    }
}

/// The colour of a host's name: always the same one for a name.
fn host_style(name: &str) -> Style {
    let hash = name
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let color = HOST_COLORS[hash as usize % HOST_COLORS.len()];
    Style::new().fg_color(Some(color.into())).bold()
}

/// Green for success, red otherwise.
fn status_style(ok: bool) -> Style {
    let color = if ok { AnsiColor::Green } else { AnsiColor::Red };
    Style::new().fg_color(Some(color.into()))
}

/// A serialized JSON line with the characters [`visible`] would rewrite
/// written as `\uXXXX` escapes. serde_json already escapes C0 controls;
/// DEL, C1, bidi and invisible characters it leaves raw, and a terminal
/// showing the line would obey or hide them. Outside strings a JSON line
/// holds only ASCII punctuation, digits and letters, so every such
/// character is inside a string, where the escape decodes to the same
/// value.
fn json_visible(line: String) -> String {
    if crate::client::text::shows_as_is(&line) {
        return line;
    }
    let mut escaped = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        if crate::client::text::is_hidden(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                escaped.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            escaped.push(c);
        }
    }
    escaped
}

/// How a table paints a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Paint {
    Plain,
    Host,
    Status(bool),
}

/// One cell of a table: the text as it came, which the table makes visible
/// and paints itself, so that no pre-painted or raw text reaches it.
#[derive(Debug, Clone)]
pub struct Cell {
    text: String,
    paint: Paint,
}

impl Cell {
    /// A host's name, in its colour.
    pub fn host(name: &str) -> Self {
        Self {
            text: name.to_owned(),
            paint: Paint::Host,
        }
    }

    /// A state, green when `ok`, red otherwise.
    pub fn status(ok: bool, text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            paint: Paint::Status(ok),
        }
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Self {
            text,
            paint: Paint::Plain,
        }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        text.to_owned().into()
    }
}

/// Writes rows with aligned columns; the last column is not padded.
pub fn table(printer: &Printer, header: &[&str], rows: &[Vec<Cell>]) {
    for line in table_lines(printer, header, rows) {
        printer.line(&line);
    }
}

/// The lines of a table: cells made visible, aligned by their visible
/// width, then painted.
fn table_lines(printer: &Printer, header: &[&str], rows: &[Vec<Cell>]) -> Vec<String> {
    let columns = header.len();
    let shown: Vec<Vec<(std::borrow::Cow<'_, str>, &Cell)>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| (visible(&cell.text), cell)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &shown {
        for (i, (text, _)) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(text.chars().count());
        }
    }
    let header_line = {
        let mut line = String::new();
        for (i, h) in header.iter().enumerate() {
            line.push_str(h);
            if i + 1 < header.len() {
                let room = widths[i].saturating_sub(h.chars().count()) + 2;
                line.push_str(&" ".repeat(room));
            }
        }
        line.trim_end().to_owned()
    };
    let mut lines = vec![printer.bold(&header_line)];
    for row in &shown {
        // Trailing empty cells are left out, so no line ends in spaces.
        let count = row
            .iter()
            .rposition(|(text, _)| !text.is_empty())
            .map_or(0, |last| last + 1);
        let mut line = String::new();
        for (i, (text, cell)) in row.iter().take(count).enumerate() {
            line.push_str(&match cell.paint {
                Paint::Plain => text.to_string(),
                Paint::Host => printer.colored(host_style(&cell.text), text),
                Paint::Status(ok) => printer.colored(status_style(ok), text),
            });
            if i + 1 < count {
                let room = widths[i].saturating_sub(text.chars().count()) + 2;
                line.push_str(&" ".repeat(room));
            }
        }
        lines.push(line.trim_end().to_owned());
    }
    lines
}

pub use crate::client::format::{bytes, duration};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_escape_hidden_characters_and_decode_to_the_same_value() {
        let value = serde_json::json!({
            "text": "a\u{1b}]0;x\u{7}\u{7f}\u{9b}\u{202e}\u{200b}\u{e0041}z",
            "plain": "ok",
        });
        let line = json_visible(serde_json::to_string(&value).unwrap());
        assert!(line.is_ascii(), "{line}");
        assert!(
            line.contains("\\u007f") && line.contains("\\u202e"),
            "{line}"
        );
        assert!(line.contains("\\udb40\\udc41"), "a surrogate pair: {line}");
        let decoded: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(decoded, value);
        let plain = serde_json::to_string(&serde_json::json!({"t": "é ok"})).unwrap();
        assert_eq!(json_visible(plain.clone()), plain);
    }

    fn printer(color: bool) -> Printer {
        Printer {
            json: false,
            color,
            progress: false,
        }
    }

    #[test]
    fn tables_align_on_what_is_shown_and_paint_after_escaping() {
        let rows = vec![
            vec![
                Cell::host("h\u{202e}1"),
                Cell::from("\u{1b}[2J"),
                Cell::from("x"),
            ],
            vec![
                Cell::host("h2"),
                Cell::status(false, "bad\r"),
                Cell::from(""),
            ],
        ];
        let lines = table_lines(&printer(false), &["HOST", "VALUE", "MORE"], &rows);
        assert_eq!(
            lines,
            vec![
                "HOST        VALUE  MORE",
                "h<U+202E>1  ^[[2J  x",
                "h2          bad^M",
            ]
        );
        let colored = table_lines(&printer(true), &["HOST", "VALUE"], &rows);
        for line in &colored {
            let mut rest = line.as_str();
            while let Some(at) = rest.find('\u{1b}') {
                rest = &rest[at + 1..];
                let end = rest.find('m').expect("an SGR sequence ends in m");
                assert!(
                    rest.starts_with('[')
                        && rest[1..end]
                            .bytes()
                            .all(|b| b.is_ascii_digit() || b == b';'),
                    "{line:?}"
                );
            }
        }
        assert!(colored[1].contains("^[[2J"), "{:?}", colored[1]);
    }
}
