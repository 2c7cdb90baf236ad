//! Files that hold secrets (keys, credentials): written so that a crash at
//! any point leaves either no file or the whole one, readable by their
//! owner only.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes a new secret file, mode 0600: written and synced under a
/// temporary name, renamed into place, then the directory synced. A
/// half-written key would otherwise stop the next start until someone
/// deleted it by hand. Missing parent directories are created, mode 0700.
pub fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
    let (dir, tmp) = write_beside(path, ".tmp", text)?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Writes `text`, synced and mode 0600, to `path` + `suffix` (a leftover
/// of that name is replaced, never reused: its mode may not be 0600),
/// creating the directory private if needed; answers the directory and
/// the file written.
fn write_beside<'a>(
    path: &'a Path,
    suffix: &str,
    text: &str,
) -> std::io::Result<(&'a Path, PathBuf)> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    private_dir(dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(suffix);
    let tmp = PathBuf::from(tmp);
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok((dir, tmp))
}

/// Writes a new secret file as [`write_secret`] does, unless `path` exists
/// already: true if this call wrote it. Several processes starting at once
/// (two verifier instances making their shared store key) thus agree on
/// one file: the first link wins, and the others read it. The file is
/// written and synced under a name of this process's own, then linked into
/// place, which fails if the path exists.
pub fn create_secret(path: &Path, text: &str) -> std::io::Result<bool> {
    let (dir, tmp) = write_beside(path, &format!(".{}.tmp", std::process::id()), text)?;
    let linked = std::fs::hard_link(&tmp, path);
    std::fs::remove_file(&tmp)?;
    match linked {
        Ok(()) => {
            std::fs::File::open(dir)?.sync_all()?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates `dir` and its missing parents, each new one mode 0700.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Makes `dir` and everything below it its owner's only: folders 0700,
/// files 0600. For a data dir written before its files were created
/// private, or by a process with a looser file-creation mask.
pub fn restrict_tree(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::symlink_metadata(dir)?;
        if meta.is_dir() {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            for entry in std::fs::read_dir(dir)? {
                restrict_tree(&entry?.path())?;
            }
        } else if meta.is_file() {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod create_tests {
    use super::*;

    #[test]
    fn of_processes_creating_one_secret_at_once_the_first_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        assert!(create_secret(&path, "first").unwrap());
        assert!(!create_secret(&path, "second").unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left behind");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_written_whole_and_private_over_a_leftover() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("key");
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub").join("key.tmp"), "half").unwrap();
        write_secret(&path, "whole\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "whole\n");
        assert!(!dir.path().join("sub").join("key.tmp").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_tree_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("db");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("conf"), "x").unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(sub.join("conf"), std::fs::Permissions::from_mode(0o644)).unwrap();
        restrict_tree(dir.path()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.path()), 0o700);
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&sub.join("conf")), 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn new_directories_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a").join("b");
        private_dir(&deep).unwrap();
        for d in [dir.path().join("a"), deep] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", d.display());
        }
    }
}
