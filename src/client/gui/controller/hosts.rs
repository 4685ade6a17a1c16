//! The hosts panel's logic: the hosts file, which hosts are selected, the
//! filter, groups, and each host's state as rows to show.

use std::{collections::BTreeSet, path::Path};

use crate::client::{
    ConnectionSettings,
    fleet::{Fleet, HostState},
    hosts::{HostEntry, HostsFile, LineError},
    text::visible,
};

/// What a row shows of a host's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    /// Not contacted yet.
    Unknown,
    /// Being contacted.
    Connecting,
    /// Answering.
    Online,
    /// Not answering.
    Offline,
}

/// One row of the hosts list.
#[derive(Debug, Clone, PartialEq)]
pub struct HostRow {
    /// The host's index in the fleet.
    pub index: usize,
    /// Its name.
    pub name: String,
    /// `address:port`.
    pub address: String,
    /// Its state.
    pub state: StateKind,
    /// The OS it reported, e.g. "Linux (Debian GNU/Linux 12)".
    pub os: String,
    /// A detail line: the reason it is offline, or its hostname.
    pub detail: String,
    /// Its tags, comma-separated.
    pub tags: String,
    /// Whether it is selected.
    pub selected: bool,
}

/// The hosts, where they come from, and the selection.
#[derive(Debug)]
pub struct HostsController {
    file: Option<HostsFile>,
    fleet: Fleet,
    selected: BTreeSet<String>,
    filter: String,
    /// The filter in lower case, as matched.
    needle: String,
}

/// The connection settings of a host, by its entry.
pub type SettingsFor<'a> = dyn Fn(&HostEntry) -> ConnectionSettings + 'a;

impl HostsController {
    /// Hosts from a file; returns the lines that could not be read too.
    pub fn load(path: &Path, settings: &SettingsFor<'_>) -> Result<(Self, Vec<LineError>), String> {
        let file = HostsFile::load(path).map_err(|e| e.to_string())?;
        let errors = file.errors.clone();
        let fleet = Fleet::new(file.hosts.clone(), settings);
        Ok((
            Self {
                file: Some(file),
                fleet,
                selected: BTreeSet::new(),
                filter: String::new(),
                needle: String::new(),
            },
            errors,
        ))
    }

    /// Hosts that come from no file (the embedded local agent).
    pub fn detached(entries: Vec<HostEntry>) -> Self {
        let selected = entries.iter().map(|e| e.name.clone()).collect();
        Self {
            file: None,
            fleet: Fleet::new(entries, |_| ConnectionSettings::default()),
            selected,
            filter: String::new(),
            needle: String::new(),
        }
    }

