//! Who a certificate proves a server is: the platform (the hosts it is
//! reached at, `tls.names`), or one gateway, by its id.
//!
//! A gateway's certificate holds one DNS name made from its id, under
//! [`GATEWAY_DOMAIN`] (`.invalid` is reserved, RFC 6761: no resolver
//! answers for it, and no public CA issues for it), and nothing else: no
//! IP address, no host of the platform. So it never verifies as the
//! platform, whatever host a client connects to, nor as another gateway;
//! and the platform's own certificates never hold a name under it.

use crate::TlsError;

/// The domain every gateway's name is under.
pub const GATEWAY_DOMAIN: &str = "gateway.invalid";

/// The label before [`GATEWAY_DOMAIN`] of a gateway id that is not one DNS
/// label as it is: its bytes in hex follow, in labels of their own.
const ENCODED: &str = "x";

/// The longest hex label of an encoded id.
const HEX_LABEL: usize = 62;

/// The name a gateway's certificate holds, and that a client connecting
/// to that gateway verifies: `<id>.gateway.invalid` for an id that is a
/// DNS label in lowercase (`gw-9.gateway.invalid`); otherwise the id's
/// bytes in hex, `<hex>[.<hex>…].x.gateway.invalid`. One id has one name,
/// and two ids never share one (a plain id makes three labels, an encoded
/// one at least four).
pub fn gateway_name(gateway_id: &str) -> Result<String, TlsError> {
    if plain_label(gateway_id) {
        return Ok(format!("{gateway_id}.{GATEWAY_DOMAIN}"));
    }
    if gateway_id.is_empty() {
        return Err(TlsError::BadName(gateway_id.to_owned()));
    }
    let hex: String = gateway_id.bytes().map(|b| format!("{b:02x}")).collect();
    let labels: Vec<&str> = hex
        .as_bytes()
        .chunks(HEX_LABEL)
        // Hex digits are ASCII: every chunk is UTF-8.
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    let name = format!("{}.{ENCODED}.{GATEWAY_DOMAIN}", labels.join("."));
    if name.len() > 253 {
        return Err(TlsError::BadName(gateway_id.to_owned()));
    }
    Ok(name)
}

/// Whether `name` is under [`GATEWAY_DOMAIN`]: a gateway's, which the
/// platform's own certificates never hold.
pub fn is_gateway_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == GATEWAY_DOMAIN || name.ends_with(&format!(".{GATEWAY_DOMAIN}"))
}

/// One DNS label of lowercase letters, digits and inner `-`.
fn plain_label(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_id_names_one_gateway() {
        assert_eq!(gateway_name("gw-9").unwrap(), "gw-9.gateway.invalid");
        // Not a lowercase label: hex, so that `GW-9` is not `gw-9`.
        assert_eq!(gateway_name("GW-9").unwrap(), "47572d39.x.gateway.invalid");
        assert_ne!(gateway_name("x").unwrap(), gateway_name("78").unwrap());
        let long = "g".repeat(100);
        let name = gateway_name(&long).unwrap();
        assert!(name.split('.').all(|l| l.len() <= 63), "{name}");
        assert!(crate::nameable(&name), "{name}");
        for id in ["gw-9", "GW 9", "gw_9", "é"] {
            let name = gateway_name(id).unwrap();
            assert!(
                crate::nameable(&name) && is_gateway_name(&name),
                "{id}: {name}"
            );
        }
        assert!(gateway_name("").is_err());
        assert!(gateway_name(&"G".repeat(128)).is_err(), "too long a name");
    }

    #[test]
    fn what_is_a_gateways_name() {
        for name in [
            "gw-1.gateway.invalid",
            "GW-1.Gateway.Invalid.",
            "gateway.invalid",
        ] {
            assert!(is_gateway_name(name), "{name}");
        }
        for name in [
            "localhost",
            "127.0.0.1",
            "gateway.invalid.example",
            "xgateway.invalid",
        ] {
            assert!(!is_gateway_name(name), "{name}");
        }
    }
}
