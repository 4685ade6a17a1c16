//! What the desktop client remembers between runs: the last hosts file and
//! the theme, the dashboard's thresholds, in `$XDG_CONFIG_HOME/vigie/gui.toml`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The remembered settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The hosts file last loaded.
    pub last_hosts_file: Option<PathBuf>,
    /// Dark theme (the default) or light.
    pub light_theme: bool,
    /// Where the dashboard marks a host hot.
    pub thresholds: crate::client::dashboard::Thresholds,
}

impl Settings {
    /// Where the settings live.
    pub fn default_path() -> Option<PathBuf> {
        crate::client::config::default_path().map(|p| p.with_file_name("gui.toml"))
    }

    /// Reads the settings; missing or unreadable ones are the defaults.
    pub fn load(path: &Path) -> Self {
        let mut settings: Self = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| toml::from_str(&text).ok())
            .unwrap_or_default();
        // Thresholds edited by hand are held to what the window accepts
        // (numbers, 0 or more).
        if crate::client::dashboard::Thresholds::parse(&settings.thresholds.to_string()).is_err() {
            settings.thresholds = Default::default();
        }
        settings
    }

    /// Writes the settings atomically.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        let text = toml::to_string(self).map_err(|e| e.to_string())?;
        crate::atomic_file::replace(path, text.as_bytes(), 0o600).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_survive_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vigie").join("gui.toml");
        assert_eq!(Settings::load(&path), Settings::default());
        let settings = Settings {
            last_hosts_file: Some("/etc/vigie/hosts.csv".into()),
            light_theme: true,
            thresholds: crate::client::dashboard::Thresholds::parse("cpu=50").unwrap(),
        };
        settings.save(&path).unwrap();
        assert_eq!(Settings::load(&path), settings);
        std::fs::write(&path, "light_theme = true\n[thresholds]\ncpu = -3.0\n").unwrap();
        let read = Settings::load(&path);
        assert!(read.light_theme);
        assert_eq!(
            read.thresholds,
            Default::default(),
            "a negative threshold is refused"
        );
        std::fs::write(&path, "not = [toml").unwrap();
        assert_eq!(Settings::load(&path), Settings::default());
    }
}
