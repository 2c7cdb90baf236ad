//! Every cryptographic operation whose output crosses the wire, in one
//! place, so the envelope formats have one owner (see docs/SECURITY.md).
//!
//! - **Onboarding**: SPAKE2 (Ed25519 group) between the device and the AP,
//!   keyed by pass_tmp. Neither side sends pass_tmp or anything an
//!   eavesdropper could test a guess of pass_tmp against; an active
//!   attacker gets one guess per handshake. The shared key, bound to a
//!   fresh session id, gives the device's proof (the AP's comparison) and
//!   the key that seals the Wi-Fi password.
//! - **pass_tmp to the AP**: sealed to a key only that AP holds (X25519,
//!   HKDF-SHA256, ChaCha20-Poly1305).
//! - **Platform signatures**: Ed25519 over a domain-separated, length-
//!   prefixed list of fields (registry answers, verifier answers).
//!
//! Binary values travel as unpadded URL-safe base64; keys as hex.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use spake2::{Ed25519Group, Identity, Password, Spake2};
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey as XPublic, StaticSecret};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("{0} is not valid base64")]
    Base64(&'static str),
    #[error("{0} is not a valid key")]
    Key(&'static str),
    #[error("bad signature")]
    Signature,
    #[error("the handshake failed: {0}")]
    Handshake(String),
    #[error("cannot open the sealed value: wrong key or tampered")]
    Open,
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(text: &str, what: &'static str) -> Result<Vec<u8>, CryptoError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| CryptoError::Base64(what))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(text: &str, what: &'static str) -> Result<[u8; 32], CryptoError> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return Err(CryptoError::Key(what));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte =
            u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| CryptoError::Key(what))?;
    }
    Ok(out)
}

/// `n` fresh random bytes from the OS, base64.
pub fn random_b64(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    OsRng.fill_bytes(&mut bytes);
    b64(&bytes)
}

/// A device's MQTT password on the platform broker in secure mode: an
/// HMAC of its id keyed by pass_tmp. MQTT subscribers never see a CONNECT,
/// so this is exposed only to someone on the network path (see
/// docs/SECURITY.md: run TLS or a trusted network there).
pub fn device_login(uuid: &str, pass_tmp: &str) -> String {
    match <Hmac<Sha256> as Mac>::new_from_slice(pass_tmp.as_bytes()) {
        Ok(mut mac) => {
            mac.update(b"iot-platform/v1/mqtt-login/");
            mac.update(uuid.as_bytes());
            b64(&mac.finalize().into_bytes())
        }
        Err(_) => random_b64(32),
    }
}

/// Constant-time equality of two strings.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// SHA-256 of a secret, hex: how configs store passwords.
pub fn sha256_hex(secret: &str) -> String {
    use sha2::Digest;
    hex(&Sha256::digest(secret.as_bytes()))
}

/// The signed message: a domain, then each field length-prefixed, so no
/// two different field lists share an encoding.
fn canonical(domain: &str, fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"iot-platform/v1/");
    out.extend_from_slice(domain.as_bytes());
    for f in fields {
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// The platform's signing key (registry and verifier answers).
pub struct PlatformKey(SigningKey);

impl std::fmt::Debug for PlatformKey {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PlatformKey(public {})", self.public().to_hex())
    }
}

impl PlatformKey {
    pub fn generate() -> Self {
        PlatformKey(SigningKey::generate(&mut OsRng))
    }

    /// From the 32-byte seed, as 64 hex digits.
    pub fn from_seed_hex(text: &str) -> Result<Self, CryptoError> {
        Ok(PlatformKey(SigningKey::from_bytes(&unhex32(
            text,
            "the platform key",
        )?)))
    }

    pub fn seed_hex(&self) -> String {
        hex(self.0.as_bytes())
    }

    pub fn public(&self) -> PlatformPublicKey {
        PlatformPublicKey(self.0.verifying_key())
    }

    pub fn sign(&self, domain: &str, fields: &[&[u8]]) -> String {
        b64(&self.0.sign(&canonical(domain, fields)).to_bytes())
    }
}

/// What devices, APs and gateways are configured with to check the
/// platform's signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlatformPublicKey(VerifyingKey);

