//! SQLite history for weft: migrations, a batched writer, retention and the dashboard's queries.
