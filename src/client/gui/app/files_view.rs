//! The file chooser (a hosts file to open, what to push, where pulls go),
//! and the settings saved between sessions (the theme).

use super::*;

/// What the file chooser is open for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Purpose {
    /// A hosts file to load.
    #[default]
    HostsFile,
    /// A local file or directory to push.
    PushSource,
    /// The directory pulls write under.
    PullInto,
}

impl App {
    pub(super) fn bind_files(&self) {
        let w = &self.inner.window;
        let files = w.global::<FilesAdapter>();
        files.on_open(with_app!(self, move |app, name| {
            let chosen = app.inner.state.borrow_mut().files.open(&name);
            match chosen {
                Some(path) => app.chose_file(&path),
                None => app.refresh_files(),
            }
        }));
        files.on_choose_path(with_app!(self, move |app, path| {
            let path = PathBuf::from(path.trim());
            if path.is_file() {
                app.chose_file(&path);
            } else {
                app.inner.state.borrow_mut().files = FileBrowser::at(&path);
                app.refresh_files();
            }
        }));
        files.on_take_directory(with_app!(self, move |app| {
            let (purpose, dir) = {
                let state = app.inner.state.borrow();
                (state.files_purpose, state.files.dir().to_owned())
            };
            let text: SharedString = dir.display().to_string().into();
            let adapter = app.inner.window.global::<super::super::TransfersAdapter>();
            match purpose {
                Purpose::PushSource => adapter.set_push_local(text),
                Purpose::PullInto => adapter.set_pull_into(text),
                Purpose::HostsFile => return,
            }
            app.inner.window.invoke_close_file_dialog();
        }));

        w.global::<StatusAdapter>()
            .on_toggle_theme(with_app!(self, move |app| {
                let dark = app
                    .inner
                    .window
                    .global::<crate::client::gui::Theme>()
                    .get_dark();
                let mut state = app.inner.state.borrow_mut();
                state.settings.light_theme = !dark;
                app.save_settings(&state);
            }));
    }

    // --- files and settings --------------------------------------------

    /// Opens the file chooser for `purpose`, at `near` (or where it was).
    pub(super) fn open_chooser(&self, purpose: Purpose, near: Option<&Path>) {
        {
            let mut state = self.inner.state.borrow_mut();
            state.files_purpose = purpose;
            if let Some(near) = near.filter(|p| !p.as_os_str().is_empty()) {
                state.files = FileBrowser::at(near);
            }
        }
        let adapter = self.inner.window.global::<FilesAdapter>();
        let (title, directories) = match purpose {
            Purpose::HostsFile => ("Open a hosts file", false),
            Purpose::PushSource => ("Choose a file or directory to push", true),
            Purpose::PullInto => ("Choose the directory pulls go under", true),
        };
        adapter.set_title(title.into());
        adapter.set_takes_directory(directories);
        self.refresh_files();
        self.inner.window.invoke_show_file_dialog();
    }

    /// A file was picked in the chooser.
    fn chose_file(&self, path: &Path) {
        let purpose = self.inner.state.borrow().files_purpose;
        match purpose {
            Purpose::HostsFile => {
                self.inner.window.invoke_close_file_dialog();
                self.load(path);
            }
            Purpose::PushSource => {
                self.inner.window.invoke_close_file_dialog();
                self.inner
                    .window
                    .global::<super::super::TransfersAdapter>()
                    .set_push_local(path.display().to_string().into());
            }
            // Pulls go under a directory: a file is not one.
            Purpose::PullInto => self.status(
                "pulls go under a directory: open one, then Use this directory",
                true,
            ),
        }
    }

    pub(super) fn refresh_files(&self) {
        let state = self.inner.state.borrow();
        let entries: Vec<FileItem> = state
            .files
            .entries()
            .into_iter()
            .map(|e| FileItem {
                name: e.name.into(),
                is_dir: e.is_dir,
            })
            .collect();
        update_model(&self.inner.models.files, entries);
        self.inner
            .window
            .global::<FilesAdapter>()
            .set_dir(state.files.dir().display().to_string().into());
    }

    pub(super) fn save_settings(&self, state: &State) {
        if let Some(path) = &state.settings_path
            && let Err(e) = state.settings.save(path)
        {
            tracing::warn!(error = %e, "cannot save the window's settings");
        }
    }
}