impl PlatformPublicKey {
    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        VerifyingKey::from_bytes(&unhex32(text, "the platform public key")?)
            .map(PlatformPublicKey)
            .map_err(|_| CryptoError::Key("the platform public key"))
    }

    pub fn to_hex(&self) -> String {
        hex(self.0.as_bytes())
    }

    pub fn verify(&self, domain: &str, fields: &[&[u8]], sig_b64: &str) -> Result<(), CryptoError> {
        let bytes = unb64(sig_b64, "the signature")?;
        let sig = Signature::from_slice(&bytes).map_err(|_| CryptoError::Signature)?;
        self.0
            .verify(&canonical(domain, fields), &sig)
            .map_err(|_| CryptoError::Signature)
    }
}

fn hkdf32(ikm: &[u8], salt: &[u8], info: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 8,160-byte limit: cannot fail.
    let _ = Hkdf::<Sha256>::new(Some(salt), ikm).expand(info, &mut out);
    out
}

fn seal_with(key: &[u8; 32], nonce: &[u8; 12], plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    let mut out = nonce.to_vec();
    // Encryption fails only for inputs over 256 GiB.
    if let Ok(ct) = cipher.encrypt(
        Nonce::from_slice(nonce),
        Payload {
            msg: plaintext,
            aad,
        },
    ) {
        out.extend_from_slice(&ct);
    }
    out
}

fn open_with(key: &[u8; 32], sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < 12 + 16 {
        return Err(CryptoError::Open);
    }
    let (nonce, ct) = sealed.split_at(12);
    ChaCha20Poly1305::new(Key::from_slice(key))
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .map_err(|_| CryptoError::Open)
}

fn spake_ids(uuid: &str, ssid: &str) -> (Identity, Identity) {
    (
        Identity::new(format!("device:{uuid}").as_bytes()),
        Identity::new(format!("ssid:{ssid}").as_bytes()),
    )
}

/// The device's half of the onboarding handshake, between its access
/// request and the AP's challenge.
pub struct DeviceHandshake {
    state: Spake2<Ed25519Group>,
}

impl DeviceHandshake {
    /// Starts a handshake; the returned message (base64) goes in the
    /// access request.
    pub fn start(uuid: &str, ssid: &str, pass_tmp: &str) -> (Self, String) {
        let (a, b) = spake_ids(uuid, ssid);
        let (state, msg) = Spake2::<Ed25519Group>::start_a(&Password::new(pass_tmp), &a, &b);
        (DeviceHandshake { state }, b64(&msg))
    }

    /// Finishes with the AP's message and session id from its challenge.
    pub fn finish(self, ap_msg_b64: &str, session_b64: &str) -> Result<SessionKeys, CryptoError> {
        let msg = unb64(ap_msg_b64, "the AP's handshake message")?;
        let session = unb64(session_b64, "the session id")?;
        let key = self
            .state
            .finish(&msg)
            .map_err(|e| CryptoError::Handshake(e.to_string()))?;
        Ok(SessionKeys::derive(&key, &session))
    }
}

/// Names one handshake: the first 12 bytes of SHA-256 of the device's
/// message, base64. The AP's challenge carries it, so a device that has
/// started a new handshake (its access request went unanswered, say
/// across a platform restart) ignores a late challenge to the old one
/// instead of answering it with the wrong key.
pub fn handshake_tag(device_msg_b64: &str) -> String {
    use sha2::Digest;
    b64(&Sha256::digest(device_msg_b64.as_bytes())[..12])
}

/// The AP's half: with pass_tmp from the verifier and the device's
/// message, the keys and the AP's message for the challenge.
pub fn ap_handshake(
    uuid: &str,
    ssid: &str,
    pass_tmp: &str,
    device_msg_b64: &str,
    session_b64: &str,
) -> Result<(SessionKeys, String), CryptoError> {
    let device_msg = unb64(device_msg_b64, "the device's handshake message")?;
    let session = unb64(session_b64, "the session id")?;
    let (a, b) = spake_ids(uuid, ssid);
    let (state, msg) = Spake2::<Ed25519Group>::start_b(&Password::new(pass_tmp), &a, &b);
    let key = state
        .finish(&device_msg)
        .map_err(|e| CryptoError::Handshake(e.to_string()))?;
    Ok((SessionKeys::derive(&key, &session), b64(&msg)))
}

