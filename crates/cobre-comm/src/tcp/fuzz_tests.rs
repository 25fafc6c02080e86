//! Property tests: the frame and handshake decoders, and the receive path of a real
//! connection, never panic on arbitrary bytes and never trust a length they did not
//! expect.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use proptest::prelude::*;

use super::frame::{self, AbortReport, Frame, HEADER_BYTES, MAX_ABORT_PAYLOAD};
use super::handshake::{
    CHALLENGE_BYTES, Challenge, HELLO_BYTES, Hello, KIND_ABORT, KIND_REJECT, MAX_REASON,
    MESH_HELLO_BYTES, MeshHello, Notice, PREFIX_BYTES, WELCOME_FIXED, Welcome, check_hello,
    check_mesh_hello, decode_prefix,
};
use super::scratch::Scratch;
use super::transport::{Mesh, Peer, RecvOp, SendOp};
use crate::fingerprint::Fingerprint;
use crate::types::{CommError, ReduceOp};

fn array<const N: usize>() -> impl Strategy<Value = [u8; N]> {
    proptest::collection::vec(any::<u8>(), N).prop_map(|v| v.try_into().expect("N bytes"))
}

proptest! {
    #[test]
    fn frame_decoder_never_panics(bytes in array::<HEADER_BYTES>(), expect in 0_usize..1 << 20) {
        match frame::decode(&bytes) {
            Ok(Frame::Abort { len, .. }) => prop_assert!(len <= MAX_ABORT_PAYLOAD),
            Ok(f @ Frame::Data { .. }) => {
                let fp = Fingerprint::allreduce::<f64>(0, 1, ReduceOp::Sum);
                let _ = frame::check_data(&f, &fp, expect);
            }
            Ok(Frame::Bye) | Err(_) => {}
        }
    }

    #[test]
    fn frame_header_round_trips(seq in any::<u64>(), len in 0_usize..1 << 30, count in 0_usize..1000) {
        let fp = Fingerprint::broadcast::<u32>(seq, count, 1);
        let frame = frame::decode(&frame::encode_data(&fp, len)).unwrap();
        prop_assert_eq!(frame::check_data(&frame, &fp, len), Ok(()));
    }

    #[test]
    fn corrupted_headers_are_errors_not_panics(
        seq in any::<u64>(),
        at in 0_usize..HEADER_BYTES,
        flip in 1_u8..=255,
    ) {
        let fp = Fingerprint::barrier(seq);
        let mut bytes = frame::encode_data(&fp, 0);
        bytes[at] ^= flip;
        if let Ok(f) = frame::decode(&bytes) {
            // A flip that still decodes must be caught by the fingerprint or length check.
            prop_assert!(frame::check_data(&f, &fp, 0).is_err());
        }
    }

    #[test]
    fn abort_report_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..MAX_ABORT_PAYLOAD)) {
        if let Ok(report) = AbortReport::decode(&bytes) {
            prop_assert!(report.message.len() <= 3 * MAX_ABORT_PAYLOAD);
        }
    }

    #[test]
    fn handshake_decoders_never_panic(
        prefix in array::<PREFIX_BYTES>(),
        challenge in array::<CHALLENGE_BYTES>(),
        hello in array::<HELLO_BYTES>(),
        mesh in array::<MESH_HELLO_BYTES>(),
        fixed in array::<WELCOME_FIXED>(),
        size in 1_usize..64,
        entries in proptest::collection::vec(any::<u8>(), 0..400),
        reject in array::<4>(),
    ) {
        let _ = decode_prefix(prefix);
        let _ = Challenge::decode(&challenge);
        if let Ok(h) = Hello::decode(&hello) {
            prop_assert!(!h.verify(b"key", &[0; 32]) || h.encode() == hello);
        }
        let _ = MeshHello::decode(&mesh).map(|m| m.verify(b""));
        if Welcome::decode_fixed(&fixed, size).is_ok() {
            // The announced count equals the expected size: entries are sized by us.
            prop_assert_eq!(u32::from_le_bytes(fixed[16..20].try_into().unwrap()) as usize, size);
        }
        let _ = Welcome::decode_entries(&entries);
        if let Ok(n) = Notice::decode_len(reject) {
            prop_assert!(n <= MAX_REASON);
        }
    }

    /// The checks rank 0 and the mesh listeners run on a complete message refuse
    /// arbitrary bytes (they would need the token's HMAC) and never panic.
    #[test]
    fn handshake_checks_refuse_arbitrary_bytes(
        hello in array::<HELLO_BYTES>(),
        mesh in array::<MESH_HELLO_BYTES>(),
        challenge in array::<32>(),
        session in array::<16>(),
        size in 0_usize..5000,
        rank in 0_usize..5000,
    ) {
        prop_assert!(check_hello(&hello, &challenge, b"token", size).is_err());
        prop_assert!(check_mesh_hello(&mesh, &session, b"token", rank, size, rank + 1..size).is_err());
    }

    /// A valid message with one bit flipped is refused by its check.
    #[test]
    fn flipped_handshake_bits_are_refused(at in 0_usize..HELLO_BYTES, mesh_at in 0_usize..MESH_HELLO_BYTES, bit in 0_u8..8) {
        let challenge = [3_u8; 32];
        let mut hello = Hello::new(b"k", &challenge, 1, 4, 7, [9; 32]).encode();
        prop_assert!(check_hello(&hello, &challenge, b"k", 4).is_ok());
        hello[at] ^= 1 << bit;
        prop_assert!(check_hello(&hello, &challenge, b"k", 4).is_err());
        let session = [4_u8; 16];
        let mut mesh = MeshHello::new(b"k", session, 3, 2).encode();
        prop_assert_eq!(check_mesh_hello(&mesh, &session, b"k", 2, 4, 3..4), Ok(3));
        mesh[mesh_at] ^= 1 << bit;
        prop_assert!(check_mesh_hello(&mesh, &session, b"k", 2, 4, 3..4).is_err());
    }

    /// Notices (refusals and aborts) round-trip any reason, cut to the longest allowed on
    /// a character boundary, and decode arbitrary text without failing.
    #[test]
    fn notices_round_trip_and_decode_any_text(reason in ".{0,600}", abort in any::<bool>(), raw in proptest::collection::vec(any::<u8>(), 0..MAX_REASON)) {
        let notice = if abort { Notice::abort(reason.clone()) } else { Notice::reject(reason.clone()) };
        let bytes = notice.encode();
        let kind = decode_prefix(bytes[..PREFIX_BYTES].try_into().unwrap());
        prop_assert_eq!(kind, Ok(if abort { KIND_ABORT } else { KIND_REJECT }));
        let n = Notice::decode_len(bytes[PREFIX_BYTES..PREFIX_BYTES + 4].try_into().unwrap()).unwrap();
        prop_assert_eq!(n, bytes.len() - PREFIX_BYTES - 4);
        let text = Notice::decode_reason(&bytes[PREFIX_BYTES + 4..]);
        prop_assert!(reason.starts_with(&text));
        let _ = Notice::decode_reason(&raw);
    }
}

