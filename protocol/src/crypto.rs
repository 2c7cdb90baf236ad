//! Every cryptographic operation whose output crosses the wire, in one
//! place, so the envelope formats have one owner (see docs/SECURITY.md).
//!
//! - **Onboarding**: SPAKE2 (Ed25519 group) between the device and the
//!   verifier, keyed by pass_tmp, relayed by the AP. Nobody sends pass_tmp
//!   or anything an eavesdropper (the AP included) could test a guess of
//!   pass_tmp against; an active attacker gets one guess per handshake.
//!   The shared key, bound to a fresh session id, gives the device's proof
//!   (the verifier checks it), the key that vouches for the device's own
//!   key, and the session's Wi-Fi key ([`WifiKey`]).
//! - **The session's Wi-Fi key to the AP**: once the device's proof
//!   checks, sealed to a key only that AP holds (X25519, HKDF-SHA256,
//!   ChaCha20-Poly1305). It opens this session's Wi-Fi password and
//!   nothing else: it tests no guess of pass_tmp.
//! - **Platform signatures**: Ed25519 over a domain-separated, length-
//!   prefixed list of fields (registry answers, verifier answers, the
//!   tickets a device checks an AP's challenge with).
//! - **The device's key** ([`DeviceKey`]): Ed25519, made on the device.
//!   At onboarding the device registers its public half, vouched for by
//!   a MAC keyed by the handshake's key and sealed to the platform
//!   ([`seal_enrollment`]), so that nobody on the way learns anything to
//!   test a guess of pass_tmp against; afterwards it logs in with
//!   short-lived signed tokens ([`device_login_token`]).
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
    #[error("{0} is malformed")]
    Malformed(&'static str),
    #[error("{0} is outside its time window")]
    Stale(&'static str),
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

/// The platform's signing key (registry and verifier answers, tickets).
/// Its X25519 form opens what devices seal to the platform
/// ([`seal_enrollment`]); it is derived once, here.
pub struct PlatformKey {
    key: SigningKey,
    x25519: StaticSecret,
    /// Its public half, kept: every open needs it.
    x25519_public: XPublic,
}

impl std::fmt::Debug for PlatformKey {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PlatformKey(public {})", self.public().to_hex())
    }
}

impl PlatformKey {
    fn new(key: SigningKey) -> Self {
        // The X25519 secret whose public half is the verifying key's
        // Montgomery form (ed25519-dalek's documented conversion).
        let x25519 = StaticSecret::from(key.to_scalar_bytes());
        let x25519_public = XPublic::from(&x25519);
        PlatformKey {
            key,
            x25519,
            x25519_public,
        }
    }

    pub fn generate() -> Self {
        Self::new(SigningKey::generate(&mut OsRng))
    }

    /// From the 32-byte seed, as 64 hex digits.
    pub fn from_seed_hex(text: &str) -> Result<Self, CryptoError> {
        Ok(Self::new(SigningKey::from_bytes(&unhex32(
            text,
            "the platform key",
        )?)))
    }

    pub fn seed_hex(&self) -> String {
        hex(self.key.as_bytes())
    }

    pub fn public(&self) -> PlatformPublicKey {
        PlatformPublicKey::new(self.key.verifying_key())
    }

    pub fn sign(&self, domain: &str, fields: &[&[u8]]) -> String {
        b64(&self.key.sign(&canonical(domain, fields)).to_bytes())
    }

    /// The pass_tmp the verifier runs the handshake with for a UUID that
    /// is not enrolled: secret (keyed by this key) and the same on every
    /// ask, so that nobody can tell an unknown UUID from a wrong pass_tmp.
    pub fn decoy_pass_tmp(&self, uuid: &str) -> String {
        let key = hkdf32(self.key.as_bytes(), b"", b"iot-platform/v1/decoy-pass-tmp");
        hex(&hmac32(&key, &[uuid.to_ascii_lowercase().as_bytes()]))
    }

    /// Opens a device's enrollment ([`seal_enrollment`]) for the device
    /// `uuid` and its request `request`. What it says is believed only
    /// once [`EnrollClaim::vouched_by`] the handshake's keys.
    pub fn open_enrollment(
        &self,
        sealed_b64: &str,
        uuid: &str,
        request: &str,
    ) -> Result<EnrollClaim, CryptoError> {
        let sealed = unb64(sealed_b64, "the enrollment")?;
        let plain = open_from(
            &self.x25519,
            &self.x25519_public,
            &sealed,
            &enroll_seal_context(uuid, request),
            SEAL_TO_PLATFORM,
        )?;
        if plain.len() != 64 {
            return Err(CryptoError::Open);
        }
        let mut device_key = [0u8; 32];
        let mut mac = [0u8; 32];
        device_key.copy_from_slice(&plain[..32]);
        mac.copy_from_slice(&plain[32..]);
        check_device_public(&device_key)?;
        Ok(EnrollClaim { device_key, mac })
    }
}

/// What devices, APs and gateways are configured with to check the
/// platform's signatures, and devices to seal to the platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlatformPublicKey {
    key: VerifyingKey,
    /// The same key in Montgomery form, X25519's: derived once, since a
    /// device seals to it at every onboarding.
    x25519: [u8; 32],
}

