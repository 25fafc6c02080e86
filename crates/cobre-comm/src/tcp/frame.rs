//! The data-plane frame header: pure encoding and decoding, fuzzed by the tests.
//!
//! Every message between two ranks after the rendezvous is a 64-byte header followed by a
//! payload:
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `CBCF` |
//! | 4 | protocol version |
//! | 5 | kind: 1 data, 2 abort, 3 bye |
//! | 6..8 | reserved, zero |
//! | 8..56 | data: the collective's fingerprint; abort: the sequence number of the call the sender failed in (8..16, little endian), then zeros; bye: zeros |
//! | 56..64 | payload length, little endian |
//!
//! A data frame's length is checked against what the local call expects before a byte of
//! payload is read; an abort carries a short report (at most [`MAX_ABORT_PAYLOAD`] bytes);
//! a bye is empty.
//!
//! An abort names its call so that a rank still busy with an earlier call, whose data the
//! sender has all sent already, finishes that call and fails the next one, as every rank
//! would have without the race (`abort` itself names call 0: every rank acts on it at once).

use crate::fingerprint::{FINGERPRINT_BYTES, Fingerprint};

/// Size of an encoded header.
pub(crate) const HEADER_BYTES: usize = 64;
/// The frame magic.
pub(crate) const FRAME_MAGIC: [u8; 4] = *b"CBCF";
/// Version of the data-plane protocol.
pub(crate) const FRAME_VERSION: u8 = 2;
/// Largest abort report accepted.
pub(crate) const MAX_ABORT_PAYLOAD: usize = 4096;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame {
    /// Collective data described by the fingerprint.
    Data { fingerprint: Fingerprint, len: u64 },
    /// The sender failed in call `seq`; the payload (`len` bytes) is an [`AbortReport`].
    Abort { len: usize, seq: u64 },
    /// The sender dropped its communicator.
    Bye,
}

const KIND_DATA: u8 = 1;
const KIND_ABORT: u8 = 2;
const KIND_BYE: u8 = 3;

/// Encodes a data header.
pub(crate) fn encode_data(fingerprint: &Fingerprint, len: usize) -> [u8; HEADER_BYTES] {
    encode(KIND_DATA, Some(fingerprint), len as u64)
}

/// Encodes an abort header for a report of `len` bytes about call `seq`.
pub(crate) fn encode_abort(len: usize, seq: u64) -> [u8; HEADER_BYTES] {
    let mut out = encode(KIND_ABORT, None, len as u64);
    out[8..16].copy_from_slice(&seq.to_le_bytes());
    out
}

/// Encodes a bye header.
pub(crate) fn encode_bye() -> [u8; HEADER_BYTES] {
    encode(KIND_BYE, None, 0)
}

fn encode(kind: u8, fingerprint: Option<&Fingerprint>, len: u64) -> [u8; HEADER_BYTES] {
    let mut out = [0_u8; HEADER_BYTES];
    out[0..4].copy_from_slice(&FRAME_MAGIC);
    out[4] = FRAME_VERSION;
    out[5] = kind;
    if let Some(fp) = fingerprint {
        out[8..8 + FINGERPRINT_BYTES].copy_from_slice(&fp.encode());
    }
    out[56..64].copy_from_slice(&len.to_le_bytes());
    out
}

/// Decodes a header. Never panics; every error says what was expected and what arrived.
pub(crate) fn decode(bytes: &[u8; HEADER_BYTES]) -> Result<Frame, String> {
    if bytes[0..4] != FRAME_MAGIC {
        return Err(format!(
            "bad frame magic {:02x?}, expected {:02x?} (is the peer a cobre-comm rank?)",
            &bytes[0..4],
            FRAME_MAGIC
        ));
    }
    if bytes[4] != FRAME_VERSION {
        return Err(format!(
            "frame protocol version {}, expected {FRAME_VERSION}",
            bytes[4]
        ));
    }
    if bytes[6] != 0 || bytes[7] != 0 {
        return Err("non-zero reserved bytes in frame header".into());
    }
    let len = u64::from_le_bytes(bytes[56..64].try_into().expect("8 bytes"));
    let fp_bytes: &[u8; FINGERPRINT_BYTES] = bytes[8..8 + FINGERPRINT_BYTES]
        .try_into()
        .expect("48 bytes");
    match bytes[5] {
        KIND_DATA => Ok(Frame::Data {
            fingerprint: Fingerprint::decode(fp_bytes)?,
            len,
        }),
        KIND_ABORT if fp_bytes[8..].iter().any(|&b| b != 0) => {
            Err("abort frame with non-zero bytes after its call number".into())
        }
        KIND_BYE if fp_bytes.iter().any(|&b| b != 0) => {
            Err("bye frame with a non-zero fingerprint".into())
        }
        KIND_ABORT if len > MAX_ABORT_PAYLOAD as u64 => Err(format!(
            "abort report of {len} bytes, expected at most {MAX_ABORT_PAYLOAD}"
        )),
        KIND_ABORT => Ok(Frame::Abort {
            len: len as usize,
            seq: u64::from_le_bytes(fp_bytes[..8].try_into().expect("8 bytes")),
        }),
        KIND_BYE if len != 0 => Err(format!("bye frame with a {len}-byte payload, expected 0")),
        KIND_BYE => Ok(Frame::Bye),
        other => Err(format!("unknown frame kind {other}, expected 1, 2 or 3")),
    }
}

