use peddlenet_proto::*;
use proptest::prelude::*;

fn sample() -> Invite {
    Invite::new(
        RoomSecret([7; 32]),
        Identity::from_seed(&[1; 32]).author_id(),
        "Base camp",
        [
            "/ip4/192.168.4.2/tcp/4717".to_string(),
            "/ip4/192.168.4.2/udp/4717/quic-v1".to_string(),
        ],
    )
    .unwrap()
}

#[test]
fn round_trips_through_the_uri() {
    let inv = sample();
    let uri = inv.to_uri();
    assert!(uri.starts_with(INVITE_PREFIX));
    assert_eq!(Invite::parse(&uri).unwrap(), inv);
    // As people paste it: padded with white space, scheme in capitals.
    let shouted = format!("  PEDDLENET://JOIN/{}\n", &uri[INVITE_PREFIX.len()..]);
    assert_eq!(Invite::parse(&shouted).unwrap(), inv);
}

#[test]
fn keeps_only_addresses_that_fit() {
    let addrs = (0..10)
        .map(|i| format!("/ip4/10.0.0.{i}/tcp/1"))
        .chain(["".into(), "x".repeat(200)]);
    let inv = Invite::new(RoomSecret([0; 32]), AuthorId([0; 32]), "r", addrs).unwrap();
    assert_eq!(inv.addrs.len(), MAX_INVITE_ADDRS);
}

#[test]
fn malformed_invites_say_why() {
    let uri = sample().to_uri();
    assert!(matches!(
        Invite::parse("https://example.org/join/abc"),
        Err(Error::InviteScheme { .. })
    ));
    assert!(matches!(Invite::parse(""), Err(Error::InviteScheme { .. })));
    assert_eq!(
        Invite::parse(&format!("{INVITE_PREFIX}not*base64!")),
        Err(Error::InviteEncoding)
    );
    // Copied incompletely.
    assert!(Invite::parse(&uri[..uri.len() - 5]).is_err());
    // One character changed.
    let mut chars: Vec<char> = uri.chars().collect();
    let i = INVITE_PREFIX.len() + 10;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let typo: String = chars.into_iter().collect();
    assert_eq!(Invite::parse(&typo), Err(Error::InviteChecksum));
    assert!(matches!(
        Invite::parse(&format!("{INVITE_PREFIX}{}", "A".repeat(5000))),
        Err(Error::TooLarge { .. })
    ));
    assert!(matches!(
        Invite::new(RoomSecret([0; 32]), AuthorId([0; 32]), "  ", Vec::new()),
        Err(Error::Empty(_))
    ));
}

proptest! {
    #[test]
    fn round_trip_any_invite(secret in any::<[u8; 32]>(), name in "\\PC{1,16}", addrs in proptest::collection::vec("/ip4/[0-9.]{7,15}/tcp/[0-9]{1,5}", 0..6)) {
        prop_assume!(!name.trim().is_empty());
        let inv = Invite::new(RoomSecret(secret), AuthorId([3; 32]), &name, addrs).unwrap();
        prop_assert_eq!(Invite::parse(&inv.to_uri()).unwrap(), inv);
    }

    /// The decoder never panics on any string or any payload.
    #[test]
    fn parse_never_panics(s in "\\PC{0,400}", b in proptest::collection::vec(any::<u8>(), 0..500)) {
        let _ = Invite::parse(&s);
        let _ = Invite::parse(&format!("{INVITE_PREFIX}{s}"));
        let _ = Invite::from_bytes(&b);
    }

    /// Any single-byte change to a valid payload is refused.
    #[test]
    fn corrupted_payload_is_refused(pos in any::<prop::sample::Index>(), x in 1u8..=255) {
        let mut b = sample().to_bytes();
        let i = pos.index(b.len());
        b[i] ^= x;
        prop_assert!(Invite::from_bytes(&b).is_err());
    }
}
