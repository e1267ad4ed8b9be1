//! The weft inspector on axum: pages, JSON API, live WebSocket feed and `/metrics`.
