use hickory_proto::op::{MessageType, OpCode};

use super::*;

/// 32 bytes, base64, as `tsig-keygen` writes a key's secret.
const SECRET: &str = "3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
const OTHER_SECRET: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

fn key(secret: &str) -> TsigKey {
    TsigKey::new("Xfr.Example", "hmac-sha256", secret).unwrap()
}

fn message(id: u16) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.queries.push(Query::query(
        Name::from_ascii("example.").unwrap(),
        RecordType::SOA,
    ));
    m.to_vec().unwrap()
}

/// The TSIG variables of `tsig` owned by `key` (RFC 8945 section 4.3.3).
fn variables(tsig: &TSIG, key: &Name) -> Vec<u8> {
    let mut bytes = Vec::new();
    tsig.emit_tsig_for_mac(&mut BinEncoder::new(&mut bytes), key)
        .unwrap();
    bytes
}

/// A query signed as a peer signs it at `time` (section 4.3.3), its MAC cut to `len`.
fn signed_query(key: &TsigKey, time: u64, len: Option<usize>) -> Vec<u8> {
    let mut packet = message(0x4242);
    let tsig = unsigned_tsig(time);
    let mut data = packet.clone();
    data.extend(variables(&tsig, key.name()));
    let mut mac = key.mac(&[&data]);
    mac.truncate(len.unwrap_or(mac.len()));
    append(&mut packet, key.name(), tsig.set_mac(mac));
    packet
}

fn verified(keys: &[TsigKey], packet: &[u8], now: u64) -> Result<Signer, Box<Refusal>> {
    let message = Message::from_vec(packet).unwrap();
    let signed = of_query(&message, packet).unwrap().expect("signed");
    verify(keys, signed, packet, now)
}

/// The TSIG record at the end of `encoded`, and the message before it as its header
/// counts it without that record.
fn split(encoded: &[u8]) -> (Vec<u8>, Name, TSIG) {
    let message = Message::from_vec(encoded).unwrap();
    let (_, at) = *additionals(encoded).unwrap().last().unwrap();
    let record = message
        .signature
        .as_deref()
        .cloned()
        .or_else(|| {
            message.additionals.iter().find_map(|r| match &r.data {
                RData::TSIG(t) => Some(make_tsig_record(r.name.clone(), t.clone())),
                _ => None,
            })
        })
        .expect("a TSIG record");
    let mut before = encoded[..at].to_vec();
    let count = u16::from_be_bytes([before[10], before[11]]) - 1;
    before[10..12].copy_from_slice(&count.to_be_bytes());
    (before, record.name, record.data)
}

#[test]
fn a_query_signed_with_a_key_held_verifies_and_its_answer_is_signed_over_its_mac() {
    let key = key(SECRET);
    let now = unix_now();
    let query = signed_query(&key, now, None);
    let signer = verified(std::slice::from_ref(&key), &query, now).expect("verifies");
    let (_, _, asked) = split(&query);

    let mut answer = message(0x4242);
    answer[2] |= 0x80;
    let plain = answer.clone();
    signer.sign(&mut answer);
    let (before, owner, tsig) = split(&answer);
    assert_eq!(before, plain, "the record is added, nothing else changes");
    assert_eq!(owner.to_ascii(), "xfr.example.");
    assert_eq!((tsig.oid, tsig.error, tsig.fudge), (0x4242, None, FUDGE));
    // Section 4.3.1: the request's MAC, the answer, the variables.
    let mut data = (asked.mac.len() as u16).to_be_bytes().to_vec();
    data.extend(&asked.mac);
    data.extend(&plain);
    data.extend(variables(&tsig, &owner));
    assert_eq!(tsig.mac, key.mac(&[&data]));
    assert!(
        signer.room() >= answer.len() - plain.len(),
        "room kept for it"
    );
}

#[test]
fn each_message_of_a_transfer_after_the_first_is_signed_over_the_last_mac_and_its_timers() {
    let key = key(SECRET);
    let now = unix_now();
    let query = signed_query(&key, now, None);
    let mut signer = verified(std::slice::from_ref(&key), &query, now).unwrap();
    let (_, _, asked) = split(&query);
    let mut previous = asked.mac;
    for n in 0..3 {
        let mut m = message(0x4242);
        m[2] |= 0x80;
        let plain = m.clone();
        signer.sign_next(&mut m);
        let (_, owner, tsig) = split(&m);
        let mut data = (previous.len() as u16).to_be_bytes().to_vec();
        data.extend(&previous);
        data.extend(&plain);
        if n == 0 {
            data.extend(variables(&tsig, &owner));
        } else {
            data.extend(&tsig.time.to_be_bytes()[2..]);
            data.extend(tsig.fudge.to_be_bytes());
        }
        assert_eq!(tsig.mac, key.mac(&[&data]), "message {n}");
        previous = tsig.mac;
    }
}

