//! The handshake messages of the rendezvous and of the mesh: pure encoding and decoding
//! (fuzzed by the tests) and the HMAC-SHA256 proofs of the shared token.
//!
//! Rendezvous, on the connection from rank `r` to rank 0:
//! 1. rank 0 sends a [`Challenge`] with a fresh random nonce;
//! 2. rank `r` answers with a [`Hello`]: its rank, the job size, the port of its mesh
//!    listener, a nonce of its own, and `HMAC(token, "hello" | nonce0 | rank | size | port |
//!    nonce_r)`;
//! 3. rank 0 checks the hello at once and answers with a *joined* notice, or with a
//!    [`Notice`] of kind [`KIND_REJECT`] saying why the hello was refused;
//! 4. once every rank has joined, rank 0 sends each a [`Welcome`]: a random session id,
//!    the mesh address of every rank and `HMAC(token, "welcome" | nonce_r | session |
//!    addresses)`, which proves to `r` that rank 0 knows the token too;
//! 5. each rank builds its part of the mesh and says *ready*; when every rank is ready,
//!    rank 0 says *go* to all. If a joined rank is lost before that, rank 0 sends the
//!    others a [`Notice`] of kind [`KIND_ABORT`] naming it.
//!
//! Mesh, on the connection from rank `s` to rank `r < s`: `s` sends a [`MeshHello`] with
//! the session id and `HMAC(token, "mesh" | session | s | r)`; `r` answers with a mesh ack.
//!
//! Every message starts with the magic `CBHS`, the protocol version and a kind byte. The
//! token itself never travels.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Handshake magic.
pub(crate) const MAGIC: [u8; 4] = *b"CBHS";
/// Handshake protocol version (2: joined, abort, ready and go messages; 3: the data frames
/// that follow are version 2, whose abort names its call, so builds that disagree are
/// refused at the handshake instead of at their first frame).
pub(crate) const VERSION: u8 = 3;
/// Bytes of a nonce.
pub(crate) const NONCE_BYTES: usize = 32;
/// Bytes of a session id.
pub(crate) const SESSION_BYTES: usize = 16;
/// Bytes of an HMAC-SHA256 tag.
pub(crate) const MAC_BYTES: usize = 32;
/// The common prefix: magic, version, kind, two reserved bytes.
pub(crate) const PREFIX_BYTES: usize = 8;
/// Longest reject reason.
pub(crate) const MAX_REASON: usize = 512;

/// Message kinds.
pub(crate) const KIND_CHALLENGE: u8 = 1;
pub(crate) const KIND_HELLO: u8 = 2;
pub(crate) const KIND_WELCOME: u8 = 3;
pub(crate) const KIND_REJECT: u8 = 4;
pub(crate) const KIND_MESH: u8 = 5;
pub(crate) const KIND_MESH_ACK: u8 = 6;
/// Rank 0 accepted the hello: the rank holds its place until the welcome.
pub(crate) const KIND_JOINED: u8 = 7;
/// Rank 0 ends the start-up (a rank was lost, the rendezvous timed out).
pub(crate) const KIND_ABORT: u8 = 8;
/// A rank has connected to its neighbours.
pub(crate) const KIND_READY: u8 = 9;
/// Every rank is ready: the job starts.
pub(crate) const KIND_GO: u8 = 10;

pub(crate) type Nonce = [u8; NONCE_BYTES];
pub(crate) type Session = [u8; SESSION_BYTES];
pub(crate) type Tag = [u8; MAC_BYTES];

/// HMAC-SHA256 of the concatenated `parts` under `key`.
pub(crate) fn mac(key: &[u8], parts: &[&[u8]]) -> Tag {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    for part in parts {
        m.update(part);
    }
    m.finalize().into_bytes().into()
}

/// Constant-time check of `tag` against the HMAC of `parts`.
pub(crate) fn verify(key: &[u8], parts: &[&[u8]], tag: &Tag) -> bool {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    for part in parts {
        m.update(part);
    }
    m.verify_slice(tag).is_ok()
}