impl PlatformPublicKey {
    fn new(key: VerifyingKey) -> Self {
        PlatformPublicKey {
            x25519: key.to_montgomery().to_bytes(),
            key,
        }
    }

    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        VerifyingKey::from_bytes(&unhex32(text, "the platform public key")?)
            .map(PlatformPublicKey::new)
            .map_err(|_| CryptoError::Key("the platform public key"))
    }

    pub fn to_hex(&self) -> String {
        hex(self.key.as_bytes())
    }

    pub fn verify(&self, domain: &str, fields: &[&[u8]], sig_b64: &str) -> Result<(), CryptoError> {
        let bytes = unb64(sig_b64, "the signature")?;
        let sig = Signature::from_slice(&bytes).map_err(|_| CryptoError::Signature)?;
        self.key
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

    /// Finishes with the verifier's message and session id from the
    /// challenge the AP relayed.
    pub fn finish(self, peer_msg_b64: &str, session_b64: &str) -> Result<SessionKeys, CryptoError> {
        let msg = unb64(peer_msg_b64, "the verifier's handshake message")?;
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
/// instead of answering it with the wrong key. The verifier keys its
/// memory of device requests by it, and its tickets name it.
pub fn handshake_tag(device_msg_b64: &str) -> String {
    b64(&handshake_id(device_msg_b64))
}

/// [`handshake_tag`] as bytes: a compact key for whoever keeps many.
pub fn handshake_id(device_msg_b64: &str) -> [u8; 12] {
    use sha2::Digest;
    let mut id = [0u8; 12];
    id.copy_from_slice(&Sha256::digest(device_msg_b64.as_bytes())[..12]);
    id
}

/// The bytes of a [`handshake_tag`] a peer sent, if it is one.
pub fn parse_handshake_tag(tag: &str) -> Option<[u8; 12]> {
    unb64(tag, "the handshake tag").ok()?.try_into().ok()
}

/// The verifier's half: with the enrolled pass_tmp and the device's
/// message, the keys and the verifier's message for the challenge. The
/// AP only relays the messages: it never holds pass_tmp.
pub fn verifier_handshake(
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
    enroll: [u8; 32],
    wifi: WifiKey,
}

impl SessionKeys {
    fn derive(shared: &[u8], session: &[u8]) -> Self {
        SessionKeys {
            proof: hkdf32(shared, session, b"iot-platform/v1/device-proof"),
            enroll: hkdf32(shared, session, b"iot-platform/v1/enroll-mac"),
            wifi: WifiKey(hkdf32(shared, session, b"iot-platform/v1/wifi-seal")),
        }
    }

    /// The device's proof that it holds pass_tmp (base64).
    pub fn device_proof(&self) -> String {
        b64(&hmac32(&self.proof, &[b"device"]))
    }

    /// The verifier's check: does the device's proof match ours?
    pub fn check_device_proof(&self, proof_b64: &str) -> bool {
        let Ok(theirs) = unb64(proof_b64, "the proof") else {
            return false;
        };
        let ours = hmac32(&self.proof, &[b"device"]);
        ours.len() == theirs.len() && bool::from(ours.ct_eq(&theirs[..]))
    }

    /// The session's Wi-Fi key: what the verifier hands the AP, sealed to
    /// it, once the device's proof checks.
    pub fn wifi_key(&self) -> &WifiKey {
        &self.wifi
    }

    /// Seals the Wi-Fi password for the device; `aad` binds the context.
    pub fn seal_password(&self, password: &str, aad: &[u8]) -> String {
        self.wifi.seal_password(password, aad)
    }

    pub fn open_password(&self, sealed_b64: &str, aad: &[u8]) -> Result<String, CryptoError> {
        self.wifi.open_password(sealed_b64, aad)
    }
}

/// One onboarding session's Wi-Fi key, derived from the handshake's key
/// by HKDF: the AP seals the Wi-Fi password with it, and binds its own
/// refusals to the session with it ([`WifiKey::refusal_mac`]). Knowing it
/// tests no guess of pass_tmp (HKDF is one-way, and the handshake's key
/// needs a secret of one of its two ends).
#[derive(Clone)]
pub struct WifiKey([u8; 32]);

impl std::fmt::Debug for WifiKey {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WifiKey(..)")
    }
}

const WIFI_REFUSAL: &str = "wifi-refusal";

impl WifiKey {
    /// The key as the verifier seals it to the AP.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// The key the AP opened.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::Open)?;
        Ok(WifiKey(key))
    }

    pub fn seal_password(&self, password: &str, aad: &[u8]) -> String {
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        b64(&seal_with(&self.0, &nonce, password.as_bytes(), aad))
    }

    pub fn open_password(&self, sealed_b64: &str, aad: &[u8]) -> Result<String, CryptoError> {
        let sealed = unb64(sealed_b64, "the sealed password")?;
        String::from_utf8(open_with(&self.0, &sealed, aad)?).map_err(|_| CryptoError::Open)
    }

    /// The AP's refusal of this session (its user declined, say), bound to
    /// it: only the AP the verifier handed this key to, and the device,
    /// can make it. Base64.
    pub fn refusal_mac(&self, fields: &[&[u8]]) -> String {
        b64(&hmac32(&self.0, &[&canonical(WIFI_REFUSAL, fields)]))
    }

    pub fn check_refusal_mac(&self, fields: &[&[u8]], mac_b64: &str) -> bool {
        let Ok(theirs) = unb64(mac_b64, "the refusal's MAC") else {
            return false;
        };
        let ours = hmac32(&self.0, &[&canonical(WIFI_REFUSAL, fields)]);
        ours.len() == theirs.len() && bool::from(ours.ct_eq(&theirs[..]))
    }
}

