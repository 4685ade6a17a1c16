//! The file chooser's logic: listing a directory to pick a hosts file.

use std::path::{Path, PathBuf};

/// One entry of the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Its name ("..", for the parent).
    pub name: String,
    /// True for a directory.
    pub is_dir: bool,
}

/// A directory being browsed.
#[derive(Debug, Clone)]
pub struct FileBrowser {
    dir: PathBuf,
}

impl FileBrowser {
    /// Browsing `dir` (or its nearest existing ancestor).
    pub fn at(dir: &Path) -> Self {
        let mut dir = dir.to_path_buf();
        while !dir.is_dir() {
            if !dir.pop() {
                dir = PathBuf::from("/");
                break;
            }
        }
        Self { dir }
    }

    /// The directory shown.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its entries: the parent first, then directories, then files; hidden
    /// ones left out; each group sorted by name.
    pub fn entries(&self) -> Vec<FileEntry> {
        let mut dirs = Vec::new();
        let mut files = Vec::new();
        if let Ok(read) = std::fs::read_dir(&self.dir) {
            for entry in read.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                if entry.path().is_dir() {
                    dirs.push(name);
                } else {
                    files.push(name);
                }
            }
        }
        dirs.sort();
        files.sort();
        let parent = self.dir.parent().map(|_| FileEntry {
            name: "..".into(),
            is_dir: true,
        });
        parent
            .into_iter()
            .chain(
                dirs.into_iter()
                    .map(|name| FileEntry { name, is_dir: true }),
            )
            .chain(files.into_iter().map(|name| FileEntry {
                name,
                is_dir: false,
            }))
            .collect()
    }

    /// Opens an entry: a directory is entered (and `None` returned), a file
    /// is chosen (its path returned).
    pub fn open(&mut self, name: &str) -> Option<PathBuf> {
        if name == ".." {
            self.dir.pop();
            return None;
        }
        let path = self.dir.join(name);
        if path.is_dir() {
            self.dir = path;
            None
        } else {
            Some(path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsing_enters_directories_and_picks_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("hosts.csv"), "").unwrap();
        std::fs::write(dir.path().join(".hidden"), "").unwrap();
        let mut browser = FileBrowser::at(&dir.path().join("missing").join("deeper"));
        assert_eq!(browser.dir(), dir.path());
        let names: Vec<(String, bool)> = browser
            .entries()
            .into_iter()
            .map(|e| (e.name, e.is_dir))
            .collect();
        assert_eq!(
            names,
            vec![
                ("..".into(), true),
                ("sub".into(), true),
                ("hosts.csv".into(), false)
            ]
        );
        assert_eq!(browser.open("sub"), None);
        assert_eq!(browser.dir(), dir.path().join("sub"));
        assert_eq!(browser.open(".."), None);
        assert_eq!(
            browser.open("hosts.csv"),
            Some(dir.path().join("hosts.csv"))
        );
    }
}
