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
