//! Property tests of the chain verifier: build a sound chain of random
//! bodies, damage it in one way, and check where the first finding lands.
//!
//! The expected sequence and kind are worked out from the damage done, never
//! from the verifier's own output.

use std::collections::HashMap;

use checkin_core::chain::{
    ChainHash, ChainHead, ChainVerifier, Finding, FindingKind, GENESIS_SEQ, LinkHash, StoredLink,
    link_hash,
};
use proptest::prelude::*;
use proptest::sample::Index;

/// One stored message: the body and the headers that travelled with it.
#[derive(Clone, Debug)]
struct Stored {
    seq: u64,
    body: Vec<u8>,
    prev: ChainHash,
    hash: ChainHash,
}

fn build_chain(bodies: Vec<Vec<u8>>) -> Vec<Stored> {
    let mut prev = ChainHash::ZERO;
    let mut chain = Vec::new();

    for (body, seq) in bodies.into_iter().zip(GENESIS_SEQ..) {
        let hash = link_hash(&prev, seq, &body);
        chain.push(Stored {
            seq,
            body,
            prev,
            hash,
        });
        prev = hash;
    }
    chain
}

fn head_of(chain: &[Stored]) -> ChainHead {
    let last = chain.last().expect("chains in these tests are never empty");
    ChainHead {
        seq: last.seq,
        hash: last.hash,
    }
}

/// Pushes every record, then compares the end with `recorded_head` if given.
fn verify(chain: &[Stored], recorded_head: Option<ChainHead>) -> Vec<Finding> {
    let mut verifier = ChainVerifier::new();
    let mut recomputed = HashMap::new();

    for stored in chain {
        let hash = verifier.push(StoredLink {
            seq: stored.seq,
            body: &stored.body,
            prev: Some(stored.prev),
            hash: Some(stored.hash),
        });
        recomputed.insert(stored.seq, hash);
    }

    if let Some(head) = recorded_head {
        verifier.check_expected_head(head, recomputed.get(&head.seq).copied());
    }
    verifier.into_findings()
}

fn first(findings: &[Finding]) -> Option<(u64, FindingKind)> {
    findings.first().map(|finding| (finding.seq, finding.kind))
}

/// Bodies of 2 to 11 records, genesis included, each 1 to 47 random bytes.
fn bodies() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 1..48), 2..12)
}

proptest! {
    #[test]
    fn clean_chain_has_no_findings(bodies in bodies()) {
        let chain = build_chain(bodies);
        let head = head_of(&chain);

        prop_assert_eq!(verify(&chain, Some(head)), vec![]);
    }

    #[test]
    fn changed_body_byte_found_at_its_seq(
        bodies in bodies(),
        record in any::<Index>(),
        position in any::<Index>(),
        mask in 1..=u8::MAX,
    ) {
        let mut chain = build_chain(bodies);
        let target = record.index(chain.len());
        let body = &mut chain[target].body;
        let position = position.index(body.len());
        body[position] ^= mask;

        let findings = verify(&chain, None);
        prop_assert_eq!(first(&findings), Some((chain[target].seq, FindingKind::HashMismatch)));
        // Later records still chain from the stored hash header, so nothing else is reported.
        prop_assert_eq!(findings.len(), 1, "{:?}", findings);
    }

    #[test]
    fn deleted_record_found_at_its_seq(bodies in bodies(), record in any::<Index>()) {
        let mut chain = build_chain(bodies);
        // Deleting the last record looks like a truncation, which needs a recorded head.
        let target = record.index(chain.len() - 1);
        let deleted_seq = chain.remove(target).seq;

        let expected_kind = if deleted_seq == GENESIS_SEQ {
            FindingKind::MissingGenesis
        } else {
            FindingKind::Gap
        };
        prop_assert_eq!(first(&verify(&chain, None)), Some((deleted_seq, expected_kind)));
    }

    #[test]
    fn swapped_bodies_found_at_first_of_pair(bodies in bodies(), pair in any::<Index>()) {
        let mut chain = build_chain(bodies);
        let target = pair.index(chain.len() - 1);
        let (left, right) = chain.split_at_mut(target + 1);
        std::mem::swap(&mut left[target].body, &mut right[0].body);

        // Equal bodies make the swap a no-op that no verifier can see.
        let expected = if chain[target].body == chain[target + 1].body {
            None
        } else {
            Some((chain[target].seq, FindingKind::HashMismatch))
        };
        prop_assert_eq!(first(&verify(&chain, None)), expected);
    }

    #[test]
    fn truncated_tail_found_against_recorded_head(bodies in bodies(), keep in any::<Index>()) {
        let mut chain = build_chain(bodies);
        let recorded_head = head_of(&chain);
        let kept_count = keep.index(chain.len());
        chain.truncate(kept_count);

        let first_missing_seq = GENESIS_SEQ + kept_count as u64;
        prop_assert_eq!(
            first(&verify(&chain, Some(recorded_head))),
            Some((first_missing_seq, FindingKind::Truncated))
        );
    }

    #[test]
    fn changed_hash_header_found_at_its_seq(
        bodies in bodies(),
        record in any::<Index>(),
        position in 0..32usize,
        mask in 1..=u8::MAX,
    ) {
        let mut chain = build_chain(bodies);
        let target = record.index(chain.len());
        chain[target].hash.0[position] ^= mask;

        let findings = verify(&chain, None);
        prop_assert_eq!(first(&findings), Some((chain[target].seq, FindingKind::HashMismatch)));
        prop_assert_eq!(findings.len(), 1, "{:?}", findings);
    }

    #[test]
    fn rewritten_history_found_against_recorded_head(
        bodies in bodies(),
        record in any::<Index>(),
        mask in 1..=u8::MAX,
    ) {
        let recorded_head = head_of(&build_chain(bodies.clone()));
        let mut rewritten = bodies;
        let target = record.index(rewritten.len());
        rewritten[target][0] ^= mask;

        // Headers recomputed after the change make the chain sound on its own,
        // so only the head recorded before the rewrite can reveal it.
        let chain = build_chain(rewritten);
        prop_assert_eq!(verify(&chain, None), vec![]);
        prop_assert_eq!(
            first(&verify(&chain, Some(recorded_head))),
            Some((recorded_head.seq, FindingKind::Fork))
        );
    }
}

