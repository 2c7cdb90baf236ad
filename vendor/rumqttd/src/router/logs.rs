use super::Ack;
use slab::Slab;
// PATCH(platform): warn and debug, for the retained store's limits.
use tracing::{debug, info, trace, warn};

use crate::protocol::{
    matches, ConnAck, ConnAckProperties, PingResp, PubAck, PubComp, PubRec, PubRel, Publish,
    PublishProperties, SubAck, UnsubAck,
};
use crate::router::{DataRequest, FilterIdx, SubscriptionMeter, Waiters};
use crate::{ConnectionId, Filter, Offset, RouterConfig, Topic};

use crate::segments::{CommitLog, Position};
use crate::Storage;
// PATCH(platform): for detach.
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::time::Instant;

type PubWithProp = (Publish, Option<PublishProperties>);

#[derive(Clone)]
pub struct PublishData {
    pub publish: Publish,
    /// PATCH(platform): boxed. MQTT 3.1.1 publishes have none, and inline
    /// they made every stored message 232 bytes before its topic and
    /// payload (96 boxed), which `Storage::size` does not count.
    pub properties: Option<Box<PublishProperties>>,
    pub timestamp: Instant,
}

impl From<PubWithProp> for PublishData {
    fn from((publish, properties): PubWithProp) -> Self {
        PublishData {
            publish,
            properties: properties.map(Box::new),
            timestamp: Instant::now(),
        }
    }
}

/// PATCH(platform): copies a publish's topic and payload into one
/// allocation of their exact size before a log or the retained map keeps
/// it. Decoded, both are slices of the sender's read buffer, so each
/// stored message kept that whole buffer (1 KiB or more, shared with
/// whatever else was read into it) alive until the message left the log,
/// long after its connection closed. In a soak the pinned buffers
/// outweighed the messages.
pub fn detach(publish: &mut Publish) {
    let topic_len = publish.topic.len();
    let mut both = Vec::with_capacity(topic_len + publish.payload.len());
    both.extend_from_slice(&publish.topic);
    both.extend_from_slice(&publish.payload);
    let both = Bytes::from(both);
    publish.topic = both.slice(..topic_len);
    publish.payload = both.slice(topic_len..);
}

/// PATCH(platform): what a retained message costs the retained store: its
/// topic twice (the map's key and the message's own) and its payload.
fn retained_size(topic: &str, publish: &Publish) -> usize {
    topic.len() + publish.topic.len() + publish.payload.len()
}

// TODO: remove this from here
impl Storage for PublishData {
    // TODO: calculate size of publish properties as well!
    fn size(&self) -> usize {
        let publish = &self.publish;
        4 + publish.topic.len() + publish.payload.len()
    }
}

/// Stores 'device' data and 'actions' data in native commitlog
/// organized by subscription filter. Device data is replicated
/// while actions data is not
pub struct DataLog {
    pub config: RouterConfig,
    /// Native commitlog data organized by subscription. Contains
    /// device data and actions data logs.
    ///
    /// Device data is replicated while actions data is not.
    /// Also has waiters used to wake connections/replicator tracker
    /// which are caught up with all the data on 'Filter' and waiting
    /// for new data
    pub native: Slab<Data<PublishData>>,
    /// Map of subscription filter name to filter index
    filter_indexes: HashMap<Filter, FilterIdx>,
    retained_publishes: HashMap<Topic, PublishData>,
    /// PATCH(platform): the bytes `retained_publishes` holds (see
    /// `retained_size`), for `RouterConfig::max_retained_bytes`.
    retained_bytes: usize,
    /// PATCH(platform): a full retained store was reported; reported
    /// again only after it had room.
    retained_full_reported: bool,
    /// List of filters associated with a topic
    publish_filters: HashMap<Topic, Vec<FilterIdx>>,
    /// PATCH(platform): the filters with `+` or `#`. A topic can match
    /// any of these, but of the others only the filter equal to itself, so
    /// a new topic or filter is matched against these few instead of all.
    wildcard_filters: HashMap<Filter, FilterIdx>,
}

