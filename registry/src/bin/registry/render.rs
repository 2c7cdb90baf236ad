//! How the CLI prints the registry's replies: lines and a table for
//! people, or with `--json` the reply itself. This output is the CLI's
//! contract with scripts (and its tests), so it changes only on purpose.

use protocol::registry_admin::{AssignmentView, RegistryOk};
use std::time::{Duration, UNIX_EPOCH};

pub fn print(ok: &RegistryOk, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(ok).unwrap_or_default());
        return;
    }
    match ok {
        RegistryOk::Assignment(a) => print_assignment(a),
        RegistryOk::Drained(d) => println!(
            "drained {}: {} moved, {} remaining",
            d.gateway_id, d.moved, d.remaining
        ),
        RegistryOk::Undrained { gateway_id } => println!("{gateway_id} takes devices again"),
        RegistryOk::Gateways { gateways } => {
            println!(
                "{:<12} {:<22} {:<6} {:>6} {:>9} {:>10}",
                "GATEWAY", "ADDRESS", "STATE", "WEIGHT", "ASSIGNED", "CONNECTED"
            );
            for g in gateways {
                let state = match (g.alive, g.draining) {
                    (false, _) => "dead",
                    (true, true) => "drain",
                    (true, false) => "live",
                };
                println!(
                    "{:<12} {:<22} {:<6} {:>6} {:>9} {:>10}",
                    g.gateway_id, g.address, state, g.weight, g.assigned, g.connected
                );
            }
        }
        RegistryOk::GatewayRegistered {
            gateway_id,
            address,
            weight,
            created,
            certificate,
        } => println!(
            "{} gateway {gateway_id} at {address}, weight {weight}{}",
            if *created { "registered" } else { "updated" },
            match (certificate, tls::gateway_name(gateway_id)) {
                (Some(_), Ok(name)) => format!(
                    ", with a TLS certificate for {name} (a client verifies the gateway by that name, not by its address)"
                ),
                (Some(_), Err(_)) => ", with a TLS certificate".into(),
                (None, _) => String::new(),
            }
        ),
        RegistryOk::GatewayRemoved { gateway_id } => println!("removed gateway {gateway_id}"),
        RegistryOk::History { device_id, entries } => {
            println!("history of {device_id}:");
            for e in entries {
                println!(
                    "  {}  epoch {:>3}  {} -> {}  ({})",
                    when(e.at_ms),
                    e.epoch,
                    e.from.as_deref().unwrap_or("-"),
                    e.to,
                    e.reason
                );
            }
        }
    }
}

/// The summary of a whole drain, over all its batches.
pub fn drained(gateway: &str, moved: u64, remaining: u64, elapsed: Duration, json: bool) {
    if json {
        let out = serde_json::json!({"gateway_id": gateway, "moved": moved, "remaining": remaining, "elapsed_ms": elapsed.as_millis() as u64});
        println!("{out}");
    } else {
        println!(
            "drained {gateway}: {moved} devices moved in {:.2} s, {} remaining",
            elapsed.as_secs_f64(),
            remaining
        );
    }
}

fn print_assignment(a: &AssignmentView) {
    let verb = if a.changed { "now on" } else { "on" };
    println!(
        "{} {verb} {} (epoch {})",
        a.device_id, a.gateway_id, a.epoch
    );
    match &a.last_seen {
        Some(s) if s.online => println!("  connected to {} since {}", s.gateway_id, when(s.at_ms)),
        Some(s) => println!("  last seen on {} until {}", s.gateway_id, when(s.at_ms)),
        None => println!("  never seen connected"),
    }
}

fn when(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}