/// HMAC-SHA256 over the concatenated parts.
fn hmac32(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut out = [0u8; 32];
    // HMAC takes keys of any length: this cannot fail.
    if let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) {
        for part in parts {
            mac.update(part);
        }
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

/// A commitment to the device's access request: the request carries
/// `commit`, and only the device's proof carries `opening`, so the
/// verifier judges only proofs from whoever made the request (anyone who
/// reads the challenge could send a proof for it). Returns `(opening,
/// commit)`, both base64.
pub fn handshake_commitment() -> (String, String) {
    use sha2::Digest;
    let mut opening = [0u8; 16];
    OsRng.fill_bytes(&mut opening);
    let commit = Sha256::digest(opening);
    (b64(&opening), b64(&commit[..16]))
}

/// Whether `opening` opens `commit` ([`handshake_commitment`]).
pub fn opens_commitment(opening_b64: &str, commit_b64: &str) -> bool {
    use sha2::Digest;
    let (Ok(opening), Ok(commit)) = (
        unb64(opening_b64, "the opening"),
        unb64(commit_b64, "the commitment"),
    ) else {
        return false;
    };
    if opening.len() != 16 || commit.len() != 16 {
        return false;
    }
    bool::from(Sha256::digest(&opening)[..16].ct_eq(&commit[..]))
}

/// HKDF info of a value sealed to an AP, and to the platform: one
/// envelope, two domains, so that neither opens as the other.
const SEAL_TO_AP: &[u8] = b"iot-platform/v1/seal-to-ap";
const SEAL_TO_PLATFORM: &[u8] = b"iot-platform/v1/seal-to-platform";

/// Seals `plaintext` to an X25519 public key: an ephemeral key, HKDF-SHA256
/// over both public keys, ChaCha20-Poly1305. Output: ephemeral public key,
/// then the sealed value.
fn seal_to(to: &XPublic, plaintext: &[u8], aad: &[u8], info: &[u8]) -> Vec<u8> {
    let eph = StaticSecret::random_from_rng(OsRng);
    let epk = XPublic::from(&eph);
    let shared = eph.diffie_hellman(to);
    let key = hkdf32(
        shared.as_bytes(),
        &[epk.as_bytes().as_slice(), to.as_bytes().as_slice()].concat(),
        info,
    );
    // A fresh key per message: a zero nonce is safe.
    let mut out = epk.as_bytes().to_vec();
    out.extend_from_slice(&seal_with(&key, &[0u8; 12], plaintext, aad));
    out
}

/// Opens what [`seal_to`] sealed to `secret`'s public key, `mine`.
fn open_from(
    secret: &StaticSecret,
    mine: &XPublic,
    sealed: &[u8],
    aad: &[u8],
    info: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < 32 {
        return Err(CryptoError::Open);
    }
    let (epk, rest) = sealed.split_at(32);
    let mut epk_bytes = [0u8; 32];
    epk_bytes.copy_from_slice(epk);
    let shared = secret.diffie_hellman(&XPublic::from(epk_bytes));
    // A low-order ephemeral key makes a shared secret anyone knows.
    if !shared.was_contributory() {
        return Err(CryptoError::Open);
    }
    let key = hkdf32(
        shared.as_bytes(),
        &[epk, mine.as_bytes().as_slice()].concat(),
        info,
    );
    open_with(&key, rest, aad)
}

/// An AP's key for receiving pass_tmp from the verifier. One per AP
/// process; only the public half is ever sent.
pub struct ApKey {
    secret: StaticSecret,
    public: XPublic,
}

impl ApKey {
    pub fn generate() -> Self {
        let secret = StaticSecret::random_from_rng(OsRng);
        let public = XPublic::from(&secret);
        ApKey { secret, public }
    }

    pub fn public_b64(&self) -> String {
        b64(self.public.as_bytes())
    }

    /// Opens what [`seal_to_ap`] sealed to this key.
    pub fn open(&self, sealed_b64: &str, aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let sealed = unb64(sealed_b64, "the sealed value")?;
        open_from(&self.secret, &self.public, &sealed, aad, SEAL_TO_AP)
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
    Ok(b64(&seal_to(
        &XPublic::from(ap),
        plaintext,
        aad,
        SEAL_TO_AP,
    )))
}

/// A device's own key pair, Ed25519, made on the device once and kept
/// there. Its public half is registered with the platform at onboarding
/// ([`seal_enrollment`]); the device then logs in with tokens it signs
/// ([`device_login_token`]), which, unlike an HMAC of pass_tmp, leave
/// nothing to test a guess of pass_tmp against.
#[derive(Clone)]
pub struct DeviceKey(SigningKey);

impl std::fmt::Debug for DeviceKey {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceKey(public {})", self.public_hex())
    }
}

impl DeviceKey {
    pub fn generate() -> Self {
        DeviceKey(SigningKey::generate(&mut OsRng))
    }

    /// From the 32-byte seed, as 64 hex digits (what a device persists).
    pub fn from_seed_hex(text: &str) -> Result<Self, CryptoError> {
        Ok(DeviceKey(SigningKey::from_bytes(&unhex32(
            text,
            "the device key",
        )?)))
    }

    pub fn seed_hex(&self) -> String {
        hex(self.0.as_bytes())
    }

    /// The public half, as 64 hex digits: what the platform stores.
    pub fn public_hex(&self) -> String {
        hex(self.0.verifying_key().as_bytes())
    }

    /// A signature over a domain-separated list of fields, in the
    /// platform's envelope ([`PlatformKey::sign`]'s), base64.
    pub fn sign(&self, domain: &str, fields: &[&[u8]]) -> String {
        b64(&self.0.sign(&canonical(domain, fields)).to_bytes())
    }
}

/// Whether `hex` is a usable device public key (64 hex digits, a valid
/// point of full order): what an admin may register for a device.
pub fn check_device_public_hex(hex: &str) -> Result<(), CryptoError> {
    check_device_public(&unhex32(hex, "the device key")?).map(|_| ())
}

/// A usable device public key: a valid curve point of full order (a weak
/// key would let one signature verify for many messages).
fn check_device_public(bytes: &[u8; 32]) -> Result<VerifyingKey, CryptoError> {
    match VerifyingKey::from_bytes(bytes) {
        Ok(key) if !key.is_weak() => Ok(key),
        _ => Err(CryptoError::Key("the device key")),
    }
}

/// What a device enrollment is bound to: the device and the request whose
/// handshake it finishes.
fn enroll_seal_context(uuid: &str, request: &str) -> Vec<u8> {
    canonical(
        "enroll-seal",
        &[uuid.to_ascii_lowercase().as_bytes(), request.as_bytes()],
    )
}

/// The MAC that vouches for a device key: HMAC-SHA256 over the UUID, the
/// request and the key, keyed by the handshake's enroll key. Only the
/// device and the verifier, the handshake's two ends, hold that key, and
/// only for this session; it travels only inside [`seal_enrollment`]'s
/// envelope.
fn enroll_mac(keys: &SessionKeys, uuid: &str, request: &str, device_key: &[u8; 32]) -> [u8; 32] {
    let uuid = uuid.to_ascii_lowercase();
    hmac32(
        &keys.enroll,
        &[&canonical(
            "enroll",
            &[uuid.as_bytes(), request.as_bytes(), device_key],
        )],
    )
}

/// The device's half of registering its key: its public key and the MAC
/// vouching for it ([`enroll_mac`]), sealed to the platform and bound to
/// the UUID and the request (`request`: the handshake's tag,
/// [`handshake_tag`]). Base64. Goes in the device's access proof.
pub fn seal_enrollment(
    platform: &PlatformPublicKey,
    device: &DeviceKey,
    uuid: &str,
    keys: &SessionKeys,
    request: &str,
) -> String {
    let public = device.0.verifying_key().to_bytes();
    let mut plain = [0u8; 64];
    plain[..32].copy_from_slice(&public);
    plain[32..].copy_from_slice(&enroll_mac(keys, uuid, request, &public));
    b64(&seal_to(
        &XPublic::from(platform.x25519),
        &plain,
        &enroll_seal_context(uuid, request),
        SEAL_TO_PLATFORM,
    ))
}

/// An opened enrollment: a device key and the MAC that should vouch for
/// it. Believe the key only if [`EnrollClaim::vouched_by`] says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollClaim {
    device_key: [u8; 32],
    mac: [u8; 32],
}