/// A two-rank mesh whose peer is a raw socket controlled by the test.
fn raw_pair() -> (Mesh, TcpStream) {
    let (mesh, mut raw) = raw_mesh(2);
    (mesh, raw.remove(0))
}

/// Rank 0 of a mesh of `size` ranks whose peers are raw sockets controlled by the test
/// (the socket of rank `p` at index `p - 1`).
fn raw_mesh(size: usize) -> (Mesh, Vec<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut peers = vec![None];
    let mut raws = Vec::new();
    for _ in 1..size {
        raws.push(TcpStream::connect(listener.local_addr().unwrap()).unwrap());
        let (ours, _) = listener.accept().unwrap();
        peers.push(Some(Peer::new(ours, false).unwrap()));
    }
    let mesh = Mesh {
        rank: 0,
        size,
        timeout: Duration::from_secs(2),
        peers,
        neighbours: (1..size).collect(),
        on_demand: None,
        scratch: Scratch::default(),
        algorithms: crate::algorithm::Forced::NONE,
        hosts: std::sync::Arc::new(super::hosts::Hosts::one(size)),
        spin: Duration::from_micros(50),
        unpaced: false,
    };
    (mesh, raws)
}

/// Sends the abort frame of a rank that failed in call `seq` with `message`.
fn send_abort(raw: &mut TcpStream, seq: u64, message: &str) {
    let body = AbortReport {
        code: super::frame::ABORT_MISMATCH,
        rank: 1,
        message: message.into(),
    }
    .encode();
    raw.write_all(&frame::encode_abort(body.len(), seq))
        .unwrap();
    raw.write_all(&body).unwrap();
}

