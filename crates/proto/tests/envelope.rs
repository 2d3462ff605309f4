use peddlenet_proto::*;
use proptest::prelude::*;

fn keys(b: u8) -> RoomKeys {
    RoomKeys::derive(&RoomSecret([b; 32]))
}

fn text(s: &str) -> Body {
    Body::Text(s.to_owned())
}

#[test]
fn seal_then_open_round_trips() {
    let k = keys(1);
    let me = Identity::from_seed(&[9; 32]);
    let env = seal(
        &k,
        &me,
        "ana",
        &text("hello camp"),
        1_700_000_000_000,
        [7; 24],
    )
    .unwrap();
    let opened = EnvelopeView::parse(&env).unwrap().open(&k).unwrap();
    assert_eq!(opened.author, me.author_id());
    assert_eq!(opened.author_name, "ana");
    assert_eq!(opened.body, text("hello camp"));
    assert_eq!(opened.room_id, k.room_id());
    assert_eq!(opened.id, message_id(&env));
    assert_eq!(
        env.len() % PAD_BLOCK,
        ENVELOPE_OVERHEAD % PAD_BLOCK,
        "plaintext is padded to blocks"
    );
}

#[test]
fn a_non_member_cannot_read() {
    let (k, other) = (keys(1), keys(2));
    let env = seal(
        &k,
        &Identity::from_seed(&[9; 32]),
        "ana",
        &text("secret"),
        1,
        [7; 24],
    )
    .unwrap();
    let view = EnvelopeView::parse(&env).unwrap();
    // Another room's keys do not even apply to this room id...
    assert_eq!(view.open(&other), Err(Error::WrongRoom));
    // ...and a non-member who keeps the room id but guesses a key fails to decrypt.
    let forged_keys = RoomKeys::derive(&RoomSecret([3; 32]));
    let mut relabelled = env.clone();
    relabelled[2..34].copy_from_slice(forged_keys.room_id().as_bytes());
    assert!(
        EnvelopeView::parse(&relabelled)
            .unwrap()
            .open(&forged_keys)
            .is_err()
    );
    // The text is not in the bytes on the air.
    assert!(!env.windows(6).any(|w| w == b"secret"));
    assert!(!env.windows(3).any(|w| w == b"ana"));
}

#[test]
fn open_room_verified_still_checks_the_contents() {
    let k = keys(1);
    let me = Identity::from_seed(&[9; 32]);
    let env = seal(&k, &me, "ana", &text("hi"), 1, [7; 24]).unwrap();
    assert_eq!(
        EnvelopeView::parse(&env)
            .unwrap()
            .open_room_verified(&k)
            .unwrap()
            .body,
        text("hi")
    );
    let mut bad = env.clone();
    bad[100] ^= 1;
    assert_eq!(
        EnvelopeView::parse(&bad).unwrap().open_room_verified(&k),
        Err(Error::Decrypt)
    );
    assert_eq!(
        EnvelopeView::parse(&env)
            .unwrap()
            .open_room_verified(&keys(2)),
        Err(Error::WrongRoom)
    );
}

#[test]
fn a_non_member_cannot_post() {
    // An outsider who knows the room id (it is public) but not the secret signs
    // with their own key: members and relays refuse it.
    let k = keys(1);
    let outsider = keys(66);
    let mut env = seal(
        &outsider,
        &Identity::from_seed(&[5; 32]),
        "eve",
        &text("hi"),
        1,
        [1; 24],
    )
    .unwrap();
    env[2..34].copy_from_slice(k.room_id().as_bytes());
    let view = EnvelopeView::parse(&env).unwrap();
    assert_eq!(view.verify_room_signature(), Err(Error::RoomSignature));
    assert_eq!(view.open(&k), Err(Error::RoomSignature));
}

