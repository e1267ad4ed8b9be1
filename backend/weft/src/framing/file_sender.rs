//! [`FileSender`]: a file (any reader) written to a transport a chunk at a time, each
//! once the last has gone out (Twisted's `twisted.protocols.basic.FileSender`).

use std::cell::{Cell, RefCell};
use std::io::{self, Read};
use std::panic::Location;
use std::rc::Rc;

use crate::defer::{CancelledError, Deferred, Failure, Resolver};
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
///         FileSender::begin_file_transfer(file, transport).add_callback(move |_last| {
///             t.lose_connection();
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
}

impl FileSender {
    /// Bytes read and written at a time (Twisted's `CHUNK_SIZE`, 2¹⁴).
    pub const CHUNK_SIZE: usize = 16 * 1024;

    /// Begins sending `file` to `transport`, registered as its pull producer (so no other
    /// producer may be registered meanwhile). The Deferred fires with the last byte sent
    /// (`None` for an empty file) once every chunk is written, and fails with a
    /// [`FileSendError`]: the connection closed first, the transfer was cancelled, or a
    /// read failed; cancelling it (from the code or the dashboard) stops the transfer,
    /// what is buffered still going out, and fails it with `CancelledError`.
    #[track_caller]
    pub fn begin_file_transfer(
        file: impl Read + 'static,
        transport: &Transport,
    ) -> Deferred<Option<u8>> {
        let site = Location::caller();
        let cancelled = Rc::new(RefCell::new(None::<Rc<FileSender>>));
        let on_cancel = cancelled.clone();
        let (resolver, deferred) = Deferred::new_at(
            site,
            Some("file transfer"),
            Some(Box::new(move || {
                if let Some(sender) = on_cancel.borrow_mut().take() {
                    sender.end(Err(Failure::new(CancelledError)));
                }
            })),
        );
        let sender = Rc::new(FileSender {
            file: RefCell::new(Some(Box::new(file))),
            transport: transport.clone(),
            resolver: RefCell::new(Some(resolver)),
            last: Cell::new(None),
            chunk: RefCell::new(vec![0; Self::CHUNK_SIZE].into_boxed_slice()),
        });
        *cancelled.borrow_mut() = Some(sender.clone());
        if transport.register_pull_producer(sender.clone()).is_err() {
            // Never registered: nothing to unregister.
            sender.file.borrow_mut().take();
            if let Some(resolver) = sender.resolver.borrow_mut().take() {
                resolver.errback(Failure::new(FileSendError::ProducerRegistered));
            }
        }
        deferred
    }

    /// Ends the transfer once: unregisters, lets go of the file and fires the Deferred.
    fn end(&self, result: Result<(), Failure>) {
        if self.file.borrow_mut().take().is_none() {
            return;
        }
        // Stopped by the close, it is unregistered already.
        if !self.transport.is_closed() {
            self.transport.unregister_producer();
        }
        if let Some(resolver) = self.resolver.borrow_mut().take() {
            resolver.resolve(result.map(|()| self.last.get()));
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
            Err(e) => self.end(Err(Failure::new(FileSendError::Read(e)))),
        }
    }

    fn stop_producing(&self) {
        self.end(Err(Failure::new(FileSendError::Stopped)));
    }
}