/// The error of barrier call `seq` that reads an empty frame from each of `from`.
fn barrier_error(mesh: &mut Mesh, seq: u64, from: &[usize]) -> CommError {
    let fp = Fingerprint::barrier(seq);
    let mut recvs: Vec<RecvOp<'_>> = from.iter().map(|&p| RecvOp::new(p, &mut [])).collect();
    mesh.exchange(&fp, &mut [], &mut recvs)
        .expect_err("the call must fail")
        .err
}

/// A peer that failed in a later call has sent this rank all its data for this call: its
/// abort does not fail this call (which waits for the others), only the next one. A peer
/// that failed in this call fails it at once.
#[test]
fn an_abort_for_a_later_call_fails_the_next_call_not_this_one() {
    // The report alone (seen by peeking), or followed by the end of the stream (read into
    // the stash when the connection closes).
    for closes in [false, true] {
        let (mut mesh, mut raws) = raw_mesh(3);
        mesh.timeout = Duration::from_millis(300);
        send_abort(&mut raws[0], 6, "rank 1 refused call #6");
        if closes {
            raws[0].shutdown(std::net::Shutdown::Write).unwrap();
        }
        // Call 5 reads only from rank 2, which stays silent: it waits for rank 2 and times
        // out naming it, instead of failing at once with rank 1's report of call 6.
        match barrier_error(&mut mesh, 5, &[2]) {
            CommError::Timeout { message, .. } => {
                assert!(message.contains("rank(s) 2"), "{message}");
            }
            other => panic!("call 5 must wait for rank 2, not fail on rank 1's report: {other}"),
        }
        // Call 6 reads from rank 1 and gets its report.
        match barrier_error(&mut mesh, 6, &[1, 2]) {
            CommError::CollectiveMismatch { message, .. } => assert!(
                message.contains("reported by rank 1: rank 1 refused call #6"),
                "{message}"
            ),
            other => panic!("{other}"),
        }
    }
    // An abort for the very call in progress ends it at once, even from a peer it does
    // not read from.
    let (mut mesh, mut raws) = raw_mesh(3);
    mesh.timeout = Duration::from_secs(30);
    send_abort(&mut raws[0], 5, "rank 1 lost rank 2");
    match barrier_error(&mut mesh, 5, &[2]) {
        CommError::CollectiveMismatch { message, .. } => {
            assert!(message.contains("reported by rank 1"), "{message}");
        }
        other => panic!("{other}"),
    }
}

