//! Server-side HTTP Digest verification for SIP REGISTER and INVITE (RFC 2617, RFC 7616,
//! RFC 8760; RFC 3261 §22).
//!
//! The registrar challenges with [`DigestVerifier::challenges`] (one `WWW-Authenticate` /
//! `Proxy-Authenticate` value per algorithm the phone may use, in the phone's order) and checks
//! the answer with [`DigestVerifier::verify`]. Everything is plain strings and explicit time, so
//! nothing here depends on the SIP parser or on a clock.
//!
//! Design choices, each for a reason:
//! - Nonces are stateless: `base64url(issued || random || HMAC-SHA256(secret, issued || random
//!   || realm)[..16])`. Any instance holding the secret can check one after a restart or a
//!   failover, and an attacker cannot mint one. The tag is truncated to 128 bits (half the
//!   output, the RFC 2104 §5 floor) to keep the nonce at 48 characters, because some desk phones
//!   have small nonce buffers.
//! - `stale` is reported only for an authentic nonce *and* a correct response (RFC 7616 §3.3):
//!   a phone with a wrong password is never told to retry silently.
//! - Replay state is the only state: the highest `nc` seen per (nonce, cnonce), in a map bounded
//!   in size and in time (entries die with their nonce's lifetime). Keying by cnonce as well as
//!   nonce loses no protection (the cnonce is inside the digest, so a replay repeats it) and
//!   accepts phones that pick a new cnonce and restart `nc` at 1 for a reused nonce.
//! - Only `qop=auth` is accepted: we always offer it, so a response without `qop` (RFC 2069) is
//!   either a broken phone or a downgrade, and it has no `nc`/`cnonce`, so nothing could stop its
//!   replay within the nonce lifetime. `auth-int` is not offered either.
//! - Every failure is a [`DigestError`]; no input can panic. Parsing is bounded (header, value,
//!   cnonce and parameter-count limits) so a huge header costs no more than a small one.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use md5::Md5;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Default nonce lifetime in seconds: time to answer, yet a short replay horizon.
pub const DEFAULT_NONCE_LIFETIME_SECS: u64 = 300;
/// Default bound on tracked (nonce, cnonce) pairs: far above our phones, a few MiB at worst.
pub const DEFAULT_REPLAY_CAPACITY: usize = 16_384;

/// A nonce issued up to this many seconds "in the future" is accepted: instances sharing a
/// secret may disagree slightly on the time.
const CLOCK_SKEW_SECS: u64 = 30;
const MAX_HEADER_LEN: usize = 4096;
const MAX_VALUE_LEN: usize = 1024;
const MAX_CNONCE_LEN: usize = 256;
const MAX_PARAMS: usize = 32;
const MAX_REALM_LEN: usize = 256;
const TS_LEN: usize = 8;
const RAND_LEN: usize = 12;
const TAG_LEN: usize = 16;
const NONCE_BYTES: usize = TS_LEN + RAND_LEN + TAG_LEN;
/// 36 bytes encode to exactly 48 base64 characters, with no padding and no spare bits, so a
/// nonce string and its bytes correspond one to one.
const NONCE_CHARS: usize = NONCE_BYTES / 3 * 4;

/// A digest algorithm we can verify (RFC 7616 §3.3 names; SHA-512-256 is not offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// RFC 2617 MD5, what most desk phones still speak; also the meaning of an absent parameter.
    #[default]
    Md5,
    /// MD5 with the session HA1 (HA1 hashed again with nonce and cnonce).
    Md5Sess,
    /// RFC 7616 SHA-256.
    Sha256,
    /// SHA-256 with the session HA1.
    Sha256Sess,
}

impl Algorithm {
    /// Parses an `algorithm` parameter case-insensitively; `None` (absent) means MD5.
    pub fn parse(param: Option<&str>) -> Option<Self> {
        let Some(token) = param else {
            return Some(Self::Md5);
        };
        let token = token.trim();
        [Self::Md5, Self::Md5Sess, Self::Sha256, Self::Sha256Sess]
            .into_iter()
            .find(|alg| alg.as_str().eq_ignore_ascii_case(token))
    }

    /// The spelling used on the wire: `MD5`, `MD5-sess`, `SHA-256`, `SHA-256-sess`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Md5Sess => "MD5-sess",
            Self::Sha256 => "SHA-256",
            Self::Sha256Sess => "SHA-256-sess",
        }
    }

    /// Whether HA1 is re-hashed with the nonce and cnonce (the `-sess` variants).
    pub fn is_session(self) -> bool {
        matches!(self, Self::Md5Sess | Self::Sha256Sess)
    }

    fn uses_sha256(self) -> bool {
        matches!(self, Self::Sha256 | Self::Sha256Sess)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lowercase hex of `H(part0:part1:...)` with the algorithm's hash function.
fn hash_joined(alg: Algorithm, parts: &[&str]) -> String {
    fn run<D: Digest>(parts: &[&str]) -> Vec<u8> {
        let mut hasher = D::new();
        for (idx, part) in parts.iter().enumerate() {
            if idx > 0 {
                hasher.update(b":");
            }
            hasher.update(part.as_bytes());
        }
        hasher.finalize().to_vec()
    }
    let bytes = if alg.uses_sha256() {
        run::<Sha256>(parts)
    } else {
        run::<Md5>(parts)
    };
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

/// The storable HA1 = H(username:realm:password); a `-sess` algorithm gives its plain form,
/// because the session step needs the nonces and happens at verification.
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    hash_joined(algorithm, &[username, realm, password])
}

/// The `response` value for `qop=auth` (RFC 7616 §3.4.1); `base_ha1` is what [`ha1`] returns.
#[allow(clippy::too_many_arguments)] // the RFC formula has exactly these inputs
fn response_digest(
    alg: Algorithm,
    base_ha1: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
    qop: &str,
    method: &str,
    uri: &str,
) -> String {
    let session_ha1;
    let ha1 = if alg.is_session() {
        session_ha1 = hash_joined(alg, &[base_ha1, nonce, cnonce]);
        session_ha1.as_str()
    } else {
        base_ha1
    };
    let ha2 = hash_joined(alg, &[method, uri]);
    hash_joined(alg, &[ha1, nonce, nc, cnonce, qop, &ha2])
}

/// What we store for a phone: its password, or its HA1s so no plaintext sits in config.
#[derive(Clone)]
pub enum Secret {
    /// The plaintext password; HA1 is computed per algorithm at verification.
    Password(String),
    /// Precomputed [`ha1`] values (bound to our realm); a missing one disables that hash family.
    Ha1 {
        /// HA1 for MD5 and MD5-sess.
        md5: Option<String>,
        /// HA1 for SHA-256 and SHA-256-sess.
        sha256: Option<String>,
    },
}

impl fmt::Debug for Secret {
    // Never print a password or an HA1 (an HA1 is as good as the password for this realm).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Password(_) => f.write_str("Password([REDACTED])"),
            Self::Ha1 { md5, sha256 } => f
                .debug_struct("Ha1")
                .field("md5", &md5.as_ref().map(|_| "[REDACTED]"))
                .field("sha256", &sha256.as_ref().map(|_| "[REDACTED]"))
                .finish(),
        }
    }
}

