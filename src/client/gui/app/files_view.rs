//! The file chooser of the hosts view, and the settings saved between
//! sessions (the theme).

use super::*;

impl App {
    pub(super) fn bind_files(&self) {
        let w = &self.inner.window;
        let files = w.global::<FilesAdapter>();
        files.on_open(with_app!(self, move |app, name| {
            let chosen = app.inner.state.borrow_mut().files.open(&name);
            match chosen {
                Some(path) => {
                    app.inner.window.invoke_close_file_dialog();
                    app.load(&path);
                }
                None => app.refresh_files(),
            }
        }));
        files.on_choose_path(with_app!(self, move |app, path| {
            let path = PathBuf::from(path.trim());
            if path.is_file() {
                app.inner.window.invoke_close_file_dialog();
                app.load(&path);
            } else {
                app.inner.state.borrow_mut().files = FileBrowser::at(&path);
                app.refresh_files();
            }
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