/// A prefix of the given kind.
pub(crate) fn prefix(kind: u8) -> [u8; PREFIX_BYTES] {
    [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], VERSION, kind, 0, 0]
}

/// Checks a prefix and returns its kind.
pub(crate) fn decode_prefix(bytes: [u8; PREFIX_BYTES]) -> Result<u8, String> {
    if bytes[0..4] != MAGIC {
        return Err(format!(
            "bad handshake magic {:02x?}, expected {:02x?} (not a cobre-comm tcp peer)",
            &bytes[0..4],
            MAGIC
        ));
    }
    if bytes[4] != VERSION {
        return Err(format!(
            "handshake protocol version {}, expected {VERSION}",
            bytes[4]
        ));
    }
    if bytes[6] != 0 || bytes[7] != 0 {
        return Err("non-zero reserved bytes in handshake".into());
    }
    if !(KIND_CHALLENGE..=KIND_GO).contains(&bytes[5]) {
        return Err(format!("unknown handshake message kind {}", bytes[5]));
    }
    Ok(bytes[5])
}

fn expect_kind(bytes: &[u8], kind: u8, what: &str) -> Result<(), String> {
    let prefix: [u8; PREFIX_BYTES] = bytes[..PREFIX_BYTES].try_into().expect("8 bytes");
    let found = decode_prefix(prefix)?;
    if found == kind {
        Ok(())
    } else {
        Err(format!(
            "handshake message of kind {found}, expected {what} (kind {kind})"
        ))
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Rank 0's challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub nonce: Nonce,
}

pub(crate) const CHALLENGE_BYTES: usize = PREFIX_BYTES + NONCE_BYTES;

impl Challenge {
    pub(crate) fn encode(&self) -> [u8; CHALLENGE_BYTES] {
        let mut out = [0_u8; CHALLENGE_BYTES];
        out[..PREFIX_BYTES].copy_from_slice(&prefix(KIND_CHALLENGE));
        out[PREFIX_BYTES..].copy_from_slice(&self.nonce);
        out
    }

    pub(crate) fn decode(bytes: &[u8; CHALLENGE_BYTES]) -> Result<Challenge, String> {
        expect_kind(bytes, KIND_CHALLENGE, "a challenge")?;
        Ok(Challenge {
            nonce: bytes[PREFIX_BYTES..].try_into().expect("32 bytes"),
        })
    }
}

/// A rank's answer to the challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hello {
    pub rank: u32,
    pub size: u32,
    pub port: u16,
    pub nonce: Nonce,
    pub mac: Tag,
}

pub(crate) const HELLO_BYTES: usize = PREFIX_BYTES + 12 + NONCE_BYTES + MAC_BYTES;

impl Hello {
    /// A hello proving knowledge of `key` for `challenge`.
    pub(crate) fn new(
        key: &[u8],
        challenge: &Nonce,
        rank: u32,
        size: u32,
        port: u16,
        nonce: Nonce,
    ) -> Hello {
        let mut hello = Hello {
            rank,
            size,
            port,
            nonce,
            mac: [0; MAC_BYTES],
        };
        let fields = hello.fields();
        hello.mac = mac(key, &[b"hello", challenge, &fields, &hello.nonce]);
        hello
    }

    fn fields(&self) -> [u8; 10] {
        let mut out = [0_u8; 10];
        out[0..4].copy_from_slice(&self.rank.to_le_bytes());
        out[4..8].copy_from_slice(&self.size.to_le_bytes());
        out[8..10].copy_from_slice(&self.port.to_le_bytes());
        out
    }

    /// Whether the hello proves knowledge of `key` for `challenge`.
    pub(crate) fn verify(&self, key: &[u8], challenge: &Nonce) -> bool {
        let fields = self.fields();
        verify(key, &[b"hello", challenge, &fields, &self.nonce], &self.mac)
    }

    pub(crate) fn encode(&self) -> [u8; HELLO_BYTES] {
        let mut out = [0_u8; HELLO_BYTES];
        out[..PREFIX_BYTES].copy_from_slice(&prefix(KIND_HELLO));
        out[8..18].copy_from_slice(&self.fields());
        out[20..52].copy_from_slice(&self.nonce);
        out[52..84].copy_from_slice(&self.mac);
        out
    }