/// What the lookup returns for a username: its secret and the algorithms it may use.
#[derive(Clone, Debug)]
pub struct PhoneSecret {
    /// The password or HA1s.
    pub secret: Secret,
    /// The algorithms this phone may answer with; also the order to challenge it in.
    pub algorithms: Vec<Algorithm>,
}

impl PhoneSecret {
    /// A phone known by its plaintext password.
    pub fn password(password: impl Into<String>, algorithms: &[Algorithm]) -> Self {
        Self {
            secret: Secret::Password(password.into()),
            algorithms: algorithms.to_vec(),
        }
    }

    /// A phone known by its HA1s (see [`ha1`]).
    pub fn ha1(md5: Option<String>, sha256: Option<String>, algorithms: &[Algorithm]) -> Self {
        Self {
            secret: Secret::Ha1 { md5, sha256 },
            algorithms: algorithms.to_vec(),
        }
    }

    fn base_ha1(&self, alg: Algorithm, username: &str, realm: &str) -> Option<String> {
        match &self.secret {
            Secret::Password(pw) => Some(ha1(alg, username, realm, pw)),
            Secret::Ha1 { md5, sha256 } => {
                let stored = if alg.uses_sha256() { sha256 } else { md5 };
                stored.as_ref().map(|h| h.trim().to_ascii_lowercase())
            }
        }
    }
}

/// A request that passed digest verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedUser {
    /// The authenticated username, as sent and as given to the lookup.
    pub username: String,
    /// The algorithm the phone used.
    pub algorithm: Algorithm,
    /// The nonce count of this request.
    pub nc: u32,
    /// The raw `uri=` value that was hashed; the caller should check it names the Request-URI.
    pub uri: String,
}

/// Why a credential was refused; answer `UnknownUser` like `BadResponse` (no user enumeration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The header cannot be parsed or lacks what `qop=auth` needs; the reason is for logs.
    #[error("malformed digest credentials: {0}")]
    Malformed(&'static str),
    /// The lookup does not know the username.
    #[error("unknown user")]
    UnknownUser,
    /// The credentials are for another realm.
    #[error("credentials for another realm")]
    WrongRealm,
    /// The algorithm is unknown, or not in the phone's list, or its HA1 is not stored.
    #[error("algorithm not allowed for this user")]
    AlgorithmNotAllowed,
    /// Authentic nonce and correct response, but the nonce expired: re-challenge with `stale=true`.
    #[error("stale nonce")]
    Stale,
    /// This `nc` was already used (or a lower one after a higher) for this nonce and cnonce.
    #[error("replayed nonce count")]
    Replay,
    /// Wrong response, or a nonce we did not issue (forged, other secret, other realm).
    #[error("digest response does not verify")]
    BadResponse,
}

/// The realm given to [`DigestVerifier::new`] cannot be put in a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("realm must be 1..=256 bytes without control characters")]
pub struct InvalidRealm;

/// Issues challenges and verifies Authorization values for one realm; `Send + Sync`, share it.
pub struct DigestVerifier {
    realm: String,
    /// HMAC keyed once with the server secret, cloned per nonce.
    mac: HmacSha256,
    lifetime: u64,
    capacity: usize,
    replay: Mutex<ReplayState>,
}

/// Highest `nc` per (issued, nonce random part, cnonce); ordered by issue time so old
/// nonces are dropped with one `split_off`.
#[derive(Default)]
struct ReplayState {
    seen: BTreeMap<(u64, [u8; RAND_LEN], String), u32>,
    /// Nonces issued before this time may have had their state forgotten, so they are refused
    /// as stale whatever `now` says (this survives a clock stepping backwards).
    floor: u64,
}

