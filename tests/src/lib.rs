//! End-to-end tests for weft: real clients against real sockets and the real binary.
