//! [`FileSender`]: a file (any reader) written to a transport a chunk at a time, each
//! once the last has gone out (Twisted's `twisted.protocols.basic.FileSender`).

use std::cell::{Cell, RefCell};
use std::io::{self, Read};
use std::panic::Location;
use std::rc::{Rc, Weak};

use crate::defer::{Deferred, Failure, Resolver};
use crate::observe::CloseReason;
use crate::transport::{PullProducer, Transport};

/// Why a [`FileSender`]'s transfer did not finish.
#[derive(Debug, thiserror::Error)]
pub enum FileSendError {
    /// The connection went away first (Twisted's "Consumer asked us to stop producing").
    #[error("the connection closed before the file was sent")]
    Stopped,
    /// Reading the file failed.
    #[error("reading the file: {0}")]
    Read(#[from] io::Error),
    /// Another producer was registered with the transport: unregister it first.
    #[error("a producer is registered with the transport already")]
    ProducerRegistered,
}

/// Sends a file to a transport as a pull producer (Twisted's `FileSender`): a chunk of
/// [`CHUNK_SIZE`](Self::CHUNK_SIZE) is read each time the last has gone out, so a slow
/// peer sets the pace and the transfer holds one chunk in memory, however large the file.
///
/// ```no_run
/// # use weft::{Protocol, Transport};
/// # use weft::framing::FileSender;
/// struct Download;
///
/// impl Protocol for Download {
///     fn connection_made(&mut self, transport: &Transport) {
///         let file = std::fs::File::open("/var/lib/app/report.csv").unwrap();
///         let t = transport.clone();
///         // Sent whole or not (the peer left, a read failed), the connection is done.
///         let _done = FileSender::begin_file_transfer(file, transport).add_both(move |_sent| {
///             t.lose_connection();
///             Ok::<(), weft::defer::Failure>(())
///         });
///     }
///     fn data_received(&mut self, _transport: &Transport, _data: &[u8]) {}
/// }
/// ```
///
/// Reads happen on the reactor thread, as Twisted's do: a file on a local disk reads a
/// chunk in microseconds from the page cache; a reader that blocks (a pipe, a network
/// file system) is named by the slow-callback detector as `resume_producing`.
pub struct FileSender {
    /// Taken when the transfer ends (sent, stopped, cancelled or failed).
    file: RefCell<Option<Box<dyn Read>>>,
    transport: Transport,
    resolver: RefCell<Option<Resolver<Option<u8>>>>,
    /// The last byte sent (what Twisted's Deferred fires with).
    last: Cell<Option<u8>>,
    /// One chunk, read into and written from.
    chunk: RefCell<Box<[u8]>>,
    /// The line that began the transfer: where its failures say they were made.
    site: &'static Location<'static>,
}

impl FileSender {
    /// Bytes read and written at a time (Twisted's `CHUNK_SIZE`, 2¹⁴).
    pub const CHUNK_SIZE: usize = 16 * 1024;

    /// Begins sending `file` to `transport`, registered as its pull producer (so no other
    /// producer may be registered meanwhile). The Deferred fires with the last byte sent
    /// (`None` for an empty file) once every chunk is written, and fails with a
    /// [`FileSendError`]: the connection closed first, the transfer was cancelled, or a
    /// read failed (the connection is then reset: the peer must not take what it got for
    /// the whole file); cancelling it (from the code or the dashboard) stops the
    /// transfer, what is buffered still going out, and fails it with `CancelledError`.
    #[track_caller]
    pub fn begin_file_transfer(
        file: impl Read + 'static,
        transport: &Transport,
    ) -> Deferred<Option<u8>> {
        let site = Location::caller();
        // Weak: the canceller lives as long as the Deferred, which may outlive the
        // transfer by far.
        let cancelled = Rc::new(RefCell::new(Weak::<FileSender>::new()));
        let on_cancel = cancelled.clone();
        let (resolver, deferred) = Deferred::new_at(
            site,
            Some("file transfer"),
            Some(Box::new(move || {
                if let Some(sender) = on_cancel.borrow().upgrade() {
                    sender.cancelled();
                }
            })),
        );
        let sender = Rc::new(FileSender {
            file: RefCell::new(Some(Box::new(file))),
            transport: transport.clone(),
            resolver: RefCell::new(Some(resolver)),
            last: Cell::new(None),
            chunk: RefCell::new(vec![0; Self::CHUNK_SIZE].into_boxed_slice()),
            site,
        });
        *cancelled.borrow_mut() = Rc::downgrade(&sender);
        if transport.register_pull_producer(sender.clone()).is_err() {
            // Never registered: nothing to unregister.
            sender.file.borrow_mut().take();
            if let Some(resolver) = sender.resolver.borrow_mut().take() {
                resolver.errback(Failure::with_site(FileSendError::ProducerRegistered, site));
            }
        }
        deferred
    }

    /// Lets go of the file and stops being the transport's producer (once, whoever ends
    /// it); whether it was still running.
    fn stop(&self) -> bool {
        if self.file.borrow_mut().take().is_none() {
            return false;
        }
        // Stopped by the close, it is unregistered already; and another producer
        // registered since someone else unregistered this one is not this one's to end.
        let this: *const () = std::ptr::from_ref(self).cast();
        if self.transport.pull_producer_is(this) {
            self.transport.unregister_producer();
        }
        true
    }

    /// Ends the transfer with `result`, firing the Deferred.
    fn end(&self, result: Result<(), Failure>) {
        if self.stop()
            && let Some(resolver) = self.resolver.borrow_mut().take()
        {
            resolver.resolve(result.map(|()| self.last.get()));
        }
    }

    /// `error`, made at the line that began the transfer.
    fn failure(&self, error: FileSendError) -> Failure {
        Failure::with_site(error, self.site)
    }

    /// Its Deferred is being cancelled: stops, and leaves the Deferred for the cancel to
    /// fail with `CancelledError` (so the inspector reads it cancelled, where it was).
    fn cancelled(&self) {
        if self.stop() {
            // Dropped while cancelling: not a leak.
            drop(self.resolver.borrow_mut().take());
        }
    }
}

impl PullProducer for FileSender {
    fn resume_producing(&self) {
        let read = {
            let mut file = self.file.borrow_mut();
            let Some(file) = file.as_mut() else {
                return;
            };
            let mut chunk = self.chunk.borrow_mut();
            loop {
                match file.read(&mut chunk) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Ok(n) => {
                        if n > 0 {
                            self.last.set(Some(chunk[n - 1]));
                            self.transport.write(&chunk[..n]);
                        }
                        break Ok(n);
                    }
                    Err(e) => break Err(e),
                }
            }
        };
        match read {
            Ok(0) => self.end(Ok(())),
            Ok(_) => {}
            Err(e) => {
                // The peer must not take what it got for the whole file: the connection
                // is reset, as Twisted ends one whose producer raised.
                let reason = CloseReason::Error(format!("reading the file sent: {e}"));
                self.transport.abort_connection_with(reason);
                self.end(Err(self.failure(FileSendError::Read(e))));
            }
        }
    }

    fn stop_producing(&self) {
        self.end(Err(self.failure(FileSendError::Stopped)));
    }
}
