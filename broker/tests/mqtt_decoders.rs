//! Property tests of the MQTT decoders every listener runs (the vendored
//! rumqttd's, through `Negotiated`, which picks 3.1.1 or 5 per
//! connection): no input makes them panic, and an MQTT 5 PUBLISH with any
//! properties reaches a 3.1.1 client as the same topic and payload, without
//! them. The tests through real sockets are in `tests/it/conformance.rs`
//! and `tests/it/robustness.rs`.

#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use rumqttd::protocol::negotiated::Negotiated;
use rumqttd::protocol::v4::V4;
use rumqttd::protocol::v5::V5;
use rumqttd::protocol::{Packet, Protocol, Publish, PublishProperties};

const MAX: usize = 64 * 1024;

/// A valid MQTT 5 CONNECT, clean start, no properties, client id "p".
fn v5_connect() -> Vec<u8> {
    vec![
        0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 5, 0b10, 0, 30, 0, 0, 1, b'p',
    ]
}

/// Reads packets from `bytes` until the decoder wants more or fails; the
/// packets read.
fn drain(protocol: &mut Negotiated, bytes: &[u8]) -> Vec<Packet> {
    let mut stream = BytesMut::from(bytes);
    let mut packets = Vec::new();
    while let Ok(p) = protocol.read_mut(&mut stream, MAX) {
        packets.push(p);
        if stream.is_empty() {
            break;
        }
    }
    packets
}

fn properties() -> impl Strategy<Value = PublishProperties> {
    (
        proptest::option::of(0u8..=1),
        proptest::option::of(any::<u32>()),
        proptest::collection::vec(("[a-z]{0,8}", "[ -~]{0,16}"), 0..4),
        proptest::option::of("[a-z/]{1,12}"),
        proptest::option::of("[a-z/]{0,12}"),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
    )
        .prop_map(
            |(format, expiry, user, content_type, response_topic, correlation)| PublishProperties {
                payload_format_indicator: format,
                message_expiry_interval: expiry,
                topic_alias: None,
                response_topic,
                correlation_data: correlation.map(Bytes::from),
                user_properties: user,
                subscription_identifiers: Vec::new(),
                content_type,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_as_a_first_packet_decode_or_fail_without_a_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..256)
    ) {
        drain(&mut Negotiated::default(), &bytes);
    }

    #[test]
    fn any_bytes_after_an_mqtt5_connect_decode_or_fail_without_a_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..256)
    ) {
        let mut all = v5_connect();
        all.extend(bytes);
        let mut protocol = Negotiated::default();
        let packets = drain(&mut protocol, &all);
        prop_assert!(matches!(packets.first(), Some(Packet::Connect(..))));
        prop_assert_eq!(protocol.version(), 5);
    }

    #[test]
    fn a_mangled_mqtt5_publish_decodes_or_fails_without_a_panic(
        props in properties(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut publish = BytesMut::new();
        let packet = Packet::Publish(Publish::new(Bytes::from("t/p"), Bytes::from(payload), false), Some(props));
        V5.write(packet, &mut publish).unwrap();
        let mut publish = publish.to_vec();
        for (at, byte) in flips {
            let i = at.index(publish.len());
            publish[i] = byte;
        }
        let mut all = v5_connect();
        all.extend(publish);
        drain(&mut Negotiated::default(), &all);
    }

    #[test]
    fn an_mqtt5_publish_with_any_properties_reaches_311_without_them(
        props in properties(),
        topic in "[a-z]{1,8}(/[a-z]{1,8}){0,3}",
        payload in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut wire = BytesMut::new();
        let sent = Packet::Publish(
            Publish::new(Bytes::from(topic.clone()), Bytes::from(payload.clone()), false),
            Some(props.clone()),
        );
        V5.write(sent, &mut wire).unwrap();
        let mut all = v5_connect();
        all.extend_from_slice(&wire);
        let mut from_v5 = Negotiated::default();
        let packets = drain(&mut from_v5, &all);
        let Some(Packet::Publish(received, received_props)) = packets.get(1).cloned() else {
            panic!("not read back: {packets:?}");
        };
        let user = received_props.as_ref().map(|p| p.user_properties.clone()).unwrap_or_default();
        prop_assert_eq!(&user, &props.user_properties);
        // Forwarded to a 3.1.1 subscriber: written by V4, read by V4.
        let mut out = BytesMut::new();
        V4.write(Packet::Publish(received, received_props), &mut out).unwrap();
        let mut v4 = V4;
        let Packet::Publish(got, None) = v4.read_mut(&mut out, MAX).unwrap() else {
            panic!("not a 3.1.1 PUBLISH");
        };
        prop_assert_eq!(&got.topic[..], topic.as_bytes());
        prop_assert_eq!(&got.payload[..], &payload[..]);
    }
}
