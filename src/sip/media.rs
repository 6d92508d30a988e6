//! Media for the closed-hours announcement (early media): WAV files read at load, G.711
//! μ-law/A-law (ITU-T G.711), the SDP offer of an INVITE read and our answer built
//! (RFC 4566, RFC 3264), and RTP packets (RFC 3550).
//!
//! Pure functions and plain data: the proxy core builds the SDP answer, the transport
//! driver streams the packets.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::calls::LineProfile;
use crate::hours::ClosedReason;

/// Samples a second: G.711 is 8 kHz.
pub const SAMPLE_RATE: u32 = 8000;
/// Samples in one RTP packet: 20 ms.
pub const SAMPLES_PER_PACKET: usize = 160;
/// Time between two RTP packets.
pub const PACKET_INTERVAL: Duration = Duration::from_millis(20);

/// Why a WAV file cannot be played.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WavError {
    /// Reading the file failed.
    #[error("cannot be read: {0}")]
    Io(String),
    /// Not a RIFF/WAVE file.
    #[error("is not a WAV file (no RIFF/WAVE header)")]
    NotWav,
    /// A chunk runs past the end of the file, or `fmt ` is too short.
    #[error("is truncated or corrupt ({0})")]
    Corrupt(&'static str),
    /// No `fmt ` or no `data` chunk.
    #[error("has no {0} chunk")]
    Missing(&'static str),
    /// An encoding we do not play.
    #[error("has encoding {0:#06x}; it must be 16-bit PCM (1), A-law (6) or μ-law (7)")]
    Encoding(u16),
    /// Not 8000 Hz.
    #[error("has a sample rate of {0} Hz; it must be 8000 Hz")]
    Rate(u32),
    /// Not mono.
    #[error("has {0} channels; it must be mono (1)")]
    Channels(u16),
    /// Bits per sample do not match the encoding.
    #[error("has {0} bits per sample; 16 for PCM, 8 for A-law/μ-law")]
    Bits(u16),
    /// No sample at all.
    #[error("holds no audio")]
    Empty,
}

/// An announcement's audio: 8 kHz mono linear samples, shared by every call that plays it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audio {
    samples: Arc<[i16]>,
}

impl Audio {
    /// Audio from linear 8 kHz samples.
    pub fn from_samples(samples: Vec<i16>) -> Self {
        Self {
            samples: samples.into(),
        }
    }

    /// Reads a WAV file we can play: 8 kHz mono, 16-bit PCM or G.711 μ-law/A-law.
    pub fn load(path: &Path) -> Result<Self, WavError> {
        let bytes = std::fs::read(path).map_err(|e| WavError::Io(e.to_string()))?;
        Self::from_wav(&bytes)
    }

    /// Reads WAV bytes (see [`Audio::load`]).
    pub fn from_wav(b: &[u8]) -> Result<Self, WavError> {
        if b.len() < 12 || &b[0..4] != b"RIFF" || &b[8..12] != b"WAVE" {
            return Err(WavError::NotWav);
        }
        let mut fmt: Option<&[u8]> = None;
        let mut data: Option<&[u8]> = None;
        let mut at = 12;
        while at + 8 <= b.len() {
            let id = &b[at..at + 4];
            let len = u32::from_le_bytes([b[at + 4], b[at + 5], b[at + 6], b[at + 7]]) as usize;
            let start = at + 8;
            let end = start
                .checked_add(len)
                .ok_or(WavError::Corrupt("chunk size"))?;
            if end > b.len() {
                // Some writers leave the data size unset when streaming; only `data` may run
                // to the end of the file.
                if id == b"data" {
                    data = Some(&b[start..]);
                    break;
                }
                return Err(WavError::Corrupt("chunk past the end"));
            }
            match id {
                b"fmt " => fmt = Some(&b[start..end]),
                b"data" => data = Some(&b[start..end]),
                _ => {}
            }
            at = end + (len & 1);
        }
        let fmt = fmt.ok_or(WavError::Missing("fmt"))?;
        let data = data.ok_or(WavError::Missing("data"))?;
        if fmt.len() < 16 {
            return Err(WavError::Corrupt("fmt chunk too short"));
        }
        let u16_at = |i: usize| u16::from_le_bytes([fmt[i], fmt[i + 1]]);
        let mut tag = u16_at(0);
        let channels = u16_at(2);
        let rate = u32::from_le_bytes([fmt[4], fmt[5], fmt[6], fmt[7]]);
        let bits = u16_at(14);
        if tag == 0xFFFE {
            // WAVE_FORMAT_EXTENSIBLE: the real tag is the first two bytes of the sub-format.
            if fmt.len() < 26 {
                return Err(WavError::Corrupt("extensible fmt chunk too short"));
            }
            tag = u16_at(24);
        }
        if !matches!(tag, 1 | 6 | 7) {
            return Err(WavError::Encoding(tag));
        }
        if rate != SAMPLE_RATE {
            return Err(WavError::Rate(rate));
        }
        if channels != 1 {
            return Err(WavError::Channels(channels));
        }
        let samples: Vec<i16> = match (tag, bits) {
            (1, 16) => data
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect(),
            (6, 8) => data.iter().map(|a| alaw_to_linear(*a)).collect(),
            (7, 8) => data.iter().map(|u| ulaw_to_linear(*u)).collect(),
            (_, bits) => return Err(WavError::Bits(bits)),
        };
        if samples.is_empty() {
            return Err(WavError::Empty);
        }
        Ok(Self::from_samples(samples))
    }

