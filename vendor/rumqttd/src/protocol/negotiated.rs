//! PATCH(platform): a listener that speaks MQTT 3.1.1 and MQTT 5, each
//! client in the version its CONNECT names.
//!
//! Upstream binds one protocol to a listener: a v4 listener drops a v5
//! CONNECT (and a 3.1 one) without a CONNACK, and a v5 listener refuses
//! 3.1.1 clients. [`Negotiated`] reads the protocol level of the first
//! CONNECT and then reads and writes every packet of the connection with
//! [`V4`] or [`V5`]. A CONNECT with any other level is an
//! [`Error::InvalidProtocolLevel`], which the link answers with CONNACK 1
//! (unacceptable protocol version) in the 3.1.1 format, as 3.1.1
//! §3.1.2.2 asks and as an MQTT 3.1 client can read.

use bytes::BytesMut;

use super::v4::V4;
use super::v5::V5;
use super::{Error, Packet, Protocol};

/// The version a connection negotiated: 3.1.1 until its CONNECT says 5.
#[derive(Debug, Clone, Copy, Default)]
pub struct Negotiated {
    v5: bool,
    decided: bool,
}

impl Negotiated {
    /// The protocol level of the CONNECT at the start of `stream`, as
    /// soon as its first bytes are there (the fixed header is the same in
    /// both versions; then 2 bytes of name length, the name, the level),
    /// so that a CONNECT too large to read is still refused in its own
    /// version. A first packet that is not a CONNECT reads as 3.1.1, which
    /// rejects it.
    fn level(stream: &BytesMut) -> Result<u8, Error> {
        let Some(first) = stream.first() else {
            return Err(Error::InsufficientBytes(2));
        };
        if first >> 4 != 1 {
            return Ok(4);
        }
        let mut header_len = 1;
        loop {
            let Some(byte) = stream.get(header_len) else {
                return Err(Error::InsufficientBytes(1));
            };
            header_len += 1;
            if byte & 0x80 == 0 {
                break;
            }
            if header_len > 4 {
                return Err(Error::MalformedRemainingLength);
            }
        }
        let body = &stream[header_len..];
        if body.len() < 2 {
            return Err(Error::InsufficientBytes(2 - body.len()));
        }
        let name_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
        match body.get(2 + name_len) {
            Some(level) => Ok(*level),
            None => Err(Error::InsufficientBytes(2 + name_len + 1 - body.len())),
        }
    }
}

impl Protocol for Negotiated {
    fn read_mut(&mut self, stream: &mut BytesMut, max_size: usize) -> Result<Packet, Error> {
        if !self.decided {
            match Self::level(stream)? {
                4 => {}
                5 => self.v5 = true,
                level => return Err(Error::InvalidProtocolLevel(level)),
            }
            self.decided = true;
        }
        if self.v5 {
            V5.read_mut(stream, max_size)
        } else {
            V4.read_mut(stream, max_size)
        }
    }

    fn write(&self, packet: Packet, write: &mut BytesMut) -> Result<usize, Error> {
        if self.v5 {
            V5.write(packet, write)
        } else {
            V4.write(packet, write)
        }
    }

    fn version(&self) -> u8 {
        if self.v5 {
            5
        } else {
            4
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(level: u8) -> BytesMut {
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, 0b10, 0, 30];
        if level == 5 {
            body.push(0);
        }
        body.extend_from_slice(&[0, 1, b'c']);
        let mut packet = vec![0x10, body.len() as u8];
        packet.extend(body);
        BytesMut::from(&packet[..])
    }

    #[test]
    fn the_connect_picks_the_version_of_the_connection() {
        for (level, version) in [(4, 4), (5, 5)] {
            let mut p = Negotiated::default();
            let packet = p.read_mut(&mut connect(level), 1024).unwrap();
            assert!(matches!(packet, Packet::Connect(..)));
            assert_eq!(p.version(), version);
        }
        for level in [3, 6, 0] {
            let mut p = Negotiated::default();
            let e = p.read_mut(&mut connect(level), 1024).unwrap_err();
            assert!(
                matches!(e, Error::InvalidProtocolLevel(l) if l == level),
                "{e:?}"
            );
        }
    }

    #[test]
    fn a_connect_arriving_a_byte_at_a_time_waits_for_its_level() {
        let whole = connect(5);
        let mut p = Negotiated::default();
        for n in 0..8 {
            let mut part = BytesMut::from(&whole[..n]);
            assert!(matches!(
                p.read_mut(&mut part, 1024),
                Err(Error::InsufficientBytes(_))
            ));
        }
        // A CONNECT over the size limit is already MQTT 5 when refused.
        let mut big =
            BytesMut::from(&[0x10, 0xff, 0xff, 0x03, 0, 4, b'M', b'Q', b'T', b'T', 5][..]);
        let e = p.read_mut(&mut big, 1024).unwrap_err();
        assert!(matches!(e, Error::PayloadSizeLimitExceeded(_)), "{e:?}");
        assert_eq!(p.version(), 5);
    }
}