    /// The fleet.
    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// The hosts file's path, if the hosts come from one.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().and_then(|f| f.path.as_deref())
    }

    /// The filter text.
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// Shows only hosts whose name, address, OS or tags contain `text`
    /// (case-insensitive).
    pub fn set_filter(&mut self, text: &str) {
        text.trim().clone_into(&mut self.filter);
        self.needle = self.filter.to_lowercase();
    }

    /// True when the host at `index` passes the filter.
    pub fn matches(&self, index: usize) -> bool {
        if self.needle.is_empty() {
            return true;
        }
        let needle = &self.needle;
        let host = &self.fleet.hosts()[index];
        let entry = &host.entry;
        let os = match host.status().state {
            HostState::Online(info) => info.os_long_name.clone(),
            _ => String::new(),
        };
        [
            entry.name.as_str(),
            &entry.endpoint(),
            &os,
            &entry.tags.join(","),
        ]
        .iter()
        .any(|field| field.to_lowercase().contains(needle.as_str()))
    }

    /// The indexes of the hosts the filter lets through, in file order.
    pub fn shown(&self) -> Vec<usize> {
        (0..self.fleet.hosts().len())
            .filter(|&i| self.matches(i))
            .collect()
    }

    /// True when the host at `index` is selected.
    pub fn is_selected(&self, index: usize) -> bool {
        self.fleet
            .host(index)
            .is_some_and(|h| self.selected.contains(&h.entry.name))
    }

    /// How many hosts are selected.
    pub fn selected_count(&self) -> usize {
        self.selected.len()
    }

    /// The row of the host at `index`.
    pub fn row(&self, index: usize) -> HostRow {
        let host = &self.fleet.hosts()[index];
        host_row(
            index,
            &host.entry,
            &host.status().state,
            self.selected.contains(&host.entry.name),
        )
    }

    /// Selects or unselects one host.
    pub fn toggle(&mut self, index: usize) {
        if let Some(host) = self.fleet.host(index) {
            let name = host.entry.name.clone();
            if !self.selected.remove(&name) {
                self.selected.insert(name);
            }
        }
    }

    /// Selects every host the filter shows.
    pub fn select_all(&mut self) {
        for i in 0..self.fleet.hosts().len() {
            if self.matches(i) {
                self.selected
                    .insert(self.fleet.hosts()[i].entry.name.clone());
            }
        }
    }

    /// Unselects every host.
    pub fn select_none(&mut self) {
        self.selected.clear();
    }

    /// Selects exactly the hosts with this tag, as [`groups`](Self::groups)
    /// shows it.
    pub fn select_group(&mut self, tag: &str) {
        self.selected = self
            .fleet
            .hosts()
            .iter()
            .filter(|h| h.entry.tags.iter().any(|t| visible(t) == tag))
            .map(|h| h.entry.name.clone())
            .collect();
    }

    /// Every tag as shown (made visible), sorted. The window hands a shown
    /// tag back to [`select_group`](Self::select_group), which compares
    /// shown forms too.
    pub fn groups(&self) -> Vec<String> {
        let tags: BTreeSet<String> = self
            .fleet
            .hosts()
            .iter()
            .flat_map(|h| h.entry.tags.iter().map(|t| visible(t).into_owned()))
            .collect();
        tags.into_iter().collect()
    }

    /// The selected hosts' indexes, in file order.
    pub fn selection(&self) -> Vec<usize> {
        (0..self.fleet.hosts().len())
            .filter(|&i| self.selected.contains(&self.fleet.hosts()[i].entry.name))
            .collect()
    }

    /// "3 online, 1 offline · 2 selected".
    pub fn summary(&self) -> String {
        let (mut online, mut offline) = (0, 0);
        for host in self.fleet.hosts() {
            match host.status().state {
                HostState::Online(_) => online += 1,
                HostState::Offline { .. } => offline += 1,
                _ => {}
            }
        }
        format!(
            "{} hosts · {online} online, {offline} offline · {} selected",
            self.fleet.hosts().len(),
            self.selected.len()
        )
    }

    /// Adds a host to the file (saved at once) and to the fleet.
    pub fn add(&mut self, entry: HostEntry, settings: &SettingsFor<'_>) -> Result<(), String> {
        let file = self
            .file
            .as_mut()
            .ok_or("no hosts file is loaded: open or create one first")?;
        file.add(std::slice::from_ref(&entry))
            .map_err(|e| e.to_string())?;
        self.fleet = self.fleet.rebuilt(file.hosts.clone(), settings);
        Ok(())
    }

    /// Removes the selected hosts from the file (saved at once) and the
    /// fleet; returns how many.
    pub fn remove_selected(&mut self, settings: &SettingsFor<'_>) -> Result<usize, String> {
        let file = self.file.as_mut().ok_or("no hosts file is loaded")?;
        let names: Vec<String> = self.selected.iter().cloned().collect();
        if names.is_empty() {
            return Err("select the hosts to remove first".into());
        }
        file.remove(&names).map_err(|e| e.to_string())?;
        self.fleet = self.fleet.rebuilt(file.hosts.clone(), settings);
        self.selected.clear();
        Ok(names.len())
    }
}