#[test]
fn finding_kind_codes_round_trip() {
    let expected = [
        "gap",
        "out_of_order",
        "hash_mismatch",
        "prev_mismatch",
        "truncated",
        "fork",
        "missing_genesis",
        "duplicate_event",
        "undecodable",
    ];
    let codes: Vec<&str> = FindingKind::ALL.iter().map(|kind| kind.as_str()).collect();
    assert_eq!(codes, expected);

    for kind in FindingKind::ALL {
        assert_eq!(FindingKind::from_code(kind.as_str()), Some(kind));
        assert!(
            !kind.message_en().is_empty(),
            "{kind:?} has no English text"
        );
        assert!(
            !kind.message_zh().is_empty(),
            "{kind:?} has no Chinese text"
        );
        let serialized = serde_json::to_string(&kind).expect("kind serialises");
        assert_eq!(serialized, format!("\"{}\"", kind.as_str()));
    }
}

fn link(stored: &Stored) -> StoredLink<'_> {
    StoredLink {
        seq: stored.seq,
        body: &stored.body,
        prev: Some(stored.prev),
        hash: Some(stored.hash),
    }
}

#[test]
fn known_hash_used_only_from_chosen_prev() {
    let chain = build_chain(vec![b"genesis".to_vec(), b"second".to_vec()]);
    let marker = ChainHash([0xab; 32]);

    // A known hash computed from another predecessor is ignored and recomputed.
    let mut verifier = ChainVerifier::new();
    verifier.push(link(&chain[0]));
    let other_prev = LinkHash {
        prev: ChainHash([1; 32]),
        hash: marker,
    };
    let pushed = verifier.push_known(link(&chain[1]), Some(other_prev));
    assert_eq!(pushed.prev, chain[0].hash);
    assert_eq!(pushed.hash, chain[1].hash);
    assert!(verifier.findings().is_empty());

    // A known hash from the chosen predecessor is taken as given, so a wrong
    // one shows up as a mismatch with the stored header.
    let mut verifier = ChainVerifier::new();
    verifier.push(link(&chain[0]));
    let same_prev = LinkHash {
        prev: chain[0].hash,
        hash: marker,
    };
    let pushed = verifier.push_known(link(&chain[1]), Some(same_prev));
    assert_eq!(pushed.hash, marker);
    assert_eq!(
        first(verifier.findings()),
        Some((2, FindingKind::HashMismatch))
    );
}
