//! Producers: what back-pressure pauses (Twisted's `IPushProducer`).

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

/// [`Transport::register_producer`](super::Transport::register_producer) with a producer
/// registered already (Twisted raises `RuntimeError`): unregister it first. The producer
/// offered is handed back.
#[derive(thiserror::Error)]
#[error("a producer is registered already; unregister it first")]
pub struct ProducerRegistered(pub std::rc::Rc<dyn PushProducer>);

impl std::fmt::Debug for ProducerRegistered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProducerRegistered")
    }
}
