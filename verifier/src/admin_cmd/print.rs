//! How an admin command's answer is shown: one line per fact for a person,
//! or the reply as pretty JSON with `--json`, for a script.

use protocol::admin::{AdminOk, ImportReport};
use std::time::Duration;

pub fn print(ok: &AdminOk, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(ok).unwrap_or_default());
        return;
    }
    match ok {
        AdminOk::Enrolled {
            uuid,
            created: true,
        } => println!("enrolled {uuid}"),
        AdminOk::Enrolled {
            uuid,
            created: false,
        } => println!("{uuid} was already enrolled with this pass_tmp"),
        AdminOk::Imported(ImportReport {
            added,
            added_any_ssid,
            unchanged,
            rejected,
        }) => {
            let any = match added_any_ssid {
                0 => String::new(),
                n => format!(" ({n} without an SSID: they may onboard at any SSID)"),
            };
            println!(
                "added {added}{any}, unchanged {unchanged}, rejected {}",
                rejected.len()
            );
            for r in rejected {
                println!("  line {}: {} {}", r.line, r.uuid, r.reason);
            }
        }
        AdminOk::Removed { uuid } => println!("removed {uuid}"),
        AdminOk::Device {
            uuid,
            enrolled_at_ms,
            device_key,
            ssids,
            pending_key,
        } => {
            println!(
                "{uuid} enrolled at {} (unix ms {enrolled_at_ms})",
                format_ms(*enrolled_at_ms)
            );
            if ssids.is_empty() {
                println!("  may onboard at any SSID");
            } else {
                println!("  may onboard at {}", ssids.join(", "));
            }
            match device_key {
                Some(key) => println!("  logs in with key {key}"),
                None => println!("  not onboarded: no login key yet"),
            }
            if let Some(key) = pending_key {
                println!("  new key {key} waits for: verifier approve-key --uuid {uuid}");
            }
        }
        AdminOk::KeyRegistered { uuid, created } => println!(
            "{}",
            if *created {
                format!("registered the login key of {uuid}")
            } else {
                format!("{uuid} already logs in with this key")
            }
        ),
        AdminOk::List { uuids, .. } => {
            for u in uuids {
                println!("{u}");
            }
        }
        AdminOk::KeyRevoked { uuid } => {
            println!("revoked the login key of {uuid}; it must be onboarded again")
        }
        AdminOk::KeyApproved { uuid, device_key } => {
            println!("{uuid} logs in with key {device_key} now; its old key is refused")
        }
        AdminOk::ApRegistered {
            ap_id,
            ssids,
            created,
        } => println!(
            "{} AP {ap_id} serving {}",
            if *created { "registered" } else { "updated" },
            ssids.join(", ")
        ),
        AdminOk::ApRemoved { ap_id } => println!("removed AP {ap_id}"),
        AdminOk::Aps { aps } => {
            for ap in aps {
                println!(
                    "{}\t{}\tregistered {}",
                    ap.ap_id,
                    ap.ssids.join(","),
                    format_ms(ap.registered_ms)
                );
            }
        }
    }
}

fn format_ms(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at).to_string()
}