/// Keys both sides derive from one handshake. Equal on both sides only if
/// both used the same pass_tmp.
pub struct SessionKeys {
    proof: [u8; 32],
    seal: [u8; 32],
}

impl SessionKeys {
    fn derive(shared: &[u8], session: &[u8]) -> Self {
        SessionKeys {
            proof: hkdf32(shared, session, b"iot-platform/v1/device-proof"),
            seal: hkdf32(shared, session, b"iot-platform/v1/wifi-seal"),
        }
    }

    /// The device's proof that it holds pass_tmp (base64).
    pub fn device_proof(&self) -> String {
        match <Hmac<Sha256> as Mac>::new_from_slice(&self.proof) {
            Ok(mut mac) => {
                mac.update(b"device");
                b64(&mac.finalize().into_bytes())
            }
            // HMAC takes keys of any length; were it ever to fail, a random
            // proof matches nothing.
            Err(_) => random_b64(32),
        }
    }

    /// The AP's comparison: does the device's proof match ours?
    pub fn check_device_proof(&self, proof_b64: &str) -> bool {
        let Ok(theirs) = unb64(proof_b64, "the proof") else {
            return false;
        };
        let ours = unb64(&self.device_proof(), "the proof").unwrap_or_default();
        ours.len() == theirs.len() && bool::from(ours.ct_eq(&theirs))
    }

    /// Seals the Wi-Fi password for the device; `aad` binds the context.
    pub fn seal_password(&self, password: &str, aad: &[u8]) -> String {
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        b64(&seal_with(&self.seal, &nonce, password.as_bytes(), aad))
    }

    pub fn open_password(&self, sealed_b64: &str, aad: &[u8]) -> Result<String, CryptoError> {
        let sealed = unb64(sealed_b64, "the sealed password")?;
        String::from_utf8(open_with(&self.seal, &sealed, aad)?).map_err(|_| CryptoError::Open)
    }
}

/// An AP's key for receiving pass_tmp from the verifier. One per AP
/// process; only the public half is ever sent.
pub struct ApKey(StaticSecret);

impl ApKey {
    pub fn generate() -> Self {
        ApKey(StaticSecret::random_from_rng(OsRng))
    }

    pub fn public_b64(&self) -> String {
        b64(XPublic::from(&self.0).as_bytes())
    }

    /// Opens what [`seal_to_ap`] sealed to this key.
    pub fn open(&self, sealed_b64: &str, aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let sealed = unb64(sealed_b64, "the sealed value")?;
        if sealed.len() < 32 {
            return Err(CryptoError::Open);
        }
        let (epk, rest) = sealed.split_at(32);
        let mut epk_bytes = [0u8; 32];
        epk_bytes.copy_from_slice(epk);
        let shared = self.0.diffie_hellman(&XPublic::from(epk_bytes));
        let mine = XPublic::from(&self.0);
        let key = hkdf32(
            shared.as_bytes(),
            &[epk, mine.as_bytes().as_slice()].concat(),
            b"iot-platform/v1/seal-to-ap",
        );
        open_with(&key, rest, aad)
    }
}

