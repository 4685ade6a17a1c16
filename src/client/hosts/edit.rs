//! Changing a hosts file: adding and removing hosts, and saving it, in its
//! own format, keeping its header, comments and the order of other lines,
//! through an atomic replace.

use std::{collections::HashSet, path::Path};

use super::{Column, Format, HostEntry, HostsError, HostsFile, parse::validate};
use crate::wire::DEFAULT_PORT;

impl HostsFile {
    /// Adds hosts at the end of the file and saves it. Nothing is written
    /// if any of them is invalid or its name is taken.
    pub fn add(&mut self, new: &[HostEntry]) -> Result<(), HostsError> {
        let mut names: HashSet<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
        let mut lines = Vec::new();
        for host in new {
            validate(host).map_err(HostsError::Invalid)?;
            if !names.insert(host.name.as_str()) {
                return Err(HostsError::Invalid(format!(
                    "a host named {:?} exists already",
                    host.name
                )));
            }
            lines.push(self.format_line(host)?);
        }
        let mut text = self.text.clone();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        for line in &lines {
            text.push_str(line);
            text.push('\n');
        }
        self.replace_text(text)
    }

    /// Removes the named hosts and saves the file; other lines, comments
    /// included, stay as they were.
    pub fn remove(&mut self, names: &[String]) -> Result<(), HostsError> {
        let mut drop_lines = HashSet::new();
        for name in names {
            let (first, last) = *self
                .spans
                .get(name)
                .ok_or_else(|| HostsError::NotFound(name.clone()))?;
            drop_lines.extend(first..=last);
        }
        let mut text = String::new();
        for (index, line) in self.text.split_inclusive('\n').enumerate() {
            if !drop_lines.contains(&(index + 1)) {
                text.push_str(line);
            }
        }
        self.replace_text(text)
    }

    fn format_line(&self, host: &HostEntry) -> Result<String, HostsError> {
        match &self.format {
            Format::Text => Ok(text_line(host)),
            Format::Csv(columns) => {
                if !host.tags.is_empty() && !columns.contains(&Column::Tags) {
                    return Err(HostsError::Invalid(
                        "this file has no tags column: add one to its header to tag hosts".into(),
                    ));
                }
                let cells: Vec<String> = columns
                    .iter()
                    .map(|column| match column {
                        Column::Name => host.name.clone(),
                        Column::Address => host.address.clone(),
                        Column::Port => host.port.to_string(),
                        Column::Tags => host.tags.join(";"),
                    })
                    .collect();
                let mut writer = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::Any(b'\n'))
                    .from_writer(Vec::new());
                writer
                    .write_record(&cells)
                    .map_err(|e| HostsError::Invalid(e.to_string()))?;
                let bytes = writer
                    .into_inner()
                    .map_err(|e| HostsError::Invalid(e.to_string()))?;
                Ok(String::from_utf8_lossy(&bytes).trim_end().to_owned())
            }
        }
    }

    /// Parses `text` as the new content and, when the file has a path,
    /// writes it atomically.
    fn replace_text(&mut self, text: String) -> Result<(), HostsError> {
        let mut parsed = Self::parse(&text)
            .map_err(|(line, reason)| HostsError::Invalid(format!("line {line}: {reason}")))?;
        if let Some(path) = &self.path {
            crate::atomic_file::replace(path, text.as_bytes(), 0o600).map_err(|source| {
                HostsError::Io {
                    path: path.to_owned(),
                    source,
                }
            })?;
        }
        parsed.path = self.path.take();
        *self = parsed;
        Ok(())
    }

    /// Saves the file to `path` (for a file that has none yet).
    pub fn save_as(&mut self, path: &Path) -> Result<(), HostsError> {
        crate::atomic_file::replace(path, self.text.as_bytes(), 0o600).map_err(|source| {
            HostsError::Io {
                path: path.to_owned(),
                source,
            }
        })?;
        self.path = Some(path.to_owned());
        Ok(())
    }
}

pub(super) fn header_line(columns: &[Column]) -> String {
    columns
        .iter()
        .map(|c| c.header())
        .collect::<Vec<_>>()
        .join(",")
}

/// How a host is written in a text file: `address[:port]`, with `name=`
/// when the name differs from what that would be.
fn text_line(host: &HostEntry) -> String {
    let target = if host.port == DEFAULT_PORT {
        if host.address.contains(':') {
            format!("[{}]", host.address)
        } else {
            host.address.clone()
        }
    } else {
        host.endpoint()
    };
    if host.name == target {
        target
    } else {
        format!("{}={target}", host.name)
    }
}
