//! Hosts files: the list of agents a fleet talks to.
//!
//! Two formats, told apart by their content rather than their name:
//! - CSV with a header naming at least `name` and `address`, optionally
//!   `port` and `tags` (or `groups`), tags separated by `;` or spaces;
//! - plain text, one host per line: `host`, `host:port`, `[v6]:port`,
//!   `name=address` or `name=address:port`, with `#` comments and blank lines.
//!
//! A bad line never stops the load: it becomes a [`LineError`] with its line
//! number and the reason, and every valid line loads. Adding and removing
//! hosts rewrites the file atomically (a temporary file renamed over it)
//! and keeps its format, header, comments and the order of other lines.

use std::{
    fmt,
    path::{Path, PathBuf},
};

mod edit;
mod parse;

use edit::header_line;
pub use parse::split_host_port;

/// One host of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    /// Unique name in the file (the address as written, without a name).
    pub name: String,
    /// DNS name or IP address (IPv6 without brackets).
    pub address: String,
    /// Port; the default port when the file gives none.
    pub port: u16,
    /// Tags (groups) the host belongs to.
    pub tags: Vec<String>,
    /// Line number in the file (1-based; 0 for a host not from a file).
    pub line: usize,
}

impl HostEntry {
    /// A host at `address:port` named `name`.
    pub fn new(name: impl Into<String>, address: impl Into<String>, port: u16) -> Self {
        Self {
            name: name.into(),
            address: address.into(),
            port,
            tags: Vec::new(),
            line: 0,
        }
    }

    /// `address:port`, with brackets around an IPv6 address; `unix:PATH`
    /// for an agent on a Unix socket (an address that is a path).
    pub fn endpoint(&self) -> String {
        if self.address.starts_with('/') {
            format!("unix:{}", self.address)
        } else if self.address.contains(':') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }
}

/// A line that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// Line number (1-based).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// The format of a hosts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// CSV with these columns, in header order.
    Csv(Vec<Column>),
    /// One host per line.
    Text,
}

/// A CSV column vigie knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// `name`
    Name,
    /// `address` (also `host`, `ip`)
    Address,
    /// `port`
    Port,
    /// `tags` or `groups`
    Tags,
}

impl Column {
    fn parse(header: &str) -> Option<Self> {
        match header.trim().to_ascii_lowercase().as_str() {
            "name" => Some(Self::Name),
            "address" | "host" | "ip" => Some(Self::Address),
            "port" => Some(Self::Port),
            "tags" | "groups" | "tag" | "group" => Some(Self::Tags),
            _ => None,
        }
    }

    fn header(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Address => "address",
            Self::Port => "port",
            Self::Tags => "tags",
        }
    }
}

/// A loaded hosts file: its hosts, its errors, and what is needed to
/// rewrite it faithfully.
#[derive(Debug, Clone)]
pub struct HostsFile {
    /// Where it was read from (where it is saved).
    pub path: Option<PathBuf>,
    /// Its format.
    pub format: Format,
    /// The hosts, in file order.
    pub hosts: Vec<HostEntry>,
    /// The lines that could not be loaded.
    pub errors: Vec<LineError>,
    /// The file's text, kept to rewrite it without touching other lines.
    text: String,
    /// The lines (first, last) each host occupies; a quoted CSV cell may
    /// span several.
    spans: std::collections::HashMap<String, (usize, usize)>,
}

/// Why a hosts file cannot be read, written or changed.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The CSV header lacks a required column or names an unknown one.
    #[error("{path}: line {line}: {reason}")]
    Header {
        /// The file.
        path: PathBuf,
        /// The header's line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A host to add is invalid or clashes with one in the file.
    #[error("{0}")]
    Invalid(String),
    /// A host to remove is not in the file.
    #[error("no host named {0:?} in the file")]
    NotFound(String),
}

impl HostsFile {
    /// Reads and parses a hosts file.
    pub fn load(path: &Path) -> Result<Self, HostsError> {
        let bytes = std::fs::read(path).map_err(|source| HostsError::Io {
            path: path.to_owned(),
            source,
        })?;
        // A file with a few bad bytes still loads: the lines with them are
        // reported like any other bad line.
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let mut file = Self::parse(&text).map_err(|(line, reason)| HostsError::Header {
            path: path.to_owned(),
            line,
            reason,
        })?;
        file.path = Some(path.to_owned());
        Ok(file)
    }