/// A host's row. Everything in it is made visible: the state's texts come
/// from the agent (its OS, its host name, an error that may quote it), and
/// a name or tag of the hosts file may hold bidi or zero-width characters
/// that would make it look like another.
fn host_row(index: usize, entry: &HostEntry, state: &HostState, selected: bool) -> HostRow {
    let (state, os, detail) = match state {
        HostState::Unknown => (
            StateKind::Unknown,
            String::new(),
            "not contacted yet".into(),
        ),
        HostState::Connecting => (StateKind::Connecting, String::new(), "connecting…".into()),
        HostState::Online(info) => (
            StateKind::Online,
            visible(&info.os_long_name).into_owned(),
            visible(&format!("{} · {}", info.hostname, info.kernel_version)).into_owned(),
        ),
        HostState::Offline { reason } => (
            StateKind::Offline,
            String::new(),
            visible(reason).into_owned(),
        ),
    };
    HostRow {
        index,
        name: visible(&entry.name).into_owned(),
        address: visible(&entry.endpoint()).into_owned(),
        state,
        os,
        detail,
        tags: visible(&entry.tags.join(",")).into_owned(),
        selected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows the list shows: the hosts the filter lets through.
    fn rows(hosts: &HostsController) -> Vec<HostRow> {
        hosts.shown().into_iter().map(|i| hosts.row(i)).collect()
    }

    fn controller(text: &str) -> (tempfile::TempDir, HostsController) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts.csv");
        std::fs::write(&path, text).unwrap();
        let (controller, errors) =
            HostsController::load(&path, &|_| ConnectionSettings::default()).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        (dir, controller)
    }

    #[test]
    fn selection_filter_and_groups() {
        let (_dir, mut hosts) = controller(
            "name,address,tags\nweb1,10.0.0.1,web\nweb2,10.0.0.2,web\ndb1,10.0.0.3,db\n",
        );
        assert_eq!(rows(&hosts).len(), 3);
        assert!(
            rows(&hosts)
                .iter()
                .all(|r| r.state == StateKind::Unknown && !r.selected)
        );
        assert_eq!(hosts.groups(), vec!["db", "web"]);
        hosts.select_group("web");
        assert_eq!(hosts.selection(), vec![0, 1]);
        hosts.set_filter("DB");
        assert_eq!(
            rows(&hosts)
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            vec!["db1"]
        );
        hosts.select_all();
        assert_eq!(
            hosts.selection(),
            vec![0, 1, 2],
            "select all adds what the filter shows"
        );
        hosts.toggle(0);
        assert_eq!(hosts.selection(), vec![1, 2]);
        hosts.select_none();
        assert!(hosts.selection().is_empty());
        assert!(hosts.summary().starts_with("3 hosts"));
    }

    #[test]
    fn adding_and_removing_save_the_file() {
        let (dir, mut hosts) = controller("name,address,tags\n# comment\nweb1,10.0.0.1,web\n");
        let settings = |_: &HostEntry| ConnectionSettings::default();
        hosts
            .add(HostEntry::new("db9", "10.0.0.9", 7421), &settings)
            .unwrap();
        assert_eq!(rows(&hosts).len(), 2);
        let text = std::fs::read_to_string(dir.path().join("hosts.csv")).unwrap();
        assert!(text.ends_with("db9,10.0.0.9,\n"), "{text}");
        assert!(
            hosts
                .add(HostEntry::new("db9", "10.0.0.9", 1), &settings)
                .is_err()
        );
        hosts.toggle(0);
        assert_eq!(hosts.remove_selected(&settings), Ok(1));
        let text = std::fs::read_to_string(dir.path().join("hosts.csv")).unwrap();
        assert_eq!(text, "name,address,tags\n# comment\ndb9,10.0.0.9,\n");
        assert!(
            hosts.remove_selected(&settings).is_err(),
            "nothing selected"
        );
    }

    #[test]
    fn rows_show_what_hosts_and_the_file_hold_instead_of_obeying_it() {
        use super::super::info::tests::{EVIL, SHOWN, assert_shown, hostile_info};
        let mut entry = HostEntry::new("web\u{202e}1\u{200b}", "10.0.0.1", 7421);
        entry.tags = vec!["w\u{202e}eb".into()];
        let online = HostState::Online(std::sync::Arc::new(hostile_info()));
        let row = host_row(0, &entry, &online, false);
        assert_eq!(row.name, "web<U+202E>1<U+200B>");
        assert_eq!(row.tags, "w<U+202E>eb");
        assert_shown(&row.os);
        assert_shown(&row.detail);
        let offline = HostState::Offline {
            reason: EVIL.into(),
        };
        assert_eq!(host_row(0, &entry, &offline, false).detail, SHOWN);
    }

    #[test]
    fn groups_are_shown_and_chosen_by_what_is_shown() {
        let (_dir, mut hosts) =
            controller("name,address,tags\nweb1,10.0.0.1,w\u{202e}eb\ndb1,10.0.0.3,db\n");
        assert_eq!(hosts.groups(), vec!["db", "w<U+202E>eb"]);
        hosts.select_group("w<U+202E>eb");
        assert_eq!(hosts.selection(), vec![0]);
    }

    #[test]
    fn detached_hosts_start_selected_and_cannot_be_edited() {
        let mut hosts =
            HostsController::detached(vec![HostEntry::new("localhost", "127.0.0.1", 1)]);
        assert_eq!(hosts.selection(), vec![0]);
        assert!(hosts.path().is_none());
        assert!(
            hosts
                .add(HostEntry::new("x", "1.2.3.4", 1), &|_| {
                    ConnectionSettings::default()
                })
                .is_err()
        );
    }
}