    /// The linear samples.
    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// How long it plays: whole 20 ms packets, the last one padded with silence.
    pub fn duration(&self) -> Duration {
        PACKET_INTERVAL * self.packets() as u32
    }

    /// RTP packets it takes.
    pub fn packets(&self) -> usize {
        self.samples.len().div_ceil(SAMPLES_PER_PACKET)
    }

    /// The payload of packet `i` in `codec` (the last one padded with silence).
    pub fn payload(&self, i: usize, codec: Codec) -> Vec<u8> {
        let start = (i * SAMPLES_PER_PACKET).min(self.samples.len());
        let end = (start + SAMPLES_PER_PACKET).min(self.samples.len());
        let mut out: Vec<u8> = self.samples[start..end]
            .iter()
            .map(|s| codec.encode(*s))
            .collect();
        out.resize(SAMPLES_PER_PACKET, codec.encode(0));
        out
    }
}

/// Which message a closed line plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnnouncementKind {
    /// Outside the hours, or a weekend: `closed_announcement`.
    Closed,
    /// A national holiday, the year-end closure or a day the city closed:
    /// `holiday_announcement`.
    Holiday,
    /// Outside the call-center period: `period_ended_announcement`.
    PeriodEnded,
}

impl AnnouncementKind {
    /// The message for the rule that closed the line.
    pub fn for_reason(reason: ClosedReason) -> Self {
        match reason {
            ClosedReason::OutsideHours | ClosedReason::Weekend => Self::Closed,
            ClosedReason::NationalHoliday | ClosedReason::YearEnd | ClosedReason::ExtraClosed => {
                Self::Holiday
            }
            ClosedReason::OutsidePeriod => Self::PeriodEnded,
        }
    }

    /// The `[line]` option naming its file.
    pub fn option(self) -> &'static str {
        match self {
            Self::Closed => "line.closed_announcement",
            Self::Holiday => "line.holiday_announcement",
            Self::PeriodEnded => "line.period_ended_announcement",
        }
    }

    /// Every kind.
    pub const ALL: [AnnouncementKind; 3] = [Self::Closed, Self::Holiday, Self::PeriodEnded];
}

/// The announcements of a profile, read at load; a kind without a file plays nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Announcements {
    closed: Option<Audio>,
    holiday: Option<Audio>,
    period_ended: Option<Audio>,
}

impl Announcements {
    /// Reads the files `[line]` names, relative to the profile directory `dir`. An error
    /// names the option, the file and what is wrong with it.
    pub fn load(dir: &Path, line: &LineProfile) -> Result<Self, (&'static str, String)> {
        let mut out = Self::default();
        for kind in AnnouncementKind::ALL {
            let name = match kind {
                AnnouncementKind::Closed => &line.closed_announcement,
                AnnouncementKind::Holiday => &line.holiday_announcement,
                AnnouncementKind::PeriodEnded => &line.period_ended_announcement,
            };
            if name.trim().is_empty() {
                continue;
            }
            let path = dir.join(name);
            let audio = Audio::load(&path)
                .map_err(|e| (kind.option(), format!("{}: {e}", path.display())))?;
            out.set(kind, Some(audio));
        }
        Ok(out)
    }