fn is_wildcard(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

impl DataLog {
    pub fn new(config: RouterConfig) -> io::Result<DataLog> {
        let mut native = Slab::new();
        let mut filter_indexes = HashMap::new();
        let retained_publishes = HashMap::new();
        let publish_filters = HashMap::new();
        // PATCH(platform): see DataLog::wildcard_filters.
        let mut wildcard_filters = HashMap::new();

        if let Some(warmup_filters) = config.initialized_filters.clone() {
            for filter in warmup_filters {
                let data = Data::new(&filter, &config);

                // Add commitlog to datalog and add datalog index to filter to
                // datalog index map
                let idx = native.insert(data);
                // PATCH(platform): see DataLog::wildcard_filters.
                if is_wildcard(&filter) {
                    wildcard_filters.insert(filter.clone(), idx);
                }
                filter_indexes.insert(filter, idx);
            }
        }

        Ok(DataLog {
            config,
            native,
            publish_filters,
            filter_indexes,
            retained_publishes,
            // PATCH(platform): see DataLog::retained_bytes.
            retained_bytes: 0,
            retained_full_reported: false,
            // PATCH(platform): see DataLog::wildcard_filters.
            wildcard_filters,
        })
    }

    pub fn meter(&mut self, filter: &str) -> Option<&mut SubscriptionMeter> {
        let data = self.native.get_mut(*self.filter_indexes.get(filter)?)?;
        Some(&mut data.meter)
    }

    pub fn waiters(&self, filter: &Filter) -> Option<&Waiters<DataRequest>> {
        self.native
            .get(*self.filter_indexes.get(filter)?)
            .map(|data| &data.waiters)
    }

    pub fn remove_waiters_for_id(
        &mut self,
        id: ConnectionId,
        filter: &Filter,
    ) -> Option<DataRequest> {
        let data = self
            .native
            .get_mut(*self.filter_indexes.get(filter)?)
            .unwrap();
        let waiters = data.waiters.get_mut();

        waiters
            .iter()
            .position(|&(conn_id, _)| conn_id == id)
            .and_then(|index| {
                waiters
                    .swap_remove_back(index)
                    .map(|(_, data_req)| data_req)
            })
    }

    // TODO: Currently returning a Option<Vec> instead of Option<&Vec> due to Rust borrow checker
    // limitation
    pub fn matches(&mut self, topic: &str) -> Option<Vec<usize>> {
        match &self.publish_filters.get(topic) {
            Some(v) => Some(v.to_vec()),
            None => {
                // PATCH(platform): the exact filter plus the wildcard ones,
                // not a scan of every filter (O(devices) per new topic).
                let exact = self
                    .filter_indexes
                    .get(topic)
                    .filter(|_| !is_wildcard(topic))
                    .copied();
                let v: Vec<usize> = exact
                    .into_iter()
                    .chain(
                        self.wildcard_filters
                            .iter()
                            .filter(|(filter, _)| matches(topic, filter))
                            .map(|(_, filter_idx)| *filter_idx),
                    )
                    .collect();

                // PATCH(platform): cache only topics with a filter of their
                // own (freed with it); a topic matched by wildcards alone is
                // re-matched against the few wildcard filters each time,
                // instead of being remembered forever (one per device topic).
                if exact.is_some() {
                    self.publish_filters.insert(topic.to_owned(), v.clone());
                }

                Some(v)
            }
        }
    }

    pub fn next_native_offset(&mut self, filter: &str) -> (FilterIdx, Offset) {
        let publish_filters = &mut self.publish_filters;
        let filter_indexes = &mut self.filter_indexes;

        let (filter_idx, data) = match filter_indexes.get(filter) {
            Some(idx) => (*idx, self.native.get(*idx).unwrap()),
            None => {
                let data = Data::new(filter, &self.config);

                // Add commitlog to datalog and add datalog index to filter to
                // datalog index map
                let idx = self.native.insert(data);
                self.filter_indexes.insert(filter.to_owned(), idx);

                // Match new filter to existing topics and add to publish_filters if it matches
                // PATCH(platform): a filter without wildcards matches only
                // the topic equal to it; skip the scan of every topic.
                if is_wildcard(filter) {
                    self.wildcard_filters.insert(filter.to_owned(), idx);
                    for (topic, filters) in publish_filters.iter_mut() {
                        if matches(topic, filter) {
                            filters.push(idx);
                        }
                    }
                } else if let Some(filters) = publish_filters.get_mut(filter) {
                    filters.push(idx);
                }

                (idx, self.native.get(idx).unwrap())
            }
        };

        (filter_idx, data.log.next_offset())
    }

    pub fn native_readv(
        &self,
        filter_idx: FilterIdx,
        offset: Offset,
        len: u64,
    ) -> io::Result<(Position, Vec<(PubWithProp, Offset)>)> {
        // unwrap to get index of `self.native` is fine here, because when a new subscribe packet
        // arrives in `Router::handle_device_payload`, it first calls the function
        // `next_native_offset` which creates a new commitlog if one doesn't exist. So any new
        // reads will definitely happen on a valid filter.
        let data = self.native.get(filter_idx).unwrap();
        let mut o = Vec::new();
        // TODO: `readv` is infallible but its current return type does not
        // reflect that. Consequently, this method is also infallible.
        // Encoding this information is important so that calling function
        // has more information on how this method behaves.
        let next = data.log.readv(offset, len, &mut o)?;

        let now = Instant::now();
        o.retain_mut(|(pubdata, _)| {
            // Keep data if no properties exists, which implies no message expiry!
            let Some(properties) = pubdata.properties.as_mut() else {
                return true;
            };

            // Keep data if there is no message_expiry_interval
            let Some(message_expiry_interval) = properties.message_expiry_interval.as_mut() else {
                return true;
            };

            let time_spent = (now - pubdata.timestamp).as_secs() as u32;

            let is_valid = time_spent < *message_expiry_interval;

            // ignore expired messages
            if is_valid {
                // set message_expiry_interval to (original value - time spent waiting in server)
                // ref: https://docs.oasis-open.org/mqtt/mqtt/v5.0/os/mqtt-v5.0-os.html#_Toc3901112
                *message_expiry_interval -= time_spent;
            }

            is_valid
        });

        // no need to include timestamp when returning
        // PATCH(platform): properties are boxed in the log (see PublishData).
        let o = o
            .into_iter()
            .map(|(pubdata, offset)| ((pubdata.publish, pubdata.properties.map(|p| *p)), offset))
            .collect();

        Ok((next, o))
    }

    pub fn shadow(&mut self, filter: &str) -> Option<PubWithProp> {
        let data = self.native.get_mut(*self.filter_indexes.get(filter)?)?;
        // PATCH(platform): properties are boxed in the log (see PublishData).
        data.log
            .last()
            .map(|p| (p.publish, p.properties.map(|p| *p)))
    }

    /// This method is called when the subscriber has caught up with the commit log. In which case,
    /// instead of actively checking for commits in each `Router::run_inner` iteration, we instead
    /// wait and only try reading again when new messages have been added to the commit log. This
    /// methods converts a `DataRequest` (which actively reads the commit log in `Router::consume`)
    /// to a `Waiter` (which only reads when notified).
    pub fn park(&mut self, id: ConnectionId, request: DataRequest) {
        // calling unwrap on index here is fine, because only place this function is called is in
        // `Router::consume` method, when the status after reading from commit log of the same
        // filter as `request` is "done", that is, the subscriber has caught up. In other words,
        // there has been atleast 1 call to `native_readv` for the same filter, which means if
        // `native_readv` hasn't paniced, so this won't panic either.
        let data = self.native.get_mut(request.filter_idx).unwrap();
        data.waiters.register(id, request);
    }

    /// Cleanup a connection from all the waiters
    pub fn clean(&mut self, id: ConnectionId) -> Vec<DataRequest> {
        let mut inflight = Vec::new();
        for (_, data) in self.native.iter_mut() {
            inflight.append(&mut data.waiters.remove(id));
        }

        inflight
    }

    /// PATCH(platform): [`DataLog::clean`] limited to `filters`.
    pub fn clean_filters<'a>(
        &mut self,
        id: ConnectionId,
        filters: impl Iterator<Item = &'a Filter>,
    ) -> Vec<DataRequest> {
        let mut inflight = Vec::new();
        for filter in filters {
            let Some(idx) = self.filter_indexes.get(filter) else {
                continue;
            };
            if let Some(data) = self.native.get_mut(*idx) {
                inflight.append(&mut data.waiters.remove(id));
            }
        }
        inflight
    }

    /// PATCH(platform): drops the log of a filter nobody subscribes to any
    /// more (the router checks that, and that no persistent session or
    /// shared group could refer to it). Upstream keeps every filter's log,
    /// waiters and cached topic match forever: with per-device filters that
    /// is ~14 KB per device ever connected. Wildcard filters are kept.
    pub fn free_filter(&mut self, filter: &str) {
        if is_wildcard(filter) {
            return;
        }
        if let Some(idx) = self.filter_indexes.remove(filter) {
            self.native.try_remove(idx);
        }
        self.publish_filters.remove(filter);
    }

    /// PATCH(platform): a message that would take the store over
    /// `max_retained_count` or `max_retained_bytes` is not retained (it is
    /// still delivered), and the older one on its topic is dropped, so
    /// that a new subscriber never gets a message older than the last one
    /// retained there. Upstream kept every retained topic forever.
    pub fn insert_to_retained_publishes(
        &mut self,
        publish: Publish,
        publish_properties: Option<PublishProperties>,
        topic: Topic,
    ) {
        let size = retained_size(&topic, &publish);
        let old = self
            .retained_publishes
            .get(&topic)
            .map(|p| retained_size(&topic, &p.publish));
        let count = self.retained_publishes.len() + usize::from(old.is_none());
        let bytes = self.retained_bytes - old.unwrap_or(0) + size;
        let over_count = self
            .config
            .max_retained_count
            .is_some_and(|max| count > max);
        let over_bytes = self
            .config
            .max_retained_bytes
            .is_some_and(|max| bytes > max);
        if over_count || over_bytes {
            if self.retained_full_reported {
                debug!(topic, "retained store full: not retained");
            } else {
                self.retained_full_reported = true;
                warn!(
                    topic,
                    retained = self.retained_publishes.len(),
                    retained_bytes = self.retained_bytes,
                    max_retained_count = self.config.max_retained_count,
                    max_retained_bytes = self.config.max_retained_bytes,
                    "retained store full: a retained message was delivered but not retained"
                );
            }
            self.remove_from_retained_publishes(topic);
            return;
        }
        let pub_with_props = (publish, publish_properties);
        self.retained_publishes.insert(topic, pub_with_props.into());
        self.retained_bytes = bytes;
    }

    pub fn remove_from_retained_publishes(&mut self, topic: Topic) {
        // PATCH(platform): keeps DataLog::retained_bytes.
        if let Some(p) = self.retained_publishes.remove(&topic) {
            self.retained_bytes -= retained_size(&topic, &p.publish);
            self.retained_full_reported = false;
        }
    }

    /// PATCH(platform): how many retained messages are kept.
    pub fn retained_count(&self) -> usize {
        self.retained_publishes.len()
    }

    pub fn read_retained_messages(&mut self, filter: &str) -> Vec<PubWithProp> {
        trace!(info = "reading retain msg", filter = &filter);
        let now = Instant::now();

        // discard expired retained messages
        // PATCH(platform): keeping DataLog::retained_bytes.
        let mut expired = 0;
        self.retained_publishes.retain(|topic, pubdata| {
            // Keep data if no properties exists, which implies no message expiry!
            let Some(properties) = pubdata.properties.as_mut() else {
                return true;
            };

            // Keep data if there is no message_expiry_interval
            let Some(message_expiry_interval) = properties.message_expiry_interval.as_mut() else {
                return true;
            };

            let time_spent = (now - pubdata.timestamp).as_secs() as u32;

            let is_valid = time_spent < *message_expiry_interval;

            // ignore expired messages
            if is_valid {
                // set message_expiry_interval to (original value - time spent waiting in server)
                // ref: https://docs.oasis-open.org/mqtt/mqtt/v5.0/os/mqtt-v5.0-os.html#_Toc3901112
                *message_expiry_interval -= time_spent;
            } else {
                // PATCH(platform): see above.
                expired += retained_size(topic, &pubdata.publish);
            }

            is_valid
        });
        // PATCH(platform): see above.
        if expired > 0 {
            self.retained_bytes -= expired;
            self.retained_full_reported = false;
        }

        // no need to include timestamp when returning
        self.retained_publishes
            .iter()
            .filter(|(topic, _)| matches(topic, filter))
            // PATCH(platform): properties are boxed (see PublishData).
            .map(|(_, p)| (p.publish.clone(), p.properties.as_deref().cloned()))
            .collect()
    }
}