/// A rank that fails may not be able to tell every peer (a frame it cut in the middle, a
/// send buffer its peer does not empty): that peer sees only the connection close. When
/// another peer's report already waits at the head of its connection, the call fails with
/// that report, which says why, instead of blaming the rank that left because of it; a
/// report queued behind data is not looked for, and the closed rank is named.
#[test]
fn a_rank_that_leaves_after_a_failure_is_not_blamed_when_a_report_waits() {
    for behind_data in [false, true] {
        let (mut mesh, mut raws) = raw_mesh(3);
        mesh.timeout = Duration::from_millis(300);
        if behind_data {
            let later = Fingerprint::barrier(1);
            raws[1].write_all(&frame::encode_data(&later, 0)).unwrap();
        }
        send_abort(&mut raws[1], 0, "rank 2 saw the failure first");
        // Rank 1 leaves without a word; the barrier reads only from it.
        drop(raws.remove(0));
        let err = barrier_error(&mut mesh, 0, &[1]);
        if behind_data {
            match err {
                CommError::PeerLost { rank: 1, .. } => {}
                other => panic!("the report behind data is not looked for: {other}"),
            }
        } else {
            match err {
                CommError::CollectiveMismatch { message, .. } => assert!(
                    message.contains("reported by rank 2: rank 2 saw the failure first"),
                    "{message}"
                ),
                other => panic!("rank 2's report, not rank 1's close: {other}"),
            }
        }
    }
}