    /// The audio of `kind`, if one is configured.
    pub fn get(&self, kind: AnnouncementKind) -> Option<&Audio> {
        match kind {
            AnnouncementKind::Closed => self.closed.as_ref(),
            AnnouncementKind::Holiday => self.holiday.as_ref(),
            AnnouncementKind::PeriodEnded => self.period_ended.as_ref(),
        }
    }

    /// Sets (or clears) the audio of `kind`.
    pub fn set(&mut self, kind: AnnouncementKind, audio: Option<Audio>) {
        match kind {
            AnnouncementKind::Closed => self.closed = audio,
            AnnouncementKind::Holiday => self.holiday = audio,
            AnnouncementKind::PeriodEnded => self.period_ended = audio,
        }
    }

    /// Whether any announcement is configured.
    pub fn any(&self) -> bool {
        AnnouncementKind::ALL.iter().any(|k| self.get(*k).is_some())
    }
}

/// A G.711 codec with its static RTP payload type (RFC 3551).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// μ-law, payload type 0.
    Pcmu,
    /// A-law, payload type 8.
    Pcma,
}

impl Codec {
    /// The static payload type.
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The encoding name of `a=rtpmap`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The codec of a static payload type, if G.711.
    pub fn from_payload_type(pt: u8) -> Option<Self> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// One linear sample encoded.
    pub fn encode(self, s: i16) -> u8 {
        match self {
            Codec::Pcmu => linear_to_ulaw(s),
            Codec::Pcma => linear_to_alaw(s),
        }
    }
}

/// ITU-T G.711 μ-law of a 16-bit linear sample (the 14-bit magnitude, bias 0x84).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// The linear value of a μ-law byte.
pub fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0F);
    let t = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    (if u & 0x80 != 0 { -t } else { t }) as i16
}

/// ITU-T G.711 A-law of a 16-bit linear sample (13-bit magnitude, even bits inverted).
pub fn linear_to_alaw(sample: i16) -> u8 {
    const SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let mut v = i32::from(sample) >> 3;
    let mask = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    let Some(seg) = SEG_END.iter().position(|end| v <= *end) else {
        return 0x7F ^ mask;
    };
    let mantissa = if seg < 2 {
        (v >> 1) & 0x0F
    } else {
        (v >> seg) & 0x0F
    };
    ((seg as i32) << 4 | mantissa) as u8 ^ mask
}

/// The linear value of an A-law byte.
pub fn alaw_to_linear(a: u8) -> i16 {
    let a = a ^ 0x55;
    let mut t = i32::from(a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => t = (t + 0x108) << (seg - 1),
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

/// What an INVITE's SDP offer lets us play: where, in which codec, on which m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaChoice {
    /// The c=/m= address of the offer's audio stream.
    pub remote: SocketAddr,
    /// The G.711 codec chosen, the offerer's first.
    pub codec: Codec,
    /// Which m-line (0-based).
    pub index: usize,
}

/// One m-line of an offer, as much as the answer needs.
#[derive(Debug, Clone)]
struct MLine {
    media: String,
    proto: String,
    formats: Vec<String>,
    port: u16,
    addr: Option<IpAddr>,
    direction: Option<String>,
}

/// An SDP offer read (RFC 4566), lenient about what it does not need.
#[derive(Debug, Clone)]
pub struct Offer {
    timing: Option<String>,
    lines: Vec<MLine>,
}

/// An offer direction attribute.
fn direction(attr: &str) -> Option<&str> {
    matches!(attr, "sendrecv" | "sendonly" | "recvonly" | "inactive").then_some(attr)
}

/// The address of a c= value (`IN IP4 192.0.2.1`, `IN IP6 ::1`, TTL/count stripped).
fn connection_addr(v: &str) -> Option<IpAddr> {
    let mut it = v.split_whitespace();
    if it.next()? != "IN" {
        return None;
    }
    let kind = it.next()?;
    let addr = it.next()?.split('/').next()?;
    let ip: IpAddr = addr.parse().ok()?;
    match (kind, ip) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Some(ip),
        _ => None,
    }
}

