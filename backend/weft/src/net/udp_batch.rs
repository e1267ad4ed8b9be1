//! Many datagrams a system call on a UDP port: `recvmmsg` fills a batch of buffers
//! ([`Inbox`]), and what the protocol writes while it handles the batch leaves together
//! through `sendmmsg` ([`Outbox`]) when the batch is done.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg,
    sendmmsg,
};

/// Datagrams at most in one receive or one send call.
pub(super) const BATCH: usize = 32;

/// One datagram of the last batch received.
#[derive(Debug, Clone, Copy)]
pub(super) struct Received {
    /// Bytes received into its slot.
    pub(super) len: usize,
    /// Its sender.
    pub(super) from: SocketAddr,
    /// Larger than its slot: the kernel cut it short.
    pub(super) truncated: bool,
}

/// Buffers for a batch of received datagrams. It starts with one slot and doubles, up to
/// [`BATCH`], each time a receive fills every slot, so a quiet port (an upstream query's,
/// say) keeps one datagram's buffer.
pub(super) struct Inbox {
    slot: usize,
    buf: Vec<u8>,
    headers: MultiHeaders<SockaddrStorage>,
    got: Vec<Received>,
    /// The socket's count of datagrams the kernel dropped, as last told (`SO_RXQ_OVFL`);
    /// `None` until the first count is heard on a socket whose earlier drops were counted
    /// by another inbox (one handed over by a reload).
    dropped_seen: Option<u32>,
    /// Of those, not yet taken by [`Inbox::take_dropped`].
    dropped_new: u64,
}

impl Inbox {
    /// Slots of `slot` bytes each, on a socket made for it (`fresh`: every drop it tells
    /// is new) or handed over.
    pub(super) fn new(slot: usize, fresh: bool) -> Self {
        Self {
            slot,
            buf: vec![0; slot],
            headers: headers(),
            got: Vec::with_capacity(BATCH),
            dropped_seen: fresh.then_some(0),
            dropped_new: 0,
        }
    }

    /// Datagrams the kernel dropped for a full receive queue since the last call, as the
    /// datagrams received since told. A socket with `SO_RXQ_OVFL` set says its count with
    /// each datagram queued after its first drop; the first batch of those finds no room
    /// for it (below), so the count comes with the next batch received.
    pub(super) fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped_new)
    }

    /// Receives what is queued on `fd`, as many datagrams as there are slots; `WouldBlock`
    /// when nothing is.
    pub(super) fn receive(&mut self, fd: RawFd) -> io::Result<usize> {
        self.got.clear();
        let slots = self.buf.len() / self.slot;
        let mut chunks = self.buf.chunks_mut(self.slot);
        let mut slices: [[IoSliceMut<'_>; 1]; BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
        let results = recvmmsg(
            fd,
            &mut self.headers,
            slices[..slots].iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io::Error::from)?;
        let mut no_room = false;
        for message in results {
            // The kernel writes back how much of each header's control space a datagram
            // used, and `recvmmsg` does not restore it: a slot that once took a datagram
            // with no drop count has none left, and the count is cut (MSG_CTRUNC). Fresh
            // headers then; from a socket's first drop on, every datagram carries one, so
            // the space stays.
            no_room |= message.flags.contains(MsgFlags::MSG_CTRUNC);
            for cmsg in message.cmsgs().into_iter().flatten() {
                if let ControlMessageOwned::RxqOvfl(count) = cmsg {
                    // The count only grows, wrapping at 2^32.
                    let seen = *self.dropped_seen.get_or_insert(count);
                    let new = count.wrapping_sub(seen);
                    if new < u32::MAX / 2 {
                        self.dropped_new += u64::from(new);
                        self.dropped_seen = Some(count);
                    }
                }
            }
            let Some(from) = message.address.as_ref().and_then(std_addr) else {
                continue;
            };
            self.got.push(Received {
                len: message.bytes.min(self.slot),
                from,
                truncated: message.flags.contains(MsgFlags::MSG_TRUNC),
            });
        }
        if no_room {
            self.headers = headers();
        }
        let received = self.got.len();
        if received == slots && slots < BATCH {
            self.buf.resize(self.slot * (slots * 2).min(BATCH), 0);
        }
        Ok(received)
    }

    /// The datagrams of the last batch.
    pub(super) fn received(&self) -> impl Iterator<Item = (Received, &[u8])> + '_ {
        self.got
            .iter()
            .zip(self.buf.chunks(self.slot))
            .map(|(r, slot)| (*r, &slot[..r.len]))
    }
}

