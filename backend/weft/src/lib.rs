//! weft: Twisted's event-driven networking model on tokio, with an inspector built in.