pub struct Data<T> {
    filter: Filter,
    pub log: CommitLog<T>,
    pub waiters: Waiters<DataRequest>,
    meter: SubscriptionMeter,
}

impl<T> Data<T>
where
    T: Storage + Clone,
{
    pub fn new(filter: &str, router_config: &RouterConfig) -> Data<T> {
        let mut max_segment_size = router_config.max_segment_size;
        let mut max_mem_segments = router_config.max_segment_count;

        // Override segment config for selected filter
        if let Some(config) = &router_config.custom_segment {
            for (f, segment_config) in config {
                if matches(filter, f) {
                    info!("Overriding segment config for filter: {}", filter);
                    max_segment_size = segment_config.max_segment_size;
                    max_mem_segments = segment_config.max_segment_count;
                }
            }
        }

        // max_segment_size: usize, max_mem_segments: usize
        let log = CommitLog::new(max_segment_size, max_mem_segments).unwrap();

        // PATCH(platform): no room reserved; most filters have one waiter.
        let waiters = Waiters::with_capacity(0);
        let metrics = SubscriptionMeter::default();
        Data {
            filter: filter.to_owned(),
            log,
            waiters,
            meter: metrics,
        }
    }

    /// Writes to all the filters that are mapped to this publish topic
    /// and wakes up consumers that are matching this topic (if they exist)
    pub fn append(
        &mut self,
        item: T,
        notifications: &mut VecDeque<(ConnectionId, DataRequest)>,
    ) -> (Offset, &Filter) {
        let size = item.size();
        let offset = self.log.append(item);
        if let Some(mut parked) = self.waiters.take() {
            notifications.append(&mut parked);
        }

        self.meter.count += 1;
        self.meter.total_size += size;

        (offset, &self.filter)
    }
}

