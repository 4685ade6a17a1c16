//! How the CLI writes: plain text with colours (only on a terminal, and
//! never when NO_COLOR is set), or one JSON object per line with `--json`;
//! a progress bar on a terminal for fan-outs; tables with aligned columns.

use std::io::{IsTerminal, Write};

use anstyle::{AnsiColor, Style};
use serde::Serialize;

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

    /// Styles `text` when colours are on.
    pub fn paint(&self, style: Style, text: &str) -> String {
        if self.color {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text.to_owned()
        }
    }

    /// A host's name in its colour.
    pub fn host(&self, name: &str) -> String {
        let hash = name
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        let color = HOST_COLORS[hash as usize % HOST_COLORS.len()];
        self.paint(Style::new().fg_color(Some(color.into())).bold(), name)
    }

    /// Green for success, red otherwise.
    pub fn status(&self, ok: bool, text: &str) -> String {
        let color = if ok { AnsiColor::Green } else { AnsiColor::Red };
        self.paint(Style::new().fg_color(Some(color.into())), text)
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
            let _ = writeln!(out, "{line}");
        }
    }

    /// Writes a line on stdout.
    pub fn line(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
    }

    /// Writes a line on stderr.
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

/// Writes rows with aligned columns; the last column is not padded.
pub fn table(printer: &Printer, header: &[&str], rows: &[Vec<String>]) {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(visible_width(cell));
        }
    }
    let render = |cells: Vec<String>| {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < cells.len() {
                let pad = widths[i].saturating_sub(visible_width(cell)) + 2;
                line.push_str(&" ".repeat(pad));
            }
        }
        line.trim_end().to_owned()
    };
    printer.line(&printer.bold(&render(header.iter().map(|h| (*h).to_owned()).collect())));
    for row in rows {
        printer.line(&render(row.clone()));
    }
}

/// The width of text on screen, ignoring colour escape sequences.
fn visible_width(text: &str) -> usize {
    let mut width = 0;
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\u{1b}') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => width += 1,
        }
    }
    width
}

pub use crate::client::format::{bytes, duration};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_take_no_width() {
        assert_eq!(visible_width("\u{1b}[1mweb1\u{1b}[0m"), 4);
    }
}
