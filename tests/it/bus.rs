//! The bus under load, against a real broker: a worker that answers every
//! message from the loop that reads them (the registry, the verifier) must
//! keep going however far its inbox and its publishes back up.

use bus::{Bus, Outbox};
use platform_tests::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const FLOOD: usize = 6000;
const ANSWERS_PER_MESSAGE: usize = 3;

/// The registry stopped answering for good under a drain of 10,000
/// devices: its loop waited for room in the bus's request queue, which
/// only the bus's network task makes, while that task waited for room in
/// the loop's inbox. Publishing through an [`Outbox`] breaks the cycle.
/// (With `bus.publish(..).await` in the loop instead, this test stops at
/// about 1,500 of the 6,000 messages.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_answering_from_its_read_loop_keeps_up_with_a_flood() {
    let p = TestPlatform::start_with(broker::StartOptions { broker_only: true }).await;
    let stop = CancellationToken::new();
    let opts = p.bus_options("flooded-worker").with_credentials("me", "");
    let (bus, mut inbox) = Bus::connect(opts, vec!["flood/in".into()], stop.clone());
    bus.ready(Duration::from_secs(5)).await.unwrap();
    let outbox = Outbox::new(bus.clone());
    let handled = Arc::new(AtomicUsize::new(0));
    let worker = {
        let handled = handled.clone();
        tokio::spawn(async move {
            while let Some(msg) = inbox.recv().await {
                for k in 0..ANSWERS_PER_MESSAGE {
                    outbox
                        .publish(format!("flood/out/{k}"), msg.payload.to_vec())
                        .unwrap();
                }
                handled.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let opts = p.bus_options("flooder").with_credentials("me", "");
    let (flooder, _in) = Bus::connect(opts, Vec::new(), stop.clone());
    flooder.ready(Duration::from_secs(5)).await.unwrap();
    for i in 0..FLOOD {
        flooder
            .publish("flood/in", format!("{i:08}").into_bytes())
            .await
            .unwrap();
    }
    let all = tokio::time::timeout(Duration::from_secs(60), async {
        while handled.load(Ordering::Relaxed) < FLOOD {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let n = handled.load(Ordering::Relaxed);
    stop.cancel();
    worker.abort();
    assert!(
        all.is_ok(),
        "the worker stopped after {n} of {FLOOD} messages"
    );
}