/// Acks log for a subscription
#[derive(Debug)]
pub struct AckLog {
    // Committed acks per connection. First pkid, last pkid, data
    committed: VecDeque<Ack>,
    // Recorded qos 2 publishes
    recorded: VecDeque<(Publish, Option<PublishProperties>)>,
}

impl AckLog {
    /// New log
    pub fn new() -> AckLog {
        AckLog {
            // PATCH(platform): grow on demand rather than ~30 KB per connection.
            committed: VecDeque::with_capacity(4),
            recorded: VecDeque::new(),
        }
    }

    pub fn connack(&mut self, id: ConnectionId, ack: ConnAck, props: Option<ConnAckProperties>) {
        let ack = Ack::ConnAck(id, ack, props);
        self.committed.push_back(ack);
    }

    pub fn suback(&mut self, ack: SubAck) {
        let ack = Ack::SubAck(ack);
        self.committed.push_back(ack);
    }

    pub fn puback(&mut self, ack: PubAck) {
        let ack = Ack::PubAck(ack);
        self.committed.push_back(ack);
    }

    pub fn pubrec(&mut self, publish: Publish, props: Option<PublishProperties>, ack: PubRec) {
        let ack = Ack::PubRec(ack);
        self.recorded.push_back((publish, props));
        self.committed.push_back(ack);
    }