#[test]
fn a_query_that_does_not_verify_is_refused_with_the_error_rfc_8945_gives_it() {
    let key = key(SECRET);
    let held = std::slice::from_ref(&key);
    let now = unix_now();
    let answered = |refusal: Box<Refusal>| {
        let mut answer = message(0x4242);
        answer[2] |= 0x80;
        refusal.seal(&mut answer);
        split(&answer).2
    };

    // Unknown: another name, or the name with another algorithm.
    let other = TsigKey::new("other.example.", "hmac-sha256", SECRET).unwrap();
    let refusal = verified(held, &signed_query(&other, now, None), now).unwrap_err();
    assert!(refusal.why.contains("other.example."), "{}", refusal.why);
    let tsig = answered(refusal);
    assert_eq!((tsig.error, tsig.mac.len()), (Some(TsigError::BadKey), 0));
    let sha512 = TsigKey::new("xfr.example.", "hmac-sha512", SECRET).unwrap();
    let refusal = verified(&[sha512], &signed_query(&key, now, None), now).unwrap_err();
    assert_eq!(answered(refusal).error, Some(TsigError::BadKey));

    // Another secret: BADSIG, unsigned.
    let forged = signed_query(&self::key(OTHER_SECRET), now, None);
    let tsig = answered(verified(held, &forged, now).unwrap_err());
    assert_eq!((tsig.error, tsig.mac.len()), (Some(TsigError::BadSig), 0));
    // A byte of the message changed after signing: BADSIG.
    let mut changed = signed_query(&key, now, None);
    changed[3] ^= 0x01;
    let tsig = answered(verified(held, &changed, now).unwrap_err());
    assert_eq!(tsig.error, Some(TsigError::BadSig));

    // Outside the fudge: BADTIME, signed, with the server's time.
    let refusal = verified(held, &signed_query(&key, now - 301, None), now).unwrap_err();
    assert!(refusal.why.contains("301 s"), "{}", refusal.why);
    let tsig = answered(refusal);
    assert_eq!(tsig.error, Some(TsigError::BadTime));
    assert_eq!(tsig.mac.len(), 32, "signed");
    let told = tsig.other.iter().fold(0u64, |t, b| t << 8 | u64::from(*b));
    assert!(told.abs_diff(now) <= 1, "{told} {now}");
    assert!(verified(held, &signed_query(&key, now - 300, None), now).is_ok());

    // Cut to 16 of 32 bytes: BADTRUNC; to 8, below the least a MAC may be: FORMERR.
    let refusal = verified(held, &signed_query(&key, now, Some(16)), now).unwrap_err();
    assert_eq!(answered(refusal).error, Some(TsigError::BadTrunc));
    let refusal = verified(held, &signed_query(&key, now, Some(8)), now).unwrap_err();
    assert!(refusal.malformed(), "{}", refusal.why);
}

#[test]
fn a_query_this_server_signs_verifies_as_its_peer_verifies_it() {
    let key = key(SECRET);
    let mut notify = message(0x1234);
    sign_query(&key, &mut notify);
    let signer = verified(std::slice::from_ref(&key), &notify, unix_now()).expect("verifies");
    assert_eq!(signer.key().to_ascii(), "xfr.example.");
    let (_, _, tsig) = split(&notify);
    assert_eq!(tsig.algorithm.to_name().to_ascii(), "hmac-sha256");
    let other = self::key(OTHER_SECRET);
    assert!(verified(&[other], &notify, unix_now()).is_err());
}

#[test]
fn a_key_is_read_as_tsig_keygen_writes_it_and_never_shows_its_secret() {
    let key = key(SECRET);
    assert_eq!(key.name().to_ascii(), "xfr.example.");
    assert!(key.is_named("XFR.example") && key.is_named("xfr.example."));
    assert!(!key.is_named("xfr.example.com."));
    assert_eq!(key.secret().len(), 32);
    let shown = format!("{key:?}");
    assert!(
        !shown.contains(SECRET) && !shown.contains("secret"),
        "{shown}"
    );

    let error = |name, algorithm, secret| TsigKey::new(name, algorithm, secret).unwrap_err();
    assert!(error("xfr.", "hmac-md5", SECRET).contains("deprecated"));
    assert!(error("xfr.", "hmac-sha3", SECRET).contains("hmac-sha256"));
    let bad = error("xfr.", "hmac-sha256", "not base64!");
    assert!(
        bad.contains("base64") && !bad.contains("not base64!"),
        "{bad}"
    );
    assert!(error("xfr.", "hmac-sha256", "").contains("empty"));
    assert!(error(".", "hmac-sha256", SECRET).contains("root"));
    assert!(
        error("", "hmac-sha256", SECRET).contains("root"),
        "an empty name is the root"
    );
}

