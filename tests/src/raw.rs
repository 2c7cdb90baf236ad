//! MQTT packets written byte by byte, for tests that must control every
//! byte a client sends: hostile input, and the spec clauses a stock client
//! library would not let a test break.

/// MQTT's variable-length "remaining length".
pub fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return out;
        }
    }
}

pub fn put_str(buf: &mut Vec<u8>, s: &[u8]) {
    buf.extend_from_slice(&(s.len() as u16).to_be_bytes());
    buf.extend_from_slice(s);
}

pub fn packet(header: u8, body: Vec<u8>) -> Vec<u8> {
    let mut p = vec![header];
    p.extend(varint(body.len()));
    p.extend(body);
    p
}

/// A CONNECT with every knob the attacks turn.
#[derive(Clone, Copy)]
pub struct Connect<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    pub level: u8,
    pub clean_session: bool,
    pub keep_alive: u16,
    /// A last will: topic and payload, QoS 0.
    pub will: Option<(&'a str, &'a [u8])>,
    /// The last will's retain flag.
    pub will_retain: bool,
}

impl<'a> Connect<'a> {
    /// MQTT 3.1.1, clean session, keep alive 30 s, username "me".
    pub fn v4(client_id: &'a str) -> Self {
        Connect {
            client_id,
            username: Some("me"),
            password: None,
            level: 4,
            clean_session: true,
            keep_alive: 30,
            will: None,
            will_retain: false,
        }
    }

    pub fn packet(&self) -> Vec<u8> {
        let mut flags = 0u8;
        if self.username.is_some() {
            flags |= 0b1000_0000;
        }
        if self.password.is_some() {
            flags |= 0b0100_0000;
        }
        if self.will.is_some() {
            flags |= 0b0000_0100;
        }
        if self.will_retain {
            flags |= 0b0010_0000;
        }
        if self.clean_session {
            flags |= 0b0000_0010;
        }
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', self.level, flags];
        body.extend_from_slice(&self.keep_alive.to_be_bytes());
        if self.level == 5 {
            // Properties: session expiry 60 s, receive maximum 10, a user
            // property.
            let props = [
                &[0x11, 0, 0, 0, 60][..],
                &[0x21, 0, 10],
                &[0x26, 0, 1, b'k', 0, 1, b'v'],
            ]
            .concat();
            body.extend(varint(props.len()));
            body.extend(props);
        }
        put_str(&mut body, self.client_id.as_bytes());
        if let Some((topic, payload)) = self.will {
            if self.level == 5 {
                body.push(0); // will properties: none
            }
            put_str(&mut body, topic.as_bytes());
            put_str(&mut body, payload);
        }
        if let Some(username) = self.username {
            put_str(&mut body, username.as_bytes());
        }
        if let Some(password) = self.password {
            put_str(&mut body, password);
        }
        packet(0x10, body)
    }
}

/// An MQTT 5 PUBLISH (QoS 0) with properties: payload format, topic
/// alias, content type and a user property. On a 3.1.1 listener the
/// property bytes read as the start of the payload.
pub fn v5_publish(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, topic.as_bytes());
    let props = [
        &[0x01, 1][..],
        &[0x23, 0, 7],
        &[0x03, 0, 4],
        b"text",
        &[0x26, 0, 1, b'k', 0, 1, b'v'],
    ]
    .concat();
    body.extend(varint(props.len()));
    body.extend(props);
    body.extend_from_slice(payload);
    packet(0x30, body)
}

/// Reads one whole packet: its first byte and its body (the bytes after
/// the remaining length).
pub fn read_packet(s: &mut impl std::io::Read) -> std::io::Result<(u8, Vec<u8>)> {
    let mut first = [0u8; 1];
    s.read_exact(&mut first)?;
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let mut b = [0u8; 1];
        s.read_exact(&mut b)?;
        len |= usize::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            return Err(std::io::Error::other("remaining length over 4 bytes"));
        }
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok((first[0], body))
}

/// A SUBSCRIBE (3.1.1 framing; for MQTT 5 `props` is `Some` and written,
/// empty or not) of one filter at `qos`, packet id `pkid`.
pub fn subscribe(pkid: u16, filter: &str, qos: u8, props: Option<&[u8]>) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if let Some(props) = props {
        body.extend(varint(props.len()));
        body.extend_from_slice(props);
    }
    put_str(&mut body, filter.as_bytes());
    body.push(qos);
    packet(0x82, body)
}

/// A 3.1.1 PUBLISH at QoS 0.
pub fn publish(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, topic.as_bytes());
    body.extend_from_slice(payload);
    packet(0x30, body)
}

/// The parts of an MQTT 5 DISCONNECT or CONNACK's properties a test looks
/// at: the Server Reference and the user properties.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct V5Props {
    pub server_reference: Option<String>,
    pub user_properties: Vec<(String, String)>,
}

/// Decodes MQTT 5 properties (`bytes` starts at their length), keeping
/// [`V5Props`]' and skipping the rest; None if malformed.
pub fn v5_props(bytes: &[u8]) -> Option<V5Props> {
    fn string(b: &[u8], i: &mut usize) -> Option<String> {
        let len = usize::from(u16::from_be_bytes([*b.get(*i)?, *b.get(*i + 1)?]));
        let s = b.get(*i + 2..*i + 2 + len)?;
        *i += 2 + len;
        String::from_utf8(s.to_vec()).ok()
    }
    let (mut len, mut i, mut shift) = (0usize, 0usize, 0);
    loop {
        let b = *bytes.get(i)?;
        i += 1;
        len |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let end = i + len;
    let mut props = V5Props::default();
    while i < end {
        let id = *bytes.get(i)?;
        i += 1;
        match id {
            0x1C => props.server_reference = Some(string(bytes, &mut i)?),
            0x26 => {
                let k = string(bytes, &mut i)?;
                let v = string(bytes, &mut i)?;
                props.user_properties.push((k, v));
            }
            0x1F | 0x12 | 0x1A | 0x15 => {
                string(bytes, &mut i)?;
            }
            0x11 | 0x27 => i += 4,
            0x21 | 0x22 | 0x13 => i += 2,
            0x24 | 0x25 | 0x28 | 0x29 | 0x2A => i += 1,
            _ => return None,
        }
    }
    Some(props)
}

/// An MQTT 5 CONNECT as `client_id`, clean start, keep alive 30 s, no
/// login, with `props` as its properties (empty: none).
pub fn v5_connect(client_id: &str, props: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0b0000_0010, 0, 30];
    body.extend(varint(props.len()));
    body.extend_from_slice(props);
    put_str(&mut body, client_id.as_bytes());
    packet(0x10, body)
}