    pub(crate) fn decode(bytes: &[u8; HELLO_BYTES]) -> Result<Hello, String> {
        expect_kind(bytes, KIND_HELLO, "a hello")?;
        if bytes[18] != 0 || bytes[19] != 0 {
            return Err("non-zero reserved bytes in hello".into());
        }
        Ok(Hello {
            rank: u32_at(bytes, 8),
            size: u32_at(bytes, 12),
            port: u16::from_le_bytes([bytes[16], bytes[17]]),
            nonce: bytes[20..52].try_into().expect("32 bytes"),
            mac: bytes[52..84].try_into().expect("32 bytes"),
        })
    }
}

/// A reason in words from rank 0: why it refused a hello ([`KIND_REJECT`]) or why it
/// ended the start-up ([`KIND_ABORT`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Notice {
    pub kind: u8,
    pub reason: String,
}

impl Notice {
    /// A refusal of a hello.
    pub(crate) fn reject(reason: String) -> Notice {
        Notice {
            kind: KIND_REJECT,
            reason,
        }
    }

    /// The end of the start-up.
    pub(crate) fn abort(reason: String) -> Notice {
        Notice {
            kind: KIND_ABORT,
            reason,
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut text = self.reason.as_str();
        if text.len() > MAX_REASON {
            let mut cut = MAX_REASON;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text = &text[..cut];
        }
        let mut out = prefix(self.kind).to_vec();
        out.extend_from_slice(&(text.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(text.as_bytes());
        out
    }

    /// The reason length announced by the 4 bytes after the prefix.
    pub(crate) fn decode_len(bytes: [u8; 4]) -> Result<usize, String> {
        let len = usize::from(u16::from_le_bytes([bytes[0], bytes[1]]));
        if len > MAX_REASON {
            return Err(format!(
                "notice of {len} bytes, expected at most {MAX_REASON}"
            ));
        }
        if bytes[2] != 0 || bytes[3] != 0 {
            return Err("non-zero reserved bytes in notice".into());
        }
        Ok(len)
    }

    /// The reason text, never failing: invalid UTF-8 is replaced.
    pub(crate) fn decode_reason(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// One rank's mesh address in a welcome: family (4 or 6, 0 for none), 16 address bytes,
/// port.
pub(crate) const ENTRY_BYTES: usize = 19;
/// Welcome bytes after the prefix and before the entries: session, count, mac.
pub(crate) const WELCOME_FIXED: usize = SESSION_BYTES + 4 + MAC_BYTES;

/// Rank 0's answer once the job is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Welcome {
    pub session: Session,
    /// Mesh listener of every rank (`None` for rank 0).
    pub addrs: Vec<Option<SocketAddr>>,
    pub mac: Tag,
}

fn encode_entries(addrs: &[Option<SocketAddr>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(addrs.len() * ENTRY_BYTES);
    for addr in addrs {
        let mut entry = [0_u8; ENTRY_BYTES];
        match addr {
            Some(SocketAddr::V4(a)) => {
                entry[0] = 4;
                entry[1..5].copy_from_slice(&a.ip().octets());
                entry[17..19].copy_from_slice(&a.port().to_le_bytes());
            }
            Some(SocketAddr::V6(a)) => {
                entry[0] = 6;
                entry[1..17].copy_from_slice(&a.ip().octets());
                entry[17..19].copy_from_slice(&a.port().to_le_bytes());
            }
            None => {}
        }
        out.extend_from_slice(&entry);
    }
    out
}

impl Welcome {
    pub(crate) fn new(
        key: &[u8],
        peer_nonce: &Nonce,
        session: Session,
        addrs: Vec<Option<SocketAddr>>,
    ) -> Welcome {
        let entries = encode_entries(&addrs);
        let tag = mac(key, &[b"welcome", peer_nonce, &session, &entries]);
        Welcome {
            session,
            addrs,
            mac: tag,
        }
    }

    pub(crate) fn verify(&self, key: &[u8], my_nonce: &Nonce) -> bool {
        let entries = encode_entries(&self.addrs);
        verify(
            key,
            &[b"welcome", my_nonce, &self.session, &entries],
            &self.mac,
        )
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = prefix(KIND_WELCOME).to_vec();
        out.extend_from_slice(&self.session);
        out.extend_from_slice(&(self.addrs.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.mac);
        out.extend_from_slice(&encode_entries(&self.addrs));
        out
    }

    /// Parses the bytes after the prefix. `fixed` is read first; it announces the number of
    /// entries, which must equal `size` before the entries are read (so a hostile count
    /// never drives an allocation).
    pub(crate) fn decode_fixed(
        fixed: &[u8; WELCOME_FIXED],
        size: usize,
    ) -> Result<(Session, Tag), String> {
        let count = u32_at(fixed, SESSION_BYTES) as usize;
        if count != size {
            return Err(format!(
                "welcome lists {count} ranks, expected the job size {size}"
            ));
        }
        Ok((
            fixed[..SESSION_BYTES].try_into().expect("16 bytes"),
            fixed[SESSION_BYTES + 4..].try_into().expect("32 bytes"),
        ))
    }

    /// Parses `size * ENTRY_BYTES` bytes of entries.
    pub(crate) fn decode_entries(bytes: &[u8]) -> Result<Vec<Option<SocketAddr>>, String> {
        if !bytes.len().is_multiple_of(ENTRY_BYTES) {
            return Err(format!(
                "welcome entries of {} bytes, expected a multiple of {ENTRY_BYTES}",
                bytes.len()
            ));
        }
        bytes
            .chunks_exact(ENTRY_BYTES)
            .map(|e| {
                let port = u16::from_le_bytes([e[17], e[18]]);
                match e[0] {
                    0 => Ok(None),
                    4 => {
                        let ip: [u8; 4] = e[1..5].try_into().expect("4 bytes");
                        Ok(Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)))
                    }
                    6 => {
                        let ip: [u8; 16] = e[1..17].try_into().expect("16 bytes");
                        Ok(Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)))
                    }
                    f => Err(format!("address family {f} in welcome, expected 4 or 6")),
                }
            })
            .collect()
    }
}

/// The hello on a mesh connection, from rank `from` to rank `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MeshHello {
    pub session: Session,
    pub from: u32,
    pub to: u32,
    pub mac: Tag,
}

pub(crate) const MESH_HELLO_BYTES: usize = PREFIX_BYTES + SESSION_BYTES + 8 + MAC_BYTES;

impl MeshHello {
    pub(crate) fn new(key: &[u8], session: Session, from: u32, to: u32) -> MeshHello {
        let tag = mac(
            key,
            &[b"mesh", &session, &from.to_le_bytes(), &to.to_le_bytes()],
        );
        MeshHello {
            session,
            from,
            to,
            mac: tag,
        }
    }

