//! DNS service for weft (twisted.names): authoritative zones, a forwarding cache, UDP and TCP.