    pub fn pubrel(&mut self, ack: PubRel) {
        let ack = Ack::PubRel(ack);
        self.committed.push_back(ack);
    }

    pub fn pubcomp(&mut self, ack: PubComp) -> Option<(Publish, Option<PublishProperties>)> {
        let ack = Ack::PubComp(ack);
        self.committed.push_back(ack);
        self.recorded.pop_front()
    }

    pub fn pingresp(&mut self, ack: PingResp) {
        let ack = Ack::PingResp(ack);
        self.committed.push_back(ack);
    }

    pub fn unsuback(&mut self, ack: UnsubAck) {
        let ack = Ack::UnsubAck(ack);
        self.committed.push_back(ack);
    }

    pub fn readv(&mut self) -> &mut VecDeque<Ack> {
        &mut self.committed
    }
}

#[cfg(test)]
mod test {
    use super::{detach, DataLog};
    use crate::protocol::Publish;
    use crate::router::shared_subs::Strategy;
    use crate::RouterConfig;
    use bytes::Bytes;

    // PATCH(platform)
    #[test]
    fn the_retained_store_keeps_to_its_limits() {
        let config = RouterConfig {
            max_segment_size: 1024,
            max_connections: 10,
            max_segment_count: 10,
            max_outgoing_packet_count: 1024,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Strategy::RoundRobin,
            max_retained_count: Some(3),
            max_retained_bytes: Some(100),
            on_lagged: Default::default(),
        };
        let mut data = DataLog::new(config).unwrap();
        let retain = |data: &mut DataLog, topic: &str, payload: &[u8]| {
            let publish = Publish::new(
                Bytes::copy_from_slice(topic.as_bytes()),
                Bytes::copy_from_slice(payload),
                true,
            );
            data.insert_to_retained_publishes(publish, None, topic.to_owned());
        };
        for t in ["a/1", "a/2", "a/3"] {
            retain(&mut data, t, b"x");
        }
        assert_eq!(data.retained_count(), 3);
        // A fourth topic is over the count; replacing one is not.
        retain(&mut data, "a/4", b"x");
        assert_eq!(data.retained_count(), 3);
        assert!(data.read_retained_messages("a/4").is_empty());
        retain(&mut data, "a/1", b"y");
        assert_eq!(data.read_retained_messages("a/1")[0].0.payload, &b"y"[..]);
        // Over the bytes: not retained, and the older message is dropped.
        retain(&mut data, "a/2", &[0; 100]);
        assert_eq!(data.retained_count(), 2);
        assert!(data.read_retained_messages("a/2").is_empty());
        // Removing makes room again, and the byte count follows.
        data.remove_from_retained_publishes("a/1".to_owned());
        data.remove_from_retained_publishes("a/3".to_owned());
        assert_eq!(data.retained_bytes, 0);
        retain(&mut data, "b", &[0; 98]);
        assert_eq!(data.retained_bytes, 100);
        assert_eq!(data.retained_count(), 1);
    }

