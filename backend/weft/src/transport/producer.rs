//! Producers: what back-pressure pauses (Twisted's `IPushProducer`), and what a
//! transport asks for more each time its buffer has gone out (`IPullProducer`).

use std::rc::Rc;

/// Something that produces data into a transport and can be told to pause.
///
/// A proxy registers each side's transport as the other side's producer: when the
/// client reads slowly, the proxy stops reading from the server.
pub trait PushProducer {
    /// Stop producing until `resume_producing`.
    fn pause_producing(&self);
    /// Produce again.
    fn resume_producing(&self);
    /// Stop for good: the consumer is gone.
    fn stop_producing(&self);
}

/// Something that writes into a transport only when asked (Twisted's `IPullProducer`,
/// registered with `registerProducer(producer, False)`): a file sent a chunk at a time,
/// each read once the last has gone out, so a slow peer sets the pace and memory holds one
/// chunk ([`FileSender`](crate::framing::FileSender) is one).
///
/// [`Transport::register_pull_producer`](super::Transport::register_pull_producer) asks
/// it once at once, then again each time what was written has been sent, until it
/// unregisters ([`Transport::unregister_producer`](super::Transport::unregister_producer)).
/// A call in which it writes nothing is the last until something else written drains.
/// As with Twisted's, a close asked for meanwhile (`lose_connection`) waits while it goes
/// on writing.
pub trait PullProducer {
    /// Write some more.
    fn resume_producing(&self);
    /// Stop for good: the consumer is gone.
    fn stop_producing(&self);
}

/// The producer registered with a transport.
#[derive(Clone)]
pub enum Producer {
    /// Paused and resumed by back-pressure.
    Push(Rc<dyn PushProducer>),
    /// Asked for more as the buffer empties.
    Pull(Rc<dyn PullProducer>),
}

impl Producer {
    /// Tells it the consumer is gone.
    pub(crate) fn stop(&self) {
        match self {
            Producer::Push(p) => p.stop_producing(),
            Producer::Pull(p) => p.stop_producing(),
        }
    }
}

/// [`Transport::register_producer`](super::Transport::register_producer) (or
/// [`register_pull_producer`](super::Transport::register_pull_producer)) with a producer
/// registered already (Twisted raises `RuntimeError`): unregister it first. The producer
/// offered is handed back.
#[derive(thiserror::Error)]
#[error("a producer is registered already; unregister it first")]
pub struct ProducerRegistered(pub Producer);

impl std::fmt::Debug for ProducerRegistered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProducerRegistered")
    }
}

/// Why [`Transport::start_tls`](super::Transport::start_tls) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartTlsError {
    /// The connection is closing or gone.
    #[error("the connection is closing")]
    Closing,
    /// A start was asked for already.
    #[error("TLS was started on this connection already")]
    Started,
    /// Not a protocol's TCP connection in the clear (a unix socket, a TLS one, a stream
    /// served outside a protocol).
    #[error("TLS can be started only on a protocol's TCP connection in the clear")]
    Unsupported,
}
