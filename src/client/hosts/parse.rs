//! Reading a hosts file: the text form line by line, the CSV form record
//! by record, each bad line a [`LineError`] with its number.

use std::{collections::HashSet, net::Ipv6Addr};

use super::{Column, Format, HostEntry, HostsFile, LineError};
use crate::wire::DEFAULT_PORT;

impl HostsFile {
    pub(super) fn parse_text(&mut self) {
        let mut names = HashSet::new();
        for (index, raw) in self.text.lines().enumerate() {
            let line = index + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            match parse_text_line(content) {
                Ok(mut host) => {
                    host.line = line;
                    if names.insert(host.name.clone()) {
                        self.spans.insert(host.name.clone(), (line, line));
                        self.hosts.push(host);
                    } else {
                        self.errors.push(LineError {
                            line,
                            reason: format!("duplicate name {:?}", host.name),
                        });
                    }
                }
                Err(reason) => self.errors.push(LineError { line, reason }),
            }
        }
    }

    pub(super) fn parse_csv(&mut self) -> Result<(), (usize, String)> {
        // A byte-order mark, as some spreadsheets write, is not part of the
        // first column's name.
        let text = self.text.strip_prefix('\u{feff}').unwrap_or(&self.text);
        // Comment lines become blank lines rather than being skipped by the
        // reader, whose line numbers would then no longer match the file.
        let text: String = text
            .split_inclusive('\n')
            .map(|line| {
                if line.trim_start().starts_with('#') {
                    if line.ends_with('\n') { "\n" } else { "" }
                } else {
                    line
                }
            })
            .collect();
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let mut record = csv::StringRecord::new();
        let next = |reader: &mut csv::Reader<&[u8]>, record: &mut csv::StringRecord| {
            read_record(reader, record, &text)
        };
        let header_line_no = loop {
            match next(&mut reader, &mut record) {
                Some(Ok((first, _))) => {
                    if record.iter().all(str::is_empty) {
                        continue;
                    }
                    break first;
                }
                Some(Err(e)) => return Err((error_line(&e), e.to_string())),
                None => return Ok(()),
            }
        };
        let mut columns = Vec::new();
        for cell in record.iter() {
            match Column::parse(cell) {
                Some(column) if columns.contains(&column) => {
                    return Err((header_line_no, format!("column {cell:?} appears twice")));
                }
                Some(column) => columns.push(column),
                None => {
                    return Err((
                        header_line_no,
                        format!("unknown column {cell:?} (expected name, address, port, tags)"),
                    ));
                }
            }
        }
        for required in [Column::Name, Column::Address] {
            if !columns.contains(&required) {
                return Err((
                    header_line_no,
                    format!("the header has no {:?} column", required.header()),
                ));
            }
        }
        self.format = Format::Csv(columns.clone());
        let mut names = HashSet::new();
        while let Some(read) = next(&mut reader, &mut record) {
            let (first, last) = match read {
                Ok(span) => span,
                Err(e) => {
                    self.errors.push(LineError {
                        line: error_line(&e),
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            if record.iter().all(str::is_empty) {
                continue;
            }
            match parse_csv_record(&columns, &record) {
                Ok(mut host) => {
                    host.line = first;
                    if names.insert(host.name.clone()) {
                        self.spans.insert(host.name.clone(), (first, last));
                        self.hosts.push(host);
                    } else {
                        self.errors.push(LineError {
                            line: first,
                            reason: format!("duplicate name {:?}", host.name),
                        });
                    }
                }
                Err(reason) => self.errors.push(LineError {
                    line: first,
                    reason,
                }),
            }
        }
        Ok(())
    }
}

/// Reads the next CSV record and the lines (first, last) it spans; `None`
/// at the end.
fn read_record(
    reader: &mut csv::Reader<&[u8]>,
    record: &mut csv::StringRecord,
    text: &str,
) -> Option<Result<(usize, usize), csv::Error>> {
    match reader.read_record(record) {
        Ok(false) => None,
        Ok(true) => {
            // The reader gives a record's start before the blank lines it
            // skipped: step over them to find the line the record is on.
            let (mut first, mut byte) = record
                .position()
                .map_or((1, 0), |p| (p.line() as usize, p.byte() as usize));
            let bytes = text.as_bytes();
            while byte < bytes.len() && (bytes[byte] == b'\n' || bytes[byte] == b'\r') {
                if bytes[byte] == b'\n' {
                    first += 1;
                }
                byte += 1;
            }
            // The reader now stands at the start of the line after the
            // record, or at the end of a file whose last line has no newline.
            let after = reader.position().line() as usize;
            let at_unterminated_end =
                reader.position().byte() as usize >= text.len() && !text.ends_with('\n');
            let last = if at_unterminated_end {
                after
            } else {
                after.saturating_sub(1).max(first)
            };
            Some(Ok((first, last)))
        }
        Err(e) => Some(Err(e)),
    }
}

fn error_line(error: &csv::Error) -> usize {
    error.position().map_or(0, |p| p.line() as usize)
}

fn parse_csv_record(columns: &[Column], record: &csv::StringRecord) -> Result<HostEntry, String> {
    if record.len() > columns.len() {
        return Err(format!(
            "{} fields, but the header has {} columns",
            record.len(),
            columns.len()
        ));
    }
    let cell = |column: Column| {
        columns
            .iter()
            .position(|c| *c == column)
            .and_then(|i| record.get(i))
            .unwrap_or("")
    };
    let address = cell(Column::Address);
    if address.is_empty() {
        return Err("empty address".into());
    }
    let address = address
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(address);
    let port = match cell(Column::Port) {
        "" => DEFAULT_PORT,
        text => parse_port(text)?,
    };
    let name = match cell(Column::Name) {
        "" => return Err("empty name".into()),
        name => name,
    };
    let tags = cell(Column::Tags)
        .split(|c: char| c == ';' || c == '|' || c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    let host = HostEntry {
        name: name.to_owned(),
        address: address.to_owned(),
        port,
        tags,
        line: 0,
    };
    validate(&host)?;
    Ok(host)
}

/// Parses `host`, `host:port`, `[v6]:port`, `v6`, `name=…`.
pub(super) fn parse_text_line(content: &str) -> Result<HostEntry, String> {
    if content.split_whitespace().count() > 1 {
        return Err(format!(
            "unexpected text {:?} after the host",
            content.split_whitespace().nth(1).unwrap_or("")
        ));
    }
    let (name, target) = match content.split_once('=') {
        Some((name, target)) => (Some(name.trim()), target.trim()),
        None => (None, content),
    };
    if name == Some("") {
        return Err("empty name before '='".into());
    }
    let (address, port) = split_host_port(target)?;
    let host = HostEntry {
        name: name.unwrap_or(target).to_owned(),
        address,
        port,
        tags: Vec::new(),
        line: 0,
    };
    validate(&host)?;
    Ok(host)
}

/// Splits `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address.
pub fn split_host_port(target: &str) -> Result<(String, u16), String> {
    if target.is_empty() {
        return Err("empty address".into());
    }
    if let Some(rest) = target.strip_prefix('[') {
        let (address, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("missing ']' in {target:?}"))?;
        let port = match after {
            "" => DEFAULT_PORT,
            _ => parse_port(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("expected ':' after ']' in {target:?}"))?,
            )?,
        };
        if address.parse::<Ipv6Addr>().is_err() {
            return Err(format!("{address:?} is not an IPv6 address"));
        }
        return Ok((address.to_owned(), port));
    }
    if target.parse::<Ipv6Addr>().is_ok() {
        return Ok((target.to_owned(), DEFAULT_PORT));
    }
    match target.rsplit_once(':') {
        Some((address, port)) => {
            if address.is_empty() {
                return Err("empty address".into());
            }
            if address.contains(':') {
                return Err(format!(
                    "{target:?}: write an IPv6 address with a port as [address]:port"
                ));
            }
            Ok((address.to_owned(), parse_port(port)?))
        }
        None => Ok((target.to_owned(), DEFAULT_PORT)),
    }
}

impl HostEntry {
    /// A host from the fields of a form: a name, an address (empty: the
    /// name; it may carry a port) and a port (empty: the address's, or the
    /// default). The errors are the ones a hosts file reports.
    pub fn from_fields(name: &str, address: &str, port: &str) -> Result<Self, String> {
        let name = name.trim();
        if name.is_empty() {
            return Err("give the host a name".to_owned());
        }
        let address = match address.trim() {
            "" => name,
            address => address,
        };
        let (address, default_port) = split_host_port(address)?;
        let port = match port.trim() {
            "" => default_port,
            text => parse_port(text)?,
        };
        let entry = Self::new(name, address, port);
        validate(&entry)?;
        Ok(entry)
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(0) => Err("bad port 0 (1 to 65535)".into()),
        Ok(port) => Ok(port),
        Err(_) => Err(format!("bad port {text:?} (1 to 65535)")),
    }
}

/// Checks a host's fields.
pub(super) fn validate(host: &HostEntry) -> Result<(), String> {
    if host.name.is_empty() {
        return Err("empty name".into());
    }
    if host
        .name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == ',')
    {
        return Err(format!(
            "name {:?} has spaces, commas or control characters",
            host.name
        ));
    }
    if host.address.is_empty() {
        return Err("empty address".into());
    }
    let address_ok = host.address.parse::<std::net::IpAddr>().is_ok()
        || host
            .address
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if !address_ok {
        return Err(format!(
            "{:?} is neither an IP address nor a host name",
            host.address
        ));
    }
    if host.port == 0 {
        return Err("bad port 0 (1 to 65535)".into());
    }
    for tag in &host.tags {
        if tag
            .chars()
            .any(|c| c.is_whitespace() || c == ',' || c == ';')
        {
            return Err(format!("tag {tag:?} has spaces, commas or semicolons"));
        }
    }
    Ok(())
}
