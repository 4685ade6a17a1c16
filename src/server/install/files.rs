//! The files `install` puts in place: the binary, the private
//! directories, the configuration and the unit, each written atomically
//! and each step saying what it did or what it left alone.

use std::{
    io::{self, Write},
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use super::{InstallError, InstallOptions, config_text, io_error, paths, say};
use crate::server::AgentConfig;

/// Copies the running binary to `target` (0755, atomically), unless it is
/// that very file or holds the same bytes. True when it was copied.
pub(super) fn install_binary(target: &Path, out: &mut dyn Write) -> Result<bool, InstallError> {
    // On Linux the running image itself, even if its file was replaced or
    // deleted since it started.
    let source = if Path::new("/proc/self/exe").exists() {
        PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().map_err(io_error(Path::new("the running binary")))?
    };
    let source_meta = std::fs::metadata(&source).map_err(io_error(&source))?;
    if let Ok(meta) = std::fs::metadata(target) {
        let same_file = (meta.dev(), meta.ino()) == (source_meta.dev(), source_meta.ino());
        if same_file || same_contents(&source, target)? {
            let why = if same_file {
                "it is the running binary"
            } else {
                "same contents"
            };
            if meta.permissions().mode() & 0o7777 != 0o755 {
                set_mode(target, 0o755)?;
                say(out, format_args!("made {} mode 0755", target.display()))?;
            }
            say(out, format_args!("left {} alone ({why})", target.display()))?;
            return Ok(false);
        }
    }
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    crate::atomic_file::replace_with(target, 0o755, |file| {
        // Whatever the old file's mode and this process's umask.
        file.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        io::copy(&mut std::fs::File::open(&source)?, file).map(drop)
    })
    .map_err(io_error(target))?;
    say(out, format_args!("installed {} (0755)", target.display()))?;
    Ok(true)
}

fn same_contents(a: &Path, b: &Path) -> Result<bool, InstallError> {
    use std::io::Read;
    let open = |path: &Path| {
        std::fs::File::open(path)
            .map(io::BufReader::new)
            .map_err(io_error(path))
    };
    let (mut a, mut b) = (open(a)?, open(b)?);
    let (mut left, mut right) = (vec![0; 64 << 10], vec![0; 64 << 10]);
    loop {
        let n = a
            .read(&mut left)
            .map_err(io_error(Path::new("the running binary")))?;
        if n == 0 {
            return Ok(b.read(&mut right[..1]).is_ok_and(|m| m == 0));
        }
        if b.read_exact(&mut right[..n]).is_err() || left[..n] != right[..n] {
            return Ok(false);
        }
    }
}

/// Makes `dir` (and its missing parents, with the usual modes) and leaves
/// it readable by root only; an existing one open to others is tightened.
pub(super) fn private_dir(dir: &Path, out: &mut dyn Write) -> Result<(), InstallError> {
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Err(InstallError::NotADirectory(dir.to_owned())),
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 == 0 {
                return say(out, format_args!("left {} alone (exists)", dir.display()));
            }
            set_mode(dir, 0o700)?;
            say(
                out,
                format_args!("made {} mode 0700 (it was {mode:04o})", dir.display()),
            )
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent).map_err(io_error(parent))?;
            }
            std::fs::create_dir(dir).map_err(io_error(dir))?;
            set_mode(dir, 0o700)?;
            say(out, format_args!("created {} (0700)", dir.display()))
        }
        Err(e) => Err(io_error(dir)(e)),
    }
}