impl fmt::Debug for DigestVerifier {
    // The secret stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestVerifier")
            .field("realm", &self.realm)
            .field("lifetime", &self.lifetime)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl DigestVerifier {
    /// A verifier for `realm` with a fresh random 32-byte secret and the default limits.
    pub fn new(realm: impl Into<String>) -> Result<Self, InvalidRealm> {
        let realm = realm.into();
        if realm.is_empty() || realm.len() > MAX_REALM_LEN || realm.chars().any(char::is_control) {
            return Err(InvalidRealm);
        }
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        Ok(Self {
            mac: keyed_mac(&secret),
            realm,
            lifetime: DEFAULT_NONCE_LIFETIME_SECS,
            capacity: DEFAULT_REPLAY_CAPACITY,
            replay: Mutex::new(ReplayState::default()),
        })
    }

    /// Uses a given secret so other instances and restarts accept our nonces.
    pub fn with_secret(mut self, secret: [u8; 32]) -> Self {
        // Replay state is still per instance: keep a phone's requests on one instance.
        self.mac = keyed_mac(&secret);
        self
    }

    /// How long a nonce stays fresh, in seconds.
    pub fn with_nonce_lifetime(mut self, secs: u64) -> Self {
        self.lifetime = secs;
        self
    }

    /// Bound on tracked (nonce, cnonce) pairs, the `nc` replay window's memory.
    pub fn with_replay_capacity(mut self, pairs: usize) -> Self {
        // When full, the oldest nonces are forgotten and from then on refused as stale (never
        // accepted again), so a full map costs a phone one re-challenge, never a replay.
        self.capacity = pairs.max(1);
        self
    }

    /// The realm this verifier challenges for.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// How many (nonce, cnonce) pairs the replay map holds now, for metrics and leak tests.
    pub fn tracked_pairs(&self) -> usize {
        self.lock().seen.len()
    }

    /// A fresh nonce issued at `now` (unix seconds).
    pub fn new_nonce(&self, now: u64) -> String {
        let mut random = [0u8; RAND_LEN];
        rand::thread_rng().fill_bytes(&mut random);
        self.make_nonce(now, random)
    }

    /// One `WWW-Authenticate` value per algorithm, in the given order, sharing one nonce.
    pub fn challenges(&self, algorithms: &[Algorithm], stale: bool, now: u64) -> Vec<String> {
        // One nonce for all: it proves freshness, not the algorithm (the phone's allowed list
        // is what stops a downgrade), and it means one replay entry per challenge. The order
        // is the caller's because some phones read only the first header. Duplicates dropped.
        let nonce = self.new_nonce(now);
        let realm = quote(&self.realm);
        let mut out = Vec::with_capacity(algorithms.len());
        for (idx, alg) in algorithms.iter().enumerate() {
            if algorithms[..idx].contains(alg) {
                continue;
            }
            let mut value = format!(
                "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"",
                alg.as_str()
            );
            if stale {
                value.push_str(", stale=true");
            }
            out.push(value);
        }
        out
    }

    /// Checks one (Proxy-)Authorization value at `now` and records its `nc` against replay.
    pub fn verify<F>(
        &self,
        authorization: &str,
        method: &str,
        lookup: F,
        now: u64,
    ) -> Result<VerifiedUser, DigestError>
    where
        F: Fn(&str) -> Option<PhoneSecret>,
    {
        let params = parse_credentials(authorization).map_err(DigestError::Malformed)?;
        let get = |name: &str| {
            params
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        let need = |name: &str, why: &'static str| get(name).ok_or(DigestError::Malformed(why));

        let username = need("username", "missing username")?;
        let realm = need("realm", "missing realm")?;
        let nonce = need("nonce", "missing nonce")?;
        let uri = need("uri", "missing uri")?;
        let response = need("response", "missing response")?;
        if username.is_empty() || uri.is_empty() {
            return Err(DigestError::Malformed("empty username or uri"));
        }
        if get("userhash").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            // We never offer userhash (RFC 7616 §3.4.4), so the username would not be found.
            return Err(DigestError::Malformed("userhash not offered"));
        }
        let qop = match get("qop") {
            None => return Err(DigestError::Malformed("no qop (RFC 2069 style is refused)")),
            Some(q) if q.eq_ignore_ascii_case("auth") => q,
            Some(_) => return Err(DigestError::Malformed("unsupported qop")),
        };
        let nc_raw = need("nc", "missing nc")?;
        let nc = parse_nc(nc_raw).ok_or(DigestError::Malformed("nc is not 8 hex digits > 0"))?;
        let cnonce = need("cnonce", "missing cnonce")?;
        if cnonce.is_empty() || cnonce.len() > MAX_CNONCE_LEN {
            return Err(DigestError::Malformed("bad cnonce length"));
        }
        let algorithm =
            Algorithm::parse(get("algorithm")).ok_or(DigestError::AlgorithmNotAllowed)?;

        if realm != self.realm {
            return Err(DigestError::WrongRealm);
        }
        let (issued, random) = self.open_nonce(nonce).ok_or(DigestError::BadResponse)?;
        let phone = lookup(username).ok_or(DigestError::UnknownUser)?;
        if !phone.algorithms.contains(&algorithm) {
            return Err(DigestError::AlgorithmNotAllowed);
        }
        let base = phone
            .base_ha1(algorithm, username, &self.realm)
            .ok_or(DigestError::AlgorithmNotAllowed)?;
        let expected = response_digest(algorithm, &base, nonce, nc_raw, cnonce, qop, method, uri);
        // Hex case carries no meaning; compare in constant time so timing leaks no prefix.
        let got = response.to_ascii_lowercase();
        if !bool::from(expected.as_bytes().ct_eq(got.as_bytes())) {
            return Err(DigestError::BadResponse);
        }

        // The digest is right: only now may time say "stale" (RFC 7616 §3.3).
        if issued > now.saturating_add(CLOCK_SKEW_SECS)
            || now.saturating_sub(issued) > self.lifetime
        {
            return Err(DigestError::Stale);
        }
        self.record_nc(issued, random, cnonce, nc, now)?;
        Ok(VerifiedUser {
            username: username.to_owned(),
            algorithm,
            nc,
            uri: uri.to_owned(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReplayState> {
        // Nothing panics while holding the lock, but never let poisoning become a panic.
        self.replay.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record_nc(
        &self,
        issued: u64,
        random: [u8; RAND_LEN],
        cnonce: &str,
        nc: u32,
        now: u64,
    ) -> Result<(), DigestError> {
        let mut state = self.lock();
        // Forget every nonce that is stale by now; it is refused by age from here on, and by
        // the floor should the caller's clock step back.
        let cutoff = now.saturating_sub(self.lifetime);
        if cutoff > state.floor {
            let keep = state
                .seen
                .split_off(&(cutoff, [0; RAND_LEN], String::new()));
            state.seen = keep;
            state.floor = cutoff;
        }
        let key = (issued, random, cnonce.to_owned());
        if let Some(last) = state.seen.get_mut(&key) {
            if nc <= *last {
                return Err(DigestError::Replay);
            }
            *last = nc;
            return Ok(());
        }
        while state.seen.len() >= self.capacity {
            let Some(oldest) = state.seen.keys().next().map(|k| k.0) else {
                break;
            };
            // Drop every pair of the oldest issue second, so the floor is exact.
            match oldest.checked_add(1) {
                Some(next) => {
                    let keep = state.seen.split_off(&(next, [0; RAND_LEN], String::new()));
                    state.seen = keep;
                    state.floor = state.floor.max(next);
                }
                None => {
                    state.seen.clear();
                    state.floor = u64::MAX;
                }
            }
        }
        // Below the floor (aged out, evicted, or the clock stepped back): its state may be
        // gone, so it must not be accepted as if new.
        if issued < state.floor {
            return Err(DigestError::Stale);
        }
        state.seen.insert(key, nc);
        Ok(())
    }

    fn make_nonce(&self, issued: u64, random: [u8; RAND_LEN]) -> String {
        let mut raw = [0u8; NONCE_BYTES];
        raw[..TS_LEN].copy_from_slice(&issued.to_be_bytes());
        raw[TS_LEN..TS_LEN + RAND_LEN].copy_from_slice(&random);
        let mut mac = self.mac.clone();
        mac.update(&raw[..TS_LEN + RAND_LEN]);
        mac.update(self.realm.as_bytes());
        let tag = mac.finalize().into_bytes();
        raw[TS_LEN + RAND_LEN..].copy_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The issue time and random part of a nonce we issued, or `None` for any other string.
    fn open_nonce(&self, nonce: &str) -> Option<(u64, [u8; RAND_LEN])> {
        if nonce.len() != NONCE_CHARS {
            return None;
        }
        let raw: [u8; NONCE_BYTES] = URL_SAFE_NO_PAD.decode(nonce).ok()?.try_into().ok()?;
        let (body, tag) = raw.split_at(TS_LEN + RAND_LEN);
        let mut mac = self.mac.clone();
        mac.update(body);
        mac.update(self.realm.as_bytes());
        mac.verify_truncated_left(tag).ok()?;
        let issued = u64::from_be_bytes(body.get(..TS_LEN)?.try_into().ok()?);
        let random = body.get(TS_LEN..)?.try_into().ok()?;
        Some((issued, random))
    }
}

fn keyed_mac(secret: &[u8; 32]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes any key length")
}

/// Escapes a value for a quoted-string.
fn quote(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `nc` is exactly 8 hex digits (RFC 7616 §3.4) and counts from 1.
fn parse_nc(raw: &str) -> Option<u32> {
    if raw.len() != 8 || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(raw, 16).ok().filter(|&n| n > 0)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ws(b: u8) -> bool {
    // CR and LF too, in case a folded header value reaches us unfolded by nobody.
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// An unquoted value: lenient (some phones send `uri=sip:x` or `nc=00000001` bare), but it
/// stops at whitespace, comma and quote so the list structure stays unambiguous.
fn is_bare_value(b: u8) -> bool {
    b.is_ascii_graphic() && b != b',' && b != b'"' && b != b'\\'
}

/// Parses `Digest name=value, name="quoted", ...` into lowercase names and unescaped values.
/// Duplicated names are refused: two parsers picking different copies is how digest bypasses
/// happen.
fn parse_credentials(input: &str) -> Result<Vec<(String, String)>, &'static str> {
    if input.len() > MAX_HEADER_LEN {
        return Err("header too long");
    }
    let b = input.as_bytes();
    let at = |i: usize| b.get(i).copied();
    let skip_ws = |mut i: usize| {
        while at(i).is_some_and(is_ws) {
            i += 1;
        }
        i
    };

    let mut i = skip_ws(0);
    let scheme_start = i;
    while at(i).is_some_and(is_tchar) {
        i += 1;
    }
    let scheme = input.get(scheme_start..i).ok_or("bad scheme")?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err("scheme is not Digest");
    }
    if !at(i).is_some_and(is_ws) {
        return Err("no parameters after the scheme");
    }

    let mut out: Vec<(String, String)> = Vec::new();
    loop {
        // Empty list elements (`a=1,,b=2`) are allowed by the #rule.
        while at(i).is_some_and(|c| is_ws(c) || c == b',') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let name_start = i;
        while at(i).is_some_and(is_tchar) {
            i += 1;
        }
        if i == name_start {
            return Err("expected a parameter name");
        }
        let name = input
            .get(name_start..i)
            .ok_or("bad parameter name")?
            .to_ascii_lowercase();
        i = skip_ws(i);
        if at(i) != Some(b'=') {
            return Err("expected '=' after a parameter name");
        }
        i = skip_ws(i + 1);

        let value = if at(i) == Some(b'"') {
            i += 1;
            let mut bytes = Vec::new();
            loop {
                let byte = match at(i) {
                    None => return Err("unterminated quoted string"),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        i += 1;
                        at(i).ok_or("unterminated quoted string")?
                    }
                    Some(c) => c,
                };
                if byte != b'\t' && (byte < 0x20 || byte == 0x7f) {
                    return Err("control character in a quoted string");
                }
                bytes.push(byte);
                i += 1;
                if bytes.len() > MAX_VALUE_LEN {
                    return Err("value too long");
                }
            }
            // Only ASCII backslashes were removed from valid UTF-8, so this cannot fail, but a
            // bug here must not become a panic.
            String::from_utf8(bytes).map_err(|_| "invalid UTF-8 in a quoted string")?
        } else {
            let start = i;
            while at(i).is_some_and(is_bare_value) {
                i += 1;
            }
            if i == start {
                return Err("missing value");
            }
            if i - start > MAX_VALUE_LEN {
                return Err("value too long");
            }
            input.get(start..i).ok_or("bad value")?.to_owned()
        };

        if out.iter().any(|(seen, _)| *seen == name) {
            return Err("duplicate parameter");
        }
        if out.len() >= MAX_PARAMS {
            return Err("too many parameters");
        }
        out.push((name, value));

        i = skip_ws(i);
        match at(i) {
            None => break,
            Some(b',') => {}
            Some(_) => return Err("expected ',' between parameters"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipx_sip::auth;

    const REALM: &str = "madoguchi.example";
    const T0: u64 = 1_795_000_000; // November 2026
    const URI: &str = "sip:madoguchi.example";

    fn verifier() -> DigestVerifier {
        DigestVerifier::new(REALM)
            .expect("valid realm")
            .with_secret([7; 32])
    }

    const ALL: [Algorithm; 4] = [
        Algorithm::Md5,
        Algorithm::Md5Sess,
        Algorithm::Sha256,
        Algorithm::Sha256Sess,
    ];

    fn phones(name: &str) -> Option<PhoneSecret> {
        match name {
            "alice" => Some(PhoneSecret::password("s3cret", &ALL)),
            "bob" => Some(PhoneSecret::password("hunter2", &[Algorithm::Sha256])),
            "carol" => Some(PhoneSecret::ha1(
                Some(ha1(Algorithm::Md5, "carol", REALM, "pw")),
                Some(ha1(Algorithm::Sha256, "carol", REALM, "pw").to_ascii_uppercase()),
                &ALL,
            )),
            "dave" => Some(PhoneSecret::ha1(
                Some(ha1(Algorithm::Md5, "dave", REALM, "pw")),
                None,
                &ALL,
            )),
            _ => None,
        }
    }

    /// The sipx client's answer to our challenge value.
    fn answer(challenge: &str, user: &str, pw: &str, method: &str, nc: u32, cn: &str) -> String {
        let parsed = auth::Challenge::parse(challenge.as_bytes(), false).expect("client parses");
        auth::respond(
            &parsed,
            &auth::Credentials::new(user, pw),
            method,
            URI,
            nc,
            cn,
        )
    }

    fn challenge(v: &DigestVerifier, alg: Algorithm, now: u64) -> String {
        v.challenges(&[alg], false, now).remove(0)
    }

    fn param(header: &str, name: &str) -> String {
        let params = parse_credentials(header).expect("parses");
        params
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .expect("present")
    }

    // --- RFC vectors -------------------------------------------------------------------

    const RFC_NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const RFC_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    const RFC_REALM: &str = "http-auth@example.org";

    #[test]
    fn rfc7616_md5_vector() {
        let base = ha1(Algorithm::Md5, "Mufasa", RFC_REALM, "Circle of Life");
        let r = response_digest(
            Algorithm::Md5,
            &base,
            RFC_NONCE,
            "00000001",
            RFC_CNONCE,
            "auth",
            "GET",
            "/dir/index.html",
        );
        assert_eq!(r, "8ca523f5e9506fed4657c9700eebdbec");
    }

    #[test]
    fn rfc7616_sha256_vector() {
        let base = ha1(Algorithm::Sha256, "Mufasa", RFC_REALM, "Circle of Life");
        let r = response_digest(
            Algorithm::Sha256,
            &base,
            RFC_NONCE,
            "00000001",
            RFC_CNONCE,
            "auth",
            "GET",
            "/dir/index.html",
        );
        assert_eq!(
            r,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn rfc2617_md5_vector() {
        // RFC 2617 §3.5 (password with capital "Of" there).
        let base = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        let r = response_digest(
            Algorithm::Md5,
            &base,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "00000001",
            "0a4f113b",
            "auth",
            "GET",
            "/dir/index.html",
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn sess_ha1_is_plain_ha1_hashed_with_nonces() {
        assert_eq!(
            ha1(Algorithm::Md5Sess, "u", "r", "p"),
            ha1(Algorithm::Md5, "u", "r", "p")
        );
        let plain = response_digest(Algorithm::Md5, "h", "n", "00000001", "c", "auth", "M", "u");
        let sess = response_digest(
            Algorithm::Md5Sess,
            "h",
            "n",
            "00000001",
            "c",
            "auth",
            "M",
            "u",
        );
        assert_ne!(plain, sess);
        let session_ha1 = hash_joined(Algorithm::Md5, &["h", "n", "c"]);
        assert_eq!(
            sess,
            response_digest(
                Algorithm::Md5,
                &session_ha1,
                "n",
                "00000001",
                "c",
                "auth",
                "M",
                "u"
            )
        );
    }

    #[test]
    fn algorithm_parse_and_names() {
        assert_eq!(Algorithm::parse(None), Some(Algorithm::Md5));
        for alg in ALL {
            assert_eq!(Algorithm::parse(Some(alg.as_str())), Some(alg));
            assert_eq!(
                Algorithm::parse(Some(&alg.as_str().to_ascii_lowercase())),
                Some(alg)
            );
            assert_eq!(
                Algorithm::parse(Some(&alg.as_str().to_ascii_uppercase())),
                Some(alg)
            );
        }
        assert_eq!(Algorithm::parse(Some("SHA-512-256")), None);
        assert_eq!(Algorithm::parse(Some("")), None);
        assert_eq!(Algorithm::Sha256Sess.to_string(), "SHA-256-sess");
    }

    // --- round trips with sipx-sip's client ------------------------------------------------

    #[test]
    fn round_trip_each_algorithm_with_sipx_client() {
        let v = verifier();
        for alg in ALL {
            let ch = challenge(&v, alg, T0);
            let parsed = auth::Challenge::parse(ch.as_bytes(), false).expect("parses");
            assert_eq!(parsed.algorithm.as_str(), alg.as_str());
            assert!(parsed.qop_auth);
            for method in ["REGISTER", "INVITE"] {
                let cn = format!("cn-{}-{method}", alg.as_str());
                let h = answer(&ch, "alice", "s3cret", method, 1, &cn);
                let ok = v.verify(&h, method, phones, T0 + 5).expect("verifies");
                assert_eq!(ok.username, "alice");
                assert_eq!(ok.algorithm, alg);
                assert_eq!(ok.nc, 1);
                assert_eq!(ok.uri, URI);
                // The method is part of HA2.
                let other = if method == "INVITE" {
                    "REGISTER"
                } else {
                    "INVITE"
                };
                let h2 = answer(&ch, "alice", "s3cret", method, 2, &cn);
                assert_eq!(
                    v.verify(&h2, other, phones, T0 + 5),
                    Err(DigestError::BadResponse)
                );
            }
        }
    }

    #[test]
    fn stored_ha1_verifies_like_a_password() {
        let v = verifier();
        for alg in ALL {
            let ch = challenge(&v, alg, T0);
            let h = answer(&ch, "carol", "pw", "REGISTER", 1, "x");
            assert_eq!(
                v.verify(&h, "REGISTER", phones, T0).map(|u| u.algorithm),
                Ok(alg)
            );
            let h = answer(&ch, "dave", "pw", "REGISTER", 1, "y");
            let expect = if alg.uses_sha256() {
                Err(DigestError::AlgorithmNotAllowed)
            } else {
                Ok(alg)
            };
            assert_eq!(
                v.verify(&h, "REGISTER", phones, T0).map(|u| u.algorithm),
                expect
            );
        }
    }

    #[test]
    fn challenge_list_order_and_client_choice() {
        let v = verifier();
        let list = v.challenges(&[Algorithm::Sha256, Algorithm::Md5], false, T0);
        assert_eq!(list.len(), 2);
        assert!(list[0].contains("algorithm=SHA-256,"), "{}", list[0]);
        assert!(list[1].contains("algorithm=MD5,"), "{}", list[1]);
        assert_eq!(param(&list[0], "nonce"), param(&list[1], "nonce"));
        assert!(!list[0].contains("stale"));
        let parsed: Vec<_> = list
            .iter()
            .map(|c| auth::Challenge::parse(c.as_bytes(), false).expect("parses"))
            .collect();
        let top = auth::topmost_supported(parsed.clone()).expect("one");
        assert_eq!(top.algorithm, auth::Algorithm::Sha256);
        assert_eq!(
            auth::strongest(parsed).expect("one").algorithm,
            auth::Algorithm::Sha256
        );
        // Answer the client's pick, and verify it.
        let h = auth::respond(
            &top,
            &auth::Credentials::new("alice", "s3cret"),
            "REGISTER",
            URI,
            1,
            "abc",
        );
        assert_eq!(
            v.verify(&h, "REGISTER", phones, T0).map(|u| u.algorithm),
            Ok(Algorithm::Sha256)
        );

        // A phone that reads only the first header gets the one we put first.
        let md5_first = v.challenges(
            &[Algorithm::Md5, Algorithm::Sha256, Algorithm::Md5],
            true,
            T0,
        );
        assert_eq!(md5_first.len(), 2, "duplicates dropped");
        let parsed: Vec<_> = md5_first
            .iter()
            .map(|c| auth::Challenge::parse(c.as_bytes(), false).expect("parses"))
            .collect();
        assert!(parsed.iter().all(|c| c.stale));
        assert_eq!(
            auth::topmost_supported(parsed).expect("one").algorithm,
            auth::Algorithm::Md5
        );
        assert!(v.challenges(&[], false, T0).is_empty());
    }

    #[test]
    fn realm_is_escaped_in_challenges_and_invalid_realms_refused() {
        let v = DigestVerifier::new(r#"odd "realm" \ x"#).expect("printable");
        let ch = challenge(&v, Algorithm::Sha256, T0);
        let parsed = auth::Challenge::parse(ch.as_bytes(), false).expect("parses");
        assert_eq!(parsed.realm, r#"odd "realm" \ x"#);
        let h = answer(&ch, "alice", "s3cret", "REGISTER", 1, "c");
        let lookup = |u: &str| (u == "alice").then(|| PhoneSecret::password("s3cret", &ALL));
        assert!(v.verify(&h, "REGISTER", lookup, T0).is_ok());
        assert_eq!(
            DigestVerifier::new("a\r\nX-Evil: 1").map(|_| ()),
            Err(InvalidRealm)
        );
        assert_eq!(DigestVerifier::new("").map(|_| ()), Err(InvalidRealm));
        assert_eq!(
            DigestVerifier::new("r".repeat(300)).map(|_| ()),
            Err(InvalidRealm)
        );
    }

    #[test]
    fn raw_uri_is_hashed_as_sent() {
        let v = verifier();
        let ch = challenge(&v, Algorithm::Sha256, T0);
        let parsed = auth::Challenge::parse(ch.as_bytes(), false).expect("parses");
        let uri = r#"sip:Op1@MadoGuchi.example;transport=TCP;x="a,b""#;
        let h = auth::respond(
            &parsed,
            &auth::Credentials::new("alice", "s3cret"),
            "INVITE",
            uri,
            1,
            "c",
        );
        let ok = v.verify(&h, "INVITE", phones, T0).expect("verifies");
        assert_eq!(ok.uri, uri);
    }

    // --- freshness, forgery, replay ---------------------------------------------------------

    #[test]
    fn stale_only_for_authentic_nonce_with_right_response() {
        let v = verifier().with_nonce_lifetime(300);
        let ch = challenge(&v, Algorithm::Sha256, T0);
        let h = |nc| answer(&ch, "alice", "s3cret", "REGISTER", nc, "c");
        assert!(v.verify(&h(1), "REGISTER", phones, T0 + 300).is_ok());
        assert_eq!(
            v.verify(&h(2), "REGISTER", phones, T0 + 301),
            Err(DigestError::Stale)
        );
        // Wrong password on an expired nonce: not stale, so the phone is not told to retry.
        let wrong = answer(&ch, "alice", "nope", "REGISTER", 3, "c");
        assert_eq!(
            v.verify(&wrong, "REGISTER", phones, T0 + 10_000),
            Err(DigestError::BadResponse)
        );
        // A nonce from far in the future (another instance's clock) is stale, within skew fine.
        let future = challenge(&v, Algorithm::Sha256, T0 + 3600);
        let fh = answer(&future, "alice", "s3cret", "REGISTER", 1, "c");
        assert_eq!(
            v.verify(&fh, "REGISTER", phones, T0),
            Err(DigestError::Stale)
        );
        let near = challenge(&v, Algorithm::Sha256, T0 + 20);
        let nh = answer(&near, "alice", "s3cret", "REGISTER", 1, "c");
        assert!(v.verify(&nh, "REGISTER", phones, T0).is_ok());
    }

    #[test]
    fn forged_nonces_are_never_stale() {
        let v = verifier();
        let other_secret = DigestVerifier::new(REALM)
            .expect("realm")
            .with_secret([8; 32]);
        let other_realm = DigestVerifier::new("elsewhere.example")
            .expect("realm")
            .with_secret([7; 32]);
        let good = v.new_nonce(T0);
        let mut flipped: Vec<char> = good.chars().collect();
        flipped[30] = if flipped[30] == 'A' { 'B' } else { 'A' };
        let flipped: String = flipped.into_iter().collect();
        // Same issue time and randomness, but a tag computed for another realm.
        let realm_swapped = {
            let raw = URL_SAFE_NO_PAD.decode(&good).expect("b64");
            let random: [u8; RAND_LEN] = raw[8..20].try_into().expect("12");
            other_realm.make_nonce(T0, random)
        };
        let forged = [
            flipped,
            other_secret.new_nonce(T0),
            realm_swapped,
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v".to_owned(),
            "A".repeat(48),
            String::new(),
            "%%%%".repeat(12),
        ];
        for nonce in forged {
            let ch =
                format!(r#"Digest realm="{REALM}", nonce="{nonce}", qop="auth", algorithm=MD5"#);
            let h = answer(&ch, "alice", "s3cret", "REGISTER", 1, "c");
            for now in [T0, T0 + 1_000_000, u64::MAX] {
                let r = v.verify(&h, "REGISTER", phones, now);
                assert!(
                    matches!(r, Err(DigestError::BadResponse | DigestError::Malformed(_))),
                    "{nonce}: {r:?}"
                );
            }
        }
    }

    #[test]
    fn shared_secret_lets_instances_accept_each_others_nonces() {
        let a = verifier();
        let b = verifier();
        let ch = challenge(&a, Algorithm::Md5, T0);
        let h = answer(&ch, "alice", "s3cret", "REGISTER", 1, "c");
        assert!(b.verify(&h, "REGISTER", phones, T0 + 1).is_ok());
    }

    #[test]
    fn replayed_nc_refused_increasing_nc_accepted() {
        let v = verifier();
        let ch = challenge(&v, Algorithm::Md5, T0);
        let h = |nc, cn: &str| answer(&ch, "alice", "s3cret", "REGISTER", nc, cn);
        assert!(v.verify(&h(1, "a"), "REGISTER", phones, T0).is_ok());
        assert_eq!(
            v.verify(&h(1, "a"), "REGISTER", phones, T0),
            Err(DigestError::Replay)
        );
        assert_eq!(
            v.verify(&h(3, "a"), "REGISTER", phones, T0 + 1)
                .map(|u| u.nc),
            Ok(3)
        );
        assert_eq!(
            v.verify(&h(2, "a"), "REGISTER", phones, T0 + 1),
            Err(DigestError::Replay),
            "lower than the last seen"
        );
        assert_eq!(
            v.verify(&h(3, "a"), "REGISTER", phones, T0 + 1),
            Err(DigestError::Replay)
        );
        assert!(v.verify(&h(4, "a"), "REGISTER", phones, T0 + 2).is_ok());
        assert!(v
            .verify(&h(0x1_0000, "a"), "REGISTER", phones, T0 + 2)
            .is_ok());
        // A new cnonce has its own count (the cnonce is inside the digest).
        assert!(v.verify(&h(1, "b"), "REGISTER", phones, T0 + 2).is_ok());
        assert_eq!(
            v.verify(&h(1, "b"), "REGISTER", phones, T0 + 2),
            Err(DigestError::Replay)
        );
        // A failed attempt does not advance the count.
        let wrong = answer(&ch, "alice", "bad", "REGISTER", 9, "c");
        assert_eq!(
            v.verify(&wrong, "REGISTER", phones, T0 + 2),
            Err(DigestError::BadResponse)
        );
        assert!(v.verify(&h(9, "c"), "REGISTER", phones, T0 + 2).is_ok());
        // nc uppercase hex as sent is hashed raw.
        let upper = h(0xab, "d").replace("nc=000000ab", "nc=000000AB");
        assert_eq!(
            v.verify(&upper, "REGISTER", phones, T0 + 2),
            Err(DigestError::BadResponse)
        );
    }

    #[test]
    fn replay_map_forgets_old_nonces_and_stays_bounded() {
        let v = verifier().with_nonce_lifetime(300);
        for step in 0..2_000u64 {
            let now = T0 + step;
            let ch = challenge(&v, Algorithm::Md5, now);
            let h = answer(&ch, "alice", "s3cret", "REGISTER", 1, "c");
            assert!(v.verify(&h, "REGISTER", phones, now).is_ok());
            // Only nonces of the last `lifetime` seconds are kept.
            assert!(v.tracked_pairs() <= 301, "{}", v.tracked_pairs());
        }
        let last = challenge(&v, Algorithm::Md5, T0 + 10_000);
        let h = answer(&last, "alice", "s3cret", "REGISTER", 1, "c");
        assert!(v.verify(&h, "REGISTER", phones, T0 + 10_000).is_ok());
        assert_eq!(v.tracked_pairs(), 1);
    }

    #[test]
    fn capacity_eviction_never_reopens_a_replay() {
        let v = verifier().with_replay_capacity(4);
        let first = challenge(&v, Algorithm::Md5, T0);
        let h1 = answer(&first, "alice", "s3cret", "REGISTER", 1, "c");
        assert!(v.verify(&h1, "REGISTER", phones, T0).is_ok());
        for k in 1..=10u64 {
            let ch = challenge(&v, Algorithm::Md5, T0 + k);
            let h = answer(&ch, "alice", "s3cret", "REGISTER", 1, "c");
            assert!(v.verify(&h, "REGISTER", phones, T0 + k).is_ok());
            assert!(v.tracked_pairs() <= 4);
        }
        // The first nonce's state was evicted: its replay is refused as stale, not accepted.
        assert_eq!(
            v.verify(&h1, "REGISTER", phones, T0 + 11),
            Err(DigestError::Stale)
        );
        let h2 = answer(&first, "alice", "s3cret", "REGISTER", 2, "c");
        assert_eq!(
            v.verify(&h2, "REGISTER", phones, T0 + 11),
            Err(DigestError::Stale)
        );
    }

    #[test]
    fn clock_stepping_back_does_not_revive_forgotten_nonces() {
        let v = verifier().with_nonce_lifetime(300);
        let ch = challenge(&v, Algorithm::Md5, T0);
        let h = answer(&ch, "alice", "s3cret", "REGISTER", 1, "c");
        assert!(v.verify(&h, "REGISTER", phones, T0).is_ok());
        let later = challenge(&v, Algorithm::Md5, T0 + 400);
        let hl = answer(&later, "alice", "s3cret", "REGISTER", 1, "c");
        assert!(v.verify(&hl, "REGISTER", phones, T0 + 400).is_ok());
        // The first nonce's entry is gone; the clock steps back into its lifetime.
        assert_eq!(
            v.verify(&h, "REGISTER", phones, T0 + 10),
            Err(DigestError::Stale)
        );
    }

    // --- policy failures --------------------------------------------------------------------

    #[test]
    fn algorithm_not_allowed_for_the_phone() {
        let v = verifier();
        for alg in [Algorithm::Md5, Algorithm::Md5Sess, Algorithm::Sha256Sess] {
            let ch = challenge(&v, alg, T0);
            let h = answer(&ch, "bob", "hunter2", "REGISTER", 1, "c");
            assert_eq!(
                v.verify(&h, "REGISTER", phones, T0),
                Err(DigestError::AlgorithmNotAllowed)
            );
        }
        let ch = challenge(&v, Algorithm::Sha256, T0);
        let h = answer(&ch, "bob", "hunter2", "REGISTER", 1, "c");
        assert!(v.verify(&h, "REGISTER", phones, T0).is_ok());
        let unknown = h.replace("algorithm=SHA-256", "algorithm=SHA-512-256");
        assert_eq!(
            v.verify(&unknown, "REGISTER", phones, T0),
            Err(DigestError::AlgorithmNotAllowed)
        );
        // Absent algorithm means MD5, which bob may not use.
        let absent = h.replace(", algorithm=SHA-256", "");
        assert_eq!(
            v.verify(&absent, "REGISTER", phones, T0),
            Err(DigestError::AlgorithmNotAllowed)
        );
    }

    #[test]
    fn absent_algorithm_verifies_as_md5() {
        let v = verifier();
        let ch = challenge(&v, Algorithm::Md5, T0);
        let h = answer(&ch, "alice", "s3cret", "REGISTER", 1, "c").replace(", algorithm=MD5", "");
        assert!(!h.contains("algorithm"));
        assert_eq!(
            v.verify(&h, "REGISTER", phones, T0).map(|u| u.algorithm),
            Ok(Algorithm::Md5)
        );
    }

    #[test]
    fn wrong_password_unknown_user_wrong_realm() {
        let v = verifier();
        let ch = challenge(&v, Algorithm::Sha256, T0);
        let h = answer(&ch, "alice", "S3cret", "REGISTER", 1, "c");
        assert_eq!(
            v.verify(&h, "REGISTER", phones, T0),
            Err(DigestError::BadResponse)
        );
        let h = answer(&ch, "mallory", "x", "REGISTER", 1, "c");
        assert_eq!(
            v.verify(&h, "REGISTER", phones, T0),
            Err(DigestError::UnknownUser)
        );
        let h = answer(&ch, "alice", "s3cret", "REGISTER", 1, "c").replace(REALM, "other.example");
        assert_eq!(
            v.verify(&h, "REGISTER", phones, T0),
            Err(DigestError::WrongRealm)
        );
        // The response's hex case does not matter.
        let h = answer(&ch, "alice", "s3cret", "REGISTER", 2, "c");
        let resp = param(&h, "response");
        let upper = h.replace(&resp, &resp.to_ascii_uppercase());
        assert!(v.verify(&upper, "REGISTER", phones, T0).is_ok());
    }

    // --- parsing ------------------------------------------------------------------------------

    #[test]
    fn parser_handles_real_world_shapes() {
        let v = verifier();
        let nonce = v.new_nonce(T0);
        let base = ha1(Algorithm::Md5, "al\"ice", REALM, "pw");
        let uri = "sip:madoguchi.example;x=\"a,b\"";
        let resp = response_digest(
            Algorithm::Md5,
            &base,
            &nonce,
            "00000001",
            "x,y",
            "auth",
            "REGISTER",
            uri,
        );
        let lookup = |u: &str| (u == "al\"ice").then(|| PhoneSecret::password("pw", &ALL));
        // Mixed-case names, quoted qop/nc/algorithm, tabs, empty list elements, an unknown
        // parameter, escapes, commas inside quotes, parameters in any order.
        let header = format!(
            "  dIgEsT\tUSERNAME=\"al\\\"ice\" ,, Realm = \"{REALM}\",\tNonce=\"{nonce}\", \
             URI=\"sip:madoguchi.example;x=\\\"a,b\\\"\", Response=\"{resp}\", \
             QOP=\"auth\", NC=\"00000001\", CNonce=\"x,y\", Algorithm=\"md5\", opaque=\"\", \
             foo=bar ,"
        );
        let ok = v.verify(&header, "REGISTER", lookup, T0).expect("verifies");
        assert_eq!(ok.username, "al\"ice");
        assert_eq!(ok.uri, uri);
        // Bare token values are accepted too.
        let bare = format!(
            "Digest username=\"al\\\"ice\",realm=\"{REALM}\",nonce=\"{nonce}\",\
             uri=\"{}\",response={resp},qop=auth,nc=00000002,cnonce=\"x,y\"",
            uri.replace('"', "\\\"")
        );
        let resp2 = response_digest(
            Algorithm::Md5,
            &base,
            &nonce,
            "00000002",
            "x,y",
            "auth",
            "REGISTER",
            uri,
        );
        let bare = bare.replace(&resp, &resp2);
        assert!(v.verify(&bare, "REGISTER", lookup, T0).is_ok());
    }

    #[test]
    fn malformed_headers_are_refused() {
        let v = verifier();
        let ch = challenge(&v, Algorithm::Md5, T0);
        let good = answer(&ch, "alice", "s3cret", "REGISTER", 1, "c");
        assert!(v.verify(&good, "REGISTER", phones, T0).is_ok());
        let mut cases: Vec<String> = Vec::new();
        for name in [
            "username", "realm", "nonce", "uri", "response", "nc", "cnonce", "qop",
        ] {
            let params = parse_credentials(&good).expect("parses");
            let kept: Vec<String> = params
                .iter()
                .filter(|(k, _)| k != name)
                .map(|(k, val)| format!("{k}=\"{}\"", quote(val)))
                .collect();
            cases.push(format!("Digest {}", kept.join(", ")));
        }
        let huge = "a".repeat(MAX_VALUE_LEN + 1);
        cases.extend([
            String::new(),
            "Digest".to_owned(),
            "Digest ".to_owned(),
            "Basic YWxpY2U6czNjcmV0".to_owned(),
            "Digestusername=\"alice\"".to_owned(),
            good.replace("nc=00000001", "nc=1"),
            good.replace("nc=00000001", "nc=00000000"),
            good.replace("nc=00000001", "nc=0000000g"),
            good.replace("nc=00000001", "nc=+0000001"),
            good.replace("nc=00000001", "nc=000000001"),
            good.replace("qop=auth", "qop=auth-int"),
            good.replace("cnonce=\"c\"", "cnonce=\"\""),
            good.replace("cnonce=\"c\"", &format!("cnonce=\"{}\"", "c".repeat(300))),
            good.replace("username=\"alice\"", "username=\"\""),
            format!("{good}, username=\"alice\""),
            format!("{good}, userhash=true"),
            format!("{good}, x=\"unterminated"),
            format!("{good}, x=\"ends in backslash\\"),
            format!("{good}, x="),
            format!("{good}, =x"),
            format!("{good}, x"),
            format!("{good} y=z"),
            format!("{good}, x=\"ctl\u{1}\""),
            format!("{good}, x=\"{huge}\""),
            format!("{good}, x={huge}"),
            format!("{good}, x=\"{}\"", "b".repeat(MAX_HEADER_LEN)),
            format!("{good}{}", ", a=b".repeat(40)),
            good.replace("Digest ", "Digest\u{3000}"),
            good.replace("username=", "user name="),
        ]);
        for case in &cases {
            let r = v.verify(case, "REGISTER", phones, T0);
            assert!(matches!(r, Err(DigestError::Malformed(_))), "{case}: {r:?}");
        }
    }

    #[test]
    fn verifier_is_send_sync_and_debug_hides_secrets() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<DigestVerifier>();
        let v = verifier();
        assert!(!format!("{v:?}").contains("7, 7"));
        let p = PhoneSecret::password("s3cret", &ALL);
        assert!(!format!("{p:?}").contains("s3cret"));
        let h = PhoneSecret::ha1(Some("deadbeef".into()), None, &ALL);
        assert!(!format!("{h:?}").contains("deadbeef"));
    }

    /// xorshift64*: deterministic, dependency-free.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
        }
    }

    #[test]
    fn fuzz_mutated_headers_never_panic_or_authenticate_wrongly() {
        let v = verifier();
        let alphabet: Vec<char> = "\"\\,= \t\r\nabcAZ09-:;@/+%\u{0}\u{7f}é日"
            .chars()
            .collect();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut accepted = 0usize;
        let iterations = 5_000;
        for iter in 0..iterations {
            let alg = ALL[iter % ALL.len()];
            let ch = challenge(&v, alg, T0);
            let good = answer(&ch, "alice", "s3cret", "REGISTER", 1, &format!("c{iter}"));
            let mut chars: Vec<char> = good.chars().collect();
            for _ in 0..=rng.below(4) {
                let pos = rng.below(chars.len() + 1);
                match rng.below(6) {
                    0 if pos < chars.len() => {
                        chars.remove(pos);
                    }
                    1 => chars.insert(pos, alphabet[rng.below(alphabet.len())]),
                    2 if pos < chars.len() => chars[pos] = alphabet[rng.below(alphabet.len())],
                    3 => chars.truncate(pos),
                    4 => {
                        let end = (pos + rng.below(40)).min(chars.len());
                        let piece: Vec<char> = chars[pos.min(end)..end].to_vec();
                        for (k, c) in piece.into_iter().enumerate() {
                            chars.insert(end + k, c);
                        }
                    }
                    _ => {
                        let filler = alphabet[rng.below(alphabet.len())];
                        let at = pos.min(chars.len());
                        let count = rng.below(3000);
                        chars.splice(at..at, std::iter::repeat_n(filler, count));
                    }
                }
            }
            let mutated: String = chars.into_iter().collect();
            let method = if iter % 7 == 0 { "" } else { "REGISTER" };
            let now = match iter % 5 {
                0 => 0,
                1 => u64::MAX,
                _ => T0 + (iter as u64 % 300),
            };
            if let Ok(user) = v.verify(&mutated, method, phones, now) {
                // A mutation may only touch what the digest does not cover.
                assert_eq!(user.username, "alice", "{mutated}");
                assert_eq!(user.uri, URI, "{mutated}");
                accepted += 1;
            }
            // Replaying the untouched original is fine at most once per cnonce.
            let _ = v.verify(&good, "REGISTER", phones, T0);
            assert_eq!(
                v.verify(&good, "REGISTER", phones, T0),
                Err(DigestError::Replay)
            );
        }
        assert!(accepted < iterations / 2, "{accepted}");
    }
}
