//! Cookies against RFC 9018's examples, their lifetime and the secret's rotation, and
//! NSID only when asked.

use super::*;

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn asked(cookie: &[u8]) -> OptionsAsked {
    OptionsAsked {
        nsid: false,
        cookie: Some(Cookie::read(cookie).unwrap()),
    }
}

fn cookies_with_secret(secret: &str, since: u32) -> Options {
    let options = Options::new(&EdnsConfig {
        nsid: None,
        cookies: true,
    });
    {
        let mut secrets = options.secrets.as_ref().unwrap().borrow_mut();
        secrets.current.copy_from_slice(&hex(secret));
        secrets.since = since;
    }
    options
}

const SECRET: &str = "e5e973e5a6b2a43f48e7dc849e37bfcf";

#[test]
fn server_cookies_are_the_ones_of_rfc_9018_appendix_a() {
    let options = cookies_with_secret(SECRET, 1_559_731_985);
    let client: IpAddr = "198.51.100.100".parse().unwrap();
    // A.1: a client cookie alone gets a server cookie.
    let (answered, state) =
        options.answer_at(&asked(&hex("2464c4abcf10c957")), client, 1_559_731_985);
    assert_eq!(state, CookieState::ClientOnly);
    assert_eq!(
        answered.cookie.unwrap().to_vec(),
        hex("2464c4abcf10c957010000005cf79f111f8130c3eee29480")
    );
    // A.2: presented 40 minutes later, it is valid, and a fresh one comes back.
    let (answered, state) = options.answer_at(
        &asked(&hex("2464c4abcf10c957010000005cf79f111f8130c3eee29480")),
        client,
        1_559_734_385,
    );
    assert_eq!(state, CookieState::Valid);
    assert_eq!(
        answered.cookie.unwrap().to_vec(),
        hex("2464c4abcf10c957010000005cf7a871d4a564a1442aca77")
    );
}

#[test]
fn a_cookie_option_is_8_bytes_or_16_to_40() {
    for len in [0, 1, 7, 9, 15, 41, 48] {
        assert!(Cookie::read(&vec![1; len]).is_err(), "{len} bytes");
    }
    for len in [8, 16, 24, 40] {
        assert!(Cookie::read(&vec![1; len]).is_ok(), "{len} bytes");
    }
}

#[test]
fn a_server_cookie_is_bound_to_the_client_and_lives_an_hour_across_a_secret_change() {
    let t0 = 2_000_000_000;
    let options = cookies_with_secret(SECRET, t0);
    let here: IpAddr = "192.0.2.1".parse().unwrap();
    let learn = |at: u32| {
        let (answered, _) = options.answer_at(&asked(&[7; 8]), here, at);
        answered.cookie.unwrap()
    };
    let check =
        |cookie: &[u8], from: IpAddr, at: u32| options.answer_at(&asked(cookie), from, at).1;

    let cookie = learn(t0 + 3_500);
    assert_eq!(check(&cookie, here, t0 + 3_500), CookieState::Valid);
    let there = "192.0.2.2".parse().unwrap();
    assert_eq!(check(&cookie, there, t0 + 3_500), CookieState::Invalid);
    let mut forged = cookie;
    forged[20] ^= 1;
    assert_eq!(check(&forged, here, t0 + 3_500), CookieState::Invalid);

    // The secret changes at t0 + 1h: the cookie made with the previous one still works.
    let secrets = options.secrets.as_ref().unwrap();
    let before = secrets.borrow().current;
    assert_eq!(check(&cookie, here, t0 + 3_700), CookieState::Valid);
    assert_ne!(secrets.borrow().current, before, "rotated");
    assert_eq!(secrets.borrow().previous, Some(before));

    // An hour after it was made it has expired, as has one made ahead of the clock.
    assert_eq!(check(&cookie, here, t0 + 3_500 + 3_600), CookieState::Valid);
    assert_eq!(
        check(&cookie, here, t0 + 3_500 + 3_601),
        CookieState::Invalid
    );
    let ahead = learn(t0 + 7_200);
    assert_eq!(check(&ahead, here, t0 + 7_200 - 300), CookieState::Valid);
    assert_eq!(check(&ahead, here, t0 + 7_200 - 301), CookieState::Invalid);

    // Two changes later the first secret is gone.
    learn(t0 + 7_300);
    assert_ne!(secrets.borrow().previous, Some(before));
}

#[test]
fn nsid_answers_only_queries_that_ask_and_nothing_without_a_setting() {
    let with = Options::new(&EdnsConfig {
        nsid: Some("ns1.example".into()),
        cookies: false,
    });
    let here: IpAddr = "192.0.2.1".parse().unwrap();
    let ask = OptionsAsked {
        nsid: true,
        cookie: None,
    };
    let (answered, _) = with.answer(&ask, here);
    assert_eq!(answered.nsid.as_deref(), Some(&b"ns1.example"[..]));
    assert_eq!(
        with.answer(&OptionsAsked::default(), here).0,
        OptionsAnswered::default()
    );
    let without = Options::new(&EdnsConfig::default());
    assert_eq!(without.answer(&ask, here).0, OptionsAnswered::default());
    // Cookies off: a client cookie is not answered.
    let (answered, state) = with.answer(&asked(&[1; 8]), here);
    assert_eq!((answered.cookie, state), (None, CookieState::Absent));
}

#[test]
fn server_cookies_are_compared_whole() {
    assert!(same(&[1, 2, 3, 4], &[1, 2, 3, 4]));
    assert!(!same(&[1, 2, 3, 4], &[1, 2, 3, 5]));
    assert!(!same(&[9, 2, 3, 4], &[1, 2, 3, 4]));
    assert!(!same(&[1, 2, 3], &[1, 2, 3, 4]));
}