impl Offer {
    /// Reads an SDP body; `None` when it is not SDP we understand (no v=0, no m-line, or a
    /// malformed m-line).
    pub fn parse(body: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(body).ok()?;
        let mut lines = Vec::new();
        let mut session_addr = None;
        let mut session_dir = None;
        let mut timing = None;
        let mut seen_version = false;
        for raw in text.lines() {
            let line = raw.trim_end_matches('\r');
            let Some((k, v)) = line.split_once('=') else {
                if line.trim().is_empty() {
                    continue;
                }
                return None;
            };
            let current: Option<&mut MLine> = lines.last_mut();
            match (k, current) {
                ("v", _) => {
                    if v.trim() != "0" {
                        return None;
                    }
                    seen_version = true;
                }
                ("t", None) => timing = Some(v.to_string()),
                ("c", None) => session_addr = Some(connection_addr(v)?),
                ("c", Some(m)) => m.addr = Some(connection_addr(v)?),
                ("a", None) => {
                    if let Some(d) = direction(v.trim()) {
                        session_dir = Some(d.to_string());
                    }
                }
                ("a", Some(m)) => {
                    if let Some(d) = direction(v.trim()) {
                        m.direction = Some(d.to_string());
                    }
                }
                ("m", _) => {
                    let mut it = v.split_whitespace();
                    let media = it.next()?.to_string();
                    // A port may carry a count (`49170/2`).
                    let port: u16 = it.next()?.split('/').next()?.parse().ok()?;
                    let proto = it.next()?.to_string();
                    let formats: Vec<String> = it.map(str::to_string).collect();
                    if formats.is_empty() {
                        return None;
                    }
                    lines.push(MLine {
                        media,
                        proto,
                        formats,
                        port,
                        addr: None,
                        direction: None,
                    });
                }
                _ => {}
            }
        }
        if !seen_version || lines.is_empty() {
            return None;
        }
        for m in &mut lines {
            m.addr = m.addr.or(session_addr);
            if m.direction.is_none() {
                m.direction.clone_from(&session_dir);
            }
        }
        Some(Self { timing, lines })
    }

    /// The first audio stream we can play to: RTP/AVP, a port, a unicast address that is not
    /// "hold" (0.0.0.0), a direction that lets the offerer receive (not sendonly/inactive),
    /// and PCMU or PCMA among its formats (the offerer's order decides).
    pub fn choose(&self) -> Option<MediaChoice> {
        self.lines.iter().enumerate().find_map(|(index, m)| {
            if m.media != "audio" || m.proto != "RTP/AVP" || m.port == 0 {
                return None;
            }
            if matches!(m.direction.as_deref(), Some("sendonly" | "inactive")) {
                return None;
            }
            let ip = m.addr?;
            if ip.is_unspecified() || ip.is_multicast() {
                return None;
            }
            let codec = m
                .formats
                .iter()
                .filter_map(|f| f.parse::<u8>().ok())
                .find_map(Codec::from_payload_type)?;
            Some(MediaChoice {
                remote: SocketAddr::new(ip, m.port),
                codec,
                index,
            })
        })
    }

    /// Our answer (RFC 3264 §6): the same m-lines in the same order, the chosen one with our
    /// address, port and codec and `a=sendonly`, every other one rejected (port 0).
    pub fn answer(&self, choice: &MediaChoice, ours: SocketAddr, session_id: u64) -> String {
        let ip_kind = if ours.is_ipv4() { "IP4" } else { "IP6" };
        let ip = ours.ip();
        let mut s = format!(
            "v=0\r\no=madoguchi {session_id} {session_id} IN {ip_kind} {ip}\r\ns=-\r\nc=IN {ip_kind} {ip}\r\nt={}\r\n",
            self.timing.as_deref().unwrap_or("0 0")
        );
        for (i, m) in self.lines.iter().enumerate() {
            if i == choice.index {
                let pt = choice.codec.payload_type();
                s.push_str(&format!(
                    "m=audio {} RTP/AVP {pt}\r\na=rtpmap:{pt} {}/8000\r\na=ptime:20\r\na=sendonly\r\n",
                    ours.port(),
                    choice.codec.name()
                ));
            } else {
                s.push_str(&format!(
                    "m={} 0 {} {}\r\n",
                    m.media,
                    m.proto,
                    m.formats.join(" ")
                ));
            }
        }
        s
    }
}

/// An RTP sender's state (RFC 3550 §5.1): random SSRC, sequence number and timestamp to
/// start from, the marker on the first packet.
#[derive(Debug, Clone)]
pub struct RtpStream {
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    payload_type: u8,
    first: bool,
}

