//! A gateway: an embedded broker devices connect to, plus its agent.
//!
//! The agent connects to the platform broker, announces the gateway
//! (`alive: true`, with a last will `alive: false`), keeps the set of
//! devices the registry assigned here, and admits only those at CONNECT
//! (a device that moved while offline is refused and re-queries). It turns
//! the registry's notifications into redirect notices on its own broker,
//! and reports which devices are connected.

mod admitted;
mod agent;
mod presence;

use crate::config::{BrokerSettings, GatewaySection};
use crate::embedded::{BrokerError, EmbeddedBroker, ListenerTls};
use admitted::Assigned;
use agent::Agent;
use bus::{Bus, BusError, BusOptions};
use protocol::crypto::PlatformPublicKey;
use protocol::gateway::{GatewayStatus, GATEWAY_AGENT_CLIENT_ID};
use protocol::topics;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::info;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("gateway {id}: {source}")]
    Broker { id: String, source: BrokerError },
    #[error("gateway {id}: {source}")]
    Bus { id: String, source: BusError },
}

/// A running gateway. The broker lives until the process exits; the agent
/// stops on shutdown, announcing `alive: false` first.
pub struct Gateway {
    pub id: String,
    pub address: String,
    task: tokio::task::JoinHandle<()>,
}

impl Gateway {
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// How a gateway logs in to the platform, and whether it checks devices'
/// signed assignments (secure mode) or not (walkthrough).
#[derive(Debug, Clone)]
pub struct GatewaySecurity {
    /// (username, password) on the platform broker.
    pub login: (String, String),
    /// Secure mode: the platform's public key.
    pub platform_key: Option<PlatformPublicKey>,
    /// TLS to the platform broker: whom to trust there. None: plaintext.
    pub platform_tls: Option<tls::ClientTls>,
}

/// What the gateway's listener serves, and where it counts.
#[derive(Debug, Clone, Default)]
pub struct Served {
    /// Subscribers its broker disconnects for falling behind.
    pub lag: metrics::BrokerLag,
    /// TLS on its listener; None: plaintext.
    pub tls: Option<ListenerTls>,
}

/// Starts the gateway broker, serving as `served` says, and its agent;
/// returns once the agent is connected to both brokers.
pub async fn start(
    section: &GatewaySection,
    settings: &BrokerSettings,
    platform: &str,
    security: &GatewaySecurity,
    served: Served,
    shutdown: CancellationToken,
) -> Result<Gateway, GatewayError> {
    let id = section.id.clone();
    let assigned = Arc::new(Assigned::new(&id, security.platform_key));
    let gw_settings = BrokerSettings {
        listen: section.listen,
        ..settings.clone()
    };
    let broker = EmbeddedBroker::start(
        &format!("gateway-{id}"),
        &gw_settings,
        assigned.clone(),
        served.lag,
        served.tls,
    )
    .map_err(|source| GatewayError::Broker {
        id: id.clone(),
        source,
    })?;
    let address = section.advertised(broker.addr());
    let bus_err = |source| GatewayError::Bus {
        id: id.clone(),
        source,
    };

    let status = |alive: bool| GatewayStatus {
        gateway_id: id.clone(),
        alive,
        address: alive.then(|| address.clone()),
        weight: alive.then_some(section.weight),
    };
    let mut up_opts = BusOptions::new(platform, format!("gateway.{id}"))
        .map_err(bus_err)?
        .with_credentials(security.login.0.clone(), security.login.1.clone())
        .with_tls(security.platform_tls.as_ref().map(|t| t.config()));
    up_opts.last_will = Some((
        topics::gateway_status(&id),
        protocol::encode(&status(false)),
    ));
    let (user, password) = broker.internal_login();
    let local_opts = BusOptions::new(&broker.addr().to_string(), GATEWAY_AGENT_CLIENT_ID)
        .map_err(bus_err)?
        .with_credentials(user, password)
        .with_tls(broker.internal_tls().map(|t| t.config()));
    let ready = Some(Duration::from_secs(10));
    let local_link = CancellationToken::new();
    let (local, local_inbox) = Bus::connect_ready(
        local_opts,
        vec![topics::DEVICE_PRESENCE_ALL.into()],
        local_link.clone(),
        ready,
    )
    .await
    .map_err(bus_err)?;
    let up_link = CancellationToken::new();
    let up_filters = vec![topics::gateway_assign(&id), topics::gateway_notify(&id)];
    let connected = Bus::connect_ready(up_opts, up_filters, up_link.clone(), ready).await;
    let (up, up_inbox) = match connected {
        Ok(up) => up,
        Err(e) => {
            local_link.cancel();
            return Err(bus_err(e));
        }
    };
    info!(gateway_id = %id, listen = %broker.addr(), advertise = %address, "gateway listening");

    let agent = Agent {
        id: id.clone(),
        up,
        local,
        assigned,
        sessions: broker.sessions().clone(),
        close_after_notice: section.close_after_notice(),
        alive: status(true),
        dead: status(false),
    };
    let task = tokio::spawn(agent.run(up_inbox, local_inbox, up_link, local_link, shutdown));
    Ok(Gateway { id, address, task })
}