/// Writes the configuration unless one is there (and not `--force`).
/// Returns whether it wrote, and the fleet directory the configuration in
/// place names.
pub(super) fn write_config(
    options: &InstallOptions,
    out: &mut dyn Write,
) -> Result<(bool, PathBuf), InstallError> {
    let layout = &options.layout;
    let (path, fleet) = (layout.path(paths::CONFIG), layout.path(paths::FLEET_DIR));
    let text = config_text(
        &options.listen,
        &fleet,
        &layout.path(paths::AUDIT_LOG),
        &layout.path(paths::STATE_DIR),
    )?;
    let old = match std::fs::read_to_string(&path) {
        Ok(old) => Some(old),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error(&path)(e)),
    };
    let Some(old) = old.filter(|old| *old != text && !options.force) else {
        return Ok((write_if_changed(&path, &text, out)?, fleet));
    };
    say(
        out,
        format_args!("kept {} (it exists; --force replaces it)", path.display()),
    )?;
    // The join code goes where the kept configuration looks for it.
    let mut kept: AgentConfig = toml::from_str(&old).map_err(|e| InstallError::Config {
        path: path.clone(),
        reason: e.message().to_owned(),
    })?;
    kept.resolve_paths(path.parent().unwrap_or(Path::new("/")));
    match kept.fleet_dir {
        Some(dir) if dir == fleet => Ok((false, fleet)),
        Some(dir) => {
            say(
                out,
                format_args!("note: it names the fleet directory {}", dir.display()),
            )?;
            private_dir(&dir, out)?;
            Ok((false, dir))
        }
        None => {
            say(
                out,
                "note: it sets no fleet_dir: the agent will not use a join code",
            )?;
            Ok((false, fleet))
        }
    }
}

/// Writes `text` to `path` (0644, atomically) unless it already holds it.
/// True when it wrote.
pub(super) fn write_if_changed(
    path: &Path,
    text: &str,
    out: &mut dyn Write,
) -> Result<bool, InstallError> {
    let old = std::fs::read(path).ok();
    if old.as_deref() == Some(text.as_bytes()) {
        say(
            out,
            format_args!("left {} alone (unchanged)", path.display()),
        )?;
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    write_file(path, text.as_bytes(), 0o644)?;
    let verb = if old.is_some() { "replaced" } else { "wrote" };
    say(out, format_args!("{verb} {}", path.display()))?;
    Ok(true)
}

/// Replaces `path` atomically with `contents`, mode `mode` whatever the
/// old file's and the umask.
pub(super) fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), InstallError> {
    crate::atomic_file::replace_with(path, mode, |file| {
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(contents)
    })
    .map_err(io_error(path))
}

/// Removes a file; says whether it was there.
pub(super) fn remove_file(path: &Path, out: &mut dyn Write) -> Result<bool, InstallError> {
    match std::fs::remove_file(path) {
        Ok(()) => say(out, format_args!("removed {}", path.display())).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            say(out, format_args!("{} is already absent", path.display())).map(|()| false)
        }
        Err(e) => Err(io_error(path)(e)),
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), InstallError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_error(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn private_directories_are_made_0700_and_open_ones_tightened() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("etc/vigie");
        let mut out = Vec::new();
        private_dir(&dir, &mut out).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(
            mode(dir.parent().unwrap()) & 0o077,
            0o055,
            "parents as usual"
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir, &mut out).unwrap();
        assert_eq!(mode(&dir), 0o700);
        private_dir(&dir, &mut out).unwrap();
        let file = scratch.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(matches!(
            private_dir(&file, &mut out),
            Err(InstallError::NotADirectory(_))
        ));
        let said = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = said.lines().collect();
        let shown = dir.display();
        assert_eq!(
            lines,
            [
                format!("created {shown} (0700)"),
                format!("made {shown} mode 0700 (it was 0755)"),
                format!("left {shown} alone (exists)"),
            ]
        );
    }

    #[test]
    fn files_are_rewritten_only_when_their_contents_change() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("systemd/vigie-agent.service");
        let mut out = Vec::new();
        assert!(write_if_changed(&path, "one", &mut out).unwrap());
        assert_eq!(mode(&path), 0o644);
        assert!(!write_if_changed(&path, "one", &mut out).unwrap());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(write_if_changed(&path, "two", &mut out).unwrap());
        assert_eq!(mode(&path), 0o644, "whatever the old file's mode");
        assert!(remove_file(&path, &mut out).unwrap());
        assert!(!remove_file(&path, &mut out).unwrap());
        let said = String::from_utf8(out).unwrap();
        let verbs: Vec<&str> = said.lines().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(verbs[..4], ["wrote", "left", "replaced", "removed"]);
        assert!(said.ends_with(" is already absent\n"), "{said}");
    }
}