impl EnrollClaim {
    /// The claimed device key, as 64 hex digits (as stored).
    pub fn device_key_hex(&self) -> String {
        hex(&self.device_key)
    }

    /// Whether the MAC is the one the handshake's keys give for this key,
    /// UUID and request. Constant time.
    pub fn vouched_by(&self, keys: &SessionKeys, uuid: &str, request: &str) -> bool {
        let expected = enroll_mac(keys, uuid, request, &self.device_key);
        bool::from(expected.ct_eq(&self.mac))
    }

    /// The MAC itself: a value derived from the handshake's key, which
    /// must never be seen outside the sealed enrollment (the sniffer test
    /// looks for it).
    pub fn mac(&self) -> [u8; 32] {
        self.mac
    }
}

/// A login nonce: the broker refuses a token whose nonce it has seen.
pub type LoginNonce = [u8; 16];

/// A fresh random login nonce.
pub fn login_nonce() -> LoginNonce {
    let mut nonce = [0u8; 16];
    OsRng.fill_bytes(&mut nonce);
    nonce
}

const LOGIN_DOMAIN: &str = "device-login";
/// The token's version tag, so that a later format can be told apart.
const LOGIN_TAG: &str = "dk1";

fn login_message(uuid: &str, at_ms: u64, nonce: &LoginNonce) -> Vec<u8> {
    canonical(
        LOGIN_DOMAIN,
        &[
            uuid.to_ascii_lowercase().as_bytes(),
            &at_ms.to_be_bytes(),
            nonce,
        ],
    )
}