/// A query and the answer to it, both signed by dnspython 2.9 (`use_tsig` with the key of
/// `key(SECRET)`, HMAC-SHA256, at Time Signed 1796586471): another implementation's MACs,
/// its key name compressed against the question.
const DNSPYTHON_QUERY: &str = "424201000001000000000001076578616d706c65000006000103786672c00c\
    00fa00ff00000000003d0b686d61632d7368613235360000006b15bbe7012c00208cb8b3b4a1ddef5ba3c144\
    1c0145cf9b8eed3f08e373ece43ad1309c9303196e424200000000";
const DNSPYTHON_ANSWER: &str = "424281000001000000000001076578616d706c65000006000103786672c00\
    c00fa00ff00000000003d0b686d61632d7368613235360000006b15bbe7012c00206c00ee698997f4cacb98cc\
    6d498364d3e48dd8472c0da4880891fe95de792997424200000000";
const DNSPYTHON_TIME: u64 = 1_796_586_471;

fn hex(text: &str) -> Vec<u8> {
    let text: String = text.split_whitespace().collect();
    data_encoding::HEXLOWER.decode(text.as_bytes()).unwrap()
}

#[test]
fn another_implementation_s_query_verifies_and_its_answer_is_taken() {
    let key = key(SECRET);
    let held = std::slice::from_ref(&key);
    let query = hex(DNSPYTHON_QUERY);
    let signer = verified(held, &query, DNSPYTHON_TIME).expect("dnspython's query verifies");
    assert_eq!(signer.key().to_ascii(), "xfr.example.");
    assert!(
        verified(held, &query, DNSPYTHON_TIME + 301).is_err(),
        "outside the fudge"
    );
    let (_, _, asked) = split(&query);
    let answer = hex(DNSPYTHON_ANSWER);
    assert!(answer_verifies(&key, &asked.mac, &answer, DNSPYTHON_TIME));
    assert!(!answer_verifies(
        &key,
        &asked.mac,
        &answer,
        DNSPYTHON_TIME + 301
    ));
    let mut changed = answer.clone();
    changed[3] ^= 0x01;
    assert!(!answer_verifies(&key, &asked.mac, &changed, DNSPYTHON_TIME));
    assert!(!answer_verifies(
        &self::key(OTHER_SECRET),
        &asked.mac,
        &answer,
        DNSPYTHON_TIME
    ));
    // Unsigned, it is not the answer.
    assert!(!answer_verifies(
        &key,
        &asked.mac,
        &message(0x4242),
        DNSPYTHON_TIME
    ));
}

#[test]
fn a_badtime_answer_carries_the_query_s_time_and_an_answer_near_64_kib_is_signed_or_left() {
    let key = key(SECRET);
    let held = std::slice::from_ref(&key);
    let now = unix_now();
    let skewed = now - 1000;
    let refusal = verified(held, &signed_query(&key, skewed, None), now).unwrap_err();
    let mut answer = message(0x4242);
    answer[2] |= 0x80;
    refusal.seal(&mut answer);
    let (_, _, tsig) = split(&answer);
    assert_eq!(
        tsig.time, skewed,
        "the client's own time, so its check passes"
    );

    // An answer of 65,000 bytes is signed over all of it (the MAC is not cut at the
    // encoder's 64 KiB); one that the record would push past 65,535 is left unsigned.
    let query = signed_query(&key, now, None);
    let signer = verified(held, &query, now).unwrap();
    let (_, _, asked) = split(&query);
    let mut big = message(0x4242);
    big.resize(65_000, 0);
    let plain = big.clone();
    signer.sign(&mut big);
    let record = Record::read(&mut BinDecoder::new(&big[plain.len()..])).unwrap();
    let RData::TSIG(tsig) = &record.data else {
        panic!("{record:?}")
    };
    let mut data = (asked.mac.len() as u16).to_be_bytes().to_vec();
    data.extend(&asked.mac);
    data.extend(&plain);
    data.extend(variables(tsig, &record.name));
    let expected = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key.secret()), &data);
    assert_eq!(tsig.mac, expected.as_ref());
    let mut huge = message(0x4242);
    huge.resize(65_500, 0);
    let before = huge.clone();
    signer.sign(&mut huge);
    assert_eq!(
        huge, before,
        "no room: left unsigned, not cut or overflowed"
    );
}

#[test]
fn a_key_s_name_is_matched_without_case() {
    let key = key(SECRET);
    let now = unix_now();
    // Signed as a peer that writes the key's name in capitals: the MAC covers it
    // lower-cased (section 4.3.3), the owner keeps the capitals.
    let owner = Name::from_ascii("XFR.Example.").unwrap();
    let mut packet = message(0x4242);
    let tsig = TSIG::new(
        TsigAlgorithm::HmacSha256,
        now,
        300,
        Vec::new(),
        0x4242,
        None,
        Vec::new(),
    );
    let mac = key.mac(&[&packet, &variables(&tsig, &owner)]);
    append(&mut packet, &owner, tsig.set_mac(mac));
    assert!(verified(std::slice::from_ref(&key), &packet, now).is_ok());
}

