//! HTTP service for weft (twisted.web): static files, reverse proxy and an access log.
