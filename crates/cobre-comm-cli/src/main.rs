//! The `cobre-comm` command-line tool.

fn main() {}