/// A receive reads a frame's header and payload with one read, so the bytes after a header
/// that is not the expected data frame land in the payload buffer: they must be taken
/// back, and the abort report they hold read from there, whatever the payload's size
/// against the report's and whatever follows the report.
#[test]
fn a_report_read_with_its_header_into_a_payload_is_taken_back() {
    for expected in [0, 1, 5, 20, 4096] {
        for then_bye in [false, true] {
            let (mut mesh, mut raw) = raw_pair();
            mesh.timeout = Duration::from_millis(300);
            send_abort(&mut raw, 0, "rank 1 failed in call 0");
            if then_bye {
                raw.write_all(&frame::encode_bye()).unwrap();
            }
            let fp = Fingerprint::allgatherv::<u8>(0, &[expected, expected]);
            let mut dest = vec![0_u8; expected];
            let mut recvs = [RecvOp::new(1, &mut dest)];
            let err = mesh.exchange(&fp, &mut [], &mut recvs).unwrap_err().err;
            match err {
                CommError::CollectiveMismatch { message, .. } => assert!(
                    message.contains("reported by rank 1: rank 1 failed in call 0"),
                    "payload of {expected}, bye after: {message}"
                ),
                other => panic!("payload of {expected}, bye after: {other}"),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Arbitrary bytes from a peer (optionally behind a valid header announcing any length)
    /// make the receive fail with an error naming the peer; the payload lands only in the
    /// caller's buffer of the expected size.
    #[test]
    fn receive_path_survives_arbitrary_bytes(
        garbage in proptest::collection::vec(any::<u8>(), 0..2048),
        valid_header in any::<bool>(),
        announced in any::<u64>(),
        expected in 0_usize..4096,
    ) {
        let (mut mesh, mut raw) = raw_pair();
        let fp = Fingerprint::allgatherv::<u8>(0, &[expected, expected]);
        if valid_header {
            let mut header = frame::encode_data(&fp, 0);
            header[56..64].copy_from_slice(&announced.to_le_bytes());
            raw.write_all(&header).unwrap();
        }
        raw.write_all(&garbage).unwrap();
        drop(raw);
        let mut dest = vec![0_u8; expected];
        let mut recvs = [RecvOp::new(1, &mut dest)];
        let result = mesh.exchange(&fp, &mut [], &mut recvs);
        let announced_ok = valid_header && announced == expected as u64 && garbage.len() >= expected;
        if !announced_ok {
            let fail = result.expect_err("garbage must not pass");
            match fail.err {
                CommError::PeerLost { rank, .. } => prop_assert_eq!(rank, 1),
                CommError::Protocol { message, .. } | CommError::CollectiveMismatch { message, .. } => {
                    prop_assert!(message.contains("rank 1"), "{}", message);
                }
                other => prop_assert!(false, "unexpected error {other}"),
            }
        }
    }
}

#[test]
fn a_peer_that_sends_nothing_times_out_naming_it() {
    let (mut mesh, _raw) = raw_pair();
    mesh.timeout = Duration::from_millis(300);
    let fp = Fingerprint::barrier(0);
    let start = std::time::Instant::now();
    let mut sends = [SendOp::new(1, &fp, &[])];
    let mut recvs = [RecvOp::new(1, &mut [])];
    let fail = mesh.exchange(&fp, &mut sends, &mut recvs).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(2));
    match fail.err {
        CommError::Timeout { message, .. } => assert!(message.contains("rank(s) 1"), "{message}"),
        other => panic!("{other}"),
    }
}

/// A rank that says goodbye while its peer's bye is still unread must not close with
/// unread bytes: the kernel would reset the connection instead of closing it. The peer
/// reads this rank's bye, then the end of the stream, and no reset follows; whether the
/// peer has closed its side already or not.
#[test]
fn goodbye_closes_cleanly_when_the_peers_bye_came_first() {
    use std::io::Read;
    for peer_closed_its_side in [true, false] {
        let (mut mesh, mut raw) = raw_pair();
        raw.write_all(&frame::encode_bye()).unwrap();
        if peer_closed_its_side {
            raw.shutdown(std::net::Shutdown::Write).unwrap();
        }
        mesh.goodbye();
        drop(mesh);
        let mut got = Vec::new();
        match raw.read_to_end(&mut got) {
            Ok(_) => assert_eq!(
                got,
                frame::encode_bye(),
                "expected one bye frame, then the end"
            ),
            Err(e) => panic!("expected this rank's bye and the end of the stream, found: {e}"),
        }
        // A reset that came after the end of the stream shows as the socket's pending error.
        assert!(
            raw.take_error().unwrap().is_none(),
            "peer closed its side: {peer_closed_its_side}; expected a clean close, found a reset"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// A streamed receive hands over every payload byte once, in order, in whole units
    /// but the last piece, whatever the stage's size (units and odd bytes) and however the
    /// peer's writes fall; a frame of another call reaches the consumer not at all.
    #[test]
    fn a_streamed_receive_hands_over_the_payload_in_order_and_in_units(
        unit in prop::sample::select(vec![1_usize, 4, 8]),
        units in 0_usize..600,
        stage_units in 2_usize..5,
        stage_odd in 0_usize..4,
        cut in 1_usize..700,
        other_call in any::<bool>(),
    ) {
        let (mut mesh, mut raw) = raw_pair();
        let len = units * unit;
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
        let fp = Fingerprint::allgatherv::<u8>(3, &[len, len]);
        let sent = if other_call { Fingerprint::allgatherv::<u8>(4, &[len, len]) } else { fp };
        raw.write_all(&frame::encode_data(&sent, len)).unwrap();
        for piece in payload.chunks(cut) {
            raw.write_all(piece).unwrap();
        }
        let mut stage = vec![0_u8; stage_units * unit + stage_odd];
        let mut got: Vec<(usize, Vec<u8>)> = Vec::new();
        let result = {
            let mut consume = |offset: usize, bytes: &[u8]| got.push((offset, bytes.to_vec()));
            let mut recvs = [RecvOp::streamed(1, len, unit, &mut stage, &mut consume)];
            mesh.exchange(&fp, &mut [], &mut recvs)
        };
        if other_call {
            prop_assert!(result.is_err());
            prop_assert!(got.is_empty(), "a frame of another call was handed over");
        } else {
            prop_assert!(result.is_ok(), "{:?}", result.err().map(|f| f.err));
            let mut joined = Vec::new();
            for (i, (offset, bytes)) in got.iter().enumerate() {
                prop_assert_eq!(*offset, joined.len());
                prop_assert!(i + 1 == got.len() || bytes.len() % unit == 0);
                joined.extend_from_slice(bytes);
            }
            prop_assert_eq!(joined, payload);
        }
    }
}