/// A device's MQTT password once its key is registered:
/// `dk1.{now_ms}.{nonce}.{signature}` (printable ASCII, at most 135
/// bytes), the device key's signature over the UUID, the time and the
/// nonce. Each login uses a fresh nonce ([`login_nonce`]); the broker
/// refuses a nonce it has seen, and a time too far from its own.
pub fn device_login_token(key: &DeviceKey, uuid: &str, now_ms: u64, nonce: &LoginNonce) -> String {
    let sig = key.0.sign(&login_message(uuid, now_ms, nonce));
    format!(
        "{LOGIN_TAG}.{now_ms}.{}.{}",
        b64(nonce),
        b64(&sig.to_bytes())
    )
}

/// A `TAG.MS.NONCE.SIG` login token's time, nonce and signature (still
/// base64), if it has that shape: the cheap checks, before any curve
/// operation. Platform logins (`dk1`) and gateway logins
/// (`gateway_login.rs`, `gk1`) share it.
pub fn split_login_token<'a>(token: &'a str, tag: &str) -> Option<(u64, LoginNonce, &'a str)> {
    let mut parts = token.split('.');
    let (Some(t), Some(at), Some(nonce), Some(sig), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if t != tag || at.is_empty() || at.len() > 20 || !at.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let at_ms: u64 = at.parse().ok()?;
    let nonce: LoginNonce = unb64(nonce, "the login nonce").ok()?.try_into().ok()?;
    if sig.is_empty() || sig.len() > 128 {
        return None;
    }
    Some((at_ms, nonce, sig))
}

/// Checks a device key's signature ([`DeviceKey::sign`]) against its
/// public key (hex): a usable key, strict verification.
pub fn verify_device_signature(
    public_hex: &str,
    domain: &str,
    fields: &[&[u8]],
    sig_b64: &str,
) -> Result<(), CryptoError> {
    let key = check_device_public(&unhex32(public_hex, "the device key")?)?;
    let sig = Signature::from_slice(&unb64(sig_b64, "the signature")?)
        .map_err(|_| CryptoError::Signature)?;
    key.verify_strict(&canonical(domain, fields), &sig)
        .map_err(|_| CryptoError::Signature)
}

/// Checks a login token ([`device_login_token`]) against the device's
/// registered public key (hex) and its UUID (in either case), at
/// `now_ms`, allowing `max_skew_ms` either way. Returns the token's
/// nonce, for the caller's replay check. The cheap checks come first, so
/// a flood of garbage costs no curve operation.
pub fn verify_device_login(
    public_hex: &str,
    uuid: &str,
    token: &str,
    now_ms: u64,
    max_skew_ms: u64,
) -> Result<LoginNonce, CryptoError> {
    const WHAT: &str = "the login token";
    let (at_ms, nonce, sig) =
        split_login_token(token, LOGIN_TAG).ok_or(CryptoError::Malformed(WHAT))?;
    if now_ms.abs_diff(at_ms) > max_skew_ms {
        return Err(CryptoError::Stale(WHAT));
    }
    let sig = Signature::from_slice(&unb64(sig, WHAT)?).map_err(|_| CryptoError::Signature)?;
    let key = check_device_public(&unhex32(public_hex, "the device key")?)?;
    key.verify_strict(&login_message(uuid, at_ms, &nonce), &sig)
        .map_err(|_| CryptoError::Signature)?;
    Ok(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_agrees_only_on_the_same_pass_tmp() {
        let session = random_b64(16);
        let (dev, msg_a) = DeviceHandshake::start("u1", "home", "pass-1234");
        let (ap_keys, msg_b) =
            verifier_handshake("u1", "home", "pass-1234", &msg_a, &session).unwrap();
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
        let (ap_keys, msg_b) =
            verifier_handshake("u1", "home", "pass-1234", &msg_a, &session).unwrap();
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
        let (ap1, msg_b) = verifier_handshake("u1", "home", "p", &msg_a, &s1).unwrap();
        let old = ap1.seal_password("wifi", b"ctx");
        assert!(dev.finish(&msg_b, &s1).is_ok());
        let s2 = random_b64(16);
        let (dev2, msg_a2) = DeviceHandshake::start("u1", "home", "p");
        let (_, msg_b2) = verifier_handshake("u1", "home", "p", &msg_a2, &s2).unwrap();
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
    #[test]
    fn the_platform_keys_x25519_halves_match() {
        let key = PlatformKey::generate();
        let public = PlatformPublicKey::from_hex(&key.public().to_hex()).unwrap();
        assert_eq!(XPublic::from(&key.x25519).to_bytes(), public.x25519);
        let again = PlatformKey::from_seed_hex(&key.seed_hex()).unwrap();
        assert_eq!(again.x25519.to_bytes(), key.x25519.to_bytes());
    }

    fn keys_for(pass_tmp: &str, session: &str) -> SessionKeys {
        let (dev, msg_a) = DeviceHandshake::start("u1", "home", pass_tmp);
        let (_, msg_b) = verifier_handshake("u1", "home", pass_tmp, &msg_a, session).unwrap();
        dev.finish(&msg_b, session).unwrap()
    }

    #[test]
    fn an_enrollment_opens_only_for_the_platform_and_its_device_and_request() {
        let platform = PlatformKey::generate();
        let device = DeviceKey::generate();
        let u = "6F1C2B8E-0B5D-4A8F-9E8C-2B7D8E9F0A1B";
        let session = random_b64(16);
        let (dev, msg_a) = DeviceHandshake::start(u, "home", "pass-1234");
        let (verifier_keys, msg_b) =
            verifier_handshake(u, "home", "pass-1234", &msg_a, &session).unwrap();
        let keys = dev.finish(&msg_b, &session).unwrap();
        let sealed = seal_enrollment(&platform.public(), &device, u, &keys, "req-1");
        // Case of the UUID does not matter; the request and the key do.
        let claim = platform
            .open_enrollment(&sealed, &u.to_ascii_lowercase(), "req-1")
            .unwrap();
        assert_eq!(claim.device_key_hex(), device.public_hex());
        assert!(claim.vouched_by(&verifier_keys, u, "req-1"));
        assert!(
            !claim.vouched_by(&keys_for("pass-1234", &session), u, "req-1"),
            "another handshake, even with the same pass_tmp"
        );
        assert!(
            !claim.vouched_by(&verifier_keys, u, "req-2"),
            "another request"
        );
        assert!(platform.open_enrollment(&sealed, u, "req-2").is_err());
        let other_uuid = "6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1c";
        assert!(platform
            .open_enrollment(&sealed, other_uuid, "req-1")
            .is_err());
        let other = PlatformKey::generate();
        assert!(other.open_enrollment(&sealed, u, "req-1").is_err());
        // Nor as an AP's sealed value, the same envelope in another domain.
        assert!(platform.open_enrollment("!!", u, "req-1").is_err());
        let raw = unb64(&sealed, "x").unwrap();
        assert!(open_from(
            &platform.x25519,
            &platform.x25519_public,
            &raw,
            &enroll_seal_context(u, "req-1"),
            SEAL_TO_AP
        )
        .is_err());
        // A wrong pass_tmp seals fine and opens, and is caught by the MAC.
        let (dev, msg_a) = DeviceHandshake::start(u, "home", "guess");
        let (verifier_keys, msg_b) =
            verifier_handshake(u, "home", "pass-1234", &msg_a, &session).unwrap();
        let guess_keys = dev.finish(&msg_b, &session).unwrap();
        let guess = seal_enrollment(&platform.public(), &device, u, &guess_keys, "req-1");
        let claim = platform.open_enrollment(&guess, u, "req-1").unwrap();
        assert!(!claim.vouched_by(&verifier_keys, u, "req-1"));
    }

    #[test]
    fn a_commitment_opens_only_with_its_opening() {
        let (opening, commit) = handshake_commitment();
        assert!(opens_commitment(&opening, &commit));
        let (other, _) = handshake_commitment();
        assert!(!opens_commitment(&other, &commit));
        assert!(!opens_commitment(&commit, &commit));
        assert!(!opens_commitment("!!", &commit));
        assert!(!opens_commitment(&opening, "c2hvcnQ"));
    }

    #[test]
    fn the_wifi_key_seals_for_its_session_and_binds_refusals() {
        let session = random_b64(16);
        let (dev, msg_a) = DeviceHandshake::start("u1", "home", "p");
        let (verifier, msg_b) = verifier_handshake("u1", "home", "p", &msg_a, &session).unwrap();
        let device = dev.finish(&msg_b, &session).unwrap();
        // What the AP gets: the key's bytes, and nothing of pass_tmp.
        let ap = WifiKey::from_bytes(&verifier.wifi_key().to_bytes()).unwrap();
        let sealed = ap.seal_password("wifi secret", b"ctx");
        assert_eq!(
            device.open_password(&sealed, b"ctx").unwrap(),
            "wifi secret"
        );
        let mac = ap.refusal_mac(&[b"u1", b"rejected"]);
        assert!(device
            .wifi_key()
            .check_refusal_mac(&[b"u1", b"rejected"], &mac));
        assert!(!device
            .wifi_key()
            .check_refusal_mac(&[b"u1", b"timeout"], &mac));
        let other = keys_for("p", &session);
        assert!(!other
            .wifi_key()
            .check_refusal_mac(&[b"u1", b"rejected"], &mac));
        assert!(WifiKey::from_bytes(b"short").is_err());
    }

    #[test]
    fn a_decoy_pass_tmp_is_stable_secret_and_per_uuid() {
        let key = PlatformKey::generate();
        let u = "6F1C2B8E-0B5D-4A8F-9E8C-2B7D8E9F0A1B";
        assert_eq!(
            key.decoy_pass_tmp(u),
            key.decoy_pass_tmp(&u.to_ascii_lowercase())
        );
        assert_ne!(key.decoy_pass_tmp(u), key.decoy_pass_tmp("another"));
        assert_ne!(
            key.decoy_pass_tmp(u),
            PlatformKey::generate().decoy_pass_tmp(u)
        );
    }

    #[test]
    fn a_low_order_ephemeral_key_opens_nothing() {
        let platform = PlatformKey::generate();
        // The all-zero point: its shared secret is zero, known to anyone.
        let mut sealed = vec![0u8; 32];
        let key = hkdf32(
            &[0u8; 32],
            &[[0u8; 32].as_slice(), platform.public().x25519.as_slice()].concat(),
            SEAL_TO_PLATFORM,
        );
        sealed.extend_from_slice(&seal_with(&key, &[0u8; 12], &[7u8; 64], b"aad"));
        assert_eq!(
            open_from(
                &platform.x25519,
                &platform.x25519_public,
                &sealed,
                b"aad",
                SEAL_TO_PLATFORM
            ),
            Err(CryptoError::Open)
        );
    }

    #[test]
    fn a_device_key_round_trips_its_seed_and_hides_it() {
        let key = DeviceKey::generate();
        let again = DeviceKey::from_seed_hex(&key.seed_hex()).unwrap();
        assert_eq!(again.public_hex(), key.public_hex());
        assert_eq!(key.public_hex().len(), 64);
        assert!(!format!("{key:?}").contains(&key.seed_hex()));
        assert!(DeviceKey::from_seed_hex("zz").is_err());
        assert!(DeviceKey::from_seed_hex(&"0".repeat(63)).is_err());
    }

    #[test]
    fn a_login_token_verifies_only_for_its_key_device_and_time() {
        let key = DeviceKey::generate();
        let public = key.public_hex();
        let u = "6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b";
        let nonce = login_nonce();
        let now = 1_700_000_000_000;
        let token = device_login_token(&key, u, now, &nonce);
        assert!(token.len() < 200, "{} bytes", token.len());
        assert!(token.bytes().all(|b| b.is_ascii_graphic()), "{token}");
        assert_eq!(
            verify_device_login(&public, u, &token, now, 30_000),
            Ok(nonce)
        );
        assert_eq!(
            verify_device_login(
                &public,
                &u.to_ascii_uppercase(),
                &token,
                now + 30_000,
                30_000
            ),
            Ok(nonce),
            "either case, at the edge of the skew"
        );
        // Wrong device, wrong key, too early or late.
        let other = "6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1c";
        assert_eq!(
            verify_device_login(&public, other, &token, now, 30_000),
            Err(CryptoError::Signature)
        );
        let stranger = DeviceKey::generate().public_hex();
        assert_eq!(
            verify_device_login(&stranger, u, &token, now, 30_000),
            Err(CryptoError::Signature)
        );
        for at in [now + 30_001, now - 30_001, 0, u64::MAX] {
            assert!(
                matches!(
                    verify_device_login(&public, u, &token, at, 30_000),
                    Err(CryptoError::Stale(_))
                ),
                "{at}"
            );
        }
        // Tampered time or nonce: the signature covers both.
        let parts: Vec<&str> = token.split('.').collect();
        let later = format!("{}.{}.{}.{}", parts[0], now + 1, parts[2], parts[3]);
        assert_eq!(
            verify_device_login(&public, u, &later, now, 30_000),
            Err(CryptoError::Signature)
        );
        let renonced = format!("{}.{}.{}.{}", parts[0], parts[1], b64(&[9u8; 16]), parts[3]);
        assert_eq!(
            verify_device_login(&public, u, &renonced, now, 30_000),
            Err(CryptoError::Signature)
        );
        // Garbage of every shape.
        for junk in [
            "",
            "dk1",
            "dk1...",
            "dk2.1.AAAA.AAAA",
            &format!("dk1.+{now}.{}.{}", parts[2], parts[3]),
            &format!("dk1.{now}.{}.{}.extra", parts[2], parts[3]),
            &format!("dk1.{now}.AAAA.{}", parts[3]),
            &format!("dk1.{now}.{}.AAAA", parts[2]),
            &format!("dk1.{now}.{}.!!", parts[2]),
            &format!("dk1.99999999999999999999999.{}.{}", parts[2], parts[3]),
        ] {
            assert!(
                verify_device_login(&public, u, junk, now, 30_000).is_err(),
                "{junk:?}"
            );
        }
        assert!(verify_device_login("not hex", u, &token, now, 30_000).is_err());
        // A weak (small-order) public key is never a device key.
        let identity = format!("01{}", "00".repeat(31));
        assert_eq!(
            verify_device_login(&identity, u, &token, now, 30_000),
            Err(CryptoError::Key("the device key"))
        );
    }

    #[test]
    fn handshake_tags_and_ids_agree() {
        let tag = handshake_tag("bXNn");
        assert_eq!(parse_handshake_tag(&tag), Some(handshake_id("bXNn")));
        assert_eq!(parse_handshake_tag("bXNn"), None, "3 bytes");
        assert_eq!(parse_handshake_tag("!!"), None);
    }
}
