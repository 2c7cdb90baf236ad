//! Files and folders a binary creates are its owner's only. The platform
//! keeps pass_tmps, keys and credentials in its data dir, and sled creates
//! its files itself, with the process's file-creation mask: setting the
//! mask once, first thing, covers every file, including those a library
//! creates.

/// Sets the process's file-creation mask to 0o077: new files are 0600 (or
/// less), new folders 0700.
pub fn private_files() {
    #[cfg(unix)]
    {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    }
}
