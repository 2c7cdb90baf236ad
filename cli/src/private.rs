//! Files and folders a binary creates are its owner's only. The platform
//! keeps pass_tmps, keys and credentials in its data dir, and sled creates
//! its files itself, with the process's file-creation mask: setting the
//! mask once, first thing, covers every file, including those a library
//! creates.

use std::path::Path;

/// Sets the process's file-creation mask to 0o077: new files are 0600 (or
/// less), new folders 0700.
pub fn private_files() {
    #[cfg(unix)]
    {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    }
}

/// What a process that keeps its data in `dir` does first: sets the
/// file-creation mask ([`private_files`]), creates `dir` (and its missing
/// parents) mode 0700, and makes what is already there its owner's only
/// (folders 0700, files 0600), as `broker` does with its data dir: a dir
/// made by an earlier version, or by hand, is tightened too.
pub fn private_data_dir(dir: &Path) -> std::io::Result<()> {
    private_files();
    storage::private_dir(dir)?;
    storage::restrict_tree(dir)
}