#[test]
fn forged_author_signature_is_refused() {
    // A member who re-signs the room layer cannot pass a message off as another
    // author's: the inner signature is by the author's own key.
    let k = keys(1);
    let alice = Identity::from_seed(&[1; 32]);
    let mallory = Identity::from_seed(&[2; 32]);
    let env = seal(&k, &mallory, "alice", &text("pay me"), 1, [3; 24]).unwrap();
    let ok = EnvelopeView::parse(&env).unwrap().open(&k).unwrap();
    assert_eq!(
        ok.author,
        mallory.author_id(),
        "the name is a label; the key is the identity"
    );
    assert_ne!(ok.author, alice.author_id());
}

#[test]
fn timestamps_far_in_the_future_are_refused() {
    assert!(check_timestamp(1_000, 1_000).is_ok());
    assert!(check_timestamp(0, 1_000).is_ok());
    assert!(check_timestamp(1_000 + MAX_FUTURE_SKEW_MS, 1_000).is_ok());
    assert!(matches!(
        check_timestamp(1_001 + MAX_FUTURE_SKEW_MS, 1_000),
        Err(Error::FromTheFuture { .. })
    ));
}

#[test]
fn limits_are_enforced_when_sealing() {
    let k = keys(1);
    let me = Identity::from_seed(&[9; 32]);
    let long = "x".repeat(MAX_TEXT_LEN + 1);
    assert!(matches!(
        seal(&k, &me, "a", &text(&long), 1, [0; 24]),
        Err(Error::FieldLength { .. })
    ));
    let max = "é".repeat(MAX_TEXT_LEN / 2);
    let env = seal(&k, &me, &"n".repeat(MAX_NAME_LEN), &text(&max), 1, [0; 24]).unwrap();
    assert!(env.len() <= MAX_ENVELOPE_LEN);
    assert!(EnvelopeView::parse(&env).unwrap().open(&k).is_ok());
}