    /// Parses the text of a hosts file. Only a broken CSV header is fatal
    /// (returned as its line and reason); every other problem is a line
    /// error.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let format = detect(text);
        let mut file = HostsFile {
            path: None,
            format: format.clone(),
            hosts: Vec::new(),
            errors: Vec::new(),
            text: text.to_owned(),
            spans: std::collections::HashMap::new(),
        };
        match format {
            Format::Text => file.parse_text(),
            Format::Csv(_) => file.parse_csv()?,
        }
        Ok(file)
    }

    /// An empty file of the given format, not yet saved anywhere.
    pub fn empty(format: Format) -> Self {
        let text = match &format {
            Format::Csv(columns) => format!("{}\n", header_line(columns)),
            Format::Text => String::new(),
        };
        Self {
            path: None,
            format,
            hosts: Vec::new(),
            errors: Vec::new(),
            text,
            spans: std::collections::HashMap::new(),
        }
    }

    /// The host named `name`.
    pub fn get(&self, name: &str) -> Option<&HostEntry> {
        self.hosts.iter().find(|h| h.name == name)
    }
}

/// CSV if the first line that is neither blank nor a comment is a header
/// with a comma and a `name` or `address` column; plain text otherwise.
pub fn detect(text: &str) -> Format {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    match first {
        Some(line)
            if line.contains(',')
                && line
                    .split(',')
                    .filter_map(Column::parse)
                    .any(|c| c == Column::Name || c == Column::Address) =>
        {
            Format::Csv(Vec::new())
        }
        _ => Format::Text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::DEFAULT_PORT;

    fn parse(text: &str) -> HostsFile {
        HostsFile::parse(text).expect("parses")
    }

    #[test]
    fn a_host_from_a_form_checks_its_fields_as_a_file_would() {
        let entry = HostEntry::from_fields(" web1 ", "", "").unwrap();
        assert_eq!((entry.address.as_str(), entry.port), ("web1", DEFAULT_PORT));
        let entry = HostEntry::from_fields("db", "10.0.0.5:7500", "").unwrap();
        assert_eq!(entry.port, 7500);
        assert_eq!(
            HostEntry::from_fields("db", "10.0.0.5:7500", "22")
                .unwrap()
                .port,
            22
        );
        assert_eq!(
            HostEntry::from_fields("db", "", "0").unwrap_err(),
            "bad port 0 (1 to 65535)"
        );
        assert!(HostEntry::from_fields("", "x", "").is_err());
        assert!(HostEntry::from_fields("a b", "x", "").is_err());
    }

    #[test]
    fn text_lines_of_every_form() {
        let file = parse(
            "# fleet\n\nweb1\nweb2:7500\n[::1]:7600\n::1\ndb=10.0.0.5\ncache=10.0.0.6:7700  # comment\n",
        );
        assert_eq!(file.format, Format::Text);
        assert!(file.errors.is_empty(), "{:?}", file.errors);
        let got: Vec<(&str, &str, u16, usize)> = file
            .hosts
            .iter()
            .map(|h| (h.name.as_str(), h.address.as_str(), h.port, h.line))
            .collect();
        assert_eq!(
            got,
            vec![
                ("web1", "web1", DEFAULT_PORT, 3),
                ("web2:7500", "web2", 7500, 4),
                ("[::1]:7600", "::1", 7600, 5),
                ("::1", "::1", DEFAULT_PORT, 6),
                ("db", "10.0.0.5", DEFAULT_PORT, 7),
                ("cache", "10.0.0.6", 7700, 8),
            ]
        );
    }

    #[test]
    fn bad_text_lines_are_reported_and_the_rest_loads() {
        let file = parse(
            "ok1\nweb:99999\nweb:abc\n=10.0.0.1\nx=\n[::1:7000\nfe80::1:x:7000\nok1\nbad host\nsp ace=1.2.3.4\nwe!rd\nok2:0\nok3\n",
        );
        let names: Vec<&str> = file.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, vec!["ok1", "ok3"]);
        let lines: Vec<usize> = file.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let reasons: Vec<&str> = file.errors.iter().map(|e| e.reason.as_str()).collect();
        assert!(reasons[0].contains("bad port"), "{reasons:?}");
        assert!(reasons[3].contains("empty address"), "{reasons:?}");
        assert!(reasons[6].contains("duplicate name"), "{reasons:?}");
        assert!(reasons[10].contains("bad port 0"), "{reasons:?}");
    }

    #[test]
    fn csv_with_header_tags_and_bad_rows() {
        let file = parse(
            "name,address,port,tags\nweb1,10.0.0.1,,web;prod\nweb2,10.0.0.2,7500,web\n# a comment\ndb,,7500,\nweb1,10.0.0.3,,\ncache,10.0.0.4,70000,\nx,10.0.0.5,1,a,extra\n\"quoted, name\",10.0.0.6,,\n",
        );
        assert_eq!(
            file.format,
            Format::Csv(vec![
                Column::Name,
                Column::Address,
                Column::Port,
                Column::Tags
            ])
        );
        let hosts: Vec<(&str, u16, Vec<String>)> = file
            .hosts
            .iter()
            .map(|h| (h.name.as_str(), h.port, h.tags.clone()))
            .collect();
        assert_eq!(
            hosts,
            vec![
                (
                    "web1",
                    DEFAULT_PORT,
                    vec!["web".to_owned(), "prod".to_owned()]
                ),
                ("web2", 7500, vec!["web".to_owned()]),
            ]
        );
        let errors: Vec<(usize, &str)> = file
            .errors
            .iter()
            .map(|e| (e.line, e.reason.as_str()))
            .collect();
        assert_eq!(errors.len(), 5, "{errors:#?}");
        assert_eq!(errors[0].0, 5);
        assert!(errors[0].1.contains("empty address"));
        assert!(errors[1].1.contains("duplicate"));
        assert!(errors[2].1.contains("bad port"));
        assert!(errors[3].1.contains("5 fields"));
        assert!(errors[4].1.contains("commas"));
    }

    #[test]
    fn csv_headers_are_checked() {
        assert!(
            matches!(HostsFile::parse("name,adress\nx,y\n"), Err((1, reason)) if reason.contains("adress"))
        );
        let missing = HostsFile::parse("name,port\nx,1\n");
        assert!(missing.is_err(), "the address column is required");
        let grouped = parse("Address,Name,Groups\n10.0.0.1,a,x y\n");
        assert_eq!(grouped.hosts[0].tags, vec!["x", "y"]);
        assert_eq!(
            detect("web1,web2\n"),
            Format::Text,
            "a comma alone is not a header"
        );
    }

    #[test]
    fn any_input_is_handled_without_panicking() {
        let samples = [
            "",
            "\n",
            ",",
            "name,address\n\"unterminated",
            "name,address\n,\n",
            "[",
            "]",
            ":",
            "=",
            "a=b=c",
            "\u{0}",
            "name,address,port\na,b,c,d,e,f\n",
            "\u{feff}name,address\na,b\n",
        ];
        for sample in samples {
            let _ = HostsFile::parse(sample);
        }
        let mut seed = 7u64;
        for _ in 0..2000 {
            let text: String = (0..40)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    let alphabet = b"ab:[]=,#\n 0179\".;x";
                    alphabet[(seed >> 33) as usize % alphabet.len()] as char
                })
                .collect();
            let _ = HostsFile::parse(&text);
        }
    }

    #[test]
    fn adding_and_removing_keeps_comments_order_and_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts.txt");
        let original = "# production\nweb1\n\n# databases\ndb=10.0.0.5:7500\nweb2\n";
        std::fs::write(&path, original).unwrap();
        let mut file = HostsFile::load(&path).unwrap();
        file.add(&[
            HostEntry::new("cache", "10.0.0.9", 7421),
            HostEntry::new("[::1]:7000", "::1", 7000),
        ])
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{original}cache=10.0.0.9\n[::1]:7000\n"));
        file.remove(&["db".to_owned()]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "# production\nweb1\n\n# databases\nweb2\ncache=10.0.0.9\n[::1]:7000\n"
        );
        let reloaded = HostsFile::load(&path).unwrap();
        let names: Vec<&str> = reloaded.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, vec!["web1", "web2", "cache", "[::1]:7000"]);
        assert!(matches!(
            file.remove(&["nope".to_owned()]),
            Err(HostsError::NotFound(_))
        ));
        assert!(matches!(
            file.add(&[HostEntry::new("web1", "10.0.0.1", 1)]),
            Err(HostsError::Invalid(_))
        ));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "a refused change writes nothing"
        );
    }

    #[test]
    fn a_csv_record_spanning_lines_is_removed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts.csv");
        std::fs::write(
            &path,
            "name,address,tags\na,10.0.0.1,\"x\ny\"\nb,10.0.0.2,\n",
        )
        .unwrap();
        let mut file = HostsFile::load(&path).unwrap();
        assert_eq!(file.hosts.len(), 2, "{:?}", file.errors);
        assert_eq!(
            file.errors.len(),
            0,
            "a newline in a quoted cell is not an error: {:?}",
            file.errors
        );
        file.remove(&["a".to_owned()]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "name,address,tags\nb,10.0.0.2,\n"
        );
    }

    #[test]
    fn csv_rewrites_keep_the_header_and_quote_cells() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts.csv");
        std::fs::write(&path, "# fleet\naddress,name,tags\n10.0.0.1,web1,web\n").unwrap();
        let mut file = HostsFile::load(&path).unwrap();
        let mut host = HostEntry::new("db1", "10.0.0.2", DEFAULT_PORT);
        host.tags = vec!["db".into(), "prod".into()];
        file.add(&[host]).unwrap();
        file.remove(&["web1".to_owned()]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# fleet\naddress,name,tags\n10.0.0.2,db1,db;prod\n"
        );
    }
}
