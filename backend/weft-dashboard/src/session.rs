//! The sign-in cookie: a session the token vouched for, never the token itself.
//!
//! A browser sends a cookie to every port of the host it came from (RFC 6265 §8.5), so
//! another service there, or anything logging what reaches it, sees the dashboard's
//! cookie too. The cookie holds when its session ends and a MAC of that under a key the
//! process drew at random when it started: it opens the dashboard as the token does until
//! then (or until the process restarts), and tells nothing of the token, not even to a
//! guesser working offline.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::hmac;

/// How long a sign-in lasts (the cookie's `Max-Age` too).
pub(crate) const LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// Issues and checks sessions for one token.
pub(crate) struct Sessions {
    key: hmac::Key,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions")
    }
}

impl Sessions {
    /// Sessions signed with a key drawn at random now.
    pub(crate) fn new() -> Self {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
            .expect("the system gives random bytes");
        Self { key }
    }

    /// The cookie value of a session that begins at `now`: when it ends (in seconds
    /// since the epoch), a dot, and the MAC of that in hexadecimal.
    pub(crate) fn issue(&self, now: SystemTime) -> String {
        let until = (seconds(now) + LIFETIME.as_secs()).to_string();
        let tag = hmac::sign(&self.key, until.as_bytes());
        let mut value = until;
        value.push('.');
        for byte in tag.as_ref() {
            let _ = write!(value, "{byte:02x}");
        }
        value
    }

    /// Whether `cookie` is a session issued here that has not ended at `now`.
    pub(crate) fn admits(&self, cookie: &str, now: SystemTime) -> bool {
        let Some((until, tag)) = cookie.split_once('.') else {
            return false;
        };
        let (Ok(end), Some(tag)) = (until.parse::<u64>(), unhex(tag)) else {
            return false;
        };
        let now = seconds(now);
        end > now
            && end <= now + LIFETIME.as_secs()
            && hmac::verify(&self.key, until.as_bytes(), &tag).is_ok()
    }
}

fn seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// The bytes of `text` in lower-case hexadecimal; `None` for anything else.
fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_opens_until_it_ends_and_only_where_it_was_issued() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let sessions = Sessions::new();
        let cookie = sessions.issue(now);
        assert!(sessions.admits(&cookie, now));
        assert!(sessions.admits(&cookie, now + LIFETIME - Duration::from_secs(1)));
        assert!(!sessions.admits(&cookie, now + LIFETIME), "ended");
        assert!(!Sessions::new().admits(&cookie, now), "another process's");
        // Moved on: a later end, or the MAC altered.
        let (until, tag) = cookie.split_once('.').unwrap();
        let later = format!("{}.{tag}", until.parse::<u64>().unwrap() + 1);
        assert!(!sessions.admits(&later, now));
        let flipped = format!(
            "{until}.{}{}",
            if tag.starts_with('0') { "1" } else { "0" },
            &tag[1..]
        );
        assert!(!sessions.admits(&flipped, now));
        for junk in [
            "",
            ".",
            "s3cret-token-0123",
            "1.zz",
            &format!("+{until}.{tag}"),
        ] {
            assert!(!sessions.admits(junk, now), "{junk:?}");
        }
    }
}
