//! The `weft` gateway binary.

fn main() {
    println!("weft {}", env!("CARGO_PKG_VERSION"));
}