#[test]
fn oversized_and_truncated_input_is_refused() {
    assert!(matches!(
        EnvelopeView::parse(&vec![1u8; MAX_ENVELOPE_LEN + 1]),
        Err(Error::TooLarge { .. })
    ));
    let k = keys(1);
    let env = seal(
        &k,
        &Identity::from_seed(&[9; 32]),
        "a",
        &text("b"),
        1,
        [0; 24],
    )
    .unwrap();
    for cut in [0, 1, 50, 86, env.len() - 1] {
        assert!(EnvelopeView::parse(&env[..cut]).is_err(), "cut at {cut}");
    }
    let mut longer = env.clone();
    longer.push(0);
    assert!(matches!(
        EnvelopeView::parse(&longer),
        Err(Error::TrailingBytes { trailing: 1 })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trip_any_text(name in "\\PC{0,20}", body in "\\PC{0,300}", ts in any::<u64>(), nonce in any::<[u8; 24]>()) {
        prop_assume!(name.len() <= MAX_NAME_LEN);
        let k = keys(4);
        let me = Identity::from_seed(&[8; 32]);
        let env = seal(&k, &me, &name, &text(&body), ts, nonce).unwrap();
        let o = EnvelopeView::parse(&env).unwrap().open(&k).unwrap();
        prop_assert_eq!(o.author_name, name);
        prop_assert_eq!(o.body, text(&body));
        prop_assert_eq!(o.timestamp_ms, ts);
    }

    /// The decoder never panics, whatever it is fed.
    #[test]
    fn parse_and_open_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let k = keys(4);
        if let Ok(v) = EnvelopeView::parse(&bytes) {
            let _ = v.verify_room_signature();
            let _ = v.open(&k);
        }
    }

    /// Any change to any byte of a valid envelope is detected.
    #[test]
    fn every_bit_flip_is_detected(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let k = keys(4);
        let env = seal(&k, &Identity::from_seed(&[8; 32]), "n", &text("flip me"), 42, [2; 24]).unwrap();
        let mut bad = env.clone();
        let i = pos.index(bad.len());
        bad[i] ^= 1 << bit;
        let verdict = EnvelopeView::parse(&bad).and_then(|v| v.open(&k));
        prop_assert!(verdict.is_err(), "flip at byte {} bit {} accepted", i, bit);
    }

    /// Valid header, random ciphertext: refused, no panic.
    #[test]
    fn random_ciphertext_is_refused(ct in proptest::collection::vec(any::<u8>(), 16..600)) {
        let k = keys(4);
        let mut env = seal(&k, &Identity::from_seed(&[8; 32]), "n", &text(""), 42, [2; 24]).unwrap();
        env.truncate(82);
        env.extend_from_slice(&(ct.len() as u32).to_be_bytes());
        env.extend_from_slice(&ct);
        env.extend_from_slice(&[0u8; 64]);
        let v = EnvelopeView::parse(&env).unwrap();
        prop_assert!(v.open(&k).is_err());
    }
}

#[test]
fn receipts_round_trip_and_look_like_short_texts() {
    let k = keys(1);
    let me = Identity::from_seed(&[9; 32]);
    let ids: Vec<MessageId> = (0..3u8).map(|i| MessageId([i; 32])).collect();
    let receipt = seal(&k, &me, "ana", &Body::Receipt(ids.clone()), 5, [7; 24]).unwrap();
    let short = seal(&k, &me, "ana", &text("ok"), 5, [8; 24]).unwrap();
    assert_eq!(
        receipt.len(),
        short.len(),
        "a relay cannot tell a receipt from a short text by its length"
    );
    assert_eq!(
        receipt[..2],
        short[..2],
        "nor by the header's version and kind"
    );
    assert_eq!(
        EnvelopeView::parse(&receipt)
            .unwrap()
            .open(&k)
            .unwrap()
            .body,
        Body::Receipt(ids)
    );
    for bad in [Vec::new(), vec![MessageId([1; 32]); MAX_RECEIPT_IDS + 1]] {
        assert!(matches!(
            seal(&k, &me, "ana", &Body::Receipt(bad), 5, [7; 24]),
            Err(Error::FieldLength { .. })
        ));
    }
    assert!(
        seal(
            &k,
            &me,
            "ana",
            &Body::Receipt(vec![MessageId([1; 32]); MAX_RECEIPT_IDS]),
            5,
            [7; 24]
        )
        .is_ok()
    );
}

#[test]
fn a_room_verified_envelope_is_made_only_by_a_signature_that_verifies() {
    let k = keys(1);
    let me = Identity::from_seed(&[9; 32]);
    let env = seal(&k, &me, "ana", &text("hi"), 5, [7; 24]).unwrap();
    let v = RoomVerified::check(env.clone()).unwrap();
    assert_eq!(
        (v.id(), v.room_id(), v.timestamp_ms()),
        (message_id(&env), k.room_id(), 5)
    );
    assert_eq!(v.bytes(), &env[..]);
    // The room's kept key checks the same, and refuses another room's envelope.
    let kept = k.verifier();
    assert_eq!(kept.check(env.clone()).unwrap(), v);
    let theirs = seal(&keys(2), &me, "ana", &text("hi"), 5, [7; 24]).unwrap();
    assert_eq!(kept.check(theirs.clone()).unwrap_err(), Error::WrongRoom);
    // Another room's signature under this room's id, and a flipped bit.
    let mut forged = theirs;
    forged[2..34].copy_from_slice(k.room_id().as_bytes());
    assert_eq!(
        RoomVerified::check(forged.clone()).unwrap_err(),
        Error::RoomSignature
    );
    assert_eq!(kept.check(forged).unwrap_err(), Error::RoomSignature);
    let mut bad = env.clone();
    bad[100] ^= 1;
    assert_eq!(kept.check(bad).unwrap_err(), Error::RoomSignature);
    // A room id that is no room's key.
    let mut junk = env;
    junk[2..34].copy_from_slice(&[0xff; 32]);
    assert_eq!(RoomVerified::check(junk).unwrap_err(), Error::RoomSignature);
}