    // PATCH(platform)
    #[test]
    fn a_stored_publish_keeps_no_part_of_the_read_buffer() {
        let read = Bytes::from(b"device/a/presence{\"online\":true} and more".to_vec());
        let mut publish = Publish::new(read.slice(..17), read.slice(17..32), false);
        detach(&mut publish);
        assert_eq!(&publish.topic[..], b"device/a/presence");
        assert_eq!(&publish.payload[..], b"{\"online\":true}");
        let buffer = read.as_ptr_range();
        assert!(!buffer.contains(&publish.topic.as_ptr()));
        assert!(!buffer.contains(&publish.payload.as_ptr()));
    }

    #[test]
    fn publish_filters_updating_correctly_on_new_topic_subscription() {
        let config = RouterConfig {
            max_segment_size: 1024,
            max_connections: 10,
            max_segment_count: 10,
            max_outgoing_packet_count: 1024,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Strategy::RoundRobin,
            // PATCH(platform): the retained store's limits; none here.
            max_retained_count: None,
            // PATCH(platform): the new field.
            on_lagged: Default::default(),
            max_retained_bytes: None,
        };
        let mut data = DataLog::new(config).unwrap();
        data.next_native_offset("topic/a");
        data.matches("topic/a");

        data.next_native_offset("topic/+");

        assert_eq!(data.publish_filters.get("topic/a").unwrap().len(), 2);
    }

    #[test]
    fn publish_filters_updating_correctly_on_new_publish() {
        let config = RouterConfig {
            max_segment_size: 1024,
            max_connections: 10,
            max_segment_count: 10,
            max_outgoing_packet_count: 1024,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Strategy::RoundRobin,
            // PATCH(platform): the retained store's limits; none here.
            max_retained_count: None,
            // PATCH(platform): the new field.
            on_lagged: Default::default(),
            max_retained_bytes: None,
        };
        let mut data = DataLog::new(config).unwrap();
        data.next_native_offset("+/+");

        // PATCH(platform): a topic matched by wildcard filters alone is
        // matched, but not cached (see DataLog::matches).
        assert_eq!(data.matches("topic/a").unwrap().len(), 1);
        assert!(data.publish_filters.get("topic/a").is_none());
    }

    //     #[test]
    //     fn appends_are_written_to_correct_commitlog() {
    //         pretty_env_logger::init();
    //         let config = RouterConfig {
    //             instant_ack: true,
    //             max_segment_size: 1024,
    //             max_connections: 10,
    //             max_mem_segments: 10,
    //             max_disk_segments: 0,
    //             max_read_len: 1024,
    //             log_dir: None,
    //             dynamic_log: true,
    //         };

    //         let mut data = DataLog::new(config).unwrap();
    //         data.next_native_offset("/devices/2321/actions");
    //         for i in 0..2 {
    //             let publish = Publish::new("/devices/2321/events/imu/jsonarray", QoS::AtLeastOnce, vec![1, 2, 3]);
    //             let v = data.native_append(publish);
    //             dbg!(v);
    //         }

    //         for i in 0..2 {
    //             let publish = Publish::new("/devices/2321/actions", QoS::AtLeastOnce, vec![1, 2, 3]);
    //             let v = data.native_append(publish);
    //             dbg!(v);
    //         }
    //     }
}
