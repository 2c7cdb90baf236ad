//! A worker instance's name, for its client id: several instances of one
//! worker on one broker each need their own, or the broker would kick the
//! older one off at every connect of the other.

/// `name`, or this host's name and this process's id.
pub fn instance_name(name: Option<&str>) -> String {
    match name {
        Some(n) => n.to_owned(),
        None => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "host".into());
            format!("{host}-{}", std::process::id())
        }
    }
}
