//! Pull producers on real loopback sockets: a `FileSender` reads a chunk only once the
//! last has gone out, a close asked for meanwhile waits for the whole file (as Twisted's
//! does), a peer that stops reading holds the transfer to what the socket takes, a peer
//! that leaves stops it, and cancelling its Deferred ends it.

use std::io::{Cursor, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weft::defer::{CancelledError, Failure};
use weft::framing::{FileSendError, FileSender};
use weft::{Protocol, Transport, factory};
use weft_test_support::{connect, eventually, spawn_reactor};

/// What a transfer read and how it ended, seen from the test's thread.
#[derive(Default)]
struct Seen {
    /// Bytes the sender read from the file.
    read: AtomicUsize,
    /// The most the transport held unsent when the sender read a chunk.
    buffered_at_read: AtomicUsize,
    outcome: Mutex<Option<String>>,
}

/// The file, reporting each read to the test.
struct Watched {
    data: Cursor<Vec<u8>>,
    transport: Transport,
    seen: Arc<Seen>,
    /// Fails the read that would go past this many bytes.
    fails_at: Option<u64>,
}

impl Read for Watched {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self
            .fails_at
            .is_some_and(|at| self.data.position() + buf.len() as u64 > at)
        {
            return Err(std::io::Error::other("the disk went away"));
        }
        let at = self.transport.buffered();
        self.seen.buffered_at_read.fetch_max(at, Ordering::SeqCst);
        let n = self.data.read(buf)?;
        self.seen.read.fetch_add(n, Ordering::SeqCst);
        Ok(n)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Then {
    /// Close once the transfer says it is done.
    CloseWhenDone,
    /// Ask for the close right after beginning: it waits for the producer.
    CloseAtOnce,
    /// Cancel the transfer's Deferred after a moment.
    CancelSoon,
    /// The file fails to read part way, with a close asked for at once.
    ReadFails,
}

struct Download {
    content: Arc<Vec<u8>>,
    then: Then,
    seen: Arc<Seen>,
}

impl Protocol for Download {
    fn connection_made(&mut self, transport: &Transport) {
        let file = Watched {
            data: Cursor::new(self.content.to_vec()),
            transport: transport.clone(),
            seen: self.seen.clone(),
            fails_at: (self.then == Then::ReadFails).then_some(1 << 20),
        };
        let (t, seen) = (transport.clone(), self.seen.clone());
        let sent = FileSender::begin_file_transfer(file, transport);
        let cancel = sent.cancel_handle();
        let _ended = sent.add_both(move |result: Result<Option<u8>, Failure>| {
            let outcome = match result {
                Ok(last) => format!("sent, last byte {last:?}"),
                Err(f) if f.check::<CancelledError>() => "cancelled".to_owned(),
                Err(f) => match f.downcast_ref::<FileSendError>() {
                    Some(FileSendError::Stopped) => "stopped".to_owned(),
                    _ => format!("failed: {f}"),
                },
            };
            *seen.outcome.lock().unwrap() = Some(outcome);
            t.lose_connection();
            Ok::<(), Failure>(())
        });
        match self.then {
            Then::CloseWhenDone => {}
            Then::CloseAtOnce | Then::ReadFails => transport.lose_connection(),
            Then::CancelSoon => {
                weft::call_later(Duration::from_millis(300), move || cancel.cancel());
            }
        }
    }
    fn data_received(&mut self, _transport: &Transport, _data: &[u8]) {}
}

fn content(len: usize) -> Arc<Vec<u8>> {
    Arc::new((0..len).map(|i| (i * 7 + i / 251) as u8).collect())
}

/// A listener serving `content` to each connection, and what its transfers saw.
fn serve(content: Arc<Vec<u8>>, then: Then) -> (weft_test_support::Running<SocketAddr>, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    let server = spawn_reactor(move |r| {
        r.listen(
            "tcp:0:interface=127.0.0.1",
            factory(move || Download {
                content: content.clone(),
                then,
                seen: s.clone(),
            }),
        )
        .unwrap()
        .local_addr()
        .unwrap()
    });
    (server, seen)
}

fn outcome(seen: &Seen) -> Option<String> {
    seen.outcome.lock().unwrap().clone()
}

#[test]
fn a_file_goes_out_a_chunk_at_a_time_each_once_the_last_has_gone() {
    let file = content(3 * 1024 * 1024 + 7);
    for then in [Then::CloseWhenDone, Then::CloseAtOnce] {
        let (server, seen) = serve(file.clone(), then);
        let mut client = connect(server.value);
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert!(
            got == *file,
            "the whole file, then the close ({} bytes)",
            got.len()
        );
        eventually("the transfer's end", || outcome(&seen).is_some());
        assert_eq!(
            outcome(&seen).unwrap(),
            format!("sent, last byte {:?}", file.last())
        );
        assert_eq!(
            seen.buffered_at_read.load(Ordering::SeqCst),
            0,
            "each chunk is read once what was written before has gone out"
        );
    }
}

#[test]
fn a_peer_that_stops_reading_holds_the_transfer_and_one_that_leaves_stops_it() {
    let file = content(64 * 1024 * 1024);
    let (server, seen) = serve(file.clone(), Then::CloseWhenDone);
    let mut client = connect(server.value);
    let mut head = vec![0; 1024];
    client.read_exact(&mut head).unwrap();
    // The client reads no more: the sender reads what the sockets' buffers take, then
    // waits, not the 64 MiB. Until the count holds still for 300 ms (a busy machine may
    // take a while to fill the buffers), within 10 s.
    let began = std::time::Instant::now();
    let mut read = seen.read.load(Ordering::SeqCst);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = seen.read.load(Ordering::SeqCst);
        if now == read {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "still reading ahead of the peer: {now} bytes"
        );
        read = now;
    }
    assert!(
        read < 32 * 1024 * 1024,
        "{read} bytes read for a peer that took 1 KiB"
    );
    assert_eq!(outcome(&seen), None);
    // It leaves without reading the rest (a reset, with unread bytes): the transfer stops.
    drop(client);
    eventually("the transfer stops", || outcome(&seen).is_some());
    assert_eq!(outcome(&seen).unwrap(), "stopped");
    assert_eq!(&head[..], &file[..1024]);
}

#[test]
fn cancelling_the_transfer_ends_it_and_what_was_written_still_goes_out() {
    let file = content(64 * 1024 * 1024);
    let (server, seen) = serve(file.clone(), Then::CancelSoon);
    let mut client = connect(server.value);
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Not reading until the cancel has happened.
    eventually("the cancel", || outcome(&seen).is_some());
    assert_eq!(outcome(&seen).unwrap(), "cancelled");
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    let read = seen.read.load(Ordering::SeqCst);
    assert_eq!(
        got.len(),
        read,
        "what was read before the cancel went out, then the close"
    );
    assert!(got.len() < file.len());
    assert!(got[..] == file[..got.len()]);
    let _ = client.write_all(b"done");
}

#[test]
fn a_file_that_fails_to_read_resets_the_connection_so_the_peer_never_takes_it_for_whole() {
    let file = content(4 << 20);
    let (server, seen) = serve(file.clone(), Then::ReadFails);
    let mut client = connect(server.value);
    let mut got = Vec::new();
    let end = client.read_to_end(&mut got);
    assert!(
        end.is_err(),
        "a reset, not a clean end after {} bytes",
        got.len()
    );
    assert!(got.len() <= 1 << 20 && got[..] == file[..got.len()]);
    eventually("the transfer's end", || outcome(&seen).is_some());
    let said = outcome(&seen).unwrap();
    assert!(
        said.contains("reading the file: the disk went away")
            && said.contains("(at backend/weft/tests/pull.rs:"),
        "the failure says why, and where the transfer began: {said}"
    );
}