/// Seals `plaintext` to an AP's public key (base64): an ephemeral X25519
/// key, HKDF-SHA256, ChaCha20-Poly1305. Only the AP's secret opens it.
pub fn seal_to_ap(
    ap_public_b64: &str,
    plaintext: &[u8],
    aad: &[u8],
) -> Result<String, CryptoError> {
    let bytes = unb64(ap_public_b64, "the AP key")?;
    let ap: [u8; 32] = bytes
        .try_into()
        .map_err(|_| CryptoError::Key("the AP key"))?;
    let ap = XPublic::from(ap);
    let eph = StaticSecret::random_from_rng(OsRng);
    let epk = XPublic::from(&eph);
    let shared = eph.diffie_hellman(&ap);
    let key = hkdf32(
        shared.as_bytes(),
        &[epk.as_bytes().as_slice(), ap.as_bytes().as_slice()].concat(),
        b"iot-platform/v1/seal-to-ap",
    );
    // A fresh key per message: a zero nonce is safe.
    let mut out = epk.as_bytes().to_vec();
    out.extend_from_slice(&seal_with(&key, &[0u8; 12], plaintext, aad));
    Ok(b64(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_agrees_only_on_the_same_pass_tmp() {
        let session = random_b64(16);
        let (dev, msg_a) = DeviceHandshake::start("u1", "home", "pass-1234");
        let (ap_keys, msg_b) = ap_handshake("u1", "home", "pass-1234", &msg_a, &session).unwrap();
        let dev_keys = dev.finish(&msg_b, &session).unwrap();
        assert!(ap_keys.check_device_proof(&dev_keys.device_proof()));
        let sealed = ap_keys.seal_password("wifi secret", b"u1|home");
        assert_eq!(
            dev_keys.open_password(&sealed, b"u1|home").unwrap(),
            "wifi secret"
        );
        assert!(dev_keys.open_password(&sealed, b"u2|home").is_err());

        // A wrong pass_tmp: the proof fails and nothing opens.
        let (dev, msg_a) = DeviceHandshake::start("u1", "home", "guess");
        let (ap_keys, msg_b) = ap_handshake("u1", "home", "pass-1234", &msg_a, &session).unwrap();
        let dev_keys = dev.finish(&msg_b, &session).unwrap();
        assert!(!ap_keys.check_device_proof(&dev_keys.device_proof()));
        let sealed = ap_keys.seal_password("wifi secret", b"u1|home");
        assert_eq!(
            dev_keys.open_password(&sealed, b"u1|home"),
            Err(CryptoError::Open)
        );
    }

    #[test]
    fn a_replayed_response_does_not_open_in_a_new_session() {
        let s1 = random_b64(16);
        let (dev, msg_a) = DeviceHandshake::start("u1", "home", "p");
        let (ap1, msg_b) = ap_handshake("u1", "home", "p", &msg_a, &s1).unwrap();
        let old = ap1.seal_password("wifi", b"ctx");
        assert!(dev.finish(&msg_b, &s1).is_ok());
        let s2 = random_b64(16);
        let (dev2, msg_a2) = DeviceHandshake::start("u1", "home", "p");
        let (_, msg_b2) = ap_handshake("u1", "home", "p", &msg_a2, &s2).unwrap();
        let keys2 = dev2.finish(&msg_b2, &s2).unwrap();
        assert!(keys2.open_password(&old, b"ctx").is_err());
    }

    #[test]
    fn seal_to_ap_opens_only_with_that_ap() {
        let ap = ApKey::generate();
        let other = ApKey::generate();
        let sealed = seal_to_ap(&ap.public_b64(), b"pass_tmp", b"ctx").unwrap();
        assert_eq!(ap.open(&sealed, b"ctx").unwrap(), b"pass_tmp");
        assert!(other.open(&sealed, b"ctx").is_err());
        assert!(ap.open(&sealed, b"other ctx").is_err());
        assert!(ap.open("!!", b"ctx").is_err());
        assert!(seal_to_ap("short", b"x", b"").is_err());
    }

    #[test]
    fn signatures_cover_every_field_and_the_domain() {
        let key = PlatformKey::generate();
        let public = PlatformPublicKey::from_hex(&key.public().to_hex()).unwrap();
        let sig = key.sign("assignment", &[b"d1", b"gw-1"]);
        assert!(public.verify("assignment", &[b"d1", b"gw-1"], &sig).is_ok());
        assert!(public
            .verify("assignment", &[b"d1", b"gw-2"], &sig)
            .is_err());
        assert!(public.verify("other", &[b"d1", b"gw-1"], &sig).is_err());
        assert!(public.verify("assignment", &[b"d1gw-1"], &sig).is_err());
        assert!(public.verify("assignment", &[b"d1", b"gw-1"], "x").is_err());
        let again = PlatformKey::from_seed_hex(&key.seed_hex()).unwrap();
        assert_eq!(again.public(), key.public());
        assert!(PlatformKey::from_seed_hex("zz").is_err());
    }
}