#[test]
fn a_transfer_is_taken_with_unsigned_messages_between_signed_ones_as_section_5_3_1_allows() {
    let key = key(SECRET);
    let now = unix_now();
    // A secondary's AXFR query, and a primary signing its answers as NSD does: the
    // first, then one in so many, each over the MAC before it, the unsigned messages
    // since, itself and its timers.
    let mut query = message(0x4242);
    let asked = sign_query(&key, &mut query);
    let answer = |n: u8| {
        let mut m = Message::new(0x4242, MessageType::Response, OpCode::Query);
        let name = Name::from_ascii(format!("n{n}.example.")).unwrap();
        m.queries.push(Query::query(name, RecordType::AXFR));
        m.to_vec().unwrap()
    };
    let sign = |m: &mut Vec<u8>, before: &[u8], unsigned: &[u8], first: bool| {
        let tsig = unsigned_tsig(now);
        let last = match first {
            true => variables(&tsig, key.name()),
            false => timers(&tsig),
        };
        let mac = mac_after(&key, before, &[unsigned, m, &last]);
        append(m, key.name(), tsig.set_mac(mac.clone()));
        mac
    };
    let mut first = answer(0);
    let mac = sign(&mut first, &asked, &[], true);
    let (second, third) = (answer(1), answer(2));
    let mut fourth = answer(3);
    let between = [second.clone(), third.clone()].concat();
    sign(&mut fourth, &mac, &between, false);

    let mut verifier = Verifier::new(key.clone(), asked.clone());
    assert_eq!(verifier.next(&first, now), Ok(true));
    assert_eq!(verifier.next(&second, now), Ok(false));
    assert!(!verifier.complete(), "an unsigned message last");
    assert_eq!(verifier.next(&third, now), Ok(false));
    assert_eq!(verifier.next(&fourth, now), Ok(true));
    assert!(verifier.complete());

    // A message changed between two signed ones breaks the next MAC.
    let mut verifier = Verifier::new(key.clone(), asked.clone());
    verifier.next(&first, now).unwrap();
    verifier.next(&answer(9), now).unwrap();
    verifier.next(&third, now).unwrap();
    assert!(verifier.next(&fourth, now).unwrap_err().contains("BADSIG"));
    // The first message must be signed; the clock is checked; 99 unsigned at most.
    let mut verifier = Verifier::new(key.clone(), asked.clone());
    assert!(
        verifier
            .next(&second, now)
            .unwrap_err()
            .contains("unsigned")
    );
    let mut verifier = Verifier::new(key.clone(), asked.clone());
    assert!(
        verifier
            .next(&first, now + 301)
            .unwrap_err()
            .contains("BADTIME")
    );
    let mut verifier = Verifier::new(key.clone(), asked);
    verifier.next(&first, now).unwrap();
    for _ in 0..99 {
        assert_eq!(verifier.next(&second, now), Ok(false));
    }
    assert!(verifier.next(&second, now).unwrap_err().contains("99"));
    // Another key's answer does not verify.
    let other = self::key(OTHER_SECRET);
    let mut verifier = Verifier::new(other, mac);
    assert!(verifier.next(&first, now).is_err());
}

/// The TSIG record data of a message of id 0x4242 signed at `time` with HMAC-SHA256,
/// its MAC not made yet.
fn unsigned_tsig(time: u64) -> TSIG {
    TSIG::new(
        TsigAlgorithm::HmacSha256,
        time,
        300,
        Vec::new(),
        0x4242,
        None,
        Vec::new(),
    )
}

#[test]
fn a_tsig_record_of_a_class_other_than_any_is_malformed() {
    let key = key(SECRET);
    let mut packet = signed_query(&key, unix_now(), None);
    let message = Message::from_vec(&packet).unwrap();
    assert!(
        of_query(&message, &packet).unwrap().is_some(),
        "class ANY: signed"
    );
    // The class follows the owner name (uncompressed here) and the type.
    let (_, at) = *additionals(&packet).unwrap().last().unwrap();
    let mut end = at;
    while packet[end] != 0 {
        end += usize::from(packet[end]) + 1;
    }
    let class = end + 3;
    assert_eq!(packet[class..class + 2], [0, 255], "ANY");
    packet[class + 1] = 1;
    let message = Message::from_vec(&packet).unwrap();
    let why = of_query(&message, &packet).err().unwrap();
    assert!(why.contains("class IN; its class is ANY"), "{why}");
}
