//! What `ap-sim` does once its arguments are checked: start each AP, show
//! its events on the terminal, and take the y/n answers typed there.

use ap_sim::{Ap, ApConfig, ApEvent, Network};
use cli::ConnectArgs;
use std::collections::VecDeque;
use std::io::{BufRead, IsTerminal};
use std::task::Poll;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The settings every AP of the process shares.
pub struct Options {
    pub auto_confirm: bool,
    /// Seconds a prompt waits for an answer.
    pub confirm_timeout: u64,
    pub connect: ConnectArgs,
}

/// One AP to run: its id and its network.
pub struct ApSpec {
    pub id: String,
    pub network: Network,
}

/// A started AP and what the terminal needs to talk about it.
struct Running {
    id: String,
    ap: Ap,
}

/// A prompt waiting for the terminal's answer.
struct Prompt {
    ap: usize,
    uuid: String,
    ssid: String,
}

pub async fn run(opts: Options, specs: Vec<ApSpec>) -> Result<(), ap_sim::ApError> {
    let shutdown = CancellationToken::new();
    tokio::spawn(cli::cancel_on_signal(shutdown.clone()));
    let platform_key = opts
        .connect
        .platform_key()
        .map_err(|reason| ap_sim::ApError::Invalid {
            field: "platform key",
            reason,
        })?;
    let tls = opts
        .connect
        .tls()
        .map_err(|reason| ap_sim::ApError::Invalid {
            field: "cafile",
            reason,
        })?;
    if specs.len() > 1 && (opts.connect.password_given() || opts.connect.username.is_some()) {
        return Err(ap_sim::ApError::Invalid {
            field: "password file",
            reason: "each AP of an --aps file logs in as itself, with its own credential \
                     (data/credentials/ap/ID.token): --username, --mqtt-password and \
                     --password-file are for a single AP"
                .into(),
        });
    }
    let mut aps = Vec::with_capacity(specs.len());
    for spec in specs {
        let own_credential = protocol::layout::ap_token_file(
            std::path::Path::new(cli::DEFAULT_CREDENTIALS_DIR),
            &spec.id,
        );
        let password = opts
            .connect
            .password_or(&own_credential)
            .map_err(|reason| ap_sim::ApError::Invalid {
                field: "password file",
                reason,
            })?;
        let mut config = ApConfig::new(opts.connect.broker(), &spec.id, vec![spec.network]);
        config.tls = tls.as_ref().map(|t| t.config());
        config.auto_confirm = opts.auto_confirm;
        config.confirm_timeout = Duration::from_secs(opts.confirm_timeout);
        if let Some(username) = &opts.connect.username {
            config.username = username.clone();
        }
        config.password = password;
        config.platform_key = platform_key;
        let ssid = config.networks[0].ssid.clone();
        match ap_sim::start(config, shutdown.clone()).await {
            Ok(ap) => {
                println!(
                    "[ap {}] serving SSID {ssid:?} on {}",
                    spec.id,
                    opts.connect.broker()
                );
                aps.push(Running { id: spec.id, ap });
            }
            Err(e) => {
                // Stop the ones already serving before giving up.
                shutdown.cancel();
                for running in aps {
                    let _ = running.ap.join().await;
                }
                return Err(e);
            }
        }
    }

    let interactive = !opts.auto_confirm && std::io::stdin().is_terminal();
    let mut answers = if interactive {
        Some(spawn_stdin_reader())
    } else {
        None
    };
    let mut prompts: VecDeque<Prompt> = VecDeque::new();
    let mut turn = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            event = next_event(&mut aps, &mut turn) => match event {
                Some((i, event)) => on_event(&opts, &aps, i, event, interactive, &mut prompts),
                None => break,
            },
            Some(line) = recv(&mut answers) => {
                let accept = match line.trim() {
                    "y" | "Y" | "yes" => true,
                    "n" | "N" | "no" => false,
                    _ => { ask(&aps, &prompts); continue; }
                };
                while let Some(p) = prompts.pop_front() {
                    if aps[p.ap].ap.confirmations.confirm(&p.uuid, accept) {
                        break;
                    }
                }
                ask(&aps, &prompts);
            }
        }
    }
    let mut result = Ok(());
    for running in aps {
        if let Err(e) = running.ap.join().await {
            result = Err(e);
        }
    }
    result
}

fn on_event(
    opts: &Options,
    aps: &[Running],
    i: usize,
    event: ApEvent,
    interactive: bool,
    prompts: &mut VecDeque<Prompt>,
) {
    let id = &aps[i].id;
    match event {
        ApEvent::Prompt { uuid, ssid } => {
            println!("[ap {id}] device {uuid} wants to join {ssid:?}");
            if opts.auto_confirm {
                println!("[ap {id}] auto-confirmed");
            } else if interactive {
                prompts.push_back(Prompt { ap: i, uuid, ssid });
                ask(aps, prompts);
            } else {
                println!(
                    "[ap {id}] confirm with: mosquitto_pub -u me -t {} -m '{{\"uuid\":\"{uuid}\",\"accept\":true}}'",
                    protocol::topics::ap_confirm(id)
                );
            }
        }
        ApEvent::Answered {
            uuid,
            outcome,
            elapsed,
        } => {
            prompts.retain(|p| !(p.ap == i && p.uuid == uuid));
            match outcome {
                Ok(()) => println!(
                    "[ap {id}] sent the password to {uuid} ({} ms)",
                    elapsed.as_millis()
                ),
                Err(code) => println!("[ap {id}] refused {uuid}: {code}"),
            }
        }
    }
}

/// The next event of any AP, taking the APs in turn so that a busy one
/// cannot starve the others. `None` once every AP has stopped.
async fn next_event(aps: &mut [Running], turn: &mut usize) -> Option<(usize, ApEvent)> {
    std::future::poll_fn(|cx| {
        let n = aps.len();
        let mut open = false;
        for k in 0..n {
            let i = (*turn + k) % n;
            match aps[i].ap.events.poll_recv(cx) {
                Poll::Ready(Some(event)) => {
                    *turn = (i + 1) % n;
                    return Poll::Ready(Some((i, event)));
                }
                Poll::Ready(None) => {}
                Poll::Pending => open = true,
            }
        }
        if open {
            Poll::Pending
        } else {
            Poll::Ready(None)
        }
    })
    .await
}

/// Asks about the oldest open prompt, naming its AP and network.
fn ask(aps: &[Running], prompts: &VecDeque<Prompt>) {
    if let Some(p) = prompts.front() {
        println!(
            "[ap {}] accept {} onto {:?}? [y/n]",
            aps[p.ap].id, p.uuid, p.ssid
        );
    }
}

async fn recv(rx: &mut Option<mpsc::UnboundedReceiver<String>>) -> Option<String> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Lines typed on the terminal. A plain thread: stdin reads block.
fn spawn_stdin_reader() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