    pub(crate) fn verify(&self, key: &[u8]) -> bool {
        verify(
            key,
            &[
                b"mesh",
                &self.session,
                &self.from.to_le_bytes(),
                &self.to.to_le_bytes(),
            ],
            &self.mac,
        )
    }

    pub(crate) fn encode(&self) -> [u8; MESH_HELLO_BYTES] {
        let mut out = [0_u8; MESH_HELLO_BYTES];
        out[..PREFIX_BYTES].copy_from_slice(&prefix(KIND_MESH));
        out[8..24].copy_from_slice(&self.session);
        out[24..28].copy_from_slice(&self.from.to_le_bytes());
        out[28..32].copy_from_slice(&self.to.to_le_bytes());
        out[32..64].copy_from_slice(&self.mac);
        out
    }

    pub(crate) fn decode(bytes: &[u8; MESH_HELLO_BYTES]) -> Result<MeshHello, String> {
        expect_kind(bytes, KIND_MESH, "a mesh hello")?;
        Ok(MeshHello {
            session: bytes[8..24].try_into().expect("16 bytes"),
            from: u32_at(bytes, 24),
            to: u32_at(bytes, 28),
            mac: bytes[32..64].try_into().expect("32 bytes"),
        })
    }
}

/// Rank 0's check of a complete hello answering `challenge` in a job of `size` ranks
/// under `key`: the rank it claims, or why it is refused.
pub(crate) fn check_hello(
    bytes: &[u8; HELLO_BYTES],
    challenge: &Nonce,
    key: &[u8],
    size: usize,
) -> Result<Hello, String> {
    let hello = Hello::decode(bytes)?;
    if hello.size as usize != size {
        return Err(format!(
            "the peer claims a job of {} ranks, expected {size} ({} differs)",
            hello.size,
            crate::tcp_config::ENV_SIZE
        ));
    }
    if hello.rank == 0 || hello.rank as usize >= size {
        return Err(format!(
            "the peer claims rank {}, expected a rank from 1 to {}",
            hello.rank,
            size - 1
        ));
    }
    if !hello.verify(key, challenge) {
        return Err(format!(
            "the peer claiming rank {} did not prove the shared token ({} differs)",
            hello.rank,
            crate::tcp_config::ENV_TOKEN
        ));
    }
    Ok(hello)
}

/// Rank `rank`'s check of a complete mesh hello in session `session` of a job of `size`
/// ranks under `key`, from one of the ranks `from` (those above `rank` at start-up, those
/// below it for a connection opened later): the rank that connects, or why it is refused.
pub(crate) fn check_mesh_hello(
    bytes: &[u8; MESH_HELLO_BYTES],
    session: &Session,
    key: &[u8],
    rank: usize,
    size: usize,
    from: std::ops::Range<usize>,
) -> Result<usize, String> {
    let hello = MeshHello::decode(bytes)?;
    let sender = hello.from as usize;
    if hello.session != *session {
        return Err("the peer belongs to another job (session differs)".into());
    }
    if hello.to as usize != rank || !from.contains(&sender) || sender >= size {
        return Err(format!(
            "the peer says it is rank {sender} connecting to rank {}, expected a rank from {} to {} connecting to rank {rank}",
            hello.to,
            from.start,
            from.end.min(size).saturating_sub(1)
        ));
    }
    if !hello.verify(key) {
        return Err("the peer did not prove the shared token".into());
    }
    Ok(sender)
}

/// Random bytes from the operating system.
pub(crate) fn random<const N: usize>() -> Result<[u8; N], String> {
    let mut out = [0_u8; N];
    getrandom::fill(&mut out).map_err(|e| format!("the OS random source failed: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_checks_size_rank_and_token() {
        let challenge = [7_u8; 32];
        let hello =
            |rank, size, key: &[u8]| Hello::new(key, &challenge, rank, size, 1, [1; 32]).encode();
        assert_eq!(
            check_hello(&hello(2, 4, b"k"), &challenge, b"k", 4).map(|h| h.rank),
            Ok(2)
        );
        let err = |bytes| check_hello(&bytes, &challenge, b"k", 4).unwrap_err();
        assert!(err(hello(2, 5, b"k")).contains("expected 4 (COBRE_TCP_SIZE differs)"));
        assert!(err(hello(0, 4, b"k")).contains("expected a rank from 1 to 3"));
        assert!(err(hello(4, 4, b"k")).contains("expected a rank from 1 to 3"));
        assert!(err(hello(2, 4, b"x")).contains("COBRE_TCP_TOKEN differs"));
        assert!(check_hello(&hello(2, 4, b"k"), &[8; 32], b"k", 4).is_err());
    }

    #[test]
    fn mesh_hello_checks_session_ranks_and_token() {
        let session = [5_u8; 16];
        let m = |s, from, to, key: &[u8]| MeshHello::new(key, s, from, to).encode();
        assert_eq!(
            check_mesh_hello(&m(session, 3, 1, b"k"), &session, b"k", 1, 4, 2..4),
            Ok(3)
        );
        let err = |bytes| check_mesh_hello(&bytes, &session, b"k", 1, 4, 2..4).unwrap_err();
        assert!(err(m([6; 16], 3, 1, b"k")).contains("another job"));
        assert!(err(m(session, 3, 2, b"k")).contains("connecting to rank 1"));
        assert!(err(m(session, 1, 1, b"k")).contains("expected a rank from 2 to 3"));
        assert!(err(m(session, 4, 1, b"k")).contains("expected a rank from 2 to 3"));
        assert!(err(m(session, 3, 1, b"x")).contains("did not prove the shared token"));
        // A connection opened during the job comes from below.
        assert_eq!(
            check_mesh_hello(&m(session, 0, 2, b"k"), &session, b"k", 2, 4, 0..2),
            Ok(0)
        );
        let later = check_mesh_hello(&m(session, 3, 2, b"k"), &session, b"k", 2, 4, 0..2);
        assert!(later.unwrap_err().contains("expected a rank from 0 to 1"));
        let mut forged = m(session, 3, 1, b"k");
        forged[40] ^= 1;
        assert!(err(forged).contains("did not prove"));
    }

    #[test]
    fn hello_proves_the_token() {
        let challenge = [7_u8; 32];
        let h = Hello::new(b"token", &challenge, 2, 4, 5000, [1; 32]);
        let back = Hello::decode(&h.encode()).unwrap();
        assert_eq!(back, h);
        assert!(back.verify(b"token", &challenge));
        assert!(!back.verify(b"tokem", &challenge));
        assert!(!back.verify(b"token", &[8; 32]));
        let mut forged = back;
        forged.rank = 3;
        assert!(!forged.verify(b"token", &challenge));
        assert!(!h.encode().windows(5).any(|w| w == b"token"));
    }

    #[test]
    fn welcome_round_trip() {
        let addrs = vec![
            None,
            Some("127.0.0.1:4000".parse().unwrap()),
            Some("[::1]:5000".parse().unwrap()),
        ];
        let w = Welcome::new(b"k", &[3; 32], [9; 16], addrs.clone());
        let bytes = w.encode();
        let prefix: [u8; 8] = bytes[..8].try_into().unwrap();
        assert_eq!(decode_prefix(prefix), Ok(KIND_WELCOME));
        let fixed: [u8; WELCOME_FIXED] = bytes[8..8 + WELCOME_FIXED].try_into().unwrap();
        let (session, tag) = Welcome::decode_fixed(&fixed, 3).unwrap();
        assert!(Welcome::decode_fixed(&fixed, 4).is_err());
        let entries = Welcome::decode_entries(&bytes[8 + WELCOME_FIXED..]).unwrap();
        let back = Welcome {
            session,
            addrs: entries,
            mac: tag,
        };
        assert_eq!(back.addrs, addrs);
        assert!(back.verify(b"k", &[3; 32]));
        assert!(!back.verify(b"k", &[4; 32]));
    }

    #[test]
    fn mesh_hello_and_reject() {
        let m = MeshHello::new(b"k", [5; 16], 3, 1);
        let back = MeshHello::decode(&m.encode()).unwrap();
        assert!(back.verify(b"k"));
        assert!(!back.verify(b""));
        let r = Notice::reject("x".repeat(1000)).encode();
        assert_eq!(r.len(), 8 + 4 + MAX_REASON);
        assert_eq!(decode_prefix(r[..8].try_into().unwrap()), Ok(KIND_REJECT));
        assert_eq!(Notice::decode_len(r[8..12].try_into().unwrap()), Ok(512));
        assert!(Notice::decode_len([0xff, 0xff, 0, 0]).is_err());
        assert!(Notice::decode_len([1, 0, 0, 1]).is_err());
        let a = Notice::abort("rank 2 left".into()).encode();
        assert_eq!(decode_prefix(a[..8].try_into().unwrap()), Ok(KIND_ABORT));
        assert_eq!(Notice::decode_reason(&a[12..]), "rank 2 left");
        assert!(Challenge::decode(&[0; CHALLENGE_BYTES]).is_err());
    }
}