/// Receive headers for a batch, each with room for a drop count.
fn headers() -> MultiHeaders<SockaddrStorage> {
    MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(u32)))
}

fn std_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

/// Datagrams written while a received batch is handled, sent together at its end.
pub(super) struct Outbox {
    /// Set while a batch is handled: writes are queued rather than sent.
    pub(super) open: bool,
    bytes: Vec<u8>,
    ends: Vec<usize>,
    to: Vec<Option<SockaddrStorage>>,
    dest: Vec<SocketAddr>,
    headers: Option<MultiHeaders<SockaddrStorage>>,
}

/// What became of one queued datagram when the outbox was sent.
pub(super) enum Sent {
    /// It left, with this many bytes.
    Sent(usize),
    /// The socket refused it.
    Failed(SocketAddr, io::Error),
}

impl Outbox {
    pub(super) fn new() -> Self {
        Self {
            open: false,
            bytes: Vec::new(),
            ends: Vec::new(),
            to: Vec::new(),
            dest: Vec::new(),
            headers: None,
        }
    }

    /// Whether another datagram fits in this send.
    pub(super) fn is_full(&self) -> bool {
        self.ends.len() >= BATCH
    }

    /// Queues `data` for `addr`.
    pub(super) fn push(&mut self, data: &[u8], addr: SocketAddr) {
        self.bytes.extend_from_slice(data);
        self.ends.push(self.bytes.len());
        self.to.push(Some(SockaddrStorage::from(addr)));
        self.dest.push(addr);
    }

    /// Sends what is queued on `fd`, each datagram's fate to `each`. A datagram the
    /// socket refuses is skipped and the rest tried; when the socket is full
    /// (`WouldBlock`) the rest is refused too, as UDP would drop it anyway.
    pub(super) fn flush(&mut self, fd: RawFd, mut each: impl FnMut(Sent)) {
        let count = self.ends.len();
        if count == 0 {
            return;
        }
        let headers = self
            .headers
            .get_or_insert_with(|| MultiHeaders::preallocate(BATCH, None));
        let mut start = 0;
        while start < count {
            let mut begin = if start == 0 { 0 } else { self.ends[start - 1] };
            let mut datagrams = self.ends[start..].iter().map(|&end| {
                let slice = &self.bytes[begin..end];
                begin = end;
                slice
            });
            let slices: [[IoSlice<'_>; 1]; BATCH] =
                std::array::from_fn(|_| [IoSlice::new(datagrams.next().unwrap_or_default())]);
            let result = sendmmsg(
                fd,
                headers,
                slices[..count - start].iter(),
                &self.to[start..],
                [] as [ControlMessage<'_>; 0],
                MsgFlags::MSG_DONTWAIT,
            );
            let blocked = match result {
                Ok(results) => {
                    let before = start;
                    for message in results {
                        each(Sent::Sent(message.bytes));
                        start += 1;
                    }
                    start == before
                }
                Err(errno) => {
                    let err = io::Error::from(errno);
                    let blocked = err.kind() == io::ErrorKind::WouldBlock;
                    each(Sent::Failed(self.dest[start], err));
                    start += 1;
                    blocked
                }
            };
            if blocked {
                for &addr in &self.dest[start..] {
                    each(Sent::Failed(addr, io::ErrorKind::WouldBlock.into()));
                }
                break;
            }
        }
        self.bytes.clear();
        self.ends.clear();
        self.to.clear();
        self.dest.clear();
    }
}