/// Checks a decoded data frame against the local call: same fingerprint, same length.
/// Returns `Err(Some(theirs))` on a fingerprint mismatch and `Err(None)` with a message for
/// a length that disagrees with an equal fingerprint.
pub(crate) fn check_data(
    frame: &Frame,
    expected: &Fingerprint,
    expected_len: usize,
) -> Result<(), DataError> {
    match frame {
        Frame::Data { fingerprint, len } => {
            if !expected.agrees_with(fingerprint) {
                Err(DataError::Mismatch(*fingerprint))
            } else if *len != expected_len as u64 {
                Err(DataError::Length(format!(
                    "a {} frame of {len} bytes, expected {expected_len}",
                    expected.describe()
                )))
            } else {
                Ok(())
            }
        }
        Frame::Abort { .. } | Frame::Bye => Err(DataError::NotData),
    }
}

/// Why a frame is not the data the local call expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DataError {
    Mismatch(Fingerprint),
    Length(String),
    NotData,
}

/// The content of an abort frame: why the sender gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AbortReport {
    /// 1: a rank was lost (or timed out), 2: collective mismatch, 3: protocol error,
    /// 4: the sender called `abort` (the message is the exit code).
    pub code: u8,
    /// The rank the report is about (the lost or silent rank, or the reporter).
    pub rank: u32,
    /// The sender's error message.
    pub message: String,
}

/// Abort codes.
pub(crate) const ABORT_LOST: u8 = 1;
pub(crate) const ABORT_MISMATCH: u8 = 2;
pub(crate) const ABORT_PROTOCOL: u8 = 3;
/// The sender called `Communicator::abort`: `rank` is the sender and the message is the
/// exit code in decimal; every receiver exits with that code.
pub(crate) const ABORT_EXIT: u8 = 4;

impl AbortReport {
    /// `code`, `rank` (4 bytes LE), then the message, cut to fit [`MAX_ABORT_PAYLOAD`].
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_ABORT_PAYLOAD);
        out.push(self.code);
        out.extend_from_slice(&self.rank.to_le_bytes());
        let mut text = self.message.as_str();
        let room = MAX_ABORT_PAYLOAD - 5;
        if text.len() > room {
            let mut cut = room;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text = &text[..cut];
        }
        out.extend_from_slice(text.as_bytes());
        out
    }

    /// Parses a report (at most [`MAX_ABORT_PAYLOAD`] bytes, checked by [`decode`]).
    pub(crate) fn decode(bytes: &[u8]) -> Result<AbortReport, String> {
        if bytes.len() < 5 {
            return Err(format!(
                "abort report of {} bytes, expected at least 5",
                bytes.len()
            ));
        }
        let code = bytes[0];
        if !(ABORT_LOST..=ABORT_EXIT).contains(&code) {
            return Err(format!("unknown abort code {code}, expected 1, 2, 3 or 4"));
        }
        Ok(AbortReport {
            code,
            rank: u32::from_le_bytes(bytes[1..5].try_into().expect("4 bytes")),
            message: String::from_utf8_lossy(&bytes[5..]).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReduceOp;

    #[test]
    fn round_trips() {
        let fp = Fingerprint::allreduce::<f64>(9, 3, ReduceOp::Sum);
        let frame = decode(&encode_data(&fp, 24)).unwrap();
        assert_eq!(
            frame,
            Frame::Data {
                fingerprint: fp,
                len: 24
            }
        );
        assert_eq!(check_data(&frame, &fp, 24), Ok(()));
        assert!(matches!(
            check_data(&frame, &fp, 16),
            Err(DataError::Length(m)) if m.contains("expected 16")
        ));
        let other = Fingerprint::barrier(9);
        assert_eq!(check_data(&frame, &other, 24), Err(DataError::Mismatch(fp)));
        assert_eq!(decode(&encode_bye()), Ok(Frame::Bye));
        assert_eq!(
            decode(&encode_abort(10, 7)),
            Ok(Frame::Abort { len: 10, seq: 7 })
        );
        assert!(decode(&encode_abort(MAX_ABORT_PAYLOAD + 1, 0)).is_err());
        let mut stray = encode_abort(10, 7);
        stray[20] = 1;
        assert!(
            decode(&stray)
                .unwrap_err()
                .contains("after its call number")
        );
        let report = AbortReport {
            code: ABORT_LOST,
            rank: 3,
            message: "é".repeat(5000),
        };
        let bytes = report.encode();
        assert!(bytes.len() <= MAX_ABORT_PAYLOAD);
        let back = AbortReport::decode(&bytes).unwrap();
        assert_eq!((back.code, back.rank), (ABORT_LOST, 3));
        assert!(back.message.starts_with("éé"));
    }

    #[test]
    fn rejects_garbage() {
        let mut h = encode_bye();
        h[0] = b'X';
        assert!(decode(&h).unwrap_err().contains("magic"));
        let mut h = encode_bye();
        h[4] = 9;
        assert!(decode(&h).unwrap_err().contains("version 9"));
        let mut h = encode_bye();
        h[5] = 7;
        assert!(decode(&h).unwrap_err().contains("kind 7"));
        let mut h = encode_bye();
        h[20] = 1;
        assert!(decode(&h).is_err());
        assert!(AbortReport::decode(&[1, 0]).is_err());
        assert!(AbortReport::decode(&[9, 0, 0, 0, 0]).is_err());
    }
}
