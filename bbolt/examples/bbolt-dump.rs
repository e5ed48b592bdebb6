//! Prints a bbolt file's buckets and keys (printable bytes as text, others as hex): a look inside an etcd
//! snapshot or backend. `cargo run -p modkv-bbolt --example bbolt-dump -- FILE`
fn show(b: &[u8]) -> String {
    if b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
        format!("{:?}", String::from_utf8_lossy(b))
    } else {
        b.iter().map(|c| format!("{c:02x}")).collect()
    }
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: bbolt-dump FILE");
    let file = std::fs::File::open(&path).expect("open");
    let db = bbolt::Reader::open(file).unwrap_or_else(|e| panic!("{path}: {e}"));
    println!("page size {}, txid {}, size {}", db.page_size(), db.txid(), db.size());
    db.walk(&mut |e| {
        match e {
            bbolt::Entry::Bucket(name) => println!("[{}]", show(name)),
            bbolt::Entry::Pair { key, value: Some(v) } => println!("  {} = {}", show(key), show(v)),
            bbolt::Entry::Pair { key, value: None } => println!("  {} (bucket)", show(key)),
        }
        true
    })
    .unwrap_or_else(|e| panic!("{path}: {e}"));
}