impl RtpStream {
    /// A stream of `codec` with random SSRC, sequence number and timestamp.
    pub fn new(codec: Codec) -> Self {
        use rand::Rng;
        let mut r = rand::thread_rng();
        Self {
            ssrc: r.gen(),
            seq: r.gen(),
            timestamp: r.gen(),
            payload_type: codec.payload_type(),
            first: true,
        }
    }

    /// The next packet carrying `payload` (20 ms of samples).
    pub fn packet(&mut self, payload: &[u8]) -> Vec<u8> {
        let mut p = Vec::with_capacity(12 + payload.len());
        p.push(0x80); // version 2, no padding, no extension, no CSRC
        p.push(if self.first { 0x80 } else { 0 } | self.payload_type);
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&self.timestamp.to_be_bytes());
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        self.first = false;
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self
            .timestamp
            .wrapping_add(u32::try_from(payload.len()).unwrap_or(0));
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ITU-T G.711 table values (and those of the reference g711.c).
    #[test]
    fn ulaw_matches_g711() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(-1), 0x7F);
        assert_eq!(linear_to_ulaw(32767), 0x80);
        assert_eq!(linear_to_ulaw(-32768), 0x00);
        assert_eq!(linear_to_ulaw(1000), 0xCE);
        assert_eq!(linear_to_ulaw(-1000), 0x4E);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0xCE), 988);
        // Every code decodes to a value that encodes back to it (0x7F is −0, as 0xFF).
        for u in 0..=255u8 {
            let back = linear_to_ulaw(ulaw_to_linear(u));
            assert!(
                back == u || (u == 0x7F && back == 0xFF),
                "{u:#x} → {back:#x}"
            );
        }
    }

    #[test]
    fn alaw_matches_g711() {
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(32767), 0xAA);
        assert_eq!(linear_to_alaw(-32768), 0x2A);
        assert_eq!(linear_to_alaw(1000), 0xFA);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0xFA), 1008);
        for a in 0..=255u8 {
            assert_eq!(linear_to_alaw(alaw_to_linear(a)), a, "{a:#x}");
        }
    }

    fn wav(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&tag.to_le_bytes());
        fmt.extend_from_slice(&channels.to_le_bytes());
        fmt.extend_from_slice(&rate.to_le_bytes());
        let block = channels * bits / 8;
        fmt.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
        fmt.extend_from_slice(&block.to_le_bytes());
        fmt.extend_from_slice(&bits.to_le_bytes());
        let mut b = b"RIFF\0\0\0\0WAVE".to_vec();
        b.extend_from_slice(b"fmt ");
        b.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
        b.extend_from_slice(&fmt);
        b.extend_from_slice(b"LIST\x03\0\0\0abc\0"); // an odd chunk, padded
        b.extend_from_slice(b"data");
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(data);
        let riff = (b.len() - 8) as u32;
        b[4..8].copy_from_slice(&riff.to_le_bytes());
        b
    }

    #[test]
    fn wav_files_we_play_and_those_we_refuse() {
        let pcm: Vec<u8> = [1000i16, -1000, 0]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let a = Audio::from_wav(&wav(1, 1, 8000, 16, &pcm)).unwrap();
        assert_eq!(a.samples(), &[1000, -1000, 0]);
        let u = Audio::from_wav(&wav(7, 1, 8000, 8, &[0xCE, 0xFF])).unwrap();
        assert_eq!(u.samples(), &[988, 0]);
        let al = Audio::from_wav(&wav(6, 1, 8000, 8, &[0xD5])).unwrap();
        assert_eq!(al.samples(), &[8]);
        assert_eq!(
            Audio::from_wav(&wav(1, 1, 16000, 16, &pcm)),
            Err(WavError::Rate(16000))
        );
        assert_eq!(
            Audio::from_wav(&wav(1, 2, 8000, 16, &pcm)),
            Err(WavError::Channels(2))
        );
        assert_eq!(
            Audio::from_wav(&wav(1, 1, 8000, 8, &pcm)),
            Err(WavError::Bits(8))
        );
        assert_eq!(
            Audio::from_wav(&wav(3, 1, 8000, 32, &pcm)),
            Err(WavError::Encoding(3))
        );
        assert_eq!(
            Audio::from_wav(&wav(1, 1, 8000, 16, &[])),
            Err(WavError::Empty)
        );
        assert_eq!(Audio::from_wav(b"ID3 mp3 data"), Err(WavError::NotWav));
        assert!(Audio::from_wav(&wav(1, 1, 8000, 16, &pcm)[..30]).is_err());
    }

    #[test]
    fn payloads_are_whole_packets_padded_with_silence() {
        let a = Audio::from_samples(vec![1000; 200]);
        assert_eq!(a.packets(), 2);
        assert_eq!(a.duration(), Duration::from_millis(40));
        let last = a.payload(1, Codec::Pcmu);
        assert_eq!(last.len(), 160);
        assert_eq!(last[39], 0xCE);
        assert_eq!(last[40], 0xFF);
        assert_eq!(a.payload(0, Codec::Pcma), vec![0xFA; 160]);
    }

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=video 5002 RTP/AVP 96\r\nm=audio 49170 RTP/AVP 18 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";

    #[test]
    fn the_offerers_first_g711_codec_is_chosen_and_answered_sendonly() {
        let offer = Offer::parse(OFFER.as_bytes()).unwrap();
        let c = offer.choose().unwrap();
        assert_eq!(c.remote, "192.0.2.1:49170".parse().unwrap());
        assert_eq!(c.codec, Codec::Pcma);
        assert_eq!(c.index, 1);
        let ans = offer.answer(&c, "198.51.100.7:30000".parse().unwrap(), 42);
        let m: Vec<&str> = ans.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(m, ["m=video 0 RTP/AVP 96", "m=audio 30000 RTP/AVP 8"]);
        assert!(ans.contains("c=IN IP4 198.51.100.7\r\n"));
        assert!(ans.contains("a=rtpmap:8 PCMA/8000\r\n"));
        assert!(ans.contains("a=sendonly\r\n"));
        assert!(ans.contains("t=0 0\r\n"));
    }

    #[test]
    fn offers_we_cannot_play_to() {
        let none = |s: &str| Offer::parse(s.as_bytes()).and_then(|o| o.choose());
        let base = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n";
        // No G.711.
        assert_eq!(
            none(&format!(
                "{base}c=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 18\r\n"
            )),
            None
        );
        // The offerer will not receive.
        for d in ["sendonly", "inactive"] {
            assert_eq!(
                none(&format!(
                    "{base}c=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\na={d}\r\n"
                )),
                None,
                "{d}"
            );
        }
        // Hold, no address, a rejected stream, SRTP, garbage.
        assert_eq!(
            none(&format!(
                "{base}c=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n"
            )),
            None
        );
        assert_eq!(none(&format!("{base}m=audio 4000 RTP/AVP 0\r\n")), None);
        assert_eq!(
            none(&format!(
                "{base}c=IN IP4 192.0.2.1\r\nm=audio 0 RTP/AVP 0\r\n"
            )),
            None
        );
        assert_eq!(
            none(&format!(
                "{base}c=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/SAVP 0\r\n"
            )),
            None
        );
        assert_eq!(none("hello"), None);
        assert_eq!(
            none(&format!(
                "{base}c=IN IP4 nowhere\r\nm=audio 4000 RTP/AVP 0\r\n"
            )),
            None
        );
        assert_eq!(
            none(&format!(
                "{base}c=IN IP4 192.0.2.1\r\nm=audio x RTP/AVP 0\r\n"
            )),
            None
        );
        // recvonly: the offerer only listens, which is what an announcement needs.
        assert!(none(&format!(
            "{base}c=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\na=recvonly\r\n"
        ))
        .is_some());
    }

    #[test]
    fn rtp_headers_follow_rfc3550() {
        let mut s = RtpStream::new(Codec::Pcmu);
        let a = s.packet(&[0xFF; 160]);
        let b = s.packet(&[0xFF; 160]);
        assert_eq!(a.len(), 172);
        assert_eq!(a[0], 0x80);
        assert_eq!(a[1], 0x80, "marker on the first packet, PT 0");
        assert_eq!(b[1], 0x00);
        let seq = |p: &[u8]| u16::from_be_bytes([p[2], p[3]]);
        let ts = |p: &[u8]| u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        assert_eq!(seq(&b), seq(&a).wrapping_add(1));
        assert_eq!(ts(&b), ts(&a).wrapping_add(160));
        assert_eq!(a[8..12], b[8..12], "one SSRC");
        let mut p = RtpStream::new(Codec::Pcma);
        assert_eq!(p.packet(&[0xD5; 160])[1], 0x88);
    }
}
